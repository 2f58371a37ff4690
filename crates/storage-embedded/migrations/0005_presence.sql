-- Presence: who may see it (a missive.v1.PresenceVisibility), and when the user's last long
-- link closed.
ALTER TABLE accounts ADD COLUMN presence_visibility INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_seen_ms INTEGER NOT NULL DEFAULT 0;
