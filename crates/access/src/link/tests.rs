//! The long link's rules (docs/protocol.md §2 and §5), checked on `link::serve` itself: over an
//! in-memory byte stream framed as `tcp.rs` frames a socket, in front of the real logic layer
//! and embedded store, on tokio's paused clock, so that every deadline is held to the
//! millisecond in milliseconds of real time.
//!
//! Paused time and the store. With the clock paused, tokio moves it to the next timer as soon
//! as the runtime has nothing to run. Work on tokio's blocking pool holds that jump back (the
//! Argon2 hashing of LOGIN and REGISTER), but the embedded store commits on a thread of its
//! own and answers through a channel, which tokio cannot see: a write made while any timer is
//! pending (a link's deadline, the request deadline) would let the clock jump to that timer
//! before the commit is answered. So the tests on the paused clock write to the store only
//! before they open a link (accounts and sessions are made through the logic layer; no timer
//! exists yet), and what happens on their links only reads it (AUTH, GET_PROFILE) or never
//! reaches it. The two rules that need a write while links are open (a SEND's notifies,
//! LOGOUT) are checked on the real clock, where no deadline comes near.

use super::LinkShared;
use crate::tcp::serve_bytes;
use crate::{AccessConfig, Dispatcher, Registry};
use bytes::Bytes;
use futures_util::StreamExt;
use missive_logic::{Audience, Clock, Deps, Logic, LogicConfig, PasswordCost, SeqAllocator};
use missive_proto::Command;
use missive_proto::client::{
    AuthRequest, AuthResponse, DataType, Error as ErrorBody, GetProfileRequest, GetProfileResponse,
    LoginRequest, LoginResponse, LogoutRequest, MessageKind, Notify, PingRequest, PingResponse,
    RegisterRequest, SendRequest, SendResponse, SyncRequest, SyncResponse, sync_item,
};
use missive_proto::frame::{FRAME_VERSION, Frame, FrameCodec, HEADER_BYTES, Kind, MAGIC};
use missive_proto::internal::{ClientApi, KickTarget, NotifyRequest, NotifyTarget, Push};
use missive_rpc::{Code, Ctx};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio::time::{Instant, advance, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse";
/// Bytes each direction of a link's in-memory stream holds, like a socket's buffers: enough
/// that no test but the write-timeout one ever waits on them.
const PIPE_BYTES: usize = 64 * 1024;
/// How long a test waits for a frame or a close before it fails. On the paused clock the wait
/// costs nothing, and it must outlast every deadline of a test (90 s idle at most); on the
/// real clock only a broken test waits it out.
const PATIENCE_PAUSED: Duration = Duration::from_secs(3600);
const PATIENCE_REAL: Duration = Duration::from_secs(10);

/// One access node's long-link side, over a logic node and an embedded store of its own.
struct Node {
    shared: Arc<LinkShared>,
    registry: Arc<Registry>,
    logic: Arc<Logic>,
    /// See [`PIPE_BYTES`]; the write-timeout test makes it small.
    pipe_bytes: usize,
    patience: Duration,
    _dir: tempfile::TempDir,
}

impl Node {
    /// A node with the default access settings (auth in 10 s, heartbeat 30 s, writes in 10 s),
    /// for a test on the paused clock.
    fn new() -> Node {
        Node::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut AccessConfig)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
        let registry = Registry::new();
        // Wired as the all-in-one server wires them: the registry is the logic layer's push.
        let deps = Deps {
            accounts: store.clone(),
            contacts: store.clone(),
            messages: store.clone(),
            groups: store.clone(),
            media: Arc::new(FileMediaStore::open(dir.path()).unwrap()),
            seq: Arc::new(SeqAllocator::new(store.clone(), 100)),
            push: registry.clone(),
            ops: store,
            limiter: None,
            offline_push: None,
        };
        let logic = Logic::new(
            deps,
            LogicConfig {
                sync_key_secret: b"link tests".to_vec(),
                // Hashing stays on the blocking pool, only cheaper.
                password_cost: PasswordCost { memory_kib: 64, iterations: 1 },
                // A message needs no friendship first: these tests are about the link.
                direct_messages: Audience::Anyone,
                clock: Clock::from_fn(|| 1_700_000_000_000),
                ..LogicConfig::default()
            },
        );
        let mut config = AccessConfig::default();
        configure(&mut config);
        let dispatcher = Arc::new(Dispatcher::new(logic.clone()));
        let shared = Arc::new(LinkShared::new(dispatcher, registry.clone(), config));
        Node {
            shared,
            registry,
            logic,
            pipe_bytes: PIPE_BYTES,
            patience: PATIENCE_PAUSED,
            _dir: dir,
        }
    }

    /// A node for a test on the real clock (one that writes while links are open).
    fn on_real_clock() -> Node {
        Node { patience: PATIENCE_REAL, ..Node::new() }
    }

    /// Registers `name` and signs in a first device: its ids and token.
    async fn user(&self, name: &str) -> LoginResponse {
        let register = RegisterRequest {
            username: name.into(),
            password: PASSWORD.into(),
            ..Default::default()
        };
        self.logic.register(&Ctx::new(0), register).await.unwrap();
        self.device(name, "first").await
    }

    /// Signs in another device of `name`.
    async fn device(&self, name: &str, device: &str) -> LoginResponse {
        let login = LoginRequest {
            username: name.into(),
            password: PASSWORD.into(),
            device_name: device.into(),
        };
        self.logic.login(&Ctx::new(0), login).await.unwrap()
    }

    /// Opens a long link and lets it start, so that its auth deadline counts from now.
    async fn connect(&self) -> Peer {
        let (client, server) = tokio::io::duplex(self.pipe_bytes);
        let (read, write) = tokio::io::split(server);
        let shutdown = CancellationToken::new();
        // As `LinkServer::run_tcp` serves the halves of a socket.
        let opened = (None, tokio::time::Instant::now());
        let served =
            tokio::spawn(serve_bytes(self.shared.clone(), opened, read, write, shutdown.clone()));
        tokio::task::yield_now().await;
        let (read, write) = tokio::io::split(client);
        Peer {
            // The client side accepts any size, as the reference client accepts large frames.
            frames: FramedRead::new(read, FrameCodec::new(u32::MAX)),
            bytes: write,
            served,
            shutdown,
            patience: self.patience,
        }
    }

    /// A link authenticated with `token`, and the time its AUTH was answered.
    async fn authenticated(&self, token: &str) -> (Peer, AuthResponse, Instant) {
        let mut peer = self.connect().await;
        let auth = peer.auth(token).await;
        (peer, auth, Instant::now())
    }

    /// What the logic layer calls after a change, as a SEND's commit would.
    async fn notify(&self, targets: Vec<NotifyTarget>, kicks: Vec<KickTarget>) {
        let request = NotifyRequest { targets, kicks, ..Default::default() };
        self.registry.notify(&Ctx::new(0), request).await.unwrap();
    }
}

