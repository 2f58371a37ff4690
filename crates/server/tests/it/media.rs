//! Images and files, recall and read receipts end to end, as a second device sees them.

use crate::harness::{PASSWORD, Server, device, messages, receive, user};
use missive_client::Code;
use missive_client::proto::MessageKind;
use std::time::Duration;

#[tokio::test]
async fn recall_and_read_receipts_reach_every_device() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let alice_tablet = device(&server.tcp, "alice", "tablet").await;
    let bob = user(&server.tcp, "bob").await;
    let bob_laptop = device(&server.ws(), "bob", "laptop").await;
    for client in [&alice, &alice_tablet, &bob, &bob_laptop] {
        client.sync().await.unwrap();
    }

    let oops = alice.send_text("bob", "wrong chat, sorry").await.unwrap();
    let kept = alice.send_text("bob", "see you at 6").await.unwrap();
    assert_eq!(messages(&receive(&bob_laptop, 2).await).len(), 2);

    alice.recall(oops.message_id).await.unwrap();
    let refused = bob.recall(kept.message_id).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied), "only the sender recalls");
    // A device that had the message gets the recall item; one that syncs from scratch
    // finds the message already replaced.
    let recall = messages(&bob_laptop.next_changes(Duration::from_secs(5)).await.unwrap());
    assert_eq!(recall.len(), 1);
    assert_eq!(
        (recall[0].kind, recall[0].ref_message_id),
        (MessageKind::Recall as i32, oops.message_id)
    );
    assert_eq!(recall[0].fallback_text, "alice recalled a message");
    let fresh = device(&server.http, "bob", "new phone").await;
    let history = messages(&fresh.sync().await.unwrap());
    assert_eq!(history.len(), 3);
    assert!(history[0].recalled && history[0].text.is_empty(), "{:?}", history[0]);
    assert_eq!(history[1].text, "see you at 6");
    // The sender's other device sees it too.
    let tablet = messages(&receive(&alice_tablet, 3).await);
    assert_eq!(tablet[2].kind, MessageKind::Recall as i32);

    // Bob reads; alice's devices and bob's other device see the receipt.
    bob.mark_read(kept.message_id).await.unwrap();
    let refused = alice.mark_read(kept.message_id).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::InvalidArgument), "no receipts for one's own messages");
    for viewer in [&alice_tablet, &bob_laptop] {
        let receipt = messages(&viewer.next_changes(Duration::from_secs(5)).await.unwrap());
        assert_eq!(receipt.len(), 1, "{receipt:?}");
        assert_eq!(receipt[0].kind, MessageKind::Receipt as i32);
        assert_eq!((receipt[0].from.as_str(), receipt[0].ref_message_id), ("bob", kept.message_id));
    }
}

