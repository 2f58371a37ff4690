//! Contacts: who may send whom a 1:1 message, and who is told of a change.

use super::harness::*;
use missive_proto::client::*;
use missive_rpc::Code;

#[tokio::test]
async fn one_to_one_chat_is_for_friends_and_a_block_stops_it() {
    let node = Node::new().await;
    let logic = node.api();
    let ann = node.user("ann").await;
    let bob = node.user("bob").await;
    let refused = logic.send(&ann, text_to("bob", "m1", "hi")).await.unwrap_err();
    assert_eq!(refused.code, Code::NotFriends);

    node.befriend(&ann, &bob).await;
    logic.send(&ann, text_to("bob", "m2", "hi")).await.unwrap();
    let block = SetBlockedRequest { user_id: id(&ann), blocked: true, ..Default::default() };
    logic.set_blocked(&bob, block).await.unwrap();
    let blocked = logic.send(&ann, text_to("bob", "m3", "still there?")).await.unwrap_err();
    assert_eq!(blocked.code, Code::Blocked);
    let texts: Vec<String> = node.messages(&bob).await.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["hi"]);
}

#[tokio::test]
async fn a_contact_change_is_told_to_both_users_but_not_the_device_that_made_it() {
    let node = Node::new().await;
    let ann = node.user("ann").await;
    let bob = node.user("bob").await;
    node.notified();
    let ask =
        FriendRequestRequest { user_id: id(&bob), greeting: "hello".into(), ..Default::default() };
    node.api().friend_request(&ann, ask).await.unwrap();
    let told = node.notified();
    let contact = DataType::Contact as i32;
    let to = |user| told.iter().find(|t| t.user_id == user && t.r#type == contact).unwrap();
    assert_eq!(to(id(&ann)).except_device_id, device_id(&ann));
    assert_eq!(to(id(&bob)).except_device_id, 0);

    let pending = node.contacts(&bob).await.pop().unwrap();
    assert_eq!(
        (pending.relation, pending.greeting.as_str()),
        (Relation::RequestReceived as i32, "hello")
    );
    let accept = FriendRespondRequest { user_id: id(&ann), accept: true, ..Default::default() };
    node.api().friend_respond(&bob, accept).await.unwrap();
    for user in [&ann, &bob] {
        let entry = node.contacts(user).await.pop().unwrap();
        assert_eq!(entry.relation, Relation::Friend as i32);
    }
}
