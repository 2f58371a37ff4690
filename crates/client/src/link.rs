//! The transports under a client: the long link (TCP or WebSocket) and the short link (HTTP).

use crate::ClientError;
use crate::heartbeat::{self, HeartbeatPolicy, keep_heartbeat};
use crate::trust::Trust;
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use missive_proto::Command;
use missive_proto::client::Error as ErrorBody;
use missive_proto::client::{Event, PingRequest, PingResponse};
use missive_proto::frame::{CodecError, Frame, FrameCodec, Kind};
use missive_rpc::Code;
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// How long a request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted from the server; far above what the server sends (a sync answer
/// stays near 256 KiB) so that a server with a larger frame limit is still understood.
const ANSWER_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Requests queued for writing at most.
const OUTBOUND_FRAMES_MAX: usize = 256;
/// Events kept for the application at most; newer ones are dropped while it is this far
/// behind (an event is worthless once late).
const EVENTS_KEPT_MAX: usize = 256;

/// Where a server listens, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `tcp://HOST:PORT`: the long link in plain TCP.
    Tcp(String),
    /// `tls://HOST:PORT`: the long link in TLS.
    TcpTls(String),
    /// `ws://HOST:PORT/ws` or `wss://HOST:PORT/ws`.
    WebSocket(String),
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    Http(String),
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadUrl(url.to_string());
        let host = |rest: &str| {
            let host = rest.trim_end_matches('/');
            if host.is_empty() { Err(bad()) } else { Ok(host.to_string()) }
        };
        if let Some(rest) = url.strip_prefix("tcp://") {
            return host(rest).map(Endpoint::Tcp);
        }
        if let Some(rest) = url.strip_prefix("tls://") {
            return host(rest).map(Endpoint::TcpTls);
        }
        if url.starts_with("ws://") || url.starts_with("wss://") {
            return Ok(Endpoint::WebSocket(url.to_string()));
        }
        for scheme in ["http://", "https://"] {
            if let Some(rest) = url.strip_prefix(scheme) {
                return host(rest).map(|base| Endpoint::Http(format!("{scheme}{base}")));
            }
        }
        Err(bad())
    }
}

pub(crate) enum Link {
    Long(LongLink),
    Short(ShortLink),
}

impl Link {
    /// Connects; the short link declares `protocol_version` on every request (a long link
    /// declares it once, in AUTH).
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        protocol_version: u32,
        trust: &Trust,
    ) -> Result<Link, ClientError> {
        let transport = |e: &(dyn std::error::Error + 'static)| ClientError::transport(e);
        match endpoint {
            Endpoint::Tcp(address) => {
                let stream =
                    tokio::net::TcpStream::connect(address).await.map_err(|e| transport(&e))?;
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                Ok(Link::Long(LongLink::over_bytes(read, write)))
            }
            Endpoint::TcpTls(address) => {
                let (read, write) = tokio::io::split(trust.connect(address, false).await?);
                Ok(Link::Long(LongLink::over_bytes(read, write)))
            }
            Endpoint::WebSocket(url) => {
                let uri: tokio_tungstenite::tungstenite::http::Uri =
                    url.parse().map_err(|_| ClientError::BadUrl(url.clone()))?;
                let secure = uri.scheme_str() == Some("wss");
                let host = uri.host().ok_or_else(|| ClientError::BadUrl(url.clone()))?;
                let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
                let address = format!("{host}:{port}");
                let socket = if secure {
                    let stream = trust.connect(&address, true).await?;
                    let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                        .await
                        .map_err(|e| transport(&e))?;
                    LongLink::over_websocket(socket)
                } else {
                    let stream = tokio::net::TcpStream::connect(&address)
                        .await
                        .map_err(|e| transport(&e))?;
                    let _ = stream.set_nodelay(true);
                    let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                        .await
                        .map_err(|e| transport(&e))?;
                    LongLink::over_websocket(socket)
                };
                Ok(Link::Long(socket))
            }
            Endpoint::Http(base) => Ok(Link::Short(ShortLink {
                base: base.clone(),
                http: trust.http_client(None),
                protocol_version,
            })),
        }
    }

    pub(crate) fn is_long(&self) -> bool {
        matches!(self, Link::Long(_))
    }

    pub(crate) async fn call(
        &self,
        command: Command,
        body: Bytes,
        token: Option<&str>,
    ) -> Result<Bytes, ClientError> {
        match self {
            Link::Long(link) => link.call(command as u16, body).await,
            Link::Short(link) => link.call(command.name(), body, token).await,
        }
    }

    pub(crate) fn start_heartbeat(&self, policy: Arc<Mutex<HeartbeatPolicy>>) {
        if let Link::Long(link) = self {
            link.start_heartbeat(policy);
        }
    }

    pub(crate) async fn wait_for_notify(&self) -> Result<(), ClientError> {
        match self {
            Link::Long(link) => link.wait_for_notify().await,
            Link::Short(_) => std::future::pending().await,
        }
    }

    pub(crate) async fn next_event(&self) -> Result<Event, ClientError> {
        match self {
            Link::Long(link) => link.next_event().await,
            Link::Short(_) => Err(ClientError::BadArgument("events need a long link".into())),
        }
    }
}

