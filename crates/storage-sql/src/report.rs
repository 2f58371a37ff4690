//! What `missive admin shards` shows: the shard map, and for each logical shard the database
//! holding it, its state there, its users, its rows and an estimate of its bytes. Read from
//! the databases directly, without opening a store (no node is started, nothing is written).

use crate::database::{Dialect, SqlConfig};
use crate::map::{ShardMap, ShardState};
use crate::{Result, SqlError};
use missive_proto::ids::GROUP_ID_BASE;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::collections::BTreeMap;

/// The tables of a logical shard's rows, with the expression naming each row's logical shard
/// (`{L}` stands for the number of logical shards). Messages are counted under the shard of
/// the user who sent them, which the id names.
const TABLES: [(&str, &str); 15] = [
    ("accounts", "user_id % {L}"),
    ("sessions", "user_id % {L}"),
    ("session_tokens", "shard"),
    ("delivery_marks", "user_id % {L}"),
    ("inbox", "user_id % {L}"),
    ("inbox_heads", "user_id % {L}"),
    ("seq_max", "user_id % {L}"),
    ("contacts", "owner_id % {L}"),
    ("contact_heads", "user_id % {L}"),
    ("pushers", "user_id % {L}"),
    ("sent_messages", "from_user_id % {L}"),
    ("pending_entries", "message_id % {L}"),
    ("messages", "message_id % {L}"),
    ("chat_groups", "(group_id - {G}) % {L}"),
    ("group_members", "(group_id - {G}) % {L}"),
];

/// One logical shard, as the database holding it has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardUsage {
    pub shard: u64,
    pub database: u64,
    /// Its state on that database (`None`: the database has no row for it).
    pub state: Option<&'static str>,
    pub users: u64,
    pub rows: u64,
    /// An estimate: each table's size on the database, shared out by rows.
    pub bytes: u64,
}

/// One database of the map and what it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatabaseUsage {
    pub id: u64,
    pub url: String,
    /// The logical shards the map gives it.
    pub shards: u64,
    pub users: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// The map and the usage of every database and logical shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardReport {
    pub version: u64,
    pub logical_shards: u64,
    pub databases: Vec<DatabaseUsage>,
    pub shards: Vec<ShardUsage>,
}

impl ShardState {
    pub fn name(self) -> &'static str {
        match self {
            ShardState::Held => "held",
            ShardState::Copying => "copying",
            ShardState::Fenced => "fenced",
            ShardState::Gone => "gone",
            ShardState::Incoming => "incoming",
        }
    }
}

/// Reads the map from the directory (`urls[0]`) and counts each logical shard's rows on the
/// database holding it.
pub async fn shard_report(urls: &[String]) -> Result<ShardReport> {
    let mut config = SqlConfig::new(urls.to_vec());
    config.connections_per_shard = 2;
    let directory = crate::map::directory(&config).await?.pool();
    let map = ShardMap::load(&directory).await?.ok_or(SqlError::NotFound("shard map"))?;
    let logical = map.logical_shards;
    let mut shards: Vec<ShardUsage> = (0..logical)
        .map(|shard| ShardUsage { shard, database: map.owner(shard), ..ShardUsage::default() })
        .collect();
    let mut databases = Vec::new();
    for (&id, url) in &map.databases {
        let pool = crate::primary::Primary::open(id, url, &config).await?.pool();
        let dialect = Dialect::of(url)?;
        for row in sqlx::query("SELECT shard, state FROM logical_shards").fetch_all(&pool).await? {
            let shard = row.try_get::<i64, _>(0)? as u64;
            let state = ShardState::of(row.try_get::<i64, _>(1)?).map(ShardState::name);
            if let Some(usage) = shards.get_mut(shard as usize).filter(|u| u.database == id) {
                usage.state = state;
            }
        }
        let table_bytes = table_bytes(&pool, dialect).await?;
        for (table, expression) in TABLES {
            let expression = expression
                .replace("{L}", &logical.to_string())
                .replace("{G}", &GROUP_ID_BASE.to_string());
            let query = format!("SELECT {expression}, COUNT(*) FROM {table} GROUP BY 1");
            let mut counts = Vec::new();
            for row in sqlx::query(AssertSqlSafe(query)).fetch_all(&pool).await? {
                counts.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)? as u64));
            }
            // The table's size, shared out by rows.
            let total: u64 = counts.iter().map(|(_, rows)| rows).sum();
            let size = table_bytes.get(table).copied().unwrap_or(0);
            for (shard, rows) in counts {
                let Some(usage) =
                    shards.get_mut(shard as usize).filter(|usage| usage.database == id)
                else {
                    continue; // A copy the map does not send anyone to (a move's leftovers).
                };
                usage.rows += rows;
                usage.bytes += (size as u128 * rows as u128 / total.max(1) as u128) as u64;
                if table == "accounts" {
                    usage.users += rows;
                }
            }
        }
        let mine = shards.iter().filter(|usage| usage.database == id);
        let mut usage = DatabaseUsage { id, url: redact(url), ..DatabaseUsage::default() };
        for shard in mine {
            usage.shards += 1;
            usage.users += shard.users;
            usage.rows += shard.rows;
            usage.bytes += shard.bytes;
        }
        databases.push(usage);
        pool.close().await;
    }
    Ok(ShardReport { version: map.version, logical_shards: logical, databases, shards })
}

/// Each table's size in bytes, data and indexes, from the database's statistics.
async fn table_bytes(pool: &AnyPool, dialect: Dialect) -> Result<BTreeMap<String, u64>> {
    let query = match dialect {
        Dialect::MySql => {
            "SELECT table_name, CAST(data_length + index_length AS SIGNED)
             FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
        Dialect::Postgres => {
            "SELECT c.relname::text, pg_total_relation_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        }
    };
    let mut sizes = BTreeMap::new();
    for row in sqlx::query(query).fetch_all(pool).await? {
        sizes.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?.max(0) as u64);
    }
    Ok(sizes)
}

/// A url without its password, for showing.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_string() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://{credentials}@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("mysql://u:secret@db:3306/m"), "mysql://u:***@db:3306/m");
        assert_eq!(redact("postgres://u@db/m"), "postgres://u@db/m");
        assert_eq!(redact("postgres://db/m"), "postgres://db/m");
    }
}
