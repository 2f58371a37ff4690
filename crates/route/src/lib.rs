//! Routing and cross-node push: which access node holds which user's connections, and the
//! `Push` service that reaches a user on whichever node that is; and the rate-limit buckets
//! the logic nodes share. All live in Redis.
//!
//! - **Routes.** Each access node writes, per online user, one field in the hash
//!   `<namespace>:route:<user id>`: its node id, with the time (Unix ms) after which the entry
//!   is void unless refreshed. Fields are per node, so two nodes holding the same user never
//!   overwrite each other, and a node that dies without cleaning up leaves entries that expire
//!   ([`AccessRoutes`]).
//! - **Push.** The logic layer's [`RedisPush`] reads the routes of the users to notify (one
//!   pipelined round trip) and publishes one message per access node to the node's channel
//!   `<namespace>:node:<node id>` (a second round trip); each node's subscriber hands the
//!   notifies to its connection registry.
//!
//! - **Rate limits.** The logic layer's [`RedisLimiter`] keeps each rate-limit bucket in one
//!   key, `<namespace>:limit:<limit>:<hashed key>`, taken by a Lua script in one round trip,
//!   so that every logic node counts against the same buckets.
//!
//! - **Sign-outs.** [`RedisPush`] also publishes every sign-out (LOGOUT, an admin kick or
//!   disable) on `<namespace>:signouts`, which every logic node follows ([`SignOuts`]) to drop
//!   the signed-out sessions from its cache at once.
//!
//! Redis pub/sub delivers at most once: a subscriber that falls behind is disconnected, and
//! messages published while a node is not subscribed are gone. Notifies are only hints (the
//! stored inbox is the truth), so a lost one costs a delay, never a message: clients sync on a
//! fallback timer, and a node that had to resubscribe tells all of its connections to sync.
//!
//! This crate owns the Redis key layout and the node channels. It holds no business rule,
//! stores nothing durable and never touches the storage tier.

mod access;
mod channel;
mod limiter;
mod push;
mod signouts;

pub use access::AccessRoutes;
pub use limiter::RedisLimiter;
pub use push::RedisPush;
pub use signouts::{SignOut, SignOuts};

use std::time::Duration;

/// The prefix of the keys and channels unless told otherwise.
pub const NAMESPACE_DEFAULT: &str = "missive";

/// Where the routing table lives and who this node is.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key and channel, so that deployments can share one Redis.
    pub namespace: String,
    /// This node's name in routes and channel names; unique among live nodes.
    pub node_id: String,
    /// How long a route entry lives unless refreshed (it is refreshed at a third of this).
    pub ttl: Duration,
    /// Deadline of one Redis command (a notify is dropped, not waited for, beyond it).
    pub response_timeout: Duration,
}

impl RouteConfig {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RouteConfig {
        RouteConfig {
            url: url.into(),
            namespace: NAMESPACE_DEFAULT.into(),
            node_id: node_id.into(),
            ttl: Duration::from_secs(90),
            response_timeout: Duration::from_secs(1),
        }
    }

    fn route_key(&self, user_id: u64) -> String {
        format!("{}:route:{user_id}", self.namespace)
    }

    fn channel(&self, node_id: &str) -> String {
        format!("{}:node:{node_id}", self.namespace)
    }

    /// Where sign-outs are told to every logic node.
    fn sign_outs_channel(&self) -> String {
        format!("{}:signouts", self.namespace)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the routing engine at {url} does not answer: {source}")]
    Unreachable { url: String, source: redis::RedisError },
    #[error("bad routing engine url {url:?}: {source}")]
    BadUrl { url: String, source: redis::RedisError },
}

/// Opens a self-reconnecting connection, checking once that the server answers.
async fn connect(
    config: &RouteConfig,
) -> Result<(redis::Client, redis::aio::ConnectionManager), RouteError> {
    let client = redis::Client::open(config.url.as_str())
        .map_err(|source| RouteError::BadUrl { url: config.url.clone(), source })?;
    let manager = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.response_timeout))
        .set_connection_timeout(Some(config.response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let connection = redis::aio::ConnectionManager::new_with_config(client.clone(), manager)
        .await
        .map_err(|source| RouteError::Unreachable { url: config.url.clone(), source })?;
    Ok((client, connection))
}
