//! Rate limits: token buckets per account, user or client address, so that no one can guess
//! passwords, create accounts or flood others faster than a person would. A bucket holds up
//! to `count` requests and refills at `count` per `per`; a request that finds it empty is
//! refused with RATE_LIMITED and the time until it would be let through.
//!
//! Buckets live in this logic node's memory, or, given a shared [`Limiter`] (the routing
//! engine's), there, so that every logic node of a deployment counts against the same ones.
//! If the shared buckets cannot be reached, the node counts on its own until they can: a
//! limit fails open rather than refusing everyone. Local buckets are bounded in number;
//! those that have refilled carry no information and are dropped first.
//!
//! Failed LOGINs back off: each time a failure empties its bucket (a strike), the wait for
//! the next attempt doubles, up to a set longest wait; a success forgives the strikes, and so
//! does a bucket left to refill completely.

use crate::Logic;
use missive_proto::internal::{Limiter, TakeRequest};
use missive_rpc::{Ctx, Status};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `count` requests per `per`, at most `count` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `<count>/<duration>`, the duration as `10s`, `1m`, `15m`, `1h`, `1d`.
    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = || format!("bad rate {text:?} (use <count>/<duration>, e.g. 30/1m)");
        let (count, per) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.parse().map_err(|_| bad())?;
        let (number, unit) = per.split_at(per.len().saturating_sub(1));
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => number,
            "m" => number * 60,
            "h" => number * 3_600,
            "d" => number * 86_400,
            _ => return Err(bad()),
        };
        if count == 0 || seconds == 0 {
            return Err(bad());
        }
        Ok(Rate { count, per: Duration::from_secs(seconds) })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.per.as_secs();
        let units = [(86_400, "d"), (3_600, "h"), (60, "m")];
        match units.iter().find(|(unit, _)| seconds.is_multiple_of(*unit)) {
            Some((unit, name)) => write!(f, "{}/{}{name}", self.count, seconds / unit),
            None => write!(f, "{}/{seconds}s", self.count),
        }
    }
}

/// The rate limits of the client commands (docs/protocol.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Off only for load tests, which create thousands of accounts from one address.
    pub enabled: bool,
    /// Failed LOGINs per username: past it, a guesser waits, whatever address it uses.
    pub login_failures_per_account: Rate,
    /// Failed LOGINs per client address: a guesser trying one password on many accounts.
    pub login_failures_per_address: Rate,
    /// The longest wait that the back-off of failed LOGINs grows to.
    pub login_backoff_max: Duration,
    /// LOGIN attempts per client address.
    pub logins_per_address: Rate,
    /// REGISTERs per client address.
    pub registrations_per_address: Rate,
    /// SENDs per user (every device together).
    pub sends_per_user: Rate,
    /// SENDs per device: one device of a user cannot take the whole of the user's rate.
    pub sends_per_device: Rate,
    /// Bytes a user uploads: each UPLOAD costs its size.
    pub upload_bytes_per_user: Rate,
    /// Users put into groups per user (GROUP_CREATE's members and GROUP_INVITE's together).
    pub group_adds_per_user: Rate,
    /// TYPING signals per user (every device and conversation together).
    pub typing_per_user: Rate,
    /// SEARCHes per user: each looks up a full-text index.
    pub searches_per_user: Rate,
    /// Offline push: one notification per user this often. Not a limit a request meets, and
    /// kept when the limits are off.
    pub push_interval: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        let rate = |count, seconds| Rate { count, per: Duration::from_secs(seconds) };
        RateLimits {
            enabled: true,
            login_failures_per_account: rate(10, 15 * 60),
            login_failures_per_address: rate(50, 15 * 60),
            login_backoff_max: Duration::from_secs(3_600),
            logins_per_address: rate(60, 60),
            registrations_per_address: rate(20, 3_600),
            sends_per_user: rate(200, 10),
            sends_per_device: rate(100, 10),
            upload_bytes_per_user: rate(1 << 30, 86_400),
            group_adds_per_user: rate(500, 3_600),
            typing_per_user: rate(20, 10),
            searches_per_user: rate(30, 60),
            push_interval: Duration::from_secs(10),
        }
    }
}

