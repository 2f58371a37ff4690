//! The process-wide Prometheus recorder every Missive process installs, with the histogram
//! buckets that let the guard's and the tiers' latencies aggregate across nodes. The server
//! renders it at its admin address; benchmarks install the same one, so that they measure
//! the calls as the server makes them.

use crate::latency;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

const COUNT_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// What renders the process's metrics: the exporter's and the [`latency`] histograms.
#[derive(Clone)]
pub struct Exposition(PrometheusHandle);

impl Exposition {
    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = self.0.render();
        text.push_str(&latency::render());
        text
    }
}

/// Installs the process-wide metrics recorder once (and turns the latency histograms on) and
/// returns what renders them.
pub fn install() -> Exposition {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    latency::enable();
    let handle = HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), latency::BOUNDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_ops".into()), COUNT_BUCKETS)
                })
                .expect("buckets are non-empty")
                .install_recorder()
                .expect("metrics recorder installs once")
        })
        .clone();
    Exposition(handle)
}
