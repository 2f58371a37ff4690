//! Offline push end to end: a local HTTP receiver, started here, plays the push services. It
//! implements the receiving side of UnifiedPush (the JSON as the body) and of Web Push: it
//! checks the VAPID signature (RFC 8292) with the key the server announced and decrypts the
//! RFC 8291 payload with the subscription's private key, in code of its own (RustCrypto's,
//! where the server's sender uses ring).

use crate::harness::{Server, device, user};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use missive_client::Client;
use missive_client::proto::{Pusher, PusherKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A notification as the receiver read it: which target, and its JSON.
#[derive(Debug, Clone)]
struct Received {
    target: String,
    body: serde_json::Value,
    at: std::time::Instant,
}

/// A Web Push subscription: its key pair and authentication secret.
struct Subscription {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Subscription {
    fn new() -> Subscription {
        let secret = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        Subscription { secret, auth: rand::random() }
    }

    fn public(&self) -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        self.secret.public_key().to_encoded_point(false).as_bytes().to_vec()
    }

    /// RFC 8291 §3.4 and RFC 8188, on the receiving side.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        use aes_gcm::aead::{Aead as _, KeyInit as _};
        let (salt, rest) = body.split_at(16);
        let record_size = u32::from_be_bytes(rest[..4].try_into().unwrap());
        assert_eq!(record_size, 4096);
        let key_length = rest[4] as usize;
        let as_public = &rest[5..5 + key_length];
        let ciphertext = &rest[5 + key_length..];
        let server_key = p256::PublicKey::from_sec1_bytes(as_public).expect("the sender's key");
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), server_key.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public());
        info.extend_from_slice(as_public);
        let mut ikm = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.auth), shared.raw_secret_bytes())
            .expand(&info, &mut ikm)
            .unwrap();
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).unwrap();
        let mut plain = cipher.decrypt(&nonce.into(), ciphertext).expect("the payload decrypts");
        assert_eq!(plain.pop(), Some(2), "the last record's delimiter");
        plain
    }
}

/// Checks `Authorization: vapid t=<JWT>, k=<key>`: the key is the server's, the signature
/// verifies with it, the audience is this receiver's origin and it has not expired.
fn check_vapid(headers: &HeaderMap, server_key: &[u8], origin: &str) {
    use p256::ecdsa::signature::Verifier as _;
    let header = headers["authorization"].to_str().unwrap();
    let (token, key) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(key).unwrap(), server_key, "the announced VAPID key");
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(server_key).unwrap();
    let signature =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    verifying.verify(signed.as_bytes(), &signature).expect("the VAPID signature verifies");
    let (header, claims) = signed.split_once('.').unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(claims["exp"].as_u64().unwrap() > now.as_secs());
    assert_eq!(claims["sub"], "mailto:ops@example.org");
}

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) origin: String,
    server_key: Arc<Mutex<Vec<u8>>>,
    subscription: Arc<Subscription>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn unified_push(
    State(receiver): State<Receiver>,
    Path(target): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    if target == "gone" {
        return StatusCode::GONE;
    }
    let body = serde_json::from_slice(&body).expect("UnifiedPush without keys carries JSON");
    let at = std::time::Instant::now();
    receiver.received.lock().unwrap().push(Received { target, body, at });
    StatusCode::CREATED
}

async fn web_push(
    State(receiver): State<Receiver>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert!(headers.contains_key("ttl"));
    check_vapid(&headers, &receiver.server_key.lock().unwrap(), &receiver.origin);
    let plain = receiver.subscription.decrypt(&body);
    let body = serde_json::from_slice(&plain).unwrap();
    let at = std::time::Instant::now();
    receiver.received.lock().unwrap().push(Received { target, body, at });
    StatusCode::CREATED
}

pub(crate) async fn start_receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver {
        origin,
        server_key: Arc::default(),
        subscription: Arc::new(Subscription::new()),
        received: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/up/{target}", axum::routing::post(unified_push))
        .route("/wp/{target}", axum::routing::post(web_push))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    receiver
}

impl Receiver {
    /// What `target` received once `count` notifications came (within 10 s).
    pub(crate) async fn wait_for(&self, target: &str, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let got: Vec<_> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.target == target)
                .map(|r| r.body.clone())
                .collect();
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{target} did not receive {count}: {:?}", self.received.lock().unwrap());
    }

    pub(crate) fn count(&self, target: &str) -> usize {
        self.received.lock().unwrap().iter().filter(|r| r.target == target).count()
    }

    /// When each notification for `target` came so far, in order.
    pub(crate) fn arrivals(&self, target: &str) -> Vec<std::time::Instant> {
        self.received.lock().unwrap().iter().filter(|r| r.target == target).map(|r| r.at).collect()
    }
}

