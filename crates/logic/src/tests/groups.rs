//! Group rules: who may do what, and who is told.

use super::harness::*;
use missive_proto::client::*;
use missive_proto::internal::NotifyTarget;
use missive_rpc::{Code, Ctx};

/// The actor's own devices are told of a change (its other devices must sync), all but the
/// device that made it, which has its answer; every member's inbox got the system message.
fn only_other_devices_told(told: &[NotifyTarget], actor: &Ctx, members: &[&Ctx]) {
    let message = DataType::Message as i32;
    for member in members.iter().chain([&actor]) {
        assert!(
            told.iter().any(|t| t.user_id == id(member) && t.r#type == message),
            "user {} is told of the system message: {told:?}",
            id(member)
        );
    }
    for target in told.iter().filter(|t| t.user_id == id(actor)) {
        assert_eq!(target.except_device_id, device_id(actor), "{target:?}");
    }
    for target in told.iter().filter(|t| t.user_id != id(actor)) {
        assert_eq!(target.except_device_id, 0, "{target:?}");
    }
}

#[tokio::test]
async fn every_group_change_is_told_to_all_but_the_device_that_made_it() {
    let node = Node::new().await;
    let logic = node.api();
    let [ann, bob, cat, dan] = [
        node.user("ann").await,
        node.user("bob").await,
        node.user("cat").await,
        node.user("dan").await,
    ];
    node.device("ann", "second").await;
    for friend in [&bob, &cat, &dan] {
        node.befriend(&ann, friend).await;
    }
    node.notified();

    let create = GroupCreateRequest { name: "Trip".into(), member_ids: vec![id(&bob), id(&cat)] };
    let group_id = logic.group_create(&ann, create).await.unwrap().group.unwrap().group_id;
    only_other_devices_told(&node.notified(), &ann, &[&bob, &cat]);

    let invite = GroupInviteRequest { group_id, user_ids: vec![id(&dan)] };
    logic.group_invite(&ann, invite).await.unwrap();
    only_other_devices_told(&node.notified(), &ann, &[&bob, &cat, &dan]);

    let rename = GroupUpdateRequest { group_id, name: Some("Hike".into()), announcement: None };
    logic.group_update(&ann, rename).await.unwrap();
    only_other_devices_told(&node.notified(), &ann, &[&bob, &cat, &dan]);

    let promote = GroupSetAdminRequest { group_id, user_id: id(&bob), admin: true };
    logic.group_set_admin(&ann, promote).await.unwrap();
    only_other_devices_told(&node.notified(), &ann, &[&bob, &cat, &dan]);

    let remove = GroupRemoveRequest { group_id, user_ids: vec![id(&dan)] };
    logic.group_remove(&bob, remove).await.unwrap();
    only_other_devices_told(&node.notified(), &bob, &[&ann, &cat, &dan]);

    logic.group_leave(&cat, GroupLeaveRequest { group_id }).await.unwrap();
    only_other_devices_told(&node.notified(), &cat, &[&ann, &bob]);

    let transfer = GroupTransferRequest { group_id, user_id: id(&bob) };
    logic.group_transfer(&ann, transfer).await.unwrap();
    only_other_devices_told(&node.notified(), &ann, &[&bob]);

    logic.group_dissolve(&bob, GroupDissolveRequest { group_id }).await.unwrap();
    only_other_devices_told(&node.notified(), &bob, &[&ann]);
}

#[tokio::test]
async fn roles_decide_who_may_change_a_group() {
    let node = Node::new().await;
    let logic = node.api();
    let [ann, bob, cat] = [node.user("ann").await, node.user("bob").await, node.user("cat").await];
    node.befriend(&ann, &bob).await;
    node.befriend(&ann, &cat).await;
    let create = GroupCreateRequest { name: "Club".into(), member_ids: vec![id(&bob), id(&cat)] };
    let group_id = logic.group_create(&ann, create).await.unwrap().group.unwrap().group_id;
    let code = |result: Result<GroupResponse, missive_rpc::Status>| result.unwrap_err().code;

    let remove = |user: &Ctx| GroupRemoveRequest { group_id, user_ids: vec![id(user)] };
    assert_eq!(code(logic.group_remove(&ann, remove(&ann)).await), Code::PermissionDenied);
    assert_eq!(code(logic.group_remove(&bob, remove(&cat)).await), Code::PermissionDenied);
    let leave = GroupLeaveRequest { group_id };
    assert_eq!(code(logic.group_leave(&ann, leave).await), Code::FailedPrecondition);
    let rename = GroupUpdateRequest { group_id, name: Some("Mine".into()), announcement: None };
    assert_eq!(code(logic.group_update(&bob, rename).await), Code::PermissionDenied);
    let both = GroupUpdateRequest {
        group_id,
        name: Some("Both".into()),
        announcement: Some("and this".into()),
    };
    assert_eq!(code(logic.group_update(&ann, both).await), Code::InvalidArgument);

    let promote = GroupSetAdminRequest { group_id, user_id: id(&bob), admin: true };
    logic.group_set_admin(&ann, promote).await.unwrap();
    logic.group_remove(&bob, remove(&cat)).await.unwrap();
    let info = async |user: &Ctx| logic.group_info(user, GroupInfoRequest { group_id }).await;
    assert_eq!(code(info(&cat).await), Code::NotMember);

    let handle = missive_proto::ids::group_handle(group_id);
    let last = logic.send(&ann, text_to(&handle, "last", "bye")).await.unwrap();
    logic.group_dissolve(&ann, GroupDissolveRequest { group_id }).await.unwrap();
    for user in [&ann, &bob] {
        assert_eq!(code(info(user).await), Code::NotMember, "a dissolved group answers no one");
    }
    let invite = GroupInviteRequest { group_id, user_ids: vec![id(&cat)] };
    assert_eq!(code(logic.group_invite(&ann, invite).await), Code::NotMember);
    let late = logic.send(&ann, text_to(&handle, "late", "anyone?")).await.unwrap_err();
    assert_eq!(late.code, Code::NotMember);
    // What was sent before can still be taken back within the window.
    logic.recall(&ann, RecallRequest { message_id: last.message_id }).await.unwrap();
}

#[tokio::test]
async fn nobody_is_put_into_a_strangers_group_or_sent_a_strangers_files() {
    let node = Node::new().await;
    let api = node.api();
    let [ann, bob, eve] = [node.user("ann").await, node.user("bob").await, node.user("eve").await];
    node.befriend(&ann, &bob).await;
    let code = |result: Result<GroupResponse, missive_rpc::Status>| result.unwrap_err().code;

    let with_eve = GroupCreateRequest { name: "Ads".into(), member_ids: vec![id(&bob), id(&ann)] };
    let spam = api.group_create(&eve, with_eve).await;
    assert_eq!(code(spam), Code::NotFriends, "eve is no one's friend");
    let create = GroupCreateRequest { name: "Trip".into(), member_ids: vec![id(&bob)] };
    let group_id = api.group_create(&ann, create).await.unwrap().group.unwrap().group_id;
    let invite = GroupInviteRequest { group_id, user_ids: vec![id(&eve)] };
    assert_eq!(code(api.group_invite(&ann, invite.clone()).await), Code::NotFriends);
    // Bob, a member, may invite only his own friends too.
    assert_eq!(code(api.group_invite(&bob, invite).await), Code::NotFriends);

    let upload = |to: &Ctx| UploadRequest {
        conversation_id: id(to),
        name: "offer.pdf".into(),
        mime_type: "application/pdf".into(),
        data: vec![1; 10],
    };
    let refused = api.upload(&eve, upload(&ann)).await.unwrap_err();
    assert_eq!(refused.code, Code::NotFriends);
    api.upload(&ann, upload(&bob)).await.expect("a friend's conversation takes files");

    // Under `group-invites anyone`, anyone not blocked may add anyone.
    let open = Node::with(|config| {
        config.group_invites = crate::GroupInvites::Add(crate::Audience::Anyone)
    })
    .await;
    let [ann, eve] = [open.user("ann").await, open.user("eve").await];
    let create = GroupCreateRequest { name: "Open".into(), member_ids: vec![id(&ann)] };
    open.api().group_create(&eve, create).await.expect("a stranger may add ann");
}

/// Under `group-invites accept` nobody is put into a group: each user named gets an
/// invitation in their 1:1 chat with the inviter, and joins by accepting it, if it is theirs,
/// unexpired and its inviter still a member.
#[tokio::test]
async fn under_accept_invitees_join_only_by_accepting_their_own_invitation() {
    let node = Node::with(|config| config.group_invites = crate::GroupInvites::Accept).await;
    let api = node.api();
    let [ann, bob, cat, dan, eve] = [
        node.user("ann").await,
        node.user("bob").await,
        node.user("cat").await,
        node.user("dan").await,
        node.user("eve").await,
    ];
    let block = SetBlockedRequest { user_id: id(&ann), blocked: true, ..Default::default() };
    api.set_blocked(&eve, block).await.unwrap();
    let create =
        |members: Vec<u64>| GroupCreateRequest { name: "Trip".into(), member_ids: members };
    let refused = api.group_create(&ann, create(vec![id(&bob), id(&eve)])).await.unwrap_err();
    assert_eq!(refused.code, Code::Blocked, "a blocker is not even invited");

    // Strangers are invited, not added.
    let group = api.group_create(&ann, create(vec![id(&bob), id(&cat)])).await.unwrap();
    let group = group.group.unwrap();
    assert_eq!(group.members.len(), 1, "only the owner: {:?}", group.members);
    let invitation = |of: Message| {
        assert_eq!(of.kind, MessageKind::GroupInvitation as i32);
        assert_eq!((of.from_user_id, of.group_id), (id(&ann), 0), "in the 1:1 chat");
        assert_eq!(of.text, "ann invited you to the group \"Trip\"");
        assert_eq!(of.fallback_text, of.text);
        let event = of.event.unwrap();
        assert_eq!((event.target_ids[0], event.value.as_str()), (of.to_user_id, "Trip"));
        of.invitation
    };
    let for_bob = invitation(node.messages(&bob).await.pop().expect("bob's invitation"));
    let for_cat = invitation(node.messages(&cat).await.pop().expect("cat's invitation"));
    let sent = node.messages(&ann).await;
    assert_eq!(sent.iter().filter(|m| m.kind == MessageKind::GroupInvitation as i32).count(), 2);
    let group_id = group.group_id;
    let info = api.group_info(&bob, GroupInfoRequest { group_id }).await.unwrap_err();
    assert_eq!(info.code, Code::NotMember, "not in before accepting");

    // Only its invitee may use an invitation, and only as the server sealed it.
    let join = |invitation: &str| GroupJoinRequest { invitation: invitation.into() };
    let theirs = api.group_join(&cat, join(&for_bob)).await.unwrap_err();
    assert_eq!(theirs.code, Code::PermissionDenied);
    let mut forged = for_bob.clone().into_bytes();
    forged[10] ^= 1;
    let forged = api.group_join(&bob, join(std::str::from_utf8(&forged).unwrap())).await;
    assert_eq!(forged.unwrap_err().code, Code::InvalidArgument);
    let joined = api.group_join(&bob, join(&for_bob)).await.unwrap().group.unwrap();
    assert_eq!(joined.members.len(), 2);
    let said = node.messages(&ann).await.pop().unwrap();
    assert_eq!(said.text, "bob joined the group, invited by ann");
    let again = api.group_join(&bob, join(&for_bob)).await.unwrap().group.unwrap();
    assert_eq!(again.members.len(), 2, "accepting again changes nothing");

    // GROUP_INVITE invites too; an invitation ends with its inviter's membership.
    let invite = GroupInviteRequest { group_id, user_ids: vec![id(&dan)] };
    let unchanged = api.group_invite(&bob, invite).await.unwrap().group.unwrap();
    assert_eq!(unchanged.members.len(), 2);
    let for_dan = invitation_of(&node, &dan).await;
    api.group_leave(&bob, GroupLeaveRequest { group_id }).await.unwrap();
    let ended = api.group_join(&dan, join(&for_dan)).await.unwrap_err();
    assert_eq!(ended.code, Code::PermissionDenied, "{ended}");

    // A week on, an invitation has expired.
    node.advance(crate::group::INVITATION_TTL_MS);
    let late = api.group_join(&cat, join(&for_cat)).await.unwrap_err();
    assert_eq!(late.code, Code::TooLate);
}

/// The invitation in the newest message of `user`'s stream.
async fn invitation_of(node: &Node, user: &Ctx) -> String {
    let newest = node.messages(user).await.pop().expect("an invitation");
    assert_eq!(newest.kind, MessageKind::GroupInvitation as i32);
    newest.invitation
}
