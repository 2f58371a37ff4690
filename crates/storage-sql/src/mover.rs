//! Moving a logical shard to another database while traffic goes on (`missive admin shards
//! move`), in steps recorded on the directory (`shard_moves`), so that a mover that dies is
//! resumed or rolled back from where it was:
//!
//! 1. **Copying.** The target records the shard as incoming (only the mover writes it
//!    there); the source marks it copying, which waits for the writes in flight and makes
//!    every later write note the keys it touched (`shard_dirty`). Every user, group and token
//!    of the shard is copied, then the noted keys, again and again while fewer remain.
//! 2. **Switching.** The source fences the shard (writes wait), the last noted keys and the
//!    shard's own rows (its counters, its senders' pending marks) are copied, the target
//!    holds the shard, the map names the target under a new version, and the source lets go
//!    of it (gone: a write of a stale map is turned away for good).
//! 3. **Cleaning.** Once every live node runs on the new map (or a minute has passed), what
//!    the source held of the shard is deleted, and the move's record with it.
//!
//! A user's rows are copied whole, except the inbox, which only grows at its head: the
//! target gets the entries above the newest it has, and a copy of each message they hold
//! (or one more reference to the copy it has). Deletions on the source during the copy (the
//! collector's) are not copied: the target's collector makes the same ones later.

use crate::database::{Dialect, SqlConfig};
use crate::map::{ShardMap, ShardState};
use crate::primary::Primary;
use crate::rows::{
    self, COUNTERS, GROUP_TABLES, INBOX, MESSAGES, PENDING, TOKENS, USER_TABLES, fetch_keyed,
    insert_chunked,
};
use crate::{Result, SqlError};
use base64::Engine as _;
use missive_proto::ids::GROUP_ID_BASE;
use serde_json::{Value, json};
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Users (or groups, or tokens) copied per transaction.
const BATCH: usize = 200;
/// The noted keys left at which the copying stops and the switch-over begins.
const SWITCH_AT: usize = 200;
/// Rounds of copying noted keys before switching over however many are left.
const ROUNDS: usize = 20;
/// How long a move waits for every live node to run on the new map before it deletes what
/// the source held.
const NODES_WAIT: Duration = Duration::from_secs(60);
/// A node that has not said which map it runs on for this long is taken for gone.
const NODE_SILENT: Duration = Duration::from_secs(10);
/// A move record updated this recently belongs to a mover that may still be running.
const MOVER_ALIVE: Duration = Duration::from_secs(15);

/// Where a move is, as `shard_moves.phase` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Copying = 1,
    Switching = 2,
    Cleaning = 3,
}

/// What a move reports as it goes.
#[derive(Debug, Clone)]
pub struct Progress {
    pub shard: u64,
    pub step: &'static str,
    /// Keys (users, groups, tokens) copied in this step, and of how many.
    pub done: u64,
    pub total: u64,
}

/// What a finished move took.
#[derive(Debug, Clone, Default)]
pub struct MoveOutcome {
    pub shard: u64,
    pub from: u64,
    pub to: u64,
    pub users: u64,
    /// Noted keys copied again after the first copy.
    pub recopied: u64,
    /// The copy and its rounds of noted keys, before the fence.
    pub copy: Duration,
    /// From the fence to the map naming the target: how long writes of the shard waited.
    pub switch_over: Duration,
    /// Waiting for the nodes, and deleting what the source held.
    pub clean: Duration,
    pub total: Duration,
}

/// How a move goes.
#[derive(Debug, Clone, Copy)]
pub struct MoveOptions {
    /// Resume a move even if its record was updated in the last 15 s: its mover is known to
    /// be dead.
    pub force: bool,
    /// The share of the time the mover works, outside the switch-over; it rests the rest, so
    /// that the databases keep serving their traffic (1: as fast as it can).
    pub pace: f64,
}

impl Default for MoveOptions {
    fn default() -> MoveOptions {
        MoveOptions { force: false, pace: 0.5 }
    }
}

/// The mover's handles: the directory, and the source and target databases.
struct Mover {
    dialect: Dialect,
    logical: u64,
    shard: u64,
    directory: AnyPool,
    from: u64,
    to: u64,
    source: AnyPool,
    target: AnyPool,
    report: Box<dyn FnMut(&Progress) + Send + Sync>,
    pace: f64,
}

