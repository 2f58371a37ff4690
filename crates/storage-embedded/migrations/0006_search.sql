-- Search: each message's terms (missive-search), indexed by FTS5 through an external-content
-- table that triggers keep in step with `messages`. Terms are plain ASCII words made by the
-- logic's tokenizer, so FTS5's own tokenizer only splits them at spaces.
ALTER TABLE messages ADD COLUMN terms TEXT NOT NULL DEFAULT '';
CREATE VIRTUAL TABLE message_terms USING fts5(
    terms, content = 'messages', content_rowid = 'message_id', detail = 'none'
);
CREATE TRIGGER messages_terms_insert AFTER INSERT ON messages WHEN new.terms <> '' BEGIN
    INSERT INTO message_terms (rowid, terms) VALUES (new.message_id, new.terms);
END;
CREATE TRIGGER messages_terms_delete AFTER DELETE ON messages WHEN old.terms <> '' BEGIN
    INSERT INTO message_terms (message_terms, rowid, terms)
    VALUES ('delete', old.message_id, old.terms);
END;
CREATE TRIGGER messages_terms_update AFTER UPDATE OF terms ON messages BEGIN
    INSERT INTO message_terms (message_terms, rowid, terms)
    SELECT 'delete', old.message_id, old.terms WHERE old.terms <> '';
    INSERT INTO message_terms (rowid, terms) SELECT new.message_id, new.terms WHERE new.terms <> '';
END;

-- A hit is a message of the searching user's inbox: found by message and user at once.
DROP INDEX inbox_by_message;
CREATE INDEX inbox_by_message ON inbox (message_id, user_id);
