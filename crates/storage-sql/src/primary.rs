//! A database that may be a replicated group: a url naming several hosts
//! (`postgres://user@host1:5432,host2:5432/missive`), one of them the primary, the others its
//! standbys. Missive does not elect the primary: the database's own failover machinery does
//! (Patroni, pg_auto_failover, MaxScale, an operator's runbook). Missive finds which host is
//! the primary, sends every statement there, and when that host fails or turns out to be a
//! standby (a demoted primary refuses writes), finds the primary again, without a restart.
//!
//! Acknowledged writes survive the primary only if the group replicates synchronously
//! (`synchronous_standby_names` with `synchronous_commit = on` on PostgreSQL, semi-synchronous
//! replication waiting `AFTER_SYNC` on MariaDB): then a commit returns once a standby has it,
//! and a commit cut off by the primary's death is answered as of unknown outcome, never as
//! done (`docs/scale-out.md` §3).

use crate::database::{Dialect, SqlConfig};
use crate::{Result, SqlError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the primary is checked when nothing is wrong.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one host may take to answer whether it is the primary.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// The pause between two searches of the hosts that found no primary.
const SEARCH_PAUSE: Duration = Duration::from_millis(100);
/// How long opening a store searches for a primary before it gives up.
const OPEN_DEADLINE: Duration = Duration::from_secs(30);

/// The hosts of one database and a pool of connections to the one that is primary now.
///
/// The pool outlives failovers: it is pointed at the new primary (sqlx reads its connect
/// options at each attempt, so calls waiting for a connection get one there), and it drops
/// every connection made before the failover as it comes out (one to a demoted primary would
/// still answer, and refuse every write).
pub(crate) struct Primary {
    database: u64,
    hosts: Vec<String>,
    dialect: Dialect,
    pool: AnyPool,
    /// The host the pool connects to.
    host: AtomicUsize,
    /// When the pool was last pointed at another host.
    moved: Arc<Mutex<Instant>>,
    suspect: Notify,
}

impl Primary {
    /// Finds the primary among the url's hosts and connects to it; with more than one host,
    /// keeps watching it.
    pub async fn open(database: u64, url: &str, config: &SqlConfig) -> Result<Arc<Primary>> {
        sqlx::any::install_default_drivers();
        let hosts = split_hosts(url);
        let dialect = Dialect::of(url)?;
        let host = match hosts.len() {
            1 => 0,
            _ => {
                let deadline = tokio::time::Instant::now() + OPEN_DEADLINE;
                loop {
                    match find(&hosts, dialect).await {
                        Some(found) => break found,
                        None if tokio::time::Instant::now() >= deadline => {
                            return Err(SqlError::NoPrimary { database });
                        }
                        None => tokio::time::sleep(SEARCH_PAUSE).await,
                    }
                }
            }
        };
        let moved = Arc::new(Mutex::new(Instant::now()));
        let since = moved.clone();
        let options = AnyPoolOptions::new()
            .max_connections(config.connections_per_shard)
            .acquire_timeout(config.acquire_timeout)
            .before_acquire(move |_, meta| {
                // A connection older than the last failover may lead to the old host.
                let fresh = meta.age < since.lock().expect("failover time").elapsed();
                Box::pin(async move { Ok(fresh) })
            });
        let pool = options
            .connect_with(options_of(&hosts[host])?)
            .await
            .map_err(|source| SqlError::Connect { database, source })?;
        let primary = Arc::new(Primary {
            database,
            hosts,
            dialect,
            pool,
            host: AtomicUsize::new(host),
            moved,
            suspect: Notify::new(),
        });
        if primary.hosts.len() > 1 {
            tokio::spawn(watch(Arc::downgrade(&primary)));
        }
        Ok(primary)
    }

    /// The pool of connections to the primary.
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// The url of the primary as last found.
    pub fn url(&self) -> String {
        self.hosts[self.host.load(Ordering::Acquire)].clone()
    }

    /// Has the primary checked now: a statement failed in a way a failover would explain.
    pub fn suspect(&self) {
        self.suspect.notify_one();
    }
}

fn options_of(url: &str) -> Result<AnyConnectOptions> {
    AnyConnectOptions::from_str(url).map_err(SqlError::from)
}

/// Checks the primary every [`CHECK_EVERY`], or at once when suspected; when it is not the
/// primary any more, searches the hosts until one is, and points the pool there. Ends with
/// the last handle.
async fn watch(primary: Weak<Primary>) {
    let failovers = metrics::counter!("missive_store_failovers_total");
    loop {
        let Some(me) = primary.upgrade() else { return };
        let suspected = me.suspect.notified();
        tokio::select! {
            () = suspected => {}
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let host = me.host.load(Ordering::Acquire);
        if probe(&me.hosts[host], me.dialect).await {
            continue;
        }
        tracing::warn!(database = me.database, host = %crate::redact(&me.hosts[host]),
            "the primary is gone or no longer primary; searching the hosts");
        let found = loop {
            if let Some(found) = find(&me.hosts, me.dialect).await {
                break found;
            }
            tokio::time::sleep(SEARCH_PAUSE).await;
        };
        if found == host {
            continue;
        }
        let Ok(options) = options_of(&me.hosts[found]) else { continue };
        tracing::warn!(database = me.database, host = %crate::redact(&me.hosts[found]),
            "following the new primary");
        failovers.increment(1);
        me.pool.set_connect_options(options);
        *me.moved.lock().expect("failover time") = Instant::now();
        me.host.store(found, Ordering::Release);
    }
}

/// The first host that says it is the primary.
async fn find(hosts: &[String], dialect: Dialect) -> Option<usize> {
    for (i, host) in hosts.iter().enumerate() {
        if probe(host, dialect).await {
            return Some(i);
        }
    }
    None
}

/// Whether `host` answers, on a connection of its own (a pool would retry a dead host until
/// its own timeout), within [`PROBE_DEADLINE`] that it is the primary.
async fn probe(host: &str, dialect: Dialect) -> bool {
    let probe = async {
        let mut conn = AnyConnection::connect(host).await?;
        let primary = is_primary(&mut conn, dialect).await;
        let _ = conn.close().await;
        primary
    };
    matches!(tokio::time::timeout(PROBE_DEADLINE, probe).await, Ok(Ok(true)))
}

/// Whether the server behind `conn` takes writes: PostgreSQL not in recovery, MariaDB not
/// read-only.
pub(crate) async fn is_primary(conn: &mut AnyConnection, dialect: Dialect) -> Result<bool> {
    let statement = match dialect {
        Dialect::Postgres => "SELECT CASE WHEN pg_is_in_recovery() THEN 0 ELSE 1 END",
        Dialect::MySql => "SELECT CASE WHEN @@global.read_only THEN 0 ELSE 1 END",
    };
    let row = sqlx::query(statement).fetch_one(conn).await?;
    Ok(row.try_get::<i32, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|v| v as i32))? == 1)
}

