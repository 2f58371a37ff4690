//! The suite's tests, each a function of a [`Fixture`]; [`storage_suite!`](crate::storage_suite)
//! turns them into test cases.

use crate::{Fixture, Stores};
use missive_proto::admin::{
    AuditEntry, AuditRequest, ListUsersRequest, NodeSample, PeriodStats, StatsRequest,
};
use missive_proto::client::{
    Contact, GroupEvent, GroupRole, MediaRef, Message, MessageKind, Relation,
};
use missive_proto::internal::*;
use missive_rpc::{Code, Ctx};
use std::collections::HashMap;

const CTX: &Ctx = &Ctx {
    deadline: None,
    request_id: 0,
    caller: None,
    priority: missive_rpc::Priority::Normal,
    client_address: None,
    operator: None,
};

async fn account<S: Stores>(store: &S, name: &str) -> AccountRecord {
    let req = CreateAccountRequest {
        username: name.into(),
        nickname: name.into(),
        password_hash: "hash".into(),
        created_at_ms: 1,
    };
    AccountStore::create(store, CTX, req).await.unwrap()
}

async fn session<S: Stores>(store: &S, user_id: u64, token_byte: u8) -> SessionRecord {
    let req = CreateSessionRequest {
        user_id,
        device_name: format!("device {token_byte}"),
        token_hash: vec![token_byte; 32],
        created_at_ms: 2,
    };
    store.create_session(CTX, req).await.unwrap()
}

fn message(from: u64, to: u64, client_msg_id: &str) -> Message {
    Message {
        from_user_id: from,
        from: format!("u{from}"),
        to_user_id: to,
        to: format!("u{to}"),
        kind: 1,
        text: format!("text {client_msg_id}"),
        sent_at_ms: 5,
        client_msg_id: client_msg_id.into(),
        ..Message::default()
    }
}

fn append_request(from: u64, to: u64, id: &str, versions: (u64, u64)) -> AppendRequest {
    let mut entries = vec![InboxEntry { user_id: from, version: versions.0 }];
    if to != from {
        entries.push(InboxEntry { user_id: to, version: versions.1 });
    }
    AppendRequest { message: Some(message(from, to, id)), entries }
}

async fn append<S: Stores>(
    store: &S,
    from: u64,
    to: u64,
    id: &str,
    versions: (u64, u64),
) -> AppendResponse {
    MessageStore::append(store, CTX, append_request(from, to, id, versions)).await.unwrap()
}

/// A user's whole inbox after `after_version`, as (version, client message id).
async fn inbox<S: Stores>(store: &S, user_id: u64, after_version: u64) -> Vec<(u64, String)> {
    let query = InboxQuery { user_id, after_version, limit: 1000 };
    let page = store.read_inbox(CTX, query).await.unwrap();
    assert!(!page.more);
    page.items.into_iter().map(|i| (i.version, i.message.unwrap().client_msg_id)).collect()
}

pub async fn usernames_are_unique(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await;
    let req = CreateAccountRequest { username: "alice".into(), ..Default::default() };
    let err = AccountStore::create(&store, CTX, req).await.unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
    let found = store.get_by_name(CTX, UsernameRef { username: "alice".into() }).await;
    assert_eq!(found.unwrap(), alice);
}

pub async fn accounts_are_found_by_id_and_name(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut ids = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve", "fay"] {
        let created = account(&store, name).await;
        assert_eq!(created.username, name);
        assert_eq!(created.version, 0);
        assert!(!created.disabled);
        assert!(created.user_id > 0 && created.user_id < 1 << 62, "ids stay below 2^63");
        let by_id = store.get_by_id(CTX, UserRef { user_id: created.user_id }).await;
        assert_eq!(by_id.unwrap(), created);
        let by_name = store.get_by_name(CTX, UsernameRef { username: name.into() }).await;
        assert_eq!(by_name.unwrap(), created);
        ids.push(created.user_id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "every account has its own id");
    for user_id in [u64::MAX, 1 << 62] {
        let missing = store.get_by_id(CTX, UserRef { user_id }).await.unwrap_err();
        assert_eq!(missing.code, Code::NotFound);
    }
    let missing = store.get_by_name(CTX, UsernameRef { username: "zed".into() }).await;
    assert_eq!(missing.unwrap_err().code, Code::NotFound);
}

pub async fn sessions_are_found_by_token_hash_until_revoked(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await;
    let phone = session(&store, alice.user_id, 1).await;
    let laptop = session(&store, alice.user_id, 2).await;
    assert_ne!(phone.device_id, laptop.device_id);
    let found = store.get_session(CTX, TokenHashRef { token_hash: vec![1; 32] }).await;
    assert_eq!(found.unwrap(), phone);

    let ack = |version| AckRequest {
        acks: vec![DeviceAck {
            user_id: alice.user_id,
            device_id: laptop.device_id,
            version,
            at_ms: 3,
        }],
    };
    store.ack(CTX, ack(9)).await.unwrap();
    store.ack(CTX, ack(4)).await.unwrap();
    let acked = store.get_session(CTX, TokenHashRef { token_hash: vec![2; 32] }).await.unwrap();
    assert_eq!(acked.acked_version, 9, "an acknowledgement never moves backwards");

    let revoke =
        RevokeSessionRequest { user_id: alice.user_id, device_id: phone.device_id, at_ms: 3 };
    store.revoke_session(CTX, revoke).await.unwrap();
    let gone = store.get_session(CTX, TokenHashRef { token_hash: vec![1; 32] }).await;
    assert_eq!(gone.unwrap_err().code, Code::NotFound);
    let unknown = store.get_session(CTX, TokenHashRef { token_hash: vec![3; 32] }).await;
    assert_eq!(unknown.unwrap_err().code, Code::NotFound);
    let revoke =
        RevokeSessionRequest { user_id: alice.user_id, device_id: u64::MAX >> 2, at_ms: 3 };
    assert_eq!(store.revoke_session(CTX, revoke).await.unwrap_err().code, Code::NotFound);
}

