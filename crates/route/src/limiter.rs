//! The logic layer's side: rate-limit buckets that every logic node of a deployment shares,
//! so that spreading requests over nodes does not multiply a limit.

use crate::engine::Redis;
use crate::{RouteConfig, RouteError};
use missive_proto::internal::{Limiter, TakeRequest, TakeResponse};
use missive_rpc::{Code, Ctx, Status};
use std::sync::Arc;

/// One bucket, as the generic cell rate algorithm keeps it: a hash of the time (Unix µs) at
/// which it is full again (`f`), and for a bucket that backs off its strikes (`s`) and the
/// last strike's penalty (`p`), set to expire when full. Arguments: now, the bucket's period
/// in µs, its count, the cost in requests, 1 to give the cost back instead of taking it, and
/// the longest back-off in µs (0: none). Returns 0 when let through, else the µs to wait. The
/// arithmetic is the logic layer's local buckets' (`missive-logic`'s limits), said in Lua.
/// A request's share of the period is a fraction (Lua numbers are doubles): a large count of
/// bytes is not rounded to whole µs. Times are written with `%.0f`: Lua's own number format
/// would round a µs timestamp to 14 digits.
const TAKE: &str = r"
local now = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local interval = capacity / tonumber(ARGV[3])
local backoff_max = tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 'f', 's', 'p')
local full_at = tonumber(state[1] or now)
local strikes = tonumber(state[2] or 0)
local penalty = tonumber(state[3] or 0)
if full_at <= now then full_at = now; strikes = 0; penalty = 0 end
local cost = tonumber(ARGV[4]) * interval
if ARGV[5] == '1' then
  full_at = full_at - cost - penalty
  if full_at < now then full_at = now end
  strikes = 0
  penalty = 0
else
  full_at = full_at + cost
  local over = full_at - now - capacity
  if over > 0 then return string.format('%.0f', over) end
  if backoff_max > 0 and full_at - now > capacity - interval then
    strikes = strikes + 1
    penalty = interval * (2 ^ math.min(strikes, 62) - 1)
    local room = now + capacity + backoff_max - full_at
    if room < 0 then room = 0 end
    if penalty > room then penalty = room end
    full_at = full_at + penalty
  end
end
if full_at <= now then
  redis.call('DEL', KEYS[1])
  return '0'
end
redis.call('HSET', KEYS[1], 'f', string.format('%.0f', full_at), 's', strikes,
  'p', string.format('%.0f', penalty))
redis.call('PEXPIRE', KEYS[1], math.ceil((full_at - now) / 1000) + 1)
return '0'
";

/// Buckets in Redis, under `<namespace>:limit:<bucket>`. The script is loaded once and
/// called by its digest, so a check (one per SEND) does not carry its text.
pub struct RedisLimiter {
    config: RouteConfig,
    redis: Arc<Redis>,
    /// TAKE's SHA-1, as Redis names it.
    digest: String,
}

async fn load(redis: &Redis) -> Result<String, RouteError> {
    redis.query(redis::cmd("SCRIPT").arg("LOAD").arg(TAKE)).await
}

impl RedisLimiter {
    pub async fn connect(config: RouteConfig) -> Result<Arc<RedisLimiter>, RouteError> {
        let redis = config.connect().await?;
        let digest = load(&redis).await?;
        Ok(Arc::new(RedisLimiter { config, redis, digest }))
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn take(&self, _: &Ctx, req: TakeRequest) -> Result<TakeResponse, Status> {
        if req.count == 0 || req.per_ms == 0 {
            return Err(Status::invalid_argument("a rate needs a count and a period"));
        }
        let cost = req.cost.min(req.count);
        let key = format!("{}:limit:{}", self.config.namespace, req.bucket);
        let mut call = redis::cmd("EVALSHA");
        call.arg(&self.digest).arg(1).arg(key);
        call.arg(req.now_ms.saturating_mul(1_000)).arg(req.per_ms.saturating_mul(1_000));
        call.arg(req.count).arg(cost).arg(if req.refund { "1" } else { "0" });
        call.arg(req.backoff_max_ms.saturating_mul(1_000));
        let mut answer = self.redis.query::<String>(&call).await;
        // A restarted Redis, or a replica promoted to master, may not know the script: load
        // it there (same digest) and retry.
        if answer.as_ref().is_err_and(|e| e.code() == Some("NOSCRIPT")) {
            answer = match load(&self.redis).await {
                Ok(_) => self.redis.query(&call).await,
                Err(error) => Err(error),
            };
        }
        let over =
            answer.map_err(|e| Status::new(Code::Unavailable, format!("routing engine: {e}")))?;
        let over: u64 = over.parse().map_err(|_| Status::internal("bad answer from Redis"))?;
        Ok(TakeResponse { wait_ms: over.div_ceil(1_000) })
    }
}
