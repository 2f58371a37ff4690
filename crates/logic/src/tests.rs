//! The logic layer over the real embedded store, with time injected: what the end-to-end
//! tests cannot wait for.

use crate::{Clock, Deps, DirectMessages, Logic, LogicConfig, Retention, SeqAllocator};
use missive_proto::client::*;
use missive_proto::internal::{
    AuthenticateRequest, ClientApi, Empty, NotifyRequest, Presence, Push, UserRef,
};
use missive_rpc::{Caller, Ctx, Status};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// No connection is online in these tests; notifies go nowhere.
struct Offline;

#[async_trait::async_trait]
impl Push for Offline {
    async fn notify(&self, _: &Ctx, _: NotifyRequest) -> Result<Empty, Status> {
        Ok(Empty {})
    }

    async fn presence(&self, _: &Ctx, _: UserRef) -> Result<Presence, Status> {
        Ok(Presence::default())
    }
}

const DAY_MS: i64 = 86_400_000;

fn logic(dir: &tempfile::TempDir, now: Arc<AtomicI64>, retention: Retention) -> Arc<Logic> {
    let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
    logic_node(store, now, retention)
}

/// One logic node, with its own version allocator, over `store`.
fn logic_node(store: Arc<EmbeddedStore>, now: Arc<AtomicI64>, retention: Retention) -> Arc<Logic> {
    let deps = Deps {
        accounts: store.clone(),
        contacts: store.clone(),
        messages: store.clone(),
        groups: store.clone(),
        media: Arc::new(FileMediaStore::open(store.path().parent().unwrap()).unwrap()),
        seq: Arc::new(SeqAllocator::new(store.clone(), 100)),
        push: Arc::new(Offline),
        ops: store,
    };
    let config = LogicConfig {
        sync_key_secret: b"test secret".to_vec(),
        password_cost: crate::PasswordCost { memory_kib: 64, iterations: 1 },
        retention,
        clock: Clock::from_fn(move || now.load(Ordering::SeqCst)),
        // These tests send between strangers; the contact rules have tests of their own.
        direct_messages: DirectMessages::Anyone,
        ..LogicConfig::default()
    };
    Logic::new(deps, config)
}

async fn signed_in(logic: &Logic, name: &str) -> Ctx {
    let ctx = Ctx::new(0);
    let password = "long enough".to_string();
    let register =
        RegisterRequest { username: name.into(), password: password.clone(), ..Default::default() };
    logic.register(&ctx, register).await.unwrap();
    let login = LoginRequest { username: name.into(), password, device_name: "d".into() };
    let session = logic.login(&ctx, login).await.unwrap();
    let caller = Caller {
        user_id: session.user_id,
        device_id: session.device_id,
        protocol_version: missive_proto::PROTOCOL_VERSION,
    };
    Ctx { caller: Some(caller), ..ctx }
}

fn text_to(to: &str, client_msg_id: &str, text: &str) -> SendRequest {
    SendRequest {
        to: to.into(),
        client_msg_id: client_msg_id.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn messages(items: &[SyncItem]) -> usize {
    items.iter().filter(|i| matches!(i.body, Some(sync_item::Body::Message(_)))).count()
}

#[tokio::test]
async fn delivered_messages_are_kept_for_the_retention_then_collected() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_000 * DAY_MS));
    let logic = logic(&dir, now.clone(), Retention::After(Duration::from_secs(7 * 86_400)));
    let alice = signed_in(&logic, "alice").await;
    let bob = signed_in(&logic, "bob").await;
    logic.send(&alice, text_to("bob", "m1", "hi")).await.unwrap();

    // Bob receives it, then presents the new key: acknowledged at day 1000.
    let first = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&first.items), 1);
    let key = first.sync_key.clone();
    logic.sync(&bob, SyncRequest { sync_key: key, limit: 0 }).await.unwrap();
    logic.flush_acks().await;

    now.fetch_add(7 * DAY_MS - 1, Ordering::SeqCst);
    assert_eq!(logic.collect_garbage().await, 0, "kept until 7 days after delivery");
    let again = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&again.items), 1, "a fresh device still gets it");

    now.fetch_add(1, Ordering::SeqCst);
    assert_eq!(logic.collect_garbage().await, 1, "bob's entry goes; alice has not acknowledged");
    let after = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&after.items), 0);
    let alices = logic.sync(&alice, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&alices.items), 1);
}

#[tokio::test]
async fn messages_kept_forever_are_never_collected() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(0));
    let logic = logic(&dir, now.clone(), Retention::Forever);
    let alice = signed_in(&logic, "alice").await;
    let bob = signed_in(&logic, "bob").await;
    logic.send(&alice, text_to("bob", "m1", "hi")).await.unwrap();
    let first = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    logic.sync(&bob, SyncRequest { sync_key: first.sync_key, limit: 0 }).await.unwrap();
    logic.flush_acks().await;
    now.fetch_add(10_000 * DAY_MS, Ordering::SeqCst);
    assert_eq!(logic.collect_garbage().await, 0);
}

