//! Accounts: what LOGIN and REGISTER tell a stranger, and the names they accept.

use super::harness::*;
use missive_proto::client::*;
use missive_rpc::{Code, Ctx};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn login_does_the_same_work_for_an_unknown_name_as_for_a_wrong_password() {
    let node = Node::new().await;
    node.user("ann").await;
    let verifications = || node.logic.auth.verifications.load(Ordering::Relaxed);
    let login = |username: &str, password: &str| LoginRequest {
        username: username.into(),
        password: password.into(),
        device_name: String::new(),
    };
    let before = verifications();
    let wrong = node.api().login(&Ctx::new(0), login("ann", "not her password")).await;
    let unknown = node.api().login(&Ctx::new(0), login("nobody", "not her password")).await;
    assert_eq!(verifications() - before, 2, "one password verification each");
    let (wrong, unknown) = (wrong.unwrap_err(), unknown.unwrap_err());
    assert_eq!((wrong.code, unknown.code), (Code::InvalidCredentials, Code::InvalidCredentials));
    assert_eq!(wrong.message, unknown.message, "the same answer word for word");
}

#[tokio::test]
async fn names_that_mislead_a_reader_are_refused_everywhere_a_name_is_shown() {
    let node = Node::open().await;
    let api = node.api();
    let ann = node.user("ann").await;
    let bob = node.user("bob").await;
    let spoof = "invoice\u{202E}gpj.exe";
    let invisible = "\u{200B}\u{2060}";
    for name in [spoof, invisible] {
        let nickname = UpdateProfileRequest { nickname: name.into() };
        assert_eq!(
            api.update_profile(&ann, nickname).await.unwrap_err().code,
            Code::InvalidArgument
        );
        let group = GroupCreateRequest { name: name.into(), member_ids: vec![id(&bob)] };
        assert_eq!(api.group_create(&ann, group).await.unwrap_err().code, Code::InvalidArgument);
        let upload = UploadRequest {
            conversation_id: id(&bob),
            name: name.into(),
            mime_type: "image/jpeg".into(),
            data: vec![1, 2, 3],
        };
        assert_eq!(api.upload(&ann, upload).await.unwrap_err().code, Code::InvalidArgument);
        let register = RegisterRequest {
            username: "cat".into(),
            password: "long enough".into(),
            nickname: name.into(),
        };
        let refused = api.register(&Ctx::new(0), register).await.unwrap_err();
        assert_eq!(refused.code, Code::InvalidArgument);
    }
    let group = GroupCreateRequest { name: "Trip".into(), member_ids: vec![id(&bob)] };
    let group_id = api.group_create(&ann, group).await.unwrap().group.unwrap().group_id;
    let clear_screen = GroupUpdateRequest {
        group_id,
        name: None,
        announcement: Some("\u{1B}[2J\u{1B}[Hhello".into()),
    };
    assert_eq!(api.group_update(&ann, clear_screen).await.unwrap_err().code, Code::InvalidArgument);
    let lines = GroupUpdateRequest {
        group_id,
        name: None,
        announcement: Some("Bring:\n\t- a tent\n\t- water".into()),
    };
    api.group_update(&ann, lines).await.expect("line breaks and tabs are text");
}

/// The operators' calls run only for a named operator, whoever reaches the logic layer, and
/// each is written to the audit log by the logic layer itself, refused or not.
#[tokio::test]
async fn operators_calls_name_their_operator_and_are_audited_here() {
    use missive_proto::admin::{Admin, AuditRequest, KickRequest};
    let node = Node::new().await;
    let ann = node.user("ann").await;
    let kick = KickRequest { user_id: id(&ann), device_id: device_id(&ann), ..Default::default() };
    let anonymous = node.logic.kick(&Ctx::new(0), kick.clone()).await.unwrap_err();
    assert_eq!(anonymous.code, Code::Unauthenticated);
    let operator = operator("192.0.2.10:5000");
    node.logic.kick(&operator, kick.clone()).await.expect("an operator's kick");
    let again = node.logic.kick(&operator, kick).await.unwrap_err();
    assert_eq!(again.code, Code::NotFound, "the device is signed out already");
    assert!(node.logic.audit(&Ctx::new(0), AuditRequest::default()).await.is_err());
    let log = node.logic.audit(&operator, AuditRequest::default()).await.unwrap().entries;
    let seen: Vec<_> =
        log.iter().map(|e| (e.action.as_str(), e.code, e.address.as_str())).collect();
    assert_eq!(
        seen,
        [("kick", Code::NotFound as u32, "192.0.2.10:5000"), ("kick", 0, "192.0.2.10:5000")],
        "newest first, the refusal included; the anonymous call reached nothing"
    );
}