pub async fn a_retried_append_returns_the_first_message(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let first = append(&store, 1, 2, "c1", (1, 1)).await;
    assert!(!first.duplicate);
    assert_eq!(first.sender_version, 1);
    assert_eq!(first.written.len(), 2);
    let stored = first.message.clone().unwrap();
    assert!(stored.id > 0 && stored.id < 1 << 62);
    assert_eq!(stored.text, "text c1");

    let again = append(&store, 1, 2, "c1", (2, 2)).await;
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(again.sender_version, 1);
    assert!(again.written.is_empty());
    assert_eq!(inbox(&store, 1, 0).await, vec![(1, "c1".to_string())]);
    assert_eq!(inbox(&store, 2, 0).await, vec![(1, "c1".to_string())]);

    // The same client id from another sender is another message.
    let other = append(&store, 3, 2, "c1", (1, 2)).await;
    assert!(!other.duplicate);
    assert_ne!(other.message.unwrap().id, stored.id);
}

pub async fn inbox_pages_in_version_order(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for v in 1..=5u64 {
        append(&store, 1, 2, &format!("c{v}"), (v, v * 10)).await;
    }
    let page = store.read_inbox(CTX, InboxQuery { user_id: 2, after_version: 20, limit: 2 });
    let page = page.await.unwrap();
    let versions: Vec<u64> = page.items.iter().map(|i| i.version).collect();
    assert_eq!(versions, vec![30, 40]);
    assert!(page.more);
    let last = store.read_inbox(CTX, InboxQuery { user_id: 2, after_version: 40, limit: 2 });
    let last = last.await.unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(!last.more);
    assert_eq!(inbox(&store, 1, 3).await, vec![(4, "c4".to_string()), (5, "c5".to_string())]);
    assert!(inbox(&store, 7, 0).await.is_empty());
}

/// Every pair of six users exchanges a message: whatever shards the users live on, each inbox
/// holds exactly its user's messages, in version order, and a sender's copy is the same message.
pub async fn messages_reach_users_on_every_shard(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve", "fay"] {
        users.push(account(&store, name).await.user_id);
    }
    let mut versions: HashMap<u64, u64> = HashMap::new();
    let mut expected: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for &from in &users {
        for &to in &users {
            if from == to {
                continue;
            }
            let client_id = format!("{from}-{to}");
            let from_version = *versions.entry(from).and_modify(|v| *v += 1).or_insert(1);
            let to_version = *versions.entry(to).and_modify(|v| *v += 1).or_insert(1);
            let stored = append(&store, from, to, &client_id, (from_version, to_version)).await;
            assert_eq!(stored.sender_version, from_version);
            ids.insert(client_id.clone(), stored.message.unwrap().id);
            expected.entry(from).or_default().push((from_version, client_id.clone()));
            expected.entry(to).or_default().push((to_version, client_id));
        }
    }
    let mut all_ids: Vec<u64> = ids.values().copied().collect();
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 30, "message ids are unique");
    for &user in &users {
        let query = InboxQuery { user_id: user, after_version: 0, limit: 100 };
        let page = store.read_inbox(CTX, query).await.unwrap();
        let got: Vec<(u64, String)> = page
            .items
            .iter()
            .map(|item| {
                let message = item.message.as_ref().unwrap();
                assert_eq!(message.id, ids[&message.client_msg_id], "one message, one id");
                assert!(message.from_user_id == user || message.to_user_id == user);
                (item.version, message.client_msg_id.clone())
            })
            .collect();
        assert_eq!(got, expected[&user], "inbox of user {user}");
    }
}

/// The fence that keeps each inbox in version order whichever node writes it: an entry at or
/// below the newest version committed to that inbox is refused, and a retry with fresh
/// versions completes the message exactly once.
pub async fn a_stale_inbox_version_is_refused(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    append(&store, alice, bob, "a", (5, 5)).await;

    // The sender's version is stale.
    let stale = MessageStore::append(&store, CTX, append_request(alice, bob, "b", (4, 6))).await;
    assert_eq!(stale.unwrap_err().code, Code::Aborted);
    assert_eq!(inbox(&store, bob, 0).await, vec![(5, "a".to_string())]);
    assert_eq!(inbox(&store, alice, 0).await, vec![(5, "a".to_string())]);

    // The recipient's version equals the head.
    let stale = MessageStore::append(&store, CTX, append_request(alice, bob, "c", (6, 5))).await;
    assert_eq!(stale.unwrap_err().code, Code::Aborted);
    assert_eq!(inbox(&store, bob, 0).await, vec![(5, "a".to_string())]);

    let retried = append(&store, alice, bob, "c", (7, 7)).await;
    assert!(!retried.duplicate, "the retry is what delivered it");
    assert!(retried.written.contains(&InboxEntry { user_id: bob, version: 7 }));
    assert_eq!(inbox(&store, bob, 0).await, vec![(5, "a".to_string()), (7, "c".to_string())]);
    let sender = inbox(&store, alice, 0).await;
    assert_eq!(sender.len(), 2, "the sender holds the message once: {sender:?}");
    assert_eq!(sender[1], (retried.sender_version, "c".to_string()));

    let again = append(&store, alice, bob, "c", (8, 8)).await;
    assert!(again.duplicate);
    assert_eq!(inbox(&store, bob, 5).await, vec![(7, "c".to_string())]);
}

pub async fn a_stale_nickname_version_is_refused(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let update = |nickname: &str, version| UpdateNicknameRequest {
        user_id: alice,
        nickname: nickname.into(),
        version,
    };
    let updated = store.update_nickname(CTX, update("Alice", 5)).await.unwrap();
    assert_eq!((updated.nickname.as_str(), updated.version), ("Alice", 5));
    let stale = store.update_nickname(CTX, update("Old", 4)).await.unwrap_err();
    assert_eq!(stale.code, Code::Aborted);
    let current = store.get_by_id(CTX, UserRef { user_id: alice }).await.unwrap();
    assert_eq!((current.nickname.as_str(), current.version), ("Alice", 5));
    let newer = store.update_nickname(CTX, update("Al", 6)).await.unwrap();
    assert_eq!((newer.nickname.as_str(), newer.version), ("Al", 6));
    let missing =
        UpdateNicknameRequest { user_id: u64::MAX >> 2, nickname: "x".into(), version: 9 };
    assert_eq!(store.update_nickname(CTX, missing).await.unwrap_err().code, Code::NotFound);
}

