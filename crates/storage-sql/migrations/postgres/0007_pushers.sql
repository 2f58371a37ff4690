-- Offline push targets (missive.v1.Pusher, encoded), one per user and endpoint, on the user's
-- shard.
CREATE TABLE pushers (
    user_id   BIGINT NOT NULL,
    endpoint  TEXT   NOT NULL,
    device_id BIGINT NOT NULL,
    body      BYTEA  NOT NULL,
    PRIMARY KEY (user_id, endpoint)
);
