//! Per-method latency of one implementation of a service, labelled with what implements it:
//! the guard measures a call as its callers see it (queueing included); a timer measures the
//! implementation alone, such as one storage backend's answer to one data type.

use crate::Latency;

/// One histogram per method of a service, looked up once.
pub struct Timer {
    durations: Vec<Latency>,
}

impl Timer {
    /// Records into the [`Latency`] histogram `metric`, labelled with `labels` and `method` (the
    /// method's name in the schema).
    pub fn new(
        metric: &'static str,
        labels: &[(&'static str, &'static str)],
        methods: &[&'static str],
    ) -> Timer {
        let durations = methods
            .iter()
            .map(|&method| {
                let mut all = labels.to_vec();
                all.push(("method", method));
                Latency::new(metric, &all)
            })
            .collect();
        Timer { durations }
    }

    /// Runs `work` as method number `method` (its index in the schema), recording how long
    /// it took, failed or not.
    pub async fn call<T>(&self, method: usize, work: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = work.await;
        self.record(method, started.elapsed());
        result
    }

    /// Records one call of method number `method` that took `elapsed`.
    pub fn record(&self, method: usize, elapsed: std::time::Duration) {
        self.durations[method].record(elapsed);
    }
}
