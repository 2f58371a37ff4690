//! Edits and reactions end to end (protocol version 3): the stored message changes for every
//! device that syncs it later, an EDIT or REACTION item reaches every device that had it, and
//! clients of versions 1 and 2 read them as fallback texts.

use crate::harness::{PASSWORD, Server, device, messages, receive, texts, user, user_with};
use missive_client::proto::{Message, MessageKind, Reaction};
use missive_client::{AdminClient, Client, Code, Trust};
use std::time::Duration;

/// The messages among `client`'s changes until one of `kind` has come, within 10 s.
async fn until_kind(client: &Client, kind: MessageKind) -> Vec<Message> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|m: &Message| m.kind == kind as i32) {
        assert!(tokio::time::Instant::now() < deadline, "no {kind:?} in {seen:?}");
        seen.extend(messages(&client.next_changes(Duration::from_millis(200)).await.unwrap()));
    }
    seen
}

fn reaction(emoji: &str, user_ids: &[u64]) -> Reaction {
    Reaction { emoji: emoji.into(), user_ids: user_ids.to_vec() }
}

#[tokio::test]
async fn an_edit_reaches_every_device_and_old_clients_as_text_and_the_original_is_kept() {
    let server = Server::start_with(&["--keep-edit-history", "true"]);
    let alice = user(&server.tcp, "alice").await;
    let laptop = device(&server.ws(), "alice", "laptop").await;
    let bob = user_with(&server.tcp, "bob", 1).await;
    let carol = user_with(&server.tcp, "carol", 2).await;
    laptop.sync().await.unwrap();
    let sent = alice.send_text("bob", "helo").await.unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["helo"]);

    let edited = alice.edit(sent.message_id, "hello").await.unwrap();
    assert!(edited.version > sent.version);
    let seen = until_kind(&laptop, MessageKind::Edit).await;
    let edit = seen.iter().find(|m| m.kind == MessageKind::Edit as i32).unwrap();
    assert_eq!((edit.ref_message_id, edit.text.as_str()), (sent.message_id, "hello"));
    assert!(edit.edited_at_ms > 0);
    // What version 1 reads: the new text, said as an edit.
    let old = texts(&bob.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(old, ["alice edited a message: hello"]);
    // A device that syncs later finds the message as it now is.
    let fresh = device(&server.tcp, "alice", "tablet").await;
    let stored = messages(&fresh.sync().await.unwrap());
    let message = stored.iter().find(|m| m.id == sent.message_id).unwrap();
    assert_eq!(message.text, "hello");
    assert!(message.edited_at_ms > 0 && message.edit_history.is_empty(), "{message:?}");

    // Only one's own texts; the operator sees what the edit replaced.
    let refused = bob.edit(sent.message_id, "mine now").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    let not_theirs = carol.edit(sent.message_id, "x").await.unwrap_err();
    assert_eq!(not_theirs.code(), Some(Code::NotFound), "not in carol's inbox");
    let token = std::fs::read_to_string(server.data.join("admin.token")).unwrap();
    let admin = AdminClient::new(&server.admin, token.trim(), &Trust::default()).unwrap();
    let kept = admin.message("alice", sent.message_id).await.unwrap().message.unwrap();
    assert_eq!(kept.text, "hello");
    assert_eq!(kept.edit_history.len(), 1);
    assert_eq!(kept.edit_history[0].text, "helo");
}

