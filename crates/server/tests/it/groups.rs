//! Group chat end to end: write diffusion, one order for everyone, membership changes, the
//! member limit, and a version-1 client taking part as WeChat 1.0 clients did.

use crate::harness::{PASSWORD, Server, contacts, messages, receive, user, user_with};
use futures_util::StreamExt;
use missive_client::proto::{Message, MessageKind};
use missive_client::{Client, Code, ids};
use std::time::Duration;

/// Syncs until `count` messages have arrived in all.
async fn messages_received(client: &Client, count: usize) -> Vec<Message> {
    messages(&receive(client, count).await)
}

#[tokio::test]
async fn a_version_1_client_takes_part_in_a_group_chat() {
    let server = Server::start_with(&["--direct-messages", "friends"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.ws(), "bob").await;
    let carol = user(&server.http, "carol").await;
    let dave = user_with(&server.tcp, "dave", 1).await;
    for (client, nickname) in [(&alice, "Alice"), (&bob, "Bob"), (&carol, "Carol"), (&dave, "Dave")]
    {
        client.set_nickname(nickname).await.unwrap();
        client.sync().await.unwrap();
    }
    let ids_of =
        |clients: &[&Client]| clients.iter().map(|c| c.session().unwrap().user_id).collect();
    let group = alice.group_create("Weekend", ids_of(&[&bob, &carol, &dave])).await.unwrap();
    let handle = ids::group_handle(group.group_id);
    assert_eq!(group.members.len(), 4);

    // Everyone writes, each through their own transport; dave sends to the group's contact
    // the way a version-1 client sends to any contact.
    alice.send_to_group(group.group_id, "hi all", vec![]).await.unwrap();
    bob.send_to_group(group.group_id, "hey", vec![]).await.unwrap();
    carol.send_to_group(group.group_id, "hello @Dave", ids_of(&[&dave])).await.unwrap();
    dave.send(missive_client::proto::SendRequest {
        to: handle.clone(),
        client_msg_id: missive_client::new_client_msg_id(),
        kind: MessageKind::Text as i32,
        text: "hi, from my old phone".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // One system message (the creation) and four texts, in one order for everyone.
    let views = [
        messages_received(&alice, 5).await,
        messages_received(&bob, 5).await,
        messages_received(&carol, 5).await,
        messages_received(&dave, 5).await,
    ];
    let order = |view: &[Message]| view.iter().map(|m| m.id).collect::<Vec<_>>();
    for view in &views {
        assert_eq!(order(view), order(&views[0]), "every member sees one order");
    }
    let current = &views[0];
    assert_eq!(current[0].kind, MessageKind::System as i32);
    assert_eq!(current[0].text, "Alice created the group \"Weekend\"");
    let texts: Vec<(&str, &str)> =
        current[1..].iter().map(|m| (m.from.as_str(), m.text.as_str())).collect();
    assert_eq!(
        texts,
        [
            ("alice", "hi all"),
            ("bob", "hey"),
            ("carol", "hello @Dave"),
            ("dave", "hi, from my old phone")
        ]
    );
    for m in &current[1..] {
        assert_eq!(
            (m.group_id, m.to_user_id, m.to.as_str()),
            (group.group_id, group.group_id, handle.as_str())
        );
    }
    assert_eq!(current[3].mentions, ids_of(&[&dave]));

    // The version-1 view, byte for byte: from the group's contact, to dave, as text, with
    // the sender's nickname in front (a system message has no sender).
    let dave_id = dave.session().unwrap().user_id;
    let expected: Vec<Message> = current
        .iter()
        .map(|m| Message {
            id: m.id,
            from_user_id: group.group_id,
            from: handle.clone(),
            to_user_id: dave_id,
            to: "dave".into(),
            kind: MessageKind::Text as i32,
            text: if m.kind == MessageKind::System as i32 {
                m.text.clone()
            } else {
                format!("{}: {}", m.from_nickname, m.text)
            },
            sent_at_ms: m.sent_at_ms,
            client_msg_id: m.client_msg_id.clone(),
            ..Message::default()
        })
        .collect();
    assert_eq!(views[3], expected);
    assert_eq!(views[3][4].text, "Dave: hi, from my old phone");
    use prost::Message as _;
    let encoded: Vec<Vec<u8>> = views[3].iter().map(|m| m.encode_to_vec()).collect();
    let expected: Vec<Vec<u8>> = expected.iter().map(|m| m.encode_to_vec()).collect();
    assert_eq!(encoded, expected);

    // Dave's contact list shows the group as a contact he can write to.
    // (A fresh install of his old client, syncing from nothing, sees all of it.)
    let fresh = Client::connect_with(&server.tcp, 1).await.unwrap();
    fresh.login("dave", PASSWORD, "reinstalled").await.unwrap();
    let contacts = contacts(&fresh.sync().await.unwrap());
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(
        contacts[0],
        missive_client::proto::Contact {
            user_id: group.group_id,
            username: handle.clone(),
            nickname: "Weekend".into(),
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn a_removed_member_gets_nothing_more_and_outsiders_are_refused() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let carol = user(&server.tcp, "carol").await;
    let eve = user(&server.tcp, "eve").await;
    let bob_id = bob.session().unwrap().user_id;
    let carol_id = carol.session().unwrap().user_id;
    let group = alice.group_create("Team", vec![bob_id, carol_id]).await.unwrap();
    alice.send_to_group(group.group_id, "before", vec![]).await.unwrap();
    assert_eq!(messages_received(&bob, 2).await.len(), 2);

    // Only the owner and admins remove; a member may not.
    let refused = carol.group_remove(group.group_id, vec![bob_id]).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    alice.group_remove(group.group_id, vec![bob_id]).await.unwrap();
    alice.send_to_group(group.group_id, "after", vec![]).await.unwrap();
    carol.send_to_group(group.group_id, "after, too", vec![]).await.unwrap();

    // Bob learns he was removed, and nothing after it.
    let tail = messages(&bob.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(tail[0].text, "alice removed bob");
    // Both sends after the removal were answered, so stored: none of them is in Bob's inbox.
    assert!(messages(&bob.sync().await.unwrap()).is_empty());
    let carol_view: Vec<String> =
        messages_received(&carol, 5).await.into_iter().map(|m| m.text).collect();
    assert_eq!(carol_view[2..], ["alice removed bob", "after", "after, too"]);

    // Non-members can neither post nor read.
    for outsider in [&bob, &eve] {
        let send = outsider.send_to_group(group.group_id, "let me in", vec![]).await;
        assert_eq!(send.unwrap_err().code(), Some(Code::NotMember));
        let info = outsider.group_info(group.group_id).await;
        assert_eq!(info.unwrap_err().code(), Some(Code::NotMember));
    }
    let unknown = eve.group_info(group.group_id + 1_000).await.unwrap_err();
    assert_eq!(unknown.code(), Some(Code::NotFound));

    // The rest of the life of a group: rename, admins, leaving, ownership, dissolving.
    alice.group_rename(group.group_id, "Core team").await.unwrap();
    alice.group_set_admin(group.group_id, carol_id, true).await.unwrap();
    let left = carol.group_leave(group.group_id).await.unwrap();
    assert_eq!(left.members.len(), 1);
    assert_eq!(
        alice.group_leave(group.group_id).await.unwrap_err().code(),
        Some(Code::FailedPrecondition)
    );
    alice.group_dissolve(group.group_id).await.unwrap();
    let dissolved = alice.send_to_group(group.group_id, "anyone?", vec![]).await.unwrap_err();
    assert_eq!(dissolved.code(), Some(Code::NotMember));
}

#[tokio::test]
async fn one_message_reaches_all_500_inboxes_and_the_501st_member_is_refused() {
    let server = Server::start_with(&["--group-members-max", "500"]);
    // Short-link clients: 500 long links would only slow the test.
    let members: Vec<Client> = futures_util::stream::iter(0..501)
        .map(|n| {
            let url = server.http.clone();
            async move { user(&url, &format!("member{n:03}")).await }
        })
        .buffered(16)
        .collect()
        .await;
    let owner = &members[0];
    let ids: Vec<u64> = members.iter().map(|m| m.session().unwrap().user_id).collect();
    let refused = owner.group_create("Everyone", ids[1..].to_vec()).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::LimitExceeded), "501 members do not fit");

    let group = owner.group_create("Everyone", ids[1..499].to_vec()).await.unwrap();
    assert_eq!(group.members.len(), 499);
    owner.group_invite(group.group_id, vec![ids[499]]).await.unwrap();
    let refused = owner.group_invite(group.group_id, vec![ids[500]]).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::LimitExceeded));

    let sent = owner.send_to_group(group.group_id, "one for all", vec![]).await.unwrap();
    let received = futures_util::stream::iter(&members[..500])
        .map(|member| async move {
            let got = messages(&member.sync().await.unwrap());
            got.into_iter().filter(|m| m.id == sent.message_id).count()
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(received, vec![1; 500], "every member's inbox holds the message once");
    let outsider = messages(&members[500].sync().await.unwrap());
    assert!(outsider.is_empty());
}

#[tokio::test]
async fn owners_and_admins_run_the_group_and_every_member_sees_its_profile() {
    let server = Server::start();
    let [alice, bob, carol, dave] = [
        user(&server.tcp, "alice").await,
        user(&server.tcp, "bob").await,
        user(&server.tcp, "carol").await,
        user(&server.tcp, "dave").await,
    ];
    let [bob_id, carol_id, dave_id] = [&bob, &carol, &dave].map(|c| c.session().unwrap().user_id);
    let group = alice.group_create("Club", vec![bob_id, carol_id, dave_id]).await.unwrap();
    let gid = group.group_id;
    dave.sync().await.unwrap();

    // The announcement reaches every member's contact entry for the group.
    alice.group_announce(gid, "meet on friday").await.unwrap();
    let entry = contacts(&dave.next_changes(Duration::from_secs(5)).await.unwrap());
    let profile = entry.last().unwrap().group.clone().unwrap();
    assert_eq!(profile.announcement, "meet on friday");

    // A member may not rename; an admin may, and may remove members but not the owner.
    let refused = carol.group_rename(gid, "Mine").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    alice.group_set_admin(gid, bob_id, true).await.unwrap();
    alice.group_set_admin(gid, carol_id, true).await.unwrap();
    bob.group_rename(gid, "Book club").await.unwrap();
    let refused = bob.group_remove(gid, vec![alice.session().unwrap().user_id]).await;
    assert_eq!(refused.unwrap_err().code(), Some(Code::PermissionDenied));
    let refused = bob.group_remove(gid, vec![carol_id]).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied), "an admin removes members only");
    bob.group_remove(gid, vec![dave_id]).await.unwrap();

    // An admin who leaves is gone from everyone's admin list.
    carol.group_leave(gid).await.unwrap();
    let entries = contacts(&alice.sync().await.unwrap());
    let profile = entries.last().unwrap().group.clone().unwrap();
    assert_eq!(profile.admin_ids, [bob_id]);
    assert_eq!(entries.last().unwrap().nickname, "Book club");

    // Ownership moves; the former owner is an admin and may no longer dissolve.
    let moved = alice.group_transfer(gid, bob_id).await.unwrap();
    assert_eq!(moved.owner_id, bob_id);
    let refused = alice.group_dissolve(gid).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    let texts: Vec<String> =
        messages(&bob.sync().await.unwrap()).into_iter().map(|m| m.text).collect();
    assert!(texts.contains(&"alice transferred ownership to bob".to_string()), "{texts:?}");
    bob.group_dissolve(gid).await.unwrap();
    let gone = contacts(&alice.sync().await.unwrap());
    assert!(gone.last().unwrap().group.as_ref().unwrap().dissolved);
}

/// Under the defaults (`group-invites friends`, `direct-messages friends`), a stranger cannot
/// put anyone into a group, nor upload files for them; a friend can.
#[tokio::test]
async fn strangers_cannot_put_users_into_groups_by_default() {
    let server =
        Server::start_with(&["--group-invites", "friends", "--direct-messages", "friends"]);
    let alice = user(&server.tcp, "alice").await;
    let eve = user(&server.http, "eve").await;
    let alice_id = alice.session().unwrap().user_id;
    let refused = eve.group_create("Offers", vec![alice_id]).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::NotFriends));
    let upload = eve.upload(alice_id, "offer.pdf", "application/pdf", vec![1; 100]).await;
    assert_eq!(upload.unwrap_err().code(), Some(Code::NotFriends));

    eve.friend_request("alice", "hello").await.unwrap();
    alice.friend_respond("eve", true).await.unwrap();
    let group = eve.group_create("Friends", vec![alice_id]).await.unwrap();
    assert_eq!(group.members.len(), 2);
}

