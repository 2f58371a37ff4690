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

/// Buckets in Redis, under `<namespace>:rate:<bucket>`. The script is loaded once and
/// called by its digest, so a check (one per SEND) does not carry its text.
pub struct RedisLimiter {
    config: RouteConfig,
    connection: redis::aio::ConnectionManager,
    /// TAKE's SHA-1, as Redis names it.
    digest: String,
}

async fn load(connection: &mut redis::aio::ConnectionManager) -> redis::RedisResult<String> {
    redis::cmd("SCRIPT").arg("LOAD").arg(TAKE).query_async(connection).await
}

impl RedisLimiter {
    pub async fn connect(config: RouteConfig) -> Result<Arc<RedisLimiter>, RouteError> {
        let (_, mut connection) = connect(&config).await?;
        let digest = load(&mut connection)
            .await
            .map_err(|source| RouteError::Unreachable { url: config.url.clone(), source })?;
        Ok(Arc::new(RedisLimiter { config, connection, digest }))
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
        let mut call = redis::cmd("EVALSHA");
        call.arg(&self.digest).arg(1).arg(key);
        call.arg(req.now_ms.saturating_mul(1_000)).arg(req.per_ms.saturating_mul(1_000));
        call.arg(req.count).arg(cost).arg(if req.refund { "1" } else { "0" });
        let mut connection = self.connection.clone();
        let mut answer = call.query_async::<String>(&mut connection).await;
        // A restarted Redis has forgotten the script: load it again (same digest) and retry.
        if answer.as_ref().is_err_and(|e| e.code() == Some("NOSCRIPT")) {
            answer = match load(&mut connection).await {
                Ok(_) => call.query_async(&mut connection).await,
                Err(error) => Err(error),
            };
        }
        let over =
            answer.map_err(|e| Status::new(Code::Unavailable, format!("routing engine: {e}")))?;
        let over: u64 = over.parse().map_err(|_| Status::internal("bad answer from Redis"))?;
        Ok(TakeResponse { wait_ms: over.div_ceil(1_000) })
    }
}
