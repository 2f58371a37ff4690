//! Per-method latency of one implementation of a service, labelled with what implements it:
//! the guard measures a call as its callers see it (queueing included); a timer measures the
//! implementation alone, such as one storage backend's answer to one data type.

use metrics::{Histogram, Label};

/// One histogram per method of a service, looked up once.
pub struct Timer {
    durations: Vec<Histogram>,
}

impl Timer {
    /// Records into the histogram `metric`, labelled with `labels` and `method` (the
    /// method's name in the schema).
    pub fn new(
        metric: &'static str,
        labels: &[(&'static str, &'static str)],
        methods: &[&'static str],
    ) -> Timer {
        let durations = methods
            .iter()
            .map(|&method| {
                let mut all: Vec<Label> = labels
                    .iter()
                    .map(|&(key, value)| Label::from_static_parts(key, value))
                    .collect();
                all.push(Label::from_static_parts("method", method));
                metrics::histogram!(metric, all)
            })
            .collect();
        Timer { durations }
    }

    /// Runs `work` as method number `method` (its index in the schema), recording how long
    /// it took, failed or not.
    pub async fn call<T>(&self, method: usize, work: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = work.await;
        self.durations[method].record(started.elapsed().as_secs_f64());
        result
    }
}
