-- Messages stored before search existed (migration 6) have no terms. A background pass
-- (`backfill_terms` in message.rs) gives each its terms, in message id order, up to the
-- newest such message there was when this migration ran; `next_id` is where it goes on.
CREATE TABLE search_backfill (
    id      INT    NOT NULL PRIMARY KEY,
    next_id BIGINT NOT NULL,
    upto    BIGINT NOT NULL
);
INSERT INTO search_backfill (id, next_id, upto)
SELECT 0, 0, COALESCE(MAX(message_id), 0) FROM messages WHERE terms = '';
