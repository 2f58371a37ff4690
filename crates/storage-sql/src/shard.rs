//! One database of the shard list: its pool, its migrations, its place in the list, and the
//! id blocks it mints from.

use crate::batch::Writer;
use crate::lookup::Lookups;
use crate::queries::Queries;
use crate::{Result, SqlError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
}

impl Dialect {
    fn of(url: &str) -> Result<Dialect> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Dialect::MySql)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(SqlError::UnsupportedUrl(url.to_string()))
        }
    }

    /// The statement in this dialect's placeholder style: `?` for MySQL, `$1, $2, ...` for
    /// PostgreSQL. Runs once per statement at open; statements are kept for the process.
    pub(crate) fn adapt(self, sql: &'static str) -> &'static str {
        match self {
            Dialect::MySql => sql,
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 8);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push_str(&format!("${n}"));
                    } else {
                        out.push(c);
                    }
                }
                Box::leak(out.into_boxed_str())
            }
        }
    }

    fn migrations(self) -> Migrator {
        let scripts: [(&str, &'static str); 8] = match self {
            Dialect::MySql => [
                ("init", include_str!("../migrations/mysql/0001_init.sql")),
                ("contacts_groups", include_str!("../migrations/mysql/0002_contacts_groups.sql")),
                ("ops", include_str!("../migrations/mysql/0003_ops.sql")),
                ("pending_janitor", include_str!("../migrations/mysql/0004_pending_janitor.sql")),
                ("presence", include_str!("../migrations/mysql/0005_presence.sql")),
                ("search", include_str!("../migrations/mysql/0006_search.sql")),
                ("pushers", include_str!("../migrations/mysql/0007_pushers.sql")),
                ("search_backfill", include_str!("../migrations/mysql/0008_search_backfill.sql")),
            ],
            Dialect::Postgres => [
                ("init", include_str!("../migrations/postgres/0001_init.sql")),
                (
                    "contacts_groups",
                    include_str!("../migrations/postgres/0002_contacts_groups.sql"),
                ),
                ("ops", include_str!("../migrations/postgres/0003_ops.sql")),
                (
                    "pending_janitor",
                    include_str!("../migrations/postgres/0004_pending_janitor.sql"),
                ),
                ("presence", include_str!("../migrations/postgres/0005_presence.sql")),
                ("search", include_str!("../migrations/postgres/0006_search.sql")),
                ("pushers", include_str!("../migrations/postgres/0007_pushers.sql")),
                (
                    "search_backfill",
                    include_str!("../migrations/postgres/0008_search_backfill.sql"),
                ),
            ],
        };
        let migrations = scripts
            .into_iter()
            .enumerate()
            .map(|(index, (name, sql))| {
                let version = index as i64 + 1;
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
    }
}

#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// One url per shard, in shard order (`mysql://...` or `postgres://...`). Fixed once the
    /// databases hold data: users are placed by `user_id % urls.len()`.
    pub urls: Vec<String>,
    /// Connections each shard's pool opens at most.
    pub connections_per_shard: u32,
    /// How long a call waits for a free connection before it fails as unavailable.
    pub acquire_timeout: Duration,
    /// Transactions of the message path's group commit in flight per shard at once, each on
    /// a connection of its own besides the pool's: one gathers its batch while another
    /// commits. Also the number of batched point reads in flight per shard.
    pub writers_per_shard: usize,
}

impl SqlConfig {
    pub fn new(urls: Vec<String>) -> SqlConfig {
        SqlConfig {
            urls,
            connections_per_shard: 16,
            acquire_timeout: Duration::from_secs(5),
            writers_per_shard: 2,
        }
    }
}

/// Hands out ids from blocks reserved in the shard's `counters` table, so minting an id costs
/// a database write only once per block. A crash forgets the rest of a block: ids are skipped,
/// never reused.
pub(crate) struct Counter {
    name: &'static str,
    block: u64,
    /// (next local id, end of the reserved block).
    range: Mutex<(u64, u64)>,
}

impl Counter {
    fn new(name: &'static str, block: u64) -> Counter {
        Counter { name, block, range: Mutex::new((0, 0)) }
    }
}

pub(crate) struct Shard {
    pub index: u64,
    pub count: u64,
    pub pool: AnyPool,
    /// The group-committing writer of the message path.
    pub writer: Writer,
    /// The batched point reads of the message path.
    pub lookups: Lookups,
    pub users: Counter,
    pub devices: Counter,
    pub messages: Counter,
    pub groups: Counter,
}

impl Shard {
    /// A fresh global id from `counter`: a local id times the shard count plus this shard's
    /// index, so the id names the shard that minted it.
    pub async fn mint(&self, q: &Queries, counter: &Counter) -> Result<u64> {
        let mut range = counter.range.lock().await;
        if range.0 >= range.1 {
            let mut tx = self.pool.begin().await?;
            sqlx::query(q.counter_advance)
                .bind(counter.block as i64)
                .bind(counter.name)
                .execute(&mut *tx)
                .await?;
            let row: AnyRow =
                sqlx::query(q.counter_read).bind(counter.name).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            let end = row.try_get::<i64, _>(0)? as u64;
            *range = (end - counter.block, end);
        }
        let local = range.0;
        range.0 += 1;
        Ok(local * self.count + self.index)
    }
}

/// The dialect of the shard list, all of one kind.
pub(crate) fn dialect_of(config: &SqlConfig) -> Result<Dialect> {
    let first = config.urls.first().ok_or(SqlError::NoShards)?;
    let dialect = Dialect::of(first)?;
    for url in &config.urls {
        if Dialect::of(url)? != dialect {
            return Err(SqlError::MixedDialects);
        }
    }
    Ok(dialect)
}

pub(crate) async fn open_all(
    config: &SqlConfig,
    dialect: Dialect,
    queries: &Arc<Queries>,
) -> Result<Vec<Shard>> {
    sqlx::any::install_default_drivers();
    let count = config.urls.len() as u64;
    let mut shards = Vec::with_capacity(config.urls.len());
    for (index, url) in config.urls.iter().enumerate() {
        let index = index as u64;
        let pool = AnyPoolOptions::new()
            .max_connections(config.connections_per_shard)
            .acquire_timeout(config.acquire_timeout)
            .connect(url)
            .await
            .map_err(|source| SqlError::Connect { index, source })?;
        dialect
            .migrations()
            .run(&pool)
            .await
            .map_err(|source| SqlError::Migrate { index, source })?;
        claim_place(dialect, &pool, index, count).await?;
        shards.push(Shard {
            index,
            count,
            lookups: Lookups::start(pool.clone(), queries.clone(), config.writers_per_shard),
            pool,
            writer: Writer::start(url, queries.clone(), dialect, index, config.writers_per_shard),
            users: Counter::new("user", 16),
            devices: Counter::new("device", 64),
            messages: Counter::new("message", 1024),
            groups: Counter::new("group", 16),
        });
    }
    Ok(shards)
}

/// Records the shard's place at first open; refuses to open it under another place later.
async fn claim_place(dialect: Dialect, pool: &AnyPool, index: u64, count: u64) -> Result<()> {
    let claim = match dialect {
        Dialect::MySql => {
            "INSERT IGNORE INTO shard_meta (id, shard_index, shard_count) VALUES (1, ?, ?)"
        }
        Dialect::Postgres => {
            "INSERT INTO shard_meta (id, shard_index, shard_count) VALUES (1, $1, $2)
             ON CONFLICT (id) DO NOTHING"
        }
    };
    sqlx::query(claim).bind(index as i64).bind(count as i64).execute(pool).await?;
    let row: AnyRow = sqlx::query("SELECT shard_index, shard_count FROM shard_meta WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let found_index = row.try_get::<i64, _>(0)? as u64;
    let found_count = row.try_get::<i64, _>(1)? as u64;
    if (found_index, found_count) != (index, count) {
        return Err(SqlError::ShardMismatch { index, count, found_index, found_count });
    }
    Ok(())
}