/// Under `group-invites accept`, a user named in GROUP_CREATE is invited, not added: the
/// invitation arrives over their long link as a GROUP_INVITATION message, and GROUP_JOIN
/// with it (here over the short link) makes them a member, which the group is told.
#[tokio::test]
async fn under_accept_an_invitee_joins_by_accepting_over_any_link() {
    let server = Server::start_with(&["--group-invites", "accept"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.ws(), "bob").await;
    let bob_id = bob.session().unwrap().user_id;
    bob.sync().await.unwrap();
    let group = alice.group_create("Climbing", vec![bob_id]).await.unwrap();
    assert_eq!(group.members.len(), 1, "only alice, until bob accepts");

    let invited = messages_received(&bob, 1).await.pop().unwrap();
    assert_eq!(invited.kind, MessageKind::GroupInvitation as i32);
    assert_eq!(invited.fallback_text, "alice invited you to the group \"Climbing\"");
    assert_eq!(bob.group_info(group.group_id).await.unwrap_err().code(), Some(Code::NotMember));
    let bob_http = crate::harness::device(&server.http, "bob", "browser").await;
    let wrong = alice.group_join(&invited.invitation).await.unwrap_err();
    assert_eq!(wrong.code(), Some(Code::PermissionDenied), "not alice's invitation");
    let joined = bob_http.group_join(&invited.invitation).await.unwrap();
    assert_eq!(joined.members.len(), 2);
    let told = messages_received(&alice, 1).await;
    assert!(told.iter().any(|m| m.text == "bob joined the group, invited by alice"), "{told:?}");
    alice.send_to_group(group.group_id, "welcome", Vec::new()).await.unwrap();
    let welcome = messages(&bob.next_changes(Duration::from_secs(5)).await.unwrap());
    assert!(welcome.iter().any(|m| m.text == "welcome"), "{welcome:?}");
}
