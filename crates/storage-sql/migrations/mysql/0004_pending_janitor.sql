-- The pending-delivery janitor: when a mark was left, and until when a logic node has
-- claimed it to re-drive the send.
ALTER TABLE pending_entries
    ADD COLUMN created_at_ms    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN claimed_until_ms BIGINT NOT NULL DEFAULT 0,
    ADD KEY pending_entries_by_time (created_at_ms);

-- At most one entry per user and message, whoever writes it: two attempts of one send that
-- race (a retry and the janitor, on two logic nodes) cannot both deliver it.
ALTER TABLE inbox
    DROP KEY inbox_by_message,
    ADD UNIQUE KEY inbox_by_message (message_id, user_id);