pub async fn presence_settings_and_last_seen(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    let nobody = missive_proto::client::PresenceVisibility::Nobody as i32;
    let set =
        |version| SetVisibilityRequest { user_id: alice, presence_visibility: nobody, version };
    let updated = store.set_visibility(CTX, set(3)).await.unwrap();
    assert_eq!((updated.presence_visibility, updated.version), (nobody, 3));
    assert_eq!(store.set_visibility(CTX, set(3)).await.unwrap_err().code, Code::Aborted);

    let seen = |at_ms| LastSeenRequest { user_ids: vec![alice, bob], at_ms };
    store.set_last_seen(CTX, seen(500)).await.unwrap();
    store.set_last_seen(CTX, seen(400)).await.unwrap();
    for user_id in [alice, bob] {
        let account = store.get_by_id(CTX, UserRef { user_id }).await.unwrap();
        assert_eq!(account.last_seen_ms, 500, "never backwards");
    }
    let current = store.get_by_id(CTX, UserRef { user_id: alice }).await.unwrap();
    assert_eq!((current.presence_visibility, current.version), (nobody, 3), "not versioned");
    let by_name = store.get_by_name(CTX, UsernameRef { username: "alice".into() }).await.unwrap();
    assert_eq!(by_name, current);
}

/// The message of `user`'s inbox sent under `client_msg_id`.
async fn held<S: Stores>(store: &S, user_id: u64, client_msg_id: &str) -> Message {
    let page = store.read_inbox(CTX, InboxQuery { user_id, after_version: 0, limit: 1000 });
    let items = page.await.unwrap().items;
    let found =
        items.into_iter().filter_map(|i| i.message).find(|m| m.client_msg_id == client_msg_id);
    found.expect("held")
}

/// The client message ids of a user's search hits for `words`, newest first, and the
/// version the next page starts below (0: none).
async fn found<S: Stores>(store: &S, query: SearchQuery, words: &str) -> (Vec<String>, u64) {
    let terms = missive_search::query(words).unwrap();
    let page = store.search(CTX, SearchQuery { terms, ..query }).await.unwrap();
    let next = if page.more { page.items.last().unwrap().version } else { 0 };
    (page.items.into_iter().map(|i| i.message.unwrap().client_msg_id).collect(), next)
}

/// Messages stored before search existed are found once the store, opened again, has given
/// them their terms; a recalled one stays unfound.
pub async fn messages_from_before_search_are_backfilled(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    let said = [("en", "an old lighthouse"), ("zh", "古老的灯塔"), ("gone", "lighthouse secret")];
    for (n, (id, text)) in said.into_iter().enumerate() {
        let version = n as u64 + 1;
        let mut request = append_request(alice, bob, id, (version, version));
        request.message.as_mut().unwrap().text = text.into();
        MessageStore::append(&store, CTX, request).await.unwrap();
    }
    let gone = held(&store, bob, "gone").await;
    let recalled = Message { text: String::new(), recalled: true, ..gone };
    let recall = ReplaceMessageRequest { message: Some(recalled), ..Default::default() };
    store.replace(CTX, recall).await.unwrap();
    drop(store);
    fixture.forget_search_terms().await;

    let store = fixture.open().await;
    let bobs = SearchQuery { user_id: bob, limit: 10, ..Default::default() };
    assert!(found(&store, bobs.clone(), "lighthouse").await.0.is_empty(), "forgotten");
    for _ in 0..200 {
        if !found(&store, bobs.clone(), "lighthouse").await.0.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found(&store, bobs.clone(), "lighthouse").await.0, ["en"]);
    assert_eq!(found(&store, bobs.clone(), "灯塔").await.0, ["zh"]);
    assert!(found(&store, bobs, "secret").await.0.is_empty(), "recalled");
}

pub async fn search_finds_words_in_any_script_newest_first(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    let carol = account(&store, "carol").await.user_id;
    let said = [
        (alice, bob, "en", "Meet at the harbour at noon"),
        (bob, alice, "zh", "我们明天去北京开会"),
        (alice, carol, "other", "the harbour again"),
        (alice, bob, "gone", "harbour secret"),
        (bob, alice, "late", "Harbour? Yes, at noon."),
    ];
    for (n, (from, to, id, text)) in said.into_iter().enumerate() {
        let version = n as u64 + 1;
        let mut request = append_request(from, to, id, (version, version));
        let message = request.message.as_mut().unwrap();
        message.text = text.into();
        message.sent_at_ms = 1_000 * version as i64;
        MessageStore::append(&store, CTX, request).await.unwrap();
    }
    // A recalled message is found no more.
    let gone = held(&store, alice, "gone").await;
    let recalled = Message { text: String::new(), recalled: true, ..gone };
    store
        .replace(CTX, ReplaceMessageRequest { message: Some(recalled), ..Default::default() })
        .await
        .unwrap();

    let mine = SearchQuery { user_id: alice, limit: 10, ..Default::default() };
    // A store may index a little after the write (the embedded one, about a second).
    for _ in 0..100 {
        if !found(&store, mine.clone(), "harbour").await.0.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found(&store, mine.clone(), "harbour").await.0, ["late", "other", "en"]);
    // Scopes: any of them must be held (the conversations with bob, here).
    let scoped = SearchQuery { scopes: vec![missive_search::user_scope(bob)], ..mine.clone() };
    assert_eq!(found(&store, scoped, "harbour").await.0, ["late", "en"]);
    assert_eq!(found(&store, mine.clone(), "北京").await.0, ["zh"]);
    assert_eq!(found(&store, mine.clone(), "开会 明天").await.0, ["zh"]);
    assert_eq!(found(&store, mine.clone(), "harbour noon").await.0, ["late", "en"]);
    assert!(found(&store, mine.clone(), "secret").await.0.is_empty(), "recalled");
    assert!(found(&store, mine.clone(), "上海").await.0.is_empty());
    // Only one's own inbox; and the filters.
    let bobs = SearchQuery { user_id: bob, limit: 10, ..Default::default() };
    assert_eq!(found(&store, bobs, "harbour").await.0, ["late", "en"]);
    let with_bob = SearchQuery { peer_id: bob, ..mine.clone() };
    assert_eq!(found(&store, with_bob, "harbour").await.0, ["late", "en"]);
    let from_bob = SearchQuery { sender_id: bob, ..mine.clone() };
    assert_eq!(found(&store, from_bob, "harbour").await.0, ["late"]);
    let early = SearchQuery { after_ms: 1_000, before_ms: 3_500, ..mine.clone() };
    assert_eq!(found(&store, early, "harbour").await.0, ["other", "en"]);
    // Pages, newest first.
    let (first, next) = found(&store, SearchQuery { limit: 2, ..mine.clone() }, "harbour").await;
    assert_eq!(first, ["late", "other"]);
    assert!(next > 0, "a second page");
    let rest = SearchQuery { limit: 2, before_version: next, ..mine.clone() };
    assert_eq!(found(&store, rest, "harbour").await, (vec!["en".to_string()], 0));
    // An edit is found by its new words only.
    let edited = Message { text: "Lighthouse at noon".into(), ..held(&store, alice, "late").await };
    let replace = ReplaceMessageRequest { message: Some(edited), ..Default::default() };
    store.replace(CTX, replace).await.unwrap();
    assert_eq!(found(&store, mine.clone(), "lighthouse").await.0, ["late"]);
    assert_eq!(found(&store, mine, "harbour").await.0, ["other", "en"]);
}

