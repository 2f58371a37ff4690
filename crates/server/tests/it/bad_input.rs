//! Bad input gets a precise error or the close of that one connection, and everyone else
//! keeps working.

use crate::harness::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use missive_client::Code;
use missive_proto::Command;
use missive_proto::client::{AuthRequest, Error as ErrorBody};
use missive_proto::frame::{Frame, HEADER_BYTES, Kind, MAGIC};
use prost::Message;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Reads one frame, or `None` when the server closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; HEADER_BYTES];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header)).await;
    match read.expect("server answers or closes within 10 s") {
        Ok(_) => {}
        Err(_) => return None,
    }
    let mut body = vec![0u8; u32::from_be_bytes(header[12..16].try_into().unwrap()) as usize];
    stream.read_exact(&mut body).await.ok()?;
    let mut whole = header.to_vec();
    whole.extend_from_slice(&body);
    Some(Frame::decode_exact(&whole, u32::MAX).expect("server frames are well formed"))
}

fn code_of(frame: &Frame) -> Code {
    Code::from_u16(frame.status).expect("known code")
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Connects to `address` and tells whether the server refuses the connection at once: reset
/// (a refused connection is) before the connect is seen to complete, or closed unanswered
/// right after.
async fn refused_at_once(address: impl tokio::net::ToSocketAddrs) -> bool {
    match TcpStream::connect(address).await {
        Ok(mut stream) => closed_within(&mut stream, Duration::from_secs(3)).await,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

async fn authenticated_stream(server: &Server, name: &str) -> TcpStream {
    let client = user(&server.tcp, name).await;
    let token = client.session().unwrap().token;
    let mut stream = TcpStream::connect(server.tcp_addr()).await.unwrap();
    let auth = AuthRequest { token, protocol_version: 1 };
    let frame = Frame::request(Command::Auth as u16, 1, Bytes::from(auth.encode_to_vec()));
    stream.write_all(&frame.to_bytes()).await.unwrap();
    let answer = read_frame(&mut stream).await.unwrap();
    assert_eq!(answer.status, 0, "auth succeeds");
    stream
}

/// A healthy pair of users that must keep working while others misbehave.
async fn bystanders_still_talk(server: &Server, round: &str) {
    let a = device(&server.tcp, "calm-a", "d").await;
    let b = device(&server.ws(), "calm-b", "d").await;
    b.sync().await.unwrap();
    a.send_text("calm-b", round).await.unwrap();
    assert_eq!(texts(&receive(&b, 1).await), [round]);
}

async fn bystanders(server: &Server) {
    user(&server.tcp, "calm-a").await;
    user(&server.tcp, "calm-b").await;
}

#[tokio::test]
async fn a_malformed_frame_is_refused_and_only_that_connection_closes() {
    let server = Server::start();
    bystanders(&server).await;
    let mut stream = TcpStream::connect(server.tcp_addr()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_frame(&mut stream).await.expect("an error frame");
    assert_eq!((answer.kind, code_of(&answer)), (Kind::Response, Code::BadFrame));
    assert!(closed(&mut stream).await);
    bystanders_still_talk(&server, "after garbage").await;

    // A valid magic with an unknown frame version is refused the same way.
    let mut stream = TcpStream::connect(server.tcp_addr()).await.unwrap();
    let mut bad_version = Frame::request(Command::Ping as u16, 3, Bytes::new()).to_bytes().to_vec();
    bad_version[2] = 9;
    stream.write_all(&bad_version).await.unwrap();
    assert_eq!(code_of(&read_frame(&mut stream).await.unwrap()), Code::BadFrame);
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn an_oversized_frame_gets_frame_too_large_naming_its_request() {
    let server = Server::start_with(&["--frame-body-bytes-max", "1024"]);
    bystanders(&server).await;
    let mut stream = TcpStream::connect(server.tcp_addr()).await.unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC.to_be_bytes());
    header.extend_from_slice(&[1, 0]);
    header.extend_from_slice(&(Command::Send as u16).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&77u32.to_be_bytes());
    header.extend_from_slice(&1025u32.to_be_bytes());
    stream.write_all(&header).await.unwrap();
    let answer = read_frame(&mut stream).await.unwrap();
    assert_eq!(code_of(&answer), Code::FrameTooLarge);
    assert_eq!((answer.seq, answer.command), (77, Command::Send as u16));
    assert!(closed(&mut stream).await);
    bystanders_still_talk(&server, "after oversize").await;
}

#[tokio::test]
async fn unknown_commands_and_undecodable_bodies_get_errors_and_the_link_lives_on() {
    let server = Server::start();
    let mut stream = authenticated_stream(&server, "alice").await;
    let unknown = Frame::request(999, 5, Bytes::new());
    stream.write_all(&unknown.to_bytes()).await.unwrap();
    let answer = read_frame(&mut stream).await.unwrap();
    assert_eq!((code_of(&answer), answer.seq, answer.command), (Code::UnknownCommand, 5, 999));
    let error = ErrorBody::decode(answer.body).unwrap();
    assert_eq!(error.name, "unknown_command");

    let garbage = Frame::request(Command::Send as u16, 6, Bytes::from_static(&[0xff, 0xff, 0xff]));
    stream.write_all(&garbage.to_bytes()).await.unwrap();
    assert_eq!(code_of(&read_frame(&mut stream).await.unwrap()), Code::BadRequest);

    let ping = Frame::request(Command::Ping as u16, 7, Bytes::new());
    stream.write_all(&ping.to_bytes()).await.unwrap();
    let pong = read_frame(&mut stream).await.unwrap();
    assert_eq!((pong.status, pong.seq), (0, 7));
}

#[tokio::test]
async fn bad_and_revoked_tokens_are_unauthenticated() {
    let server = Server::start();
    let alice = user(&server.tcp, "alice").await;
    let token = alice.session().unwrap().token;

    let stranger = missive_client::Client::connect(&server.tcp).await.unwrap();
    let bad = stranger.resume("not-a-token").await.unwrap_err();
    assert_eq!(bad.code(), Some(Code::Unauthenticated));
    let before_auth = stranger.sync().await.unwrap_err();
    assert_eq!(before_auth.code(), Some(Code::Unauthenticated));

    alice.logout().await.unwrap();
    for url in [&server.tcp, &server.http] {
        let again = missive_client::Client::connect(url).await.unwrap();
        let revoked = again.resume(&token).await.unwrap_err();
        assert_eq!(revoked.code(), Some(Code::Unauthenticated), "over {url}");
        assert_eq!(again.session(), None, "a refused token is not kept, over {url}");
    }

    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/v1/sync", server.http))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["x-missive-code"], "unauthenticated");
}

/// The link's timing rules (auth deadline, idle close, a stall mid-frame) are checked in
/// process with paused time (`access/src/link/tests.rs`); here, that the flags reach them on
/// a real socket and that a stalled client holds no one else up.
#[tokio::test]
async fn a_client_that_stalls_mid_frame_is_closed_and_others_keep_working() {
    let server = Server::start_with(&["--heartbeat-interval-s", "1", "--auth-timeout-s", "1"]);
    bystanders(&server).await;
    let mut stalled = authenticated_stream(&server, "alice").await;
    let frame =
        Frame::request(Command::Ping as u16, 9, Bytes::from_static(b"0123456789")).to_bytes();
    stalled.write_all(&frame[..HEADER_BYTES + 3]).await.unwrap();
    let mut silent = TcpStream::connect(server.tcp_addr()).await.unwrap();
    let started = tokio::time::Instant::now();
    // The unauthenticated link goes at the auth timeout (1 s), the stalled one after three
    // heartbeat intervals of silence (3 s); meanwhile, others are served.
    let silent_closed = async {
        assert!(closed(&mut silent).await);
        started.elapsed()
    };
    let (silent_after, ()) =
        tokio::join!(silent_closed, bystanders_still_talk(&server, "during the stall"));
    assert!(silent_after < Duration::from_millis(2500), "{silent_after:?}");
    assert!(closed(&mut stalled).await);
    bystanders_still_talk(&server, "after the stall").await;
}

#[tokio::test]
async fn websocket_text_messages_are_refused() {
    let server = Server::start();
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws()).await.unwrap();
    socket.send(WsMessage::Text("hello".into())).await.unwrap();
    let answer = loop {
        match socket.next().await.expect("an answer").unwrap() {
            WsMessage::Binary(bytes) => break Frame::decode_exact(&bytes, u32::MAX).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(code_of(&answer), Code::BadFrame);
}

#[tokio::test]
async fn short_link_errors_carry_codes_and_statuses() {
    let server = Server::start_with(&["--frame-body-bytes-max", "1024"]);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", server.http))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let unknown = post("/v1/teleport", b"{}".to_vec()).await.unwrap();
    assert_eq!(
        (unknown.status().as_u16(), &unknown.headers()["x-missive-code"]),
        (404, &"unknown_command".parse::<reqwest::header::HeaderValue>().unwrap())
    );
    let bad_json = post("/v1/register", b"{not json".to_vec()).await.unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_eq!(bad_json.headers()["x-missive-code"], "bad_request");
    let body: serde_json::Value = serde_json::from_slice(&bad_json.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], Code::BadRequest as u16);
    let too_big = post("/v1/register", vec![b' '; 4096]).await.unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(too_big.headers()["x-missive-code"], "frame_too_large");
    let nowhere = http.get(format!("{}/elsewhere", server.http)).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);
    assert_eq!(nowhere.headers()["x-missive-code"], "unknown_command");
    let registered =
        post("/v1/register", br#"{"username":"alice","password":"correct horse"}"#.to_vec());
    assert_eq!(registered.await.unwrap().status(), 200);
}

/// What §4.2 and §4.3 of the protocol refuse, each with its code: a version header that is not
/// a number (on anonymous commands too), a JSON body that is not an object, a null optional
/// field, and an upload body one byte over its limit.
#[tokio::test]
async fn short_link_bodies_and_headers_are_held_to_the_document() {
    // An UPLOAD's body is held to the frame limit as any other request's.
    let server =
        Server::start_with(&["--frame-body-bytes-max", "1024", "--media-bytes-max", "3000"]);
    let http = reqwest::Client::new();
    let check = async |path: &str, headers: &[(&str, &str)], body: Vec<u8>, expect: (u16, &str)| {
        let mut request = http
            .post(format!("{}/v1/{path}", server.http))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        let code = answer.headers().get("x-missive-code").map(|v| v.to_str().unwrap().to_string());
        let got = (answer.status().as_u16(), code.unwrap_or_default());
        assert_eq!((got.0, got.1.as_str()), expect, "POST /v1/{path} {headers:?}");
    };
    let bad_request = (400, "bad_request");
    let registration = br#"{"username":"amy","password":"password123"}"#.to_vec();
    let version = [("missive-protocol", "two")];
    check("ping", &version, Vec::new(), bad_request).await;
    check("register", &version, registration.clone(), bad_request).await;
    check("login", &version, registration.clone(), bad_request).await;
    check("register", &[], br#"["amy","password123",""]"#.to_vec(), bad_request).await;
    check("register", &[], b"  \"amy\"".to_vec(), bad_request).await;
    // Nothing of the refused requests was done: the name is still free.
    check("register", &[("missive-protocol", " 2 ")], registration.clone(), (200, "")).await;
    let login = http
        .post(format!("{}/v1/login", server.http))
        .header("content-type", "application/json")
        .body(registration)
        .send()
        .await
        .unwrap();
    let session: serde_json::Value = serde_json::from_slice(&login.bytes().await.unwrap()).unwrap();
    let bearer = format!("Bearer {}", session["token"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str()), ("missive-protocol", "2")];
    for null in [r#"{"group_id":1,"name":null}"#, r#"{"group_id":1,"announcement":null}"#] {
        check("group_update", &auth, null.as_bytes().to_vec(), bad_request).await;
    }
    check("group_update", &auth, br#"{"group_id":1,"name":"Trip"}"#.to_vec(), (404, "not_found"))
        .await;

    // A body of exactly the limit is read (and is an empty upload); one byte more is refused
    // from its declared length, before anything is read.
    let limit = 1_024;
    check("upload", &auth, vec![b' '; limit], (400, "invalid_argument")).await;
    check("upload", &auth, vec![b' '; limit + 1], (413, "frame_too_large")).await;
}

/// `connections-max` counts every long link from its accept, authenticated or not (§5.1):
/// past it a TCP link is closed without a frame and a WebSocket upgrade is answered 429.
#[tokio::test]
async fn unauthenticated_links_count_toward_the_connection_limit() {
    let server = Server::start_with(&["--connections-max", "2"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.tcp_addr()).await.unwrap();
        let ping = Frame::request(Command::Ping as u16, 1, Bytes::new());
        stream.write_all(&ping.to_bytes()).await.unwrap();
        assert_eq!(read_frame(&mut stream).await.unwrap().status, 0, "served before AUTH");
        held.push(stream);
    }
    assert!(refused_at_once(server.tcp_addr()).await, "reset without a frame");
    let upgrade = tokio_tungstenite::connect_async(server.ws()).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = upgrade else {
        panic!("an HTTP answer to the upgrade: {upgrade}")
    };
    assert_eq!(response.status(), 429);

    // A place freed is a place taken again.
    drop(held.pop());
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Ok(mut stream) = TcpStream::connect(server.tcp_addr()).await else { continue };
            let ping = Frame::request(Command::Ping as u16, 2, Bytes::new());
            if stream.write_all(&ping.to_bytes()).await.is_ok()
                && read_frame(&mut stream).await.is_some()
            {
                return stream;
            }
        }
    });
    again.await.expect("a freed place is given to the next link");
}

/// One client address holds at most `connections-per-address-max` long links, TCP and
/// WebSocket together; another address still gets in.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_long_links() {
    let server = Server::start_with(&["--connections-per-address-max", "2"]);
    let served = |mut stream: TcpStream| async move {
        let ping = Frame::request(Command::Ping as u16, 1, Bytes::new());
        stream.write_all(&ping.to_bytes()).await.ok()?;
        read_frame(&mut stream).await.map(|_| stream)
    };
    let first = served(TcpStream::connect(server.tcp_addr()).await.unwrap()).await.unwrap();
    let (second, _) = tokio_tungstenite::connect_async(server.ws()).await.unwrap();
    assert!(refused_at_once(server.tcp_addr()).await, "a third link from 127.0.0.1 is reset");

    // From 127.0.0.2 (loopback too, another address to the server) a link is served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let elsewhere = socket.connect(server.tcp_addr().parse().unwrap()).await.unwrap();
    assert!(served(elsewhere).await.is_some(), "another address is not held up");
    drop((first, second));
}

/// The token is checked before a body is read: a stranger announcing an upload as large as
/// a request may be is answered at once, without the server waiting for (or holding) its
/// bytes.
#[tokio::test]
async fn an_unauthenticated_upload_is_refused_before_its_body_is_read() {
    let server = Server::start();
    let http = server.http.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&http).await.unwrap();
    let head = format!(
        "POST /v1/upload HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000\r\n\r\n{{\"data\":\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&chunk[..n]);
        }
    });
    read.await.expect("answered before the body came (the request deadline is 10 s)");
    let head = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("x-missive-code: unauthenticated"), "{head}");
}

