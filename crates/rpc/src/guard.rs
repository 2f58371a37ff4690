//! The server side of every call, local or remote: deadline check, overload control in the
//! manner of WeChat's DAGOR, and per-method metrics. Generated `<Service>Guarded` wrappers run
//! each method through [`Guard::call`], so no service writes any of this itself.
//!
//! **Overload control.** Each guarded service runs at most `workers` calls at once (Svrkit's
//! worker pool); a call beyond that waits for a slot, and that wait is the *queueing delay*
//! DAGOR watches. Every call has a compound priority: its business [`Priority`] (from the
//! command that started the request) and a user priority (a hash of the user id that changes
//! every hour, so the same users are not always the ones refused). The guard admits a call
//! only when its compound priority is below the admission level. Every window (a second, or
//! `window_calls` calls), it compares the mean queueing delay with `queue_delay_max`: above
//! it, the level falls until about 5% fewer calls would have been admitted; below it, the
//! level rises until about 1% more would, and, when the queueing delay is under a quarter of
//! its budget, by at least a quarter of all levels: 1% more of a class that nothing of gets
//! in is nothing, so without that a level that shut a class out would open again only as
//! fast as the refused class kept asking. A window left open across a quiet spell is closed
//! by the next call as if each second of the spell had been a window of its own, with no
//! queueing if no call waits for a worker then, so after a burst every class is admitted
//! again within a few seconds, however little traffic there is. A refused call fails at once
//! with OVERLOADED, before it costs anything, and is counted in `missive_rpc_shed_total`.
//! Unlike DAGOR, the level never falls into [`Priority::Critical`]: syncs deliver what is
//! already stored, so refusing them only lets backlogs grow; they can still run out of time
//! in the queue.

use crate::{Code, Ctx, LazyHandles, Priority, Status, Timer};
use metrics::{Counter, Gauge};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
// Tokio's clock, so that tests can run windows of virtual time.
use tokio::time::Instant;

/// User priorities per business priority.
const USER_LEVELS: usize = 128;
/// Compound priority levels: business priority × user priority.
const LEVELS: usize = Priority::ALL.len() * USER_LEVELS;
/// The level never falls below this: [`Priority::Critical`] calls (syncs, which drain what is
/// stored) are never refused for priority, only by their deadline.
const CRITICAL_LEVELS: usize = USER_LEVELS;
/// DAGOR's α and β, in per mille: shed 5% more when overloaded, admit 1% more when not.
const SHED_STEP_PER_MILLE: u64 = 50;
const ADMIT_STEP_PER_MILLE: u64 = 10;
/// The least the level rises per window when the queueing delay is well under its budget.
const RECOVERY_LEVELS: usize = LEVELS / 4;

#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Calls run at once at most; more wait for a slot (the queue whose delay is watched).
    pub workers: usize,
    /// Mean queueing delay above which the service counts as overloaded (DAGOR uses 20 ms).
    pub queue_delay_max: Duration,
    /// How often the admission level is reconsidered, at the latest.
    pub window: Duration,
    /// Calls after which the admission level is reconsidered, at the latest.
    pub window_calls: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            workers: 512,
            queue_delay_max: Duration::from_millis(20),
            window: Duration::from_secs(1),
            window_calls: 2000,
        }
    }
}

/// One method's metric handles, looked up once: the hot path only increments.
struct MethodStats {
    name: &'static str,
    calls: Counter,
    /// By priority (its number), made at the first shed: a series appears once it counts.
    shed: LazyHandles<Counter>,
    /// By status code (its number), made at a code's first error.
    errors: LazyHandles<Counter>,
}

/// Guards one service; shared by every call of it.
pub struct Guard {
    service: &'static str,
    methods: Vec<MethodStats>,
    /// `missive_rpc_duration_seconds` per method.
    durations: Timer,
    /// Bounds the calls in progress; waiting here is the queueing delay.
    workers: Semaphore,
    admission: Admission,
}

