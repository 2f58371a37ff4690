//! Starts the real server binary on ports chosen by the system, and runs the real CLI.

use missive_client::Client;
use missive_client::proto::{SyncItem, sync_item::Body};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    pub data: PathBuf,
    /// Empty when the process's roles hold no client connections.
    pub tcp: String,
    pub http: String,
    /// Empty when the process serves no RPC.
    pub rpc: String,
    pub admin: String,
    extra: Vec<String>,
    /// Where the process's JSON logs go, when a test reads them (else to the test's stderr).
    log: Option<Log>,
    /// The descriptor limit the process runs under, when a test sets one.
    descriptors: Option<u64>,
    _dir: Option<tempfile::TempDir>,
}

/// A log file and the `MISSIVE_LOG` filter it is written with.
#[derive(Clone)]
pub struct Log {
    pub path: PathBuf,
    pub filter: String,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra `serve` flags, in a fresh data directory.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_with_rpc(extra, ANY_PORT)
    }

    /// Starts with extra `serve` flags and the RPC listener on `rpc`, in a fresh data
    /// directory.
    pub fn start_with_rpc(extra: &[&str], rpc: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let listen = [ANY_PORT, ANY_PORT, ANY_PORT, rpc];
        let mut server = Server::spawn_on(data, extra, None, None, listen);
        server._dir = Some(dir);
        server
    }

    /// Starts with extra `serve` flags, in a fresh data directory, allowed `descriptors` open
    /// files at most.
    pub fn start_with_descriptors(extra: &[&str], descriptors: u64) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Server::spawn_on(data, extra, None, Some(descriptors), [ANY_PORT; 4]);
        server._dir = Some(dir);
        server
    }

    /// Starts with extra `serve` flags, in a fresh data directory, its TCP long link on `tcp`.
    pub fn start_on_tcp(extra: &[&str], tcp: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server =
            Server::spawn_on(data, extra, None, None, [tcp, ANY_PORT, ANY_PORT, ANY_PORT]);
        server._dir = Some(dir);
        server
    }

    /// Starts with extra `serve` flags, in a fresh data directory, logging JSON to `log`.
    pub fn start_logging(extra: &[&str], log: Log) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Server::spawn_on(data, extra, Some(log), None, [ANY_PORT; 4]);
        server._dir = Some(dir);
        server
    }

    /// Starts on the given `[tcp, http, admin, rpc]` addresses (RPC only when `extra` picks
    /// roles: the all-in-one default serves none). Every split node of the tests holds the
    /// same deployment secret, in the tests' scratch folder.
    fn spawn_on(
        data: PathBuf,
        extra: Vec<String>,
        log: Option<Log>,
        descriptors: Option<u64>,
        listen: [&str; 4],
    ) -> Server {
        let [tcp, http, admin, rpc] = listen;
        // The tests' own HTTP clients (made with reqwest's defaults) need a process-wide TLS
        // crypto, as the SDK's do not: every test starts a server before it makes one.
        missive_tls::install_default_provider();
        let secret = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster.secret");
        let secret = secret.to_str().expect("a utf-8 path");
        let rpc: &[&str] = if extra.iter().any(|a| a == "--role") {
            &["--rpc", rpc, "--cluster-secret-file", secret]
        } else {
            &[]
        };
        let binary = env!("CARGO_BIN_EXE_missive");
        let mut command = match descriptors {
            // util-linux's prlimit, on every Debian: the limit without touching this process.
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--tcp", tcp, "--http", http, "--admin", admin])
            .args(rpc)
            // Tests create many accounts; the full Argon2 cost is for production.
            .args(["--password-memory-kib", "64", "--password-iterations", "1"])
            .args(&extra)
            .env("MISSIVE_LOG", "warn")
            // Most tests send between users who are not friends, and put them into groups;
            // the contact tests pass `--direct-messages friends` (the default), which wins
            // over this. Consent to groups is tested in process (logic/src/tests/groups.rs).
            .env("MISSIVE_DIRECT_MESSAGES", "anyone")
            .env("MISSIVE_GROUP_INVITES", "anyone")
            // Every test client connects from 127.0.0.1, hundreds at once in the group tests.
            .env("MISSIVE_HTTP_CONNECTIONS_PER_ADDRESS_MAX", "100000")
            // They also register and send far faster than people; the limits are tested in
            // process (logic/src/tests/limits.rs) and in bad_input.rs, which turns them on.
            .env("MISSIVE_RATE_LIMITS", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(log) = &log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log.path)
                .expect("log file opens");
            command.args(["--log-format", "json"]).env("MISSIVE_LOG", &log.filter).stderr(file);
        }
        let mut child = command.spawn().expect("missive binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut tcp, mut http, mut rpc, mut admin) =
            (String::new(), String::new(), String::new(), String::new());
        loop {
            let line = lines.next().expect("server prints its addresses").expect("stdout line");
            if line == "missive ready" {
                break;
            } else if let Some(url) = line.strip_prefix("missive listening admin ") {
                admin = url.to_string();
            } else if let Some(url) = line.strip_prefix("missive listening rpc ") {
                rpc = url.to_string();
            } else if let Some(url) = line.strip_prefix("missive listening ") {
                if url.starts_with("tcp://") || url.starts_with("tls://") {
                    tcp = url.to_string();
                } else if url.starts_with("http://") || url.starts_with("https://") {
                    http = url.to_string();
                }
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, data, tcp, http, rpc, admin, extra, log, descriptors, _dir: None }
    }

    /// The WebSocket long-link URL (`wss://` when the server speaks TLS).
    pub fn ws(&self) -> String {
        format!("{}/ws", self.http.replacen("http", "ws", 1))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP (the server reads its certificates again).
    pub fn hangup(&self) {
        Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().expect("kill -HUP");
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// Starts the binary again on the same data directory (on new ports).
    pub fn restart(&mut self) {
        self.respawn([ANY_PORT; 4]);
    }

    /// Starts the binary again on the same data directory and the same addresses, as a
    /// supervisor restarts a node that its peers know by address.
    pub fn restart_in_place(&mut self) {
        let listen = [&self.tcp, &self.http, &self.admin, &self.rpc].map(|url| {
            url.rsplit_once("://").map_or(ANY_PORT.to_string(), |(_, address)| address.into())
        });
        self.respawn(listen.each_ref().map(String::as_str));
    }

    /// Replaces this (dead or unwanted) process with a fresh one on the same data directory.
    fn respawn(&mut self, listen: [&str; 4]) {
        let dir = self._dir.take();
        let (data, extra, log) = (self.data.clone(), self.extra.clone(), self.log.clone());
        let fresh = Server::spawn_on(data, extra, log, self.descriptors, listen);
        let old = std::mem::replace(self, fresh);
        self._dir = dir;
        drop(old);
    }

    /// Sends SIGTERM and waits for a graceful exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill -TERM");
        self.child.wait().expect("exit").success()
    }

    pub fn tcp_addr(&self) -> &str {
        self.tcp.split_once("://").map_or(&self.tcp, |(_, address)| address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any free port, chosen by the system.
const ANY_PORT: &str = "127.0.0.1:0";

pub const PASSWORD: &str = "correct horse";

/// Registers `name` and returns a client logged in over `url`.
pub async fn user(url: &str, name: &str) -> Client {
    user_with(url, name, missive_client::PROTOCOL_VERSION).await
}

/// [`user`] for a client declaring protocol `version` (1 acts as an old client).
pub async fn user_with(url: &str, name: &str, version: u32) -> Client {
    let client = Client::connect_with(url, version).await.expect("connect");
    client.register(name, PASSWORD).await.expect("register");
    client.login(name, PASSWORD, "test").await.expect("login");
    client
}

/// Another device of an existing user.
pub async fn device(url: &str, name: &str, device: &str) -> Client {
    let client = Client::connect(url).await.expect("connect");
    client.login(name, PASSWORD, device).await.expect("login");
    client
}

/// The texts of the message items, in order.
pub fn texts(items: &[SyncItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match &item.body {
            Some(Body::Message(m)) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// The contact entries, in order.
pub fn contacts(items: &[SyncItem]) -> Vec<missive_client::proto::Contact> {
    items
        .iter()
        .filter_map(|item| match &item.body {
            Some(Body::Contact(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// The message items, in order.
pub fn messages(items: &[SyncItem]) -> Vec<missive_client::proto::Message> {
    items
        .iter()
        .filter_map(|item| match &item.body {
            Some(Body::Message(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Syncs until `count` messages (in all) have arrived, waiting on notifies; panics after 10 s.
pub async fn receive(client: &Client, count: usize) -> Vec<SyncItem> {
    let mut items = client.sync().await.expect("sync");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while texts(&items).len() < count {
        assert!(tokio::time::Instant::now() < deadline, "only {:?} arrived", texts(&items));
        items.extend(client.next_changes(Duration::from_millis(200)).await.expect("sync"));
    }
    items
}

/// The `missive-cli` binary, built beside the server binary.
pub fn cli_binary() -> PathBuf {
    workspace_binary("missive-cli")
}

/// A binary of the workspace, built beside the server binary.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_missive")).with_file_name(name);
    assert!(path.exists(), "{} is missing: build the workspace's binaries first", path.display());
    path
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Runs `command` to its end.
    pub fn of(command: &mut Command) -> Output {
        let output = command.output().expect("the command runs");
        Output {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `missive-cli --server URL --profile DIR ARGS...`.
pub fn cli(server: &str, profile: &Path, args: &[&str]) -> Output {
    Output::of(
        Command::new(cli_binary()).args(["--server", server, "--profile"]).arg(profile).args(args),
    )
}
