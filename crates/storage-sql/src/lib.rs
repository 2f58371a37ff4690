//! The scale-out storage backends: MySQL/MariaDB (the seed's choice) and PostgreSQL, behind the
//! same storage traits as the embedded store, sharded by user id over a list of databases.
//!
//! Every shard has the same schema (`migrations/<dialect>/`, applied at open). A user's rows
//! live on shard `user_id % shards`: user ids are minted so that this is also the shard their
//! username hashes to, and message and device ids carry the shard that minted them, so no
//! lookup needs a directory. A message to users on several shards is written to the sender's
//! shard first (with a pending mark per other shard), then to each other shard; a retry of the
//! same send completes whatever a failure left pending, and every inbox keeps its version
//! order through the head fence (`inbox_heads`). See `docs/scale-out.md` §3 and §4.
//!
//! This crate owns the SQL of these backends and knows nothing of sockets, sessions in flight
//! or business rules. The shard list is fixed when the databases are created: each shard
//! records its place and refuses to open under another.

mod account;
mod batch;
mod contact;
mod group;
mod lookup;
mod message;
mod ops;
mod queries;
mod seq;
mod shard;

pub use shard::SqlConfig;

use missive_rpc::{Code, Status};
use queries::Queries;
use shard::{Dialect, Shard};
use sqlx::{Any, Transaction};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("no database urls given")]
    NoShards,
    #[error("unsupported database url {0:?} (use mysql:// or postgres://)")]
    UnsupportedUrl(String),
    #[error("every shard must use the same kind of database")]
    MixedDialects,
    #[error("shard {index}: {source}")]
    Connect { index: u64, source: sqlx::Error },
    #[error("shard {index}: migration failed: {source}")]
    Migrate { index: u64, source: sqlx::migrate::MigrateError },
    #[error(
        "shard {index} of {count} was created as shard {found_index} of {found_count}; \
         the shard list must not change"
    )]
    ShardMismatch { index: u64, count: u64, found_index: u64, found_count: u64 },
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

/// Every data-access service over a list of MySQL/MariaDB or PostgreSQL databases.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Shard>,
    queries: Arc<Queries>,
    dialect: Dialect,
}

impl SqlStore {
    /// Connects to every shard, migrates it and checks it is the shard the list says it is.
    pub async fn open(config: SqlConfig) -> Result<SqlStore> {
        let dialect = shard::dialect_of(&config)?;
        let queries = Arc::new(Queries::new(dialect));
        let shards = shard::open_all(&config, dialect, &queries).await?;
        let store = SqlStore { inner: Arc::new(Inner { shards, queries, dialect }) };
        store.spawn_backfill();
        Ok(store)
    }

    /// The databases' kind, as metrics label it: `mysql` (MariaDB too) or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.inner.dialect {
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    pub fn shard_count(&self) -> u64 {
        self.inner.shards.len() as u64
    }

    /// The shard holding a user's rows.
    pub fn shard_of_user(&self, user_id: u64) -> u64 {
        user_id % self.shard_count()
    }

    fn user_shard(&self, user_id: u64) -> &Shard {
        &self.inner.shards[self.shard_of_user(user_id) as usize]
    }

    /// The shard that holds, or will hold, the account with this username.
    fn name_shard(&self, username: &str) -> &Shard {
        let index = missive_rpc::stable_hash(username.as_bytes()) % self.shard_count();
        &self.inner.shards[index as usize]
    }

    fn token_shard(&self, token_hash: &[u8]) -> &Shard {
        let index = missive_rpc::stable_hash(token_hash) % self.shard_count();
        &self.inner.shards[index as usize]
    }

    fn q(&self) -> &Queries {
        &self.inner.queries
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
