-- Search: each message's terms (missive-search: plain ASCII words), indexed as a full-text
-- vector of the `simple` configuration (no stemming, no stop words).
ALTER TABLE messages ADD COLUMN terms TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_terms ON messages USING GIN (to_tsvector('simple', terms));
