//! Calls between processes: gRPC over HTTP/2 (tonic), carrying the same protobuf messages as
//! in-process calls, with the [`Ctx`] in request metadata.
//!
//! - The deadline travels as gRPC's `grpc-timeout`; the callee gets it back in its `Ctx`, and
//!   tonic cancels the handler when it passes.
//! - The request id, the business priority and the authenticated caller travel as
//!   `x-missive-request-id`, `x-missive-priority` and `x-missive-caller` (`user.device.proto`);
//!   a client request's address and an operator's as `x-missive-client-address` and
//!   `x-missive-operator`. All of them are covered by the call's signature.
//! - A [`Status`] travels as the nearest gRPC code plus `x-missive-code` (the exact code), so
//!   both ends see the same closed set of codes.
//!
//! **Discovery and balancing.** A [`Client`] is given a list of endpoints per service (from
//! configuration). Calls without a routing key go round robin; calls with one (the user id, for
//! services whose state is per user) go to the endpoint that ranks highest for that key by
//! rendezvous hashing, so a user's calls always meet the same node, and only that node's users
//! move when the list changes. An endpoint that cannot be reached is skipped for the next in
//! rank. Channels connect lazily and reconnect by themselves.
//!
//! **Security.** Every call is signed with the deployment's [`NodeKey`] and served only when
//! its signature holds. Over `https://` endpoints the calls also travel in TLS: the listener
//! presents the node's certificate ([`Routes::serve`] with an acceptor) and callers check it
//! against Mozilla's roots and the deployment's CA ([`Trust`]).

use crate::{Caller, Code, Ctx, Priority, Status};
use bytes::{Buf, BufMut, Bytes};
use hmac::Hmac;
use sha2::Sha256;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::Instrument as _;

const REQUEST_ID: &str = "x-missive-request-id";
const PRIORITY: &str = "x-missive-priority";
const CALLER: &str = "x-missive-caller";
const CODE: &str = "x-missive-code";
const RETRY_AFTER: &str = "x-missive-retry-after-ms";
const CLIENT_ADDRESS: &str = "x-missive-client-address";
const OPERATOR: &str = "x-missive-operator";
/// `<unix ms>.<hex HMAC-SHA256>`: the calling node's proof that it holds the deployment's key.
const NODE_AUTH: &str = "x-missive-node-auth";
/// How far a call's signing time may be from the callee's clock.
const NODE_AUTH_SKEW_MS: i64 = 60_000;

/// The deployment's shared key: every node of one deployment holds it, signs each call it
/// makes with it and serves only calls signed with it. The caller identity and the rest of
/// a call's context are trusted because only a node could have signed them.
#[derive(Clone)]
pub struct NodeKey(Arc<[u8; 32]>);

