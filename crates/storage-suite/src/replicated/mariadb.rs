//! A MariaDB primary and a replica that follows it by GTID, with semi-synchronous replication
//! waiting at `AFTER_SYNC`.

use super::{DATABASE, Replication, Server, log_tail, run, running_as_root};
use sqlx::{Connection, Row};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the primary waits for the replica's acknowledgement of a commit before it gives up
/// and goes on asynchronously (`rpl_semi_sync_master_timeout`, in milliseconds): an hour, far
/// longer than any test, so that the primary never falls back to asynchronous replication in
/// silence while a test counts on it. An operator chooses here between availability (a short
/// timeout: commits go on, unprotected, when the replica is away) and durability (a long one:
/// commits stall until a replica acknowledges).
const SEMI_SYNC_TIMEOUT_MS: u64 = 3_600_000;

/// The account the pair's urls use: every privilege on the databases `missive%`, and none of
/// the global ones, so that `read_only` refuses its writes on the replica (root holds
/// `READ ONLY ADMIN`, which `read_only` lets through).
const USER: &str = "missive";

/// A MariaDB primary and (unless [`Replication::NoStandby`]) a replica, each with its binary log
/// (`log_slave_updates`, so the replica's GTIDs match and it can serve as a primary), `sync_binlog
/// = 1` and `innodb_flush_log_at_trx_commit = 1`. With [`Replication::Synchronous`] the primary
/// runs semi-synchronous replication waiting at `AFTER_SYNC`: a commit is acknowledged to its
/// client only once the replica has written it to its relay log, and no other client sees it
/// before that. The replica runs `read_only`, so a client that writes to it by mistake is
/// refused (error 1290).
///
/// The replica runs with `rpl_semi_sync_master_enabled = OFF`: promoted, it takes writes alone
/// rather than wait the whole timeout on each commit for a replica that does not exist.
///
/// Dropping the pair kills both servers and removes their files.
pub struct MariaDbPair {
    primary: Server,
    replica: Option<Server>,
    /// Holds the data directories and logs; removed after the servers are killed.
    dir: tempfile::TempDir,
}

impl MariaDbPair {
    /// A primary with a semi-synchronous replica, the primary's semi-synchronous status on,
    /// and the database [`DATABASE`] with its account created on the primary and replicated.
    pub async fn start() -> MariaDbPair {
        MariaDbPair::start_with(Replication::Synchronous).await
    }

    /// As [`MariaDbPair::start`] with another [`Replication`].
    pub async fn start_with(replication: Replication) -> MariaDbPair {
        let dir = tempfile::Builder::new().prefix("missive-mariadb-pair-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let primary_data = root.join("primary");
        let replica_data = root.join("replica");

        let install = which(&["mariadb-install-db", "mysql_install_db"])
            .expect("mariadb-install-db (scripts/test-services installs mariadb-server)");
        let mut command = Command::new(install);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", primary_data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&root);
        if running_as_root() {
            command.arg("--user=root");
        }
        run("mariadb-install-db", &mut command);
        // The replica starts from the same system tables, with an empty binary log: it
        // replicates everything the primary does from its first transaction.
        if replication != Replication::NoStandby {
            run("cp", Command::new("cp").arg("-a").arg(&primary_data).arg(&replica_data));
        }

        let primary = start_mariadb("mariadb primary", &root, &primary_data, 1, replication).await;
        let mut pair = MariaDbPair { primary, replica: None, dir };
        if replication != Replication::NoStandby {
            let replica =
                start_mariadb("mariadb replica", &root, &replica_data, 2, replication).await;
            let change = format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {},
                 MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_CONNECT_RETRY = 1,
                 MASTER_USE_GTID = slave_pos",
                pair.primary.port
            );
            execute(&admin_url(replica.port), &[&change, "START SLAVE"]).await;
            pair.replica = Some(replica);
            pair.wait_until_replicating(replication).await;
        }

        // Only now: on a semi-synchronous primary, a commit before the replica is attached
        // waits for it.
        let create = [
            format!("CREATE DATABASE {DATABASE}"),
            format!("CREATE USER '{USER}'@'127.0.0.1'"),
            format!("GRANT ALL ON `{DATABASE}%`.* TO '{USER}'@'127.0.0.1'"),
        ];
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        execute(&admin_url(pair.primary.port), &create).await;
        if pair.replica.is_some() {
            pair.wait_until_replica_caught_up().await;
        }
        pair
    }

