//! The shard map: rows are placed on a fixed number of logical shards, and the map, kept on
//! the directory database (the first url), says which database holds each. Every node loads
//! the map at open, reads its version every `map_poll`, and reloads it when it changed or when
//! a database refused a write because it no longer holds the logical shard.
//!
//! Each database also knows which logical shards it holds (`logical_shards`), and that is what
//! makes a stale map harmless: every write locks the rows of the logical shards it touches, in
//! shared mode, and goes ahead only where the database holds them. A move fences a logical
//! shard by changing its state there, which waits for the writes in flight and turns away the
//! later ones (docs/scale-out.md §3).

use crate::database::{Database, SqlConfig};
use crate::primary::Primary;
use crate::queries::Queries;
use crate::{Result, SqlError};
use serde_json::{Value, json};
use sqlx::{Any, AnyPool, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Logical shards of a map made from a list of databases: the largest multiple of the list's
/// length not above this.
pub const LOGICAL_SHARDS_MAX: u64 = 1024;

/// The kinds of id minted per logical shard, with the size of the blocks reserved at once.
const COUNTERS: [(&str, u64); 4] = [("user", 16), ("device", 64), ("message", 1024), ("group", 16)];

/// A logical shard's state on a database (`logical_shards.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Held here: written and read here.
    Held = 0,
    /// Held here and being copied away: writes note the keys they touch.
    Copying = 1,
    /// The switch-over of a move: no write until the map names the new database.
    Fenced = 2,
    /// Moved away: what is left here is deleted by the move.
    Gone = 3,
    /// Being copied here: only the move writes it.
    Incoming = 4,
}

impl ShardState {
    pub(crate) fn of(value: i64) -> Option<ShardState> {
        Some(match value {
            0 => ShardState::Held,
            1 => ShardState::Copying,
            2 => ShardState::Fenced,
            3 => ShardState::Gone,
            4 => ShardState::Incoming,
            _ => return None,
        })
    }

    /// Whether writers may write the logical shard here.
    pub fn writable(self) -> bool {
        matches!(self, ShardState::Held | ShardState::Copying)
    }
}

/// Where each logical shard lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// Grows with every change.
    pub version: u64,
    pub logical_shards: u64,
    /// The databases, by id.
    pub databases: BTreeMap<u64, String>,
    /// The id of the database holding each logical shard, in logical shard order.
    pub owners: Vec<u64>,
}

impl ShardMap {
    /// The logical shard of a user id, a group's local id or a hash.
    pub fn shard_of(&self, key: u64) -> u64 {
        key % self.logical_shards
    }

    /// The database holding logical shard `shard`.
    pub fn owner(&self, shard: u64) -> u64 {
        self.owners[shard as usize]
    }

    /// The map a list of `count` databases starts with: database `i` holds the logical shards
    /// `l` with `l % count == i`. With `logical` a multiple of `count`, a user `u` placed by
    /// `u % count` before maps existed is on the same database under this map, since
    /// `(u % logical) % count == u % count`.
    fn initial(urls: &[String], logical: u64) -> ShardMap {
        let count = urls.len() as u64;
        ShardMap {
            version: 1,
            logical_shards: logical,
            databases: urls.iter().enumerate().map(|(i, url)| (i as u64, url.clone())).collect(),
            owners: (0..logical).map(|shard| shard % count).collect(),
        }
    }

