//! Behaviour of the embedded data-access services against a real database file.

use crate::{EmbeddedStore, StoreConfig};
use missive_proto::client::Message;
use missive_proto::internal::*;
use missive_rpc::{Code, Ctx};

const CTX: &Ctx = &Ctx { deadline: None, request_id: 0, caller: None };

fn ctx() -> &'static Ctx {
    CTX
}

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap()
}

async fn account(store: &EmbeddedStore, name: &str) -> AccountRecord {
    let req = CreateAccountRequest {
        username: name.into(),
        nickname: name.into(),
        password_hash: "hash".into(),
        created_at_ms: 1,
    };
    AccountStore::create(store, ctx(), req).await.unwrap()
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

async fn append(
    store: &EmbeddedStore,
    from: u64,
    to: u64,
    id: &str,
    v: (u64, u64),
) -> AppendResponse {
    let req = AppendRequest {
        message: Some(message(from, to, id)),
        entries: vec![
            InboxEntry { user_id: from, version: v.0 },
            InboxEntry { user_id: to, version: v.1 },
        ],
    };
    MessageStore::append(store, ctx(), req).await.unwrap()
}

async fn inbox(store: &EmbeddedStore, user_id: u64, after_version: u64) -> Vec<(u64, String)> {
    let page =
        store.read_inbox(ctx(), InboxQuery { user_id, after_version, limit: 100 }).await.unwrap();
    page.items.into_iter().map(|i| (i.version, i.message.unwrap().client_msg_id)).collect()
}

#[tokio::test]
async fn usernames_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let alice = account(&store, "alice").await;
    let req = CreateAccountRequest { username: "alice".into(), ..Default::default() };
    let err = AccountStore::create(&store, ctx(), req).await.unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
    let found = store.get_by_name(ctx(), UsernameRef { username: "alice".into() }).await;
    assert_eq!(found.unwrap(), alice);
}

#[tokio::test]
async fn sessions_are_found_by_token_hash_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let alice = account(&store, "alice").await;
    let req = CreateSessionRequest {
        user_id: alice.user_id,
        device_name: "phone".into(),
        token_hash: vec![1; 32],
        created_at_ms: 2,
    };
    let session = store.create_session(ctx(), req).await.unwrap();
    let found = store.get_session(ctx(), TokenHashRef { token_hash: vec![1; 32] }).await;
    assert_eq!(found.unwrap(), session);
    let revoke =
        RevokeSessionRequest { user_id: alice.user_id, device_id: session.device_id, at_ms: 3 };
    store.revoke_session(ctx(), revoke).await.unwrap();
    let gone = store.get_session(ctx(), TokenHashRef { token_hash: vec![1; 32] }).await;
    assert_eq!(gone.unwrap_err().code, Code::NotFound);
}

#[tokio::test]
async fn a_retried_append_returns_the_first_message_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let first = append(&store, 1, 2, "c1", (1, 1)).await;
    assert!(!first.duplicate);
    assert_eq!(first.sender_version, 1);
    let again = append(&store, 1, 2, "c1", (2, 2)).await;
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert_eq!(again.sender_version, 1);
    assert_eq!(inbox(&store, 2, 0).await, vec![(1, "c1".to_string())]);
}

#[tokio::test]
async fn inbox_pages_in_version_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for v in 1..=5u64 {
        append(&store, 1, 2, &format!("c{v}"), (v, v * 10)).await;
    }
    let page = store.read_inbox(ctx(), InboxQuery { user_id: 2, after_version: 20, limit: 2 });
    let page = page.await.unwrap();
    let versions: Vec<u64> = page.items.iter().map(|i| i.version).collect();
    assert_eq!(versions, vec![30, 40]);
    assert!(page.more);
    assert_eq!(inbox(&store, 1, 3).await.len(), 2);
}

#[tokio::test]
async fn collect_deletes_only_what_every_device_acknowledged_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let bob = account(&store, "bob").await;
    let mut devices = vec![];
    for n in 0..2u8 {
        let req = CreateSessionRequest {
            user_id: bob.user_id,
            device_name: format!("d{n}"),
            token_hash: vec![n; 32],
            created_at_ms: 0,
        };
        devices.push(store.create_session(ctx(), req).await.unwrap().device_id);
    }
    for v in 1..=3u64 {
        append(&store, 99, bob.user_id, &format!("c{v}"), (v, v)).await;
    }
    let ack = |device_id, version, at_ms| AckRequest {
        acks: vec![DeviceAck { user_id: bob.user_id, device_id, version, at_ms }],
    };
    store.ack(ctx(), ack(devices[0], 3, 100)).await.unwrap();
    let nothing = store.collect(ctx(), CollectRequest { delivered_before_ms: 1000, limit: 10 });
    assert_eq!(nothing.await.unwrap(), CollectResponse::default(), "one device has not acked");
    store.ack(ctx(), ack(devices[1], 2, 200)).await.unwrap();
    let early = store.collect(ctx(), CollectRequest { delivered_before_ms: 150, limit: 10 });
    assert_eq!(early.await.unwrap(), CollectResponse::default(), "retention not yet passed");
    let done = store.collect(ctx(), CollectRequest { delivered_before_ms: 200, limit: 10 });
    let done = done.await.unwrap();
    assert_eq!(done.inbox_entries_deleted, 2);
    assert_eq!(done.messages_deleted, 0, "the sender still holds them");
    assert_eq!(inbox(&store, bob.user_id, 0).await, vec![(3, "c3".to_string())]);
}

#[tokio::test]
async fn seq_bounds_never_go_down_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.store_max(ctx(), SeqSection { user_id: 7, max_version: 200 }).await.unwrap();
        store.store_max(ctx(), SeqSection { user_id: 7, max_version: 100 }).await.unwrap();
    }
    let store = open(&dir);
    let section = store.load_max(ctx(), UserRef { user_id: 7 }).await.unwrap();
    assert_eq!(section.max_version, 200);
    let unknown = store.load_max(ctx(), UserRef { user_id: 8 }).await.unwrap();
    assert_eq!(unknown.max_version, 0);
}
