//! The scale-out storage backends: MySQL/MariaDB (the seed's choice) and PostgreSQL, behind the
//! same storage traits as the embedded store, over any number of databases.
//!
//! Every database has the same schema (`migrations/<dialect>/`, applied at open). Rows are
//! placed on a fixed number of logical shards: a user's on `user_id % L`, a group's on
//! `(group_id - 2^50) % L`, a token's on its hash `% L`; ids are minted per logical shard as
//! `local id × L + shard`, and a user's on the shard the username hashes to, so no lookup
//! needs a directory of users. The shard map (`map.rs`), kept on the first database, says which
//! database holds each logical shard; every write checks with the database that it still
//! does, so a node with a stale map is turned away, reloads the map and tries again.
//!
//! A message to users on several databases is written to the sender's first (with a pending
//! mark per other database), then to each other one; a retry of the same send completes
//! whatever a failure left pending, and every inbox keeps its version order through the head
//! fence (`inbox_heads`). See `docs/scale-out.md` §3 and §4.
//!
//! This crate owns the SQL of these backends and knows nothing of sockets, sessions in flight
//! or business rules.

mod account;
mod batch;
mod contact;
mod database;
mod group;
mod lookup;
mod map;
mod message;
mod mover;
mod ops;
mod primary;
mod queries;
mod report;
mod rows;
mod seq;

pub use database::SqlConfig;
pub use map::{LOGICAL_SHARDS_MAX, ShardMap, ShardState};
pub use mover::{
    MoveOptions, MoveOutcome, Phase, Progress, load_map, move_shard, rebalance_plan, roll_back_move,
};
pub use primary::split_url_list;
pub use report::{DatabaseUsage, ShardReport, ShardUsage, redact, shard_report};

use database::{Database, Dialect};
use futures_util::future::BoxFuture;
use map::{Item, Routing};
use missive_rpc::{Code, Status};
use queries::Queries;
use sqlx::{Any, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a write waits for a move's switch-over before it fails as unavailable.
const MOVE_WAIT: Duration = Duration::from_secs(10);
/// How often a write waiting for a switch-over reads the map again.
const MOVE_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("no database urls given")]
    NoShards,
    #[error("unsupported database url {0:?} (use mysql:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("every shard must use the same kind of database")]
    MixedDialects,
    #[error("database {database}: {source}")]
    Connect { database: u64, source: sqlx::Error },
    #[error("database {database}: migration failed: {source}")]
    Migrate { database: u64, source: sqlx::migrate::MigrateError },
    #[error(
        "database {index} (of a list of {count}) was created as database {found_index} (of a \
         list of {found_count}); the list must not change until the shard map is made"
    )]
    ShardMismatch { index: u64, count: u64, found_index: u64, found_count: u64 },
    #[error(
        "{logical} logical shards cannot be spread evenly over {databases} databases \
         (give a multiple of the count)"
    )]
    LogicalShards { logical: u64, databases: u64 },
    /// The database no longer holds a logical shard the write touches: the map was stale.
    #[error("a logical shard the write touches has moved")]
    Moved,
    /// A logical shard stayed fenced for a move's switch-over longer than a write waits.
    #[error("a logical shard is moving")]
    Moving,
    /// No host of a replicated database says it is the primary.
    #[error("database {database}: no host is the primary")]
    NoPrimary { database: u64 },
    #[error("already exists")]
    AlreadyExists,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A versioned write lost to a concurrent writer with a newer version.
    #[error("{0}")]
    Stale(String),
    /// A stored value does not decode.
    #[error("corrupt {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The database broke a deadlock or a serialization conflict by failing this write.
    #[error("a concurrent write conflicted")]
    Conflict,
    /// The connection was lost while committing: the write may or may not hold.
    #[error("the outcome of the commit is unknown")]
    CommitUnknown,
    #[error("the database is unreachable")]
    Unreachable,
    /// The shard's writer has stopped (the store is closing).
    #[error("the shard's writer has stopped")]
    WriterGone,
    /// A batch failed as a whole for this reason (the driver's error, as text).
    #[error("{0}")]
    Failed(String),
}