    /// The map's version on the directory, if there is a map.
    pub(crate) async fn version(directory: &AnyPool) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT version FROM shard_map_meta WHERE id = 1")
            .fetch_optional(directory)
            .await?;
        Ok(row.map(|row| row.try_get::<i64, _>(0)).transpose()?.map(|v| v as u64))
    }

    /// The map as the directory has it, if there is one: read between two reads of its
    /// version that agree, so that no half of a change is read.
    pub(crate) async fn load(directory: &AnyPool) -> Result<Option<ShardMap>> {
        loop {
            let Some(meta) =
                sqlx::query("SELECT version, logical_shards FROM shard_map_meta WHERE id = 1")
                    .fetch_optional(directory)
                    .await?
            else {
                return Ok(None);
            };
            let version = meta.try_get::<i64, _>(0)? as u64;
            let logical = meta.try_get::<i64, _>(1)? as u64;
            let mut databases = BTreeMap::new();
            for row in
                sqlx::query("SELECT id, url FROM shard_databases").fetch_all(directory).await?
            {
                databases.insert(row.try_get::<i64, _>(0)? as u64, row.try_get::<String, _>(1)?);
            }
            let mut owners = vec![u64::MAX; logical as usize];
            for row in
                sqlx::query("SELECT shard, database_id FROM shard_map").fetch_all(directory).await?
            {
                let shard = row.try_get::<i64, _>(0)? as u64;
                let owner = row.try_get::<i64, _>(1)? as u64;
                if let Some(slot) = owners.get_mut(shard as usize) {
                    *slot = owner;
                }
            }
            if ShardMap::version(directory).await? != Some(version) {
                continue;
            }
            if let Some(shard) = owners.iter().position(|owner| !databases.contains_key(owner)) {
                return Err(SqlError::Corrupt(format!(
                    "the shard map names no database for logical shard {shard}"
                )));
            }
            return Ok(Some(ShardMap { version, logical_shards: logical, databases, owners }));
        }
    }
}

/// The map with every database it names opened: what a node routes by.
pub(crate) struct Routing {
    pub map: ShardMap,
    pub databases: BTreeMap<u64, Arc<Database>>,
}

impl Routing {
    /// The database holding logical shard `shard`.
    pub fn database(&self, shard: u64) -> &Arc<Database> {
        &self.databases[&self.map.owner(shard)]
    }

    /// The map with its databases opened, reusing those of `previous` that it still names.
    pub async fn open(
        map: ShardMap,
        previous: Option<&Routing>,
        config: &SqlConfig,
        queries: &Arc<Queries>,
    ) -> Result<Routing> {
        let mut databases = BTreeMap::new();
        for (&id, url) in &map.databases {
            let kept = previous.and_then(|p| p.databases.get(&id)).filter(|db| db.url == *url);
            let database = match kept {
                Some(database) => database.clone(),
                None => {
                    let opened =
                        Database::open(id, url, None, config, queries, map.logical_shards).await?;
                    Arc::new(opened)
                }
            };
            databases.insert(id, database);
        }
        Ok(Routing { map, databases })
    }
}

/// Makes the map from `config.urls` unless the directory (`urls[0]`) has one, and returns
/// the map with its databases opened. Every step is idempotent: nodes making it at once, or
/// one starting again after a crash, write the same rows, and the map's version row, written
/// last, says it is complete.
pub(crate) async fn open_or_make(
    directory: &AnyPool,
    config: &SqlConfig,
    queries: &Arc<Queries>,
) -> Result<Routing> {
    if let Some(map) = ShardMap::load(directory).await? {
        return Routing::open(map, None, config, queries).await;
    }
    let count = config.urls.len() as u64;
    let logical = config.logical_shards.unwrap_or(count * (LOGICAL_SHARDS_MAX / count.max(1)));
    if count == 0 || logical == 0 || !logical.is_multiple_of(count) {
        return Err(SqlError::LogicalShards { logical, databases: count });
    }
    let map = ShardMap::initial(&config.urls, logical);
    let mut databases = BTreeMap::new();
    for (&id, url) in &map.databases {
        let database = Database::open(id, url, Some(count), config, queries, logical).await?;
        prepare(&database.pool(), queries, &map, id).await?;
        databases.insert(id, Arc::new(database));
    }
    write_map(directory, queries, &map).await?;
    tracing::info!(databases = count, logical_shards = logical, "made the shard map");
    // Whoever wrote the map first wrote the one every node uses.
    let map = ShardMap::load(directory).await?.ok_or(SqlError::NotFound("shard map"))?;
    if map.databases.iter().any(|(id, url)| databases.get(id).is_none_or(|db| db.url != *url)) {
        return Routing::open(map, None, config, queries).await;
    }
    Ok(Routing { map, databases })
}