impl Guard {
    pub fn new(service: &'static str, names: &[&'static str], config: &GuardConfig) -> Guard {
        let methods = names
            .iter()
            .map(|&name| MethodStats {
                name,
                calls: metrics::counter!("missive_rpc_calls_total", "service" => service, "method" => name),
                shed: LazyHandles::new(Priority::ALL.len()),
                errors: LazyHandles::new(Code::ALL.len()),
            })
            .collect();
        Guard {
            service,
            methods,
            durations: Timer::new("missive_rpc_duration_seconds", &[("service", service)], names),
            workers: Semaphore::new(config.workers.max(1)),
            admission: Admission::new(service, config.clone()),
        }
    }

    /// Runs `work` as method number `method` of this service (its index in the schema).
    pub async fn call<T>(
        &self,
        method: usize,
        ctx: &Ctx,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let stats = &self.methods[method];
        stats.calls.increment(1);
        let result = self.admit_and_run(stats, ctx, started, work).await;
        self.durations.record(method, started.elapsed());
        if let Err(status) = &result {
            let code = status.code;
            // The path of a failure, tier by tier. Where it arose logs it at its level, and
            // the access node logs the request's failure once.
            let (service, method) = (self.service, stats.name);
            tracing::debug!(request_id = ctx.request_id, service, method, %status, "call failed");
            stats
                .errors
                .get(code as usize, || {
                    metrics::counter!(
                        "missive_rpc_errors_total",
                        "service" => self.service,
                        "method" => stats.name,
                        "code" => code.as_str()
                    )
                })
                .increment(1);
        }
        result
    }

    async fn admit_and_run<T>(
        &self,
        stats: &MethodStats,
        ctx: &Ctx,
        started: Instant,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        if ctx.deadline.is_some_and(|deadline| deadline <= started.into_std()) {
            return Err(Status::new(Code::DeadlineExceeded, "deadline passed before the call"));
        }
        if !self.admission.admit(compound_priority(ctx), &self.workers) {
            let priority = ctx.priority;
            stats
                .shed
                .get(priority as usize, || {
                    metrics::counter!(
                        "missive_rpc_shed_total",
                        "service" => self.service,
                        "method" => stats.name,
                        "priority" => priority.as_str()
                    )
                })
                .increment(1);
            return Err(Status::new(Code::Overloaded, "server overloaded; retry later"));
        }
        let permit = match self.workers.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let acquire = self.workers.acquire();
                let permit = match ctx.deadline {
                    Some(deadline) => {
                        tokio::time::timeout_at(deadline.into(), acquire).await.map_err(|_| {
                            self.admission.observe(started.elapsed());
                            Status::new(Code::DeadlineExceeded, "deadline passed in the queue")
                        })?
                    }
                    None => acquire.await,
                };
                permit.map_err(|_| Status::new(Code::Unavailable, "service is shutting down"))?
            }
        };
        self.admission.observe(started.elapsed());
        let result = work.await;
        drop(permit);
        result
    }

    /// The compound priority level below which calls are admitted now (the
    /// `missive_rpc_admission_level` gauge shows it outside tests).
    #[cfg(test)]
    fn admission_level(&self) -> usize {
        self.admission.level.load(Ordering::Relaxed)
    }
}

/// DAGOR's compound priority: business priority first, then a user priority that rotates
/// hourly. Lower is more important.
fn compound_priority(ctx: &Ctx) -> usize {
    let user = match ctx.caller {
        Some(caller) => {
            let hour = (crate::unix_ms() / 3_600_000) as u64;
            mix(caller.user_id ^ hour.rotate_left(32))
        }
        None => mix(ctx.request_id),
    };
    ctx.priority as usize * USER_LEVELS + (user % USER_LEVELS as u64) as usize
}

/// A 64-bit finalizer (from SplitMix64): spreads consecutive ids over all user levels.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Admission {
    /// Calls with a compound priority below this are admitted; `LEVELS` admits everything.
    level: AtomicUsize,
    window: Mutex<Window>,
    config: GuardConfig,
    level_gauge: Gauge,
    /// The mean queueing delay of the last window, as the level was decided on it.
    queueing_gauge: Gauge,
}