impl NodeKey {
    /// The key derived from `secret` (the content of the deployment's secret file).
    pub fn from_secret(secret: &[u8]) -> NodeKey {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"missive node key\n");
        hasher.update(secret);
        NodeKey(Arc::new(hasher.finalize().into()))
    }

    /// A key no one else holds (a process that only talks to itself, and tests).
    pub fn random() -> NodeKey {
        NodeKey(Arc::new(rand::random()))
    }

    /// A signature of one call: of its time, path and context (`head`, checked before the
    /// body is read, so a stranger's body is never read), and of all that and its body.
    fn sign(
        &self,
        part: &[u8],
        at_ms: i64,
        path: &str,
        metadata: &MetadataMap,
        body: &[u8],
    ) -> Hmac<Sha256> {
        use hmac::Mac as _;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_slice()).expect("any key size");
        mac.update(part);
        mac.update(b"\n");
        mac.update(at_ms.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        for key in [REQUEST_ID, PRIORITY, CALLER, CLIENT_ADDRESS, OPERATOR, "grpc-timeout"] {
            mac.update(b"\n");
            mac.update(metadata.get(key).map_or(&b""[..], |v| v.as_bytes()));
        }
        mac.update(b"\n");
        mac.update(body);
        mac
    }

    fn stamp(&self, path: &str, metadata: &mut MetadataMap, body: &[u8]) {
        use hmac::Mac as _;
        let at_ms = crate::unix_ms();
        let head = self.sign(b"head", at_ms, path, metadata, b"").finalize().into_bytes();
        let full = self.sign(b"full", at_ms, path, metadata, body).finalize().into_bytes();
        let value = format!("{at_ms}.{}.{}", hex(&head), hex(&full));
        metadata.insert(NODE_AUTH, value.parse().expect("ascii metadata"));
    }

    /// Whether a call's head was signed with this key, recently.
    fn verify_head(&self, path: &str, metadata: &MetadataMap) -> bool {
        self.verify(path, metadata, None)
    }

    /// Whether a whole call, body included, was signed with this key, recently.
    fn verify_call(&self, path: &str, metadata: &MetadataMap, body: &[u8]) -> bool {
        self.verify(path, metadata, Some(body))
    }

    fn verify(&self, path: &str, metadata: &MetadataMap, body: Option<&[u8]>) -> bool {
        use hmac::Mac as _;
        let value = metadata.get(NODE_AUTH).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mut parts = value.split('.');
        let (Some(at), Some(head), Some(full), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(at_ms) = at.parse::<i64>() else { return false };
        if (crate::unix_ms() - at_ms).abs() > NODE_AUTH_SKEW_MS {
            return false;
        }
        let (part, signature, body) = match body {
            None => (&b"head"[..], head, &b""[..]),
            Some(body) => (&b"full"[..], full, body),
        };
        unhex(signature).is_some_and(|signature| {
            self.sign(part, at_ms, path, metadata, body).verify_slice(&signature).is_ok()
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..32).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

fn not_a_node() -> Status {
    Status::new(Code::Unauthenticated, "not a node of this deployment")
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("service {service} has no endpoints")]
    NoEndpoints { service: &'static str },
    #[error("bad endpoint {url:?} for {service}: {source}")]
    BadEndpoint { service: &'static str, url: String, source: tonic::transport::Error },
    #[error("serving rpc: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What a node's calls to `https://` endpoints trust: Mozilla's roots, and the deployment's
/// own CA when one is given.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    ca_pem: Option<Vec<u8>>,
}

impl Trust {
    /// Trusts the CA certificates in `pem` besides Mozilla's roots.
    pub fn with_ca_pem(pem: Vec<u8>) -> Trust {
        Trust { ca_pem: Some(pem) }
    }

    fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().with_webpki_roots();
        match &self.ca_pem {
            Some(pem) => config.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            None => config,
        }
    }
}

// ---- the client side ----

/// The endpoints of one service, and how calls are spread over them.
#[derive(Clone)]
pub struct Client {
    service: &'static str,
    key: NodeKey,
    channels: Arc<Vec<Channel>>,
    /// A hash of each endpoint's url: routing by key ranks endpoints by what they are,
    /// not by where they stand in a list that other nodes may order differently.
    url_hashes: Arc<Vec<u64>>,
    next: Arc<AtomicUsize>,
}

impl Client {
    /// `urls` such as `http://10.0.0.5:7400` or `https://logic-1:7400`; nothing connects
    /// until the first call. Every call is signed with `key`; an `https://` endpoint must
    /// present a certificate for its host that `trust` vouches for.
    pub fn new(
        service: &'static str,
        urls: &[String],
        key: &NodeKey,
        trust: &Trust,
    ) -> Result<Client, RemoteError> {
        if urls.is_empty() {
            return Err(RemoteError::NoEndpoints { service });
        }
        let channels = urls
            .iter()
            .map(|url| {
                let bad = |source| RemoteError::BadEndpoint { service, url: url.clone(), source };
                let mut endpoint = Endpoint::from_shared(url.clone()).map_err(bad)?;
                if url.starts_with("https://") {
                    endpoint = endpoint.tls_config(trust.config()).map_err(bad)?;
                }
                Ok(endpoint
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .connect_lazy())
            })
            .collect::<Result<Vec<_>, RemoteError>>()?;
        let url_hashes =
            Arc::new(urls.iter().map(|url| crate::stable_hash(url.as_bytes())).collect());
        let (channels, key) = (Arc::new(channels), key.clone());
        Ok(Client { service, key, channels, url_hashes, next: Arc::default() })
    }

    /// The order in which to try the endpoints for this call.
    fn ranked(&self, key: Option<u64>) -> Vec<usize> {
        let n = self.channels.len();
        match key {
            None => {
                let first = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| (first + i) % n).collect()
            }
            Some(key) => {
                let mut ranked: Vec<usize> = (0..n).collect();
                ranked.sort_by_key(|&i| std::cmp::Reverse(rendezvous(key, self.url_hashes[i])));
                ranked
            }
        }
    }

    /// One unary call of `path` (`/package.Service/Method`).
    pub async fn unary<Req, Resp>(
        &self,
        ctx: &Ctx,
        path: &'static str,
        key: Option<u64>,
        req: Req,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut last = None;
        let ranked = self.ranked(key);
        // Encoded once, signed with each attempt's time and context.
        let body = Bytes::from(req.encode_to_vec());
        for index in ranked {
            let timeout = match ctx.deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(Status::new(Code::DeadlineExceeded, "deadline passed")),
                },
                None => None,
            };
            let mut request = tonic::Request::new(body.clone());
            if let Some(timeout) = timeout {
                request.set_timeout(timeout);
            }
            write_ctx(ctx, request.metadata_mut());
            self.key.stamp(path, request.metadata_mut(), &body);
            let mut grpc = tonic::client::Grpc::new(self.channels[index].clone())
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX);
            let answer = async {
                grpc.ready().await.map_err(|e| {
                    tonic::Status::unavailable(format!("{} endpoint not ready: {e}", self.service))
                })?;
                grpc.unary(request, http::uri::PathAndQuery::from_static(path), RawCodec).await
            };
            match answer.await {
                Ok(response) => {
                    return Resp::decode(response.into_inner())
                        .map_err(|e| Status::internal(format!("undecodable {path} answer: {e}")));
                }
                Err(status) => {
                    if ctx.deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                        return Err(Status::new(Code::DeadlineExceeded, "deadline passed"));
                    }
                    // An endpoint that cannot be reached is skipped. Every answer the callee
                    // gave (it carries the exact code), UNAVAILABLE included, is final: the
                    // call may have run there.
                    let unreachable = status.code() == tonic::Code::Unavailable
                        && status.metadata().get(CODE).is_none();
                    let status = from_grpc(&status);
                    if !unreachable {
                        return Err(status);
                    }
                    tracing::debug!(service = self.service, endpoint = index, %status, "endpoint unavailable");
                    last = Some(status);
                }
            }
        }
        // Every endpoint was tried and none could be reached (the list is never empty).
        let status = last.expect("an endpoint was tried");
        tracing::warn!(service = self.service, path, %status, "no endpoint reachable");
        Err(status)
    }
}