#[tokio::test]
async fn reactions_are_tallied_once_per_user_and_reach_old_clients_as_text() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let laptop = device(&server.tcp, "alice", "laptop").await;
    let bob = user_with(&server.tcp, "bob", 1).await;
    let carol = user(&server.ws(), "carol").await;
    let dave = user_with(&server.tcp, "dave", 2).await;
    let ids = [&bob, &carol, &dave].map(|c| c.session().unwrap().user_id).to_vec();
    let group = alice.group_create("Trip", ids).await.unwrap();
    let sent = alice.send_to_group(group.group_id, "who brings the tent?", vec![]).await.unwrap();
    laptop.sync().await.unwrap();
    receive(&bob, 2).await;
    dave.sync().await.unwrap();
    let carol_id = carol.session().unwrap().user_id;
    let alice_id = alice.session().unwrap().user_id;

    let reacted = carol.react(sent.message_id, "🎉").await.unwrap();
    assert_eq!(reacted.reactions, [reaction("🎉", &[carol_id])]);
    let seen = until_kind(&laptop, MessageKind::Reaction).await;
    let item = seen.iter().find(|m| m.kind == MessageKind::Reaction as i32).unwrap();
    assert_eq!((item.ref_message_id, item.reaction.as_str()), (sent.message_id, "🎉"));
    assert_eq!(item.reactions, reacted.reactions);
    let old = texts(&bob.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(old, ["carol: carol reacted 🎉 to \"who brings the tent?\""]);
    let v2 = messages(&dave.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(v2[0].fallback_text, "carol reacted 🎉 to \"who brings the tent?\"");
    assert!(v2[0].reactions.is_empty(), "version 2 has no such field");

    // One per user: a new one replaces it, the same again changes nothing.
    alice.react(sent.message_id, "🎉").await.unwrap();
    let changed = carol.react(sent.message_id, "⛺").await.unwrap();
    assert_eq!(changed.reactions, [reaction("🎉", &[alice_id]), reaction("⛺", &[carol_id])]);
    let same = carol.react(sent.message_id, "⛺").await.unwrap();
    assert_eq!((same.version, same.reactions), (0, changed.reactions.clone()));
    // Taken back: version 3 sees it, older clients are told nothing.
    let taken = carol.react(sent.message_id, "").await.unwrap();
    assert_eq!(taken.reactions, [reaction("🎉", &[alice_id])]);
    let seen = until_kind(&laptop, MessageKind::Reaction).await;
    assert!(seen.iter().any(|m| m.reaction.is_empty() && m.reactions == taken.reactions));
    bob.send_text(&missive_client::ids::group_handle(group.group_id), "me!").await.unwrap();
    let old = texts(&receive(&bob, 1).await);
    assert_eq!(old.last().unwrap(), "bob: me!", "{old:?}");
    assert!(!old.iter().any(|t| t.contains("took back")), "{old:?}");

    let fresh = device(&server.tcp, "carol", "tablet").await;
    let stored = messages(&fresh.sync().await.unwrap());
    let message = stored.iter().find(|m| m.id == sent.message_id).unwrap();
    assert_eq!(message.reactions, taken.reactions);
    let refused = carol.react(sent.message_id, "two words").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::InvalidArgument));
    let outsider = Client::connect(&server.tcp).await.unwrap();
    outsider.register("eve", PASSWORD).await.unwrap();
    outsider.login("eve", PASSWORD, "x").await.unwrap();
    let refused = outsider.react(sent.message_id, "👍").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::NotFound));
}

#[tokio::test]
async fn concurrent_reactions_are_all_counted() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let mut members = Vec::new();
    for n in 0..12 {
        members.push(user(&server.tcp, &format!("member{n}")).await);
    }
    let ids = members.iter().map(|c| c.session().unwrap().user_id).collect();
    let group = alice.group_create("Busy", ids).await.unwrap();
    let sent = alice.send_to_group(group.group_id, "vote", vec![]).await.unwrap();
    let votes = members.iter().enumerate().map(|(n, member)| {
        let emoji = if n % 2 == 0 { "👍" } else { "👎" };
        member.react(sent.message_id, emoji)
    });
    for result in futures_util::future::join_all(votes).await {
        result.unwrap();
    }
    let stored = messages(&device(&server.tcp, "alice", "laptop").await.sync().await.unwrap());
    let message = stored.iter().find(|m| m.id == sent.message_id).unwrap();
    let mut counts: Vec<(String, usize)> =
        message.reactions.iter().map(|r| (r.emoji.clone(), r.user_ids.len())).collect();
    counts.sort();
    assert_eq!(counts, [("👍".to_string(), 6), ("👎".to_string(), 6)]);
}
