//! Read receipts: one per message a person wrote, never one for a receipt.

use super::harness::*;
use missive_proto::admin::{Admin, NoticeRequest};
use missive_proto::client::*;
use missive_rpc::{Code, Ctx};

#[tokio::test]
async fn only_what_a_person_wrote_can_be_marked_read() {
    let node = Node::open().await;
    let logic = node.api();
    let ann = node.user("ann").await;
    let bob = node.user("bob").await;
    let sent = logic.send(&ann, text_to("bob", "m1", "hi")).await.unwrap();

    let read = MarkReadRequest { message_id: sent.message_id };
    logic.mark_read(&bob, read).await.unwrap();
    let again = logic.mark_read(&bob, read).await.unwrap();
    assert_eq!(node.messages(&bob).await.len(), 2, "a repeated mark stores nothing: {again:?}");

    // Ann's devices receive the receipt; marking it read in turn would start a loop.
    let receipt = node.messages(&ann).await.pop().unwrap();
    assert_eq!(receipt.kind, MessageKind::Receipt as i32);
    let refused = logic.mark_read(&ann, MarkReadRequest { message_id: receipt.id }).await;
    assert_eq!(refused.unwrap_err().code, Code::InvalidArgument);

    let mine = logic.mark_read(&ann, MarkReadRequest { message_id: sent.message_id }).await;
    assert_eq!(mine.unwrap_err().code, Code::InvalidArgument, "one's own message");
    let nothing = logic.mark_read(&bob, MarkReadRequest { message_id: 999_999 }).await;
    assert_eq!(nothing.unwrap_err().code, Code::NotFound);
}

#[tokio::test]
async fn an_operator_notice_cannot_be_marked_read() {
    let node = Node::open().await;
    let ann = node.user("ann").await;
    let notice = NoticeRequest {
        user_id: id(&ann),
        text: "maintenance at noon".into(),
        ..Default::default()
    };
    let sent = node.logic.notice(&operator("127.0.0.1:9"), notice).await.unwrap().message.unwrap();
    assert_eq!((sent.from_user_id, sent.kind), (0, MessageKind::System as i32));
    let refused = node.api().mark_read(&ann, MarkReadRequest { message_id: sent.id }).await;
    assert_eq!(refused.unwrap_err().code, Code::InvalidArgument);

    // Nobody can be the sender a notice names, so nobody can pass for the operator, and a
    // reply to it reaches no one.
    let impostor = RegisterRequest {
        username: "system".into(),
        password: "long enough".into(),
        ..Default::default()
    };
    let taken = node.api().register(&Ctx::new(0), impostor).await.unwrap_err();
    assert_eq!(taken.code, Code::AlreadyExists);
    let reply = node.api().send(&ann, text_to("system", "r1", "thanks")).await.unwrap_err();
    assert_eq!(reply.code, Code::NotFound);
}
