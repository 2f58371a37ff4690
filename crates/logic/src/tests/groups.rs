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