pub async fn pushers_by_endpoint_and_device(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    let pusher = |endpoint: &str, device_id| missive_proto::client::Pusher {
        kind: 1,
        endpoint: endpoint.into(),
        device_id,
        created_at_ms: 5,
        ..Default::default()
    };
    for (user_id, p) in [
        (alice, pusher("https://a.example/1", 1)),
        (alice, pusher("https://a.example/2", 2)),
        (alice, pusher("https://a.example/1", 3)),
        (bob, pusher("https://a.example/1", 4)),
    ] {
        store.put_pusher(CTX, PusherRecord { user_id, pusher: Some(p) }).await.unwrap();
    }
    let listed = store.list_pushers(CTX, UserRef { user_id: alice }).await.unwrap().pushers;
    assert_eq!(listed, [pusher("https://a.example/1", 3), pusher("https://a.example/2", 2)]);
    let by_device = PusherRef { user_id: alice, endpoint: String::new(), device_id: 2 };
    assert_eq!(store.remove_pushers(CTX, by_device).await.unwrap().count, 1);
    let by_endpoint =
        PusherRef { user_id: alice, endpoint: "https://a.example/1".into(), device_id: 0 };
    assert_eq!(store.remove_pushers(CTX, by_endpoint.clone()).await.unwrap().count, 1);
    assert_eq!(store.remove_pushers(CTX, by_endpoint).await.unwrap().count, 0);
    assert!(store.list_pushers(CTX, UserRef { user_id: alice }).await.unwrap().pushers.is_empty());
    assert_eq!(store.list_pushers(CTX, UserRef { user_id: bob }).await.unwrap().pushers.len(), 1);
    store
        .put_pusher(CTX, PusherRecord { user_id: bob, pusher: Some(pusher("b", 5)) })
        .await
        .unwrap();
    let every_device = PusherRef { user_id: bob, endpoint: String::new(), device_id: 0 };
    assert_eq!(store.remove_pushers(CTX, every_device).await.unwrap().count, 2);
}

pub async fn collect_waits_for_every_device_and_the_cutoff(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let sender = account(&store, "sender").await.user_id;
    let bob = account(&store, "bob").await.user_id;
    let devices =
        [session(&store, bob, 1).await.device_id, session(&store, bob, 2).await.device_id];
    for v in 1..=3u64 {
        append(&store, sender, bob, &format!("c{v}"), (v, v)).await;
    }
    let ack = |device_id, version, at_ms| AckRequest {
        acks: vec![DeviceAck { user_id: bob, device_id, version, at_ms }],
    };
    store.ack(CTX, ack(devices[0], 3, 100)).await.unwrap();
    let nothing = store.collect(CTX, CollectRequest { delivered_before_ms: 1000, limit: 10 });
    assert_eq!(nothing.await.unwrap(), CollectResponse::default(), "one device has not acked");
    store.ack(CTX, ack(devices[1], 2, 200)).await.unwrap();
    let early = store.collect(CTX, CollectRequest { delivered_before_ms: 150, limit: 10 });
    assert_eq!(early.await.unwrap(), CollectResponse::default(), "retention not yet passed");
    let done = store.collect(CTX, CollectRequest { delivered_before_ms: 200, limit: 10 });
    assert_eq!(done.await.unwrap().inbox_entries_deleted, 2);
    assert_eq!(inbox(&store, bob, 0).await, vec![(3, "c3".to_string())]);
    assert_eq!(inbox(&store, sender, 0).await.len(), 3, "the sender still holds all three");
    let again = store.collect(CTX, CollectRequest { delivered_before_ms: 200, limit: 10 });
    assert_eq!(again.await.unwrap(), CollectResponse::default());
}

pub async fn seq_bounds_move_only_from_the_expected_bound(fixture: &impl Fixture) {
    let move_bound =
        |expected_max, max_version| StoreMaxRequest { user_id: 7, expected_max, max_version };
    {
        let store = fixture.open().await;
        store.store_max(CTX, move_bound(0, 200)).await.unwrap();
        let lost = store.store_max(CTX, move_bound(0, 100)).await.unwrap_err();
        assert_eq!(lost.code, Code::Aborted, "another allocator moved it first");
        let lost = store.store_max(CTX, move_bound(150, 300)).await.unwrap_err();
        assert_eq!(lost.code, Code::Aborted);
    }
    let store = fixture.open().await;
    let section = store.load_max(CTX, UserRef { user_id: 7 }).await.unwrap();
    assert_eq!(section.max_version, 200, "the bound survives reopening");
    store.store_max(CTX, move_bound(200, 300)).await.unwrap();
    assert_eq!(store.load_max(CTX, UserRef { user_id: 7 }).await.unwrap().max_version, 300);
    let unknown = store.load_max(CTX, UserRef { user_id: 8 }).await.unwrap();
    assert_eq!(unknown.max_version, 0);
}

pub async fn contact_changes_start_empty(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let alice = account(&store, "alice").await.user_id;
    let changes = ContactChangesRequest { user_id: alice, after_version: 0, limit: 10 };
    assert!(store.changes(CTX, changes).await.unwrap().entries.is_empty());
}

fn contact_record(owner_id: u64, version: u64, peer: u64, relation: Relation) -> ContactRecord {
    ContactRecord {
        owner_id,
        version,
        contact: Some(Contact {
            user_id: peer,
            username: format!("u{peer}"),
            relation: relation as i32,
            ..Contact::default()
        }),
    }
}

