//! Overload control through the real client: a logic node whose storage answers slowly (a
//! store node behind a delaying proxy) sheds new logins first and sends next, with
//! OVERLOADED (11), while syncs keep succeeding; the sheds show in its metrics; and once the
//! load is gone, logins get in again within seconds.

use crate::harness::*;
use missive_client::Client;
use missive_client::Code;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Forwards TCP to `upstream`, holding every chunk for `delay` in each direction.
async fn slow_proxy(upstream: String, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { continue };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(forward(client_read, server_write, delay));
            tokio::spawn(forward(server_read, client_write, delay));
        }
    });
    format!("http://{address}")
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        tokio::time::sleep(delay).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Outcomes by name: "ok" or the error code.
type Tally = BTreeMap<String, u32>;

fn outcome<T>(result: &Result<T, missive_client::ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(error) => error.code().map_or_else(|| format!("{error}"), |c| c.as_str().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_makes_the_logic_layer_shed_logins_and_sends_but_never_syncs() {
    let store = Server::start_with(&["--role", "store"]);
    let upstream = store.rpc.trim_start_matches("http://").to_string();
    let slow = slow_proxy(upstream, Duration::from_millis(20)).await;
    let node = Server::start_with(&[
        "--role",
        "access,logic",
        "--store-rpc",
        &slow,
        "--rpc-workers",
        "2",
        "--rpc-queue-delay-max-ms",
        "5",
        // The prospects stay unauthenticated while their logins are refused.
        "--auth-timeout-s",
        "120",
    ]);
    let url = node.tcp.clone();
    let reader = user(&url, "reader").await;
    for name in ["writer", "prospect"] {
        Client::connect(&url).await.unwrap().register(name, PASSWORD).await.unwrap();
    }

    // Every writer signs in before the load starts: a login during it may well be shed.
    let mut writers = Vec::new();
    for n in 0..24 {
        writers.push(device(&url, "writer", &format!("writer {n}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for client in writers {
        let (url, stop) = (url.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut prospect = Client::connect(&url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let sent = client.send_text("reader", "load").await;
                *tally.entry(format!("send {}", outcome(&sent))).or_default() += 1;
                let login = prospect.login("prospect", PASSWORD, "new device").await;
                *tally.entry(format!("login {}", outcome(&login))).or_default() += 1;
                if login.is_ok() {
                    // A new session each time: the next login comes from a new connection.
                    prospect = Client::connect(&url).await.unwrap();
                }
                // Refusals are instant: a short pause keeps the load from being a busy loop.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tally
        }));
    }

    // Syncs keep succeeding while the load runs, until both lower priorities were shed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut syncs = 0;
    loop {
        reader.sync_once(100).await.expect("a sync is never shed");
        syncs += 1;
        let metrics = reqwest::get(format!("{}/metrics", node.admin)).await.unwrap();
        let metrics = metrics.text().await.unwrap();
        let shed = |priority: &str| {
            metrics.lines().any(|line| {
                line.starts_with("missive_rpc_shed_total")
                    && line.contains(&format!("priority=\"{priority}\""))
            })
        };
        assert!(!shed("critical"), "syncs are never shed");
        if shed("low") && shed("normal") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not shed within 40 s:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And go on succeeding while the shedding goes on.
    for _ in 0..10 {
        reader.sync_once(100).await.expect("a sync is never shed");
        syncs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::new();
    for task in load {
        for (outcome, count) in task.await.unwrap() {
            *tally.entry(outcome).or_default() += count;
        }
    }
    println!("{syncs} syncs ok; load: {tally:?}");

    // Once the load is gone the guard opens again, however little asks: a login gets in
    // within 5 s of its end, and a window later every login does (each is at a random user
    // level of the low class).
    let stopped = tokio::time::Instant::now();
    let login = async || {
        let prospect = Client::connect(&url).await.unwrap();
        prospect.login("prospect", PASSWORD, "after").await
    };
    while let Err(error) = login().await {
        assert_eq!(error.code(), Some(Code::Overloaded), "{error}");
        assert!(stopped.elapsed() < Duration::from_secs(5), "logins still refused after 5 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        login().await.expect("every login, once the guard is open");
    }

    // The deployment has now been through every state deploy/'s dashboard and alerts chart:
    // each metric they query is served by one of its nodes.
    let mut served = Vec::new();
    for admin in [&node.admin, &store.admin] {
        served.push(reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap());
    }
    let served = crate::deploy::served_metrics(&served);
    let missing: Vec<String> =
        crate::deploy::queried_metrics().difference(&served).cloned().collect();
    assert!(missing.is_empty(), "deploy/ queries metrics no node serves: {missing:?}");

    let overloaded = Code::Overloaded.as_str();
    assert!(tally.contains_key(&format!("login {overloaded}")), "{tally:?}");
    assert!(tally.contains_key(&format!("send {overloaded}")), "{tally:?}");
    for outcome in tally.keys() {
        assert!(
            outcome.ends_with(" ok") || outcome.ends_with(overloaded),
            "only OVERLOADED refuses: {tally:?}"
        );
    }
}
