-- One shard of Missive's store. Every shard has every table; a row lives on the shard of the
-- user it belongs to (user_id % shard count), except where a comment says otherwise.

-- Which shard this database is, so that a changed shard list is refused, not misread.
CREATE TABLE shard_meta (
    id          BIGINT NOT NULL PRIMARY KEY,
    shard_index BIGINT NOT NULL,
    shard_count BIGINT NOT NULL
) ENGINE = InnoDB;

-- Id blocks: a store reserves ids a block at a time; global id = local id * count + index.
CREATE TABLE counters (
    name       VARCHAR(32) NOT NULL PRIMARY KEY,
    next_value BIGINT      NOT NULL
) ENGINE = InnoDB;
INSERT INTO counters (name, next_value) VALUES ('user', 1), ('device', 1), ('message', 1);

-- Accounts live on the shard their username hashes to, which is also user_id % count.
CREATE TABLE accounts (
    user_id       BIGINT       NOT NULL PRIMARY KEY,
    username      VARCHAR(64)  NOT NULL,
    nickname      VARCHAR(255) NOT NULL,
    password_hash TEXT         NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    version       BIGINT       NOT NULL DEFAULT 0,
    disabled      BIGINT       NOT NULL DEFAULT 0,
    UNIQUE KEY accounts_by_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sessions (
    user_id       BIGINT       NOT NULL,
    device_id     BIGINT       NOT NULL,
    device_name   VARCHAR(255) NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    acked_version BIGINT       NOT NULL DEFAULT 0,
    revoked       BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- On the shard the token hash points to: which session a token opens.
CREATE TABLE session_tokens (
    token_hash VARBINARY(64) NOT NULL PRIMARY KEY,
    user_id    BIGINT        NOT NULL,
    device_id  BIGINT        NOT NULL
) ENGINE = InnoDB;

CREATE TABLE delivery_marks (
    user_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, version),
    KEY delivery_marks_by_time (at_ms)
) ENGINE = InnoDB;

CREATE TABLE contact_changes (
    user_id         BIGINT       NOT NULL,
    version         BIGINT       NOT NULL,
    contact_user_id BIGINT       NOT NULL,
    username        VARCHAR(64)  NOT NULL,
    nickname        VARCHAR(255) NOT NULL,
    PRIMARY KEY (user_id, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A message is stored once per shard that holds an inbox entry for it; `refs` counts those
-- entries on this shard.
CREATE TABLE messages (
    message_id    BIGINT       NOT NULL PRIMARY KEY,
    from_user_id  BIGINT       NOT NULL,
    from_name     VARCHAR(64)  NOT NULL,
    to_user_id    BIGINT       NOT NULL,
    to_name       VARCHAR(64)  NOT NULL,
    kind          BIGINT       NOT NULL,
    text          MEDIUMTEXT   NOT NULL,
    sent_at_ms    BIGINT       NOT NULL,
    client_msg_id VARCHAR(128) NOT NULL,
    refs          BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- On the sender's shard: the sender's retry window, and the sender's inbox version.
CREATE TABLE sent_messages (
    from_user_id   BIGINT       NOT NULL,
    client_msg_id  VARCHAR(128) NOT NULL,
    message_id     BIGINT       NOT NULL,
    sender_version BIGINT       NOT NULL,
    PRIMARY KEY (from_user_id, client_msg_id),
    KEY sent_messages_by_message (message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- On the sender's shard: recipients on other shards whose entry is not yet written.
CREATE TABLE pending_entries (
    message_id BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id)
) ENGINE = InnoDB;

CREATE TABLE inbox (
    user_id    BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, version),
    KEY inbox_by_message (message_id)
) ENGINE = InnoDB;

-- The newest version committed to each inbox: the fence that keeps inboxes in version order.
CREATE TABLE inbox_heads (
    user_id BIGINT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) ENGINE = InnoDB;

CREATE TABLE seq_max (
    user_id     BIGINT NOT NULL PRIMARY KEY,
    max_version BIGINT NOT NULL
) ENGINE = InnoDB;
