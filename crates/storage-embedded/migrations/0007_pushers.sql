-- Offline push targets (missive.v1.Pusher, encoded), one per user and endpoint.
CREATE TABLE pushers (
    user_id   INTEGER NOT NULL,
    endpoint  TEXT    NOT NULL,
    device_id INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    PRIMARY KEY (user_id, endpoint)
) WITHOUT ROWID;