pub(crate) fn id(client: &Client) -> u64 {
    client.session().unwrap().user_id
}

/// Waits until `user_id` holds no long link on `server` (a dropped client's link closes a
/// little after the drop).
pub(crate) async fn offline(watcher: &Client, user_id: u64) {
    for _ in 0..100 {
        let seen = watcher.presence(&[user_id]).await.unwrap()[0];
        if seen.state == missive_client::proto::PresenceState::Offline as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("user {user_id} still online");
}

#[tokio::test]
async fn offline_devices_are_pushed_coalesced_content_free_and_gone_targets_forgotten() {
    let receiver = start_receiver().await;
    let server = Server::start_with(&[
        "--push-private-endpoints",
        "true",
        "--push-interval-s",
        "1",
        "--push-contact",
        "mailto:ops@example.org",
        "--presence-grace-s",
        "1",
    ]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let carol = user(&server.tcp, "carol").await;
    // Alice sees bob's presence, to know when he has gone.
    alice.friend_request("bob", "").await.unwrap();
    bob.friend_respond("alice", true).await.unwrap();

    let listed = bob.pushers().await.unwrap();
    assert_eq!(listed.vapid_public_key.len(), 65);
    *receiver.server_key.lock().unwrap() = listed.vapid_public_key.clone();
    let web = Pusher {
        kind: PusherKind::WebPush as i32,
        endpoint: format!("{}/wp/browser", receiver.origin),
        p256dh: receiver.subscription.public(),
        auth: receiver.subscription.auth.to_vec(),
        ..Default::default()
    };
    let unified = |target: &str| Pusher {
        kind: PusherKind::UnifiedPush as i32,
        endpoint: format!("{}/up/{target}", receiver.origin),
        ..Default::default()
    };
    for pusher in [web.clone(), unified("phone"), unified("gone")] {
        bob.set_pusher(pusher).await.unwrap();
    }
    assert_eq!(bob.pushers().await.unwrap().pushers.len(), 3);
    let bad = Pusher { p256dh: vec![4; 10], ..web.clone() };
    assert_eq!(
        bob.set_pusher(bad).await.unwrap_err().code(),
        Some(missive_client::Code::InvalidArgument)
    );

    // Online: nothing is pushed.
    alice.send_text("bob", "while you are here").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count("browser") + receiver.count("phone"), 0);

    // Offline: the first message at once, the next two coalesced into one after the interval.
    let bob_id = id(&bob);
    drop(bob);
    offline(&alice, bob_id).await;
    for text in ["one", "two", "three"] {
        alice.send_text("bob", text).await.unwrap();
    }
    for target in ["browser", "phone"] {
        let got = receiver.wait_for(target, 2).await;
        let total: u64 = got.iter().map(|n| n["messages"].as_u64().unwrap()).sum();
        assert_eq!(total, 3, "{target}: {got:?}");
        assert_eq!(got[0]["conversation_id"], id(&alice));
        assert_eq!(got[0]["sender"], "alice");
        assert!(got.iter().all(|n| n.get("text").is_none()), "content-free: {got:?}");
    }

    // A friend request is pushed too.
    carol.friend_request("bob", "hi").await.unwrap();
    let got = receiver.wait_for("phone", 3).await;
    assert_eq!(
        (got[2]["friend_requests"].as_u64(), got[2]["requester"].as_str()),
        (Some(1), Some("carol"))
    );

    // The target that answered 410 is gone from the list.
    let bob = device(&server.tcp, "bob", "again").await;
    let endpoints: Vec<String> =
        bob.pushers().await.unwrap().pushers.into_iter().map(|p| p.endpoint).collect();
    assert!(endpoints.iter().all(|e| !e.ends_with("/gone")), "{endpoints:?}");
    assert_eq!(endpoints.len(), 2);

    // A muted conversation pushes nothing; another still does.
    bob.set_muted(id(&alice), i64::MAX).await.unwrap();
    drop(bob);
    offline(&alice, bob_id).await;
    let before = receiver.count("phone");
    alice.send_text("bob", "muted").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count("phone"), before, "a muted conversation stays quiet");
    carol.send_text("bob", "not muted").await.unwrap();
    let got = receiver.wait_for("phone", before + 1).await;
    assert_eq!(got.last().unwrap()["sender"], "carol");
}
