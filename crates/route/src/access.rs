//! The access node's side: keeping its routes and receiving the notifies published to it.

use crate::channel::{Follower, RETRY_DELAY_MAX, follow};
use crate::engine::Redis;
use crate::{RouteConfig, RouteError};
use missive_access::Registry;
use missive_proto::internal::{NotifyRequest, Push as _};
use missive_rpc::Ctx;
use missive_rpc::unix_ms as now_ms;
use prost::Message as _;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Route entries written per pipelined round trip.
const WRITE_BATCH: usize = 1000;

/// Keeps this node's routes in Redis and delivers the notifies published to this node, until
/// [`AccessRoutes::stop`].
pub struct AccessRoutes {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    config: RouteConfig,
    redis: Arc<Redis>,
    registry: Arc<Registry>,
    /// Asks the keeper to write every online user's route again, then to tell every
    /// connection to sync.
    rewrite: Notify,
}

impl AccessRoutes {
    /// Checks that Redis answers, then starts the route keeper and the subscriber.
    pub async fn start(
        config: RouteConfig,
        registry: Arc<Registry>,
    ) -> Result<AccessRoutes, RouteError> {
        let redis = config.connect().await?;
        let presence = registry.watch_presence();
        let shared = Arc::new(Shared { config, redis, registry, rewrite: Notify::new() });
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(keep_routes(shared.clone(), presence, stop.clone())),
            tokio::spawn(follow(
                shared.redis.clone(),
                shared.config.channel(&shared.config.node_id),
                Notifies(shared),
                stop.clone(),
            )),
        ];
        Ok(AccessRoutes { stop, tasks })
    }

    /// Removes this node's routes (best effort) and stops. Call it after the connections
    /// have drained.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Writes the route of every user whose presence changed, and of every online user at each
/// refresh. Writes are state-based (online now: set; offline now: delete), so events may be
/// coalesced and retried in any order.
async fn keep_routes(
    shared: Arc<Shared>,
    mut presence: mpsc::UnboundedReceiver<u64>,
    stop: CancellationToken,
) {
    let mut dirty = HashSet::new();
    let mut refresh = tokio::time::interval(shared.config.ttl / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_delay = Duration::from_millis(100);
    // A rewrite asked for after a resubscription, not yet written.
    let mut rewriting = false;
    loop {
        let leaving = tokio::select! {
            Some(user_id) = presence.recv() => {
                dirty.insert(user_id);
                false
            }
            _ = refresh.tick() => {
                dirty.extend(shared.registry.online_users());
                false
            }
            () = shared.rewrite.notified() => {
                dirty.extend(shared.registry.online_users());
                rewriting = true;
                false
            }
            () = stop.cancelled() => {
                dirty.extend(shared.registry.online_users());
                true
            }
            // Only a failed write leaves users behind: try them again.
            () = tokio::time::sleep(retry_delay), if !dirty.is_empty() => {
                retry_delay = (retry_delay * 2).min(RETRY_DELAY_MAX);
                false
            }
        };
        while let Ok(user_id) = presence.try_recv() {
            dirty.insert(user_id);
        }
        match write_routes(&shared, &dirty, leaving).await {
            Ok(()) => {
                dirty.clear();
                retry_delay = Duration::from_millis(100);
                if std::mem::take(&mut rewriting) {
                    // Whatever was published while this node was not subscribed, or not
                    // routable, is lost: every connection here syncs, now that new notifies
                    // can reach it again.
                    shared.registry.wake_all();
                }
            }
            Err(error) => {
                metrics::counter!("missive_route_write_errors_total").increment(1);
                tracing::warn!(%error, users = dirty.len(), "writing routes failed; will retry");
            }
        }
        if leaving {
            return;
        }
    }
}

async fn write_routes(
    shared: &Shared,
    users: &HashSet<u64>,
    leaving: bool,
) -> Result<(), RouteError> {
    let config = &shared.config;
    let ttl_ms = config.ttl.as_millis() as i64;
    let expiry = now_ms() + ttl_ms;
    let users: Vec<u64> = users.iter().copied().collect();
    for batch in users.chunks(WRITE_BATCH) {
        let mut pipe = redis::pipe();
        for &user_id in batch {
            let key = config.route_key(user_id);
            if !leaving && shared.registry.is_online(user_id) {
                pipe.hset(&key, &config.node_id, expiry).ignore();
                pipe.pexpire(&key, ttl_ms).ignore();
            } else {
                pipe.hdel(&key, &config.node_id).ignore();
            }
        }
        shared.redis.query::<()>(&pipe).await?;
        metrics::counter!("missive_route_writes_total").increment(batch.len() as u64);
    }
    Ok(())
}

/// An access node's follower of its own channel: notifies and kicks for its connections.
struct Notifies(Arc<Shared>);

impl Follower for Notifies {
    fn subscribed(&self) {
        // Routes may have been lost meanwhile (a Redis restart keeps none): the keeper writes
        // them again, then has every connection sync.
        self.0.rewrite.notify_one();
    }

    async fn deliver(&self, payload: &[u8]) {
        deliver(&self.0.registry, payload).await;
    }
}

async fn deliver(registry: &Registry, payload: &[u8]) {
    metrics::counter!("missive_route_deliveries_total").increment(1);
    let request = match NotifyRequest::decode(payload) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "undecodable notify on this node's channel");
            return;
        }
    };
    if let Err(status) = registry.notify(&Ctx::new(0), request).await {
        tracing::warn!(%status, "notify from the routing channel refused");
    }
}