/// The largest message either side of a call sends or accepts: above any media upload
/// (gRPC's default of 4 MiB is not).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Rendezvous (highest random weight) score for `key` of the endpoint whose url hashes to
/// `endpoint`: when an endpoint leaves, only its own keys move.
fn rendezvous(key: u64, endpoint: u64) -> u64 {
    crate::guard::mix(key ^ endpoint.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn write_ctx(ctx: &Ctx, metadata: &mut MetadataMap) {
    metadata.insert(REQUEST_ID, MetadataValue::from(ctx.request_id));
    metadata.insert(PRIORITY, MetadataValue::from(ctx.priority as u8 as u32));
    if let Some(caller) = ctx.caller {
        let value = format!("{}.{}.{}", caller.user_id, caller.device_id, caller.protocol_version);
        if let Ok(value) = value.parse() {
            metadata.insert(CALLER, value);
        }
    }
    if let Some(address) = ctx.client_address {
        metadata.insert(CLIENT_ADDRESS, address.to_string().parse().expect("ascii"));
    }
    if let Some(operator) = ctx.operator {
        metadata.insert(OPERATOR, operator.to_string().parse().expect("ascii"));
    }
}

fn read_ctx(metadata: &MetadataMap) -> Ctx {
    let received = Instant::now();
    let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
    let mut ctx = Ctx::new(text(REQUEST_ID).and_then(|v| v.parse().ok()).unwrap_or(0));
    ctx.priority = text(PRIORITY)
        .and_then(|v| v.parse().ok())
        .and_then(Priority::from_u8)
        .unwrap_or(Priority::Normal);
    ctx.caller = text(CALLER).and_then(|v| {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        let (user_id, device_id, protocol) = (parts.next()??, parts.next()??, parts.next()??);
        Some(Caller { user_id, device_id, protocol_version: u32::try_from(protocol).ok()? })
    });
    ctx.deadline =
        text("grpc-timeout").and_then(parse_grpc_timeout).and_then(|t| received.checked_add(t));
    ctx.client_address = text(CLIENT_ADDRESS).and_then(|v| v.parse().ok());
    ctx.operator = text(OPERATOR).and_then(|v| v.parse().ok());
    ctx
}

/// gRPC's `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

fn to_grpc(status: &Status) -> tonic::Status {
    use tonic::Code as G;
    let code = match status.code {
        Code::Ok => G::Ok,
        Code::BadRequest | Code::InvalidArgument | Code::BadSyncKey | Code::BadFrame => {
            G::InvalidArgument
        }
        Code::UnknownCommand => G::Unimplemented,
        Code::Unauthenticated | Code::InvalidCredentials => G::Unauthenticated,
        Code::NotFound => G::NotFound,
        Code::AlreadyExists => G::AlreadyExists,
        Code::FrameTooLarge => G::OutOfRange,
        Code::Overloaded => G::ResourceExhausted,
        Code::DeadlineExceeded => G::DeadlineExceeded,
        Code::Unavailable => G::Unavailable,
        Code::Internal => G::Internal,
        Code::FailedPrecondition => G::FailedPrecondition,
        Code::Aborted => G::Aborted,
        Code::Blocked
        | Code::NotFriends
        | Code::NotMember
        | Code::PermissionDenied
        | Code::AccountDisabled => G::PermissionDenied,
        Code::RateLimited => G::ResourceExhausted,
        Code::LimitExceeded => G::ResourceExhausted,
        Code::TooLate => G::FailedPrecondition,
    };
    let mut grpc = tonic::Status::new(code, status.message.clone());
    grpc.metadata_mut().insert(CODE, MetadataValue::from(status.code as u16 as u32));
    if let Some(after) = status.retry_after {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        grpc.metadata_mut().insert(RETRY_AFTER, MetadataValue::from(ms));
    }
    grpc
}

fn from_grpc(status: &tonic::Status) -> Status {
    use tonic::Code as G;
    let exact = status
        .metadata()
        .get(CODE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(Code::from_u16);
    let code = exact.unwrap_or(match status.code() {
        G::DeadlineExceeded => Code::DeadlineExceeded,
        G::ResourceExhausted => Code::Overloaded,
        // Transport failures (refused, reset, cancelled by a dying peer) arrive as these.
        G::Unavailable | G::Unknown | G::Cancelled => Code::Unavailable,
        _ => Code::Internal,
    });
    let retry_after = status
        .metadata()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    Status { retry_after, ..Status::new(code, status.message().to_string()) }
}

// ---- the server side ----

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Ctx, Bytes) -> BoxFuture<Result<Bytes, Status>> + Send + Sync>;

/// The methods a process serves, by path.
#[derive(Default, Clone)]
pub struct Routes {
    handlers: HashMap<&'static str, Handler>,
}

impl Routes {
    /// Serves `path` with `handler`, decoding its request and encoding its answer.
    pub fn unary<Req, Resp, F, Fut>(mut self, path: &'static str, handler: F) -> Self
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: Fn(Ctx, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx, body: Bytes| {
            let handler = handler.clone();
            Box::pin(async move {
                let req = Req::decode(body).map_err(|e| {
                    Status::new(Code::BadRequest, format!("undecodable {path} request: {e}"))
                })?;
                let resp = handler(ctx, req).await?;
                Ok(Bytes::from(resp.encode_to_vec()))
            })
        });
        self.handlers.insert(path, erased);
        self
    }

    /// These routes and `other`'s, for a process serving several services on one listener.
    pub fn merge(mut self, other: Routes) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Serves these routes on `listener`, in TLS when `tls` is given, until `shutdown` is
    /// cancelled, to callers that sign with `key`; any other call is answered
    /// UNAUTHENTICATED and runs nothing.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        key: NodeKey,
        tls: Option<missive_tls::TlsAcceptor>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), RemoteError> {
        let mut router = tonic::service::Routes::default().into_axum_router();
        for (path, handler) in self.handlers {
            let key = key.clone();
            router = router.route_service(path, MethodService { path, handler, key });
        }
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .add_routes(tonic::service::Routes::from(router));
        let stopped = shutdown.clone().cancelled_owned();
        match tls {
            None => {
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                server.serve_with_incoming_shutdown(incoming, stopped).await?;
            }
            Some(tls) => {
                let incoming = tls_incoming(listener, tls, shutdown);
                server.serve_with_incoming_shutdown(incoming, stopped).await?;
            }
        }
        Ok(())
    }
}

/// How long a caller has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; past it a new connection is closed at once, so that
/// strangers reaching the port cannot hold the process's descriptors.
const HANDSHAKES_MAX: usize = 256;

/// The TLS sessions of `listener`'s connections, each handshake in a task of its own so that
/// a slow one holds up no other; one that fails or takes too long is dropped and counted.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: missive_tls::TlsAcceptor,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<
    Item = std::io::Result<missive_tls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let (done, sessions) = tokio::sync::mpsc::channel(64);
    let failed = metrics::counter!("missive_tls_handshakes_failed_total", "listener" => "rpc");
    let places = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "rpc accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                failed.increment(1);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tls, done, failed) = (tls.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
                drop(place);
                match accepted {
                    Ok(Ok(session)) => {
                        let _ = done.send(Ok(session)).await;
                    }
                    Ok(Err(error)) => {
                        failed.increment(1);
                        tracing::debug!(%peer, %error, "rpc tls handshake failed");
                    }
                    Err(_) => {
                        failed.increment(1);
                        tracing::debug!(%peer, "rpc tls handshake timed out");
                    }
                }
            });
        }
    });
    futures_util::stream::unfold(sessions, |mut sessions| async move {
        sessions.recv().await.map(|session| (session, sessions))
    })
}

