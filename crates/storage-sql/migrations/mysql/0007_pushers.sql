-- Offline push targets (missive.v1.Pusher, encoded), one per user and endpoint, on the user's
-- shard. Endpoints are ASCII URLs of at most 1024 bytes.
CREATE TABLE pushers (
    user_id   BIGINT        NOT NULL,
    endpoint  VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    device_id BIGINT        NOT NULL,
    body      BLOB          NOT NULL,
    PRIMARY KEY (user_id, endpoint)
) ENGINE = InnoDB;
