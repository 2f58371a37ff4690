//! The smart heartbeat (docs/protocol.md §5.4, after WeChat's Mars) and the reconnection
//! back-off (§5.10).
//!
//! A network path (a NAT, a carrier's firewall) forgets an idle connection after a time no one
//! announces. [`HeartbeatPolicy`] starts at the server's safe interval, proves each interval
//! twice, then probes one step longer, up to the server's maximum. An unanswered PING sends it
//! back to the last interval proven (or one step below a proven one that failed), and it
//! settles there for as long as the client keeps it: a [`Client`](crate::Client) carries it
//! over to the connection that replaces a lost one ([`Client::reconnect`](crate::Client)).
//!
//! [`keep_heartbeat`] is the loop a long link runs; it takes the PING as a function, so that
//! its timing can be checked on a paused clock against a simulated path.

use rand::Rng;
use std::time::Duration;

/// How much longer each probe is.
pub const STEP: Duration = Duration::from_secs(30);
/// Proofs of an interval in a row before the next probe.
pub const PROOFS_BEFORE_PROBE: u32 = 2;
/// How long a heartbeat PING's answer may take before the link counts as forgotten.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The range the server named in AUTH; `min` and `max` are zero from a server that names
/// none, which keeps the interval fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub start: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Advertised {
    /// From AUTH's answer, in seconds.
    pub fn from_seconds(start_s: u32, min_s: u32, max_s: u32) -> Advertised {
        let s = |s: u32| Duration::from_secs(u64::from(s));
        Advertised { start: s(start_s.max(1)), min: s(min_s), max: s(max_s) }
    }
}

/// What the client knows of how long its network path keeps an idle link.
#[derive(Debug, Clone)]
pub struct HeartbeatPolicy {
    interval: Duration,
    good: Duration,
    proofs: u32,
    settled: bool,
    min: Duration,
    max: Duration,
}

impl HeartbeatPolicy {
    pub fn new(advertised: Advertised) -> HeartbeatPolicy {
        let start = advertised.start.max(Duration::from_secs(1));
        let min = if advertised.min.is_zero() { start } else { advertised.min.min(start) };
        let max = if advertised.max.is_zero() { start } else { advertised.max.max(start) };
        HeartbeatPolicy {
            interval: start,
            good: start,
            proofs: 0,
            // A server that names no range takes no other interval.
            settled: max == start,
            min,
            max,
        }
    }

    /// How long to wait before the next PING.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest interval proven to survive the path.
    pub fn good(&self) -> Duration {
        self.good
    }

    /// Whether the policy has stopped probing.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// The interval to wait next if the coming PING is answered: what that PING tells the
    /// server.
    pub fn next_if_answered(&self) -> Duration {
        if self.settled || self.proofs + 1 < PROOFS_BEFORE_PROBE || self.interval >= self.max {
            return self.interval;
        }
        (self.interval + STEP).min(self.max)
    }

    /// The PING sent after waiting [`interval`](Self::interval) was answered.
    pub fn answered(&mut self) {
        let next = self.next_if_answered();
        self.good = self.good.max(self.interval);
        self.proofs = if next == self.interval { self.proofs + 1 } else { 0 };
        self.interval = next;
    }

    /// The PING sent after waiting [`interval`](Self::interval) went unanswered: the path
    /// forgot the link.
    pub fn unanswered(&mut self) {
        self.proofs = 0;
        if self.interval > self.good {
            self.interval = self.good;
        } else {
            self.good = self.good.saturating_sub(STEP).max(self.min);
            self.interval = self.good;
        }
        self.settled = true;
    }

    /// The interval the server put in force (its answer's): a server clamps what it is told.
    pub fn confirmed(&mut self, in_force: Duration) {
        if !in_force.is_zero() && in_force < self.interval {
            self.interval = in_force;
            self.settled = true;
        }
    }
}

/// Keeps a link's heartbeat: waits the policy's interval, sends a PING naming the interval it
/// will wait next (`ping` answers with the interval the server put in force, or fails when no
/// answer came in time), and learns from the answer. Returns when a PING goes unanswered: the
/// path forgot the link, which the caller then closes.
pub async fn keep_heartbeat<F, P>(policy: &std::sync::Mutex<HeartbeatPolicy>, mut ping: P)
where
    P: FnMut(Duration) -> F,
    F: Future<Output = Option<Duration>>,
{
    loop {
        let interval = policy.lock().expect("heartbeat policy").interval();
        tokio::time::sleep(interval).await;
        let next = policy.lock().expect("heartbeat policy").next_if_answered();
        let answer = ping(next).await;
        let mut policy = policy.lock().expect("heartbeat policy");
        match answer {
            Some(in_force) => {
                policy.answered();
                policy.confirmed(in_force);
            }
            None => {
                policy.unanswered();
                return;
            }
        }
    }
}