/// One method as a tower service: gRPC framing by tonic, the body left to the handler.
#[derive(Clone)]
struct MethodService {
    path: &'static str,
    handler: Handler,
    key: NodeKey,
}

impl tower_service::Service<http::Request<axum::body::Body>> for MethodService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let (path, handler, key) = (self.path, self.handler.clone(), self.key.clone());
        Box::pin(async move {
            // A caller that is not a node is refused before its body is read.
            let metadata = MetadataMap::from_headers(request.headers().clone());
            if !key.verify_head(path, &metadata) {
                tracing::warn!(path, "refusing an rpc call not signed by a node");
                return Ok(to_grpc(&not_a_node()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX);
            Ok(grpc.unary(Unary { path, handler, key }, request).await)
        })
    }
}

struct Unary {
    path: &'static str,
    handler: Handler,
    key: NodeKey,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        if !self.key.verify_call(self.path, request.metadata(), request.get_ref()) {
            tracing::warn!(path = self.path, "refusing an rpc call whose body was not signed");
            return Box::pin(std::future::ready(Err(to_grpc(&not_a_node()))));
        }
        let ctx = read_ctx(request.metadata());
        // Every line logged for the call names the request id its caller gave it, so that
        // one client request can be followed across processes.
        let span = tracing::info_span!("rpc", request_id = ctx.request_id, path = self.path);
        let handler = self.handler.clone();
        Box::pin(
            async move {
                match handler(ctx, request.into_inner()).await {
                    Ok(body) => Ok(tonic::Response::new(body)),
                    Err(status) => Err(to_grpc(&status)),
                }
            }
            .instrument(span),
        )
    }
}