    /// Waits until the replica's threads run and, with semi-synchronous replication, the
    /// primary counts it as a semi-synchronous client with its status on.
    async fn wait_until_replicating(&self, replication: Replication) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.replica_status().await;
            let running = status.as_ref().is_some_and(|s| {
                field(s, "Slave_IO_Running") == "Yes" && field(s, "Slave_SQL_Running") == "Yes"
            });
            let semi_sync = replication != Replication::Synchronous
                || (self.semi_sync_is_on().await
                    && status_variable(
                        &admin_url(self.primary.port),
                        "Rpl_semi_sync_master_clients",
                    )
                    .await
                        != "0");
            if running && semi_sync {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica is not replicating within 20 s (io/sql {:?}, error {:?}):\n{}",
                status
                    .as_ref()
                    .map(|s| (field(s, "Slave_IO_Running"), field(s, "Slave_SQL_Running"))),
                status.as_ref().map(|s| field(s, "Last_IO_Error")),
                self.replica_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the replica has applied everything the primary's binary log holds now.
    async fn wait_until_replica_caught_up(&self) {
        let mut primary = connect(&admin_url(self.primary.port)).await.unwrap();
        let position: String =
            sqlx::query_scalar("SELECT @@gtid_binlog_pos").fetch_one(&mut primary).await.unwrap();
        let replica = self.replica.as_ref().unwrap();
        let mut connection = connect(&admin_url(replica.port)).await.unwrap();
        let waited: i64 = sqlx::query_scalar("SELECT MASTER_GTID_WAIT(?, 20)")
            .bind(&position)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(waited, 0, "the replica did not reach {position} within 20 s");
    }

    /// `SHOW SLAVE STATUS` on the replica, or `None` if it has no master configured.
    async fn replica_status(&self) -> Option<sqlx::mysql::MySqlRow> {
        let replica = self.replica.as_ref()?;
        let mut connection = connect(&admin_url(replica.port)).await.ok()?;
        sqlx::raw_sql("SHOW SLAVE STATUS").fetch_optional(&mut connection).await.unwrap()
    }

    /// The primary's [`DATABASE`], as the pair's unprivileged account.
    pub fn primary_url(&self) -> String {
        url(self.primary.port)
    }

    /// The replica's [`DATABASE`]; panics on a pair started with no replica.
    pub fn standby_url(&self) -> String {
        url(self.replica.as_ref().expect("a pair with a replica").port)
    }

    /// Both urls, the primary's first (one, with no replica).
    pub fn urls(&self) -> Vec<String> {
        let mut urls = vec![self.primary_url()];
        if self.replica.is_some() {
            urls.push(self.standby_url());
        }
        urls
    }

    /// The primary's server as `root`, with no database, for administration.
    pub fn primary_admin_url(&self) -> String {
        admin_url(self.primary.port)
    }

    /// Whether the primary's semi-synchronous replication is on now
    /// (`Rpl_semi_sync_master_status`): off, it acknowledges commits the replica may not have.
    pub async fn semi_sync_is_on(&self) -> bool {
        status_variable(&admin_url(self.primary.port), "Rpl_semi_sync_master_status").await == "ON"
    }

    /// How many commits the primary acknowledged without the replica's acknowledgement
    /// (`Rpl_semi_sync_master_no_tx`): 0 while semi-synchronous replication never fell back.
    pub async fn commits_not_acknowledged_by_replica(&self) -> u64 {
        status_variable(&admin_url(self.primary.port), "Rpl_semi_sync_master_no_tx")
            .await
            .parse()
            .unwrap()
    }

    /// SIGKILL to the primary: it is lost with whatever commits were in flight, as if its
    /// machine died (this pair never restarts it).
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// SIGKILL to the replica: with semi-synchronous replication, each commit on the primary
    /// then waits for it up to `rpl_semi_sync_master_timeout`, after which the primary goes on
    /// asynchronously.
    pub fn kill_replica(&mut self) {
        if let Some(replica) = self.replica.as_mut() {
            replica.kill();
        }
    }

    /// Whether the primary's process still runs (false once [`MariaDbPair::kill_primary`]).
    pub fn primary_is_running(&mut self) -> bool {
        self.primary.is_running()
    }

    /// Makes the replica the primary, keeping every transaction it received: stops fetching
    /// from the (lost) primary, waits until it has applied all it received (its relay log up to
    /// `Gtid_IO_Pos`, which semi-synchronous replication made hold every acknowledged commit),
    /// forgets the old primary and turns `read_only` off. Panics if it does not finish within
    /// 30 s.
    pub async fn promote_replica(&self) {
        let replica = self.replica.as_ref().expect("a pair with a replica");
        let admin = admin_url(replica.port);
        execute(&admin, &["STOP SLAVE IO_THREAD"]).await;
        let status = self.replica_status().await.expect("the replica has a master");
        let received = field(&status, "Gtid_IO_Pos");
        if !received.is_empty() {
            let mut connection = connect(&admin).await.unwrap();
            let waited: i64 = sqlx::query_scalar("SELECT MASTER_GTID_WAIT(?, 30)")
                .bind(&received)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            let status = self.replica_status().await.unwrap();
            assert_eq!(
                waited,
                0,
                "the replica did not apply what it received ({received}) within 30 s: {}",
                field(&status, "Last_SQL_Error")
            );
        }
        execute(&admin, &["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = OFF"]).await;
        super::wait_until_primary(&self.standby_url(), Duration::from_secs(10)).await;
    }

    /// The last lines of the primary's error log.
    pub fn primary_log(&self) -> String {
        log_tail(&self.primary.log)
    }

    /// The last lines of the replica's error log.
    pub fn replica_log(&self) -> String {
        self.replica.as_ref().map(|s| log_tail(&s.log)).unwrap_or_default()
    }

    /// Where the pair keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn url(port: u16) -> String {
    format!("mysql://{USER}@127.0.0.1:{port}/{DATABASE}")
}

fn admin_url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}/mysql")
}

