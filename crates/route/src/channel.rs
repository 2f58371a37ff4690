//! Following one Redis pub/sub channel for as long as a node runs: subscribed again whenever
//! the subscription is lost (with a growing pause), on whichever server is the master then,
//! checked by a PING every few seconds.
//! Pub/sub keeps nothing for an absent subscriber, so each (re)subscription is announced to
//! the follower, which makes up for what it may have missed.

use crate::RouteError;
use crate::engine::Redis;
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const PING_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Master(#[from] RouteError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the subscription")]
    Closed,
    #[error("the sentinels announced a new master")]
    Switched,
}

/// What a follower does with its channel.
pub(crate) trait Follower: Send + Sync {
    /// Subscribed (again): whatever was published before may have been missed.
    fn subscribed(&self);
    /// One message's payload.
    fn deliver(&self, payload: &[u8]) -> impl Future<Output = ()> + Send;
}

/// Follows `channel` until `stop`, each command bounded by the engine's deadline.
pub(crate) async fn follow(
    redis: Arc<Redis>,
    channel: String,
    follower: impl Follower,
    stop: CancellationToken,
) {
    let mut retry_delay = Duration::from_millis(100);
    let mut switches = redis.switches();
    loop {
        switches.mark_unchanged();
        match listen(&redis, &channel, &follower, &stop, &mut retry_delay).await {
            Ok(()) => return,
            Err(error) => {
                metrics::counter!("missive_route_subscription_losses_total").increment(1);
                tracing::warn!(%channel, %error, "subscription lost; resubscribing");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry_delay) => {}
            // A new master is known: no reason to wait any longer.
            Ok(()) = switches.changed() => {}
            () = stop.cancelled() => return,
        }
        retry_delay = (retry_delay * 2).min(RETRY_DELAY_MAX);
    }
}

/// Subscribes and delivers until `stop` (then `Ok`) or until the subscription is lost.
async fn listen(
    redis: &Redis,
    channel: &str,
    follower: &impl Follower,
    stop: &CancellationToken,
    retry_delay: &mut Duration,
) -> Result<(), Lost> {
    let timeout = redis.timeout();
    // Watched from before the master is asked for, so that no announcement falls between.
    let mut switches = redis.switches();
    switches.mark_unchanged();
    // Asked again at every subscription: after a failover the master is elsewhere.
    let client = redis.client().await?;
    let pubsub = within(timeout, client.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    within(timeout, sink.subscribe(channel)).await?;
    *retry_delay = Duration::from_millis(100);
    follower.subscribed();
    tracing::info!(%channel, "subscribed");

    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        tokio::select! {
            message = stream.next() => {
                let message = message.ok_or(Lost::Closed)?;
                follower.deliver(message.get_payload_bytes()).await;
            }
            _ = ping.tick() => {
                // In subscribed mode PING answers an array, not a status.
                within(timeout, sink.ping::<redis::Value>()).await?;
            }
            // Publishers move to the new master; so does the subscription. (A demoted master
            // would go on relaying what the new one publishes, but only while it replicates.)
            Ok(()) = switches.changed() => return Err(Lost::Switched),
            () = stop.cancelled() => return Ok(()),
        }
    }
}

async fn within<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, Lost> {
    Ok(tokio::time::timeout(timeout, future).await.map_err(|_| Lost::Timeout(timeout))??)
}
