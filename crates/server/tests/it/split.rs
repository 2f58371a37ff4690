//! The tiers as separate processes: two access nodes, one logic node, store nodes (one of
//! them for messages only) or the store role inside the logic node, a SQL backend and Redis
//! as the routing engine. Clients
//! on different access nodes talk, and no acknowledged message is lost when the logic node or
//! an access node is killed with SIGKILL and restarted.

use crate::harness::*;
use missive_client::Client;
use missive_storage_suite::{DatabaseServer, fresh_databases};
use std::time::Duration;

/// The private Redis of this test run, never one of the machine's.
fn redis_url() -> String {
    missive_storage_suite::test_server_url("MISSIVE_TEST_REDIS")
}

struct Deployment {
    access: [Server; 2],
    logic: Server,
    stores: Vec<Server>,
    _shared: tempfile::TempDir,
}

/// How the storage tier is placed.
enum Placement {
    /// Two store processes: one for messages, one for every other data type.
    StoreNodes,
    /// The store role inside the logic node, whose allocator is reached over its own RPC
    /// listener as a remote `Seq` (as another logic node would reach it).
    InLogicNode,
}

fn deploy(store_url: &str, placement: Placement) -> Deployment {
    deploy_with(store_url, placement, &[])
}

/// [`deploy`] with more flags for the access nodes.
fn deploy_with(store_url: &str, placement: Placement, access_flags: &[&str]) -> Deployment {
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("sync-key.secret");
    let secret = secret.to_str().unwrap();
    let namespace = format!("missive-it-{:016x}", rand::random::<u64>());
    let routing = ["--redis-url", &redis_url(), "--redis-namespace", &namespace];
    let mut logic_flags = vec!["--secret-file", secret];
    logic_flags.extend(routing);
    let (stores, logic) = match placement {
        Placement::StoreNodes => {
            let store = || Server::start_with(&["--role", "store", "--store-url", store_url]);
            let stores = vec![store(), store()];
            logic_flags.extend(["--role", "logic", "--store-rpc", &stores[0].rpc]);
            logic_flags.extend(["--message-store-rpc", &stores[1].rpc]);
            let logic = Server::start_with(&logic_flags);
            (stores, logic)
        }
        Placement::InLogicNode => {
            let rpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let (rpc, seq) = (rpc.to_string(), format!("http://{rpc}"));
            logic_flags.extend(["--role", "logic,store", "--store-url", store_url]);
            logic_flags.extend(["--seq-rpc", &seq]);
            (Vec::new(), Server::start_with_rpc(&logic_flags, &rpc))
        }
    };
    let access = || {
        let mut flags = vec!["--role", "access", "--logic-rpc", &logic.rpc];
        flags.extend(routing);
        flags.extend(access_flags);
        Server::start_with(&flags)
    };
    Deployment { access: [access(), access()], logic, stores, _shared: shared }
}

/// A notify reaches `client` within 5 s: the push crossed nodes.
async fn notified(client: &Client) {
    tokio::time::timeout(Duration::from_secs(5), client.wait_for_notify())
        .await
        .expect("a notify within 5 s")
        .expect("the link stays up");
}