/// One url per host of `url`: `scheme://user@h1:p1,h2:p2/db?params` names the hosts `h1:p1`
/// and `h2:p2`, each with the same user, database and parameters.
pub(crate) fn split_hosts(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_string()] };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    hosts.split(',').map(|host| format!("{scheme}://{userinfo}{host}{path}")).collect()
}

/// A list of database urls, as `--store-url` takes it: urls separated by commas, each of
/// which may itself name several hosts separated by commas (a comma starts a new url only
/// where a scheme follows it).
pub fn split_url_list(list: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for part in list.split(',') {
        match urls.last_mut() {
            Some(url) if !part.contains("://") => {
                url.push(',');
                url.push_str(part);
            }
            _ if part.is_empty() => {}
            _ => urls.push(part.to_string()),
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_each_of_its_hosts() {
        assert_eq!(split_hosts("postgres://u:p@db1/m"), vec!["postgres://u:p@db1/m"]);
        assert_eq!(
            split_hosts("postgres://u:p@db1:5432,db2:5433/m?sslmode=disable"),
            vec![
                "postgres://u:p@db1:5432/m?sslmode=disable",
                "postgres://u:p@db2:5433/m?sslmode=disable"
            ]
        );
        assert_eq!(split_hosts("mysql://db1,db2/m"), vec!["mysql://db1/m", "mysql://db2/m"]);
    }

    #[test]
    fn a_list_splits_only_where_a_url_starts() {
        assert_eq!(
            split_url_list("postgres://u@a:1,b:2/m,postgres://u@c/n"),
            vec!["postgres://u@a:1,b:2/m", "postgres://u@c/n"]
        );
        assert_eq!(split_url_list("mysql://a/m,mysql://b/m"), vec!["mysql://a/m", "mysql://b/m"]);
        assert_eq!(split_url_list(""), Vec::<String>::new());
    }
}
