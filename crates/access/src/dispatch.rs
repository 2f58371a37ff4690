//! The one command table that serves every transport.

use bytes::Bytes;
use metrics::Counter;
use missive_proto::Command;
use missive_proto::client::*;
use missive_proto::internal::ClientApi;
use missive_rpc::{Code, Ctx, Latency, LazyHandles, Status};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument as _;

/// How a request body is encoded (the answer uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

pub struct Dispatcher {
    api: Arc<dyn ClientApi>,
    next_request_id: AtomicU64,
    /// `missive_requests_total` by command and code, the command's index times the number
    /// of codes plus the code's.
    requests: LazyHandles<Counter>,
    /// `missive_request_duration_seconds` by command index ([`Command::index`]).
    durations: LazyHandles<Latency>,
}

impl Dispatcher {
    pub fn new(api: Arc<dyn ClientApi>) -> Self {
        // Ids count up from a random start, so that ids from different access nodes (each
        // follows its request into every tier's logs) do not collide.
        Dispatcher {
            api,
            next_request_id: AtomicU64::new(missive_rpc::random_request_id()),
            requests: LazyHandles::new(Command::ALL.len() * Code::ALL.len()),
            durations: LazyHandles::new(Command::ALL.len()),
        }
    }

    pub fn api(&self) -> &Arc<dyn ClientApi> {
        &self.api
    }

    pub fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs one command. `Auth` and `Notify` belong to the long link and are refused here.
    pub async fn dispatch(
        &self,
        ctx: &Ctx,
        command: Command,
        body: &[u8],
        format: Format,
    ) -> Result<Bytes, Status> {
        let api = &self.api;
        // One arm per command the logic layer serves, from the schema's list of `ClientApi`
        // methods (a method and its command share their name); the long link's own commands
        // after them. A command without a method, or the reverse, does not compile.
        macro_rules! served {
            ($(($variant:ident, $method:ident)),* $(,)?) => {
                match command {
                    $(Command::$variant => unary(body, format, |r| api.$method(ctx, r)).await,)*
                    Command::Ping => {
                        unary(body, format, |_: PingRequest| async {
                            Ok(PingResponse { server_time_ms: missive_rpc::unix_ms(), ..Default::default() })
                        })
                        .await
                    }
                    Command::Auth => {
                        Err(Status::new(Code::FailedPrecondition, "auth is a long-link command"))
                    }
                    Command::Notify | Command::Event => {
                        Err(Status::new(Code::UnknownCommand, "sent by the server only"))
                    }
                }
            };
        }
        missive_proto::client_api_methods!(served)
    }

    /// Runs one client request, whatever its transport: under `timeout` (past it the answer
    /// is DEADLINE_EXCEEDED), in a span naming its request id and command (so that every line
    /// logged for it in this process names them), counted and timed by command and result.
    /// A failure is logged here, once: at error for INTERNAL (a bug or an unexpected failure,
    /// whose message says where), at warn for UNAVAILABLE and DEADLINE_EXCEEDED, else at debug.
    pub async fn run<T>(
        &self,
        request_id: u64,
        command: Command,
        timeout: std::time::Duration,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = std::time::Instant::now();
        let name = command.name();
        let span = tracing::info_span!("request", request_id, command = name);
        let result = within(timeout, call).instrument(span.clone()).await;
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code);
        let index = command.index();
        self.requests
            .get(index * Code::ALL.len() + code as usize, || {
                metrics::counter!("missive_requests_total", "command" => name, "code" => code.as_str())
            })
            .increment(1);
        self.durations
            .get(index, || Latency::new("missive_request_duration_seconds", &[("command", name)]))
            .record(started.elapsed());
        if let Err(status) = &result {
            span.in_scope(|| match status.code {
                Code::Internal => tracing::error!(%status, "request failed"),
                Code::Unavailable | Code::DeadlineExceeded => {
                    tracing::warn!(%status, "request failed")
                }
                _ => tracing::debug!(%status, "request failed"),
            });
        }
        result
    }
}

/// Runs one request until `timeout`; past it the answer is DEADLINE_EXCEEDED.
async fn within<T>(
    timeout: std::time::Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(Status::new(Code::DeadlineExceeded, "request timed out")))
}

/// Decodes the request, runs the handler, encodes the answer.
pub async fn unary<Req, Resp, F, Fut>(
    body: &[u8],
    format: Format,
    handler: F,
) -> Result<Bytes, Status>
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let request = decode::<Req>(body, format)?;
    let response = handler(request).await?;
    Ok(encode(&response, format))
}

pub fn decode<T: Message + Default + DeserializeOwned>(
    body: &[u8],
    format: Format,
) -> Result<T, Status> {
    match format {
        Format::Protobuf => T::decode(body)
            .map_err(|e| Status::new(Code::BadRequest, format!("body does not decode: {e}"))),
        Format::Json => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            // An empty JSON body means an empty message, as an empty protobuf body does.
            None => Ok(T::default()),
            // A message is an object; serde would also take an array, by field position.
            Some(b'{') => serde_json::from_slice(body)
                .map_err(|e| Status::new(Code::BadRequest, format!("body is not valid JSON: {e}"))),
            Some(_) => Err(Status::new(Code::BadRequest, "body must be a JSON object")),
        },
    }
}

pub fn encode<T: Message + Serialize>(message: &T, format: Format) -> Bytes {
    match format {
        Format::Protobuf => Bytes::from(message.encode_to_vec()),
        Format::Json => Bytes::from(serde_json::to_vec(message).expect("messages serialize")),
    }
}

/// The body of an error answer.
pub fn error_body(status: &Status, format: Format) -> Bytes {
    encode(&Error::from(status), format)
}
