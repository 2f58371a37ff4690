-- Search: each message's terms (missive-search), indexed by FTS5 through an external-content
-- table. Terms are plain ASCII words made by the logic's tokenizer, so FTS5's own tokenizer
-- only splits them at spaces.
--
-- New messages are indexed in batches, about once a second (`index_terms` in db.rs), not row
-- by row: FTS5 writes a segment per transaction and merges them as they pile up, which at
-- thousands of commits a second costs many times the data in rewrites. `search_progress`
-- says up to which message id the index holds; a change to a message already indexed (a
-- recall, an edit, its deletion) is applied to the index at once, by the triggers below.
ALTER TABLE messages ADD COLUMN terms TEXT NOT NULL DEFAULT '';
CREATE VIRTUAL TABLE message_terms USING fts5(
    terms, content = 'messages', content_rowid = 'message_id', detail = 'none'
);
CREATE TABLE search_progress (
    id   INTEGER PRIMARY KEY CHECK (id = 0),
    upto INTEGER NOT NULL
);
INSERT INTO search_progress (id, upto) VALUES (0, 0);
CREATE TRIGGER messages_terms_delete AFTER DELETE ON messages
WHEN old.terms <> '' AND old.message_id <= (SELECT upto FROM search_progress) BEGIN
    INSERT INTO message_terms (message_terms, rowid, terms)
    VALUES ('delete', old.message_id, old.terms);
END;
CREATE TRIGGER messages_terms_update AFTER UPDATE OF terms ON messages
WHEN old.message_id <= (SELECT upto FROM search_progress) AND old.terms <> new.terms BEGIN
    INSERT INTO message_terms (message_terms, rowid, terms)
    SELECT 'delete', old.message_id, old.terms WHERE old.terms <> '';
    INSERT INTO message_terms (rowid, terms) SELECT new.message_id, new.terms WHERE new.terms <> '';
END;

-- A hit is a message of the searching user's inbox: found by message and user at once.
DROP INDEX inbox_by_message;
CREATE INDEX inbox_by_message ON inbox (message_id, user_id);
