//! Admission of AUTH (docs/protocol.md §5.10): when an access node restarts, all its clients
//! come back at once, and each AUTH is a call into the logic layer. The gate lets at most a
//! fixed number of them be in the logic layer at once; one beyond is refused at once, before
//! it costs anything, with a time to wait that spreads the retries over the time the crowd
//! needs: the AUTHs refused in the last second divided by the AUTHs completed per second,
//! times a random factor between 0.5 and 1.5. Connections already authenticated never pass
//! through it.

use rand::Rng;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
// Tokio's clock, so that tests can run seconds of virtual time.
use tokio::time::Instant;

/// The shortest and longest wait a refusal names.
const WAIT_MIN: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct AuthGate {
    capacity: usize,
    slots: Semaphore,
    counts: Mutex<Counts>,
    refused_total: metrics::Counter,
}

/// Refusals and completions in the current window and the one before it.
#[derive(Debug)]
struct Counts {
    started: Instant,
    refused: u64,
    completed: u64,
    refused_before: u64,
    completed_before: u64,
}

impl Counts {
    /// Moves the windows on to `now`.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < WINDOW {
            return;
        }
        if elapsed < WINDOW * 2 {
            self.refused_before = self.refused;
            self.completed_before = self.completed;
            self.started += WINDOW;
        } else {
            // A quiet spell: nothing happened in the window before.
            self.refused_before = 0;
            self.completed_before = 0;
            self.started = now;
        }
        self.refused = 0;
        self.completed = 0;
    }

    /// The wait to name to the `refused`-th refusal of the last second, before jitter.
    fn wait(&self, now: Instant, capacity: usize) -> Duration {
        // The window before, weighed by how much of it is still within the last second.
        let into = now.saturating_duration_since(self.started).as_secs_f64() / WINDOW.as_secs_f64();
        let weight = 1.0 - into.min(1.0);
        let refused = self.refused as f64 + self.refused_before as f64 * weight;
        let completed = self.completed as f64 + self.completed_before as f64 * weight;
        // Before any completion is seen, assume one round of the slots a second.
        let per_second = completed.max(capacity as f64).max(1.0);
        Duration::from_secs_f64(refused / per_second)
    }
}

/// A place in the gate; its drop counts the AUTH as completed.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    gate: &'a AuthGate,
    _slot: SemaphorePermit<'a>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().expect("auth gate");
        counts.roll(Instant::now());
        counts.completed += 1;
    }
}

impl AuthGate {
    pub(crate) fn new(capacity: usize) -> AuthGate {
        let capacity = capacity.max(1);
        AuthGate {
            capacity,
            slots: Semaphore::new(capacity),
            counts: Mutex::new(Counts {
                started: Instant::now(),
                refused: 0,
                completed: 0,
                refused_before: 0,
                completed_before: 0,
            }),
            refused_total: metrics::counter!("missive_auth_refused_total"),
        }
    }

    /// A place for one AUTH, or the time the client should wait before trying again.
    pub(crate) fn enter(&self) -> Result<Admitted<'_>, Duration> {
        if let Ok(slot) = self.slots.try_acquire() {
            return Ok(Admitted { gate: self, _slot: slot });
        }
        self.refused_total.increment(1);
        let now = Instant::now();
        let mut counts = self.counts.lock().expect("auth gate");
        counts.roll(now);
        counts.refused += 1;
        let wait = counts.wait(now, self.capacity);
        drop(counts);
        let jittered = wait.mul_f64(rand::rng().random_range(0.5..1.5));
        Err(jittered.clamp(WAIT_MIN, WAIT_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beyond_its_places_an_auth_is_refused_with_a_wait_that_grows_with_the_crowd() {
        let gate = AuthGate::new(2);
        let first = gate.enter().expect("a place");
        let _second = gate.enter().expect("a place");
        let waits: Vec<Duration> = (0..400).map(|_| gate.enter().unwrap_err()).collect();
        assert!(waits.iter().all(|w| (WAIT_MIN..=WAIT_MAX).contains(w)));
        // Nothing completed yet: two a second assumed, so the 400th waits about 200 s, capped.
        assert_eq!(*waits.last().unwrap(), WAIT_MAX);
        assert!(waits[0] <= Duration::from_millis(750), "the first in the crowd waits little");
        drop(first);
        let third = gate.enter();
        assert!(third.is_ok(), "a place given back is taken again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_crowd_over_the_rate_served_and_a_quiet_spell_is_forgotten() {
        let gate = AuthGate::new(10);
        // A second in which 1,000 AUTHs completed, each a place taken and given back.
        for _ in 0..1000 {
            drop(gate.enter().expect("a place"));
        }
        tokio::time::advance(WINDOW).await;
        let _held: Vec<_> = (0..10).map(|_| gate.enter().expect("a place")).collect();
        // 500 refusals against 1,000 a second: the last waits about half a second, jittered.
        let waits: Vec<Duration> = (0..500).map(|_| gate.enter().unwrap_err()).collect();
        let last = *waits.last().unwrap();
        assert!(
            (Duration::from_millis(250)..=Duration::from_millis(750)).contains(&last),
            "{last:?}"
        );
        // Ten quiet seconds later the crowd is forgotten.
        tokio::time::advance(WINDOW * 10).await;
        let wait = gate.enter().unwrap_err();
        assert!(wait <= Duration::from_millis(150), "one refusal alone waits little: {wait:?}");
    }
}
