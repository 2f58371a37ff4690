//! Typing and presence end to end (protocol version 3): events pushed live to friends' and
//! members' long links, privacy respected, and nothing for clients of older versions.

use crate::harness::{PASSWORD, Server, device, user};
use missive_client::proto::{
    PresenceState, PresenceVisibility, TypingEvent, UserPresence, event::Body,
};
use missive_client::{Client, Code};
use std::time::Duration;

/// The next event `wanted` picks out of what `client` is pushed, within 5 s; others are
/// skipped.
pub async fn next_event<T>(client: &Client, wanted: impl Fn(Body) -> Option<T>) -> T {
    let waiting = async {
        loop {
            let event = client.next_event().await.expect("the link stays up");
            if let Some(found) = event.body.and_then(&wanted) {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("an event within 5 s")
}

pub fn typing(body: Body) -> Option<TypingEvent> {
    match body {
        Body::Typing(typing) => Some(typing),
        _ => None,
    }
}

pub fn presence(body: Body) -> Option<UserPresence> {
    match body {
        Body::Presence(presence) => Some(presence),
        _ => None,
    }
}

pub fn state(presence: &UserPresence) -> PresenceState {
    PresenceState::try_from(presence.state).unwrap()
}

/// Makes two users friends.
pub async fn befriend(a: &Client, a_name: &str, b: &Client, b_name: &str) {
    a.friend_request(b_name, "").await.unwrap();
    b.friend_respond(a_name, true).await.unwrap();
}

fn id(client: &Client) -> u64 {
    client.session().unwrap().user_id
}

#[tokio::test]
async fn typing_reaches_the_peer_and_the_group_and_nothing_older() {
    let server = Server::start_with(&["--direct-messages", "friends"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.ws(), "bob").await;
    let carol = user(&server.tcp, "carol").await;
    befriend(&alice, "alice", &bob, "bob").await;

    alice.typing(id(&bob), true).await.unwrap();
    let seen = next_event(&bob, typing).await;
    assert_eq!(
        seen,
        TypingEvent {
            conversation_id: id(&alice),
            user_id: id(&alice),
            typing: true,
            expires_in_ms: 6_000
        }
    );
    alice.typing(id(&bob), false).await.unwrap();
    let stopped = next_event(&bob, typing).await;
    assert!(!stopped.typing && stopped.expires_in_ms == 0);

    // Strangers cannot, and a group's members see it under the group.
    let refused = carol.typing(id(&alice), true).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::NotFriends));
    alice.friend_request("carol", "").await.unwrap();
    carol.friend_respond("alice", true).await.unwrap();
    let group = alice.group_create("Team", vec![id(&bob), id(&carol)]).await.unwrap();
    bob.typing(group.group_id, true).await.unwrap();
    for member in [&alice, &carol] {
        let seen = next_event(member, typing).await;
        assert_eq!((seen.conversation_id, seen.user_id), (group.group_id, id(&bob)));
    }
    let outsider = user(&server.tcp, "dave").await;
    let refused = outsider.typing(group.group_id, true).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::NotMember));

    // A version-2 device of bob's gets its notifies, and no event.
    let old = Client::connect_with(&server.tcp, 2).await.unwrap();
    old.login("bob", PASSWORD, "old phone").await.unwrap();
    old.sync().await.unwrap();
    alice.typing(id(&bob), true).await.unwrap();
    next_event(&bob, typing).await;
    alice.send_text("bob", "hi").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), old.wait_for_notify()).await.unwrap().unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), old.next_event()).await;
    assert!(nothing.is_err(), "a version-2 link got an event: {nothing:?}");
}

#[tokio::test]
async fn typing_is_rate_limited_per_user() {
    let server = Server::start_with(&["--rate-limits", "true", "--rate-typing-per-user", "3/1m"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    for _ in 0..3 {
        alice.typing(id(&bob), true).await.unwrap();
    }
    let refused = alice.typing(id(&bob), true).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::RateLimited), "{refused}");
}

#[tokio::test]
async fn friends_see_online_and_last_seen_as_far_as_the_user_lets_them() {
    let server = Server::start_with(&["--presence-grace-s", "1"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let carol = user(&server.tcp, "carol").await;
    befriend(&alice, "alice", &bob, "bob").await;
    let bob_id = id(&bob);

    // Bob leaves: after the grace, his friend is told when he was last seen.
    let before = missive_rpc_now();
    drop(bob);
    let gone = next_event(&alice, presence).await;
    assert_eq!((gone.user_id, state(&gone)), (bob_id, PresenceState::Offline));
    assert!(gone.last_seen_ms >= before, "{gone:?}");
    let asked = alice.presence(&[bob_id]).await.unwrap();
    assert_eq!(asked, [gone]);

    // He comes back: told at once.
    let bob = device(&server.tcp, "bob", "phone").await;
    let back = next_event(&alice, presence).await;
    assert_eq!((back.user_id, state(&back), back.last_seen_ms), (bob_id, PresenceState::Online, 0));

    // A stranger sees nothing by default; everyone may, once bob says so (his friends saw it
    // already: they are told nothing).
    assert_eq!(state(&carol.presence(&[bob_id]).await.unwrap()[0]), PresenceState::Hidden);
    let set = bob.set_privacy(PresenceVisibility::Everyone).await.unwrap();
    assert_eq!(set.profile.unwrap().presence_visibility, PresenceVisibility::Everyone as i32);
    assert_eq!(state(&carol.presence(&[bob_id]).await.unwrap()[0]), PresenceState::Online);

    // Nobody: friends are told at once that they no longer see it.
    bob.set_privacy(PresenceVisibility::Nobody).await.unwrap();
    let hidden = next_event(&alice, presence).await;
    assert_eq!((hidden.user_id, state(&hidden)), (bob_id, PresenceState::Hidden));
    bob.set_privacy(PresenceVisibility::Friends).await.unwrap();
    let shown = next_event(&alice, presence).await;
    assert_eq!((shown.user_id, state(&shown)), (bob_id, PresenceState::Online));
    bob.set_privacy(PresenceVisibility::Nobody).await.unwrap();
    next_event(&alice, presence).await;
    for viewer in [&alice, &carol] {
        assert_eq!(state(&viewer.presence(&[bob_id]).await.unwrap()[0]), PresenceState::Hidden);
    }
    // One's own is always seen, and the setting reaches one's other devices by sync.
    assert_eq!(state(&bob.presence(&[bob_id]).await.unwrap()[0]), PresenceState::Online);
    let laptop = device(&server.tcp, "bob", "laptop").await;
    let profile = laptop.sync().await.unwrap().into_iter().find_map(|item| match item.body {
        Some(missive_client::proto::sync_item::Body::Profile(profile)) => Some(profile),
        _ => None,
    });
    assert_eq!(profile.unwrap().presence_visibility, PresenceVisibility::Nobody as i32);

    let many = vec![bob_id; 201];
    assert_eq!(alice.presence(&many).await.unwrap_err().code(), Some(Code::InvalidArgument));
}

fn missive_rpc_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