struct Window {
    started: Instant,
    /// Calls that asked in this window.
    requests: u32,
    /// Admitted calls that got a worker in this window, and their total wait.
    calls: u32,
    queued: Duration,
    /// Calls that asked for each compound priority in this window, admitted or not.
    demand: Vec<u64>,
}

impl Admission {
    fn new(service: &'static str, config: GuardConfig) -> Admission {
        let level_gauge = metrics::gauge!("missive_rpc_admission_level", "service" => service);
        level_gauge.set(LEVELS as f64);
        let queueing_gauge = metrics::gauge!("missive_rpc_queueing_seconds", "service" => service);
        Admission {
            level: AtomicUsize::new(LEVELS),
            window: Mutex::new(Window {
                started: Instant::now(),
                requests: 0,
                calls: 0,
                queued: Duration::ZERO,
                demand: vec![0; LEVELS],
            }),
            config,
            level_gauge,
            queueing_gauge,
        }
    }

    /// Counts the demand and decides; also closes the window when it is over, so that a
    /// level that refuses everything still rises again. `workers` are the service's.
    fn admit(&self, priority: usize, workers: &Semaphore) -> bool {
        let mut window = self.window.lock().expect("admission window");
        window.demand[priority] += 1;
        window.requests += 1;
        if window.requests >= self.config.window_calls
            || window.started.elapsed() >= self.config.window
        {
            self.reconsider(&mut window, workers.available_permits() > 0);
        }
        priority < self.level.load(Ordering::Relaxed)
    }

    /// Records how long an admitted call waited for a worker.
    fn observe(&self, queued: Duration) {
        let mut window = self.window.lock().expect("admission window");
        window.calls += 1;
        window.queued += queued;
    }

