-- Operations data: the hourly statistics and their inputs, and the audit log.

-- New registrations per period are counted by creation time.
CREATE INDEX accounts_by_creation ON accounts (created_at_ms);

-- One row per node and sampling slot: online devices then, messages counted since the
-- node's previous sample. Deleted once the period holding the slot is closed.
CREATE TABLE ops_samples (
    slot_ms            INTEGER NOT NULL,
    node               TEXT    NOT NULL,
    online             INTEGER NOT NULL,
    messages_sent      INTEGER NOT NULL,
    messages_delivered INTEGER NOT NULL,
    PRIMARY KEY (slot_ms, node)
) WITHOUT ROWID;

-- Users active in a period, each once. Deleted once the period is closed.
CREATE TABLE ops_active (
    period_start_ms INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    PRIMARY KEY (period_start_ms, user_id)
) WITHOUT ROWID;

-- Closed periods, kept.
CREATE TABLE ops_periods (
    start_ms           INTEGER PRIMARY KEY,
    period_s           INTEGER NOT NULL,
    registered_users   INTEGER NOT NULL,
    new_registrations  INTEGER NOT NULL,
    online_peak        INTEGER NOT NULL,
    online_average     REAL    NOT NULL,
    samples            INTEGER NOT NULL,
    messages_sent      INTEGER NOT NULL,
    messages_delivered INTEGER NOT NULL,
    active_users       INTEGER NOT NULL
);

-- Every operator action, kept.
CREATE TABLE ops_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    address TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    detail  TEXT    NOT NULL,
    code    INTEGER NOT NULL
);