/// Two logic nodes, each with its own allocator, write the same users' inboxes in turn (what
/// happens while a user's range moves between nodes): the store's fence refuses each stale
/// version, the write is retried above the other node's bound, and the recipient still gets
/// every message once, in version order.
#[tokio::test]
async fn two_logic_nodes_writing_one_inbox_keep_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
    let now = Arc::new(AtomicI64::new(0));
    let nodes = [
        logic_node(store.clone(), now.clone(), Retention::Forever),
        logic_node(store, now, Retention::Forever),
    ];
    let alice = signed_in(&nodes[0], "alice").await;
    let bob = signed_in(&nodes[1], "bob").await;
    let mut sent = Vec::new();
    for n in 0..20 {
        let send = text_to("bob", &format!("m{n}"), &n.to_string());
        let answer = nodes[n % 2].send(&alice, send).await.unwrap();
        assert!(!answer.duplicate);
        sent.push(answer.version);
    }
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "the sender's versions rise: {sent:?}");
    let synced = nodes[0].sync(&bob, SyncRequest { limit: 500, ..Default::default() });
    let texts: Vec<String> = synced
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|item| match item.body {
            Some(sync_item::Body::Message(message)) => Some(message.text),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    assert_eq!(texts, expected);
}

#[test]
fn retention_settings_parse() {
    assert_eq!("delivered".parse(), Ok(Retention::UntilDelivered));
    assert_eq!("forever".parse(), Ok(Retention::Forever));
    assert_eq!("7d".parse(), Ok(Retention::After(Duration::from_secs(7 * 86_400))));
    assert_eq!("90s".parse(), Ok(Retention::After(Duration::from_secs(90))));
    assert!("7w".parse::<Retention>().is_err());
    assert!("d".parse::<Retention>().is_err());
}

#[tokio::test]
async fn a_logout_through_another_logic_node_takes_effect_within_the_session_cache_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
    let now = Arc::new(AtomicI64::new(1_000 * DAY_MS));
    let one = logic_node(store.clone(), now.clone(), Retention::Forever);
    let two = logic_node(store, now.clone(), Retention::Forever);
    let ctx = Ctx::new(0);
    let password = "long enough".to_string();
    let register = RegisterRequest {
        username: "carol".into(),
        password: password.clone(),
        ..Default::default()
    };
    one.register(&ctx, register).await.unwrap();
    let login = LoginRequest { username: "carol".into(), password, device_name: "d".into() };
    let session = one.login(&ctx, login).await.unwrap();
    let authenticate = |logic: Arc<Logic>| {
        let request = AuthenticateRequest { token: session.token.clone() };
        async move { logic.authenticate(&Ctx::new(0), request).await }
    };
    authenticate(two.clone()).await.expect("node two caches the session");

    let caller = Caller {
        user_id: session.user_id,
        device_id: session.device_id,
        protocol_version: missive_proto::PROTOCOL_VERSION,
    };
    one.logout(&Ctx { caller: Some(caller), ..Ctx::new(0) }, LogoutRequest {}).await.unwrap();
    assert!(authenticate(one.clone()).await.is_err(), "the node that logged out knows at once");
    assert!(authenticate(two.clone()).await.is_ok(), "the other trusts its cache a while");
    now.fetch_add(crate::auth::SESSION_CACHE_TTL_MS, Ordering::SeqCst);
    let refused = authenticate(two).await.unwrap_err();
    assert_eq!(refused.code, missive_rpc::Code::Unauthenticated);
}

#[tokio::test]
async fn a_message_can_be_recalled_within_two_minutes_only() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_000 * DAY_MS));
    let logic = logic(&dir, now.clone(), Retention::Forever);
    let alice = signed_in(&logic, "alice").await;
    let bob = signed_in(&logic, "bob").await;
    let early = logic.send(&alice, text_to("bob", "early", "oops")).await.unwrap();
    let late = logic.send(&alice, text_to("bob", "late", "fine")).await.unwrap();

    now.fetch_add(119_000, Ordering::SeqCst);
    logic.recall(&alice, RecallRequest { message_id: early.message_id }).await.unwrap();
    let refused = logic.recall(&bob, RecallRequest { message_id: late.message_id }).await;
    assert_eq!(refused.unwrap_err().code, missive_rpc::Code::PermissionDenied);
    now.fetch_add(2_000, Ordering::SeqCst);
    let too_late = logic.recall(&alice, RecallRequest { message_id: late.message_id }).await;
    assert_eq!(too_late.unwrap_err().code, missive_rpc::Code::TooLate);
    // A retry of the recall that went through is still answered, and stores nothing twice.
    logic.recall(&alice, RecallRequest { message_id: early.message_id }).await.unwrap();

    let synced = logic.sync(&bob, SyncRequest::default()).await.unwrap().items;
    let bodies: Vec<Message> = synced
        .into_iter()
        .filter_map(|item| match item.body {
            Some(sync_item::Body::Message(m)) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(bodies.len(), 3, "two messages and one recall");
    assert!(bodies[0].recalled && bodies[0].text.is_empty(), "{bodies:?}");
    assert_eq!(bodies[1].text, "fine");
    assert_eq!(bodies[2].kind, MessageKind::Recall as i32);
    assert_eq!(bodies[2].ref_message_id, early.message_id);
}
