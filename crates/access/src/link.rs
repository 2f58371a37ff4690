//! One long-link connection, whatever carries its frames (TCP or WebSocket).
//!
//! A connection is one task. It runs requests one at a time, in order, so a connection never
//! has more than one request in the logic layer, and while that request runs the task still
//! writes out pushes. A connection that does not authenticate in time, stays silent for three
//! heartbeat intervals (a stall in the middle of a frame counts as silence), sends a malformed
//! or oversized frame, or does not take its writes in time is closed, alone.
//!
//! What an idle connection holds is kept small, for most connections are idle phones:
//! - the request in flight is a boxed future that exists only while the request runs, so the
//!   task's own future is no larger than its loop;
//! - frames waiting to be written sit in a queue that holds no allocation when empty (and the
//!   byte-stream reader and writer hold no buffer between frames, `frames.rs`);
//! - every deadline of the connection (to authenticate, for silence, for a write) is one entry
//!   in tokio's timer wheel, re-armed lazily: hearing from the client only moves a time stamp,
//!   and the entry is moved when it fires early.

use crate::AccessConfig;
use crate::admission::AuthGate;
use crate::dispatch::{self, Dispatcher, Format};
use crate::registry::{Connection, Registration, Registry};
use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use missive_proto::Command;
use missive_proto::client::{AuthRequest, AuthResponse, Notify, PingRequest, PingResponse};
use missive_proto::frame::{Frame, FrameError, Kind};
use missive_rpc::{Caller, Code, Ctx, Status};
use prost::Message;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("websocket text messages are not frames")]
    NotBinary,
    #[error("transport: {0}")]
    Transport(String),
}

/// What every connection of a node shares.
pub(crate) struct LinkShared {
    pub dispatcher: Arc<Dispatcher>,
    pub registry: Arc<Registry>,
    pub config: AccessConfig,
    pub auth_gate: AuthGate,
}

impl LinkShared {
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        registry: Arc<Registry>,
        config: AccessConfig,
    ) -> LinkShared {
        let auth_gate = AuthGate::new(config.auth_concurrency_max);
        LinkShared { dispatcher, registry, config, auth_gate }
    }

    /// The context of one request from `peer`: a fresh id, the request deadline, the
    /// command's priority, and the client's network for the limits per address.
    pub(crate) fn request_ctx(&self, command: Command, peer: Option<IpAddr>) -> Ctx {
        let ctx = Ctx::new(self.dispatcher.request_id())
            .with_timeout(self.config.request_timeout)
            .with_priority(command.priority());
        Ctx { client_address: peer.map(crate::serve::client_network), ..ctx }
    }
}

enum Flow {
    Continue,
    Close(&'static str),
}

/// A request's outcome: the answer, whether the link goes on, and the device it signed in.
struct Handled {
    answer: Frame,
    flow: Flow,
    signed_in: Option<(Caller, Registration)>,
    /// The heartbeat interval a PING set.
    heartbeat: Option<std::time::Duration>,
}

type InFlight = Pin<Box<dyn Future<Output = Handled> + Send>>;

/// One more in a gauge for as long as it is held.
struct Held(metrics::Gauge);

impl Held {
    fn new(gauge: metrics::Gauge) -> Held {
        gauge.increment(1.0);
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The deadlines of one connection, and which of them holds now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// When the connection must have authenticated.
    pub auth: Instant,
    /// When the client last finished a request (or connected).
    pub heard: Instant,
    /// Silence allowed once authenticated.
    pub idle: std::time::Duration,
    /// Since when frames have waited to be written, if they have.
    pub writing_since: Option<Instant>,
    /// Time a write may take.
    pub write: std::time::Duration,
}

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Auth,
    Idle,
    Write,
}

impl Expired {
    fn reason(self) -> &'static str {
        match self {
            Expired::Auth => "not authenticated in time",
            Expired::Idle => "idle past three heartbeat intervals",
            Expired::Write => "client does not take its writes",
        }
    }
}

impl Deadlines {
    /// The next moment one of the deadlines may pass, given whether the connection has
    /// authenticated and whether it waits for the client (no request is in flight: time spent
    /// in the server is not the client's silence).
    pub(crate) fn next(&self, authenticated: bool, waiting: bool) -> Option<Instant> {
        let read = waiting.then(|| self.read_deadline(authenticated));
        let write = self.writing_since.map(|since| since + self.write);
        match (read, write) {
            (Some(read), Some(write)) => Some(read.min(write)),
            (read, write) => read.or(write),
        }
    }