/// The exact code an HTTP error answer names in its code header.
pub(crate) fn answer_code(response: &reqwest::Response) -> Option<Code> {
    let name = response.headers().get(missive_proto::CODE_HEADER)?.to_str().ok()?;
    Code::from_name(name)
}

fn server_error(status: u16, body: &[u8]) -> ClientError {
    let error = ErrorBody::decode(body).unwrap_or_default();
    let code = Code::from_u16(status).unwrap_or(Code::Internal);
    let retry_after = Duration::from_millis(error.retry_after_ms);
    ClientError::Server { code, message: error.message, retry_after }
}

type Waiters = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Frame>>>>>;

/// What a request needs of its link: the queue to the writer and the table of answers.
#[derive(Clone)]
struct Exchanger {
    outbound: mpsc::Sender<Frame>,
    /// Answers awaited, by sequence number; `None` once the connection is gone.
    waiters: Waiters,
    /// Why the server closed the connection, when it said so (an operator signed this
    /// device out, the account was disabled): later calls fail with it.
    farewell: Arc<Mutex<Option<ClientError>>>,
}

impl Exchanger {
    fn closed_error(&self) -> ClientError {
        self.farewell.lock().expect("farewell").clone().unwrap_or(ClientError::Closed)
    }

    /// Sends `request` and waits up to `patience` for the answer with its seq.
    async fn exchange(&self, request: Frame, patience: Duration) -> Result<Bytes, ClientError> {
        let seq = request.seq;
        let (reply, answer) = oneshot::channel();
        match self.waiters.lock().expect("waiters").as_mut() {
            Some(waiters) => waiters.insert(seq, reply),
            None => return Err(self.closed_error()),
        };
        self.outbound.send(request).await.map_err(|_| self.closed_error())?;
        let frame = match tokio::time::timeout(patience, answer).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => return Err(self.closed_error()),
            Err(_) => {
                if let Some(waiters) = self.waiters.lock().expect("waiters").as_mut() {
                    waiters.remove(&seq);
                }
                return Err(ClientError::Timeout(patience));
            }
        };
        if frame.status != 0 {
            return Err(server_error(frame.status, &frame.body));
        }
        Ok(frame.body)
    }
}

/// A long link: requests matched to answers by sequence number; notifies wake waiters.
pub(crate) struct LongLink {
    exchanger: Exchanger,
    next_seq: AtomicU32,
    notified: Arc<Notify>,
    /// The server's events (typing, presence), oldest first.
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    closed: CancellationToken,
}

