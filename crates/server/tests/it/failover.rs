//! A replicated database losing its primary while a user sends: the server follows the
//! promoted standby without a restart, and every send it acknowledged is delivered, once.

use crate::harness::{Server, texts, user};
use missive_client::proto::{MessageKind, SendRequest};
use missive_storage_suite::replicated::{MariaDbPair, PostgresPair};
use std::time::{Duration, Instant};

/// One url naming every host of `urls` (all of one database): `scheme://user@h1,h2/db`.
fn group_url(urls: &[String]) -> String {
    let hosts: Vec<&str> = urls
        .iter()
        .map(|url| {
            let rest = url.split_once("://").unwrap().1;
            let authority = rest.split('/').next().unwrap();
            authority.rsplit_once('@').map_or(authority, |(_, host)| host)
        })
        .collect();
    let first = &urls[0];
    let (scheme, rest) = first.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let user = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{user}{}{path}", hosts.join(","))
}

/// What a failover cost the sender: the messages acknowledged, and the time from the
/// primary's death to the first send acknowledged after it.
struct Sent {
    acknowledged: Vec<String>,
    failover: Duration,
}

/// Alice sends to Bob without pause, each message retried under its client id until
/// acknowledged; after 100, `fail` kills the primary and promotes the standby; after 100
/// more, Bob syncs and must hold every one of them once.
async fn failover_under_load<F: std::future::Future<Output = ()>>(
    url: &str,
    fail: impl FnOnce() -> F,
) -> Sent {
    let server = Server::start_with(&["--store-url", url, "--direct-messages", "anyone"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    bob.sync().await.unwrap();
    let mut acknowledged = Vec::new();
    let mut killed = None;
    let mut failover = None;
    let mut fail = Some(fail);
    for n in 0..200 {
        if n == 100 {
            let fail = fail.take().unwrap();
            killed = Some(Instant::now());
            fail().await;
        }
        let text = format!("message {n}");
        let request = SendRequest {
            to: "bob".into(),
            client_msg_id: format!("failover-{n}"),
            kind: MessageKind::Text as i32,
            text: text.clone(),
            ..SendRequest::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match alice.send(request.clone()).await {
                Ok(_) => break,
                Err(error) => {
                    assert!(Instant::now() < deadline, "{text:?} never acknowledged: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if let (Some(killed), None) = (killed, failover) {
            failover = Some(killed.elapsed());
        }
        acknowledged.push(text);
    }
    let received = texts(&bob.sync().await.unwrap());
    for text in &acknowledged {
        let copies = received.iter().filter(|t| *t == text).count();
        assert_eq!(copies, 1, "{text:?} acknowledged, received {copies} times");
    }
    Sent { acknowledged, failover: failover.unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_a_promoted_postgresql_standby_and_loses_no_acknowledged_send() {
    let mut pair = PostgresPair::start().await;
    let url = group_url(&pair.urls());
    let standby = pair.standby_url();
    let group = &mut pair;
    let sent = failover_under_load(&url, move || async move {
        group.kill_primary();
        group.promote_standby().await;
    })
    .await;
    assert_eq!(sent.acknowledged.len(), 200);
    assert!(missive_storage_suite::replicated::is_primary(&standby).await.unwrap());
    eprintln!("postgresql: kill to first acknowledged send {:?}", sent.failover);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_a_promoted_mariadb_replica_and_loses_no_acknowledged_send() {
    let mut pair = MariaDbPair::start().await;
    let url = group_url(&pair.urls());
    let group = &mut pair;
    let sent = failover_under_load(&url, move || async move {
        group.kill_primary();
        group.promote_replica().await;
    })
    .await;
    assert_eq!(sent.acknowledged.len(), 200);
    eprintln!("mariadb: kill to first acknowledged send {:?}", sent.failover);
}
