//! Replicated database groups for tests: a primary and a standby of PostgreSQL
//! ([`PostgresPair`]) or MariaDB ([`MariaDbPair`]), started by the test itself on free loopback
//! ports in a temporary directory, so that a test can kill the primary with SIGKILL, promote the
//! standby and check what survived.
//!
//! Unlike the servers of `scripts/test-services`, these keep every durability setting on
//! (fsync, `sync_binlog`, `innodb_flush_log_at_trx_commit`): what a test of a failover shows
//! holds for the settings an operator runs. A pair is dropped with its processes and its files;
//! every wait is bounded and a server that does not come up panics with the tail of its log.

mod mariadb;
mod postgres;

pub use mariadb::MariaDbPair;
pub use postgres::PostgresPair;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database every pair creates on its primary (and that reaches the standby by
/// replication); the urls a pair gives name it.
pub const DATABASE: &str = "missive";

/// How a pair replicates: the safe setting the tests check, and the others that a benchmark
/// compares it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// A commit is acknowledged once the standby holds it (PostgreSQL: a synchronous standby
    /// with `synchronous_commit = on`; MariaDB: semi-synchronous, `AFTER_SYNC`).
    Synchronous,
    /// The standby follows, but a commit is acknowledged without waiting for it.
    Asynchronous,
    /// No standby at all: the primary alone, as a baseline.
    NoStandby,
}

/// Whether the server at `url` (`postgres://…` or `mysql://…`) takes writes now: PostgreSQL is
/// not in recovery (`pg_is_in_recovery()`), MariaDB is not `read_only`.
pub async fn is_primary(url: &str) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await?;
        let recovering: bool =
            sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut connection).await?;
        Ok(!recovering)
    } else {
        let mut connection = sqlx::MySqlConnection::connect(url).await?;
        let read_only: i64 =
            sqlx::query_scalar("SELECT @@global.read_only").fetch_one(&mut connection).await?;
        Ok(read_only == 0)
    }
}

/// Waits until the server at `url` answers as a primary; panics after `within`.
pub async fn wait_until_primary(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(2), is_primary(url)).await {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => "it is a standby".to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer within 2 s".to_string(),
        };
        assert!(Instant::now() < deadline, "{url} is not a primary within {within:?}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether this process runs as root, which PostgreSQL refuses to run as.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// A port of 127.0.0.1 that nothing listens on now (another process may take it before the
/// server binds it: [`Server::start`] retries on another).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The last lines of a server's log, for a panic message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// Runs a setup command to completion (bounded by the command itself), panicking with its
/// output if it fails.
fn run(what: &str, command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One database server process, the leader of its own process group so that a kill reaches
/// every process it forked (PostgreSQL's backends) and none outlives the test.
struct Server {
    name: &'static str,
    /// `None` once killed.
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// How long a server may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Starts `command(port)` on a free port, retrying on another when the port was taken
    /// meanwhile, and waits until `datadir_query` on `url(port)` names `datadir` (it answers,
    /// and it is this server rather than one that won the port). Output goes to `log`.
    async fn start(
        name: &'static str,
        log: PathBuf,
        mut command: impl FnMut(u16) -> Command,
        url: impl Fn(u16) -> String,
        datadir_query: &'static str,
        datadir: &Path,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        for _ in 0..5 {
            let port = free_port();
            let file = std::fs::File::create(&log).unwrap();
            let child = command(port)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
            let mut server = Server { name, child: Some(child), port, log: log.clone() };
            if server.wait_until_it_answers(&url(port), datadir_query, datadir).await {
                return server;
            }
            // It exited on a taken port: `server` is dropped (reaped), and another port tried.
        }
        panic!("{name}: no free port after 5 attempts:\n{}", log_tail(&log))
    }

    /// Whether it answers (true) or exited because its port was taken (false); panics, with
    /// the log's tail, on any other exit and after [`START_TIMEOUT`].
    async fn wait_until_it_answers(
        &mut self,
        url: &str,
        query: &'static str,
        datadir: &Path,
    ) -> bool {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let deadline = Instant::now() + START_TIMEOUT;
        let expected = datadir.to_string_lossy().trim_end_matches('/').to_string();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let tail = log_tail(&self.log);
                if tail.contains("in use") {
                    self.child = None;
                    return false;
                }
                panic!("{} exited ({status}) before it answered:\n{tail}", self.name);
            }
            let probe = async {
                let mut connection = sqlx::AnyConnection::connect(url).await?;
                sqlx::query_scalar::<_, String>(query).fetch_one(&mut connection).await
            };
            if let Ok(Ok(found)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                assert_eq!(
                    found.trim_end_matches('/'),
                    expected,
                    "{}: another server answers on port {}",
                    self.name,
                    self.port
                );
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer on port {} within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.port,
                log_tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL to its whole process group, and waits for the leader to exit.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        // The leader first, through its handle (which cannot name a reaped, reused pid), then
        // the group, which reaches the backends it forked.
        let _ = child.kill();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map(|status| status.is_none()).unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