async fn connect(url: &str) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    match tokio::time::timeout(Duration::from_secs(5), sqlx::MySqlConnection::connect(url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

async fn execute(url: &str, statements: &[&str]) {
    let mut connection = connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// A global status variable's value, as text.
async fn status_variable(url: &str, name: &str) -> String {
    let mut connection = connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SHOW GLOBAL STATUS LIKE '{name}'")))
        .fetch_one(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    field(&row, "Value")
}

/// A column of a `SHOW` statement's row, as text (some are binary strings).
fn field(row: &sqlx::mysql::MySqlRow, name: &str) -> String {
    match row.try_get::<String, _>(name) {
        Ok(text) => text,
        Err(_) => {
            let bytes: Option<Vec<u8>> = row.try_get(name).unwrap_or_default();
            String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
        }
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    names.iter().flat_map(|name| dirs.iter().map(move |dir| dir.join(name))).find(|p| p.exists())
}

async fn start_mariadb(
    name: &'static str,
    root: &Path,
    data: &Path,
    server_id: u32,
    replication: Replication,
) -> Server {
    let mariadbd =
        which(&["mariadbd", "mysqld"]).expect("mariadbd (scripts/test-services installs it)");
    let primary = server_id == 1;
    let semi_sync_master = primary && replication == Replication::Synchronous;
    Server::start(
        name,
        root.join(format!("{}.log", data.file_name().unwrap().to_string_lossy())),
        |port| {
            let mut command = Command::new(&mariadbd);
            command
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", data.join("mariadb.sock").display()))
                .arg(format!("--pid-file={}", data.join("mariadb.pid").display()))
                .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
                .args(["--skip-name-resolve", "--max-connections=200"])
                .args(["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M"])
                .args(["--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"])
                // Durability: the binary log and InnoDB's log are flushed at each commit.
                .args(["--sync-binlog=1", "--innodb-flush-log-at-trx-commit=1"])
                .args([&format!("--server-id={server_id}"), "--log-bin=mariadb-bin"])
                .args(["--binlog-format=ROW", "--log-slave-updates", "--gtid-strict-mode=ON"])
                .args(["--relay-log=relay-bin", "--relay-log-recovery=ON"])
                .arg(format!(
                    "--rpl-semi-sync-master-enabled={}",
                    if semi_sync_master { "ON" } else { "OFF" }
                ))
                .args(["--rpl-semi-sync-slave-enabled=ON"])
                .args(["--rpl-semi-sync-master-wait-point=AFTER_SYNC"])
                .args(["--rpl-semi-sync-master-wait-no-slave=ON"])
                .arg(format!("--rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}"))
                .arg(format!("--read-only={}", if primary { "OFF" } else { "ON" }))
                .current_dir(root);
            if running_as_root() {
                command.arg("--user=root");
            }
            command
        },
        admin_url,
        "SELECT @@datadir",
        data,
    )
    .await
}
