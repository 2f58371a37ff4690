//! A send left half-done across shards: the sender's shard committed it, the node died before
//! the recipient's shard did, and the sender never retries. The janitor delivers it, once.

use crate::harness::*;
use missive_client::Client;
use missive_storage_suite::{DatabaseServer, fresh_databases};
use sqlx::{Connection, Row};
use std::time::Duration;

/// Counts the rows of `table` on the database at `url`.
async fn rows(url: &str, table: &str) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect to a shard");
    let count = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query(sqlx::AssertSqlSafe(count)).fetch_one(&mut conn).await.unwrap().get(0)
}

#[tokio::test]
async fn a_send_left_pending_by_a_killed_node_is_delivered_once_on_mariadb() {
    left_pending_then_delivered_once(DatabaseServer::MariaDb).await;
}

#[tokio::test]
async fn a_send_left_pending_by_a_killed_node_is_delivered_once_on_postgresql() {
    left_pending_then_delivered_once(DatabaseServer::Postgres).await;
}

async fn left_pending_then_delivered_once(database: DatabaseServer) {
    let (lock, unlock) = match database {
        DatabaseServer::MariaDb => ("LOCK TABLES inbox WRITE", "UNLOCK TABLES"),
        DatabaseServer::Postgres => ("BEGIN; LOCK TABLE inbox IN EXCLUSIVE MODE", "ROLLBACK"),
    };
    let urls = fresh_databases(database, "it_pending", 2).await;
    let store = urls.join(",");
    let mut server = Server::start_with(&[
        "--store-url",
        &store,
        "--direct-messages",
        "anyone",
        "--pending-redrive-after-s",
        "1",
    ]);
    // A sender and a recipient on different shards (user id % 2).
    let alice = user(&server.tcp, "alice").await;
    let alice_id = alice.session().unwrap().user_id;
    let mut n = 0;
    let (bob, bob_name) = loop {
        let name = format!("bob{n}");
        let bob = user(&server.tcp, &name).await;
        if bob.session().unwrap().user_id % 2 != alice_id % 2 {
            break (bob, name);
        }
        n += 1;
    };
    let bob_token = bob.session().unwrap().token;
    drop(bob);
    let (alice_shard, bob_shard) =
        (&urls[(alice_id % 2) as usize], &urls[1 - (alice_id % 2) as usize]);

    // The recipient's shard stalls: its inbox table is locked by another session, so the
    // delivery there waits while the sender's shard has committed the send.
    sqlx::any::install_default_drivers();
    let mut blocker = sqlx::AnyConnection::connect(bob_shard).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock)).execute(&mut blocker).await.unwrap();
    let sending = tokio::spawn(async move { alice.send_text(&bob_name, "half way").await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rows(alice_shard, "pending_entries").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the send never reached the sender's shard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The node dies between the two commits; the sender never hears back, never retries.
    server.kill9();
    assert!(sending.await.unwrap().is_err(), "the send was never acknowledged");
    sqlx::raw_sql(sqlx::AssertSqlSafe(unlock)).execute(&mut blocker).await.unwrap();
    assert_eq!(rows(bob_shard, "inbox").await, 0, "the recipient's shard has nothing yet");

    server.restart();
    let bob = Client::connect(&server.tcp).await.unwrap();
    bob.resume(&bob_token).await.unwrap();
    let delivered = receive(&bob, 1).await;
    assert_eq!(texts(&delivered), vec!["half way".to_string()]);
    let from: Vec<u64> = messages(&delivered).iter().map(|m| m.from_user_id).collect();
    assert_eq!(from, vec![alice_id]);

    // Exactly once: nothing more arrives, the marks are gone, the sender holds one copy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(texts(&bob.sync().await.unwrap()).is_empty(), "delivered twice");
    assert_eq!(rows(alice_shard, "pending_entries").await, 0);
    let alice = device(&server.tcp, "alice", "after").await;
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["half way".to_string()]);
}
