//! The access layer: holds client connections and nothing else.
//!
//! The long link (raw TCP, and WebSocket carrying the same frames) takes requests and pushes
//! notifies; the short link (HTTP, `POST /v1/<command>`) takes requests only. Both decode a
//! command and hand it to one dispatch table ([`dispatch`]), which calls the logic layer through
//! the `ClientApi` service trait. The connection [`registry`] implements the `Push` service
//! that the logic layer calls to reach online devices; [`presence`] tells the logic layer
//! (the `Links` service) which users came online here or left.
//!
//! The HTTP listener also serves the web app's files, embedded at build time (`web.rs`).
//!
//! This crate owns sockets, frames, per-connection limits and timeouts. It holds no business
//! rule and never touches storage.

mod admission;
pub mod dispatch;
mod frames;
pub mod http;
mod link;
pub mod presence;
pub mod registry;
pub mod serve;
pub mod tcp;
mod web;

pub use dispatch::Dispatcher;
pub use registry::Registry;

use std::time::Duration;

/// Limits and timeouts of the access layer.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Largest frame body (and HTTP body) accepted; larger ones are refused.
    pub frame_body_bytes_max: u32,
    /// Long-link connections held at once at most, over all transports.
    pub connections_max: usize,
    /// Long-link connections held at once from one client address.
    pub connections_per_address_max: usize,
    /// HTTP connections (short link, and WebSockets until they are upgraded) held at once.
    pub http_connections_max: usize,
    /// HTTP connections held at once from one client address.
    pub http_connections_per_address_max: usize,
    /// An HTTP request's head must arrive within this; a kept-alive HTTP connection idle this
    /// long between requests is closed.
    pub http_header_timeout: Duration,
    /// A long link must authenticate within this time of connecting.
    pub auth_timeout: Duration,
    /// The heartbeat interval a connection starts with, told to clients; a connection silent
    /// for three of its intervals is closed.
    pub heartbeat_interval: Duration,
    /// The shortest interval a client's PING may set (never above the start interval).
    pub heartbeat_min: Duration,
    /// The longest interval a client's PING may set (never below the start interval).
    pub heartbeat_max: Duration,
    /// AUTHs in the logic layer at once; one beyond is answered OVERLOADED with a time to
    /// wait, so that a crowd reconnecting at once is admitted as fast as it can be served.
    pub auth_concurrency_max: usize,
    /// Responses queued for one connection at most; the connection's reads wait beyond it.
    pub send_queue_frames_max: usize,
    /// A write to a client that takes longer than this closes the connection.
    pub write_timeout: Duration,
    /// Deadline of one request inside the server.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for connections to finish their last request.
    pub drain_timeout: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            frame_body_bytes_max: missive_proto::frame::BODY_BYTES_MAX_DEFAULT,
            connections_max: 100_000,
            connections_per_address_max: 1_000,
            http_connections_max: 10_000,
            http_connections_per_address_max: 256,
            http_header_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_min: Duration::from_secs(10),
            heartbeat_max: Duration::from_secs(300),
            auth_concurrency_max: 128,
            send_queue_frames_max: 64,
            write_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl AccessConfig {
    /// The limits of the client HTTP listener.
    pub fn http_limits(&self) -> serve::HttpLimits {
        serve::HttpLimits {
            name: "http",
            connections_max: self.http_connections_max,
            connections_per_address_max: self.http_connections_per_address_max,
            header_timeout: self.http_header_timeout,
        }
    }

    /// Silence after which a long link is considered dead and closed, until its client sets
    /// another heartbeat interval.
    pub fn idle_timeout(&self) -> Duration {
        self.heartbeat_interval * 3
    }

    /// The heartbeat interval a connection takes when its client asks for `wanted`: within
    /// the range, which always holds the start interval.
    pub fn heartbeat_within_range(&self, wanted: Duration) -> Duration {
        let min = self.heartbeat_min.min(self.heartbeat_interval);
        let max = self.heartbeat_max.max(self.heartbeat_interval);
        wanted.clamp(min, max)
    }
}