/// Sends until the server acknowledges (a node may be restarting), for at most 20 s.
async fn send_until_acknowledged(client: &Client, to: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.send_text(to, text).await {
            Ok(_) => return,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{text:?} never acknowledged: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn split_deployment_loses_no_acknowledged_message(deployment: &mut Deployment) {
    let [a1, a2] = &mut deployment.access;
    let alice = user(&a1.tcp, "alice").await;
    alice.sync().await.unwrap();
    let bob = user(&a2.ws(), "bob").await;
    bob.sync().await.unwrap();

    // Across access nodes, both ways, woken by notifies.
    alice.send_text("bob", "hello from node 1").await.unwrap();
    notified(&bob).await;
    assert_eq!(texts(&bob.sync().await.unwrap()), ["hello from node 1"]);
    alice.sync().await.unwrap();
    bob.send_text("alice", "hello from node 2").await.unwrap();
    notified(&alice).await;
    assert_eq!(texts(&alice.sync().await.unwrap()), ["hello from node 2"]);

    // SIGKILL the logic node while alice keeps sending; every acknowledged send survives.
    let sender = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        let mut refused = 0;
        for n in 0..60 {
            let text = format!("burst {n}");
            match alice.send_text("bob", &text).await {
                Ok(_) => acknowledged.push(text),
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (alice, acknowledged, refused)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    deployment.logic.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    deployment.logic.restart_in_place();
    let (alice, acknowledged, refused) = sender.await.unwrap();
    assert!(refused > 0, "the logic node was down for part of the burst");
    send_until_acknowledged(&alice, "bob", "after the logic restart").await;

    let received = texts(&receive(&bob, acknowledged.len() + 2).await);
    for text in acknowledged.iter().chain(["after the logic restart".to_string()].iter()) {
        assert!(received.contains(text), "{text:?} acknowledged but lost: got {received:?}");
    }
    let unique: std::collections::HashSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "no message twice: {received:?}");

    // SIGKILL bob's access node; alice's messages meanwhile wait in his inbox.
    let (token, key) = (bob.session().unwrap().token, bob.sync_key());
    let [_, a2] = &mut deployment.access;
    a2.kill9();
    for n in 0..5 {
        alice.send_text("bob", &format!("while away {n}")).await.unwrap();
    }
    a2.restart_in_place();
    let bob = Client::connect(&a2.tcp).await.unwrap();
    bob.resume(&token).await.unwrap();
    bob.set_sync_key(key);
    let expected: Vec<String> = (0..5).map(|n| format!("while away {n}")).collect();
    assert_eq!(texts(&bob.sync().await.unwrap()), expected, "exactly what he missed");
    alice.send_text("bob", "welcome back").await.unwrap();
    notified(&bob).await;
    assert_eq!(texts(&bob.sync().await.unwrap()), ["welcome back"]);
}

/// Whether `node` has stored a message in the `backend` databases, by its metrics.
async fn appends(node: &Server, backend: &str) -> bool {
    let metrics = reqwest::get(format!("{}/metrics", node.admin)).await.unwrap();
    let series = format!(
        "missive_store_duration_seconds_count{{data_type=\"message\",backend=\"{backend}\",\
         method=\"Append\"}} "
    );
    metrics.text().await.unwrap().lines().any(|line| {
        line.strip_prefix(&series).and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n > 0.0)
    })
}

#[tokio::test]
async fn split_deployment_on_mariadb_survives_killed_nodes() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_split", 2).await.join(",");
    let mut deployment = deploy(&urls, Placement::StoreNodes);
    split_deployment_loses_no_acknowledged_message(&mut deployment).await;
    // Messages went to their own store node, and only there.
    let [all, messages] = [&deployment.stores[0], &deployment.stores[1]];
    assert!(!appends(all, "mysql").await && appends(messages, "mysql").await);
}

#[tokio::test]
async fn split_deployment_on_postgresql_survives_killed_nodes() {
    let urls = fresh_databases(DatabaseServer::Postgres, "it_split", 2).await.join(",");
    let mut deployment = deploy(&urls, Placement::InLogicNode);
    split_deployment_loses_no_acknowledged_message(&mut deployment).await;
    assert!(appends(&deployment.logic, "postgres").await, "the logic node holds the store role");
}

/// Contacts, a group with a version-1 member, and a file, across access nodes, with groups,
/// contacts and media reached over RPC and stored in the SQL shards.
#[tokio::test]
async fn split_deployment_carries_groups_contacts_and_media() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_split_groups", 2).await.join(",");
    let deployment = deploy(&urls, Placement::StoreNodes);
    let [a1, a2] = &deployment.access;
    let alice = user(&a1.tcp, "alice").await;
    let bob = user(&a2.ws(), "bob").await;
    let carol = user_with(&a2.tcp, "carol", 1).await;
    for client in [&alice, &bob, &carol] {
        client.sync().await.unwrap();
    }

    alice.friend_request("bob", "hi").await.unwrap();
    notified(&bob).await;
    bob.friend_respond("alice", true).await.unwrap();
    assert_eq!(alice.contacts().await.unwrap()[0].username, "bob");

    let ids = [&bob, &carol].map(|c| c.session().unwrap().user_id).to_vec();
    let group = alice.group_create("Across", ids).await.unwrap();
    let handle = missive_client::ids::group_handle(group.group_id);
    bob.send_to_group(group.group_id, "from node 2", vec![]).await.unwrap();
    let carol_view = texts(&receive(&carol, 2).await);
    assert_eq!(carol_view, ["alice created the group \"Across\"", "bob: from node 2"]);
    carol
        .send(missive_client::proto::SendRequest {
            to: handle,
            client_msg_id: "carol-1".into(),
            kind: 1,
            text: "old phone here".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let alice_view = texts(&receive(&alice, 3).await);
    assert_eq!(alice_view[1..], ["from node 2", "old phone here"]);

    let uploader = Client::connect(&a1.http).await.unwrap();
    uploader.login("alice", PASSWORD, "laptop").await.unwrap();
    let media =
        uploader.upload(group.group_id, "map.png", "image/png", vec![9; 4096]).await.unwrap();
    assert_eq!(bob.download(&media.media_id).await.unwrap().data, vec![9; 4096]);

    // A LOGOUT over the short link of node 1 closes the long link the same token holds on
    // node 2, at once, telling it why; the token is refused from then on.
    let token = uploader.session().unwrap().token;
    let elsewhere = Client::connect(&a2.tcp).await.unwrap();
    elsewhere.resume(&token).await.unwrap();
    let started = tokio::time::Instant::now();
    uploader.logout().await.unwrap();
    // A NOTIFY for what the device has not synced yet may come first: the close follows it.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(error) = elsewhere.wait_for_notify().await {
                return error;
            }
        }
    })
    .await;
    let error = closed.expect("the link is closed within 5 s");
    assert_eq!(error.code(), Some(missive_client::Code::Unauthenticated), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let again = Client::connect(&a2.http).await.unwrap();
    assert_eq!(
        again.resume(&token).await.unwrap_err().code(),
        Some(missive_client::Code::Unauthenticated)
    );
}