async fn put_contacts<S: Stores>(store: &S, records: Vec<ContactRecord>) -> Result<(), Code> {
    ContactStore::put(store, CTX, PutContactsRequest { records })
        .await
        .map(drop)
        .map_err(|s| s.code)
}

/// A lookup that found no entry, or an owner seen with no entries at all, never hides an
/// entry written afterwards.
pub async fn an_entry_written_after_a_lookup_found_none_is_found(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let ann = account(&store, "ann").await.user_id;
    let ben = account(&store, "ben").await.user_id;
    let get = |owner_id, peer_id| ContactStore::get(&store, CTX, ContactRef { owner_id, peer_id });
    // Ann syncs with no entries at all, then ben's entry and hers are looked up and missing.
    let none = ContactChangesRequest { user_id: ann, after_version: 0, limit: 10 };
    assert!(store.changes(CTX, none).await.unwrap().entries.is_empty());
    assert_eq!(get(ann, ben).await.unwrap_err().code, Code::NotFound);
    assert_eq!(get(ben, ann).await.unwrap_err().code, Code::NotFound);
    put_contacts(&store, vec![contact_record(ann, 1, ben, Relation::Friend)]).await.unwrap();
    put_contacts(&store, vec![contact_record(ben, 1, ann, Relation::Friend)]).await.unwrap();
    assert_eq!(get(ann, ben).await.unwrap().version, 1);
    assert_eq!(get(ben, ann).await.unwrap().version, 1);
}

pub async fn contact_entries_replace_and_sync_by_version(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        users.push(account(&store, name).await.user_id);
    }
    let [ann, ben, cat, dan] = users[..] else { unreachable!() };
    // A request written on both sides at once, whatever shards they are on.
    put_contacts(
        &store,
        vec![
            contact_record(ann, 3, ben, Relation::RequestSent),
            contact_record(ben, 7, ann, Relation::RequestReceived),
        ],
    )
    .await
    .unwrap();
    put_contacts(&store, vec![contact_record(ann, 4, cat, Relation::Friend)]).await.unwrap();
    put_contacts(&store, vec![contact_record(ann, 5, dan, Relation::RequestSent)]).await.unwrap();
    // Accepted: ann's entry for ben moves to a newer version; the old one is gone.
    put_contacts(&store, vec![contact_record(ann, 9, ben, Relation::Friend)]).await.unwrap();
    // Withdrawn: the entry stays, as NONE, so that devices learn of the removal.
    put_contacts(&store, vec![contact_record(ann, 10, dan, Relation::None)]).await.unwrap();

    let changes =
        |after_version, limit| ContactChangesRequest { user_id: ann, after_version, limit };
    let all = store.changes(CTX, changes(0, 10)).await.unwrap().entries;
    let seen: Vec<(u64, u64)> =
        all.iter().map(|e| (e.version, e.contact.as_ref().unwrap().user_id)).collect();
    assert_eq!(seen, [(4, cat), (9, ben), (10, dan)]);
    // Reads at the same time (a batch, where reads are batched), the same one twice among
    // them: each gets its own page.
    let versions =
        |entries: Vec<ContactEntry>| -> Vec<u64> { entries.iter().map(|e| e.version).collect() };
    let (a, b, c, d, e) = futures_util::future::join5(
        store.changes(CTX, changes(0, 2)),
        store.changes(CTX, changes(4, 10)),
        store.changes(CTX, changes(4, 10)),
        store.changes(CTX, changes(10, 10)),
        store.changes(CTX, ContactChangesRequest { user_id: ben, after_version: 0, limit: 10 }),
    )
    .await;
    assert_eq!(versions(a.unwrap().entries), [4, 9]);
    assert_eq!(versions(b.unwrap().entries), [9, 10]);
    assert_eq!(versions(c.unwrap().entries), [9, 10]);
    assert!(d.unwrap().entries.is_empty());
    assert_eq!(versions(e.unwrap().entries), [7]);
    let later = store.changes(CTX, changes(4, 1)).await.unwrap().entries;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].version, 9);
    assert_eq!(later[0].contact.as_ref().unwrap().relation, Relation::Friend as i32);

    let got =
        ContactStore::get(&store, CTX, ContactRef { owner_id: ben, peer_id: ann }).await.unwrap();
    assert_eq!((got.version, got.contact.unwrap().relation), (7, Relation::RequestReceived as i32));
    let missing = ContactStore::get(&store, CTX, ContactRef { owner_id: cat, peer_id: ann }).await;
    assert_eq!(missing.unwrap_err().code, Code::NotFound);

    // The list leaves out NONE entries unless they are blocked.
    let mut blocked = contact_record(ann, 11, dan, Relation::None);
    blocked.contact.as_mut().unwrap().blocked = true;
    put_contacts(&store, vec![blocked]).await.unwrap();
    put_contacts(&store, vec![contact_record(ben, 12, cat, Relation::None)]).await.unwrap();
    let listed = ContactStore::list(&store, CTX, UserRef { user_id: ann }).await.unwrap().records;
    let mut peers: Vec<u64> = listed.iter().map(|r| r.contact.as_ref().unwrap().user_id).collect();
    peers.sort_unstable();
    let mut expected = vec![ben, cat, dan];
    expected.sort_unstable();
    assert_eq!(peers, expected);
    assert_eq!(
        ContactStore::list(&store, CTX, UserRef { user_id: ben }).await.unwrap().records.len(),
        1
    );

    drop(store);
    let store = fixture.open().await;
    let again = store.changes(CTX, changes(9, 10)).await.unwrap().entries;
    assert_eq!(again.iter().map(|e| e.version).collect::<Vec<_>>(), [11]);
}

pub async fn a_stale_contact_version_is_refused(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let ann = account(&store, "ann").await.user_id;
    let ben = account(&store, "ben").await.user_id;
    put_contacts(&store, vec![contact_record(ann, 5, ben, Relation::Friend)]).await.unwrap();
    for stale in [5, 4] {
        let refused = put_contacts(&store, vec![contact_record(ann, stale, ben, Relation::None)]);
        assert_eq!(refused.await, Err(Code::Aborted), "version {stale}");
    }
    let entries = store
        .changes(CTX, ContactChangesRequest { user_id: ann, after_version: 0, limit: 10 })
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].contact.as_ref().unwrap().relation, Relation::Friend as i32);
}

fn member(user_id: u64, role: GroupRole) -> GroupMemberRecord {
    GroupMemberRecord { user_id, role: role as i32, joined_at_ms: 7 }
}

