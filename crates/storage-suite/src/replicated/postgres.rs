//! A PostgreSQL primary and a streaming-replication standby made with `pg_basebackup -R`,
//! which the primary names in `synchronous_standby_names`.

use super::{DATABASE, Replication, Server, log_tail, run, running_as_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The standby's `application_name`, which the primary's `synchronous_standby_names` names.
const STANDBY_NAME: &str = "standby";

/// A PostgreSQL primary and (unless [`Replication::NoStandby`]) a hot standby that streams its
/// WAL through a replication slot. With [`Replication::Synchronous`] the primary runs
/// `synchronous_commit = on` with the standby as its one synchronous standby: a commit is
/// acknowledged only once the standby has flushed its WAL, so after the primary is lost and the
/// standby promoted (promotion replays all the WAL it received) every acknowledged commit is
/// there. `remote_apply` is not needed for that; it would only matter to reads on the standby
/// *before* promotion.
///
/// The standby runs with `synchronous_standby_names = ''`: promoted, it takes writes alone
/// rather than block every commit waiting for a standby that does not exist.
///
/// Both servers run as the `postgres` user when the test runs as root (PostgreSQL refuses
/// root), as `scripts/test-services` runs them. Dropping the pair kills both and removes their
/// files.
pub struct PostgresPair {
    primary: Server,
    standby: Option<Server>,
    primary_data: PathBuf,
    standby_data: PathBuf,
    /// Holds the data directories and logs; removed after the servers are killed.
    dir: tempfile::TempDir,
}

impl PostgresPair {
    /// A primary with a synchronous standby, both answering and the standby attached as `sync`,
    /// and the database [`DATABASE`] created on the primary and visible on the standby.
    pub async fn start() -> PostgresPair {
        PostgresPair::start_with(Replication::Synchronous).await
    }

    /// As [`PostgresPair::start`] with another [`Replication`]: an asynchronous standby, or
    /// none, for a benchmark of what synchronous replication costs.
    pub async fn start_with(replication: Replication) -> PostgresPair {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new().prefix("missive-pg-pair-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let as_root = running_as_root();
        if as_root {
            // The postgres user must reach its data directories through this one.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let primary_data = root.join("primary");
        let standby_data = root.join("standby");
        for data in [&primary_data, &standby_data] {
            make_data_dir(data, as_root);
        }

        run(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .args(["-D".as_ref(), primary_data.as_os_str()])
                .args(["-U", "root", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
                .args(["--no-instructions"])
                .current_dir(&root),
        );
        let synchronous = match replication {
            Replication::Synchronous => format!("'\"{STANDBY_NAME}\"'"),
            Replication::Asynchronous | Replication::NoStandby => "''".to_string(),
        };
        append(
            &primary_data.join("postgresql.conf"),
            &format!(
                "\n# A test's primary: every durability setting on.\n\
                 listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = ''\n\
                 max_connections = 100\n\
                 wal_level = replica\n\
                 max_wal_senders = 4\n\
                 max_replication_slots = 4\n\
                 fsync = on\n\
                 synchronous_commit = on\n\
                 synchronous_standby_names = {synchronous}\n"
            ),
        );

        let primary = start_postgres("postgres primary", &bin, &root, &primary_data).await;
        let mut pair = PostgresPair { primary, standby: None, primary_data, standby_data, dir };

        if replication != Replication::NoStandby {
            let conninfo = format!(
                "host=127.0.0.1 port={} user=root application_name={STANDBY_NAME}",
                pair.primary.port
            );
            run(
                "pg_basebackup",
                as_postgres(&bin.join("pg_basebackup"))
                    .args(["-D".as_ref(), pair.standby_data.as_os_str()])
                    .args(["-d", &conninfo, "-R", "-C", "-S", "standby_slot"])
                    .args(["-X", "stream", "-c", "fast", "--no-sync"])
                    .current_dir(&root),
            );
            append(
                &pair.standby_data.join("postgresql.conf"),
                "\n# The standby: promoted, it takes writes alone.\n\
                 synchronous_standby_names = ''\n",
            );
            let standby = start_postgres("postgres standby", &bin, &root, &pair.standby_data).await;
            pair.standby = Some(standby);
            pair.wait_until_streaming(replication).await;
        }

        // Only now: on a synchronous primary, a commit before the standby is attached waits.
        let admin = url(pair.primary.port, "postgres");
        execute(&admin, &format!("CREATE DATABASE {DATABASE}")).await;
        if pair.standby.is_some() {
            let standby = pair.standby_url();
            let deadline = Instant::now() + Duration::from_secs(10);
            while connect(&standby).await.is_err() {
                assert!(Instant::now() < deadline, "{DATABASE} never reached the standby");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        pair
    }

    /// Waits until the primary reports the standby streaming, in the `sync` state when
    /// replication is synchronous.
    async fn wait_until_streaming(&self, replication: Replication) {
        let admin = url(self.primary.port, "postgres");
        let wanted = if replication == Replication::Synchronous { "sync" } else { "async" };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut connection = connect(&admin).await.unwrap();
            let state: Option<String> = sqlx::query_scalar(
                "SELECT sync_state FROM pg_stat_replication
                 WHERE application_name = $1 AND state = 'streaming'",
            )
            .bind(STANDBY_NAME)
            .fetch_optional(&mut connection)
            .await
            .unwrap();
            if state.as_deref() == Some(wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby is not streaming ({wanted}) within 20 s (state {state:?}):\n{}",
                self.standby.as_ref().map(|s| log_tail(&s.log)).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The primary's [`DATABASE`], as the superuser `root`.
    pub fn primary_url(&self) -> String {
        url(self.primary.port, DATABASE)
    }

    /// The standby's [`DATABASE`]; panics on a pair started with no standby.
    pub fn standby_url(&self) -> String {
        url(self.standby.as_ref().expect("a pair with a standby").port, DATABASE)
    }

    /// Both urls, the primary's first (one, with no standby).
    pub fn urls(&self) -> Vec<String> {
        let mut urls = vec![self.primary_url()];
        if self.standby.is_some() {
            urls.push(self.standby_url());
        }
        urls
    }

    /// SIGKILL to the primary's postmaster and every backend it forked: the primary is lost
    /// with whatever commits were in flight, as if its machine died (its files remain, but
    /// this pair never restarts it).
    pub fn kill_primary(&mut self) {
        self.primary.kill();
        remove_shared_memory(&self.primary_data);
    }

    /// SIGKILL to the standby (with its WAL receiver): with synchronous replication, every
    /// commit on the primary then waits until a standby is back.
    pub fn kill_standby(&mut self) {
        if let Some(standby) = self.standby.as_mut() {
            standby.kill();
        }
        remove_shared_memory(&self.standby_data);
    }

    /// Whether the primary's process still runs (false once [`PostgresPair::kill_primary`]).
    pub fn primary_is_running(&mut self) -> bool {
        self.primary.is_running()
    }

    /// Promotes the standby (`pg_promote()`, which waits until it is out of recovery, having
    /// replayed all the WAL it received) and waits until it takes writes.
    pub async fn promote_standby(&self) {
        let standby = url(self.standby.as_ref().expect("a pair with a standby").port, "postgres");
        let mut connection = connect(&standby).await.unwrap();
        let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, 30)")
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("pg_promote: {e}"));
        assert!(promoted, "the standby was not promoted within 30 s:\n{}", self.standby_log());
        super::wait_until_primary(&self.standby_url(), Duration::from_secs(10)).await;
    }

    /// The last lines of the primary's log.
    pub fn primary_log(&self) -> String {
        log_tail(&self.primary.log)
    }

    /// The last lines of the standby's log.
    pub fn standby_log(&self) -> String {
        self.standby.as_ref().map(|s| log_tail(&s.log)).unwrap_or_default()
    }

    /// Where the pair keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresPair {
    fn drop(&mut self) {
        self.primary.kill();
        if let Some(standby) = self.standby.as_mut() {
            standby.kill();
        }
        remove_shared_memory(&self.primary_data);
        remove_shared_memory(&self.standby_data);
        // `dir` is removed after this, with the data directories.
    }
}

fn url(port: u16, database: &str) -> String {
    format!("postgres://root@127.0.0.1:{port}/{database}")
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

async fn execute(url: &str, statement: &str) {
    let mut connection = connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The newest PostgreSQL's binaries: Debian keeps them out of PATH, under their major version
/// (as `scripts/test-services` finds them).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL under /usr/lib/postgresql (scripts/test-services installs it)")
    })
}

/// A command that runs `program` as the `postgres` user when this process is root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]);
        command.arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn make_data_dir(data: &Path, as_root: bool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(data).unwrap();
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).unwrap();
    if as_root {
        run("chown", Command::new("chown").arg("postgres:postgres").arg(data));
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

async fn start_postgres(name: &'static str, bin: &Path, root: &Path, data: &Path) -> Server {
    let postgres = bin.join("postgres");
    Server::start(
        name,
        root.join(format!("{}.log", data.file_name().unwrap().to_string_lossy())),
        |port| {
            let mut command = as_postgres(&postgres);
            command.arg("-D").arg(data).args(["-p", &port.to_string()]).current_dir(root);
            command
        },
        |port| url(port, "postgres"),
        "SELECT current_setting('data_directory')",
        data,
    )
    .await
}

/// Removes the System V shared memory segment of a postmaster that was killed (a clean
/// shutdown removes it itself; after SIGKILL it would stay until the machine restarts). Its
/// id is on the seventh line of `postmaster.pid`; a server that shut down cleanly left no file.
fn remove_shared_memory(data: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else { return };
    let Some(id) = pid_file.lines().nth(6).and_then(|l| l.split_whitespace().nth(1)) else {
        return;
    };
    let _ = Command::new("ipcrm")
        .args(["-m", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