impl From<sqlx::Error> for SqlError {
    /// Translates a driver error: a unique-key violation becomes [`SqlError::AlreadyExists`],
    /// a deadlock or serialization failure (SQLSTATE 40001, 40P01) [`SqlError::Conflict`].
    fn from(err: sqlx::Error) -> SqlError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => SqlError::AlreadyExists,
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40001" | "40P01")) =>
            {
                SqlError::Conflict
            }
            // A standby refusing a write: a failover is under way or just happened (the
            // primary is found again at once; see primary.rs).
            // Or the server going away: PostgreSQL's classes 08 (connection) and 57 (shut
            // down, crashed, starting).
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c == "25006" || c.starts_with("08") || c.starts_with("57")
                }) || db.message().contains("read-only") =>
            {
                tracing::warn!(error = %err, "a write reached a standby, or the server went away");
                SqlError::Unreachable
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %err, "database unreachable");
                SqlError::Unreachable
            }
            _ => SqlError::Database(err),
        }
    }
}

impl From<SqlError> for Status {
    fn from(err: SqlError) -> Status {
        match err {
            SqlError::AlreadyExists => Status::new(Code::AlreadyExists, "already exists"),
            SqlError::NotFound(what) => Status::not_found(format!("{what} not found")),
            SqlError::Stale(message) => Status::aborted(message),
            SqlError::Conflict => Status::aborted("a concurrent write conflicted"),
            SqlError::Unreachable | SqlError::WriterGone => {
                Status::new(Code::Unavailable, "storage is unreachable")
            }
            SqlError::Moved | SqlError::Moving => {
                Status::new(Code::Unavailable, "the user's data is moving; retry")
            }
            SqlError::CommitUnknown => {
                tracing::warn!("a commit's outcome is unknown");
                Status::new(Code::Unavailable, "the write's outcome is unknown; retry it")
            }
            other => {
                tracing::error!(error = %other, "sql storage failure");
                Status::internal("storage failure")
            }
        }
    }
}

pub(crate) type Result<T, E = SqlError> = std::result::Result<T, E>;

/// Every data-access service over MySQL/MariaDB or PostgreSQL databases.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The map and its databases, swapped whole when the map changes.
    routing: RwLock<Arc<Routing>>,
    /// The database keeping the map, and the operations data (statistics, audit log).
    directory: Arc<primary::Primary>,
    /// One reload at a time; the others wait for its outcome.
    reloading: tokio::sync::Mutex<()>,
    config: SqlConfig,
    queries: Arc<Queries>,
    dialect: Dialect,
    logical: u64,
    /// The id blocks of each (kind, logical shard) this node has minted from.
    counters: std::sync::Mutex<HashMap<(&'static str, u64), Arc<Counter>>>,
    /// This store's name in `shard_map_nodes`.
    node: String,
}

/// Hands out ids of one kind and logical shard from blocks reserved in the `counters` table
/// of the database holding the shard, so minting costs a write once per block. A crash
/// forgets the rest of a block: ids are skipped, never reused. A block stays good after its
/// shard moves: the move copies the counter, past every block reserved.
struct Counter {
    /// (next local id, end of the reserved block).
    range: tokio::sync::Mutex<(u64, u64)>,
}

