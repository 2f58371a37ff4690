//! The routing engine behind Redis Sentinel: a master, a replica and three sentinels of this
//! test's own (on free loopback ports, in a temporary directory), and a split deployment that
//! knows only the sentinels. The master is killed with SIGKILL, and later a manual failover
//! demotes the master of the moment while it lives on as a replica; through both, no Missive
//! node restarts, clients on one access node are still woken by messages from the other, and
//! routes and rate limits live on whichever server is the master.

use crate::harness::*;
use missive_client::Client;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The name the sentinels monitor the master under.
const MASTER: &str = "routing";

/// One `redis-server` process, a data node or a sentinel, with its configuration file and
/// working directory in the test's temporary directory.
struct RedisProcess {
    child: Child,
    port: u16,
    config: PathBuf,
    dir: PathBuf,
    sentinel: bool,
}

impl RedisProcess {
    /// Starts `redis-server` with `config` (and `port`), and waits until it answers.
    fn start(root: &Path, name: &str, port: u16, config: &str, sentinel: bool) -> RedisProcess {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, format!("port {port}\nbind 127.0.0.1\n{config}")).unwrap();
        let child = spawn(&dir, &path, sentinel);
        let process = RedisProcess { child, port, config: path, dir, sentinel };
        process.wait_until_it_answers();
        process
    }

    fn wait_until_it_answers(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["PING"]).trim() != "PONG" {
            assert!(std::time::Instant::now() < deadline, "redis on {} never answered", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts it again on the same port and configuration (which the sentinels may have
    /// rewritten), with no data: nothing is persisted.
    fn restart(&mut self) {
        self.child = spawn(&self.dir, &self.config, self.sentinel);
        self.wait_until_it_answers();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, config: &Path, sentinel: bool) -> Child {
    let log = std::fs::File::create(dir.join("redis.log")).unwrap();
    let mut command = Command::new("redis-server");
    command.arg(config);
    if sentinel {
        command.arg("--sentinel");
    }
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("redis-server starts (scripts/test-services installs it)")
}

/// A port of 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What `redis-cli` prints for one command (nothing when the server is down).
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A reply of alternating names and values, as `SENTINEL MASTER` gives.
fn fields(reply: &str) -> HashMap<String, String> {
    let lines: Vec<&str> = reply.lines().collect();
    lines.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].into(), p[1].into())).collect()
}

