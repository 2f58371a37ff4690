//! One long-link connection, whatever carries its frames (TCP or WebSocket).
//!
//! The reader side runs requests one at a time, in order, so a connection never has more than
//! one request in the logic layer; its answers and the pushes go through a writer task with a
//! bounded queue. A connection that does not authenticate in time, stays silent for three
//! heartbeat intervals (a stall in the middle of a frame counts as silence), sends a malformed
//! or oversized frame, or does not take its writes in time is closed, alone.

use crate::AccessConfig;
use crate::dispatch::{self, Dispatcher, Format};
use crate::registry::{Connection, DATA_TYPES, EVENTS_QUEUED_MAX, Registration, Registry};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use missive_proto::Command;
use missive_proto::client::{AuthRequest, AuthResponse, Notify};
use missive_proto::frame::{Frame, FrameError, Kind};
use missive_rpc::{Caller, Code, Ctx, Status};
use prost::Message;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

/// Frames gathered into one write at most.
const WRITE_BATCH_FRAMES_MAX: usize = 32;

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
}

impl LinkShared {
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

struct Link<'a> {
    shared: &'a LinkShared,
    transport: &'static str,
    /// The client's address, for the limits counted per address.
    peer: Option<IpAddr>,
    caller: Option<Caller>,
    registration: Option<Registration>,
    announce: watch::Sender<Option<Arc<Connection>>>,
    /// Counts this device in `missive_online_devices` (by transport and protocol version)
    /// while it is registered.
    _online: Option<Held>,
}

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

