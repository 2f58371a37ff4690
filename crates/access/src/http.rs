//! The HTTP short link (`POST /v1/<command>`) and the WebSocket long link (`GET /ws`), on the
//! listener that also serves the web app (`crate::web`).

use crate::dispatch::{self, Format};
use crate::link::{self, LinkError};
use crate::tcp::LinkServer;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use missive_proto::Command;
use missive_proto::client::DownloadRequest;
use missive_proto::frame::{Frame, HEADER_BYTES};
use missive_proto::internal::AuthenticateRequest;
use missive_rpc::{Caller, Code, Ctx, Status};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
pub const JSON_CONTENT_TYPE: &str = "application/json";
use missive_proto::{CODE_HEADER, PROTOCOL_HEADER};
/// Bytes the WebSocket layer reads at a time (and holds between messages).
const WS_READ_BUFFER_BYTES: usize = 512;

/// WebSocket messages above the frame limit by more than this are cut off by the WebSocket
/// layer itself; up to it, they get a precise FRAME_TOO_LARGE answer.
const WS_MESSAGE_SLACK_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct HttpState {
    links: LinkServer,
    shutdown: CancellationToken,
    /// The largest request body read (UPLOAD's too: larger media come in parts); larger ones
    /// are answered with FRAME_TOO_LARGE.
    body_max: usize,
}

/// The router of the short link, the WebSocket long link and the web app.
pub fn router(links: LinkServer, shutdown: CancellationToken) -> Router {
    let body_max = links.config().frame_body_bytes_max as usize;
    Router::new()
        .route("/v1/{command}", post(short_link))
        .route("/v1/media/{media_id}", get(download))
        .route("/ws", get(websocket))
        .merge(crate::web::routes())
        .fallback(|| async {
            answer(
                Err(Status::new(Code::UnknownCommand, "no such path; use POST /v1/<command>")),
                Format::Json,
            )
        })
        // Bodies are bounded by `short_link` itself, so an oversized one gets a precise code.
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState { links, shutdown, body_max })
}

fn format_of(headers: &HeaderMap) -> Format {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match content_type {
        Some(t) if t.starts_with(JSON_CONTENT_TYPE) => Format::Json,
        _ => Format::Protobuf,
    }
}

fn answer(result: Result<Bytes, Status>, format: Format) -> Response {
    let content_type = match format {
        Format::Json => JSON_CONTENT_TYPE,
        Format::Protobuf => PROTOBUF_CONTENT_TYPE,
    };
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(status) => {
            let http = StatusCode::from_u16(status.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (http, dispatch::error_body(&status, format)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CODE_HEADER, HeaderValue::from_static(status.code.as_str()));
            if let Some(after) = status.retry_after {
                // Whole seconds, rounded up: the body's `retry_after_ms` is exact.
                let seconds = after.as_millis().div_ceil(1000).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
            }
            response
        }
    }
}

async fn short_link(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = format_of(&headers);
    let command = Command::from_name(&name);
    let body_max = state.body_max;
    let too_large = || {
        let message = format!("request body exceeds {body_max} bytes");
        Err(Status::new(Code::FrameTooLarge, message))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > body_max) {
        return answer(too_large(), format);
    }
    let Some(command) = command else {
        let status = Status::new(Code::UnknownCommand, format!("unknown command {name:?}"));
        return answer(Err(status), format);
    };
    // The whole request, body included, runs under the request deadline, so a client that
    // trickles its body holds nothing for long.
    let request_timeout = state.links.config().request_timeout;
    let mut ctx = request_ctx(&state, command, peer);
    let dispatcher = &state.links.shared().dispatcher;
    let result = dispatcher
        .run(ctx.request_id, command, request_timeout, async {
            let declared = declared_version(&headers)?;
            // The token first: a stranger's body is never read, so it cannot make the server
            // hold megabytes.
            if !command.allowed_anonymous() {
                authenticate(&state, &headers, declared, &mut ctx).await?;
            }
            // Fails only past the limit (a chunked body) or when the peer vanished mid-body.
            let Ok(body) = axum::body::to_bytes(body, body_max).await else {
                return too_large();
            };
            dispatcher.dispatch(&ctx, command, &body, format).await
        })
        .await;
    answer(result, format)
}

fn request_ctx(state: &HttpState, command: Command, peer: SocketAddr) -> Ctx {
    state.links.shared().request_ctx(command, Some(peer.ip()))
}

/// The protocol version a request declares in its header (0 for none, which is version 1),
/// checked for every command, anonymous ones included.
fn declared_version(headers: &HeaderMap) -> Result<u32, Status> {
    let Some(value) = headers.get(PROTOCOL_HEADER) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Status::new(Code::BadRequest, format!("{PROTOCOL_HEADER} must be a number")))
}

