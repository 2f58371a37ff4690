//! One database: its pool, its migrations, the id it has in the shard map, and the writer and
//! readers of its message path.

use crate::batch::Writer;
use crate::lookup::Lookups;
use crate::primary::Primary;
use crate::queries::Queries;
use crate::{Result, SqlError};
use sqlx::any::AnyRow;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
}

impl Dialect {
    pub(crate) fn of(url: &str) -> Result<Dialect> {
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
            Dialect::Postgres => Box::leak(self.adapt_owned(sql).into_boxed_str()),
        }
    }

    /// [`Dialect::adapt`] for a statement used once.
    pub(crate) fn adapt_owned(self, sql: &str) -> String {
        match self {
            Dialect::MySql => sql.to_string(),
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
                out
            }
        }
    }

    fn migrations(self) -> Migrator {
        let scripts: [(&str, &'static str); 9] = match self {
            Dialect::MySql => [
                ("init", include_str!("../migrations/mysql/0001_init.sql")),
                ("contacts_groups", include_str!("../migrations/mysql/0002_contacts_groups.sql")),
                ("ops", include_str!("../migrations/mysql/0003_ops.sql")),
                ("pending_janitor", include_str!("../migrations/mysql/0004_pending_janitor.sql")),
                ("presence", include_str!("../migrations/mysql/0005_presence.sql")),
                ("search", include_str!("../migrations/mysql/0006_search.sql")),
                ("pushers", include_str!("../migrations/mysql/0007_pushers.sql")),
                ("search_backfill", include_str!("../migrations/mysql/0008_search_backfill.sql")),
                ("logical_shards", include_str!("../migrations/mysql/0009_logical_shards.sql")),
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
                ("logical_shards", include_str!("../migrations/postgres/0009_logical_shards.sql")),
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
    /// The databases (`mysql://...` or `postgres://...`). The first is the directory: it keeps
    /// the shard map. When the map does not exist yet, it is made from this list: database `i`
    /// is the `i`-th url and holds logical shards `l` with `l % urls.len() == i`. Once it
    /// exists the map names the databases, and only the first url is read.
    pub urls: Vec<String>,
    /// The number of logical shards of a map made from `urls`; a multiple of their count.
    /// `None`: the largest multiple of it not above 1,024.
    pub logical_shards: Option<u64>,
    /// Connections each database's pool opens at most.
    pub connections_per_shard: u32,
    /// How long a call waits for a free connection before it fails as unavailable.
    pub acquire_timeout: Duration,
    /// Transactions of the message path's group commit in flight per database at once, each
    /// on a connection of its own besides the pool's: one gathers its batch while another
    /// commits. Also the number of batched point reads in flight per database.
    pub writers_per_shard: usize,
    /// How often the map's version is read, to follow a move.
    pub map_poll: Duration,
    /// The node's name in `shard_map_nodes`, where it says which map it runs on. `None`: a
    /// random one.
    pub node_id: Option<String>,
}

impl SqlConfig {
    pub fn new(urls: Vec<String>) -> SqlConfig {
        SqlConfig {
            urls,
            logical_shards: None,
            connections_per_shard: 16,
            acquire_timeout: Duration::from_secs(5),
            writers_per_shard: 2,
            map_poll: Duration::from_secs(1),
            node_id: None,
        }
    }
}

/// One database of the map, opened.
pub(crate) struct Database {
    /// Its id in the map, which it records at first open.
    pub id: u64,
    /// Its url as the map has it (a replicated group's names every host).
    pub url: String,
    /// Where its primary is.
    pub primary: Arc<Primary>,
    /// The group-committing writer of the message path.
    pub writer: Writer,
    /// The batched point reads of the message path.
    pub lookups: Lookups,
}

impl Database {
    /// Connects to the database (its primary), migrates it, and checks that it is database
    /// `id` (recording it at first open). `list`: the length of the url list a map is being
    /// made from, which the database must have been created under too.
    pub async fn open(
        id: u64,
        url: &str,
        list: Option<u64>,
        config: &SqlConfig,
        queries: &Arc<Queries>,
        logical: u64,
    ) -> Result<Database> {
        let dialect = Dialect::of(url)?;
        let primary = Primary::open(id, url, config).await?;
        let pool = primary.pool();
        migrate(&pool, dialect, id).await?;
        claim_place(dialect, &pool, id, list).await?;
        let tasks = config.writers_per_shard;
        let writer = Writer::start(primary.clone(), queries.clone(), dialect, id, logical, tasks);
        Ok(Database {
            id,
            url: url.to_string(),
            lookups: Lookups::start(primary.clone(), queries.clone(), tasks),
            primary,
            writer,
        })
    }

    /// The pool of its primary.
    pub fn pool(&self) -> AnyPool {
        self.primary.pool()
    }
}

/// Brings database `id`'s schema up to date, under the migrator's lock.
pub(crate) async fn migrate(pool: &AnyPool, dialect: Dialect, id: u64) -> Result<()> {
    dialect
        .migrations()
        .run(pool)
        .await
        .map_err(|source| SqlError::Migrate { database: id, source })
}

/// The dialect of the url list, all of one kind.
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

/// Records the database's id at first open, and refuses to open it under another id later.
/// With `list`, also the length of the url list it was created under, which must not change
/// while the map is made from the list.
pub(crate) async fn claim_place(
    dialect: Dialect,
    pool: &AnyPool,
    id: u64,
    list: Option<u64>,
) -> Result<()> {
    let claim = match dialect {
        Dialect::MySql => {
            "INSERT IGNORE INTO shard_meta (id, shard_index, shard_count) VALUES (1, ?, ?)"
        }
        Dialect::Postgres => {
            "INSERT INTO shard_meta (id, shard_index, shard_count) VALUES (1, $1, $2)
             ON CONFLICT (id) DO NOTHING"
        }
    };
    let count = list.unwrap_or(0);
    sqlx::query(claim).bind(id as i64).bind(count as i64).execute(pool).await?;
    let row: AnyRow = sqlx::query("SELECT shard_index, shard_count FROM shard_meta WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let found_index = row.try_get::<i64, _>(0)? as u64;
    let found_count = row.try_get::<i64, _>(1)? as u64;
    if found_index != id || list.is_some_and(|count| count != found_count) {
        return Err(SqlError::ShardMismatch { index: id, count, found_index, found_count });
    }
    Ok(())
}