/// Serves one connection, opened at `opened` (the time to authenticate counts from then, a
/// TLS handshake included), until the peer leaves, it misbehaves, or `shutdown` fires.
pub(crate) async fn serve<R, W>(
    shared: Arc<LinkShared>,
    transport: &'static str,
    (peer, opened): (Option<IpAddr>, Instant),
    mut reader: R,
    writer: W,
    shutdown: CancellationToken,
) where
    R: Stream<Item = Result<Frame, LinkError>> + Unpin + Send,
    W: Sink<Frame> + Unpin + Send + 'static,
    W::Error: std::fmt::Display,
{
    let config = &shared.config;
    let (queue, queued) = mpsc::channel(config.send_queue_frames_max);
    let (announce, announced) = watch::channel(None);
    let writer = tokio::spawn(write_loop(writer, queued, announced, config.write_timeout));
    let connected = Held::new(metrics::gauge!("missive_connections", "transport" => transport));

    let mut link = Link {
        shared: &shared,
        transport,
        peer,
        caller: None,
        registration: None,
        announce,
        _online: None,
    };
    let auth_deadline = opened + config.auth_timeout;
    let mut deadline = auth_deadline;
    let reason = loop {
        let connection = link.registration.as_ref().map(|r| &*r.connection);
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break "server shutting down",
            // The writer gave up (a write timed out or failed): no answer can reach the peer.
            () = queue.closed() => break "writer stopped",
            status = when_registered(connection, Connection::kicked) => {
                let _ = queue.send(error_frame(0, 0, &status)).await;
                break "signed out by an operator";
            }
            next = timeout_at(deadline, reader.next()) => next,
        };
        let frame = match next {
            Err(_) if link.caller.is_none() => break "not authenticated in time",
            Err(_) => break "idle past three heartbeat intervals",
            Ok(None) => break "closed by peer",
            Ok(Some(Err(LinkError::Transport(error)))) => {
                tracing::debug!(transport, %error, "transport error");
                break "transport error";
            }
            Ok(Some(Err(error))) => {
                tracing::info!(transport, %error, "refusing bad frame");
                let _ = queue.send(refusal(&error)).await;
                break "bad frame";
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if frame.kind != Kind::Request {
            let status = Status::new(Code::BadFrame, "clients send request frames only");
            let _ = queue.send(error_frame(frame.command, frame.seq, &status)).await;
            break "bad frame kind";
        }
        let (response, flow) = link.handle(frame).await;
        if queue.send(response).await.is_err() {
            break "writer stopped";
        }
        if let Flow::Close(reason) = flow {
            break reason;
        }
        deadline = if link.caller.is_some() {
            Instant::now() + config.idle_timeout()
        } else {
            auth_deadline
        };
    };
    tracing::debug!(transport, user_id = link.caller.map(|c| c.user_id), reason, "closing link");
    // The queue closes first, so the writer never sees the announce channel close alone.
    drop(queue);
    drop(link);
    // The writer sends what is queued (the answer to the last request), then closes.
    if timeout(config.drain_timeout, writer).await.is_err() {
        tracing::debug!(transport, "writer did not drain in time");
    }
    drop(connected);
}

impl Link<'_> {
    async fn handle(&mut self, frame: Frame) -> (Frame, Flow) {
        let Some(command) = Command::from_u16(frame.command) else {
            let status =
                Status::new(Code::UnknownCommand, format!("unknown command {}", frame.command));
            return (error_frame(frame.command, frame.seq, &status), Flow::Continue);
        };
        let shared = self.shared;
        let mut ctx = shared.request_ctx(command, self.peer);
        ctx.caller = self.caller;
        let call = async {
            if command == Command::Auth {
                self.authenticate(&ctx, &frame.body).await
            } else if self.caller.is_none() && !command.allowed_anonymous() {
                Err(Status::new(Code::Unauthenticated, "authenticate first"))
            } else {
                shared.dispatcher.dispatch(&ctx, command, &frame.body, Format::Protobuf).await
            }
        };
        let timeout = shared.config.request_timeout;
        let result = shared.dispatcher.run(ctx.request_id, command, timeout, call).await;
        match result {
            Ok(body) => {
                let flow = if command == Command::Logout {
                    Flow::Close("logged out")
                } else {
                    Flow::Continue
                };
                (Frame::response(frame.command, frame.seq, 0, body), flow)
            }
            Err(status) => (error_frame(frame.command, frame.seq, &status), Flow::Continue),
        }
    }

    async fn authenticate(&mut self, ctx: &Ctx, body: &[u8]) -> Result<Bytes, Status> {
        if self.caller.is_some() {
            return Err(Status::new(Code::FailedPrecondition, "already authenticated"));
        }
        let request: AuthRequest = dispatch::decode(body, Format::Protobuf)?;
        let protocol_version = missive_proto::negotiate_protocol(request.protocol_version);
        let request = missive_proto::internal::AuthenticateRequest { token: request.token };
        let session = self.shared.dispatcher.api().authenticate(ctx, request).await?;
        let caller =
            Caller { user_id: session.user_id, device_id: session.device_id, protocol_version };
        let registration =
            self.shared.registry.register(caller.user_id, caller.device_id, protocol_version);
        let _ = self.announce.send(Some(registration.connection.clone()));
        self.registration = Some(registration);
        // A label must be static: a version this table does not know yet shows as "other".
        let version = match protocol_version {
            1 => "1",
            2 => "2",
            3 => "3",
            _ => "other",
        };
        self._online = Some(Held::new(metrics::gauge!(
            "missive_online_devices", "transport" => self.transport, "protocol_version" => version
        )));
        self.caller = Some(caller);
        tracing::debug!(
            transport = self.transport,
            user_id = caller.user_id,
            device_id = caller.device_id,
            "authenticated"
        );
        let heartbeat_interval_s = self.shared.config.heartbeat_interval.as_secs() as u32;
        Ok(Bytes::from(
            AuthResponse {
                user_id: caller.user_id,
                device_id: caller.device_id,
                heartbeat_interval_s,
                // Version 1 has no such field: its clients get the answer they knew.
                protocol_version: if protocol_version > 1 { protocol_version } else { 0 },
            }
            .encode_to_vec(),
        ))
    }
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

async fn write_loop<W>(
    mut sink: W,
    mut queued: mpsc::Receiver<Frame>,
    mut announced: watch::Receiver<Option<Arc<Connection>>>,
    write_timeout: std::time::Duration,
) where
    W: Sink<Frame> + Unpin,
    W::Error: std::fmt::Display,
{
    let pushes = metrics::counter!("missive_notify_pushes_total");
    // The connection, once the link has authenticated; announced once.
    let mut connection: Option<Arc<Connection>> = None;
    let mut frames = Vec::with_capacity(WRITE_BATCH_FRAMES_MAX + DATA_TYPES + EVENTS_QUEUED_MAX);
    loop {
        tokio::select! {
            biased;
            frame = queued.recv() => match frame {
                Some(frame) => frames.push(frame),
                None => break,
            },
            () = when_registered(connection.as_deref(), Connection::notified) => {}
            changed = announced.changed() => {
                match changed {
                    Ok(()) => connection = announced.borrow_and_update().clone(),
                    // The reader is gone; the queue closes right after.
                    Err(_) => announced.mark_unchanged(),
                }
                continue;
            }
        }
        // Whatever else is ready goes out in the same write.
        while frames.len() < WRITE_BATCH_FRAMES_MAX {
            match queued.try_recv() {
                Ok(frame) => frames.push(frame),
                Err(_) => break,
            }
        }
        if let Some(connection) = &connection {
            push_notifies(connection, &pushes, &mut frames);
            push_events(connection.take_events(), &mut frames);
        }
        if frames.is_empty() {
            continue;
        }
        let write = async {
            for frame in frames.drain(..) {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        match timeout(write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "write failed");
                return;
            }
            Err(_) => {
                tracing::info!("client does not take its writes; closing");
                return;
            }
        }
    }
    let _ = timeout(write_timeout, sink.close()).await;
}

/// Adds one NOTIFY per data type with news waiting (newest version only) to `frames`.
fn push_notifies(connection: &Connection, pushes: &metrics::Counter, frames: &mut Vec<Frame>) {
    let pending = connection.take_pending();
    if pending.is_empty() {
        return;
    }
    pushes.increment(pending.len() as u64);
    frames.extend(pending.into_iter().map(|(r#type, version)| {
        let body = Notify { r#type, version }.encode_to_vec();
        Frame::push(Command::Notify as u16, Bytes::from(body))
    }));
}

/// Adds one EVENT frame per event waiting, oldest first.
fn push_events(events: VecDeque<Bytes>, frames: &mut Vec<Frame>) {
    frames.extend(events.into_iter().map(|event| Frame::push(Command::Event as u16, event)));
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
