//! Log lines for events that may come by the thousand a second (refused connections, an
//! unreachable dependency): told once in a while, each also counted in full by a metric.

/// Lets a log line through at most once every ten seconds: a flood refused by the thousand
/// each second is told in the log once in a while, and counted in full by its metric.
#[derive(Default)]
pub struct Sparse(std::sync::atomic::AtomicU64);

impl Sparse {
    const EVERY_MS: u64 = 10_000;

    pub fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        // Milliseconds since the first call, plus one, so that 0 means "never logged".
        let now = START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.0.load(Ordering::Relaxed);
        (last == 0 || now >= last + Self::EVERY_MS)
            && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_events_is_told_once_in_a_while() {
        let told = Sparse::default();
        assert!(told.due(), "the first is told");
        assert!((0..1_000).all(|_| !told.due()), "the next ten seconds' are only counted");
    }
}
