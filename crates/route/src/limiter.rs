//! The logic layer's side: rate-limit buckets that every logic node of a deployment shares,
//! so that spreading requests over nodes does not multiply a limit.

use crate::{RouteConfig, RouteError, connect};
use missive_proto::internal::{Limiter, TakeRequest, TakeResponse};
use missive_rpc::{Code, Ctx, Status};
use std::sync::Arc;

/// One bucket, as the generic cell rate algorithm keeps it: the time (Unix µs) at which it
/// is full again, set to expire then. Arguments: now, the bucket's period in µs, its count,
/// the cost in requests, and 1 to give the cost back instead of taking it. Returns 0 when let
/// through, else the µs to wait. A request's share of the period is a fraction (Lua numbers
/// are doubles): a large count of bytes is not rounded to whole µs. Times are written with
/// `%.0f`: Lua's own number format would round a µs timestamp to 14 digits.
const TAKE: &str = r"
local now = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local interval = capacity / tonumber(ARGV[3])
local full_at = tonumber(redis.call('GET', KEYS[1]) or now)
if full_at < now then full_at = now end
local cost = tonumber(ARGV[4]) * interval
if ARGV[5] == '1' then cost = -cost end
local after = full_at + cost
if after < now then after = now end
local over = after - now - capacity
if over > 0 then return string.format('%.0f', over) end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1)
return '0'
";

/// Buckets in Redis, under `<namespace>:rate:<bucket>`.
pub struct RedisLimiter {
    config: RouteConfig,
    connection: redis::aio::ConnectionManager,
}

impl RedisLimiter {
    pub async fn connect(config: RouteConfig) -> Result<Arc<RedisLimiter>, RouteError> {
        let (_, connection) = connect(&config).await?;
        Ok(Arc::new(RedisLimiter { config, connection }))
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn take(&self, _: &Ctx, req: TakeRequest) -> Result<TakeResponse, Status> {
        if req.count == 0 || req.per_ms == 0 {
            return Err(Status::invalid_argument("a rate needs a count and a period"));
        }
        let cost = req.cost.min(req.count);
        let key = format!("{}:rate:{}", self.config.namespace, req.bucket);
        let mut connection = self.connection.clone();
        let over: String = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(1)
            .arg(key)
            .arg(req.now_ms.saturating_mul(1_000))
            .arg(req.per_ms.saturating_mul(1_000))
            .arg(req.count)
            .arg(cost)
            .arg(if req.refund { "1" } else { "0" })
            .query_async(&mut connection)
            .await
            .map_err(|e| Status::new(Code::Unavailable, format!("routing engine: {e}")))?;
        let over: u64 = over.parse().map_err(|_| Status::internal("bad answer from Redis"))?;
        Ok(TakeResponse { wait_ms: over.div_ceil(1_000) })
    }
}