/// What a bucket counts, for its key and its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Limit {
    LoginFailures,
    LoginFailuresPerAddress,
    LoginsPerAddress,
    Registrations,
    Sends,
    DeviceSends,
    UploadBytes,
    GroupAdds,
    Typing,
    Searches,
    /// Offline push notifications to one user: their pace, not a refusal.
    PushTurns,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::LoginFailures => "login_failures_per_account",
            Limit::LoginFailuresPerAddress => "login_failures_per_address",
            Limit::LoginsPerAddress => "logins_per_address",
            Limit::Registrations => "registrations_per_address",
            Limit::Sends => "sends_per_user",
            Limit::DeviceSends => "sends_per_device",
            Limit::UploadBytes => "upload_bytes_per_user",
            Limit::GroupAdds => "group_adds_per_user",
            Limit::Typing => "typing_per_user",
            Limit::Searches => "searches_per_user",
            Limit::PushTurns => "push_turns",
        }
    }

    fn rule(self, limits: &RateLimits) -> Rule {
        let backoff_max = match self {
            Limit::LoginFailures | Limit::LoginFailuresPerAddress => Some(limits.login_backoff_max),
            _ => None,
        };
        Rule { rate: self.rate(limits), backoff_max }
    }

    fn rate(self, limits: &RateLimits) -> Rate {
        match self {
            Limit::LoginFailures => limits.login_failures_per_account,
            Limit::LoginFailuresPerAddress => limits.login_failures_per_address,
            Limit::LoginsPerAddress => limits.logins_per_address,
            Limit::Registrations => limits.registrations_per_address,
            Limit::Sends => limits.sends_per_user,
            Limit::DeviceSends => limits.sends_per_device,
            Limit::UploadBytes => limits.upload_bytes_per_user,
            Limit::GroupAdds => limits.group_adds_per_user,
            Limit::Typing => limits.typing_per_user,
            Limit::Searches => limits.searches_per_user,
            Limit::PushTurns => Rate { count: 1, per: limits.push_interval },
        }
    }
}

/// How a bucket counts: its rate, and for a bucket that backs off, the longest wait its
/// back-off grows to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    rate: Rate,
    backoff_max: Option<Duration>,
}

/// A bucket as the generic cell rate algorithm keeps it: the time at which it will be full
/// again (its "theoretical arrival time"), in nanoseconds. Integer arithmetic, so a wait is
/// exact to the nanosecond. A bucket that backs off also keeps its strikes and the penalty
/// of the last one, which a refund (the attempt turned out not to count) takes back.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    full_at_ns: i128,
    strikes: u32,
    penalty_ns: i128,
}

/// Buckets held at most per shard; past it, the full ones (which say nothing) are dropped,
/// and if none is full, all of the shard's (failing open rather than growing).
const BUCKETS_PER_SHARD_MAX: usize = 16_384;
const SHARDS: usize = 16;

pub(crate) struct Buckets {
    shards: Vec<Mutex<HashMap<(Limit, u64), Bucket>>>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets { shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

impl Bucket {
    /// A bucket full at `now` (ns): nothing owed, no strikes.
    fn full(now: i128) -> Bucket {
        Bucket { full_at_ns: now, strikes: 0, penalty_ns: 0 }
    }

    /// Takes `cost` requests at `now` (ns) under `rule`, or tells how long until they would
    /// be let through. With `refund`, gives them back instead, with the last strike's
    /// penalty and every strike. The same arithmetic as the shared buckets' script
    /// (`missive-route`'s limiter), which says it in Lua.
    fn take(&mut self, rule: Rule, cost: u32, now: i128, refund: bool) -> Result<(), Duration> {
        // Each request takes `interval` of the bucket, which holds `count` of them.
        let rate = rule.rate;
        let interval = rate.per.as_nanos() as i128 / i128::from(rate.count);
        let capacity = interval * i128::from(rate.count);
        if self.full_at_ns <= now {
            // Refilled: nothing owed, no strikes remembered.
            *self = Bucket::full(now);
        }
        let cost = i128::from(cost.min(rate.count)) * interval;
        if refund {
            self.full_at_ns = (self.full_at_ns - cost - self.penalty_ns).max(now);
            self.strikes = 0;
            self.penalty_ns = 0;
            return Ok(());
        }
        let mut full_at = self.full_at_ns + cost;
        let over = full_at - now - capacity;
        if over > 0 {
            let wait_ns = u64::try_from(over).unwrap_or(u64::MAX);
            return Err(Duration::from_nanos(wait_ns).max(Duration::from_millis(1)));
        }
        if let Some(max) = rule.backoff_max
            && full_at - now > capacity - interval
        {
            // This one emptied the bucket: a strike, and the next wait doubles, up to `max`.
            self.strikes = self.strikes.saturating_add(1);
            let doubled = interval.saturating_mul((1i128 << self.strikes.min(62)) - 1);
            let room = (now + capacity + max.as_nanos() as i128 - full_at).max(0);
            self.penalty_ns = doubled.min(room);
            full_at += self.penalty_ns;
        }
        self.full_at_ns = full_at;
        Ok(())
    }
}

impl Buckets {
    /// Takes `cost` requests from the bucket of `key` under `rule` at `now_ms`, or tells how
    /// long until they would be let through. With `refund`, gives them back instead.
    fn take(
        &self,
        limit: Limit,
        key: u64,
        rule: Rule,
        cost: u32,
        now_ms: i64,
        refund: bool,
    ) -> Result<(), Duration> {
        let now = i128::from(now_ms) * 1_000_000;
        let shard = &self.shards[(key as usize ^ limit as usize) % SHARDS];
        let mut buckets = shard.lock().expect("rate buckets");
        if buckets.len() >= BUCKETS_PER_SHARD_MAX && !buckets.contains_key(&(limit, key)) {
            buckets.retain(|_, bucket| bucket.full_at_ns > now);
            if buckets.len() >= BUCKETS_PER_SHARD_MAX {
                buckets.clear();
            }
        }
        buckets.entry((limit, key)).or_insert(Bucket::full(now)).take(rule, cost, now, refund)
    }
}

/// One request counted ahead ([`Logic::limit_ahead`]).
pub(crate) struct Ahead {
    enabled: bool,
    buckets: Arc<Buckets>,
    shared: Option<Arc<dyn Limiter>>,
    limit: Limit,
    key: u64,
    rule: Rule,
    now_ms: i64,
    kept: bool,
}

impl Ahead {
    /// The request counted: it is not given back.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if self.kept || !self.enabled {
            return;
        }
        let (limit, key, rule, now) = (self.limit, self.key, self.rule, self.now_ms);
        let Some(shared) = self.shared.clone() else {
            let _ = self.buckets.take(limit, key, rule, 1, now, true);
            return;
        };
        // Dropped outside a runtime only at shutdown, when nothing is left to give back to.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = shared_take(shared.as_ref(), limit, key, rule, 1, true, now).await;
            });
        }
    }
}