/// Full-jitter exponential back-off between reconnection attempts (docs/protocol.md §5.10):
/// the n-th attempt in a row waits a random time between half the base and
/// `min(max, base × 2^n)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max: max.max(base), attempt: 0 }
    }

    /// The wait before the next attempt, never shorter than `at_least` (an answer's
    /// `retry_after_ms`).
    pub fn next_wait(&mut self, rng: &mut impl Rng, at_least: Duration) -> Duration {
        let cap = self.base.saturating_mul(1 << self.attempt.min(30)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = self.base / 2;
        let wait = floor + (cap - floor).mul_f64(rng.random::<f64>());
        wait.max(at_least)
    }

    /// Attempts in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next loss starts from the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::time::Instant;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn range() -> Advertised {
        Advertised { start: S(30), min: S(10), max: S(300) }
    }

    #[test]
    fn each_interval_is_proven_twice_then_probed_one_step_longer_up_to_the_maximum() {
        let mut policy = HeartbeatPolicy::new(range());
        let mut waited = Vec::new();
        for _ in 0..40 {
            waited.push(policy.interval().as_secs());
            policy.answered();
        }
        assert_eq!(waited[..6], [30, 30, 60, 60, 90, 90]);
        assert_eq!(policy.interval(), S(300));
        assert_eq!(policy.good(), S(300));
    }

    #[test]
    fn a_failed_probe_goes_back_to_the_proven_interval_and_settles() {
        let mut policy = HeartbeatPolicy::new(range());
        for _ in 0..4 {
            policy.answered();
        }
        assert_eq!(policy.interval(), S(90));
        policy.unanswered();
        assert_eq!((policy.interval(), policy.is_settled()), (S(60), true));
        for _ in 0..10 {
            policy.answered();
        }
        assert_eq!(policy.interval(), S(60), "a settled policy probes no more");

        let mut policy = HeartbeatPolicy::new(range());
        policy.unanswered();
        assert_eq!(
            policy.interval(),
            S(10),
            "a proven interval that fails: a step down, at least the minimum"
        );
        let fixed = Advertised { start: S(45), min: Duration::ZERO, max: Duration::ZERO };
        let mut policy = HeartbeatPolicy::new(fixed);
        policy.answered();
        policy.answered();
        policy.answered();
        assert_eq!(policy.interval(), S(45), "no range named: a fixed interval");
    }

    proptest! {
        /// Whatever happens, the interval stays in the server's range, the server is told the
        /// interval that follows, and after a failure the policy never probes again.
        #[test]
        fn the_interval_stays_in_range_and_a_failure_settles_it(
            start in 1u64..600, min in 0u64..600, max in 0u64..1200,
            events in prop::collection::vec(any::<bool>(), 0..100),
        ) {
            let advertised = Advertised { start: S(start), min: S(min), max: S(max) };
            let mut policy = HeartbeatPolicy::new(advertised);
            let low = if min == 0 { start } else { min.min(start) };
            let high = if max == 0 { start } else { max.max(start) };
            let mut failed = false;
            for answered in events {
                let told = policy.next_if_answered();
                let before = policy.interval();
                if answered {
                    policy.answered();
                    prop_assert_eq!(policy.interval(), told);
                    if failed {
                        prop_assert_eq!(policy.interval(), before, "settled");
                    }
                } else {
                    policy.unanswered();
                    failed = true;
                    prop_assert!(policy.interval() <= before);
                }
                prop_assert!((S(low)..=S(high)).contains(&policy.interval()));
            }
        }

        #[test]
        fn back_off_waits_grow_within_their_bounds(seed: u64, attempts in 1usize..40) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            for n in 0..attempts {
                let wait = backoff.next_wait(&mut rng, Duration::ZERO);
                let cap = (Duration::from_millis(500) * (1u32 << n.min(16))).min(S(30));
                prop_assert!(wait >= Duration::from_millis(250) && wait <= cap, "{wait:?} after {n}");
            }
            prop_assert_eq!(backoff.next_wait(&mut rng, S(40)), S(40), "an answer's wait is heeded");
            backoff.reset();
            prop_assert!(backoff.next_wait(&mut rng, Duration::ZERO) <= Duration::from_millis(500));
        }
    }

    /// On a paused clock, against a path that forgets links idle longer than it allows: the
    /// loop finds the longest interval the path keeps, losing one link to the probe that
    /// went too far.
    #[tokio::test(start_paused = true)]
    async fn the_loop_finds_the_longest_interval_a_path_keeps() {
        for forgets_after in [100u64, 200, 1000] {
            let policy = Mutex::new(HeartbeatPolicy::new(range()));
            let last_heard = AtomicU64::new(0);
            let zero = Instant::now();
            let now_ms = || (Instant::now() - zero).as_millis() as u64;
            let mut links = 0;
            loop {
                links += 1;
                last_heard.store(now_ms(), Ordering::SeqCst);
                let ping = |next: Duration| {
                    let idle = now_ms() - last_heard.load(Ordering::SeqCst);
                    let kept = idle <= forgets_after * 1000;
                    if kept {
                        last_heard.store(now_ms(), Ordering::SeqCst);
                    }
                    assert!((S(10)..=S(300)).contains(&next), "the server is told {next:?}");
                    std::future::ready(kept.then_some(next))
                };
                let day = tokio::time::timeout(S(24 * 3600), keep_heartbeat(&policy, ping));
                if day.await.is_err() {
                    break; // kept for a day: the path keeps this interval
                }
            }
            let expected = (forgets_after / 30 * 30).min(300);
            assert_eq!(
                policy.lock().unwrap().interval(),
                S(expected),
                "forgets after {forgets_after} s"
            );
            let lost = if forgets_after < 300 { 1 } else { 0 };
            assert_eq!(links, lost + 1, "links lost to probing: {lost}");
        }
    }
}
