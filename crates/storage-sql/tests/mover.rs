//! Moving a logical shard while a store keeps sending, against real MariaDB and PostgreSQL
//! servers: every acknowledged message is found exactly once and in version order after the
//! move; a move cut off midway is resumed, or rolled back.

use missive_proto::client::Message;
use missive_proto::internal::{
    AccountStore, AppendRequest, CreateAccountRequest, InboxEntry, InboxQuery, MessageStore,
};
use missive_rpc::Ctx;
use missive_storage_sql::{MoveOptions, SqlConfig, SqlStore, move_shard, roll_back_move};
use missive_storage_suite::{DatabaseServer, fresh_databases};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LOGICAL: u64 = 4;
const USERS: usize = 24;
/// The logical shard moved: held by database 0 at first.
const SHARD: u64 = 2;

async fn count(url: &str, query: String) -> i64 {
    let mut conn = AnyConnection::connect(url).await.expect("a database");
    let row = sqlx::query(AssertSqlSafe(query)).fetch_one(&mut conn).await.expect("a count");
    row.try_get::<i64, _>(0).unwrap()
}

/// A store over the first two urls, with users on every logical shard.
async fn deployment(urls: &[String]) -> (SqlStore, Vec<u64>) {
    let mut config = SqlConfig::new(urls[..2].to_vec());
    config.logical_shards = Some(LOGICAL);
    config.map_poll = Duration::from_millis(100);
    let store = SqlStore::open(config).await.expect("opening the store");
    let mut users = Vec::new();
    for n in 0..USERS {
        let req = CreateAccountRequest { username: format!("user{n}"), ..Default::default() };
        users.push(store.create(&Ctx::new(0), req).await.unwrap().user_id);
    }
    assert!(users.iter().filter(|u| *u % LOGICAL == SHARD).count() >= 3);
    (store, users)
}

/// Sends between the users, each message to a sender and one other, until told to stop;
/// what was acknowledged: (user, version) -> message id.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<(u64, u64), u64>>,
}

fn start_load(store: &SqlStore, users: &[u64]) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let versions: Arc<HashMap<u64, AtomicU64>> =
        Arc::new(users.iter().map(|&u| (u, AtomicU64::new(0))).collect());
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let senders: Vec<_> = (0..4)
        .map(|worker| {
            let (store, users, stop) = (store.clone(), users.to_vec(), stop.clone());
            let (versions, acked) = (versions.clone(), acked.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let from = users[(n * 7 + worker) % users.len()];
                    let to = users[(n * 13 + worker * 5 + 1) % users.len()];
                    let to = if to == from { users[(n + 1) % users.len()] } else { to };
                    // Versions are handed out per user, as the allocator does; a send that
                    // fails leaves a gap, never a repeat.
                    let entries: Vec<InboxEntry> = [from, to]
                        .iter()
                        .map(|&u| InboxEntry {
                            user_id: u,
                            version: versions[&u].fetch_add(1, Ordering::SeqCst) + 1,
                        })
                        .collect();
                    let message = Message {
                        from_user_id: from,
                        to_user_id: to,
                        text: format!("{worker}-{n}"),
                        client_msg_id: format!("{worker}-{n}"),
                        ..Message::default()
                    };
                    let req = AppendRequest { message: Some(message), entries: entries.clone() };
                    // A failure (a stale version, when a later send of the user committed
                    // first, or a switch-over that lasted too long) is not acknowledged, so
                    // nothing is owed for it.
                    if let Ok(done) = store.append(&Ctx::new(0), req).await {
                        let id = done.message.unwrap().id;
                        let mut acked = acked.lock().unwrap();
                        for entry in &done.written {
                            acked.insert((entry.user_id, entry.version), id);
                        }
                    }
                }
            })
        })
        .collect();
    let task = tokio::spawn(async move {
        for sender in senders {
            sender.await.unwrap();
        }
        Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
    });
    Load { stop, task }
}

impl Load {
    async fn finish(self) -> BTreeMap<(u64, u64), u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every acknowledged entry is in its user's inbox exactly once, with its message, and every
/// inbox is in strictly increasing version order with no message twice.
async fn check_inboxes(store: &SqlStore, users: &[u64], acked: &BTreeMap<(u64, u64), u64>) {
    let ctx = Ctx::new(0);
    for &user in users {
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        let mut after = 0;
        loop {
            let query = InboxQuery { user_id: user, after_version: after, limit: 500 };
            let page = store.read_inbox(&ctx, query).await.unwrap();
            for item in &page.items {
                assert!(item.version > after, "user {user}: versions out of order");
                after = item.version;
                let message = item.message.as_ref().expect("the message an entry holds");
                assert!(held.insert(item.version, message.id).is_none());
            }
            if !page.more {
                break;
            }
        }
        let mut ids: Vec<u64> = held.values().copied().collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "user {user} holds a message twice");
        for ((owner, version), id) in acked.range((user, 0)..=(user, u64::MAX)) {
            assert_eq!(held.get(version), Some(id), "user {owner} lost version {version}");
        }
    }
}

/// The newest version in a user's inbox.
async fn newest(store: &SqlStore, user: u64) -> u64 {
    let query = InboxQuery { user_id: user, after_version: 0, limit: 10_000 };
    let page = store.read_inbox(&Ctx::new(0), query).await.unwrap();
    page.items.last().map_or(0, |item| item.version)
}