/// Takes from the shared bucket of `limit` for `key`: Ok(Err(wait)) when refused.
async fn shared_take(
    shared: &dyn Limiter,
    limit: Limit,
    key: u64,
    rule: Rule,
    cost: u32,
    refund: bool,
    now_ms: i64,
) -> Result<Result<(), Duration>, Status> {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let request = TakeRequest {
        bucket: format!("{}:{key:016x}", limit.name()),
        count: rule.rate.count,
        per_ms: millis(rule.rate.per),
        cost,
        refund,
        now_ms,
        backoff_max_ms: rule.backoff_max.map_or(0, millis),
    };
    let answer = shared.take(&Ctx::new(0), request).await?;
    Ok(match answer.wait_ms {
        0 => Ok(()),
        wait => Err(Duration::from_millis(wait)),
    })
}

/// The key of a bucket: a username, a user id or an address, hashed the same way by every
/// logic node of a deployment whatever its build (FNV-1a; std's default hasher may change
/// between Rust releases, which would split the shared buckets during an upgrade).
pub(crate) fn key_of(value: impl Hash) -> u64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut hasher);
    hasher.finish()
}

impl Logic {
    /// Counts one request (or `cost`) against `limit` for `key`; RATE_LIMITED past it.
    pub(crate) async fn limit(&self, limit: Limit, key: u64, cost: u32) -> Result<(), Status> {
        self.rate_check(limit, key, cost, false).await
    }

    /// Counts one request against `limit` for `key` ahead of knowing whether it counts (a
    /// LOGIN, as a failure, before its password is checked): it is given back when the
    /// returned [`Ahead`] is dropped, unless [`Ahead::keep`] says it counted. An attempt that
    /// ends any other way (an error, a deadline, a client gone) is not held against anyone.
    pub(crate) async fn limit_ahead(&self, limit: Limit, key: u64) -> Result<Ahead, Status> {
        self.rate_check(limit, key, 1, false).await?;
        Ok(Ahead {
            enabled: self.config.rate_limits.enabled,
            buckets: self.buckets.clone(),
            shared: self.deps.limiter.clone(),
            limit,
            key,
            rule: limit.rule(&self.config.rate_limits),
            now_ms: self.now_ms(),
            kept: false,
        })
    }

    async fn rate_check(
        &self,
        limit: Limit,
        key: u64,
        cost: u32,
        refund: bool,
    ) -> Result<(), Status> {
        let limits = &self.config.rate_limits;
        if !limits.enabled {
            return Ok(());
        }
        let rule = limit.rule(limits);
        let now = self.now_ms();
        let local = || self.buckets.take(limit, key, rule, cost, now, refund);
        let taken = match &self.deps.limiter {
            None => local(),
            Some(shared) => {
                match shared_take(shared.as_ref(), limit, key, rule, cost, refund, now).await {
                    Ok(taken) => taken,
                    Err(error) => {
                        if self.rate_warnings.due() {
                            tracing::warn!(%error, "shared rate limits unreachable; counting here");
                        }
                        local()
                    }
                }
            }
        };
        taken.map_err(|wait| {
            metrics::counter!("missive_rate_limited_total", "limit" => limit.name()).increment(1);
            let rate = rule.rate;
            Status::rate_limited(format!("too many requests ({} {rate})", limit.name()), wait)
        })
    }

