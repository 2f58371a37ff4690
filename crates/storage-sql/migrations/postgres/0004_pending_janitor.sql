-- The pending-delivery janitor: when a mark was left, and until when a logic node has
-- claimed it to re-drive the send.
ALTER TABLE pending_entries
    ADD COLUMN created_at_ms    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN claimed_until_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pending_entries_by_time ON pending_entries (created_at_ms);

-- At most one entry per user and message, whoever writes it: two attempts of one send that
-- race (a retry and the janitor, on two logic nodes) cannot both deliver it.
DROP INDEX inbox_by_message;
CREATE UNIQUE INDEX inbox_by_message ON inbox (message_id, user_id);