impl LongLink {
    /// The long link over a byte stream's halves (TCP, or TLS over TCP), cut into frames.
    fn over_bytes<R, W>(read: R, write: W) -> LongLink
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let codec = FrameCodec::new(ANSWER_BYTES_MAX);
        let reader = FramedRead::with_capacity(read, codec.clone(), 4096)
            .map(|r| r.map_err(|e| e.to_string()));
        let writer =
            SinkExt::<Frame>::sink_map_err(FramedWrite::new(write, codec), |e: CodecError| {
                e.to_string()
            });
        LongLink::start(reader, writer)
    }

    /// The long link over a WebSocket: one frame per binary message.
    fn over_websocket<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> LongLink
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = socket.split();
        let reader = stream.filter_map(|message| async move {
            match message {
                Ok(WsMessage::Binary(bytes)) => {
                    Some(Frame::decode_exact(&bytes, ANSWER_BYTES_MAX).map_err(|e| e.to_string()))
                }
                Ok(WsMessage::Close(_)) => Some(Err("closed".to_string())),
                Ok(_) => None,
                Err(e) => Some(Err(e.to_string())),
            }
        });
        let writer = sink.sink_map_err(|e| e.to_string()).with(|frame: Frame| async move {
            Ok::<_, String>(WsMessage::Binary(frame.to_bytes()))
        });
        LongLink::start(Box::pin(reader), Box::pin(writer))
    }

    fn start<R, W>(mut reader: R, mut writer: W) -> LongLink
    where
        R: Stream<Item = Result<Frame, String>> + Unpin + Send + 'static,
        W: Sink<Frame, Error = String> + Unpin + Send + 'static,
    {
        let (outbound, mut queued) = mpsc::channel::<Frame>(OUTBOUND_FRAMES_MAX);
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let notified = Arc::new(Notify::new());
        let (event_sender, events) = mpsc::channel(EVENTS_KEPT_MAX);
        let closed = CancellationToken::new();
        let farewell = Arc::new(Mutex::new(None));
        // When either side of the connection ends, every waiting and later call fails at once.
        let shut = {
            let (waiters, notified, closed) = (waiters.clone(), notified.clone(), closed.clone());
            move || {
                waiters.lock().expect("waiters").take();
                closed.cancel();
                notified.notify_waiters();
            }
        };
        {
            let closed = closed.clone();
            let shut = shut.clone();
            tokio::spawn(async move {
                let mut broken = false;
                loop {
                    tokio::select! {
                        frame = queued.recv() => match frame {
                            Some(frame) => if writer.send(frame).await.is_err() {
                                broken = true;
                                break;
                            },
                            None => break,
                        },
                        () = closed.cancelled() => break,
                    }
                }
                shut();
                // A sink that failed is done: polling it again panics (`sink_map_err`), and
                // there is nothing left to close.
                if !broken {
                    let _ = writer.close().await;
                }
            });
        }
        {
            let waiters = waiters.clone();
            let notified = notified.clone();
            let closed = closed.clone();
            let farewell = farewell.clone();
            tokio::spawn(async move {
                loop {
                    let frame = tokio::select! {
                        next = reader.next() => match next {
                            Some(Ok(frame)) => frame,
                            _ => break,
                        },
                        () = closed.cancelled() => break,
                    };
                    match frame.kind {
                        // An error answering no request: the server closes the link after it.
                        Kind::Response
                            if frame.seq == 0 && frame.command == 0 && frame.status != 0 =>
                        {
                            *farewell.lock().expect("farewell") =
                                Some(server_error(frame.status, &frame.body));
                        }
                        Kind::Response => {
                            let waiter = waiters
                                .lock()
                                .expect("waiters")
                                .as_mut()
                                .and_then(|w| w.remove(&frame.seq));
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(frame);
                            }
                        }
                        Kind::Push if frame.command == Command::Notify as u16 => {
                            notified.notify_one()
                        }
                        Kind::Push if frame.command == Command::Event as u16 => {
                            // An undecodable or unread event is dropped, as the server would.
                            if let Ok(event) = Event::decode(frame.body) {
                                let _ = event_sender.try_send(event);
                            }
                        }
                        _ => {}
                    }
                }
                shut();
            });
        }
        LongLink {
            exchanger: Exchanger { outbound, waiters, farewell },
            next_seq: AtomicU32::new(1),
            notified,
            events: tokio::sync::Mutex::new(events),
            closed,
        }
    }

    /// [`ClientError::Closed`], or why the server closed the link if it said so.
    fn closed_error(&self) -> ClientError {
        self.exchanger.closed_error()
    }

    async fn call(&self, command: u16, body: Bytes) -> Result<Bytes, ClientError> {
        // Sequence 0 belongs to heartbeats.
        let seq = loop {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            if seq != 0 {
                break seq;
            }
        };
        self.exchanger.exchange(Frame::request(command, seq, body), REQUEST_TIMEOUT).await
    }

    /// Keeps the link's heartbeat as `policy` says (docs/protocol.md §5.4), with seq 0, one
    /// PING at a time; a PING left unanswered closes the link, for the path has forgotten it.
    fn start_heartbeat(&self, policy: Arc<Mutex<HeartbeatPolicy>>) {
        let exchanger = self.exchanger.clone();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            let ping = |next: Duration| {
                let exchanger = exchanger.clone();
                async move {
                    let request = PingRequest { heartbeat_interval_s: next.as_secs() as u32 };
                    let frame =
                        Frame::request(Command::Ping as u16, 0, request.encode_to_vec().into());
                    let answer = exchanger.exchange(frame, heartbeat::ANSWER_TIMEOUT).await.ok()?;
                    let answer = PingResponse::decode(answer).ok()?;
                    Some(Duration::from_secs(answer.heartbeat_interval_s.into()))
                }
            };
            tokio::select! {
                () = keep_heartbeat(&policy, ping) => closed.cancel(),
                () = closed.cancelled() => {}
            }
        });
    }

    async fn wait_for_notify(&self) -> Result<(), ClientError> {
        if self.closed.is_cancelled() {
            return Err(self.closed_error());
        }
        tokio::select! {
            () = self.notified.notified() => Ok(()),
            () = self.closed.cancelled() => Err(self.closed_error()),
        }
    }
}

