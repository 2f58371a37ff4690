//! The message path: send, durable store, notify, sync, over every transport.

use crate::harness::*;
use missive_client::proto::{DataType, SendRequest, sync_item::Body};
use missive_client::{Client, Code};

async fn exchange_over(url_of: impl Fn(&Server) -> String) {
    let server = Server::start();
    let url = url_of(&server);
    let alice = user(&url, "alice").await;
    let bob = user(&url, "bob").await;
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();

    alice.send_text("bob", "hello bob").await.unwrap();
    let got = receive(&bob, 1).await;
    assert_eq!(texts(&got), ["hello bob"]);
    let Some(Body::Message(message)) = &got[0].body else { panic!("not a message") };
    assert_eq!((message.from.as_str(), message.to.as_str()), ("alice", "bob"));

    bob.send_text("alice", "hi alice").await.unwrap();
    let got = receive(&alice, 2).await;
    // Alice's own inbox holds what she sent too, in version order.
    assert_eq!(texts(&got), ["hello bob", "hi alice"]);
}

#[tokio::test]
async fn two_users_exchange_messages_over_tcp() {
    exchange_over(|s| s.tcp.clone()).await;
}

#[tokio::test]
async fn two_users_exchange_messages_over_websocket() {
    exchange_over(Server::ws).await;
}

#[tokio::test]
async fn two_users_exchange_messages_over_http() {
    exchange_over(|s| s.http.clone()).await;
}

#[tokio::test]
async fn transports_interoperate() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.ws(), "bob").await;
    let carol = user(&server.http, "carol").await;
    alice.send_text("bob", "tcp to ws").await.unwrap();
    bob.send_text("carol", "ws to http").await.unwrap();
    carol.send_text("alice", "http to tcp").await.unwrap();
    assert!(texts(&receive(&bob, 2).await).contains(&"tcp to ws".to_string()));
    assert!(texts(&receive(&carol, 2).await).contains(&"ws to http".to_string()));
    assert!(texts(&receive(&alice, 2).await).contains(&"http to tcp".to_string()));
}

#[tokio::test]
async fn an_offline_user_and_every_device_receive_the_messages() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    {
        // Bob registers and goes offline.
        let bob = Client::connect(&server.tcp).await.unwrap();
        bob.register("bob", PASSWORD).await.unwrap();
    }
    let alice_laptop = device(&server.ws(), "alice", "laptop").await;
    alice_laptop.sync().await.unwrap();
    for n in 0..3 {
        alice.send_text("bob", &format!("m{n}")).await.unwrap();
    }
    // Alice's other device is notified of what she sent.
    assert_eq!(texts(&receive(&alice_laptop, 3).await), ["m0", "m1", "m2"]);

    let bob_phone = device(&server.tcp, "bob", "phone").await;
    let bob_laptop = device(&server.http, "bob", "laptop").await;
    let expected = ["m0", "m1", "m2"];
    assert_eq!(texts(&bob_phone.sync().await.unwrap()), expected);
    assert_eq!(texts(&bob_laptop.sync().await.unwrap()), expected);
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let request = SendRequest {
        to: "bob".into(),
        client_msg_id: "retry-1".into(),
        text: "only once".into(),
        ..SendRequest::default()
    };
    let first = alice.send(request.clone()).await.unwrap();
    let again = alice.send(request.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!((again.message_id, again.version), (first.message_id, first.version));
    // The same retry over another transport is still the same message.
    let http = device(&server.http, "alice", "web").await;
    assert_eq!(http.send(request).await.unwrap().message_id, first.message_id);
    assert_eq!(texts(&receive(&bob, 1).await), ["only once"]);
    assert_eq!(texts(&bob.sync().await.unwrap()), Vec::<String>::new());
}

#[tokio::test]
async fn a_sync_from_an_old_key_redelivers_exactly_the_later_items_in_order() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    alice.send_text("bob", "a").await.unwrap();
    bob.sync().await.unwrap();
    let old_key = bob.sync_key();
    for text in ["b", "c", "d"] {
        alice.send_text("bob", text).await.unwrap();
    }
    assert_eq!(texts(&receive(&bob, 3).await), ["b", "c", "d"]);
    bob.set_sync_key(old_key.clone());
    let again = bob.sync().await.unwrap();
    assert_eq!(texts(&again), ["b", "c", "d"]);
    let versions: Vec<u64> = again.iter().map(|i| i.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // Small batches page through the same items with `more`.
    bob.set_sync_key(old_key);
    let mut paged = Vec::new();
    loop {
        let batch = bob.sync_once(1).await.unwrap();
        assert!(batch.items.len() <= 1);
        paged.extend(batch.items);
        if !batch.more {
            break;
        }
    }
    assert_eq!(texts(&paged), ["b", "c", "d"]);
}