#[tokio::test]
async fn a_file_is_downloaded_by_members_and_refused_to_others() {
    let server = Server::start_with(&["--media-bytes-max", "3000000"]);
    let alice = user(&server.http, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let eve = user(&server.tcp, "eve").await;
    let bob_id = bob.session().unwrap().user_id;
    let group = alice.group_create("Docs", vec![bob_id]).await.unwrap();

    // Larger than a frame may be: the client sends it in parts.
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let media =
        alice.upload(group.group_id, "报告 Q3.pdf", "application/pdf", data.clone()).await.unwrap();
    assert_eq!((media.size, media.name.as_str()), (2_500_000, "报告 Q3.pdf"));
    let sent = alice.send_media(group.group_id, MessageKind::File, &media, "Q3").await.unwrap();
    let arrived = messages(&receive(&bob, 2).await);
    let file = arrived.iter().find(|m| m.id == sent.message_id).expect("the file message");
    assert_eq!(file.media.as_ref().unwrap().media_id, media.media_id);
    assert_eq!(file.fallback_text, "[File: 报告 Q3.pdf] Q3");

    // A member downloads it over the short link, by command and by GET.
    let over_http = missive_client::Client::connect(&server.http).await.unwrap();
    over_http.login("bob", PASSWORD, "browser").await.unwrap();
    let downloaded = over_http.download(&media.media_id).await.unwrap();
    assert_eq!(
        (downloaded.data, downloaded.media.unwrap().name),
        (data.clone(), media.name.clone())
    );
    let token = over_http.session().unwrap().token;
    let url = format!("{}/v1/media/{}", server.http, media.media_id);
    let response = reqwest::Client::new().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"__ Q3.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20Q3.pdf"
    );
    assert_eq!(response.bytes().await.unwrap(), data);

    // Others are refused, and so is a member once removed.
    let eve_http = missive_client::Client::connect(&server.http).await.unwrap();
    eve_http.login("eve", PASSWORD, "browser").await.unwrap();
    assert_eq!(
        eve_http.download(&media.media_id).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
    let eve_token = eve_http.session().unwrap().token;
    let response = reqwest::Client::new().get(&url).bearer_auth(&eve_token).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let response = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    alice.group_remove(group.group_id, vec![bob_id]).await.unwrap();
    assert_eq!(
        over_http.download(&media.media_id).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );

    // Eve cannot attach media uploaded for another conversation, nor upload too much.
    let refused = eve.send_media(bob_id, MessageKind::File, &media, "").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
    let too_big = alice.upload(bob_id, "big.bin", "", vec![0; 3_000_001]).await.unwrap_err();
    assert_eq!(too_big.code(), Some(Code::LimitExceeded));
    // An image over the long link fits in a frame.
    let image = eve.upload(bob_id, "cat.png", "image/png", vec![7; 1000]).await.unwrap();
    eve.send_media(bob_id, MessageKind::Image, &image, "").await.unwrap();
    let got = messages(&bob.next_changes(Duration::from_secs(5)).await.unwrap());
    let cat = got.iter().find(|m| m.kind == MessageKind::Image as i32).expect("the image");
    assert_eq!(cat.fallback_text, "[Image]");
    assert_eq!(bob.download(&image.media_id).await.unwrap().data, vec![7; 1000]);
}

/// What a user keeps stored is bounded by `--media-quota-bytes`, counted over every upload
/// and across a restart: past it an UPLOAD is LIMIT_EXCEEDED and nothing is stored.
#[tokio::test]
async fn uploads_stop_at_the_storage_quota_even_after_a_restart() {
    let mut server = Server::start_with(&["--media-quota-bytes", "5000"]);
    let bob = user(&server.http, "bob").await;
    let bob_id = bob.session().unwrap().user_id;
    let alice = user(&server.http, "alice").await;
    let alice_id = alice.session().unwrap().user_id;
    alice.upload(bob_id, "a.bin", "application/octet-stream", vec![1; 3_000]).await.unwrap();
    server.restart();
    let alice = device(&server.http, "alice", "again").await;
    let refused = alice.upload(bob_id, "b.bin", "application/octet-stream", vec![2; 3_000]).await;
    assert_eq!(refused.unwrap_err().code(), Some(Code::LimitExceeded));
    alice
        .upload(bob_id, "c.bin", "application/octet-stream", vec![3; 2_000])
        .await
        .expect("the rest");
    let bob = device(&server.http, "bob", "again").await;
    let own = bob.upload(alice_id, "d.bin", "application/octet-stream", vec![4; 5_000]).await;
    own.expect("his own quota");
}

/// Media larger than a frame go up in parts: over a long link by the client, and here step
/// by step over the short link in JSON as any client would. A part sent again or ahead is
/// ignored and the answer says where to go on from; a part too large, an upload too large,
/// too many unfinished and someone else's part are refused; the media can be read only once
/// whole. An UPLOAD whole is held to the frame limit like any other request.
#[tokio::test]
async fn large_media_go_up_in_parts_that_may_be_sent_again() {
    use missive_client::proto::{UploadBeginRequest, UploadPartRequest, UploadPartResponse};
    let server = Server::start_with(&["--media-bytes-max", "3000000"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let bob_id = bob.session().unwrap().user_id;
    let data: Vec<u8> = (0..2_900_000u32).map(|i| (i % 249) as u8).collect();
    let film = alice.upload(bob_id, "film.mp4", "video/mp4", data.clone()).await.unwrap();
    assert_eq!(film.size, 2_900_000);
    let http = reqwest::Client::new();
    let get = |token: String, id: &str| {
        http.get(format!("{}/v1/media/{id}", server.http)).bearer_auth(token).send()
    };
    let bob_token = bob.session().unwrap().token;
    let got = get(bob_token.clone(), &film.media_id).await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), data, "over TCP, in parts, byte for byte");

    let alice_token = alice.session().unwrap().token;
    let post = async |token: &str, command: &str, body: Vec<u8>| {
        let answer = http
            .post(format!("{}/v1/{command}", server.http))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let code = answer.headers().get("x-missive-code").map(|v| v.to_str().unwrap().to_owned());
        let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap())
            .unwrap_or(serde_json::Value::Null);
        (code.unwrap_or_default(), body)
    };
    let begin = |size: u64| {
        let request = UploadBeginRequest {
            conversation_id: bob_id,
            name: "scan.pdf".into(),
            mime_type: "application/pdf".into(),
            size,
        };
        serde_json::to_vec(&request).unwrap()
    };
    let (code, begun) = post(&alice_token, "upload_begin", begin(1_000_000)).await;
    assert_eq!(code, "");
    assert_eq!(begun["part_bytes_max"], 524_288);
    let id = begun["media_id"].as_str().unwrap().to_string();
    let part = |offset: usize, len: usize| {
        let request = UploadPartRequest {
            media_id: id.clone(),
            offset: offset as u64,
            data: data[offset..offset + len].to_vec(),
        };
        serde_json::to_vec(&request).unwrap()
    };
    let received = |body: serde_json::Value| {
        let answer: UploadPartResponse = serde_json::from_value(body).unwrap();
        (answer.received, answer.media.map(|m| m.media_id))
    };
    let (code, _) = post(&alice_token, "upload_part", part(0, 524_289)).await;
    assert_eq!(code, "limit_exceeded", "a part past part_bytes_max");
    let (_, answer) = post(&alice_token, "upload_part", part(0, 524_288)).await;
    assert_eq!(received(answer), (524_288, None));
    let (_, answer) = post(&alice_token, "upload_part", part(0, 524_288)).await;
    assert_eq!(received(answer), (524_288, None), "sent again: ignored");
    let (_, answer) = post(&alice_token, "upload_part", part(900_000, 10)).await;
    assert_eq!(received(answer), (524_288, None), "ahead: ignored");
    let (code, _) = post(&bob_token, "upload_part", part(524_288, 10)).await;
    assert_eq!(code, "not_found", "someone else's upload");
    assert_eq!(get(alice_token.clone(), &id).await.unwrap().status(), 404, "not whole yet");
    let (_, answer) = post(&alice_token, "upload_part", part(524_288, 1_000_000 - 524_288)).await;
    assert_eq!(received(answer), (1_000_000, Some(id.clone())));
    let whole = get(bob_token.clone(), &id).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole, data[..1_000_000]);
    let (code, _) = post(&alice_token, "upload_part", part(0, 10)).await;
    assert_eq!(code, "not_found", "finished");

    let (code, _) = post(&alice_token, "upload_begin", begin(3_000_001)).await;
    assert_eq!(code, "limit_exceeded", "past the media limit");
    for _ in 0..4 {
        assert_eq!(post(&alice_token, "upload_begin", begin(10)).await.0, "");
    }
    let (code, _) = post(&alice_token, "upload_begin", begin(10)).await;
    assert_eq!(code, "limit_exceeded", "four unfinished at most");

    // Whole, an UPLOAD is a request like any other: at most the frame limit (1 MiB).
    let upload = missive_client::proto::UploadRequest {
        conversation_id: bob_id,
        name: "big.bin".into(),
        mime_type: String::new(),
        data: vec![1; 800_000],
    };
    let (code, _) = post(&alice_token, "upload", serde_json::to_vec(&upload).unwrap()).await;
    assert_eq!(code, "frame_too_large", "800,000 bytes in base64 pass 1 MiB");
}