/// Readies database `id` for the map: its logical shards, held; the counters of each,
/// starting above every id the database minted before maps existed (`local × count +
/// index`); and the logical shard of every token it holds.
async fn prepare(pool: &AnyPool, q: &Queries, map: &ShardMap, id: u64) -> Result<()> {
    let count = map.databases.len() as u64;
    let held: Vec<u64> = (0..map.logical_shards).filter(|&s| map.owner(s) == id).collect();
    let rows: Vec<Value> = held.iter().map(|&s| json!([s, ShardState::Held as i64])).collect();
    sqlx::query(q.shards_insert).bind(Value::Array(rows).to_string()).execute(pool).await?;
    let mut counters = Vec::new();
    for (name, _) in COUNTERS {
        let legacy = sqlx::query(q.counter_read).bind(name).fetch_optional(pool).await?;
        let legacy = match legacy {
            Some(row) => row.try_get::<i64, _>(0)? as u64,
            None => 0,
        };
        for &shard in &held {
            counters
                .push(json!([counter_name(name, shard), legacy * count / map.logical_shards + 1]));
        }
    }
    sqlx::query(q.counters_insert).bind(Value::Array(counters).to_string()).execute(pool).await?;
    loop {
        let rows = sqlx::query(q.tokens_unplaced).fetch_all(pool).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut placed = Vec::with_capacity(rows.len());
        for row in rows {
            let hash: Vec<u8> = row.try_get(0)?;
            let shard = missive_rpc::stable_hash(&hash) % map.logical_shards;
            placed.push(json!([base64(&hash), shard]));
        }
        sqlx::query(q.tokens_place).bind(Value::Array(placed).to_string()).execute(pool).await?;
    }
}

