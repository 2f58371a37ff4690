//! The process-wide Prometheus recorder every Missive process installs, with the histogram
//! buckets that let the guard's and the tiers' latencies aggregate across nodes. The server
//! renders it at its admin address; benchmarks install the same one, so that they measure
//! the calls as the server makes them.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets in seconds, from 50 µs to 10 s, so histograms aggregate across nodes.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
const COUNT_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_ops".into()), COUNT_BUCKETS)
                })
                .expect("buckets are non-empty")
                .install_recorder()
                .expect("metrics recorder installs once")
        })
        .clone()
}
