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
        match command {
            Command::Ping => {
                unary(body, format, |_: PingRequest| async {
                    Ok(PingResponse { server_time_ms: missive_rpc::unix_ms() })
                })
                .await
            }
            Command::Register => unary(body, format, |r| api.register(ctx, r)).await,
            Command::Login => unary(body, format, |r| api.login(ctx, r)).await,
            Command::Logout => unary(body, format, |r| api.logout(ctx, r)).await,
            Command::GetProfile => unary(body, format, |r| api.get_profile(ctx, r)).await,
            Command::UpdateProfile => unary(body, format, |r| api.update_profile(ctx, r)).await,
            Command::Send => unary(body, format, |r| api.send(ctx, r)).await,
            Command::Sync => unary(body, format, |r| api.sync(ctx, r)).await,
            Command::FriendRequest => unary(body, format, |r| api.friend_request(ctx, r)).await,
            Command::FriendRespond => unary(body, format, |r| api.friend_respond(ctx, r)).await,
            Command::FriendRemove => unary(body, format, |r| api.friend_remove(ctx, r)).await,
            Command::SetBlocked => unary(body, format, |r| api.set_blocked(ctx, r)).await,
            Command::SetRemark => unary(body, format, |r| api.set_remark(ctx, r)).await,
            Command::ListContacts => unary(body, format, |r| api.list_contacts(ctx, r)).await,
            Command::GroupCreate => unary(body, format, |r| api.group_create(ctx, r)).await,
            Command::GroupInvite => unary(body, format, |r| api.group_invite(ctx, r)).await,
            Command::GroupRemove => unary(body, format, |r| api.group_remove(ctx, r)).await,
            Command::GroupLeave => unary(body, format, |r| api.group_leave(ctx, r)).await,
            Command::GroupUpdate => unary(body, format, |r| api.group_update(ctx, r)).await,
            Command::GroupSetAdmin => unary(body, format, |r| api.group_set_admin(ctx, r)).await,
            Command::GroupTransfer => unary(body, format, |r| api.group_transfer(ctx, r)).await,
            Command::GroupDissolve => unary(body, format, |r| api.group_dissolve(ctx, r)).await,
            Command::GroupInfo => unary(body, format, |r| api.group_info(ctx, r)).await,
            Command::Upload => unary(body, format, |r| api.upload(ctx, r)).await,
            Command::Download => unary(body, format, |r| api.download(ctx, r)).await,
            Command::Recall => unary(body, format, |r| api.recall(ctx, r)).await,
            Command::MarkRead => unary(body, format, |r| api.mark_read(ctx, r)).await,
            Command::Auth => {
                Err(Status::new(Code::FailedPrecondition, "auth is a long-link command"))
            }
            Command::Notify => {
                Err(Status::new(Code::UnknownCommand, "notify is sent by the server only"))
            }
        }
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
