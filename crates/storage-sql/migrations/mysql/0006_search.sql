-- Search: each message's terms (missive-search: plain ASCII words, so InnoDB's FULLTEXT
-- parser only splits them at spaces, and no stop word or minimum length ever drops one).
ALTER TABLE messages
    ADD COLUMN terms MEDIUMTEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    ADD FULLTEXT INDEX messages_terms (terms);
