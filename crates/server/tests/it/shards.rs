//! The shard map as operators see it: `missive admin shards` against a running deployment's
//! databases.

use crate::harness::{Server, user};
use missive_storage_suite::{DatabaseServer, fresh_databases};
use serde_json::Value;
use std::process::Command;

fn admin_shards(urls: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .args(["admin", "shards", "--json", "--store-url", urls])
        .output()
        .expect("missive admin shards");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Users registered through the server are counted on the logical shards their ids name, on
/// the databases the map gives those shards.
#[tokio::test]
async fn the_shard_map_shows_where_every_user_is() {
    let urls = fresh_databases(DatabaseServer::Postgres, "it_shards", 2).await.join(",");
    let server = Server::start_with(&["--store-url", &urls, "--store-logical-shards", "8"]);
    let mut ids = Vec::new();
    for n in 0..12 {
        let client = user(&server.tcp, &format!("user{n}")).await;
        ids.push(client.session().expect("logged in").user_id);
    }
    let report = admin_shards(&urls);
    assert_eq!(report["logical_shards"], 8);
    let databases = report["databases"].as_array().unwrap();
    assert_eq!(databases.len(), 2);
    assert_eq!(databases.iter().map(|d| d["shards"].as_u64().unwrap()).sum::<u64>(), 8);
    assert_eq!(databases.iter().map(|d| d["users"].as_u64().unwrap()).sum::<u64>(), 12);
    let shards = report["shards"].as_array().unwrap();
    for shard in 0..8u64 {
        let row = &shards[shard as usize];
        assert_eq!(row["state"], "held");
        assert_eq!(row["database"].as_u64().unwrap(), shard % 2, "the map made from the list");
        let users = ids.iter().filter(|id| *id % 8 == shard).count() as u64;
        assert_eq!(row["users"].as_u64().unwrap(), users, "logical shard {shard}");
        if users > 0 {
            assert!(row["rows"].as_u64().unwrap() > users, "sessions and tokens too");
            assert!(row["bytes"].as_u64().unwrap() > 0);
        }
    }
    // Only the directory is needed: the map names the other database.
    let first = urls.split(',').next().unwrap();
    assert_eq!(admin_shards(first), report);
}