    /// Which deadline has passed at `now`, if one has.
    pub(crate) fn expired(
        &self,
        now: Instant,
        authenticated: bool,
        waiting: bool,
    ) -> Option<Expired> {
        if self.writing_since.is_some_and(|since| now >= since + self.write) {
            return Some(Expired::Write);
        }
        if waiting && now >= self.read_deadline(authenticated) {
            return Some(if authenticated { Expired::Idle } else { Expired::Auth });
        }
        None
    }

    fn read_deadline(&self, authenticated: bool) -> Instant {
        if authenticated { self.heard + self.idle } else { self.auth }
    }
}

/// Serves one connection, opened at `opened` (the time to authenticate counts from then, a
/// TLS handshake included), until the peer leaves, it misbehaves, or `shutdown` fires.
pub(crate) async fn serve<R, W>(
    shared: Arc<LinkShared>,
    transport: &'static str,
    (peer, opened): (Option<IpAddr>, Instant),
    mut reader: R,
    mut writer: W,
    shutdown: CancellationToken,
) where
    R: Stream<Item = Result<Frame, LinkError>> + Unpin + Send,
    W: Sink<Frame> + Unpin + Send,
    W::Error: std::fmt::Display,
{
    let config = &shared.config;
    let _connected = Held::new(metrics::gauge!("missive_connections", "transport" => transport));
    let pushes = metrics::counter!("missive_notify_pushes_total");
    let mut caller: Option<Caller> = None;
    let mut registration: Option<Registration> = None;
    // Counts this device in `missive_online_devices` (by transport and protocol version) while
    // it is registered.
    let mut online: Option<Held> = None;
    let mut in_flight: Option<InFlight> = None;
    let mut outbox = Outbox::default();
    let mut deadlines = Deadlines {
        auth: opened + config.auth_timeout,
        heard: opened,
        idle: config.idle_timeout(),
        writing_since: None,
        write: config.write_timeout,
    };
    let timer = tokio::time::sleep_until(deadlines.auth);
    tokio::pin!(timer);
    let reason = loop {
        let waiting = in_flight.is_none();
        let authenticated = caller.is_some();
        let connection = registration.as_ref().map(|r| &*r.connection);
        let deadline = deadlines.next(authenticated, waiting);
        // The entry moves only earlier here; a later deadline is found when it fires.
        if let Some(deadline) = deadline
            && deadline < timer.deadline()
        {
            timer.as_mut().reset(deadline);
        }
        let reading = waiting && outbox.frames.len() < config.send_queue_frames_max;
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if waiting => break "server shutting down",
            status = when_registered(connection, Connection::kicked), if waiting => {
                outbox.frames.push_back(error_frame(0, 0, &status));
                break "signed out by an operator";
            }
            handled = async { in_flight.as_mut().expect("in flight").await }, if !waiting => {
                in_flight = None;
                deadlines.heard = Instant::now();
                if let Some(interval) = handled.heartbeat {
                    deadlines.idle = interval * 3;
                }
                outbox.push(handled.answer, &mut deadlines);
                if let Some((signed_in, registered)) = handled.signed_in {
                    online = Some(Held::new(metrics::gauge!(
                        "missive_online_devices",
                        "transport" => transport,
                        "protocol_version" => version_label(signed_in.protocol_version),
                    )));
                    caller = Some(signed_in);
                    registration = Some(registered);
                }
                if let Flow::Close(reason) = handled.flow {
                    break reason;
                }
            }
            () = when_registered(connection, Connection::notified) => {
                let connection = connection.expect("registered");
                outbox.take_pushes(connection, &pushes, &mut deadlines);
            }
            written = std::future::poll_fn(|cx| outbox.poll_write(&mut writer, cx)),
                if outbox.is_pending() =>
            {
                if let Err(error) = written {
                    tracing::debug!(transport, %error, "write failed");
                    outbox.broken = true;
                    break "write failed";
                }
                deadlines.writing_since = None;
            }
            next = reader.next(), if reading => {
                let frame = match next {
                    None => break "closed by peer",
                    Some(Err(LinkError::Transport(error))) => {
                        tracing::debug!(transport, %error, "transport error");
                        break "transport error";
                    }
                    Some(Err(error)) => {
                        tracing::info!(transport, %error, "refusing bad frame");
                        outbox.frames.push_back(refusal(&error));
                        break "bad frame";
                    }
                    Some(Ok(frame)) => frame,
                };
                if frame.kind != Kind::Request {
                    let status = Status::new(Code::BadFrame, "clients send request frames only");
                    outbox.frames.push_back(error_frame(frame.command, frame.seq, &status));
                    break "bad frame kind";
                }
                let request = Request { peer, caller, idle: deadlines.idle, frame };
                in_flight = Some(Box::pin(handle(shared.clone(), transport, request)));
            }
            () = &mut timer, if deadline.is_some() => {
                let now = Instant::now();
                if let Some(expired) = deadlines.expired(now, authenticated, waiting) {
                    if expired == Expired::Write {
                        tracing::info!(transport, "client does not take its writes; closing");
                        outbox.broken = true;
                    }
                    break expired.reason();
                }
                let next = deadlines.next(authenticated, waiting).expect("a deadline is set");
                timer.as_mut().reset(next);
            }
        }
    };
    tracing::debug!(transport, user_id = caller.map(|c| c.user_id), reason, "closing link");
    drop(in_flight);
    drop(registration);
    drop(online);
    // What is queued (the answer to the last request, a refusal) goes out, then the close.
    if !outbox.broken {
        let drain = async {
            std::future::poll_fn(|cx| outbox.poll_write(&mut writer, cx)).await?;
            futures_util::SinkExt::close(&mut writer).await.map_err(|e| e.to_string())
        };
        if timeout(config.drain_timeout.min(config.write_timeout), drain).await.is_err() {
            tracing::debug!(transport, "the last writes did not drain in time");
        }
    }
}