/// Passes message bodies through as bytes; the handlers decode them with prost.
#[derive(Default, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("7x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None, "gRPC allows 8 digits at most");
    }

    #[test]
    fn every_code_survives_the_wire() {
        for code in Code::ALL {
            let status = Status::new(code, "why");
            assert_eq!(from_grpc(&to_grpc(&status)), status);
        }
        let limited = Status::rate_limited("slow down", Duration::from_millis(1500));
        assert_eq!(from_grpc(&to_grpc(&limited)), limited, "and the time to wait");
    }

    #[tokio::test]
    async fn keyed_calls_always_rank_the_same_endpoint_first() {
        let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", 7400 + i)).collect();
        let client = Client::new("test", &urls, &NodeKey::random(), &Trust::default()).unwrap();
        let mut firsts = [0; 3];
        for key in 0..300u64 {
            let first = client.ranked(Some(key))[0];
            assert_eq!(client.ranked(Some(key))[0], first);
            firsts[first] += 1;
        }
        assert!(firsts.iter().all(|n| *n > 50), "keys spread over endpoints: {firsts:?}");

        // Another process given the urls in another order sends each key to the same url.
        let reversed: Vec<String> = urls.iter().rev().cloned().collect();
        let other = Client::new("test", &reversed, &NodeKey::random(), &Trust::default()).unwrap();
        for key in 0..300u64 {
            assert_eq!(urls[client.ranked(Some(key))[0]], reversed[other.ranked(Some(key))[0]]);
        }
    }

    fn test_key() -> NodeKey {
        NodeKey::from_secret(b"test")
    }

    #[test]
    fn a_signature_holds_only_for_its_key_time_context_and_body() {
        let key = test_key();
        let mut metadata = MetadataMap::new();
        write_ctx(&Ctx::new(9), &mut metadata);
        key.stamp("/a.B/C", &mut metadata, b"body");
        assert!(
            key.verify_head("/a.B/C", &metadata) && key.verify_call("/a.B/C", &metadata, b"body")
        );
        assert!(!NodeKey::random().verify_head("/a.B/C", &metadata), "another key");
        assert!(!key.verify_head("/a.B/D", &metadata), "another method");
        assert!(!key.verify_call("/a.B/C", &metadata, b"bodz"), "another body");
        let mut other = metadata.clone();
        other.insert(CALLER, "7.1.2".parse().unwrap());
        assert!(!key.verify_head("/a.B/C", &other), "a caller added after signing");
        let stale = format!("{}.{}", crate::unix_ms() - 2 * NODE_AUTH_SKEW_MS, "0".repeat(129));
        metadata.insert(NODE_AUTH, stale.parse().unwrap());
        assert!(!key.verify_head("/a.B/C", &metadata), "an old or malformed stamp");
        metadata.remove(NODE_AUTH);
        assert!(!key.verify_head("/a.B/C", &metadata), "no stamp at all");
    }

    /// Serves one method that counts its calls and answers UNAVAILABLE from the callee.
    async fn busy_endpoint(
        calls: Arc<AtomicUsize>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = Routes::default().unary("/test.Busy/Call", move |_, (): ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Status::new(Code::Unavailable, "the callee is shutting down")) }
        });
        tokio::spawn(routes.serve(listener, test_key(), None, shutdown));
        url
    }

    #[tokio::test]
    async fn an_unavailable_answer_from_the_callee_is_final_and_not_retried_elsewhere() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let urls = [
            busy_endpoint(calls.clone(), shutdown.clone()).await,
            busy_endpoint(calls.clone(), shutdown.clone()).await,
        ];
        let client = Client::new("busy", &urls, &test_key(), &Trust::default()).unwrap();
        let answer = client.unary::<(), ()>(&Ctx::new(1), "/test.Busy/Call", None, ()).await;
        assert_eq!(answer.unwrap_err().code, Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the call may have run: it is not run twice");
        shutdown.cancel();
    }
}