impl SqlStore {
    /// Connects to the directory (the first url), makes the shard map from the url list if
    /// it has none, and opens every database the map names.
    pub async fn open(config: SqlConfig) -> Result<SqlStore> {
        let dialect = database::dialect_of(&config)?;
        let queries = Arc::new(Queries::new(dialect));
        let directory = map::directory(&config).await?;
        // The map's tables are made by the migrations, before the map is read.
        database::migrate(&directory.pool(), dialect, 0).await?;
        let routing = map::open_or_make(&directory.pool(), &config, &queries).await?;
        let logical = routing.map.logical_shards;
        let node = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("store-{:016x}", rand::random::<u64>()));
        let store = SqlStore {
            inner: Arc::new(Inner {
                routing: RwLock::new(Arc::new(routing)),
                directory,
                reloading: tokio::sync::Mutex::new(()),
                config,
                queries,
                dialect,
                logical,
                counters: std::sync::Mutex::new(HashMap::new()),
                node,
            }),
        };
        store.spawn_backfill();
        store.spawn_map_watch();
        Ok(store)
    }

    /// The databases' kind, as metrics label it: `mysql` (MariaDB too) or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.inner.dialect {
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    /// The shard map this node routes by.
    pub fn shard_map(&self) -> ShardMap {
        self.routing().map.clone()
    }

    /// The number of databases the map names.
    pub fn database_count(&self) -> u64 {
        self.routing().databases.len() as u64
    }

    /// The id of the database holding a user's rows, as this node's map has it.
    pub fn database_of_user(&self, user_id: u64) -> u64 {
        self.routing().map.owner(self.shard_of(user_id))
    }

    fn routing(&self) -> Arc<Routing> {
        self.inner.routing.read().expect("routing lock").clone()
    }

    /// The logical shard of a user id, a group's local id or a hash.
    fn shard_of(&self, key: u64) -> u64 {
        key % self.inner.logical
    }

    /// The database holding a user's rows.
    fn user_db(&self, user_id: u64) -> Arc<Database> {
        self.routing().database(self.shard_of(user_id)).clone()
    }

    /// The logical shard that holds, or will hold, the account with this username.
    fn name_shard(&self, username: &str) -> u64 {
        self.shard_of(missive_rpc::stable_hash(username.as_bytes()))
    }

    fn token_db(&self, token_hash: &[u8]) -> Arc<Database> {
        self.routing().database(self.shard_of(missive_rpc::stable_hash(token_hash))).clone()
    }

    fn q(&self) -> &Queries {
        &self.inner.queries
    }

    /// Begins a transaction on the database holding the logical shards of `items` (one
    /// database: the caller groups them), with those shards locked shared so that no move
    /// switches them over before it ends. Where the database no longer holds one, the map is
    /// read again and the write goes where it says; during a switch-over it waits for it.
    async fn begin_owned(&self, items: &[Item<'_>]) -> Result<Transaction<'static, Any>> {
        let started = Instant::now();
        let logical = self.inner.logical;
        loop {
            let routing = self.routing();
            let first = items.first().ok_or(SqlError::NotFound("key"))?;
            let db = routing.database(first.shard(logical)).clone();
            if items.iter().any(|item| routing.map.owner(item.shard(logical)) != db.id) {
                // Grouped by another map than this one: the caller groups them again.
                return Err(SqlError::Moved);
            }
            let mut tx = db.pool().begin().await?;
            if map::claim_items(&mut tx, self.q(), logical, items).await? {
                return Ok(tx);
            }
            drop(tx);
            self.await_move(routing.map.version, started).await?;
        }
    }

    /// Runs `write` on `items` grouped by the database holding the user `user` names for
    /// each, a group at a time. A group that meets a moved logical shard is grouped again,
    /// with the groups not yet written, by the map read again.
    async fn by_database<'a, T: Clone + Send + 'a>(
        &'a self,
        items: Vec<T>,
        user: impl Fn(&T) -> u64,
        mut write: impl FnMut(Vec<T>) -> BoxFuture<'a, Result<()>>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut todo = items;
        while !todo.is_empty() {
            let routing = self.routing();
            let mut groups: BTreeMap<u64, Vec<T>> = BTreeMap::new();
            for item in todo.drain(..) {
                let owner = routing.map.owner(self.shard_of(user(&item)));
                groups.entry(owner).or_default().push(item);
            }
            let mut groups = groups.into_values();
            while let Some(group) = groups.next() {
                match write(group.clone()).await {
                    Ok(()) => {}
                    Err(SqlError::Moved) => {
                        todo = group.into_iter().chain(groups.flatten()).collect();
                        self.await_move(routing.map.version, started).await?;
                        break;
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(())
    }

    /// Runs `statement` once per user, with the parameters `binds` gives for the user's id,
    /// in one transaction per database holding them.
    async fn write_each_user(
        &self,
        user_ids: Vec<u64>,
        statement: &'static str,
        binds: impl Fn(i64) -> Vec<i64> + Copy + Send + Sync + 'static,
    ) -> Result<()> {
        self.by_database(
            user_ids,
            |&user_id| user_id,
            |users| {
                Box::pin(async move {
                    let items: Vec<Item> =
                        users.iter().map(|&user_id| Item::User(user_id)).collect();
                    let mut tx = self.begin_owned(&items).await?;
                    for user_id in users {
                        let mut query = sqlx::query(statement);
                        for value in binds(user_id as i64) {
                            query = query.bind(value);
                        }
                        query.execute(&mut *tx).await?;
                    }
                    Ok(tx.commit().await?)
                })
            },
        )
        .await
    }

    /// Waits until the map is newer than `version`, reading it again every [`MOVE_POLL`];
    /// fails as [`SqlError::Moving`] once [`MOVE_WAIT`] has passed since `started`.
    async fn await_move(&self, version: u64, started: Instant) -> Result<()> {
        loop {
            if self.reload().await?.map.version > version {
                return Ok(());
            }
            if started.elapsed() >= MOVE_WAIT {
                return Err(SqlError::Moving);
            }
            tokio::time::sleep(MOVE_POLL).await;
        }
    }

    /// Reads the map's version and, if it changed, the map, opening any database it newly
    /// names; one reload at a time, the others taking its outcome.
    async fn reload(&self) -> Result<Arc<Routing>> {
        let before = self.routing();
        let _one = self.inner.reloading.lock().await;
        let current = self.routing();
        if !Arc::ptr_eq(&before, &current) {
            return Ok(current);
        }
        let version = map::ShardMap::version(&self.inner.directory.pool()).await?;
        if version.is_none_or(|v| v <= current.map.version) {
            return Ok(current);
        }
        let Some(map) = map::ShardMap::load(&self.inner.directory.pool()).await? else {
            return Ok(current);
        };
        let routing = Arc::new(
            Routing::open(map, Some(&current), &self.inner.config, &self.inner.queries).await?,
        );
        tracing::info!(version = routing.map.version, "shard map reloaded");
        *self.inner.routing.write().expect("routing lock") = routing.clone();
        Ok(routing)
    }

    /// Follows the map: reads its version every `map_poll`, and says which version this node
    /// runs on, until the store is dropped.
    fn spawn_map_watch(&self) {
        let inner = Arc::downgrade(&self.inner);
        let every = self.inner.config.map_poll;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = inner.upgrade() else { return };
                let store = SqlStore { inner };
                if let Err(error) = store.follow_map().await {
                    tracing::warn!(%error, "reading the shard map failed");
                }
            }
        });
    }

    async fn follow_map(&self) -> Result<()> {
        let routing = self.reload().await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        sqlx::query(self.q().map_node_seen)
            .bind(&self.inner.node)
            .bind(routing.map.version as i64)
            .bind(now_ms)
            .execute(&self.inner.directory.pool())
            .await?;
        Ok(())
    }

    /// A fresh id of `kind` on logical shard `shard`: a local id times the number of logical
    /// shards plus the shard, so the id names the shard that minted it.
    async fn mint(&self, kind: &'static str, shard: u64) -> Result<u64> {
        let counter = self
            .inner
            .counters
            .lock()
            .expect("counters lock")
            .entry((kind, shard))
            .or_insert_with(|| Arc::new(Counter { range: tokio::sync::Mutex::new((0, 0)) }))
            .clone();
        let mut range = counter.range.lock().await;
        if range.0 >= range.1 {
            let block = map::counter_block(kind);
            let name = map::counter_name(kind, shard);
            let mut tx = self.begin_owned(&[Item::Shard(shard)]).await?;
            sqlx::query(self.q().counter_advance)
                .bind(block as i64)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(self.q().counter_read)
                .bind(&name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(SqlError::NotFound("counter"))?;
            tx.commit().await?;
            let end = sqlx::Row::try_get::<i64, _>(&row, 0)? as u64;
            *range = (end - block, end);
        }
        let local = range.0;
        range.0 += 1;
        Ok(local * self.inner.logical + shard)
    }

    /// Moves a user's head (newest committed version of one data type) to `version`, or
    /// fails as stale when the head is already there or beyond. The head row stays locked
    /// until the transaction ends, so concurrent writers for one user commit one after the
    /// other, in version order.
    async fn advance_fence(
        &self,
        tx: &mut Transaction<'static, Any>,
        fence: Fence,
        user_id: u64,
        version: u64,
    ) -> Result<()> {
        let id = db_id(user_id, "user")?;
        let moved = sqlx::query(fence.advance)
            .bind(version as i64)
            .bind(id)
            .bind(version as i64)
            .execute(&mut **tx)
            .await?;
        if moved.rows_affected() == 0 {
            let inserted =
                sqlx::query(fence.insert).bind(id).bind(version as i64).execute(&mut **tx).await?;
            if inserted.rows_affected() == 0 {
                return Err(SqlError::Stale(format!(
                    "version {version} of user {user_id} is not above the {} head",
                    fence.what
                )));
            }
        }
        Ok(())
    }
}

/// The statements of one head table (see [`SqlStore::advance_fence`]).
pub(crate) struct Fence {
    pub advance: &'static str,
    pub insert: &'static str,
    pub what: &'static str,
}

/// Ids are u64 in the schema and BIGINT in the databases; anything above `i64::MAX` cannot be
/// stored, so it names nothing.
pub(crate) fn db_id(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| SqlError::NotFound(what))
}
