-- Contacts: one current entry per (owner, peer) on the owner's shard, under the owner's
-- version of its last change; the old change log was never written to.
DROP TABLE contact_changes;
CREATE TABLE contacts (
    owner_id BIGINT NOT NULL,
    peer_id  BIGINT NOT NULL,
    version  BIGINT NOT NULL,
    -- missive.v1.Contact, encoded.
    body     BYTEA  NOT NULL,
    PRIMARY KEY (owner_id, peer_id)
);
CREATE UNIQUE INDEX contacts_by_version ON contacts (owner_id, version);

-- The newest contact version committed per owner: the fence that keeps contact changes in
-- version order, as inbox_heads does for inboxes.
CREATE TABLE contact_heads (
    user_id BIGINT NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);

-- Groups live on shard (group_id - 2^50) % count; ids come from the 'group' counter.
INSERT INTO counters (name, next_value) VALUES ('group', 1);
CREATE TABLE chat_groups (
    group_id BIGINT NOT NULL PRIMARY KEY,
    revision BIGINT NOT NULL,
    -- missive.internal.v1.GroupRecord, encoded.
    body     BYTEA  NOT NULL
);
CREATE TABLE group_members (
    group_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    role         BIGINT NOT NULL,
    joined_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- Message fields added after version 1 of the protocol (missive.internal.v1.MessageExtra).
ALTER TABLE messages ADD COLUMN extra BYTEA NULL;