impl LongLink {
    async fn next_event(&self) -> Result<Event, ClientError> {
        let mut events = self.events.lock().await;
        tokio::select! {
            event = events.recv() => event.ok_or_else(|| self.closed_error()),
            () = self.closed.cancelled() => Err(self.closed_error()),
        }
    }
}

impl Drop for LongLink {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// The short link: one HTTP POST per command.
pub(crate) struct ShortLink {
    base: String,
    http: reqwest::Client,
    protocol_version: u32,
}

impl ShortLink {
    async fn call(
        &self,
        name: &str,
        body: Bytes,
        token: Option<&str>,
    ) -> Result<Bytes, ClientError> {
        let mut request = self
            .http
            .post(format!("{}/v1/{name}", self.base))
            .header("content-type", "application/x-protobuf")
            .header(missive_proto::PROTOCOL_HEADER, self.protocol_version.to_string())
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.map_err(|e| ClientError::transport(&e))?;
        let status = response.status();
        let code = answer_code(&response);
        let body = response.bytes().await.map_err(|e| ClientError::transport(&e))?;
        if status.is_success() {
            return Ok(body);
        }
        let code = code.map_or(Code::Internal as u16, |c| c as u16);
        Err(server_error(code, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:7300").unwrap(),
            Endpoint::Tcp("127.0.0.1:7300".into())
        );
        assert_eq!(Endpoint::parse("http://h:1/").unwrap(), Endpoint::Http("http://h:1".into()));
        assert_eq!(
            Endpoint::parse("ws://h:1/ws").unwrap(),
            Endpoint::WebSocket("ws://h:1/ws".into())
        );
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("tcp://").is_err());
    }
}