    /// Takes a turn from `limit`'s bucket for `key` whether or not limits are on (a pace,
    /// not a refusal), shared by every logic node when the limiter is; or the wait until one.
    pub(crate) async fn turn(&self, limit: Limit, key: u64) -> Result<(), Duration> {
        let rule = limit.rule(&self.config.rate_limits);
        let now = self.now_ms();
        if let Some(shared) = &self.deps.limiter
            && let Ok(taken) = shared_take(shared.as_ref(), limit, key, rule, 1, false, now).await
        {
            return taken;
        }
        self.buckets.take(limit, key, rule, 1, now, false)
    }

    /// The key of the request's client address; requests with none (from inside the
    /// deployment) share one.
    pub(crate) fn address_key(ctx: &Ctx) -> u64 {
        key_of(ctx.client_address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_as_they_parse() {
        for text in ["30/1m", "10/15m", "20/1h", "200/10s", "5/1d"] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), text);
        }
        for bad in ["30", "0/1m", "30/0s", "x/1m", "30/1w", "30/m"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_one_per_refill() {
        let buckets = Buckets::default();
        let rate = Rate { count: 3, per: Duration::from_secs(3) };
        let rule = Rule { rate, backoff_max: None };
        let take = |now| buckets.take(Limit::Sends, 7, rule, 1, now, false);
        assert!((0..3).all(|_| take(0).is_ok()), "the burst");
        assert_eq!(take(0), Err(Duration::from_millis(1000)), "then the time to one token");
        assert_eq!(take(999), Err(Duration::from_millis(1)));
        assert!(take(1000).is_ok());
        assert!(take(1000).is_err());
        assert!(buckets.take(Limit::Sends, 8, rule, 1, 1000, false).is_ok(), "others unaffected");
        assert!(buckets.take(Limit::Registrations, 7, rule, 1, 1000, false).is_ok(), "and limits");
        // A refund gives one back at once, never more than the bucket holds.
        assert!(buckets.take(Limit::Sends, 7, rule, 1, 1000, true).is_ok());
        assert!(take(1000).is_ok(), "the refunded one");
        assert!(take(1000).is_err());
        assert!(buckets.take(Limit::Sends, 9, rule, 3, 0, true).is_ok(), "a refund to a full one");
        assert!((0..3).all(|_| buckets.take(Limit::Sends, 9, rule, 1, 0, false).is_ok()));
        assert!(buckets.take(Limit::Sends, 9, rule, 1, 0, false).is_err(), "still three at most");
    }

    #[test]
    fn failures_back_off_twice_as_long_at_each_strike_up_to_the_longest_wait() {
        let buckets = Buckets::default();
        let rate = Rate { count: 10, per: Duration::from_secs(900) };
        let rule = Rule { rate, backoff_max: Some(Duration::from_secs(3_600)) };
        let take = |now_s: i64, refund| {
            buckets.take(Limit::LoginFailures, 1, rule, 1, now_s * 1_000, refund)
        };
        assert!((0..10).all(|_| take(0, false).is_ok()), "the burst");
        // Steady, the next would pass after 90 s; the strike at the tenth doubles that.
        assert_eq!(take(0, false), Err(Duration::from_secs(180)));
        let mut now = 180;
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert!(take(now, false).is_ok());
            let Err(wait) = take(now, false) else { panic!("one at a time") };
            waits.push(wait.as_secs());
            now += wait.as_secs() as i64;
        }
        assert_eq!(waits, [360, 720, 1_440, 2_880, 3_690, 3_690, 3_690], "doubling, then capped");
        // A success gives back its attempt with its strike's penalty and forgives the strikes.
        assert!(take(now, false).is_ok());
        assert!(take(now, true).is_ok());
        assert!(take(now, false).is_ok(), "the owner's attempt");
        assert_eq!(take(now, false), Err(Duration::from_secs(180)), "from one strike again");
        // A bucket left to refill forgets its strikes.
        let later = now + 900 + 3_600;
        assert!((0..10).all(|_| take(later, false).is_ok()), "a whole burst again");
        assert_eq!(take(later, false), Err(Duration::from_secs(180)), "from one strike");
    }
}