/// Whether the server closes `stream` within `within` (reading and discarding what it says).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    });
    read.await.is_ok()
}

/// An HTTP connection that sends nothing, one whose request head trickles in, and one left
/// idle after a request are each closed at the header timeout, while others keep chatting.
#[tokio::test]
async fn silent_slow_and_idle_http_connections_are_closed_at_the_header_timeout() {
    let server = Server::start_with(&["--http-header-timeout-s", "1"]);
    bystanders(&server).await;
    let http = server.http.trim_start_matches("http://").to_string();
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(&http).await.unwrap();
    let mut slow = TcpStream::connect(&http).await.unwrap();
    let trickle = async {
        for byte in b"POST /v1/ping HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((), ()) = tokio::join!(trickle, bystanders_still_talk(&server, "during the trickle"));
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await, "the silent one");
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await, "the slow one");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());

    let mut kept = TcpStream::connect(&http).await.unwrap();
    kept.write_all(
        format!("POST /v1/ping HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let idle_from = tokio::time::Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await, "the kept-alive one");
    assert!(idle_from.elapsed() >= Duration::from_millis(900), "not before the timeout");
    bystanders_still_talk(&server, "after").await;
}

/// Past `--http-connections-max` a connection is reset at once, unread, while the admin
/// address (its own places) still answers health checks; a place freed is taken again.
#[tokio::test]
async fn the_http_connection_cap_refuses_newcomers_but_not_health_checks() {
    let server = Server::start_with(&["--http-connections-max", "2"]);
    let http = server.http.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&http).await.unwrap());
    }
    // The accept loop takes them in order; give it the two before the third arrives.
    let health = reqwest::Client::new();
    let healthy = health.get(format!("{}/healthz", server.admin)).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert!(refused_at_once(&http).await, "refused at the cap");
    let healthy = health.get(format!("{}/healthz", server.admin)).send().await.unwrap();
    assert_eq!(healthy.status(), 200, "the admin address has places of its own");

    drop(held.pop());
    let ping = async {
        loop {
            let answer =
                reqwest::Client::new().post(format!("{}/v1/ping", server.http)).send().await;
            if answer.is_ok_and(|a| a.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ping).await.expect("a freed place is used again");
}

/// A rate limit reached is answered RATE_LIMITED with the time to wait, over HTTP (with
/// `Retry-After`) and over a long link, and lifts once that time has passed.
#[tokio::test]
async fn rate_limits_answer_with_the_time_to_wait_and_lift_after_it() {
    let server = Server::start_with(&[
        "--rate-limits",
        "true",
        "--rate-logins-per-address",
        "3/3s",
        "--rate-sends-per-user",
        "2/2s",
        "--rate-upload-bytes-per-user",
        "3000/1s",
    ]);
    let bob = user(&server.tcp, "bob").await;
    let alice = user(&server.tcp, "alice").await;
    let http = reqwest::Client::new();
    let login = || {
        http.post(format!("{}/v1/login", server.http))
            .header("content-type", "application/json")
            .body(r#"{"username":"bob","password":"wrong password"}"#)
            .send()
    };
    // Bob and Alice logged in from this address already: one attempt is left.
    assert_eq!(login().await.unwrap().status(), 401);
    let limited = login().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-missive-code"], "rate_limited");
    let seconds: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&limited.bytes().await.unwrap()).unwrap();
    let wait = Duration::from_millis(body["retry_after_ms"].as_u64().unwrap());
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(seconds), "{wait:?} {seconds}");
    tokio::time::sleep(wait).await;
    assert_eq!(login().await.unwrap().status(), 401, "lifted: the password is checked again");

    for n in 0..2 {
        alice.send_text("bob", &format!("m{n}")).await.unwrap();
    }
    let refused = alice.send_text("bob", "m2").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::RateLimited), "{refused}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice.send_text("bob", "m2").await.expect("one more a second later");

    // Uploads count their bytes: 3,000 a second here, so a second upload of 2,000 waits.
    let bob_id = bob.session().unwrap().user_id;
    let scan = || alice.upload(bob_id, "scan.pdf", "application/pdf", vec![7; 2_000]);
    scan().await.expect("within the bytes");
    let refused = scan().await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::RateLimited), "{refused}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    scan().await.expect("refilled by then");
}