/// The client end of one link: raw bytes out (so that a test can send garbage or half a
/// frame), frames in.
struct Peer {
    frames: FramedRead<ReadHalf<DuplexStream>, FrameCodec>,
    bytes: WriteHalf<DuplexStream>,
    served: JoinHandle<()>,
    shutdown: CancellationToken,
    patience: Duration,
}

impl Peer {
    async fn write(&mut self, bytes: &[u8]) {
        self.bytes.write_all(bytes).await.expect("the link takes the bytes");
        self.bytes.flush().await.unwrap();
    }

    async fn send(&mut self, command: u16, seq: u32, body: Bytes) {
        self.write(&Frame::request(command, seq, body).to_bytes()).await;
    }

    /// Sends a request and reads its answer, which must echo the command and the seq.
    async fn call(&mut self, command: u16, seq: u32, body: Bytes) -> Frame {
        self.send(command, seq, body).await;
        let answer = self.next().await;
        assert_eq!(
            (answer.kind, answer.command, answer.seq),
            (Kind::Response, command, seq),
            "the answer names its request"
        );
        answer
    }

    async fn ping(&mut self, seq: u32) {
        let pong = self.call(Command::Ping as u16, seq, Bytes::new()).await;
        assert_eq!(code_of(&pong), Code::Ok, "the link is alive and answers a PING");
    }

    async fn auth(&mut self, token: &str) -> AuthResponse {
        let request = AuthRequest { token: token.into(), protocol_version: 2 };
        let answer = self.call(Command::Auth as u16, 1, body(request)).await;
        assert_eq!(code_of(&answer), Code::Ok, "AUTH succeeds");
        AuthResponse::decode(answer.body).unwrap()
    }

    async fn next(&mut self) -> Frame {
        match timeout(self.patience, self.frames.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => panic!("the link sent a broken frame: {error}"),
            Ok(None) => panic!("the link closed where a frame was expected"),
            Err(_) => panic!("no frame within {:?}", self.patience),
        }
    }

    /// Waits for the link to close without sending anything more; returns when it closed.
    async fn closed(&mut self) -> Instant {
        let at = match timeout(self.patience, self.frames.next()).await {
            Ok(None) => Instant::now(),
            Ok(Some(Ok(frame))) => panic!("a frame where the close was expected: {frame:?}"),
            Ok(Some(Err(error))) => panic!("the link ended in a broken frame: {error}"),
            Err(_) => panic!("the link is still open after {:?}", self.patience),
        };
        // The client saw the end of the stream; the link's task has finished too.
        timeout(self.patience, &mut self.served).await.unwrap().unwrap();
        at
    }

    /// Nothing arrives for `quiet`, and the link stays open.
    async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(next) = timeout(quiet, self.frames.next()).await {
            panic!("expected silence for {quiet:?}, got {next:?}");
        }
        assert!(!self.served.is_finished(), "the link is still open");
    }
}