#[tokio::test]
async fn typing_and_presence_cross_access_nodes() {
    use crate::presence::{befriend, next_event, presence, state, typing};
    use missive_client::proto::PresenceState;
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_split_presence", 2).await.join(",");
    let deployment = deploy_with(&urls, Placement::InLogicNode, &["--presence-grace-s", "1"]);
    let [a1, a2] = &deployment.access;
    let alice = user(&a1.tcp, "alice").await;
    let bob = user(&a2.ws(), "bob").await;
    befriend(&alice, "alice", &bob, "bob").await;
    let (alice_id, bob_id) = (alice.session().unwrap().user_id, bob.session().unwrap().user_id);

    bob.typing(alice_id, true).await.unwrap();
    let seen = next_event(&alice, typing).await;
    assert_eq!((seen.conversation_id, seen.typing), (bob_id, true));

    // Bob moves from node 2 to node 1: his friend on node 1 sees him gone, then back; while
    // he is on node 1 only, node 2's report of his leaving is no news.
    drop(bob);
    let gone = next_event(&alice, presence).await;
    assert_eq!((gone.user_id, state(&gone)), (bob_id, PresenceState::Offline));
    let bob = device(&a1.tcp, "bob", "phone").await;
    let back = next_event(&alice, presence).await;
    assert_eq!((back.user_id, state(&back)), (bob_id, PresenceState::Online));
    let phone2 = device(&a2.tcp, "bob", "tablet").await;
    drop(phone2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&alice.presence(&[bob_id]).await.unwrap()[0]), PresenceState::Online);
    alice.typing(bob_id, true).await.unwrap();
    assert_eq!(next_event(&bob, typing).await.user_id, alice_id);
}

