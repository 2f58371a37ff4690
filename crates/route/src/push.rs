//! The logic layer's side: `Push` that reaches users on any access node.

use crate::{RouteConfig, RouteError, connect, now_ms};
use missive_proto::internal::{Empty, NotifyRequest, NotifyTarget, Push};
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::Arc;

/// Looks up which nodes hold the users to notify and publishes each node its share.
pub struct RedisPush {
    config: RouteConfig,
    connection: redis::aio::ConnectionManager,
}

impl RedisPush {
    pub async fn connect(config: RouteConfig) -> Result<Arc<RedisPush>, RouteError> {
        let (_, connection) = connect(&config).await?;
        Ok(Arc::new(RedisPush { config, connection }))
    }
}

fn unavailable(error: redis::RedisError) -> Status {
    Status::new(Code::Unavailable, format!("routing engine: {error}"))
}

#[async_trait::async_trait]
impl Push for RedisPush {
    async fn notify(&self, _: &Ctx, req: NotifyRequest) -> Result<Empty, Status> {
        let mut users: Vec<u64> = req.targets.iter().map(|t| t.user_id).collect();
        users.sort_unstable();
        users.dedup();
        let mut lookup = redis::pipe();
        for &user_id in &users {
            lookup.hgetall(self.config.route_key(user_id));
        }
        let mut connection = self.connection.clone();
        let routes: Vec<HashMap<String, i64>> =
            lookup.query_async(&mut connection).await.map_err(unavailable)?;

        let now = now_ms();
        let mut by_node: HashMap<&str, Vec<NotifyTarget>> = HashMap::new();
        for target in req.targets {
            let Ok(index) = users.binary_search(&target.user_id) else { continue };
            for (node, _) in routes[index].iter().filter(|(_, expiry)| **expiry > now) {
                by_node.entry(node).or_default().push(target);
            }
        }
        if by_node.is_empty() {
            return Ok(Empty {});
        }
        let nodes = by_node.len() as u64;
        let mut publish = redis::pipe();
        for (node, targets) in by_node {
            let body = NotifyRequest { targets }.encode_to_vec();
            publish.publish(self.config.channel(node), body).ignore();
        }
        publish.query_async::<()>(&mut connection).await.map_err(unavailable)?;
        metrics::counter!("missive_route_publishes_total").increment(nodes);
        Ok(Empty {})
    }
}