/// The map on the directory (`urls[0]`).
pub async fn load_map(urls: &[String]) -> Result<ShardMap> {
    let directory = crate::map::directory(&SqlConfig::new(urls.to_vec())).await?.pool();
    let map = ShardMap::load(&directory).await?.ok_or(SqlError::NotFound("shard map"));
    directory.close().await;
    map
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Moves logical shard `shard` to the database at `to_url` (registered in the map if new),
/// or resumes its move there if one was interrupted.
pub async fn move_shard(
    urls: &[String],
    shard: u64,
    to_url: &str,
    options: MoveOptions,
    report: impl FnMut(&Progress) + Send + Sync + 'static,
) -> Result<MoveOutcome> {
    let mut config = SqlConfig::new(urls.to_vec());
    config.connections_per_shard = 4;
    let directory = crate::map::directory(&config).await?.pool();
    let map = ShardMap::load(&directory).await?.ok_or(SqlError::NotFound("shard map"))?;
    if shard >= map.logical_shards {
        return Err(SqlError::NotFound("logical shard"));
    }
    let dialect = Dialect::of(&urls[0])?;
    let recorded = recorded_move(&directory, dialect, shard).await?;
    let to = match map.databases.iter().find(|(_, url)| *url == to_url) {
        Some((&id, _)) => id,
        None if let Some(recorded) = recorded => recorded.to,
        None => register_database(&directory, dialect, &config, to_url).await?,
    };
    let from = match recorded {
        Some(recorded) if recorded.to != to => {
            return Err(SqlError::Failed(format!(
                "logical shard {shard} is being moved to database {}: resume that move or \
                 roll it back first",
                recorded.to
            )));
        }
        Some(recorded) => {
            if !options.force {
                check_mover_gone(&recorded)?;
            }
            recorded.from
        }
        None => map.owner(shard),
    };
    if recorded.is_none() && from == to {
        return Err(SqlError::Failed(format!("logical shard {shard} is on database {to} already")));
    }
    let map = ShardMap::load(&directory).await?.ok_or(SqlError::NotFound("shard map"))?;
    let mut mover =
        Mover::open(&config, &map, shard, from, to, directory, Box::new(report)).await?;
    mover.pace = options.pace.clamp(0.01, 1.0);
    mover.run(recorded.map(|r| r.phase)).await
}

/// The moves that spread the logical shards evenly over `urls` (the whole new list, in
/// order): each database of the list keeps as many of its shards as its share allows, and
/// the others (those over a share, and all of those on databases not in the list) go to the
/// databases under theirs, in list order.
pub fn rebalance_plan(map: &ShardMap, urls: &[String]) -> Vec<(u64, String)> {
    let count = urls.len() as u64;
    if count == 0 {
        return Vec::new();
    }
    let share = |i: u64| map.logical_shards / count + u64::from(i < map.logical_shards % count);
    let mut held: Vec<Vec<u64>> = vec![Vec::new(); urls.len()];
    let mut homeless = Vec::new();
    for shard in 0..map.logical_shards {
        let url = &map.databases[&map.owner(shard)];
        match urls.iter().position(|u| u == url) {
            Some(i) => held[i].push(shard),
            None => homeless.push(shard),
        }
    }
    for (i, shards) in held.iter_mut().enumerate() {
        while shards.len() as u64 > share(i as u64) {
            homeless.push(shards.pop().expect("over its share"));
        }
    }
    homeless.sort_unstable();
    let mut homeless = homeless.into_iter();
    let mut plan = Vec::new();
    for (i, shards) in held.iter().enumerate() {
        for _ in shards.len() as u64..share(i as u64) {
            if let Some(shard) = homeless.next() {
                plan.push((shard, urls[i].clone()));
            }
        }
    }
    plan
}

/// Undoes an interrupted move that has not switched over: the source holds the shard again
/// and the target's copy is deleted. `force` as for [`move_shard`].
pub async fn roll_back_move(urls: &[String], shard: u64, force: bool) -> Result<()> {
    let mut config = SqlConfig::new(urls.to_vec());
    config.connections_per_shard = 4;
    let directory = crate::map::directory(&config).await?.pool();
    let map = ShardMap::load(&directory).await?.ok_or(SqlError::NotFound("shard map"))?;
    let dialect = Dialect::of(&urls[0])?;
    let recorded = recorded_move(&directory, dialect, shard)
        .await?
        .ok_or(SqlError::NotFound("move of that shard"))?;
    if !force {
        check_mover_gone(&recorded)?;
    }
    if recorded.phase == Phase::Cleaning {
        return Err(SqlError::Failed(format!(
            "the move of logical shard {shard} has switched over; resume it to finish, then \
             move the shard back"
        )));
    }
    let report = Box::new(|_: &Progress| {});
    let mover =
        Mover::open(&config, &map, shard, recorded.from, recorded.to, directory, report).await?;
    mover.set_state(&mover.source, ShardState::Held).await?;
    mover.delete_shard(&mover.target).await?;
    sqlx::query("DELETE FROM logical_shards WHERE shard = ?".replace_params(mover.dialect))
        .bind(shard as i64)
        .execute(&mover.target)
        .await?;
    sqlx::query("DELETE FROM shard_dirty WHERE shard = ?".replace_params(mover.dialect))
        .bind(shard as i64)
        .execute(&mover.source)
        .await?;
    sqlx::query("DELETE FROM shard_moves WHERE shard = ?".replace_params(mover.dialect))
        .bind(shard as i64)
        .execute(&mover.directory)
        .await?;
    Ok(())
}

/// A statement with `?` placeholders in the dialect's style.
trait Params {
    fn replace_params(&self, dialect: Dialect) -> AssertSqlSafe<String>;
}

impl Params for str {
    fn replace_params(&self, dialect: Dialect) -> AssertSqlSafe<String> {
        AssertSqlSafe(dialect.adapt_owned(self))
    }
}

#[derive(Clone, Copy)]
struct Recorded {
    from: u64,
    to: u64,
    phase: Phase,
    updated_at_ms: i64,
}

async fn recorded_move(
    directory: &AnyPool,
    dialect: Dialect,
    shard: u64,
) -> Result<Option<Recorded>> {
    let row = sqlx::query(
        "SELECT from_id, to_id, phase, updated_at_ms FROM shard_moves WHERE shard = ?"
            .replace_params(dialect),
    )
    .bind(shard as i64)
    .fetch_optional(directory)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let phase = match row.try_get::<i64, _>(2)? {
        1 => Phase::Copying,
        2 => Phase::Switching,
        3 => Phase::Cleaning,
        other => return Err(SqlError::Corrupt(format!("move of shard {shard} in phase {other}"))),
    };
    Ok(Some(Recorded {
        from: row.try_get::<i64, _>(0)? as u64,
        to: row.try_get::<i64, _>(1)? as u64,
        phase,
        updated_at_ms: row.try_get(3)?,
    }))
}

fn check_mover_gone(recorded: &Recorded) -> Result<()> {
    if now_ms() - recorded.updated_at_ms < MOVER_ALIVE.as_millis() as i64 {
        return Err(SqlError::Failed(format!(
            "the move was updated {} ms ago: its mover may still be running (wait {} s)",
            now_ms() - recorded.updated_at_ms,
            MOVER_ALIVE.as_secs()
        )));
    }
    Ok(())
}

/// Adds a database to the map's list (under a new map version, so that nodes connect to it
/// before it holds anything), migrated and recording its id.
async fn register_database(
    directory: &AnyPool,
    dialect: Dialect,
    config: &SqlConfig,
    url: &str,
) -> Result<u64> {
    if Dialect::of(url)? != dialect {
        return Err(SqlError::MixedDialects);
    }
    let row = sqlx::query("SELECT COALESCE(MAX(id), -1) + 1 FROM shard_databases")
        .fetch_one(directory)
        .await?;
    let id = row.try_get::<i64, _>(0)? as u64;
    let pool = Primary::open(id, url, config).await?.pool();
    crate::database::migrate(&pool, dialect, id).await?;
    crate::database::claim_place(dialect, &pool, id, None).await?;
    pool.close().await;
    let mut tx = directory.begin().await?;
    sqlx::query("INSERT INTO shard_databases (id, url) VALUES (?, ?)".replace_params(dialect))
        .bind(id as i64)
        .bind(url)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE shard_map_meta SET version = version + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(database = id, url = %crate::redact(url), "database added to the shard map");
    Ok(id)
}

impl Mover {
    async fn open(
        config: &SqlConfig,
        map: &ShardMap,
        shard: u64,
        from: u64,
        to: u64,
        directory: AnyPool,
        report: Box<dyn FnMut(&Progress) + Send + Sync>,
    ) -> Result<Mover> {
        let url = |id: u64| map.databases.get(&id).ok_or(SqlError::NotFound("database"));
        let (source_url, target_url) = (url(from)?, url(to)?);
        // A failover during the move fails it, to be resumed: the mover follows no primary.
        let source = Primary::open(from, source_url, config).await?.pool();
        let target = Primary::open(to, target_url, config).await?.pool();
        Ok(Mover {
            dialect: Dialect::of(source_url)?,
            logical: map.logical_shards,
            shard,
            directory,
            from,
            to,
            source,
            target,
            report,
            pace: 1.0,
        })
    }

    fn progress(&mut self, step: &'static str, done: u64, total: u64) {
        (self.report)(&Progress { shard: self.shard, step, done, total });
    }

    async fn run(&mut self, resumed: Option<Phase>) -> Result<MoveOutcome> {
        let started = Instant::now();
        let mut outcome = MoveOutcome {
            shard: self.shard,
            from: self.from,
            to: self.to,
            ..MoveOutcome::default()
        };
        if resumed.is_none() {
            self.begin().await?;
        }
        if resumed.is_none_or(|phase| phase == Phase::Copying) {
            let copying = Instant::now();
            outcome.users = self.copy_everything().await?;
            outcome.recopied = self.copy_noted_until_few().await?;
            outcome.copy = copying.elapsed();
        }
        if resumed != Some(Phase::Cleaning) {
            let fenced = Instant::now();
            outcome.recopied += self.switch_over().await?;
            outcome.switch_over = fenced.elapsed();
        }
        let cleaning = Instant::now();
        self.clean().await?;
        outcome.clean = cleaning.elapsed();
        outcome.total = started.elapsed();
        Ok(outcome)
    }

    /// Records the move, makes the target's shard incoming and the source's copying.
    async fn begin(&mut self) -> Result<()> {
        let d = self.dialect;
        let shard = self.shard as i64;
        sqlx::query(
            "INSERT INTO shard_moves (shard, from_id, to_id, phase, started_at_ms, updated_at_ms)
             VALUES (?, ?, ?, 1, ?, ?)"
                .replace_params(d),
        )
        .bind(shard)
        .bind(self.from as i64)
        .bind(self.to as i64)
        .bind(now_ms())
        .bind(now_ms())
        .execute(&self.directory)
        .await?;
        sqlx::query("DELETE FROM logical_shards WHERE shard = ?".replace_params(d))
            .bind(shard)
            .execute(&self.target)
            .await?;
        sqlx::query("INSERT INTO logical_shards (shard, state) VALUES (?, ?)".replace_params(d))
            .bind(shard)
            .bind(ShardState::Incoming as i64)
            .execute(&self.target)
            .await?;
        // Waits for the writes holding the shard; every later one notes what it touched.
        self.set_state(&self.source, ShardState::Copying).await
    }

    async fn set_state(&self, pool: &AnyPool, state: ShardState) -> Result<()> {
        sqlx::query(
            "UPDATE logical_shards SET state = ? WHERE shard = ?".replace_params(self.dialect),
        )
        .bind(state as i64)
        .bind(self.shard as i64)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn set_phase(&self, phase: Phase) -> Result<()> {
        sqlx::query(
            "UPDATE shard_moves SET phase = ?, updated_at_ms = ? WHERE shard = ?"
                .replace_params(self.dialect),
        )
        .bind(phase as i64)
        .bind(now_ms())
        .bind(self.shard as i64)
        .execute(&self.directory)
        .await?;
        Ok(())
    }

    /// The shard's users, groups and tokens on `pool`.
    async fn keys(&self, pool: &AnyPool) -> Result<(Vec<u64>, Vec<u64>, Vec<Vec<u8>>)> {
        let (l, s) = (self.logical as i64, self.shard as i64);
        let users = sqlx::query(
            "SELECT user_id FROM accounts WHERE user_id % ? = ? ORDER BY user_id"
                .replace_params(self.dialect),
        )
        .bind(l)
        .bind(s)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0).map(|id| id as u64))
        .collect::<Result<_, _>>()?;
        let groups = sqlx::query(
            "SELECT group_id FROM chat_groups WHERE (group_id - ?) % ? = ? ORDER BY group_id"
                .replace_params(self.dialect),
        )
        .bind(GROUP_ID_BASE as i64)
        .bind(l)
        .bind(s)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0).map(|id| id as u64))
        .collect::<Result<_, _>>()?;
        let tokens = sqlx::query(
            "SELECT token_hash FROM session_tokens WHERE shard = ?".replace_params(self.dialect),
        )
        .bind(s)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get::<Vec<u8>, _>(0))
        .collect::<Result<_, _>>()?;
        Ok((users, groups, tokens))
    }

    async fn heartbeat(&self) -> Result<()> {
        sqlx::query(
            "UPDATE shard_moves SET updated_at_ms = ? WHERE shard = ?".replace_params(self.dialect),
        )
        .bind(now_ms())
        .bind(self.shard as i64)
        .execute(&self.directory)
        .await?;
        Ok(())
    }

    /// The first copy: every user, group and token of the shard. Returns the users.
    async fn copy_everything(&mut self) -> Result<u64> {
        let (users, groups, tokens) = self.keys(&self.source).await?;
        let total = (users.len() + groups.len() + tokens.len()) as u64;
        let mut done = 0;
        for batch in users.chunks(BATCH) {
            let worked = Instant::now();
            self.copy_users(batch).await?;
            done += batch.len() as u64;
            self.progress("copying", done, total);
            self.heartbeat().await?;
            self.rest(worked.elapsed()).await;
        }
        for batch in groups.chunks(BATCH) {
            let worked = Instant::now();
            self.copy_groups(batch).await?;
            done += batch.len() as u64;
            self.progress("copying", done, total);
            self.rest(worked.elapsed()).await;
        }
        for batch in tokens.chunks(BATCH) {
            let worked = Instant::now();
            self.copy_tokens(batch).await?;
            done += batch.len() as u64;
            self.progress("copying", done, total);
            self.rest(worked.elapsed()).await;
        }
        Ok(users.len() as u64)
    }

    /// Copies the noted keys again, round after round, until few are left. Returns how many
    /// were copied.
    async fn copy_noted_until_few(&mut self) -> Result<u64> {
        let mut copied = 0;
        for _ in 0..ROUNDS {
            let worked = Instant::now();
            let noted = self.copy_noted().await?;
            self.rest(worked.elapsed()).await;
            copied += noted;
            self.progress("catching up", noted, noted);
            self.heartbeat().await?;
            if (noted as usize) < SWITCH_AT {
                break;
            }
        }
        Ok(copied)
    }

    /// Rests as long as the pace asks after `worked` of work.
    async fn rest(&self, worked: Duration) {
        if self.pace < 1.0 {
            tokio::time::sleep(worked.mul_f64((1.0 - self.pace) / self.pace)).await;
        }
    }

    /// One round: the keys noted so far, copied, and their notes deleted unless written again
    /// meanwhile. Returns how many were copied.
    async fn copy_noted(&mut self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT kind, item, touch FROM shard_dirty WHERE shard = ?"
                .replace_params(self.dialect),
        )
        .bind(self.shard as i64)
        .fetch_all(&self.source)
        .await?;
        let (mut users, mut groups, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
        let mut notes = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind =
                row.try_get::<i32, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|k| k as i32))?;
            let item: Vec<u8> = row.try_get(1)?;
            let touch: i64 = row.try_get(2)?;
            let id = || u64::from_be_bytes(item.as_slice().try_into().unwrap_or_default());
            match kind {
                1 => users.push(id()),
                2 => groups.push(GROUP_ID_BASE + id()),
                _ => tokens.push(item.clone()),
            }
            notes.push((kind, item.clone(), touch));
        }
        for batch in users.chunks(BATCH) {
            self.copy_users(batch).await?;
        }
        for batch in groups.chunks(BATCH) {
            self.copy_groups(batch).await?;
        }
        for batch in tokens.chunks(BATCH) {
            self.copy_tokens(batch).await?;
        }
        let mut tx = self.source.begin().await?;
        for (kind, item, touch) in notes {
            sqlx::query(
                "DELETE FROM shard_dirty WHERE shard = ? AND kind = ? AND item = ? AND touch = ?"
                    .replace_params(self.dialect),
            )
            .bind(self.shard as i64)
            .bind(kind)
            .bind(item)
            .bind(touch)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Copies users' rows: every table but the inbox whole, the inbox by what the target
    /// lacks, with the messages its new entries hold.
    async fn copy_users(&self, users: &[u64]) -> Result<()> {
        let d = self.dialect;
        let keys = id_keys(users);
        let mut read = self.source.begin().await?;
        let mut write = self.target.begin().await?;
        self.replace_in(&mut read, &mut write, &USER_TABLES, &keys).await?;
        // The inbox above what the target has of each user.
        let heads = fetch_keyed(
            &mut write,
            &d.select_where_key(
                "inbox",
                "user_id",
                rows::Kind::Int,
                "t.user_id, MAX(t.version)",
                "GROUP BY t.user_id",
            ),
            &keys,
        )
        .await?;
        let mut after: BTreeMap<u64, i64> = users.iter().map(|&u| (u, 0)).collect();
        for row in heads {
            after.insert(row.try_get::<i64, _>(0)? as u64, row.try_get::<i64, _>(1)?);
        }
        let pairs: Vec<Value> = after.iter().map(|(u, v)| json!([u, v])).collect();
        let newer = match d {
            Dialect::MySql => {
                "SELECT i.user_id, i.version, i.message_id
                FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$[0]', v BIGINT PATH '$[1]')) j
                STRAIGHT_JOIN inbox i ON i.user_id = j.u AND i.version > j.v"
            }
            Dialect::Postgres => {
                "SELECT i.user_id, i.version, i.message_id
                FROM json_array_elements($1::json) AS j(r)
                JOIN inbox i ON i.user_id = (j.r->>0)::bigint AND i.version > (j.r->>1)::bigint"
            }
        };
        let entries = fetch_keyed(&mut read, newer, &pairs).await?;
        let mut holds: BTreeMap<u64, u64> = BTreeMap::new();
        let mut entry_rows = Vec::with_capacity(entries.len());
        for row in &entries {
            *holds.entry(row.try_get::<i64, _>(2)? as u64).or_default() += 1;
            entry_rows.push(rows::row_json(&INBOX, row)?);
        }
        for id in self.sent_by(&mut read, &keys).await? {
            holds.entry(id as u64).or_default();
        }
        let ids: Vec<Value> = holds.keys().map(|&id| Value::from(id)).collect();
        let mut messages = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            for row in fetch_keyed(&mut read, &d.select_keyed(&MESSAGES), chunk).await? {
                let mut message = rows::row_json(&MESSAGES, &row)?;
                let id = row.try_get::<i64, _>(0)? as u64;
                message[9] = Value::from(holds[&id]);
                messages.push(message);
            }
        }
        read.commit().await?;
        let more_refs = match d {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE refs = messages.refs + VALUES(refs)",
            Dialect::Postgres => {
                "ON CONFLICT (message_id) DO UPDATE SET refs = messages.refs + excluded.refs"
            }
        };
        insert_chunked(&mut write, &d.insert_rows(&MESSAGES, more_refs), messages).await?;
        insert_chunked(&mut write, &d.insert_rows(&INBOX, ""), entry_rows).await?;
        write.commit().await?;
        Ok(())
    }

    /// Copies groups whole.
    async fn copy_groups(&self, groups: &[u64]) -> Result<()> {
        self.replace(&GROUP_TABLES, &id_keys(groups)).await
    }

    async fn copy_tokens(&self, tokens: &[Vec<u8>]) -> Result<()> {
        self.replace(std::slice::from_ref(&TOKENS), &token_keys(tokens)).await
    }

    /// Replaces the target's rows of `tables` under `keys` with the source's, in one
    /// transaction on each.
    async fn replace(&self, tables: &[rows::Table], keys: &[Value]) -> Result<()> {
        let mut read = self.source.begin().await?;
        let mut write = self.target.begin().await?;
        self.replace_in(&mut read, &mut write, tables, keys).await?;
        read.commit().await?;
        write.commit().await?;
        Ok(())
    }

    /// Replaces, in `write`, the rows of `tables` under `keys` with those `read` finds.
    async fn replace_in(
        &self,
        read: &mut Transaction<'_, Any>,
        write: &mut Transaction<'_, Any>,
        tables: &[rows::Table],
        keys: &[Value],
    ) -> Result<()> {
        let d = self.dialect;
        for table in tables {
            let found = fetch_keyed(read, &d.select_keyed(table), keys).await?;
            let found =
                found.iter().map(|row| rows::row_json(table, row)).collect::<Result<Vec<_>>>()?;
            rows::execute_keyed(write, &d.delete_keyed(table), keys).await?;
            insert_chunked(write, &d.insert_rows(table, ""), found).await?;
        }
        Ok(())
    }

    /// The messages `keys`' users sent whose retry records `tx` holds: their home copies,
    /// which a retry of the send reads.
    async fn sent_by(&self, tx: &mut Transaction<'_, Any>, keys: &[Value]) -> Result<Vec<i64>> {
        let d = self.dialect;
        let query = d.select_where_key(
            "sent_messages",
            "from_user_id",
            rows::Kind::Int,
            "t.message_id",
            "",
        );
        let rows = fetch_keyed(tx, &query, keys).await?;
        Ok(rows.iter().map(|row| row.try_get::<i64, _>(0)).collect::<Result<_, _>>()?)
    }

    /// A statement on the pending marks of the shard's senders (`SELECT ...` or `DELETE`).
    fn pending_of_shard(&self, verb: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(format!(
            "{verb} FROM pending_entries WHERE message_id % {} = {}",
            self.logical, self.shard
        ))
    }

    /// Fences the shard, copies what was noted since and the shard's own rows, and flips the
    /// map. Returns the keys copied under the fence.
    async fn switch_over(&mut self) -> Result<u64> {
        self.set_phase(Phase::Switching).await?;
        // Waits for the writes holding the shard; later ones wait for the map.
        self.set_state(&self.source, ShardState::Fenced).await?;
        let noted = self.copy_noted().await?;
        self.progress("switching over", noted, noted);
        self.copy_shard_rows().await?;
        self.set_state(&self.target, ShardState::Held).await?;
        let d = self.dialect;
        let mut tx = self.directory.begin().await?;
        sqlx::query("UPDATE shard_map SET database_id = ? WHERE shard = ?".replace_params(d))
            .bind(self.to as i64)
            .bind(self.shard as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE shard_map_meta SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE shard_moves SET phase = ?, updated_at_ms = ? WHERE shard = ?".replace_params(d),
        )
        .bind(Phase::Cleaning as i64)
        .bind(now_ms())
        .bind(self.shard as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.set_state(&self.source, ShardState::Gone).await?;
        Ok(noted)
    }

    /// The shard's counters (the target keeps the higher of each) and its senders' pending
    /// marks (replaced).
    async fn copy_shard_rows(&self) -> Result<()> {
        let d = self.dialect;
        let names = counter_keys(self.shard);
        let mut read = self.source.begin().await?;
        let mut write = self.target.begin().await?;
        let counters = fetch_keyed(&mut read, &d.select_keyed(&COUNTERS), &names).await?;
        let counters = counters
            .iter()
            .map(|row| rows::row_json(&COUNTERS, row))
            .collect::<Result<Vec<_>>>()?;
        let higher = match d {
            Dialect::MySql => {
                "ON DUPLICATE KEY UPDATE next_value = GREATEST(counters.next_value, VALUES(next_value))"
            }
            Dialect::Postgres => {
                "ON CONFLICT (name) DO UPDATE SET next_value = GREATEST(counters.next_value, excluded.next_value)"
            }
        };
        insert_chunked(&mut write, &d.insert_rows(&COUNTERS, higher), counters).await?;
        let select =
            self.pending_of_shard("SELECT message_id, user_id, created_at_ms, claimed_until_ms");
        let pending = sqlx::query(select).fetch_all(&mut *read).await?;
        let pending =
            pending.iter().map(|row| rows::row_json(&PENDING, row)).collect::<Result<Vec<_>>>()?;
        sqlx::query(self.pending_of_shard("DELETE")).execute(&mut *write).await?;
        insert_chunked(&mut write, &d.insert_rows(&PENDING, ""), pending).await?;
        read.commit().await?;
        write.commit().await?;
        Ok(())
    }

    /// Waits for every live node to run on the map that names the target, then deletes what
    /// the source held of the shard, and the move's record.
    async fn clean(&mut self) -> Result<()> {
        let version = ShardMap::version(&self.directory).await?.unwrap_or(0);
        let waited = Instant::now();
        loop {
            let silent_since = now_ms() - NODE_SILENT.as_millis() as i64;
            let behind = sqlx::query(
                "SELECT COUNT(*) FROM shard_map_nodes WHERE seen_at_ms > ? AND version < ?"
                    .replace_params(self.dialect),
            )
            .bind(silent_since)
            .bind(version as i64)
            .fetch_one(&self.directory)
            .await?
            .try_get::<i64, _>(0)?;
            if behind == 0 {
                break;
            }
            if waited.elapsed() >= NODES_WAIT {
                tracing::warn!(behind, "nodes still on an older shard map; deleting the old copy");
                break;
            }
            self.progress("waiting for nodes", behind as u64, behind as u64);
            self.heartbeat().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.progress("cleaning", 0, 1);
        self.delete_shard(&self.source).await?;
        sqlx::query("DELETE FROM shard_dirty WHERE shard = ?".replace_params(self.dialect))
            .bind(self.shard as i64)
            .execute(&self.source)
            .await?;
        sqlx::query("DELETE FROM shard_moves WHERE shard = ?".replace_params(self.dialect))
            .bind(self.shard as i64)
            .execute(&self.directory)
            .await?;
        self.progress("done", 1, 1);
        Ok(())
    }

    /// Deletes the shard's rows from `pool` (which no writer may write: its state there is
    /// gone, or incoming), giving back the references its entries held on messages.
    async fn delete_shard(&self, pool: &AnyPool) -> Result<()> {
        let d = self.dialect;
        let (users, groups, tokens) = self.keys(pool).await?;
        sqlx::query(self.pending_of_shard("DELETE")).execute(pool).await?;
        for batch in users.chunks(BATCH) {
            let worked = Instant::now();
            let keys = id_keys(batch);
            let mut tx = pool.begin().await?;
            let held = fetch_keyed(
                &mut tx,
                &d.select_where_key(
                    "inbox",
                    "user_id",
                    rows::Kind::Int,
                    "t.message_id, COUNT(*)",
                    "GROUP BY t.message_id",
                ),
                &keys,
            )
            .await?;
            let sent = self.sent_by(&mut tx, &keys).await?;
            let mut released: BTreeSet<i64> = BTreeSet::new();
            let mut release = Vec::new();
            for row in &held {
                let id = row.try_get::<i64, _>(0)?;
                released.insert(id);
                release.push(json!([id, row.try_get::<i64, _>(1)?]));
            }
            released.extend(sent);
            let give_back = match d {
                Dialect::MySql => "UPDATE messages m JOIN JSON_TABLE(?, '$[*]' COLUMNS(i BIGINT PATH '$[0]', n BIGINT PATH '$[1]')) j
                    ON m.message_id = j.i SET m.refs = m.refs - j.n",
                Dialect::Postgres => "UPDATE messages SET refs = refs - (j.r->>1)::bigint
                    FROM json_array_elements($1::json) AS j(r) WHERE message_id = (j.r->>0)::bigint",
            };
            rows::execute_keyed(&mut tx, give_back, &release).await?;
            rows::execute_keyed(&mut tx, &d.delete_keyed(&INBOX), &keys).await?;
            for table in &USER_TABLES {
                rows::execute_keyed(&mut tx, &d.delete_keyed(table), &keys).await?;
            }
            let ids: Vec<Value> = released.into_iter().map(Value::from).collect();
            let unheld = d.delete_where_key(
                "messages",
                "message_id",
                rows::Kind::Int,
                "t.refs <= 0
                 AND NOT EXISTS (SELECT 1 FROM sent_messages s WHERE s.message_id = t.message_id)
                 AND NOT EXISTS (SELECT 1 FROM pending_entries p WHERE p.message_id = t.message_id)",
            );
            for chunk in ids.chunks(1_000) {
                rows::execute_keyed(&mut tx, &unheld, chunk).await?;
            }
            tx.commit().await?;
            self.rest(worked.elapsed()).await;
        }
        let mut tx = pool.begin().await?;
        for table in &GROUP_TABLES {
            rows::execute_keyed(&mut tx, &d.delete_keyed(table), &id_keys(&groups)).await?;
        }
        rows::execute_keyed(&mut tx, &d.delete_keyed(&TOKENS), &token_keys(&tokens)).await?;
        rows::execute_keyed(&mut tx, &d.delete_keyed(&COUNTERS), &counter_keys(self.shard)).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Ids as the JSON keys of a keyed statement.
fn id_keys(ids: &[u64]) -> Vec<Value> {
    ids.iter().map(|&id| Value::from(id)).collect()
}

/// Token hashes as the JSON keys of a keyed statement (base64).
fn token_keys(tokens: &[Vec<u8>]) -> Vec<Value> {
    let base64 = &base64::engine::general_purpose::STANDARD;
    tokens.iter().map(|t| Value::from(base64.encode(t))).collect()
}

/// The names of the shard's counters, as the JSON keys of a keyed statement.
fn counter_keys(shard: u64) -> Vec<Value> {
    crate::map::counter_names(shard).into_iter().map(Value::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(logical: u64, databases: u64) -> ShardMap {
        ShardMap {
            version: 1,
            logical_shards: logical,
            databases: (0..databases).map(|i| (i, format!("db{i}"))).collect(),
            owners: (0..logical).map(|s| s % databases).collect(),
        }
    }

    fn after(map: &ShardMap, plan: &[(u64, String)]) -> BTreeMap<String, u64> {
        let mut owners: Vec<String> = map.owners.iter().map(|o| map.databases[o].clone()).collect();
        for (shard, url) in plan {
            owners[*shard as usize] = url.clone();
        }
        let mut count = BTreeMap::new();
        for owner in owners {
            *count.entry(owner).or_default() += 1;
        }
        count
    }

    #[test]
    fn a_rebalance_spreads_the_shards_evenly_and_moves_no_more_than_it_must() {
        let urls = |n: u64| (0..n).map(|i| format!("db{i}")).collect::<Vec<_>>();
        // Growing from 2 databases to 3: only a third of the shards move.
        let before = map(1024, 2);
        let plan = rebalance_plan(&before, &urls(3));
        assert_eq!(plan.len(), 341);
        assert!(plan.iter().all(|(_, url)| url == "db2"));
        let counts = after(&before, &plan);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![342, 341, 341]);
        // Already even: nothing to do.
        assert!(rebalance_plan(&map(1024, 4), &urls(4)).is_empty());
        // Leaving database 0 for two new ones: all of it moves, and of database 1 only what
        // is over its share (4 of 8 shards, against 3).
        let before = map(8, 2);
        let list = vec!["db1".to_string(), "db2".to_string(), "db3".to_string()];
        let plan = rebalance_plan(&before, &list);
        assert_eq!(plan.iter().filter(|(shard, _)| shard % 2 == 1).count(), 1, "{plan:?}");
        assert_eq!(plan.len(), 5);
        let counts = after(&before, &plan);
        assert_eq!(counts.get("db0"), None);
        assert!(counts.values().all(|&n| n == 2 || n == 3), "{counts:?}");
    }
}
