//! What an acknowledged send survives.

use crate::harness::*;
use missive_client::Client;
use missive_storage_suite::{DatabaseServer, fresh_databases};

async fn acknowledged_sends_survive_kill_9(extra: &[&str]) {
    let mut server = Server::start_with(extra);
    let alice = user(&server.tcp, "alice").await;
    let bob_token = {
        let bob = user(&server.tcp, "bob").await;
        bob.session().unwrap().token
    };
    let mut versions = Vec::new();
    for n in 0..20 {
        versions.push(alice.send_text("bob", &format!("before {n}")).await.unwrap().version);
    }
    // SIGKILL right after the last acknowledgement: no shutdown code runs.
    server.kill9();
    server.restart();

    let alice = device(&server.tcp, "alice", "after-crash").await;
    let after = alice.send_text("bob", "after restart").await.unwrap();
    assert!(
        after.version > *versions.last().unwrap(),
        "version {} reused after restart (had {:?})",
        after.version,
        versions
    );

    let bob = Client::connect(&server.ws()).await.unwrap();
    bob.resume(&bob_token).await.unwrap();
    let mut expected: Vec<String> = (0..20).map(|n| format!("before {n}")).collect();
    expected.push("after restart".into());
    assert_eq!(texts(&bob.sync().await.unwrap()), expected);
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9_and_versions_are_never_reused() {
    acknowledged_sends_survive_kill_9(&[]).await;
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9_with_fsync_group_commit() {
    acknowledged_sends_survive_kill_9(&["--durability", "power-loss"]).await;
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9_on_mariadb_shards() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_kill9", 2).await.join(",");
    acknowledged_sends_survive_kill_9(&["--store-url", &urls]).await;
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9_on_postgresql_shards() {
    let urls = fresh_databases(DatabaseServer::Postgres, "it_kill9", 2).await.join(",");
    acknowledged_sends_survive_kill_9(&["--store-url", &urls]).await;
}

#[tokio::test]
async fn sync_keys_and_tokens_stay_valid_across_restarts() {
    let mut server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    alice.send_text("bob", "one").await.unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["one"]);
    let (token, key) = (bob.session().unwrap().token, bob.sync_key());
    alice.send_text("bob", "two").await.unwrap();
    assert!(server.terminate(), "graceful shutdown exits 0");
    server.restart();

    let bob = Client::connect(&server.tcp).await.unwrap();
    bob.resume(&token).await.unwrap();
    bob.set_sync_key(key);
    assert_eq!(texts(&bob.sync().await.unwrap()), ["two"]);
}
