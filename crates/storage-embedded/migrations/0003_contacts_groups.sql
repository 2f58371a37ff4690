-- Contacts (data type 2): one current entry per (owner, peer), under the owner's version of
-- its last change. Sync reads the entries changed since a version; an entry is never deleted
-- (relation NONE is how a removal reaches the owner's devices). The old change log was never
-- written to.
DROP TABLE contact_changes;
CREATE TABLE contacts (
    owner_id INTEGER NOT NULL,
    peer_id  INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    -- missive.v1.Contact, encoded.
    body     BLOB    NOT NULL,
    PRIMARY KEY (owner_id, peer_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX contacts_by_version ON contacts (owner_id, version);

-- Groups: the profile (missive.internal.v1.GroupRecord, encoded) and the members. Group ids
-- are 2^50 plus the local id (see missive_proto::ids).
CREATE TABLE groups (
    local_id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision INTEGER NOT NULL,
    body     BLOB    NOT NULL
);
CREATE TABLE group_members (
    group_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    role         INTEGER NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;

-- Message fields added after version 1 of the protocol (missive.internal.v1.MessageExtra).
ALTER TABLE messages ADD COLUMN extra BLOB;