pub async fn groups_keep_members_and_fence_revisions(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let ann = account(&store, "ann").await.user_id;
    let ben = account(&store, "ben").await.user_id;
    let cat = account(&store, "cat").await.user_id;
    let group =
        GroupRecord { name: "g".into(), owner_id: ann, created_at_ms: 3, ..GroupRecord::default() };
    let create = CreateGroupRequest {
        group: Some(group),
        members: vec![member(ann, GroupRole::Owner), member(ben, GroupRole::Member)],
    };
    let created = GroupStore::create(&store, CTX, create).await.unwrap();
    let record = created.group.clone().unwrap();
    assert!(missive_proto::ids::is_group(record.group_id), "group ids are apart from user ids");
    assert_eq!((record.revision, created.members.len()), (1, 2));
    let second = GroupStore::create(
        &store,
        CTX,
        CreateGroupRequest {
            group: Some(GroupRecord { owner_id: ben, ..GroupRecord::default() }),
            members: vec![],
        },
    )
    .await
    .unwrap();
    assert_ne!(second.group.unwrap().group_id, record.group_id);

    let write = |revision, name: &str, upsert, remove| WriteGroupRequest {
        group: Some(GroupRecord { revision, name: name.into(), ..record.clone() }),
        upsert,
        remove,
    };
    let renamed = GroupStore::write(
        &store,
        CTX,
        write(2, "h", vec![member(cat, GroupRole::Member), member(ben, GroupRole::Admin)], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(renamed.group.as_ref().unwrap().name, "h");
    let roles: HashMap<u64, i32> = renamed.members.iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(roles[&ben], GroupRole::Admin as i32);
    assert_eq!(roles.len(), 3);
    // A writer that read revision 1 lost the race.
    let stale = GroupStore::write(&store, CTX, write(2, "x", vec![], vec![ben])).await;
    assert_eq!(stale.unwrap_err().code, Code::Aborted);
    let removed = GroupStore::write(&store, CTX, write(3, "h", vec![], vec![ben])).await.unwrap();
    assert_eq!(removed.members.len(), 2);

    drop(store);
    let store = fixture.open().await;
    let got = GroupStore::get(&store, CTX, GroupRef { group_id: record.group_id }).await.unwrap();
    assert_eq!(got.group.unwrap().revision, 3);
    let mut members: Vec<u64> = got.members.iter().map(|m| m.user_id).collect();
    members.sort_unstable();
    let mut expected = vec![ann, cat];
    expected.sort_unstable();
    assert_eq!(members, expected);
    let unknown =
        GroupStore::get(&store, CTX, GroupRef { group_id: record.group_id + 1_000 }).await;
    assert_eq!(unknown.unwrap_err().code, Code::NotFound);
}

pub async fn messages_keep_their_extra_fields_and_can_be_replaced(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        users.push(account(&store, name).await.user_id);
    }
    let group_id = missive_proto::ids::GROUP_ID_BASE + 1;
    let rich = Message {
        to_user_id: group_id,
        group_id,
        from_nickname: "Ann".into(),
        kind: MessageKind::Image as i32,
        media: Some(MediaRef {
            media_id: "m1".into(),
            name: "cat.png".into(),
            mime_type: "image/png".into(),
            size: 3,
        }),
        mentions: vec![users[1]],
        event: Some(GroupEvent {
            action: 2,
            actor_id: users[0],
            target_ids: vec![users[2]],
            value: String::new(),
        }),
        ..message(users[0], group_id, "rich")
    };
    let entries = users.iter().map(|&user_id| InboxEntry { user_id, version: 1 }).collect();
    let stored =
        store.append(CTX, AppendRequest { message: Some(rich.clone()), entries }).await.unwrap();
    let id = stored.message.unwrap().id;
    for &user in &users {
        let page = store
            .read_inbox(CTX, InboxQuery { user_id: user, after_version: 0, limit: 10 })
            .await
            .unwrap();
        assert_eq!(page.items[0].message, Some(Message { id, ..rich.clone() }), "user {user}");
    }
    let got = MessageStore::get(&store, CTX, MessageRef { user_id: users[3], message_id: id })
        .await
        .unwrap();
    assert_eq!(got, Message { id, ..rich.clone() });
    let outsider = account(&store, "eve").await.user_id;
    let hidden =
        MessageStore::get(&store, CTX, MessageRef { user_id: outsider, message_id: id }).await;
    assert_eq!(hidden.unwrap_err().code, Code::NotFound);

    let recalled = Message {
        id,
        text: String::new(),
        media: None,
        mentions: vec![],
        recalled: true,
        ..rich.clone()
    };
    // A compare-and-set: taken while the stored extra fields are those read, refused
    // (ABORTED) once another writer changed them.
    let reacted = Message {
        reactions: vec![missive_proto::client::Reaction {
            emoji: "👍".into(), user_ids: vec![1]
        }],
        ..Message { id, ..rich.clone() }
    };
    let read = missive_proto::extra::encode(&Message { id, ..rich.clone() }).unwrap_or_default();
    let cas = |message: &Message| ReplaceMessageRequest {
        message: Some(message.clone()),
        compare: true,
        expected_extra: read.clone(),
    };
    store.replace(CTX, cas(&reacted)).await.unwrap();
    let raced = store.replace(CTX, cas(&Message { text: "lost".into(), ..reacted.clone() })).await;
    assert_eq!(raced.unwrap_err().code, Code::Aborted);
    let got = MessageStore::get(&store, CTX, MessageRef { user_id: users[1], message_id: id });
    assert_eq!(got.await.unwrap(), reacted);
    // Every holder's copy changes, on every shard, without the caller naming them.
    let blind = ReplaceMessageRequest { message: Some(recalled.clone()), ..Default::default() };
    store.replace(CTX, blind).await.unwrap();
    // Both what a running store answers (caches included) and what it reopens with.
    for &user in &users {
        let page = store
            .read_inbox(CTX, InboxQuery { user_id: user, after_version: 0, limit: 10 })
            .await
            .unwrap();
        assert_eq!(page.items[0].message.as_ref(), Some(&recalled), "user {user}, before a reopen");
    }
    let huge =
        MessageStore::get(&store, CTX, MessageRef { user_id: users[0], message_id: u64::MAX })
            .await;
    assert_eq!(huge.unwrap_err().code, Code::NotFound, "an id beyond any store names nothing");
    drop(store);
    let store = fixture.open().await;
    for &user in &users {
        let page = store
            .read_inbox(CTX, InboxQuery { user_id: user, after_version: 0, limit: 10 })
            .await
            .unwrap();
        assert_eq!(page.items[0].message.as_ref(), Some(&recalled), "user {user}");
    }
    let unknown = Message { id: id + 1_000_000, ..recalled };
    let replace = ReplaceMessageRequest { message: Some(unknown), ..Default::default() };
    assert_eq!(store.replace(CTX, replace).await.unwrap_err().code, Code::NotFound);
}

/// Read-modify-writes of one message from holders on every shard, all at once, each retried
/// when it loses its compare-and-set: every change lands, and every holder sees them all.
pub async fn racing_changes_of_one_message_all_land(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(account(&store, &format!("voter{n}")).await.user_id);
    }
    let group_id = missive_proto::ids::GROUP_ID_BASE + 1;
    let entries = users.iter().map(|&user_id| InboxEntry { user_id, version: 1 }).collect();
    let poll = Message { group_id, ..message(users[0], group_id, "lunch?") };
    let request = AppendRequest { message: Some(poll), entries };
    let id = store.append(CTX, request).await.unwrap().message.unwrap().id;
    let vote = |user_id: u64| {
        let store = &store;
        async move {
            loop {
                let held = MessageRef { user_id, message_id: id };
                let read = MessageStore::get(store, CTX, held).await.unwrap();
                let mut voted = read.clone();
                match voted.reactions.first_mut() {
                    Some(reaction) => reaction.user_ids.push(user_id),
                    None => voted.reactions.push(missive_proto::client::Reaction {
                        emoji: "🍕".into(),
                        user_ids: vec![user_id],
                    }),
                }
                let request = ReplaceMessageRequest {
                    message: Some(voted),
                    compare: true,
                    expected_extra: missive_proto::extra::encode(&read).unwrap_or_default(),
                };
                match store.replace(CTX, request).await {
                    Ok(_) => return,
                    Err(status) if status.code == Code::Aborted => tokio::task::yield_now().await,
                    Err(status) => panic!("{status}"),
                }
            }
        }
    };
    futures_util::future::join_all(users.iter().map(|&user| vote(user))).await;
    for &user in &users {
        let held = MessageRef { user_id: user, message_id: id };
        let mut voters =
            MessageStore::get(&store, CTX, held).await.unwrap().reactions[0].user_ids.clone();
        voters.sort_unstable();
        let page = store
            .read_inbox(CTX, InboxQuery { user_id: user, after_version: 0, limit: 1 })
            .await
            .unwrap();
        let copy = page.items[0].message.as_ref().unwrap();
        assert_eq!(copy.reactions[0].user_ids.len(), users.len(), "user {user}'s copy");
        let mut expected = users.clone();
        expected.sort_unstable();
        assert_eq!(voters, expected, "every vote, once");
    }
}