#[tokio::test]
async fn reactions_through_two_logic_nodes_are_all_counted() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_split_reactions", 2).await.join(",");
    let nodes = two_logic_nodes_on(&["--store-url", &urls], &[]);
    let alice = user(&nodes.access[0].tcp, "alice").await;
    let mut members = Vec::new();
    for n in 0..10 {
        members.push(user(&nodes.access[n % 2].tcp, &format!("member{n}")).await);
    }
    let ids = members.iter().map(|c| c.session().unwrap().user_id).collect();
    let group = alice.group_create("Votes", ids).await.unwrap();
    let sent = alice.send_to_group(group.group_id, "lunch?", vec![]).await.unwrap();
    let votes = members.iter().map(|member| member.react(sent.message_id, "🍕"));
    for result in futures_util::future::join_all(votes).await {
        result.unwrap();
    }
    let stored = messages(&alice.sync().await.unwrap());
    let message = stored.iter().find(|m| m.id == sent.message_id).unwrap();
    assert_eq!(message.reactions.len(), 1);
    let mut voters = message.reactions[0].user_ids.clone();
    voters.sort_unstable();
    let mut expected: Vec<u64> = members.iter().map(|c| c.session().unwrap().user_id).collect();
    expected.sort_unstable();
    assert_eq!(voters, expected, "every vote counted once");
}

