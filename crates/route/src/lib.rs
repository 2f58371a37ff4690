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
//! Redis is one server at a url, or the master that Redis Sentinel names ([`Engine`]). Every
//! part reaches it through one connection of its own that is rebuilt, from wherever the
//! master is then, when it breaks or meets a replica (`engine.rs`), and subscriptions are
//! made again on the new master; so a failover costs the notifies of a few seconds, which the
//! resubscribed access nodes make up for as above.
//!
//! This crate owns the Redis key layout and the node channels. It holds no business rule,
//! stores nothing durable and never touches the storage tier.

mod access;
mod channel;
mod engine;
mod limiter;
mod push;
mod signouts;

pub use access::AccessRoutes;
pub use engine::{Engine, SENTINEL_PORT_DEFAULT};
pub use limiter::RedisLimiter;
pub use push::RedisPush;
pub use signouts::{SignOut, SignOuts};

use engine::Redis;
use std::time::Duration;

/// The prefix of the keys and channels unless told otherwise.
pub const NAMESPACE_DEFAULT: &str = "missive";

/// Where the routing table lives and who this node is.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The Redis master: at a fixed url, or as Redis Sentinel names it.
    pub engine: Engine,
    /// Prefix of every key and channel, so that deployments can share one Redis.
    pub namespace: String,
    /// This node's name in routes and channel names; unique among live nodes.
    pub node_id: String,
    /// How long a route entry lives unless refreshed (it is refreshed at a third of this).
    pub ttl: Duration,
    /// Deadline of one Redis command, finding the master and connecting to it included (a
    /// notify is dropped, not waited for, beyond it).
    pub response_timeout: Duration,
}

impl RouteConfig {
    pub fn new(engine: impl Into<Engine>, node_id: impl Into<String>) -> RouteConfig {
        RouteConfig {
            engine: engine.into(),
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

    /// The connection every part of a node opens first: it checks that the engine answers.
    async fn connect(&self) -> Result<std::sync::Arc<Redis>, RouteError> {
        Redis::connect(self.engine.clone(), self.response_timeout).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("bad routing engine address ({engine}): {source}")]
    BadAddress { engine: String, source: redis::RedisError },
    #[error("the routing engine ({engine}) does not answer: {source}")]
    Unreachable { engine: String, source: redis::RedisError },
    #[error("no answer from the routing engine ({engine}) within {timeout:?}")]
    Timeout { engine: String, timeout: Duration },
    #[error("the routing engine ({engine}) refused a command: {source}")]
    Command { engine: String, source: redis::RedisError },
}

impl RouteError {
    /// The code of a Redis error that refused a command (`NOSCRIPT`, ...).
    fn code(&self) -> Option<&str> {
        match self {
            RouteError::Command { source, .. } => source.code(),
            _ => None,
        }
    }
}