/// The port of the master, as `sentinel` names it.
fn master_port(sentinel: &RedisProcess) -> Option<u16> {
    let reply = cli(sentinel.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
    reply.lines().nth(1)?.trim().parse().ok()
}

/// Waits until `check` holds, polling; panics naming `what` after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys of `pattern` on the server at `port`.
fn keys(port: u16, pattern: &str) -> HashSet<String> {
    cli(port, &["--scan", "--pattern", pattern]).lines().map(String::from).collect()
}

/// Swallows the notifies already on their way, so that the next one is news.
async fn settle(client: &Client) {
    loop {
        match tokio::time::timeout(Duration::from_millis(300), client.wait_for_notify()).await {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => panic!("the link stays up: {error}"),
            Err(_) => break,
        }
    }
    client.sync().await.unwrap();
}

/// Sends until acknowledged, for at most 20 s (the rate limiter may be finding its master).
async fn send(from: &Client, to: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = from.send_text(to, text).await {
        assert!(Instant::now() < deadline, "{text:?} never acknowledged: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `to`, with nothing pending, is woken by a NOTIFY for a message from `from` within 5 s,
/// and finds it.
async fn wakes(from: &Client, to: &Client, to_name: &str, text: &str) {
    settle(to).await;
    send(from, to_name, text).await;
    tokio::time::timeout(Duration::from_secs(5), to.wait_for_notify())
        .await
        .unwrap_or_else(|_| panic!("no notify for {text:?} within 5 s"))
        .expect("the link stays up");
    let got = texts(&to.sync().await.unwrap());
    assert!(got.iter().any(|t| t == text), "{text:?} not synced: {got:?}");
}

/// Until a notify reaches `to` for messages that `from` keeps sending, or 30 s; returns
/// how long after `since` it came.
async fn first_notify(from: &Client, to: &Client, to_name: &str, since: Instant) -> Duration {
    for n in 0.. {
        assert!(since.elapsed() < Duration::from_secs(30), "no notify within 30 s of the failover");
        send(from, to_name, &format!("during the failover {n}")).await;
        if let Ok(woken) =
            tokio::time::timeout(Duration::from_millis(200), to.wait_for_notify()).await
        {
            woken.expect("the link stays up");
            return since.elapsed();
        }
    }
    unreachable!()
}

/// Three searches by a fresh user `name`: the third is over the limit of two, counted in a
/// bucket that only the master at `port` holds.
async fn searches_are_limited_on(access: &Server, name: &str, namespace: &str, port: u16) {
    use missive_client::proto::SearchRequest;
    let pattern = format!("{namespace}:limit:searches_per_user:*");
    let before = keys(port, &pattern);
    let searcher = user(&access.tcp, name).await;
    let search = || searcher.search(SearchRequest { query: "hello".into(), ..Default::default() });
    search().await.unwrap();
    search().await.unwrap();
    let refused = search().await.unwrap_err();
    assert_eq!(refused.code(), Some(missive_client::Code::RateLimited), "{refused}");
    let added: Vec<String> = keys(port, &pattern).difference(&before).cloned().collect();
    assert_eq!(added.len(), 1, "{name}'s bucket is on the master at {port}: {added:?}");
}

/// `name`, connected after a failover, is routed through the master at `port`.
async fn routed_on(access: &Server, name: &str, namespace: &str, port: u16) -> Client {
    let client = user(&access.tcp, name).await;
    let key = format!("{namespace}:route:{}", client.session().unwrap().user_id);
    eventually(&format!("{name}'s route on the master"), Duration::from_secs(10), || {
        !cli(port, &["HKEYS", &key]).trim().is_empty()
    })
    .await;
    client
}

/// Routing-engine connections that a node dropped because its server stopped being the
/// master, by the node's metrics.
async fn master_changes_seen(node: &Server) -> f64 {
    let metrics = reqwest::get(format!("{}/metrics", node.admin)).await.unwrap();
    metrics
        .text()
        .await
        .unwrap()
        .lines()
        .filter(|line| {
            line.starts_with("missive_route_reconnects_total{")
                && (line.contains("not_master") || line.contains("switch_master"))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_routing_engine_follows_sentinel_failovers_without_a_node_restarting() {
    let root = tempfile::tempdir().unwrap();
    let unsaved = "save \"\"\nappendonly no\n";
    let first_port = free_port();
    let mut first = RedisProcess::start(root.path(), "first", first_port, unsaved, false);
    let second_port = free_port();
    let replica = format!("{unsaved}replicaof 127.0.0.1 {first_port}\n");
    let second = RedisProcess::start(root.path(), "second", second_port, &replica, false);
    eventually("the replica is in sync", Duration::from_secs(20), || {
        cli(second.port, &["INFO", "replication"]).contains("master_link_status:up")
    })
    .await;
    let sentinel_config = format!(
        "sentinel monitor {MASTER} 127.0.0.1 {first_port} 2\n\
         sentinel down-after-milliseconds {MASTER} 1000\n\
         sentinel failover-timeout {MASTER} 4000\n"
    );
    let sentinels: Vec<RedisProcess> = (0..3)
        .map(|n| {
            let name = format!("sentinel{n}");
            RedisProcess::start(root.path(), &name, free_port(), &sentinel_config, true)
        })
        .collect();
    eventually("the sentinels know the replica and each other", Duration::from_secs(30), || {
        sentinels.iter().all(|sentinel| {
            let master = fields(&cli(sentinel.port, &["SENTINEL", "MASTER", MASTER]));
            master.get("num-slaves").map(String::as_str) == Some("1")
                && master.get("num-other-sentinels").map(String::as_str) == Some("2")
        })
    })
    .await;

    // A logic node and two access nodes that know only the sentinels.
    let addresses: Vec<String> =
        sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let addresses = addresses.join(",");
    let namespace = format!("missive-it-{:016x}", rand::random::<u64>());
    let routing = [
        "--redis-sentinels",
        &addresses,
        "--redis-master-name",
        MASTER,
        "--redis-namespace",
        &namespace,
    ];
    let mut flags = vec!["--role", "logic,store", "--rate-limits", "true"];
    flags.extend(["--rate-searches-per-user", "2/1h"]);
    flags.extend(routing);
    let logic = Server::start_with(&flags);
    let access = || {
        let mut flags = vec!["--role", "access", "--logic-rpc", &logic.rpc];
        flags.extend(routing);
        Server::start_with(&flags)
    };
    let nodes = [access(), access()];
    let alice = user(&nodes[0].tcp, "alice").await;
    let bob = user(&nodes[1].ws(), "bob").await;
    wakes(&alice, &bob, "bob", "before the failover").await;

    // The master dies without a word; the sentinels promote the replica.
    settle(&bob).await;
    first.kill9();
    let killed = Instant::now();
    let woken = first_notify(&alice, &bob, "bob", killed).await;
    eventually("the sentinels name the replica master", Duration::from_secs(30), || {
        sentinels.iter().all(|sentinel| master_port(sentinel) == Some(second_port))
    })
    .await;
    eprintln!("sentinel failover: bob woken again {woken:?} after the master was killed");
    wakes(&alice, &bob, "bob", "after the failover").await;
    wakes(&bob, &alice, "alice", "and back").await;
    let carol = routed_on(&nodes[1], "carol", &namespace, second_port).await;
    wakes(&alice, &carol, "carol", "hello carol").await;
    searches_are_limited_on(&nodes[0], "dave", &namespace, second_port).await;

    // The old master comes back empty; the sentinels make it a replica of the new one.
    first.restart();
    eventually("the old master replicates the new one", Duration::from_secs(30), || {
        cli(first.port, &["INFO", "replication"]).contains("master_link_status:up")
    })
    .await;
    // A manual failover: the master of the moment lives on, as a replica that refuses writes
    // (READONLY) to whoever still holds a connection to it.
    settle(&bob).await;
    eventually("a manual failover is accepted", Duration::from_secs(30), || {
        cli(sentinels[0].port, &["SENTINEL", "FAILOVER", MASTER]).trim() == "OK"
    })
    .await;
    let accepted = Instant::now();
    eventually("the first server is master again", Duration::from_secs(30), || {
        sentinels.iter().all(|sentinel| master_port(sentinel) == Some(first_port))
            && cli(second.port, &["ROLE"]).starts_with("slave")
    })
    .await;
    let switched = accepted.elapsed();
    let woken = first_notify(&alice, &bob, "bob", accepted).await;
    eprintln!(
        "sentinel failover: a manual failover took {switched:?} to demote the old master; bob \
         was woken {woken:?} after it began"
    );
    wakes(&alice, &bob, "bob", "after the second failover").await;
    wakes(&bob, &alice, "alice", "and back again").await;
    let erin = routed_on(&nodes[0], "erin", &namespace, first_port).await;
    wakes(&bob, &erin, "erin", "hello erin").await;
    searches_are_limited_on(&nodes[1], "frank", &namespace, first_port).await;
    assert!(master_changes_seen(&logic).await > 0.0, "the logic node moved to the new master");
}
