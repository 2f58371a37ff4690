-- Logical shards (docs/scale-out.md §3). Rows are placed on a fixed number of logical shards
-- (user_id % L, (group_id - 2^50) % L, the token hash % L); the shard map on the directory
-- database (the first of the list) says which database holds each.

-- Every database: the logical shards it holds, and in what state. A write locks its logical
-- shard's row shared and goes ahead only in state 0 (held here) or 1 (held here and being
-- copied away: the write notes the keys it touched in shard_dirty). 2: fenced for the
-- switch-over of a move, 3: moved away, 4: being copied here.
CREATE TABLE logical_shards (
    shard BIGINT  NOT NULL PRIMARY KEY,
    state INTEGER NOT NULL
) ENGINE = InnoDB;

-- The keys written while their logical shard was being copied away, for the move to copy
-- again. kind 1: a user id, 2: a group id, 3: a token hash. `touch` grows with every write,
-- so that the mover deletes a key only if nothing wrote it after the mover read it.
CREATE TABLE shard_dirty (
    shard BIGINT        NOT NULL,
    kind  INTEGER       NOT NULL,
    item  VARBINARY(64) NOT NULL,
    touch BIGINT        NOT NULL,
    PRIMARY KEY (shard, kind, item)
) ENGINE = InnoDB;

-- A token's logical shard, so that a move finds the tokens of one without hashing them all.
-- -1: written before logical shards existed, filled in when the map is created.
ALTER TABLE session_tokens ADD COLUMN shard BIGINT NOT NULL DEFAULT -1;
CREATE INDEX session_tokens_by_shard ON session_tokens (shard);

-- The directory database only: the shard map, its version, and the databases it names.
CREATE TABLE shard_map_meta (
    id             INT    NOT NULL PRIMARY KEY,
    version        BIGINT NOT NULL,
    logical_shards BIGINT NOT NULL
) ENGINE = InnoDB;
CREATE TABLE shard_databases (
    id  BIGINT NOT NULL PRIMARY KEY,
    url TEXT   NOT NULL
) ENGINE = InnoDB;
CREATE TABLE shard_map (
    shard       BIGINT NOT NULL PRIMARY KEY,
    database_id BIGINT NOT NULL
) ENGINE = InnoDB;
-- The map version each node runs on, as it last said: a move waits for every live node to
-- run on the map that no longer sends it to the old copy before deleting that copy.
CREATE TABLE shard_map_nodes (
    node       VARCHAR(64) NOT NULL PRIMARY KEY,
    version    BIGINT      NOT NULL,
    seen_at_ms BIGINT      NOT NULL
) ENGINE = InnoDB;
-- Moves in progress (`missive admin shards move`), one per logical shard: from which
-- database to which, how far (1: copying, 2: switching over, 3: cleaning up), and when its
-- mover last showed it was alive.
CREATE TABLE shard_moves (
    shard         BIGINT  NOT NULL PRIMARY KEY,
    from_id       BIGINT  NOT NULL,
    to_id         BIGINT  NOT NULL,
    phase         INTEGER NOT NULL,
    started_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
) ENGINE = InnoDB;
