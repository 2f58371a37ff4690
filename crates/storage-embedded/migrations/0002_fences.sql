-- The newest version committed to each user's inbox. An inbox entry at or below it is refused
-- as stale, so each inbox commits in version order whichever logic node writes it.
CREATE TABLE inbox_heads (
    user_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO inbox_heads (user_id, version)
SELECT user_id, MAX(version) FROM inbox GROUP BY user_id;