/// Binds the request to the session of its bearer token, in the protocol version it declares.
async fn authenticate(
    state: &HttpState,
    headers: &HeaderMap,
    declared: u32,
    ctx: &mut Ctx,
) -> Result<(), Status> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::new(Code::Unauthenticated, "missing bearer token"))?;
    let request = AuthenticateRequest { token: token.trim().to_string() };
    let session = state.links.shared().dispatcher.api().authenticate(ctx, request).await?;
    ctx.caller = Some(Caller {
        user_id: session.user_id,
        device_id: session.device_id,
        protocol_version: missive_proto::negotiate_protocol(declared),
    });
    Ok(())
}

/// `GET /v1/media/<id>`: the bytes of an uploaded image or file, to a member of its
/// conversation. Always served as an attachment, never sniffed, so that no upload can run as
/// a page of this origin.
async fn download(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_timeout = state.links.config().request_timeout;
    let mut ctx = request_ctx(&state, Command::Download, peer);
    let dispatcher = &state.links.shared().dispatcher;
    let result = dispatcher
        .run(ctx.request_id, Command::Download, request_timeout, async {
            authenticate(&state, &headers, declared_version(&headers)?, &mut ctx).await?;
            dispatcher.api().download(&ctx, DownloadRequest { media_id }).await
        })
        .await;
    let downloaded = match result {
        Ok(downloaded) => downloaded,
        Err(status) => return answer(Err(status), Format::Json),
    };
    let media = downloaded.media.unwrap_or_default();
    let mime = HeaderValue::from_str(&media.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&media.name))
        .expect("the disposition is printable ASCII by construction");
    let mut response = Response::new(Body::from(downloaded.data));
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, mime);
    out.insert(header::CONTENT_DISPOSITION, disposition);
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `attachment` with the file's name as RFC 6266 gives it: `filename*` carries the name
/// whole (UTF-8, percent-encoded), and `filename` an ASCII stand-in for the clients that
/// know only that, with every other character, and `"` and `\\`, as `_`.
fn content_disposition(name: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    // RFC 8187's attr-char: what `filename*` may carry unencoded.
    const ENCODED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let ascii: String =
        name.chars()
            .map(|c| {
                if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\') { c } else { '_' }
            })
            .collect();
    let utf8 = utf8_percent_encode(name, ENCODED);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{utf8}")
}

async fn websocket(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = state.links.try_slot(peer) else {
        return answer(
            Err(Status::new(Code::Overloaded, "connection limit reached")),
            Format::Json,
        );
    };
    let config = state.links.config().clone();
    let max = config.frame_body_bytes_max;
    let message_max = HEADER_BYTES + max as usize + WS_MESSAGE_SLACK_BYTES;
    upgrade
        // The WebSocket layer keeps this much read buffer for the connection's whole life, and
        // most links are idle: small, at the cost of more reads for a large message.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(message_max)
        .max_frame_size(message_max)
        .on_upgrade(move |socket: WebSocket| {
            let shared = state.links.shared().clone();
            let tracker = state.links.tracker().clone();
            let shutdown = state.shutdown.clone();
            tracker.track_future(async move {
                let (sink, stream) = socket.split();
                let until_close = stream.take_while(|message| {
                    std::future::ready(!matches!(message, Ok(WsMessage::Close(_))))
                });
                let reader = until_close.filter_map(move |message| async move {
                    match message {
                        Ok(WsMessage::Binary(bytes)) => {
                            Some(Frame::decode_exact(&bytes, max).map_err(LinkError::from))
                        }
                        Ok(WsMessage::Text(_)) => Some(Err(LinkError::NotBinary)),
                        // Pings are answered by the WebSocket layer itself.
                        Ok(_) => None,
                        Err(error) => Some(Err(LinkError::Transport(error.to_string()))),
                    }
                });
                let reader = Box::pin(reader);
                let writer = sink.with(|frame: Frame| async move {
                    Ok::<_, axum::Error>(WsMessage::Binary(frame.to_bytes()))
                });
                let peer = Some(peer.ip());
                let opened = (peer, tokio::time::Instant::now());
                link::serve(shared, "websocket", opened, reader, Box::pin(writer), shutdown).await;
                drop(slot);
            })
        })
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn file_names_keep_every_character_in_filename_star() {
        let check = |name: &str, expect: &str| assert_eq!(content_disposition(name), expect);
        check("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf");
        check(
            "报告.pdf",
            "attachment; filename=\"__.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf",
        );
        check(
            "a \"b\"\\c;d.txt",
            "attachment; filename=\"a _b__c;d.txt\"; filename*=UTF-8''a%20%22b%22%5Cc%3Bd.txt",
        );
    }
}