async fn account_at<S: Stores>(store: &S, name: &str, created_at_ms: i64) -> AccountRecord {
    let req = CreateAccountRequest {
        username: name.into(),
        nickname: format!("Nick {name}"),
        password_hash: "hash".into(),
        created_at_ms,
    };
    AccountStore::create(store, CTX, req).await.unwrap()
}

async fn search<S: Stores>(store: &S, query: &str, after: u64, limit: u32) -> Vec<String> {
    let req = ListUsersRequest { query: query.into(), after, limit };
    let list = AccountStore::list(store, CTX, req).await.unwrap();
    list.accounts.into_iter().map(|a| a.username).collect()
}

pub async fn accounts_are_listed_searched_and_disabled(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut ids = Vec::new();
    for name in ["alice", "bob", "carol", "al_ice", "dave"] {
        ids.push((account_at(&store, name, 5).await.user_id, name));
    }
    ids.sort();
    let in_id_order: Vec<&str> = ids.iter().map(|(_, name)| *name).collect();
    assert_eq!(search(&store, "", 0, 10).await, in_id_order);
    // Paging: after the second user in id order come the rest.
    assert_eq!(search(&store, "", 0, 2).await, in_id_order[..2]);
    assert_eq!(search(&store, "", ids[1].0, 10).await, in_id_order[2..]);
    let mut al = search(&store, "AL", 0, 10).await;
    al.sort();
    assert_eq!(al, ["al_ice", "alice"], "case-insensitive, anywhere in the name");
    assert_eq!(search(&store, "_", 0, 10).await, ["al_ice"], "wildcards are literal");
    assert_eq!(search(&store, "nick car", 0, 10).await, ["carol"], "nicknames match too");

    let alice = ids.iter().find(|(_, name)| *name == "alice").unwrap().0;
    let phone = session(&store, alice, 7).await;
    let laptop = session(&store, alice, 8).await;
    let devices = store.list_sessions(CTX, UserRef { user_id: alice }).await.unwrap();
    let mut listed: Vec<u64> = devices.sessions.iter().map(|s| s.device_id).collect();
    listed.sort();
    let mut expected = vec![phone.device_id, laptop.device_id];
    expected.sort();
    assert_eq!(listed, expected);

    let disabled = store
        .set_disabled(CTX, SetDisabledRequest { user_id: alice, disabled: true })
        .await
        .unwrap();
    assert!(disabled.disabled);
    assert!(store.get_by_id(CTX, UserRef { user_id: alice }).await.unwrap().disabled);
    for token_byte in [7, 8] {
        let found = store.get_session(CTX, TokenHashRef { token_hash: vec![token_byte; 32] }).await;
        assert_eq!(found.unwrap_err().code, Code::NotFound, "disabling signs every device out");
    }
    let devices = store.list_sessions(CTX, UserRef { user_id: alice }).await.unwrap();
    assert!(devices.sessions.iter().all(|s| s.revoked));
    drop(store);

    let store = fixture.open().await;
    assert!(store.get_by_id(CTX, UserRef { user_id: alice }).await.unwrap().disabled);
    let enabled = store
        .set_disabled(CTX, SetDisabledRequest { user_id: alice, disabled: false })
        .await
        .unwrap();
    assert!(!enabled.disabled);
    assert!(!store.get_by_id(CTX, UserRef { user_id: alice }).await.unwrap().disabled);
    let unknown = store.set_disabled(CTX, SetDisabledRequest { user_id: 1 << 40, disabled: true });
    assert_eq!(unknown.await.unwrap_err().code, Code::NotFound);
}

