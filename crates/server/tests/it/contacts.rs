//! Contacts end to end: friend requests, the friends-only default, blocking.

use crate::harness::{Server, contacts, receive, texts, user};
use missive_client::proto::{Contact, Relation};
use missive_client::{Client, Code};
use std::time::Duration;

/// The contact entries among the changes since each client's key, newest state last.
async fn contact_changes(client: &Client) -> Vec<Contact> {
    contacts(&client.next_changes(Duration::from_secs(5)).await.expect("sync"))
}

fn relation(contact: &Contact) -> Relation {
    Relation::try_from(contact.relation).unwrap()
}

#[tokio::test]
async fn a_friend_request_round_trip_opens_the_chat() {
    // The default policy, spelled out: the harness relaxes it for older tests.
    let server = Server::start_with(&["--direct-messages", "friends"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();

    // Strangers cannot talk under the default policy.
    let refused = alice.send_text("bob", "hi stranger").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::NotFriends));

    let asked = alice.friend_request("bob", "it's alice from work").await.unwrap();
    assert_eq!(relation(&asked.contact.unwrap()), Relation::RequestSent);
    // Bob's device is told, and syncs the request with its greeting.
    let seen = contact_changes(&bob).await;
    let request = seen.last().expect("a contact change");
    assert_eq!(
        (request.username.as_str(), relation(request)),
        ("alice", Relation::RequestReceived)
    );
    assert_eq!(request.greeting, "it's alice from work");
    // Still strangers while the request waits.
    assert_eq!(bob.send_text("alice", "who?").await.unwrap_err().code(), Some(Code::NotFriends));

    let accepted = bob.friend_respond("alice", true).await.unwrap();
    assert_eq!(relation(&accepted.contact.unwrap()), Relation::Friend);
    let seen = contact_changes(&alice).await;
    let friend = seen.last().expect("a contact change");
    assert_eq!((friend.username.as_str(), relation(friend)), ("bob", Relation::Friend));

    alice.send_text("bob", "hello friend").await.unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["hello friend"]);
    bob.set_remark("alice", "Alice (work)").await.unwrap();
    let listed = bob.contacts().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].remark.as_str(), relation(&listed[0])),
        ("Alice (work)", Relation::Friend)
    );

    // Removal ends it on both sides.
    alice.friend_remove("bob").await.unwrap();
    assert!(bob.contacts().await.unwrap().is_empty());
    assert_eq!(
        bob.send_text("alice", "still there?").await.unwrap_err().code(),
        Some(Code::NotFriends)
    );

    // A declined request leaves nothing behind.
    let carol = user(&server.tcp, "carol").await;
    carol.friend_request("alice", "").await.unwrap();
    alice.friend_respond("carol", false).await.unwrap();
    assert!(carol.contacts().await.unwrap().is_empty());
    assert_eq!(
        alice.friend_respond("carol", true).await.unwrap_err().code(),
        Some(Code::FailedPrecondition),
        "nothing left to accept"
    );
}

#[tokio::test]
async fn a_blocked_user_cannot_reach_the_blocker() {
    // Even where strangers may write, a block holds.
    let server = Server::start_with(&["--direct-messages", "anyone"]);
    let alice = user(&server.tcp, "alice").await;
    let mallory = user(&server.tcp, "mallory").await;
    mallory.send_text("alice", "first").await.unwrap();
    assert_eq!(texts(&receive(&alice, 1).await), ["first"]);

    alice.set_blocked("mallory", true).await.unwrap();
    let refused = mallory.send_text("alice", "second").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::Blocked), "{refused}");
    let refused = mallory.friend_request("alice", "please").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::Blocked));
    let blocked = alice.contacts().await.unwrap();
    assert_eq!((blocked[0].username.as_str(), blocked[0].blocked), ("mallory", true));

    alice.set_blocked("mallory", false).await.unwrap();
    mallory.send_text("alice", "third").await.unwrap();
    let arrived = texts(&alice.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(arrived, ["third"], "nothing sent while blocked arrives later");
}
