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

/// `init` makes the map from a list before any node starts, as an upgrade does it.
#[tokio::test]
async fn init_makes_the_map_from_the_list() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_init", 3).await.join(",");
    let out = mover(&["--store-url", &urls, "init", "--logical-shards", "6"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = admin_shards(urls.split(',').next().unwrap());
    assert_eq!(report["logical_shards"], 6);
    let owners: Vec<u64> =
        (0..6).map(|s| report["shards"][s]["database"].as_u64().unwrap()).collect();
    assert_eq!(owners, vec![0, 1, 2, 0, 1, 2]);
    let uneven = mover(&["--store-url", &urls, "init", "--logical-shards", "7"]).output().unwrap();
    assert!(uneven.status.success(), "a map that exists is left as it is");
    assert_eq!(admin_shards(urls.split(',').next().unwrap()), report);
}

/// `rebalance` spreads the logical shards over a new list, moving only what evenness takes.
#[tokio::test]
async fn rebalance_spreads_the_shards_over_a_new_database() {
    let urls = fresh_databases(DatabaseServer::Postgres, "it_rebalance", 3).await;
    let (directory, two) = (urls[0].as_str(), urls[..2].join(","));
    let out = mover(&["--store-url", &two, "init", "--logical-shards", "6"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = urls.join(",");
    let dry = mover(&["--store-url", directory, "rebalance", &all, "--dry-run"]).output().unwrap();
    assert!(String::from_utf8_lossy(&dry.stderr).contains("2 logical shards to move"));
    assert_eq!(admin_shards(directory)["databases"].as_array().unwrap().len(), 2, "a dry run");
    let args = ["--store-url", directory, "rebalance", &all, "--pace", "1"];
    let out = mover(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = admin_shards(directory);
    let held: Vec<u64> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["shards"].as_u64().unwrap())
        .collect();
    assert_eq!(held, vec![2, 2, 2]);
}

/// `missive admin shards move` as an operator runs it.
fn mover(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_missive"));
    command.args(["admin", "shards"]).args(args);
    command
}

/// Users talk while the logical shard of one of them moves to a new database, then moves
/// back under a mover killed with SIGKILL midway and resumed. Every message the server
/// acknowledged reaches its recipient exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moves_while_users_talk_and_no_acknowledged_message_is_lost() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let urls = fresh_databases(DatabaseServer::Postgres, "it_move", 3).await;
    let list = urls[..2].join(",");
    let server = Server::start_with(&[
        "--store-url",
        &list,
        "--store-logical-shards",
        "4",
        "--direct-messages",
        "anyone",
    ]);
    let mut talkers = Vec::new();
    for n in 0..6 {
        let client = user(&server.tcp, &format!("talker{n}")).await;
        client.sync().await.unwrap();
        talkers.push(Arc::new(client));
    }
    let shard = talkers[0].session().unwrap().user_id % 4;
    // Enough users on the shard that its copy takes a few batches.
    let filler = missive_client::Client::connect(&server.tcp).await.unwrap();
    let names = (0..).map(|n| format!("filler{n}"));
    let names = names.filter(|n| missive_rpc::stable_hash(n.as_bytes()) % 4 == shard);
    for name in names.take(500) {
        filler.register(&name, crate::harness::PASSWORD).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..talkers.len())
        .map(|i| {
            let (from, stop) = (talkers[i].clone(), stop.clone());
            let to = format!("talker{}", (i + 1) % talkers.len());
            tokio::spawn(async move {
                let (mut acknowledged, mut refused) = (Vec::new(), 0);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text = format!("{i}-{n}");
                    match from.send_text(&to, &text).await {
                        Ok(_) => acknowledged.push(text),
                        Err(_) => refused += 1,
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let directory = urls[0].as_str();
    let shard_arg = shard.to_string();
    let out = mover(&["--store-url", directory, "move", &shard_arg, &urls[2]]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("moved logical shard"));

    // Back to database 0, with the mover killed as soon as it starts copying.
    let mut child = mover(&["--store-url", directory, "move", &shard_arg, directory])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let copying = lines.find(|line| line.as_ref().is_ok_and(|l| l.contains("copying")));
    assert!(copying.is_some(), "the mover reports its copy");
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed before it finished");
    let busy = mover(&["--store-url", directory, "move", &shard_arg, directory]).output().unwrap();
    assert!(!busy.status.success(), "a move just updated is not resumed without --force");
    let args = ["--store-url", directory, "move", &shard_arg, directory, "--force"];
    let out = mover(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(sender.await.unwrap());
    }
    let report = admin_shards(directory);
    assert_eq!(report["shards"][shard as usize]["database"], 0, "back on database 0");
    assert_eq!(report["databases"][2]["users"], 0, "nothing left on database 2");

    for (i, (acknowledged, _)) in sent.iter().enumerate() {
        assert!(acknowledged.len() > 10, "talker {i} kept talking: {}", acknowledged.len());
        let recipient = &talkers[(i + 1) % talkers.len()];
        let received = crate::harness::texts(&recipient.sync().await.unwrap());
        let mine: Vec<&String> =
            received.iter().filter(|t| t.starts_with(&format!("{i}-"))).collect();
        for text in acknowledged {
            let copies = mine.iter().filter(|t| **t == text).count();
            assert_eq!(copies, 1, "{text:?} acknowledged, received {copies} times");
        }
    }
}