fn sample(node: &str, slot_ms: i64, online: u64, sent: u64, delivered: u64) -> NodeSample {
    NodeSample {
        node: node.into(),
        slot_ms,
        online,
        messages_sent: sent,
        messages_delivered: delivered,
    }
}

pub async fn periods_add_up_samples_activity_and_registrations(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let start = 3_600_000;
    let end = start + 60_000;
    account_at(&store, "early", 5).await;
    let alice = account_at(&store, "alice", start + 1).await.user_id;
    let bob = account_at(&store, "bob", end - 1).await.user_id;
    account_at(&store, "late", end).await;
    for s in [
        sample("a", start, 3, 5, 0),
        sample("b", start, 4, 1, 2),
        sample("a", start + 10_000, 1, 0, 0),
        sample("a", end, 9, 7, 7),
    ] {
        store.record_sample(CTX, s).await.unwrap();
    }
    // A node re-sending a slot replaces its sample.
    store.record_sample(CTX, sample("b", start, 4, 1, 2)).await.unwrap();
    let active = |user_ids: Vec<u64>| ActiveUsers { period_start_ms: start, user_ids };
    store.mark_active(CTX, active(vec![alice, bob])).await.unwrap();
    store.mark_active(CTX, active(vec![bob])).await.unwrap();

    let close = ClosePeriodRequest { start_ms: start, period_s: 60 };
    let first = store.close_period(CTX, close).await.unwrap();
    let expected = PeriodStats {
        start_ms: start,
        period_s: 60,
        registered_users: 3,
        new_registrations: 2,
        online_peak: 7,
        online_average: 4.0,
        samples: 2,
        messages_sent: 6,
        messages_delivered: 2,
        active_users: 2,
    };
    assert!(first.closed_here);
    assert_eq!(first.stats, Some(expected));
    let again = store.close_period(CTX, close).await.unwrap();
    assert!(!again.closed_here, "a period is closed once");
    assert_eq!(again.stats, Some(expected));

    let next = ClosePeriodRequest { start_ms: end, period_s: 60 };
    let next = store.close_period(CTX, next).await.unwrap().stats.unwrap();
    assert_eq!((next.online_peak, next.messages_sent, next.active_users), (9, 7, 0));
    assert_eq!((next.registered_users, next.new_registrations), (4, 1));
    let listed = store.list_periods(CTX, StatsRequest { hours: 10 }).await.unwrap();
    assert_eq!(listed.periods, [next, expected], "newest first");
    let one = store.list_periods(CTX, StatsRequest { hours: 1 }).await.unwrap();
    assert_eq!(one.periods, [next]);

    let totals = store.totals(CTX, Empty {}).await.unwrap();
    assert_eq!((totals.registered_users, totals.groups, totals.messages), (4, 0, 0));
}

pub async fn audit_entries_page_newest_first(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for (at_ms, action) in [(1, "kick"), (2, "disable"), (3, "notice")] {
        let entry = AuditEntry {
            at_ms,
            actor: "admin".into(),
            address: "127.0.0.1:1".into(),
            action: action.into(),
            target: "user 7".into(),
            detail: String::new(),
            code: 0,
            ..AuditEntry::default()
        };
        store.record(CTX, entry).await.unwrap();
    }
    let newest = store.audit(CTX, AuditRequest { before: 0, limit: 2 }).await.unwrap().entries;
    let actions: Vec<&str> = newest.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["notice", "disable"]);
    assert!(newest[0].id > newest[1].id);
    let before = newest[1].id;
    let older = store.audit(CTX, AuditRequest { before, limit: 2 }).await.unwrap().entries;
    assert_eq!(older.len(), 1);
    assert_eq!((older[0].action.as_str(), older[0].at_ms), ("kick", 1));
}

/// Sends bound for the same shards at the same time (what a group commit gathers into one
/// transaction): twenty pairs of users exchange messages at once, each user's in version
/// order, with a stale write and a repeat of an earlier send among them. Every good send
/// lands once, in order; the stale one fails alone; the repeat is a duplicate of its first.
pub async fn concurrent_appends_land_once_and_in_order(fixture: &impl Fixture) {
    let store = fixture.open().await;
    let mut users = Vec::new();
    for n in 0..40 {
        users.push(account(&store, &format!("user{n}")).await.user_id);
    }
    let pairs: Vec<(u64, u64)> = users.chunks(2).map(|pair| (pair[0], pair[1])).collect();
    let rounds = 4u64;
    let (first_from, first_to) = pairs[0];
    let (second_from, second_to) = pairs[1];
    // Round r: each pair sends one message at versions (r, r), all at once, with a stale
    // write for the first pair and a repeat of the second pair's send of round 1.
    for round in 1..=rounds {
        let sends = pairs.iter().map(|&(from, to)| {
            let id = format!("{from}-{round}");
            MessageStore::append(&store, CTX, append_request(from, to, &id, (round, round)))
        });
        let stale = append_request(first_from, first_to, "stale", (round - 1, round - 1));
        let stale = MessageStore::append(&store, CTX, stale);
        let repeat = async {
            if round == 1 {
                return None;
            }
            let versions = (100 + round, 100 + round);
            let repeat =
                append_request(second_from, second_to, &format!("{second_from}-1"), versions);
            Some(MessageStore::append(&store, CTX, repeat).await)
        };
        let (results, stale, repeat) =
            futures_util::future::join3(futures_util::future::join_all(sends), stale, repeat).await;
        for result in results {
            let stored = result.expect("a good send lands");
            assert!(!stored.duplicate);
            assert_eq!(stored.sender_version, round);
        }
        let stale = stale.expect_err("a version at or below the head is refused");
        assert_eq!(stale.code, Code::Aborted);
        if let Some(repeat) = repeat {
            let repeat = repeat.expect("a repeat is answered");
            assert!(repeat.duplicate, "round {round}: the repeat stores nothing");
            assert_eq!(repeat.sender_version, 1);
        }
    }
    for &(from, to) in &pairs {
        let sent: Vec<(u64, String)> = (1..=rounds).map(|r| (r, format!("{from}-{r}"))).collect();
        assert_eq!(inbox(&store, from, 0).await, sent, "sender {from}");
        assert_eq!(inbox(&store, to, 0).await, sent, "recipient {to}");
    }
}
