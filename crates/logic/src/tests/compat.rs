//! What a version-1 client sees and does: group chat as chat with the group's contact, other
//! kinds as text, nothing it cannot parse.

use super::harness::*;
use missive_proto::client::*;

#[tokio::test]
async fn a_version_1_client_chats_in_a_group_through_its_contact() {
    let node = Node::new().await;
    let logic = node.api();
    let ann = node.user("ann").await;
    let old = speaking(&node.user("bob").await, 1);
    let cat = node.user("cat").await;
    node.befriend(&ann, &old).await;
    // A pending friend request has no version-1 form.
    let ask = FriendRequestRequest { user_id: id(&old), ..Default::default() };
    logic.friend_request(&cat, ask).await.unwrap();

    let create = GroupCreateRequest { name: "Old friends".into(), member_ids: vec![id(&old)] };
    let group = logic.group_create(&ann, create).await.unwrap().group.unwrap();
    logic.send(&ann, text_to(&group.handle, "g1", "hello bob")).await.unwrap();

    let contacts = node.contacts(&old).await;
    let group_contact = Contact {
        user_id: group.group_id,
        username: group.handle.clone(),
        nickname: "Old friends".into(),
        ..Contact::default()
    };
    let friend = Contact {
        user_id: id(&ann),
        username: "ann".into(),
        nickname: "ann".into(),
        ..Contact::default()
    };
    assert_eq!(
        contacts,
        [friend, group_contact],
        "a friend and the group are contacts; the pending request is left out"
    );

    let seen = node.messages(&old).await;
    let texts: Vec<(&str, &str, u64)> =
        seen.iter().map(|m| (m.from.as_str(), m.text.as_str(), m.to_user_id)).collect();
    assert_eq!(
        texts,
        [
            (group.handle.as_str(), "ann created the group \"Old friends\"", id(&old)),
            (group.handle.as_str(), "ann: hello bob", id(&old)),
        ]
    );
    for message in &seen {
        let version_1 = Message { kind: MessageKind::Text as i32, ..message.clone() };
        let fields_1_to_9 = Message {
            id: message.id,
            from_user_id: message.from_user_id,
            from: message.from.clone(),
            to_user_id: message.to_user_id,
            to: message.to.clone(),
            kind: MessageKind::Text as i32,
            text: message.text.clone(),
            sent_at_ms: message.sent_at_ms,
            client_msg_id: message.client_msg_id.clone(),
            ..Message::default()
        };
        assert_eq!(version_1, fields_1_to_9, "no field a version-1 client does not know");
    }

    // What it sends to the group's contact goes to the group.
    let reply = SendRequest { to_user_id: group.group_id, ..text_to("", "r1", "hi all") };
    logic.send(&old, reply).await.unwrap();
    let received = node.messages(&ann).await.pop().unwrap();
    assert_eq!((received.group_id, received.from.as_str()), (group.group_id, "bob"));
    assert_eq!(received.text, "hi all");
}

#[tokio::test]
async fn other_kinds_reach_a_version_1_client_as_their_fallback_text() {
    let node = Node::open().await;
    let logic = node.api();
    let ann = node.user("ann").await;
    let old = speaking(&node.user("bob").await, 1);
    let sent = logic.send(&ann, text_to("bob", "m1", "oops")).await.unwrap();
    logic.recall(&ann, RecallRequest { message_id: sent.message_id }).await.unwrap();

    let texts: Vec<String> = node.messages(&old).await.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["ann recalled a message", "ann recalled a message"]);
}