/// Frames waiting to be written, and whether the sink has unflushed ones.
#[derive(Default)]
struct Outbox {
    /// No allocation when empty: it is given up after every write.
    frames: VecDeque<Frame>,
    /// Frames were handed to the sink and not flushed yet.
    unflushed: bool,
    /// The sink failed or timed out; nothing more is written to it.
    broken: bool,
}

impl Outbox {
    fn is_pending(&self) -> bool {
        !self.frames.is_empty() || self.unflushed
    }

    fn push(&mut self, frame: Frame, deadlines: &mut Deadlines) {
        self.frames.push_back(frame);
        deadlines.writing_since.get_or_insert_with(Instant::now);
    }

    /// Queues one NOTIFY per data type with news waiting (newest version only), then the
    /// events waiting, oldest first.
    fn take_pushes(
        &mut self,
        connection: &Connection,
        pushes: &metrics::Counter,
        deadlines: &mut Deadlines,
    ) {
        let pending = connection.take_pending();
        pushes.increment(pending.len() as u64);
        for (r#type, version) in pending {
            let body = Notify { r#type, version }.encode_to_vec();
            self.push(Frame::push(Command::Notify as u16, Bytes::from(body)), deadlines);
        }
        for event in connection.take_events() {
            self.push(Frame::push(Command::Event as u16, event), deadlines);
        }
    }

    /// Hands every queued frame to the sink and flushes it; ready once all is written.
    fn poll_write<W>(&mut self, sink: &mut W, cx: &mut Context<'_>) -> Poll<Result<(), String>>
    where
        W: Sink<Frame> + Unpin,
        W::Error: std::fmt::Display,
    {
        let mut sink = Pin::new(sink);
        while !self.frames.is_empty() {
            ready!(sink.as_mut().poll_ready(cx)).map_err(|e| e.to_string())?;
            let frame = self.frames.pop_front().expect("not empty");
            sink.as_mut().start_send(frame).map_err(|e| e.to_string())?;
            self.unflushed = true;
        }
        // Given up once empty: an idle connection holds no queue.
        self.frames = VecDeque::new();
        if self.unflushed {
            ready!(sink.as_mut().poll_flush(cx)).map_err(|e| e.to_string())?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// A label must be static: a version this table does not know yet shows as "other".
fn version_label(protocol_version: u32) -> &'static str {
    match protocol_version {
        1 => "1",
        2 => "2",
        3 => "3",
        _ => "other",
    }
}

/// One request, with what its connection knows when it comes.
struct Request {
    peer: Option<IpAddr>,
    /// None before AUTH.
    caller: Option<Caller>,
    /// The connection's idle timeout now: three of its heartbeat intervals.
    idle: std::time::Duration,
    frame: Frame,
}

/// Runs one request of a connection.
async fn handle(shared: Arc<LinkShared>, transport: &'static str, request: Request) -> Handled {
    let Request { peer, caller, idle, frame } = request;
    let answered =
        |answer, flow, signed_in, heartbeat| Handled { answer, flow, signed_in, heartbeat };
    let Some(command) = Command::from_u16(frame.command) else {
        let status =
            Status::new(Code::UnknownCommand, format!("unknown command {}", frame.command));
        let answer = error_frame(frame.command, frame.seq, &status);
        return answered(answer, Flow::Continue, None, None);
    };
    let mut ctx = shared.request_ctx(command, peer);
    ctx.caller = caller;
    let mut signed_in = None;
    let mut heartbeat = None;
    let call = async {
        match command {
            Command::Auth if caller.is_some() => {
                Err(Status::new(Code::FailedPrecondition, "already authenticated"))
            }
            Command::Auth => {
                let _admitted = shared.auth_gate.enter().map_err(|wait| Status {
                    retry_after: Some(wait),
                    ..Status::new(Code::Overloaded, "too many sign-ins at once; try again later")
                })?;
                let (body, device) = authenticate(&shared, transport, &ctx, &frame.body).await?;
                signed_in = Some(device);
                Ok(body)
            }
            // On an authenticated link a PING may set the connection's heartbeat (§5.4).
            Command::Ping if caller.is_some() => {
                let request: PingRequest = dispatch::decode(&frame.body, Format::Protobuf)?;
                let wanted = std::time::Duration::from_secs(request.heartbeat_interval_s.into());
                let interval = if wanted.is_zero() {
                    idle / 3
                } else {
                    let interval = shared.config.heartbeat_within_range(wanted);
                    heartbeat = Some(interval);
                    interval
                };
                let answer = PingResponse {
                    server_time_ms: missive_rpc::unix_ms(),
                    heartbeat_interval_s: interval.as_secs() as u32,
                };
                Ok(Bytes::from(answer.encode_to_vec()))
            }
            _ if caller.is_none() && !command.allowed_anonymous() => {
                Err(Status::new(Code::Unauthenticated, "authenticate first"))
            }
            _ => shared.dispatcher.dispatch(&ctx, command, &frame.body, Format::Protobuf).await,
        }
    };
    let timeout = shared.config.request_timeout;
    let result = shared.dispatcher.run(ctx.request_id, command, timeout, call).await;
    match result {
        Ok(body) => {
            let flow =
                if command == Command::Logout { Flow::Close("logged out") } else { Flow::Continue };
            let answer = Frame::response(frame.command, frame.seq, 0, body);
            answered(answer, flow, signed_in, heartbeat)
        }
        Err(status) => {
            answered(error_frame(frame.command, frame.seq, &status), Flow::Continue, None, None)
        }
    }
}

/// AUTH: checks the token, registers the device here, and answers.
async fn authenticate(
    shared: &LinkShared,
    transport: &'static str,
    ctx: &Ctx,
    body: &[u8],
) -> Result<(Bytes, (Caller, Registration)), Status> {
    let request: AuthRequest = dispatch::decode(body, Format::Protobuf)?;
    let protocol_version = missive_proto::negotiate_protocol(request.protocol_version);
    let request = missive_proto::internal::AuthenticateRequest { token: request.token };
    let session = shared.dispatcher.api().authenticate(ctx, request).await?;
    let caller =
        Caller { user_id: session.user_id, device_id: session.device_id, protocol_version };
    let registration = shared.registry.register(caller.user_id, caller.device_id, protocol_version);
    tracing::debug!(
        transport,
        user_id = caller.user_id,
        device_id = caller.device_id,
        "authenticated"
    );
    let config = &shared.config;
    let seconds = |d: std::time::Duration| d.as_secs() as u32;
    let mut answer = AuthResponse {
        user_id: caller.user_id,
        device_id: caller.device_id,
        heartbeat_interval_s: seconds(config.heartbeat_interval),
        ..Default::default()
    };
    // Version 1 has no such fields: its clients get the answer they knew.
    if protocol_version > 1 {
        answer.protocol_version = protocol_version;
        answer.heartbeat_min_s = seconds(config.heartbeat_within_range(std::time::Duration::ZERO));
        answer.heartbeat_max_s = seconds(config.heartbeat_within_range(std::time::Duration::MAX));
    }
    let body = answer.encode_to_vec();
    Ok((Bytes::from(body), (caller, registration)))
}

fn error_frame(command: u16, seq: u32, status: &Status) -> Frame {
    Frame::response(
        command,
        seq,
        status.code as u16,
        dispatch::error_body(status, Format::Protobuf),
    )
}

/// The answer to a frame that cannot be served; the connection closes after it.
fn refusal(error: &LinkError) -> Frame {
    match error {
        LinkError::Frame(FrameError::TooLarge { header, max }) => error_frame(
            header.command,
            header.seq,
            &Status::new(Code::FrameTooLarge, format!("frame body exceeds {max} bytes")),
        ),
        other => error_frame(0, 0, &Status::new(Code::BadFrame, other.to_string())),
    }
}

/// What `wait` resolves to once the link has authenticated; before, never.
async fn when_registered<'a, F: Future>(
    connection: Option<&'a Connection>,
    wait: impl FnOnce(&'a Connection) -> F,
) -> F::Output {
    match connection {
        Some(connection) => wait(connection).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
