-- Operations data: the hourly statistics and their inputs, and the audit log. Samples,
-- closed periods and the audit log live on shard 0; activity lives on the user's shard.

-- New registrations per period are counted by creation time.
CREATE INDEX accounts_by_creation ON accounts (created_at_ms);

-- One row per node and sampling slot: online devices then, messages counted since the
-- node's previous sample. Deleted once the period holding the slot is closed.
CREATE TABLE ops_samples (
    slot_ms            BIGINT       NOT NULL,
    node               VARCHAR(128) NOT NULL,
    online             BIGINT       NOT NULL,
    messages_sent      BIGINT       NOT NULL,
    messages_delivered BIGINT       NOT NULL,
    PRIMARY KEY (slot_ms, node)
);

-- Users active in a period, each once. Deleted once the period is closed.
CREATE TABLE ops_active (
    period_start_ms BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    PRIMARY KEY (period_start_ms, user_id)
);

-- Closed periods, kept.
CREATE TABLE ops_periods (
    start_ms           BIGINT NOT NULL PRIMARY KEY,
    period_s           BIGINT NOT NULL,
    registered_users   BIGINT NOT NULL,
    new_registrations  BIGINT NOT NULL,
    online_peak        BIGINT NOT NULL,
    online_average     DOUBLE PRECISION NOT NULL,
    samples            BIGINT NOT NULL,
    messages_sent      BIGINT NOT NULL,
    messages_delivered BIGINT NOT NULL,
    active_users       BIGINT NOT NULL
);

-- Every operator action, kept.
CREATE TABLE ops_audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms   BIGINT       NOT NULL,
    actor   VARCHAR(255) NOT NULL,
    address VARCHAR(255) NOT NULL,
    action  VARCHAR(64)  NOT NULL,
    target  VARCHAR(255) NOT NULL,
    detail  TEXT         NOT NULL,
    code    BIGINT       NOT NULL
);
