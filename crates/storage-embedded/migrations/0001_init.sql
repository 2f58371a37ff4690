-- Accounts and device sessions (data type 1).
CREATE TABLE accounts (
    user_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    nickname      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    version       INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    device_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES accounts (user_id),
    device_name   TEXT    NOT NULL,
    token_hash    BLOB    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    acked_version INTEGER NOT NULL DEFAULT 0,
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Each time the version acknowledged by every active device of a user advances: when, and to
-- where. Garbage collection deletes inbox entries below marks older than the retention.
CREATE TABLE delivery_marks (
    user_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;
CREATE INDEX delivery_marks_by_time ON delivery_marks (at_ms);

-- Contacts (data type 2): one row per change, under the owner's version.
CREATE TABLE contact_changes (
    user_id         INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    contact_user_id INTEGER NOT NULL,
    username        TEXT    NOT NULL,
    nickname        TEXT    NOT NULL,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;

-- Messages (data type 3): stored once, referenced by one inbox entry per recipient.
CREATE TABLE messages (
    message_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    from_user_id  INTEGER NOT NULL,
    from_name     TEXT    NOT NULL,
    to_user_id    INTEGER NOT NULL,
    to_name       TEXT    NOT NULL,
    kind          INTEGER NOT NULL,
    text          TEXT    NOT NULL,
    sent_at_ms    INTEGER NOT NULL,
    client_msg_id TEXT    NOT NULL,
    -- Inbox entries still pointing here; the message is deleted when it reaches 0.
    refs          INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (from_user_id, client_msg_id);

CREATE TABLE inbox (
    user_id    INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;
CREATE INDEX inbox_by_message ON inbox (message_id);

-- The version allocator's persisted upper bounds.
CREATE TABLE seq_max (
    user_id     INTEGER PRIMARY KEY,
    max_version INTEGER NOT NULL
);