    fn reconsider(&self, window: &mut Window, queue_empty: bool) {
        let level = self.level.load(Ordering::Relaxed);
        // Windows this one lasted: more than one when no call came to close it sooner.
        let windows = (window.started.elapsed().as_nanos() / self.config.window.as_nanos().max(1))
            .clamp(1, LEVELS as u128) as usize;
        // Its delays are old news after a quiet spell, if nothing waits for a worker now.
        let mean = if windows >= 2 && queue_empty {
            Duration::ZERO
        } else {
            window.queued / window.calls.max(1)
        };
        self.queueing_gauge.set(mean.as_secs_f64());
        let admitted: u64 = window.demand[..level].iter().sum();
        let next = if mean > self.config.queue_delay_max {
            // Admit about 5% fewer: the highest level whose demand fits under the target.
            let target = admitted * (1000 - SHED_STEP_PER_MILLE) / 1000;
            let mut sum = 0;
            let mut next = 0;
            while next < level && sum + window.demand[next] <= target {
                sum += window.demand[next];
                next += 1;
            }
            next.min(level.saturating_sub(1)).max(CRITICAL_LEVELS)
        } else if level < LEVELS {
            // Admit about 1% more (at least one more level).
            let target = admitted + (admitted * ADMIT_STEP_PER_MILLE / 1000).max(1);
            let mut sum = admitted;
            let mut next = level;
            while next < LEVELS && (sum < target || next == level) {
                sum += window.demand[next];
                next += 1;
            }
            // Well under the budget there is room to spare, whatever asked in the window.
            if mean <= self.config.queue_delay_max / 4 {
                next = next.max(level + RECOVERY_LEVELS * windows);
            }
            next.min(LEVELS)
        } else {
            level
        };
        if next != level {
            tracing::info!(
                level = next,
                previous = level,
                mean_queue_ms = mean.as_secs_f64() * 1e3,
                "admission level changed"
            );
            self.level.store(next, Ordering::Relaxed);
            self.level_gauge.set(next as f64);
        }
        window.started = Instant::now();
        window.requests = 0;
        window.calls = 0;
        window.queued = Duration::ZERO;
        window.demand.iter_mut().for_each(|d| *d = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Caller;
    use std::sync::Arc;

    fn ctx(priority: Priority, user_id: u64) -> Ctx {
        let caller = Caller { user_id, device_id: 1, protocol_version: 1 };
        Ctx { caller: Some(caller), ..Ctx::new(user_id) }.with_priority(priority)
    }

    /// One slow worker and a flood of calls: the queue builds, the admission level falls
    /// through the low priorities first, and critical calls keep getting through.
    #[tokio::test(start_paused = true)]
    async fn overload_sheds_low_priorities_first() {
        let config = GuardConfig {
            workers: 1,
            queue_delay_max: Duration::from_millis(20),
            window: Duration::from_millis(100),
            window_calls: 50,
        };
        let guard = Arc::new(Guard::new("test.Slow", &["Work"], &config));
        let mut tasks = Vec::new();
        for n in 0..2000u64 {
            let guard = guard.clone();
            let priority = if n % 10 == 0 { Priority::Critical } else { Priority::Low };
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(n)).await;
                let work = async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(())
                };
                (priority, guard.call(0, &ctx(priority, n), work).await)
            }));
        }
        let mut shed = [0u32; 4];
        let mut done = [0u32; 4];
        for task in tasks {
            let (priority, result) = task.await.unwrap();
            match result {
                Ok(()) => done[priority as usize] += 1,
                Err(status) => {
                    assert_eq!(status.code, Code::Overloaded);
                    shed[priority as usize] += 1;
                }
            }
        }
        assert!(shed[Priority::Low as usize] > 500, "low-priority calls shed: {shed:?}");
        assert_eq!(shed[Priority::Critical as usize], 0, "critical calls never shed: {shed:?}");
        assert_eq!(done[Priority::Critical as usize], 200);
        assert!(guard.admission_level() < LEVELS);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_service_admits_everything_again() {
        let config = GuardConfig {
            window: Duration::from_millis(10),
            window_calls: 10,
            ..GuardConfig::default()
        };
        let guard = Guard::new("test.Idle", &["Work"], &config);
        guard.admission.level.store(USER_LEVELS, Ordering::Relaxed);
        for n in 0..5000u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = guard.call(0, &ctx(Priority::Low, n), async { Ok(()) }).await;
        }
        assert_eq!(guard.admission_level(), LEVELS);
    }

    /// After a burst that shut out every class but the critical one, the guard admits them
    /// all again within a few seconds: when nothing at all comes for a while, and when only a
    /// trickle of low calls comes (one a second).
    #[tokio::test(start_paused = true)]
    async fn after_a_burst_every_class_is_admitted_again_within_seconds() {
        for trickle in [false, true] {
            let guard = Guard::new("test.Burst", &["Work"], &GuardConfig::default());
            // As a burst leaves it: only critical calls admitted, and a window whose calls
            // waited 100 ms on average.
            guard.admission.level.store(CRITICAL_LEVELS, Ordering::Relaxed);
            {
                let mut window = guard.admission.window.lock().unwrap();
                (window.calls, window.queued) = (10, Duration::from_secs(1));
            }
            // Afterwards: every user's login gets in within 5 s of the burst's end.
            let login =
                async |user| guard.call(0, &ctx(Priority::Low, user), async { Ok(()) }).await;
            if trickle {
                let mut admitted = false;
                for second in 0..5 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    admitted = login(10_000 + second).await.is_ok();
                }
                assert!(admitted, "a trickle of logins opens the guard");
            } else {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let mut shut_out = 0;
            for user in 20_000..20_500 {
                shut_out += usize::from(login(user).await.is_err());
            }
            assert_eq!(shut_out, 0, "every user's login (trickle: {trickle})");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_does_not_run() {
        let guard = Guard::new("test.Late", &["Work"], &GuardConfig::default());
        let mut late = Ctx::new(1);
        late.deadline = Some(std::time::Instant::now() - Duration::from_millis(1));
        let result = guard.call::<()>(0, &late, async { unreachable!("must not run") }).await;
        assert_eq!(result.unwrap_err().code, Code::DeadlineExceeded);
    }
}