/// A process allowed few descriptors fits its connection caps to them: a flood of long links
/// and HTTP connections is refused at the caps, never failing for want of descriptors, and
/// health checks, the store and the users who come after the flood are served.
#[tokio::test]
async fn a_connection_flood_is_refused_within_the_descriptor_limit() {
    // 400 descriptors: a reserve of 256, then 108 long links and 36 HTTP connections.
    let server = Server::start_with_descriptors(&[], 400);
    let http = server.http.trim_start_matches("http://").to_string();
    let mut flood = Vec::new();
    for _ in 0..150 {
        // Past the caps a connection may be reset before its connect is seen to complete.
        flood.extend(TcpStream::connect(server.tcp_addr()).await);
        flood.extend(TcpStream::connect(&http).await);
    }
    let health = reqwest::Client::new().get(format!("{}/healthz", server.admin)).send().await;
    assert_eq!(health.unwrap().status(), 200, "the admin address has its own places");
    // Refused at the caps: a newcomer is reset at once.
    assert!(refused_at_once(server.tcp_addr()).await);
    let metrics = reqwest::get(format!("{}/metrics", server.admin)).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("missive_connections_refused_total"), "{metrics}");

    drop(flood);
    // Once the flood is gone, people are served, and the store never ran short.
    let after = async {
        loop {
            let attempt = missive_client::Client::connect(&server.tcp).await;
            if let Ok(client) = attempt
                && client.register("after", PASSWORD).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), after).await.expect("served after the flood");
    bystanders(&server).await;
    bystanders_still_talk(&server, "after the flood").await;
}