#[tokio::test]
async fn profile_changes_reach_other_devices_under_the_account_key() {
    let server = Server::start();
    let phone = user(&server.tcp, "alice").await;
    let laptop = device(&server.tcp, "alice", "laptop").await;
    let first = laptop.sync().await.unwrap();
    assert!(first.iter().any(|i| i.r#type == DataType::Account as i32));
    phone.set_nickname("Alice A.").await.unwrap();
    laptop.wait_for_notify().await.unwrap();
    let items = laptop.sync().await.unwrap();
    let nicknames: Vec<_> = items
        .iter()
        .filter_map(|i| match &i.body {
            Some(Body::Profile(p)) => Some(p.nickname.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(nicknames, ["Alice A."]);
    assert_eq!(laptop.profile("").await.unwrap().nickname, "Alice A.");
}

#[tokio::test]
async fn sending_to_an_unknown_user_is_not_found() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let error = alice.send_text("nobody", "hello?").await.unwrap_err();
    assert_eq!(error.code(), Some(Code::NotFound));
    let error = alice.send_text("", "hello?").await.unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument));
}

#[tokio::test]
async fn registration_and_login_errors_are_precise() {
    let server = Server::start();
    let client = Client::connect(&server.tcp).await.unwrap();
    client.register("alice", PASSWORD).await.unwrap();
    let taken = client.register("alice", PASSWORD).await.unwrap_err();
    assert_eq!(taken.code(), Some(Code::AlreadyExists));
    let short = client.register("bob", "short").await.unwrap_err();
    assert_eq!(short.code(), Some(Code::InvalidArgument));
    let wrong = client.login("alice", "wrong password", "x").await.unwrap_err();
    assert_eq!(wrong.code(), Some(Code::InvalidCredentials));
    let unknown = client.login("nobody", PASSWORD, "x").await.unwrap_err();
    assert_eq!(unknown.code(), Some(Code::InvalidCredentials));
}

#[tokio::test]
async fn delivered_messages_are_collected_when_retention_is_until_delivered() {
    let server = Server::start_with(&["--retention", "delivered"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    alice.send_text("bob", "ephemeral").await.unwrap();
    let first_key = bob.sync_key();
    assert_eq!(texts(&receive(&bob, 1).await), ["ephemeral"]);
    // Presenting the new key acknowledges; the janitor then deletes bob's copy.
    bob.sync().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        bob.set_sync_key(first_key.clone());
        if texts(&bob.sync().await.unwrap()).is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never collected");
        bob.sync().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_admin_address_serves_health_and_metrics() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    user(&server.tcp, "bob").await;
    alice.send_text("bob", "counted").await.unwrap();
    let health = reqwest::get(format!("{}/healthz", server.admin)).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", server.admin)).await.unwrap();
    let text = String::from_utf8(metrics.bytes().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("missive_messages_sent_total{kind=\"text\"} 1"), "{text}");
    assert!(text.contains("missive_registrations_total 2"), "{text}");
    assert!(text.contains("missive_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn long_texts_are_synced_in_size_bounded_batches() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    bob.sync().await.unwrap();
    let long = "x".repeat(16 * 1024);
    for _ in 0..40 {
        alice.send_text("bob", &long).await.unwrap();
    }
    let first = bob.sync_once(500).await.unwrap();
    assert!(first.more, "640 KiB of texts do not fit one answer");
    let bytes: usize = first.items.iter().map(prost::Message::encoded_len).sum();
    assert!(bytes <= 256 * 1024 + 17 * 1024, "answer of {bytes} bytes");
    let mut all = texts(&first.items);
    all.extend(texts(&bob.sync().await.unwrap()));
    assert_eq!(all.len(), 40);
}

#[tokio::test]
async fn a_recipient_syncing_during_concurrent_sends_misses_none_and_sees_none_twice() {
    let server = Server::start();
    let bob = user(&server.tcp, "bob").await;
    bob.sync().await.unwrap();
    let senders = ["s-one", "s-two", "s-three", "s-four"];
    let mut tasks = Vec::new();
    for name in senders {
        let client = user(&server.tcp, name).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                client.send_text("bob", &format!("{name} {n}")).await.unwrap();
            }
        }));
    }
    // Bob syncs as fast as he can while the sends land; each key is the previous answer's.
    let mut received = Vec::new();
    let mut versions = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.len() < senders.len() * 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} arrived: a version was skipped",
            received.len(),
            senders.len() * 50
        );
        for item in bob.next_changes(std::time::Duration::from_millis(20)).await.unwrap() {
            if let Some(Body::Message(m)) = item.body {
                received.push(m.text);
                versions.push(item.version);
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(texts(&bob.sync().await.unwrap()).is_empty(), "nothing left behind");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "in version order: {versions:?}");
    let mut unique = received.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), received.len(), "no message twice");
    for name in senders {
        let from_sender: Vec<&String> =
            received.iter().filter(|t| t.starts_with(&format!("{name} "))).collect();
        let expected: Vec<String> = (0..50).map(|n| format!("{name} {n}")).collect();
        assert_eq!(from_sender, expected.iter().collect::<Vec<_>>(), "each sender's order kept");
    }
}

/// The SDK's smart heartbeat against the server (docs/protocol.md §5.4): starting at 1 s, it
/// proves that twice, then asks for a longer interval (the server's maximum, 5 s) and waits
/// that long between PINGs. The link outlives three start intervals many times over, which it
/// would not if the server kept closing at three of the start interval, and still gets its
/// notify.
#[tokio::test]
async fn the_sdk_heartbeat_lengthens_its_interval_and_the_server_keeps_the_link() {
    let server = Server::start_with(&[
        "--heartbeat-interval-s",
        "1",
        "--heartbeat-min-s",
        "1",
        "--heartbeat-max-s",
        "5",
    ]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    // Pings at 1 s and 2 s, then every 5 s: 14 s idle is three 5-s intervals short of a close,
    // and more than four times the 3 s a link silent for three start intervals would last.
    tokio::time::sleep(std::time::Duration::from_secs(14)).await;
    bob.send_text("alice", "still there?").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), alice.wait_for_notify())
        .await
        .expect("a notify within 5 s")
        .expect("the link is still up");
    assert_eq!(texts(&receive(&alice, 1).await), ["still there?"]);
}
