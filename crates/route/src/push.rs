//! The logic layer's side: `Push` that reaches users on any access node.

use crate::engine::Redis;
use crate::{RouteConfig, RouteError};
use missive_proto::internal::{NotifyRequest, NotifyResponse, Presence, Push, UserRef};
use missive_rpc::unix_ms as now_ms;
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::Arc;

/// Looks up which nodes hold the users to notify and publishes each node its share.
pub struct RedisPush {
    config: RouteConfig,
    redis: Arc<Redis>,
}

impl RedisPush {
    pub async fn connect(config: RouteConfig) -> Result<Arc<RedisPush>, RouteError> {
        let redis = config.connect().await?;
        Ok(Arc::new(RedisPush { config, redis }))
    }
}

fn unavailable(error: RouteError) -> Status {
    Status::new(Code::Unavailable, format!("routing engine: {error}"))
}

#[async_trait::async_trait]
impl Push for RedisPush {
    /// Gives up after the configured response timeout (or the caller's deadline, if sooner):
    /// the change is durable already, and a notify that cannot be carried costs only a delay,
    /// so a slow or absent Redis must not hold sends.
    async fn notify(&self, ctx: &Ctx, req: NotifyRequest) -> Result<NotifyResponse, Status> {
        let mut limit = self.config.response_timeout;
        if let Some(deadline) = ctx.deadline {
            limit = limit.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        tokio::time::timeout(limit, self.publish(req))
            .await
            .map_err(|_| Status::new(Code::Unavailable, "routing engine: no answer in time"))?
    }

    /// Whether some access node holds the user; which devices only the nodes know, so none
    /// are listed.
    async fn presence(&self, _: &Ctx, req: UserRef) -> Result<Presence, Status> {
        // Bounded by the engine's deadline.
        let lookup = redis::Cmd::hgetall(self.config.route_key(req.user_id));
        let fields: HashMap<String, i64> = self.redis.query(&lookup).await.map_err(unavailable)?;
        let now = now_ms();
        Ok(Presence { online: fields.values().any(|expiry| *expiry > now), device_ids: vec![] })
    }
}

impl RedisPush {
    async fn publish(&self, req: NotifyRequest) -> Result<NotifyResponse, Status> {
        let mut users: Vec<u64> = req.targets.iter().map(|t| t.user_id).collect();
        users.extend(req.kicks.iter().map(|k| k.user_id));
        users.extend(req.events.iter().map(|e| e.user_id));
        users.sort_unstable();
        users.dedup();
        let mut lookup = redis::pipe();
        for &user_id in &users {
            lookup.hgetall(self.config.route_key(user_id));
        }
        let routes: Vec<HashMap<String, i64>> =
            self.redis.query(&lookup).await.map_err(unavailable)?;

        let now = now_ms();
        let mut offline: Vec<u64> = req.targets.iter().map(|t| t.user_id).collect();
        offline.sort_unstable();
        offline.dedup();
        offline.retain(|&user_id| {
            let fields = users.binary_search(&user_id).ok().map(|index| &routes[index]);
            !fields.into_iter().flatten().any(|(_, expiry)| *expiry > now)
        });
        let mut by_node: HashMap<&str, NotifyRequest> = HashMap::new();
        let live = |user_id: u64| {
            let fields = users.binary_search(&user_id).ok().map(|index| &routes[index]);
            fields.into_iter().flatten().filter(|(_, expiry)| **expiry > now).map(|(n, _)| n)
        };
        for target in req.targets {
            for node in live(target.user_id) {
                by_node.entry(node).or_default().targets.push(target);
            }
        }
        for event in req.events {
            for node in live(event.user_id) {
                by_node.entry(node).or_default().events.push(event.clone());
            }
        }
        let mut publish = redis::pipe();
        if !req.kicks.is_empty() {
            // Every logic node forgets the signed-out sessions it has cached.
            let sign_outs = NotifyRequest { kicks: req.kicks.clone(), ..Default::default() };
            publish.publish(self.config.sign_outs_channel(), sign_outs.encode_to_vec()).ignore();
        }
        for kick in req.kicks {
            for node in live(kick.user_id) {
                by_node.entry(node).or_default().kicks.push(kick.clone());
            }
        }
        // Fields of nodes that died without cleaning up would otherwise live as long as
        // another node keeps the key alive.
        for (user_id, fields) in users.iter().zip(&routes) {
            for (node, _) in fields.iter().filter(|(_, expiry)| **expiry <= now) {
                publish.hdel(self.config.route_key(*user_id), node).ignore();
            }
        }
        let nodes = by_node.len() as u64;
        for (node, request) in by_node {
            let body = request.encode_to_vec();
            publish.publish(self.config.channel(node), body).ignore();
        }
        if !publish.is_empty() {
            self.redis.query::<()>(&publish).await.map_err(unavailable)?;
        }
        metrics::counter!("missive_route_publishes_total").increment(nodes);
        Ok(NotifyResponse { offline })
    }
}