/// Writes `map` to the directory unless it has one: the databases, the owners, then the
/// version row that completes it.
async fn write_map(directory: &AnyPool, q: &Queries, map: &ShardMap) -> Result<()> {
    let mut tx = directory.begin().await?;
    let databases: Vec<Value> = map.databases.iter().map(|(id, url)| json!([id, url])).collect();
    sqlx::query(q.map_databases_insert)
        .bind(Value::Array(databases).to_string())
        .execute(&mut *tx)
        .await?;
    let owners: Vec<Value> =
        map.owners.iter().enumerate().map(|(shard, owner)| json!([shard, owner])).collect();
    sqlx::query(q.map_owners_insert)
        .bind(Value::Array(owners).to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query(q.map_meta_insert)
        .bind(map.version as i64)
        .bind(map.logical_shards as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The name of a counter of one logical shard in the `counters` table.
pub(crate) fn counter_name(kind: &str, shard: u64) -> String {
    format!("{kind}:{shard}")
}

/// The names of every counter of one logical shard.
pub(crate) fn counter_names(shard: u64) -> Vec<String> {
    COUNTERS.iter().map(|(kind, _)| counter_name(kind, shard)).collect()
}

/// The block size of a kind of counter.
pub(crate) fn counter_block(kind: &str) -> u64 {
    COUNTERS.iter().find(|(name, _)| *name == kind).map_or(16, |(_, block)| *block)
}

/// Bytes as the JSON statements take them (base64, as the group commit's).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A key a write touches, for a move in progress to copy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Item<'a> {
    User(u64),
    /// A group, by its local id (the id less 2^50).
    Group(u64),
    Token(&'a [u8]),
    /// A logical shard's own rows (its counters, the pending marks of its senders), which a
    /// move copies whole at the switch-over: nothing to note.
    Shard(u64),
}

impl Item<'_> {
    pub fn shard(&self, logical: u64) -> u64 {
        match self {
            Item::User(id) | Item::Group(id) => id % logical,
            Item::Token(hash) => missive_rpc::stable_hash(hash) % logical,
            Item::Shard(shard) => *shard,
        }
    }

    /// The row of `shard_dirty` that notes it: (logical shard, kind, key in base64).
    fn dirty(&self, logical: u64) -> Option<(u64, i64, String)> {
        let (kind, key) = match self {
            Item::User(id) => (1, base64(&id.to_be_bytes())),
            Item::Group(id) => (2, base64(&id.to_be_bytes())),
            Item::Token(hash) => (3, base64(hash)),
            Item::Shard(_) => return None,
        };
        Some((self.shard(logical), kind, key))
    }
}

/// Locks the rows of `shards` in `logical_shards` shared, until the transaction ends, and
/// returns their states; a shard the database has no row for is absent.
pub(crate) async fn lock_shards(
    tx: &mut Transaction<'_, Any>,
    q: &Queries,
    shards: &BTreeSet<u64>,
) -> Result<HashMap<u64, ShardState>> {
    let ids: Vec<Value> = shards.iter().map(|&s| Value::from(s)).collect();
    let rows =
        sqlx::query(q.shards_lock).bind(Value::Array(ids).to_string()).fetch_all(&mut **tx).await?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in rows {
        let shard = row.try_get::<i64, _>(0)? as u64;
        let state = row.try_get::<i64, _>(1)?;
        let state = ShardState::of(state)
            .ok_or_else(|| SqlError::Corrupt(format!("logical shard {shard} in state {state}")))?;
        states.insert(shard, state);
    }
    Ok(states)
}

/// Notes `items` as written, for the move copying their logical shards away.
pub(crate) async fn note_dirty(
    tx: &mut Transaction<'_, Any>,
    q: &Queries,
    logical: u64,
    items: &[Item<'_>],
) -> Result<()> {
    // Each key once (an upsert may not touch a row twice), and in one order for every
    // writer, so that two never wait on each other's keys in a cycle.
    let keys: BTreeSet<(u64, i64, String)> =
        items.iter().filter_map(|item| item.dirty(logical)).collect();
    if keys.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = keys.into_iter().map(|(s, k, i)| json!([s, k, i])).collect();
    sqlx::query(q.dirty_note).bind(Value::Array(rows).to_string()).execute(&mut **tx).await?;
    Ok(())
}

/// Locks the logical shards of `items` and checks that this database may write them; notes
/// the items of those being copied away. False when it may not (the caller's map is stale,
/// or a move is switching over).
pub(crate) async fn claim_items(
    tx: &mut Transaction<'_, Any>,
    q: &Queries,
    logical: u64,
    items: &[Item<'_>],
) -> Result<bool> {
    let shards: BTreeSet<u64> = items.iter().map(|item| item.shard(logical)).collect();
    let states = lock_shards(tx, q, &shards).await?;
    if shards.iter().any(|s| !states.get(s).is_some_and(|state| state.writable())) {
        return Ok(false);
    }
    let copying: Vec<Item<'_>> = items
        .iter()
        .filter(|item| states[&item.shard(logical)] == ShardState::Copying)
        .copied()
        .collect();
    note_dirty(tx, q, logical, &copying).await?;
    Ok(true)
}

/// The directory database's primary, with a small pool.
pub(crate) async fn directory(config: &SqlConfig) -> Result<Arc<Primary>> {
    let url = config.urls.first().ok_or(SqlError::NoShards)?;
    let mut small = config.clone();
    small.connections_per_shard = 2;
    Primary::open(0, url, &small).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_from_a_list_keeps_every_id_where_the_list_put_it() {
        for count in 1..=12u64 {
            let urls: Vec<String> = (0..count).map(|i| format!("mysql://db{i}")).collect();
            let logical = count * (LOGICAL_SHARDS_MAX / count);
            let map = ShardMap::initial(&urls, logical);
            for id in (0..100_000u64).step_by(7).chain([u64::MAX / 2, i64::MAX as u64]) {
                assert_eq!(map.owner(map.shard_of(id)), id % count, "id {id} of {count}");
            }
            assert_eq!(map.owners.len() as u64, logical);
            assert!(logical > LOGICAL_SHARDS_MAX - count && logical <= LOGICAL_SHARDS_MAX);
        }
    }

    #[test]
    fn counters_of_a_made_map_start_above_every_legacy_id() {
        // A legacy id is `local × count + index` with local below the counter's next value;
        // a new one is `local × logical + shard` with local at least the seeded start.
        for count in [1u64, 2, 3, 5, 7] {
            let logical = count * (LOGICAL_SHARDS_MAX / count);
            for legacy_next in [1u64, 2, 17, 1_000, 123_457] {
                let newest_legacy = (legacy_next - 1) * count + (count - 1);
                let start = legacy_next * count / logical + 1;
                for shard in 0..logical {
                    assert!(start * logical + shard > newest_legacy);
                }
            }
        }
    }
}
