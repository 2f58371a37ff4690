-- Messages stored before search existed (migration 6) have no terms. A background pass
-- (`backfill_batch` and `backfill_write` in message.rs, run by the indexer) gives each its terms, in message id order, up to the
-- newest such message there was when this migration ran; `next_id` is where it goes on.
CREATE TABLE search_backfill (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    next_id INTEGER NOT NULL,
    upto    INTEGER NOT NULL
);
INSERT INTO search_backfill (id, next_id, upto)
SELECT 0, 0, COALESCE(MAX(message_id), 0) FROM messages WHERE terms = '';