/// Offline push in a deployment of two logic nodes: each message is counted in exactly one
/// notification, whichever node handled it, and the nodes take turns at one pace per user.
#[tokio::test]
async fn two_logic_nodes_push_each_message_once_at_one_pace() {
    use crate::push::{id, offline, start_receiver};
    use missive_client::proto::{Pusher, PusherKind};
    let receiver = start_receiver().await;
    let interval = Duration::from_secs(2);
    let nodes = two_logic_nodes(&["--push-private-endpoints", "true", "--push-interval-s", "2"]);
    let [first, second] = &nodes.access;
    let phone = user(&first.tcp, "alice").await;
    let laptop = device(&second.tcp, "alice", "laptop").await;
    let bob = user(&first.tcp, "bob").await;
    phone.friend_request("bob", "").await.unwrap();
    bob.friend_respond("alice", true).await.unwrap();
    let endpoint = format!("{}/up/phone", receiver.origin);
    let pusher = Pusher { kind: PusherKind::UnifiedPush as i32, endpoint, ..Default::default() };
    bob.set_pusher(pusher).await.unwrap();
    let bob_id = id(&bob);
    drop(bob);
    offline(&phone, bob_id).await;

    // Ten messages, through both logic nodes, faster than the pace.
    const SENT: u64 = 10;
    for n in 0..SENT {
        let client = if n % 2 == 0 { &phone } else { &laptop };
        client.send_text("bob", &format!("message {n}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut counted = 0;
    let mut got = Vec::new();
    while counted < SENT {
        got = receiver.wait_for("phone", got.len() + 1).await;
        counted = got.iter().map(|n| n["messages"].as_u64().unwrap()).sum();
    }
    tokio::time::sleep(interval * 2).await;
    let got = receiver.wait_for("phone", 1).await;
    let counted: u64 = got.iter().map(|n| n["messages"].as_u64().unwrap()).sum();
    assert_eq!(counted, SENT, "every message in exactly one notification: {got:?}");
    assert!(got.len() >= 2, "a burst longer than the pace is more than one: {got:?}");
    let arrivals = receiver.arrivals("phone");
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > interval / 2, "notifications {gap:?} apart: the nodes share one pace");
    }
}

/// The JSON lines of a log file.
fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// The id an access node gives a client request names the request's log lines in every
/// process the request reaches.
#[tokio::test]
async fn a_request_id_follows_a_request_from_the_access_node_into_the_logic_node() {
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| Log {
        path: logs.path().join(name),
        filter: "warn,missive_access=debug,missive_rpc=debug".into(),
    };
    let namespace = format!("missive-it-{:016x}", rand::random::<u64>());
    let routing = ["--redis-url", &redis_url(), "--redis-namespace", &namespace];
    let mut flags = vec!["--role", "logic,store"];
    flags.extend(routing);
    let logic = Server::start_logging(&flags, log("logic.log"));
    let mut flags = vec!["--role", "access", "--logic-rpc", &logic.rpc];
    flags.extend(routing);
    let access = Server::start_logging(&flags, log("access.log"));

    let alice = user(&access.tcp, "alice").await;
    let refused = alice.send_text("nobody", "hello?").await.unwrap_err();
    assert_eq!(refused.code(), Some(missive_client::Code::NotFound));

    let access_log = json_lines(&logs.path().join("access.log"));
    let failed: Vec<&serde_json::Value> = access_log
        .iter()
        .filter(|line| {
            line["fields"]["message"] == "request failed" && line["span"]["command"] == "send"
        })
        .collect();
    assert_eq!(failed.len(), 1, "{access_log:#?}");
    let request_id = failed[0]["span"]["request_id"].as_u64().expect("a request id");

    let logic_log = json_lines(&logs.path().join("logic.log"));
    let seen: Vec<&serde_json::Value> = logic_log
        .iter()
        .filter(|line| {
            line["fields"]["message"] == "call failed" && line["fields"]["method"] == "Send"
        })
        .collect();
    assert_eq!(seen.len(), 1, "{logic_log:#?}");
    assert_eq!(seen[0]["fields"]["request_id"].as_u64(), Some(request_id));
    assert_eq!(
        seen[0]["span"]["request_id"].as_u64(),
        Some(request_id),
        "the call's span names it"
    );
    assert_eq!(seen[0]["level"], "DEBUG", "a refusal is no server fault");
}

/// A store node serves the nodes of its deployment only: a caller without the deployment's
/// secret, whatever caller it claims to act for, is refused before anything runs.
#[tokio::test]
async fn a_caller_that_is_not_a_node_of_the_deployment_is_refused() {
    use missive_proto::internal::{AccountStore, AccountStoreRemote, UsernameRef};
    use missive_rpc::remote::{Client, NodeKey};
    use missive_rpc::{Caller, Code, Ctx};
    let store = Server::start_with(&["--role", "store"]);
    let forged = Caller { user_id: 1, device_id: 1, protocol_version: 2 };
    let ctx = Ctx { caller: Some(forged), ..Ctx::new(1) };
    let lookup = UsernameRef { username: "alice".into() };
    let reach = |key: &NodeKey| {
        AccountStoreRemote::new(
            Client::new(
                "account_store",
                std::slice::from_ref(&store.rpc),
                key,
                &Default::default(),
            )
            .unwrap(),
        )
    };

    let stranger = reach(&NodeKey::random());
    let refused = stranger.get_by_name(&ctx, lookup.clone()).await.unwrap_err();
    assert_eq!(refused.code, Code::Unauthenticated, "{refused}");

    let secret = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster.secret");
    let node = reach(&NodeKey::from_secret(&std::fs::read(secret).unwrap()));
    let answered = node.get_by_name(&ctx, lookup).await.unwrap_err();
    assert_eq!(answered.code, Code::NotFound, "a node is served: {answered}");
}

/// A store node, two logic nodes sharing a routing engine (each given `flags`), and two
/// access nodes, each calling its own logic node.
struct TwoLogicNodes {
    access: [Server; 2],
    _logic: [Server; 2],
    _store: Server,
    _shared: tempfile::TempDir,
}

fn two_logic_nodes(flags: &[&str]) -> TwoLogicNodes {
    two_logic_nodes_on(&[], flags)
}

/// [`two_logic_nodes`] with the store node given `store_flags` (a `--store-url`).
fn two_logic_nodes_on(store_flags: &[&str], flags: &[&str]) -> TwoLogicNodes {
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("sync-key.secret");
    let namespace = format!("missive-it-{:016x}", rand::random::<u64>());
    let mut store_args = vec!["--role", "store"];
    store_args.extend(store_flags);
    let store = Server::start_with(&store_args);
    let redis = redis_url();
    let routing = ["--redis-url", &redis, "--redis-namespace", &namespace];
    let logic = || {
        let mut logic_flags = vec!["--role", "logic", "--store-rpc", &store.rpc];
        logic_flags.extend(["--secret-file", secret.to_str().unwrap()]);
        logic_flags.extend(routing);
        logic_flags.extend(flags);
        Server::start_with(&logic_flags)
    };
    let logic = [logic(), logic()];
    let access = |logic: &Server| {
        let mut access_flags = vec!["--role", "access", "--logic-rpc", &logic.rpc];
        access_flags.extend(routing);
        Server::start_with(&access_flags)
    };
    let access = [access(&logic[0]), access(&logic[1])];
    TwoLogicNodes { access, _logic: logic, _store: store, _shared: shared }
}

/// Logic nodes of one deployment count against the same rate-limit buckets, in the routing
/// engine: a user's sends through two access nodes, each calling its own logic node, meet
/// one limit, not one per node.
#[tokio::test]
async fn logic_nodes_count_rate_limits_together() {
    let deployment = two_logic_nodes(&["--rate-limits", "true", "--rate-sends-per-user", "3/1m"]);
    let [first, second] = &deployment.access;
    user(&first.tcp, "bob").await;
    let phone = user(&first.tcp, "alice").await;
    let laptop = device(&second.tcp, "alice", "laptop").await;
    phone.send_text("bob", "one").await.unwrap();
    phone.send_text("bob", "two").await.unwrap();
    laptop.send_text("bob", "three").await.unwrap();
    let refused = laptop.send_text("bob", "four").await.unwrap_err();
    assert_eq!(refused.code(), Some(missive_client::Code::RateLimited), "{refused}");
    let refused = phone.send_text("bob", "four").await.unwrap_err();
    assert_eq!(refused.code(), Some(missive_client::Code::RateLimited), "{refused}");
}

/// A LOGOUT through one logic node ends the token on the other at once: the short link of
/// an access node calling the other logic node, which had the session cached, refuses it
/// within a second (not when its cached copy would have aged out, 30 s later).
#[tokio::test]
async fn a_logout_through_one_logic_node_ends_the_token_on_the_other_at_once() {
    let deployment = two_logic_nodes(&[]);
    let [first, second] = &deployment.access;
    let here = user(&first.http, "alice").await;
    let token = here.session().unwrap().token;
    let there = Client::connect(&second.http).await.unwrap();
    there.resume(&token).await.unwrap();
    there.profile("").await.expect("the other logic node knows the session (and caches it)");
    here.logout().await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match there.profile("").await {
                Err(error) => return error,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("refused within a second");
    assert_eq!(refused.code(), Some(missive_client::Code::Unauthenticated), "{refused}");
}

/// Writers of the same users racing through two logic nodes onto SQL shards: each of three
/// users sends to the two others from two devices at once, one device on each logic node, so
/// every inbox is written by both nodes' allocators and batches at the same time. Every
/// acknowledged send is in each of its inboxes exactly once, and each inbox's versions only
/// grow. (Each node's allocator hands out versions for every user here, the worst case:
/// `--seq-rpc` would give each user one.)
async fn racing_writers_across_two_logic_nodes(database: DatabaseServer, name: &str) {
    let urls = fresh_databases(database, name, 2).await.join(",");
    let deployment = two_logic_nodes_on(&["--store-url", &urls], &["--direct-messages", "anyone"]);
    let [first, second] = &deployment.access;
    let names: [&'static str; 3] = ["ann", "ben", "cat"];
    for name in names {
        user(&first.tcp, name).await;
    }
    let per_device = 30;
    let mut sends = Vec::new();
    for (n, &from) in names.iter().enumerate() {
        for (access, device_name) in [(first, "phone"), (second, "laptop")] {
            let client = device(&access.tcp, from, device_name).await;
            let to = [names[(n + 1) % 3], names[(n + 2) % 3]];
            sends.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..per_device {
                    let text = format!("{from} {device_name} {i}");
                    let to = to[i % 2];
                    let request = missive_client::proto::SendRequest {
                        to: to.into(),
                        client_msg_id: format!("{device_name}-{i}"),
                        kind: missive_client::proto::MessageKind::Text as i32,
                        text: text.clone(),
                        ..Default::default()
                    };
                    // ABORTED: the server's own retries lost every race; a client resends
                    // with the same id, which stores it once (protocol.md §9).
                    let mut attempts = 0;
                    while let Err(error) = client.send(request.clone()).await {
                        attempts += 1;
                        let aborted = error.code() == Some(missive_client::Code::Aborted);
                        assert!(aborted && attempts < 10, "{text:?} not acknowledged: {error}");
                    }
                    sent.push((to.to_string(), text));
                }
                sent
            }));
        }
    }
    let mut expected: std::collections::HashMap<String, Vec<String>> = Default::default();
    for send in sends {
        for (to, text) in send.await.unwrap() {
            let from = text.split(' ').next().unwrap().to_string();
            expected.entry(to).or_default().push(text.clone());
            expected.entry(from).or_default().push(text);
        }
    }
    for name in names {
        let reader = device(&second.tcp, name, "reader").await;
        let mut items = reader.sync().await.unwrap();
        let mut got: Vec<(u64, String)> = Vec::new();
        loop {
            got.extend(messages_with_versions(&items));
            if got.len() >= expected[name].len() {
                break;
            }
            items = reader.sync().await.unwrap();
            assert!(!items.is_empty(), "{name} has only {} of {}", got.len(), expected[name].len());
        }
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{name}'s versions only grow");
        let mut texts: Vec<String> = got.into_iter().map(|(_, text)| text).collect();
        texts.sort();
        let mut want = expected[name].clone();
        want.sort();
        assert_eq!(texts, want, "{name} holds every acknowledged send exactly once");
    }
}

