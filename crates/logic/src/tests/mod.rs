//! The logic layer in process, over the real embedded store, with time injected: the business
//! rules, checked in milliseconds (the end-to-end tests check the wiring).

mod accounts;
mod compat;
mod contacts;
mod groups;
mod harness;
mod limits;
mod receipts;

use crate::Retention;
use harness::*;
use missive_proto::client::*;
use missive_proto::internal::AuthenticateRequest;
use missive_rpc::Ctx;
use std::sync::Arc;
use std::time::Duration;

/// A node that keeps delivered messages for `retention`, anyone may message anyone.
async fn node(retention: Retention) -> Node {
    Node::with(|config| {
        config.retention = retention;
        config.direct_messages = crate::Audience::Anyone;
    })
    .await
}

fn messages(items: &[SyncItem]) -> usize {
    items.iter().filter(|i| matches!(i.body, Some(sync_item::Body::Message(_)))).count()
}

#[tokio::test]
async fn delivered_messages_are_kept_for_the_retention_then_collected() {
    let node = node(Retention::After(Duration::from_secs(7 * 86_400))).await;
    let logic = &node.logic;
    let alice = node.user("alice").await;
    let bob = node.user("bob").await;
    logic.send(&alice, text_to("bob", "m1", "hi")).await.unwrap();

    // Bob receives it, then presents the new key: acknowledged at day 1000.
    let first = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&first.items), 1);
    let key = first.sync_key.clone();
    logic.sync(&bob, SyncRequest { sync_key: key, limit: 0 }).await.unwrap();
    logic.flush_acks().await;

    node.advance(7 * DAY_MS - 1);
    assert_eq!(logic.collect_garbage().await, 0, "kept until 7 days after delivery");
    let again = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&again.items), 1, "a fresh device still gets it");

    node.advance(1);
    assert_eq!(logic.collect_garbage().await, 1, "bob's entry goes; alice has not acknowledged");
    let after = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&after.items), 0);
    let alices = logic.sync(&alice, SyncRequest::default()).await.unwrap();
    assert_eq!(messages(&alices.items), 1);
}

#[tokio::test]
async fn messages_kept_forever_are_never_collected() {
    let node = node(Retention::Forever).await;
    let logic = &node.logic;
    let alice = node.user("alice").await;
    let bob = node.user("bob").await;
    logic.send(&alice, text_to("bob", "m1", "hi")).await.unwrap();
    let first = logic.sync(&bob, SyncRequest::default()).await.unwrap();
    logic.sync(&bob, SyncRequest { sync_key: first.sync_key, limit: 0 }).await.unwrap();
    logic.flush_acks().await;
    node.advance(10_000 * DAY_MS);
    assert_eq!(logic.collect_garbage().await, 0);
}

/// Two logic nodes, each with its own allocator, write the same users' inboxes in turn (what
/// happens while a user's range moves between nodes): the store's fence refuses each stale
/// version, the write is retried above the other node's bound, and the recipient still gets
/// every message once, in version order.
#[tokio::test]
async fn two_logic_nodes_writing_one_inbox_keep_it_in_order() {
    let one = node(Retention::Forever).await;
    let nodes = [one.logic.clone(), one.second_node()];
    let alice = one.user("alice").await;
    let bob = one.user("bob").await;
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
fn retention_settings_print_as_they_parse() {
    for text in ["delivered", "forever", "7d", "12h", "90m", "45s"] {
        assert_eq!(text.parse::<Retention>().unwrap().to_string(), text);
    }
    assert_eq!("120m".parse::<Retention>().unwrap().to_string(), "2h");
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
    let node = Node::new().await;
    let one = node.logic.clone();
    let two = node.second_node();
    let (carol, token) = node.user_with_token("carol").await;
    let authenticate = |logic: Arc<crate::Logic>| {
        let request = AuthenticateRequest { token: token.clone() };
        async move { logic.authenticate(&Ctx::new(0), request).await }
    };
    authenticate(two.clone()).await.expect("node two caches the session");

    one.logout(&carol, LogoutRequest {}).await.unwrap();
    assert!(authenticate(one.clone()).await.is_err(), "the node that logged out knows at once");
    assert!(authenticate(two.clone()).await.is_ok(), "the other trusts its cache a while");
    node.advance(crate::auth::SESSION_CACHE_TTL_MS);
    let refused = authenticate(two).await.unwrap_err();
    assert_eq!(refused.code, missive_rpc::Code::Unauthenticated);
}

#[tokio::test]
async fn a_message_can_be_recalled_within_two_minutes_only() {
    let node = node(Retention::Forever).await;
    let logic = &node.logic;
    let alice = node.user("alice").await;
    let bob = node.user("bob").await;
    let early = logic.send(&alice, text_to("bob", "early", "oops")).await.unwrap();
    let late = logic.send(&alice, text_to("bob", "late", "fine")).await.unwrap();

    node.advance(119_000);
    logic.recall(&alice, RecallRequest { message_id: early.message_id }).await.unwrap();
    let refused = logic.recall(&bob, RecallRequest { message_id: late.message_id }).await;
    assert_eq!(refused.unwrap_err().code, missive_rpc::Code::PermissionDenied);
    node.advance(2_000);
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