async fn move_under_load(server: DatabaseServer, name: &str) {
    let urls = fresh_databases(server, name, 3).await;
    let (store, users) = deployment(&urls).await;
    let load = start_load(&store, &users);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let outcome = move_shard(&urls[..1], SHARD, &urls[2], MoveOptions::default(), move |p| {
        seen.lock().unwrap().push(p.step);
    })
    .await
    .expect("the move");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = load.finish().await;
    assert!(acked.len() > 100, "the load went on: {} entries", acked.len());
    assert_eq!((outcome.from, outcome.to), (0, 2));
    assert!(outcome.users >= 3);
    let steps = steps.lock().unwrap().clone();
    for step in ["copying", "switching over", "cleaning", "done"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }

    assert_eq!(store.shard_map().owner(SHARD), 2, "the store follows the map");
    check_inboxes(&store, &users, &acked).await;
    let moved: Vec<u64> = users.iter().copied().filter(|u| u % LOGICAL == SHARD).collect();
    let on =
        |column: &str| format!("SELECT COUNT(*) FROM {{}} WHERE {column} % {LOGICAL} = {SHARD}");
    for (table, column) in
        [("accounts", "user_id"), ("inbox", "user_id"), ("sent_messages", "from_user_id")]
    {
        let query = on(column).replace("{}", table);
        assert_eq!(count(&urls[0], query.clone()).await, 0, "{table} left on the source");
        assert!(count(&urls[2], query).await > 0, "{table} on the target");
    }
    assert_eq!(count(&urls[0], "SELECT COUNT(*) FROM shard_dirty".into()).await, 0);
    assert_eq!(count(&urls[0], "SELECT COUNT(*) FROM shard_moves".into()).await, 0);
    // Every message copy on every database is held by as many entries there as it counts,
    // or is its sender's home copy.
    for url in &urls {
        let unbalanced = "SELECT COUNT(*) FROM messages m WHERE m.refs <>
            (SELECT COUNT(*) FROM inbox i WHERE i.message_id = m.message_id)";
        assert_eq!(count(url, unbalanced.into()).await, 0, "references on {url}");
    }
    // The moved users still send and receive.
    let (a, b) = (moved[0], users.iter().copied().find(|u| u % LOGICAL != SHARD).unwrap());
    let message = Message {
        from_user_id: a,
        to_user_id: b,
        text: "after".into(),
        client_msg_id: "after".into(),
        ..Message::default()
    };
    let entries = vec![
        InboxEntry { user_id: a, version: newest(&store, a).await + 1 },
        InboxEntry { user_id: b, version: newest(&store, b).await + 1 },
    ];
    store.append(&Ctx::new(0), AppendRequest { message: Some(message), entries }).await.unwrap();
    let query = format!("SELECT COUNT(*) FROM inbox WHERE user_id = {a}");
    assert!(count(&urls[2], query).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_under_load_keeps_every_acknowledged_message_on_postgres() {
    move_under_load(DatabaseServer::Postgres, "mv_load").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_under_load_keeps_every_acknowledged_message_on_mariadb() {
    move_under_load(DatabaseServer::MariaDb, "mv_load").await;
}

/// A mover cut off in the middle of its copy (its task dropped, as a kill would) is resumed
/// to the end; another, cut off the same way, is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_is_resumed_or_rolled_back() {
    let urls = fresh_databases(DatabaseServer::Postgres, "mv_cut", 3).await;
    let (store, users) = deployment(&urls).await;
    let load = start_load(&store, &users);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cut = |urls: Vec<String>| async move {
        let started = Arc::new(AtomicBool::new(false));
        let copying = started.clone();
        let mover = tokio::spawn(async move {
            move_shard(&urls[..1], SHARD, &urls[2], MoveOptions::default(), move |p| {
                if p.step == "copying" {
                    copying.store(true, Ordering::SeqCst);
                }
            })
            .await
        });
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        mover.abort();
        assert!(mover.await.is_err(), "cut off");
    };
    cut(urls.clone()).await;
    let recorded = "SELECT COUNT(*) FROM shard_moves".to_string();
    assert_eq!(count(&urls[0], recorded.clone()).await, 1, "the move is recorded");
    let refused = move_shard(&urls[..1], SHARD, &urls[2], MoveOptions::default(), |_| {}).await;
    assert!(refused.is_err(), "a move updated a moment ago may still be running");
    let force = MoveOptions { force: true, pace: 1.0 };
    let outcome = move_shard(&urls[..1], SHARD, &urls[2], force, |_| {}).await.expect("resumed");
    assert_eq!(outcome.to, 2);
    assert_eq!(count(&urls[0], recorded.clone()).await, 0);
    assert_eq!(store.shard_map().owner(SHARD), 2);

    // Back to database 0, cut off again, and rolled back: database 2 keeps the shard.
    cut(vec![urls[0].clone(), urls[1].clone(), urls[0].clone()]).await;
    roll_back_move(&urls[..1], SHARD, true).await.expect("rolled back");
    assert_eq!(count(&urls[0], recorded).await, 0);
    let state = format!("SELECT state FROM logical_shards WHERE shard = {SHARD}");
    assert_eq!(
        count(&urls[2], state.replace("state", "CAST(state AS BIGINT)")).await,
        0,
        "held again"
    );
    let leftovers = format!("SELECT COUNT(*) FROM accounts WHERE user_id % {LOGICAL} = {SHARD}");
    assert_eq!(count(&urls[0], leftovers).await, 0, "the target's copy is gone");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = load.finish().await;
    check_inboxes(&store, &users, &acked).await;
}