fn body(message: impl Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// The code of an answer, checked against its `Error` body when it is an error.
#[track_caller]
fn code_of(answer: &Frame) -> Code {
    let code = Code::from_u16(answer.status).expect("a known code");
    if code != Code::Ok {
        let error = ErrorBody::decode(answer.body.clone()).expect("an error answer has an Error");
        assert_eq!((error.code, error.name.as_str()), (u32::from(answer.status), code.as_str()));
    }
    code
}

/// (kind, command, seq, code): everything by which a client reads an answer.
#[track_caller]
fn answer(frame: &Frame) -> (Kind, u16, u32, Code) {
    (frame.kind, frame.command, frame.seq, code_of(frame))
}

/// A frame header, any field of it possibly wrong.
fn header(version: u8, kind: u8, command: u16, seq: u32, body_len: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(&MAGIC.to_be_bytes());
    header.extend_from_slice(&[version, kind]);
    header.extend_from_slice(&command.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&seq.to_be_bytes());
    header.extend_from_slice(&body_len.to_be_bytes());
    header
}

/// A valid `PingRequest` of exactly `bytes` bytes: one field that the schema does not know
/// (number 15, length-delimited), which decoders skip.
fn ping_body_of(bytes: usize) -> Bytes {
    let mut body = vec![15 << 3 | 2];
    let len_of_len = (1..=5)
        .find(|n| prost::encoding::encoded_len_varint((bytes - 1 - n) as u64) == *n)
        .expect("a length that fits");
    prost::encoding::encode_varint((bytes - 1 - len_of_len) as u64, &mut body);
    body.resize(bytes, 0);
    PingRequest::decode(&body[..]).expect("a valid PingRequest");
    Bytes::from(body)
}

/// Asserts that `at` is `expected` after `from`, to the millisecond: tokio's timers count
/// whole milliseconds, so a deadline fires at its instant or within the millisecond after it,
/// never before.
#[track_caller]
fn assert_after(from: Instant, at: Instant, expected: Duration, what: &str) {
    let elapsed = at - from;
    assert!(
        elapsed >= expected && elapsed <= expected + Duration::from_millis(1),
        "{what}: after {elapsed:?}, not {expected:?}"
    );
}

fn notify_target(user_id: u64, data_type: DataType, version: u64) -> NotifyTarget {
    NotifyTarget { user_id, except_device_id: 0, r#type: data_type as i32, version }
}

/// The (data type, version) of a NOTIFY push.
#[track_caller]
fn notified(frame: &Frame) -> (DataType, u64) {
    assert_eq!(
        (frame.kind, frame.command, frame.seq, frame.status),
        (Kind::Push, Command::Notify as u16, 0, 0),
        "a NOTIFY is a push with seq 0"
    );
    let notify = Notify::decode(frame.body.clone()).unwrap();
    (notify.r#type(), notify.version)
}

#[tokio::test(start_paused = true)]
async fn a_link_is_closed_silently_at_the_auth_deadline_whatever_it_did_before() {
    let node = Node::new();
    node.user("alice").await;
    let mut silent = node.connect().await;
    let mut busy = node.connect().await;
    let opened = Instant::now();

    // Everything allowed before AUTH is served, and none of it moves the deadline (§5.1).
    advance(Duration::from_secs(3)).await;
    busy.ping(1).await;
    advance(Duration::from_secs(3)).await;
    let bad_token = body(AuthRequest { token: "not-a-token".into(), protocol_version: 2 });
    let refused = busy.call(Command::Auth as u16, 2, bad_token).await;
    assert_eq!(code_of(&refused), Code::Unauthenticated);
    advance(Duration::from_secs(2)).await;
    // A wrong password is checked on the blocking pool, which holds the paused clock still.
    let login = LoginRequest {
        username: "alice".into(),
        password: "wrong password".into(),
        device_name: String::new(),
    };
    let refused = busy.call(Command::Login as u16, 3, body(login)).await;
    assert_eq!(code_of(&refused), Code::InvalidCredentials);
    advance(Duration::from_secs(1)).await;
    let register = RegisterRequest { username: "!".into(), ..Default::default() };
    let refused = busy.call(Command::Register as u16, 4, body(register)).await;
    assert_eq!(code_of(&refused), Code::InvalidArgument);
    assert_after(opened, Instant::now(), Duration::from_secs(9), "the requests took no time");

    let auth_timeout = node.shared.config.auth_timeout;
    assert_after(opened, busy.closed().await, auth_timeout, "the busy link closes");
    assert_after(opened, silent.closed().await, auth_timeout, "the silent link closes");
}

#[tokio::test(start_paused = true)]
async fn an_authenticated_link_is_closed_after_three_heartbeat_intervals_of_silence_not_before() {
    for heartbeat_s in [1, 30] {
        let node =
            Node::with(|config| config.heartbeat_interval = Duration::from_secs(heartbeat_s));
        let interval = node.shared.config.heartbeat_interval;
        let token = node.user("alice").await.token;

        // Silent from its AUTH on: closed three intervals later, and no longer at the auth
        // deadline (10 s), whether that would have come before or after.
        let (mut peer, auth, authenticated) = node.authenticated(&token).await;
        assert_eq!(u64::from(auth.heartbeat_interval_s), heartbeat_s, "the client is told");
        assert_after(authenticated, peer.closed().await, interval * 3, "a silent link closes");

        // Any request restarts the silence, whatever its answer; a push does not.
        let (mut peer, _, authenticated) = node.authenticated(&token).await;
        advance(interval * 3 - Duration::from_millis(1)).await;
        peer.ping(2).await;
        advance(interval * 3 - Duration::from_millis(1)).await;
        let unknown = peer.call(999, 3, Bytes::new()).await;
        assert_eq!(code_of(&unknown), Code::UnknownCommand);
        let last_request = Instant::now();
        let two_requests = interval * 6 - Duration::from_millis(2);
        assert_after(authenticated, last_request, two_requests, "the requests took no time");
        advance(interval).await;
        node.notify(vec![notify_target(auth.user_id, DataType::Message, 7)], vec![]).await;
        assert_eq!(notified(&peer.next().await), (DataType::Message, 7));
        assert_after(last_request, peer.closed().await, interval * 3, "pushes are not heard");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stall_in_the_middle_of_a_frame_counts_as_silence() {
    let node = Node::new();
    let idle = node.shared.config.idle_timeout();
    let token = node.user("alice").await.token;
    let frame = Frame::request(Command::Ping as u16, 9, ping_body_of(10)).to_bytes();

    // However much of the frame came, the clock runs from the last whole request (the AUTH).
    for cut in [1, 2, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 3, frame.len() - 1] {
        let (mut peer, _, authenticated) = node.authenticated(&token).await;
        advance(idle - Duration::from_secs(30)).await;
        peer.write(&frame[..cut]).await;
        let closed = peer.closed().await;
        assert_after(authenticated, closed, idle, &format!("stalled after {cut} bytes"));
    }

    // The rest of the frame arriving in time makes it a request like any other.
    let (mut peer, _, _) = node.authenticated(&token).await;
    advance(idle - Duration::from_secs(30)).await;
    peer.write(&frame[..HEADER_BYTES + 3]).await;
    advance(Duration::from_secs(29)).await;
    peer.write(&frame[HEADER_BYTES + 3..]).await;
    let pong = peer.next().await;
    assert_eq!(answer(&pong), (Kind::Response, Command::Ping as u16, 9, Code::Ok));
    let answered = Instant::now();
    assert_after(answered, peer.closed().await, idle, "silence counts from the whole frame");
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_answered_one_at_a_time_in_the_order_they_came() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let wrong_login = LoginRequest {
        username: "alice".into(),
        password: "wrong password".into(),
        device_name: String::new(),
    };
    let auth = AuthRequest { token, protocol_version: 2 };
    let garbage = Bytes::from_static(&[0xff, 0xff, 0xff]);
    let ping = Command::Ping as u16;
    // (command, seq, body, expected code). The first request waits on the blocking pool
    // while the others could be answered at once; AUTH changes what follows it. The seq is the
    // client's: repeated, or 0 as the reference client's heartbeats.
    let requests = [
        (Command::Login as u16, 1, body(wrong_login), Code::InvalidCredentials),
        (ping, 2, Bytes::new(), Code::Ok),
        (999, 3, Bytes::new(), Code::UnknownCommand),
        (Command::Sync as u16, 4, body(SyncRequest::default()), Code::Unauthenticated),
        (Command::Auth as u16, 5, body(auth), Code::Ok),
        (Command::GetProfile as u16, 5, body(GetProfileRequest::default()), Code::Ok),
        (Command::Send as u16, 6, garbage, Code::BadRequest),
        (ping, 0, Bytes::new(), Code::Ok),
        (ping, 0, Bytes::new(), Code::Ok),
    ];
    let mut peer = node.connect().await;
    let mut pipelined = Vec::new();
    for (command, seq, body, _) in &requests {
        pipelined.extend_from_slice(&Frame::request(*command, *seq, body.clone()).to_bytes());
    }
    peer.write(&pipelined).await;
    for (command, seq, _, code) in requests {
        let got = answer(&peer.next().await);
        assert_eq!(got, (Kind::Response, command, seq, code), "answers come in request order");
    }
    peer.expect_silence(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_malformed_frame_is_answered_with_bad_frame_then_that_link_alone_closes() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let bystander = node.device("alice", "bystander").await.token;
    let (mut bystander, _, _) = node.authenticated(&bystander).await;
    let ping = Command::Ping as u16;
    let notify = Command::Notify as u16;
    // (what, bytes, command and seq the answer names): the frames §2.6 refuses. Garbage is
    // refused as soon as its first two bytes show it, without waiting for a whole header.
    let cases: [(&str, Vec<u8>, u16, u32); 6] = [
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 0, 0),
        ("two bytes of bad magic", vec![0x4D, 0x57], 0, 0),
        ("frame version 9", header(9, 0, ping, 41, 0), 0, 0),
        ("kind byte 3", header(FRAME_VERSION, 3, ping, 42, 0), 0, 0),
        ("a response from the client", header(FRAME_VERSION, 1, ping, 43, 0), ping, 43),
        ("a push from the client", header(FRAME_VERSION, 2, notify, 44, 0), notify, 44),
    ];
    for (what, bytes, command, seq) in cases {
        for authenticated in [false, true] {
            let mut peer = node.connect().await;
            if authenticated {
                peer.auth(&token).await;
            }
            let sent = Instant::now();
            peer.write(&bytes).await;
            let refusal = peer.next().await;
            let expected = (Kind::Response, command, seq, Code::BadFrame);
            assert_eq!(answer(&refusal), expected, "{what} (authenticated: {authenticated})");
            assert_eq!(peer.closed().await, sent, "{what}: closed at once");
        }
    }
    bystander.ping(7).await;
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_is_refused_naming_its_request_before_its_body_comes() {
    let node = Node::with(|config| config.frame_body_bytes_max = 1024);
    let token = node.user("alice").await.token;
    let send = Command::Send as u16;
    for (body_len, seq, authenticated) in
        [(1025, 77, false), (1025, 78, true), (u32::MAX, 79, true)]
    {
        let mut peer = node.connect().await;
        if authenticated {
            peer.auth(&token).await;
        }
        let sent = Instant::now();
        // The header alone: the limit is checked before the body is read.
        peer.write(&header(FRAME_VERSION, 0, send, seq, body_len)).await;
        let refusal = peer.next().await;
        assert_eq!(answer(&refusal), (Kind::Response, send, seq, Code::FrameTooLarge));
        assert_eq!(peer.closed().await, sent, "a body of {body_len} bytes: closed at once");
    }

    // A body of exactly the limit is a frame like any other.
    let mut peer = node.connect().await;
    let pong = peer.call(Command::Ping as u16, 80, ping_body_of(1024)).await;
    assert_eq!(code_of(&pong), Code::Ok);
    peer.ping(81).await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_command_or_an_undecodable_body_gets_its_error_and_the_link_lives_on() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let garbage = || Bytes::from_static(&[0xff, 0xff, 0xff]);
    // (command, body, expected code), before AUTH and then after it.
    let before: [(u16, Bytes, Code); 5] = [
        (999, Bytes::new(), Code::UnknownCommand),
        (0, Bytes::new(), Code::UnknownCommand),
        (u16::MAX, garbage(), Code::UnknownCommand),
        (Command::Ping as u16, garbage(), Code::BadRequest),
        (Command::Auth as u16, garbage(), Code::BadRequest),
    ];
    let after: [(u16, Bytes, Code); 4] = [
        (999, Bytes::new(), Code::UnknownCommand),
        // NOTIFY is the server's to send.
        (Command::Notify as u16, Bytes::new(), Code::UnknownCommand),
        (Command::Send as u16, garbage(), Code::BadRequest),
        (Command::Sync as u16, garbage(), Code::BadRequest),
    ];
    /// Each case is answered with its code and seq, and the link still answers a PING.
    async fn check(peer: &mut Peer, stage: &str, cases: &[(u16, Bytes, Code)]) {
        for (seq, (command, body, code)) in (10..).zip(cases) {
            let got = code_of(&peer.call(*command, seq, body.clone()).await);
            assert_eq!(got, *code, "command {command} {stage}");
        }
        peer.ping(99).await;
    }
    let mut peer = node.connect().await;
    check(&mut peer, "before AUTH", &before).await;
    peer.auth(&token).await;
    check(&mut peer, "after AUTH", &after).await;
    peer.expect_silence(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn before_auth_only_auth_ping_register_and_login_are_served() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let mut peer = node.connect().await;
    let refused: Vec<Command> =
        Command::ALL.into_iter().filter(|c| !c.allowed_anonymous()).collect();
    assert!(refused.len() >= 25, "every command but four: {refused:?}");
    // Refused before decoding: an empty body is a valid request of every command.
    for command in &refused {
        let seq = 1000 + *command as u32;
        let answer = peer.call(*command as u16, seq, Bytes::new()).await;
        assert_eq!(code_of(&answer), Code::Unauthenticated, "{command:?} before AUTH");
        let error = ErrorBody::decode(answer.body).unwrap();
        assert_eq!(error.message, "authenticate first");
    }
    // LOGOUT was among them: refused, it did not close the link. The four are served.
    peer.ping(1).await;
    let register = RegisterRequest { username: "!".into(), ..Default::default() };
    let invalid = peer.call(Command::Register as u16, 2, body(register)).await;
    assert_eq!(code_of(&invalid), Code::InvalidArgument, "REGISTER is served");
    let login = LoginRequest {
        username: "alice".into(),
        password: "wrong password".into(),
        device_name: String::new(),
    };
    let wrong = peer.call(Command::Login as u16, 3, body(login)).await;
    assert_eq!(code_of(&wrong), Code::InvalidCredentials, "LOGIN is served");
    peer.auth(&token).await;
    let profile = peer.call(Command::GetProfile as u16, 4, body(GetProfileRequest::default()));
    assert_eq!(code_of(&profile.await), Code::Ok, "after AUTH, the same command is served");
}

#[tokio::test(start_paused = true)]
async fn a_second_auth_fails_its_precondition_and_the_first_identity_stays() {
    let node = Node::new();
    let alice = node.user("alice").await;
    let bob = node.user("bob").await;
    let (alice, bob_id, bob) = (alice.token, bob.user_id, bob.token);
    let mut peer = node.connect().await;

    // A refused token leaves the link open and unauthenticated (§5.3).
    let bad = body(AuthRequest { token: "not-a-token".into(), protocol_version: 2 });
    assert_eq!(code_of(&peer.call(Command::Auth as u16, 1, bad).await), Code::Unauthenticated);
    let first = peer.auth(&alice).await;
    assert!(node.registry.is_online(first.user_id));

    for (seq, token) in [(2, &alice), (3, &bob)] {
        let again = body(AuthRequest { token: token.clone(), protocol_version: 2 });
        let refused = peer.call(Command::Auth as u16, seq, again).await;
        assert_eq!(code_of(&refused), Code::FailedPrecondition, "a second AUTH");
    }
    let profile = peer.call(Command::GetProfile as u16, 4, body(GetProfileRequest::default()));
    let profile = GetProfileResponse::decode(profile.await.body).unwrap().profile.unwrap();
    assert_eq!((profile.user_id, profile.username.as_str()), (first.user_id, "alice"));
    assert!(!node.registry.is_online(bob_id), "the link did not become bob's");
}

#[tokio::test(start_paused = true)]
async fn auth_answers_in_the_protocol_version_it_negotiated() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    // (declared, answered): a version-1 client gets the answer it knew, without field 4.
    for (declared, answered) in [(0, 0), (1, 0), (2, 2), (3, 3), (99, 3)] {
        let mut peer = node.connect().await;
        let request = body(AuthRequest { token: token.clone(), protocol_version: declared });
        let auth = peer.call(Command::Auth as u16, 1, request).await;
        assert_eq!(code_of(&auth), Code::Ok);
        let auth = AuthResponse::decode(auth.body).unwrap();
        assert_eq!(auth.protocol_version, answered, "declared {declared}");
        assert_eq!(auth.heartbeat_interval_s, 30);
        // The heartbeat range, to version 2 and later (§5.4).
        let range = if answered > 0 { (10, 300) } else { (0, 0) };
        assert_eq!((auth.heartbeat_min_s, auth.heartbeat_max_s), range, "declared {declared}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_ping_sets_the_links_heartbeat_within_the_range_and_the_idle_close_follows_it() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let ping_with = |seconds: u32| body(PingRequest { heartbeat_interval_s: seconds });
    let in_force = |answer: &Frame| {
        assert_eq!(code_of(answer), Code::Ok);
        PingResponse::decode(answer.body.clone()).unwrap().heartbeat_interval_s
    };

    // Before AUTH the field is ignored, and the deadline to authenticate stays.
    let mut peer = node.connect().await;
    let opened = Instant::now();
    assert_eq!(in_force(&peer.call(Command::Ping as u16, 1, ping_with(200)).await), 0);
    assert_after(opened, peer.closed().await, node.shared.config.auth_timeout, "unauthenticated");

    // (asked, in force): clamped to 10..=300 s; 0 keeps what is in force.
    let (mut peer, _, _) = node.authenticated(&token).await;
    for (asked, expected) in [(0, 30), (120, 120), (0, 120), (5, 10), (100_000, 300), (200, 200)] {
        let answer = peer.call(Command::Ping as u16, 2, ping_with(asked)).await;
        assert_eq!(in_force(&answer), expected, "asked {asked}");
    }
    // Three of the new intervals of silence close it, not three of the old ones.
    let last = Instant::now();
    assert_after(last, peer.closed().await, Duration::from_secs(600), "idle at 200 s");

    // A shorter one works the same way.
    let (mut peer, _, _) = node.authenticated(&token).await;
    assert_eq!(in_force(&peer.call(Command::Ping as u16, 3, ping_with(10)).await), 10);
    let last = Instant::now();
    assert_after(last, peer.closed().await, Duration::from_secs(30), "idle at 10 s");
}

#[tokio::test(start_paused = true)]
async fn notifies_reach_a_link_only_once_authenticated_and_coalesce_per_data_type() {
    let node = Node::new();
    let alice = node.user("alice").await;
    let (user_id, token) = (alice.user_id, alice.token);
    let mut peer = node.connect().await;

    // Not yet authenticated: the link is nobody's, and nothing is kept for later.
    node.notify(vec![notify_target(user_id, DataType::Message, 3)], vec![]).await;
    peer.expect_silence(Duration::from_secs(1)).await;
    let auth = peer.auth(&token).await;
    peer.expect_silence(Duration::from_secs(1)).await;

    // A burst before the link's writer runs: one NOTIFY per data type, the newest version,
    // and none for a change this very device made.
    let own = NotifyTarget {
        except_device_id: auth.device_id,
        ..notify_target(user_id, DataType::Message, 20)
    };
    node.notify(vec![notify_target(user_id, DataType::Message, 5)], vec![]).await;
    node.notify(vec![notify_target(user_id, DataType::Message, 9)], vec![]).await;
    node.notify(vec![notify_target(user_id, DataType::Contact, 4), own], vec![]).await;
    node.notify(vec![notify_target(user_id, DataType::Message, 7)], vec![]).await;
    let first = notified(&peer.next().await);
    let second = notified(&peer.next().await);
    assert_eq!([first, second], [(DataType::Contact, 4), (DataType::Message, 9)]);
    peer.expect_silence(Duration::from_secs(1)).await;

    // Once sent, the next change is news again.
    node.notify(vec![notify_target(user_id, DataType::Message, 10)], vec![]).await;
    assert_eq!(notified(&peer.next().await), (DataType::Message, 10));
    peer.expect_silence(Duration::from_secs(1)).await;
}

/// On the real clock: the SEND commits on the store's writer thread (see the module doc).
#[tokio::test]
async fn a_send_notifies_the_recipients_links_and_the_senders_other_devices_not_the_sending_one() {
    let node = Node::on_real_clock();
    let alice_phone = node.user("alice").await.token;
    let alice_laptop = node.device("alice", "laptop").await.token;
    let bob_token = node.user("bob").await.token;
    let (mut phone, _, _) = node.authenticated(&alice_phone).await;
    let (mut laptop, _, _) = node.authenticated(&alice_laptop).await;
    let (mut bob, bob_auth, _) = node.authenticated(&bob_token).await;
    let mut stranger = node.connect().await;

    let send = SendRequest {
        to: "bob".into(),
        client_msg_id: "m1".into(),
        kind: MessageKind::Text as i32,
        text: "hello".into(),
        ..Default::default()
    };
    let sent = phone.call(Command::Send as u16, 7, body(send)).await;
    assert_eq!(code_of(&sent), Code::Ok);
    let sent = SendResponse::decode(sent.body).unwrap();

    assert_eq!(notified(&laptop.next().await), (DataType::Message, sent.version));
    let (data_type, bob_version) = notified(&bob.next().await);
    assert_eq!(data_type, DataType::Message);
    // The next frame on the others' links is the answer to a PING: nothing came before it.
    for peer in [&mut phone, &mut laptop, &mut bob, &mut stranger] {
        peer.ping(8).await;
    }

    // The notify is a hint; the message is in bob's sync, under the version announced.
    let sync = bob.call(Command::Sync as u16, 9, body(SyncRequest::default())).await;
    assert_eq!(code_of(&sync), Code::Ok);
    let items = SyncResponse::decode(sync.body).unwrap().items;
    let message = items.iter().find_map(|item| match &item.body {
        Some(sync_item::Body::Message(message)) => Some((item.version, message)),
        _ => None,
    });
    let (version, message) = message.expect("the message is synced");
    assert_eq!((version, message.text.as_str()), (bob_version, "hello"));
    assert_eq!(message.to_user_id, bob_auth.user_id);
}

/// On the real clock: LOGOUT revokes the session in a store write (see the module doc).
#[tokio::test]
async fn logout_is_answered_then_the_link_closes_and_the_token_is_refused_after() {
    let node = Node::on_real_clock();
    let token = node.user("alice").await.token;
    let (mut peer, auth, _) = node.authenticated(&token).await;
    let answer = peer.call(Command::Logout as u16, 9, body(LogoutRequest {})).await;
    assert_eq!((code_of(&answer), answer.body.len()), (Code::Ok, 0), "an empty success");
    peer.closed().await;
    assert!(!node.registry.is_online(auth.user_id), "the device went offline with its link");

    let mut again = node.connect().await;
    let request = body(AuthRequest { token, protocol_version: 2 });
    let refused = again.call(Command::Auth as u16, 1, request).await;
    assert_eq!(code_of(&refused), Code::Unauthenticated, "the revoked token");
    again.ping(2).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_take_its_writes_is_closed_after_the_write_timeout() {
    // A stream that holds two PING answers (23 bytes each) and a part of a third.
    let node = Node { pipe_bytes: 64, ..Node::new() };
    let write_timeout = node.shared.config.write_timeout;
    let token = node.user("alice").await.token;
    let pings = 8;
    let mut pipelined = Vec::new();
    for seq in 1..=pings {
        pipelined
            .extend_from_slice(&Frame::request(Command::Ping as u16, seq, Bytes::new()).to_bytes());
    }

    // Reading just in time takes every answer, and the link lives on.
    let (mut patient, _, _) = node.authenticated(&token).await;
    patient.write(&pipelined).await;
    advance(write_timeout - Duration::from_millis(1)).await;
    for seq in 1..=pings {
        let pong = (Kind::Response, Command::Ping as u16, seq, Code::Ok);
        assert_eq!(answer(&patient.next().await), pong, "answered in time");
    }
    patient.ping(100).await;

    // Not reading at all: the writer gives up on its write after the timeout, and the link
    // closes then.
    let (mut stuck, _, _) = node.authenticated(&token).await;
    stuck.write(&pipelined).await;
    let blocked = Instant::now();
    timeout(stuck.patience, &mut stuck.served).await.expect("the link closes").unwrap();
    assert_after(blocked, Instant::now(), write_timeout, "a link whose writes do not drain");
    // What fit in the stream reaches the client, then the stream ends.
    let mut answered = 0;
    while let Some(Ok(frame)) = timeout(stuck.patience, stuck.frames.next()).await.unwrap() {
        answered += 1;
        assert_eq!(answer(&frame), (Kind::Response, Command::Ping as u16, answered, Code::Ok));
    }
    assert!(answered < pings, "{answered} of {pings} answers fit in the stream");
}

#[tokio::test(start_paused = true)]
async fn an_operator_kick_is_told_to_the_link_which_then_closes_at_once() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let (mut peer, auth, _) = node.authenticated(&token).await;
    let kicked = Instant::now();
    let kick = KickTarget {
        user_id: auth.user_id,
        device_id: auth.device_id,
        code: Code::AccountDisabled as u32,
        message: "disabled by an operator".into(),
    };
    node.notify(vec![], vec![kick]).await;
    assert_eq!(answer(&peer.next().await), (Kind::Response, 0, 0, Code::AccountDisabled));
    assert_eq!(peer.closed().await, kicked);
    assert!(!node.registry.is_online(auth.user_id));
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_every_link_at_once_without_a_frame() {
    let node = Node::new();
    let token = node.user("alice").await.token;
    let (mut authenticated, _, _) = node.authenticated(&token).await;
    let mut anonymous = node.connect().await;
    let stopped = Instant::now();
    for peer in [&mut authenticated, &mut anonymous] {
        peer.shutdown.cancel();
        assert_eq!(peer.closed().await, stopped);
    }
}

mod deadlines {
    use super::super::{Deadlines, Expired};
    use proptest::prelude::*;
    use std::time::Duration;
    use tokio::time::Instant;

    proptest! {
        /// The one timer entry is armed for the first moment a deadline can pass: nothing has
        /// expired before it, and the right deadline has at it.
        #[test]
        fn the_timer_is_armed_for_the_first_deadline_that_can_pass(
            auth_ms in 0u64..100_000,
            heard_ms in 0u64..100_000,
            idle_ms in 1u64..100_000,
            writing_ms in proptest::option::of(0u64..100_000),
            write_ms in 1u64..100_000,
            authenticated: bool,
            waiting: bool,
            probe_ms in 0u64..300_000,
        ) {
            let zero = Instant::now();
            let at = |ms| zero + Duration::from_millis(ms);
            let deadlines = Deadlines {
                auth: at(auth_ms),
                heard: at(heard_ms),
                idle: Duration::from_millis(idle_ms),
                writing_since: writing_ms.map(at),
                write: Duration::from_millis(write_ms),
            };
            let next = deadlines.next(authenticated, waiting);
            let probe = at(probe_ms);
            let expired = deadlines.expired(probe, authenticated, waiting);
            match next {
                None => prop_assert_eq!(expired, None, "no deadline, nothing expires"),
                Some(next) => {
                    prop_assert_eq!(expired.is_some(), probe >= next);
                    let first = deadlines.expired(next, authenticated, waiting);
                    prop_assert!(first.is_some(), "something expires at the armed moment");
                }
            }
            if let Some(expired) = expired {
                let write_due = writing_ms.map(|w| w + write_ms);
                match expired {
                    Expired::Write => prop_assert!(write_due.is_some_and(|due| probe_ms >= due)),
                    Expired::Auth => {
                        prop_assert!(waiting && !authenticated && probe_ms >= auth_ms)
                    }
                    Expired::Idle => {
                        prop_assert!(waiting && authenticated && probe_ms >= heard_ms + idle_ms)
                    }
                }
            }
        }
    }
}