/// The versions and texts of the message items.
fn messages_with_versions(items: &[missive_client::proto::SyncItem]) -> Vec<(u64, String)> {
    items
        .iter()
        .filter_map(|item| match &item.body {
            Some(missive_client::proto::sync_item::Body::Message(m)) => {
                Some((item.version, m.text.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn racing_writers_across_two_logic_nodes_on_mariadb() {
    racing_writers_across_two_logic_nodes(DatabaseServer::MariaDb, "it_racing").await;
}

#[tokio::test]
async fn racing_writers_across_two_logic_nodes_on_postgresql() {
    racing_writers_across_two_logic_nodes(DatabaseServer::Postgres, "it_racing").await;
}

/// SIGKILL of the store node that holds the message path's group commit, while eight users
/// keep sends in flight, so that batches are open when it dies. Each sender resends what was
/// not acknowledged with the same client id, as a client does after UNAVAILABLE or a lost
/// link. Afterwards every send is in its recipient's inbox and its sender's exactly once:
/// a batch lost before its commit is written by the resend, and one that committed unseen
/// is found by it.
#[tokio::test]
async fn a_store_node_killed_mid_batch_loses_and_doubles_nothing() {
    let urls = fresh_databases(DatabaseServer::MariaDb, "it_kill_batch", 2).await.join(",");
    let mut deployment = deploy(&urls, Placement::StoreNodes);
    let access = deployment.access[0].tcp.clone();
    let names: Vec<String> = (0..8).map(|n| format!("user{n}")).collect();
    for name in &names {
        user(&access, name).await;
    }
    let per_sender = 40;
    let mut senders = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let client = device(&access, name, "sender").await;
        let to = names[(n + 1) % names.len()].clone();
        senders.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut resent = 0;
            for i in 0..per_sender {
                let request = missive_client::proto::SendRequest {
                    to: to.clone(),
                    client_msg_id: format!("m{i}"),
                    kind: missive_client::proto::MessageKind::Text as i32,
                    text: format!("{to} {i}"),
                    ..Default::default()
                };
                while let Err(error) = client.send(request.clone()).await {
                    assert!(tokio::time::Instant::now() < deadline, "never acknowledged: {error}");
                    resent += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            resent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    deployment.stores[1].kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    deployment.stores[1].restart_in_place();
    let mut resent = 0;
    for sender in senders {
        resent += sender.await.unwrap();
    }
    assert!(resent > 0, "the store node died while sends were in flight");
    for (n, name) in names.iter().enumerate() {
        let reader = device(&access, name, "reader").await;
        let mut got = Vec::new();
        loop {
            let items = reader.sync().await.unwrap();
            if items.is_empty() {
                break;
            }
            got.extend(texts(&items));
        }
        // Received from the previous user, and sent to the next: each message once.
        let next = &names[(n + 1) % names.len()];
        let mut expected: Vec<String> = (0..per_sender).map(|i| format!("{name} {i}")).collect();
        expected.extend((0..per_sender).map(|i| format!("{next} {i}")));
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{name}'s inbox");
    }
}

/// A logic node with the store role (the embedded store) on a routing namespace of its own,
/// and the routing flags of the access nodes in front of it.
fn logic_node_with_routing() -> (Server, [String; 4]) {
    let namespace = format!("missive-it-{:016x}", rand::random::<u64>());
    let routing = ["--redis-url".into(), redis_url(), "--redis-namespace".into(), namespace];
    let mut flags = vec!["--role", "logic,store"];
    flags.extend(routing.iter().map(String::as_str));
    (Server::start_with(&flags), routing)
}

/// Idle links by the thousand on two access processes behind one logic node (the way one
/// host holds more links than one process may, docs/scale-out.md §5): each link is woken by
/// its own NOTIFY when a message comes for it, whichever access process holds it.
#[tokio::test]
async fn thousands_of_idle_links_on_two_access_nodes_are_each_woken_by_their_notify() {
    const LINKS: usize = 2_000;
    // One socket per link in this process, beside the servers' own.
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let (logic, routing) = logic_node_with_routing();
    let access = || {
        let mut flags = vec!["--role", "access", "--logic-rpc", &logic.rpc];
        flags.extend(routing.iter().map(String::as_str));
        flags.extend(["--connections-per-address-max", "10000"]);
        Server::start_with(&flags)
    };
    let nodes = [access(), access()];

    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut signing_in = tokio::task::JoinSet::new();
    for i in 0..LINKS {
        let (url, gate) = (nodes[i % 2].tcp.clone(), gate.clone());
        signing_in.spawn(async move {
            let _turn = gate.acquire_owned().await.unwrap();
            let client = user(&url, &format!("idle{i}")).await;
            client.sync().await.unwrap();
            (i, client)
        });
    }
    let clients = signing_in.join_all().await;
    let mut woken = tokio::task::JoinSet::new();
    for (i, client) in clients {
        woken.spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), client.wait_for_notify())
                .await
                .unwrap_or_else(|_| panic!("link {i} was not woken"))
                .unwrap_or_else(|e| panic!("link {i} was lost: {e}"));
            let items = client.sync().await.unwrap();
            assert_eq!(texts(&items), [format!("wake up, {i}")], "link {i} finds its message");
        });
    }
    let sender = user(&nodes[0].tcp, "waker").await;
    for i in 0..LINKS {
        send_until_acknowledged(&sender, &format!("idle{i}"), &format!("wake up, {i}")).await;
    }
    woken.join_all().await;
}

/// Two access processes on one host sharing one address (`--reuse-port`): the kernel spreads
/// the links over both, and a message reaches its user on whichever holds them.
#[tokio::test]
async fn access_processes_sharing_one_address_each_take_links_and_deliver() {
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let address = address.to_string();
    let (logic, routing) = logic_node_with_routing();
    let access = || {
        let mut flags = vec!["--role", "access", "--logic-rpc", &logic.rpc, "--reuse-port"];
        flags.extend(routing.iter().map(String::as_str));
        Server::start_on_tcp(&flags, &address)
    };
    let nodes = [access(), access()];
    let url = format!("tcp://{address}");
    let mut clients = Vec::new();
    for i in 0..64 {
        clients.push(user(&url, &format!("shared{i}")).await);
    }
    for node in &nodes {
        let metrics = reqwest::get(format!("{}/metrics", node.admin)).await.unwrap();
        let text = metrics.text().await.unwrap();
        let online: f64 = text
            .lines()
            .filter(|line| line.starts_with("missive_online_devices{"))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert!(online >= 1.0, "each process holds some of the 64 links: {online} here");
    }
    let sender = user(&url, "sender").await;
    for (i, client) in clients.iter().enumerate() {
        send_until_acknowledged(&sender, &format!("shared{i}"), "hello").await;
        notified(client).await;
    }
}
