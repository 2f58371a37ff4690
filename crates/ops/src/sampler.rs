//! Turns this process's metrics into the dashboard's curves, sample after sample: gauges as
//! they are, counters as rates over the interval, latency histograms as the 99th percentile
//! of the calls made within the interval.

use crate::exposition::{Sample, sum};
use std::collections::BTreeMap;

const CALLS: &str = "missive_rpc_calls_total";
const DURATION_BUCKETS: &str = "missive_rpc_duration_seconds_bucket";

/// Counters the curves are rates of: curve name, metric.
const RATES: [(&str, &str); 5] = [
    ("registrations_per_s", "missive_registrations_total"),
    ("messages_per_s", "missive_messages_sent_total"),
    ("syncs_per_s", "missive_sync_calls_total"),
    ("errors_per_s", "missive_rpc_errors_total"),
    ("sheds_per_s", "missive_rpc_shed_total"),
];

/// The codes that make a call an error on the dashboard: the server failed it. Answers such
/// as NOT_FOUND or NOT_FRIENDS are outcomes callers expect (a send looks a contact entry up
/// and finds none), not errors an operator must see.
const FAILURES: [&str; 3] = ["internal", "unavailable", "deadline_exceeded"];

/// Which samples of a rate's counter count.
fn counts(metric: &str, sample: &Sample) -> bool {
    metric != "missive_rpc_errors_total"
        || sample.label("code").is_some_and(|c| FAILURES.contains(&c))
}

/// Messages sent and delivered on this node since it started.
pub fn messages(samples: &[Sample]) -> (f64, f64) {
    (
        sum(samples, "missive_messages_sent_total", |_| true),
        sum(samples, "missive_messages_delivered_total", |_| true),
    )
}

/// Long-link devices online on this node.
pub fn online(samples: &[Sample]) -> f64 {
    sum(samples, "missive_online_devices", |_| true)
}

/// A service's short name: `missive.internal.v1.MessageStore` is `MessageStore`.
fn short(service: &str) -> &str {
    service.rsplit('.').next().unwrap_or(service)
}

/// What one sample counted, to take differences from.
#[derive(Debug, Default)]
pub struct Counts {
    /// The [`RATES`] counters, in order.
    rates: [f64; RATES.len()],
    /// Per service: calls.
    calls: BTreeMap<String, f64>,
    /// Per service: upper bound -> calls at or under it (cumulative), ascending.
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Counts {
    pub fn of(samples: &[Sample]) -> Counts {
        let mut counts = Counts {
            rates: RATES.map(|(_, metric)| sum(samples, metric, |s| counts(metric, s))),
            ..Counts::default()
        };
        for sample in samples {
            let Some(service) = sample.label("service") else { continue };
            let service = short(service).to_string();
            if sample.name == CALLS {
                *counts.calls.entry(service).or_default() += sample.value;
            } else if sample.name == DURATION_BUCKETS {
                let le = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(bound) => bound.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                let buckets = counts.buckets.entry(service).or_default();
                match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                    Some((_, count)) => *count += sample.value,
                    None => buckets.push((le, sample.value)),
                }
            }
        }
        for buckets in counts.buckets.values_mut() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        counts
    }
}

/// The curves' values for the interval from `before` to `now`, `elapsed_s` long.
pub fn curves(
    samples: &[Sample],
    before: &Counts,
    now: &Counts,
    elapsed_s: f64,
) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    values.insert("online".to_string(), online(samples));
    if elapsed_s <= 0.0 {
        return values;
    }
    let rate = |now: f64, before: f64| (now - before).max(0.0) / elapsed_s;
    for (index, (curve, _)) in RATES.iter().enumerate() {
        values.insert(curve.to_string(), rate(now.rates[index], before.rates[index]));
    }
    for (service, calls) in &now.calls {
        let earlier = before.calls.get(service).copied().unwrap_or(0.0);
        values.insert(format!("rpc:{service}:calls_per_s"), rate(*calls, earlier));
    }
    for (service, buckets) in &now.buckets {
        let earlier = before.buckets.get(service);
        let within: Vec<(f64, f64)> = buckets
            .iter()
            .map(|&(le, count)| {
                let old = earlier
                    .and_then(|b| b.iter().find(|(bound, _)| *bound == le))
                    .map_or(0.0, |(_, c)| *c);
                (le, (count - old).max(0.0))
            })
            .collect();
        if let Some(p99) = quantile(&within, 0.99) {
            values.insert(format!("rpc:{service}:p99_ms"), p99 * 1000.0);
        }
    }
    values
}

/// The `q` quantile of cumulative `buckets` (upper bound, count at or under it), linear within
/// a bucket, as Prometheus's `histogram_quantile` estimates it; `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let share = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let buckets = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.001));
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 0.00982).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.99), None);
        assert_eq!(quantile(&[(0.5, 1.0), (f64::INFINITY, 10.0)], 0.99), Some(0.5));
    }

    #[test]
    fn curves_are_rates_gauges_and_percentiles_of_the_interval() {
        let first = parse(
            "missive_online_devices{transport=\"tcp\",protocol_version=\"2\"} 3\n\
             missive_messages_sent_total{kind=\"text\"} 100\n\
             missive_rpc_calls_total{service=\"missive.internal.v1.MessageStore\",method=\"Append\"} 10\n\
             missive_rpc_duration_seconds_bucket{service=\"missive.internal.v1.MessageStore\",method=\"Append\",le=\"0.001\"} 10\n\
             missive_rpc_duration_seconds_bucket{service=\"missive.internal.v1.MessageStore\",method=\"Append\",le=\"+Inf\"} 10\n",
        );
        let second = parse(
            "missive_online_devices{transport=\"tcp\",protocol_version=\"2\"} 3\n\
             missive_online_devices{transport=\"ws\",protocol_version=\"1\"} 2\n\
             missive_messages_sent_total{kind=\"text\"} 150\n\
             missive_messages_sent_total{kind=\"image\"} 10\n\
             missive_rpc_errors_total{service=\"s\",method=\"m\",code=\"not_found\"} 50\n\
             missive_rpc_errors_total{service=\"s\",method=\"m\",code=\"internal\"} 30\n\
             missive_rpc_calls_total{service=\"missive.internal.v1.MessageStore\",method=\"Append\"} 30\n\
             missive_rpc_duration_seconds_bucket{service=\"missive.internal.v1.MessageStore\",method=\"Append\",le=\"0.001\"} 10\n\
             missive_rpc_duration_seconds_bucket{service=\"missive.internal.v1.MessageStore\",method=\"Append\",le=\"+Inf\"} 30\n",
        );
        let values = curves(&second, &Counts::of(&first), &Counts::of(&second), 10.0);
        assert_eq!(values["online"], 5.0);
        assert_eq!(values["messages_per_s"], 6.0);
        assert_eq!(values["rpc:MessageStore:calls_per_s"], 2.0);
        // The interval's 20 calls all took over 1 ms: the estimate is the last finite bound.
        assert_eq!(values["rpc:MessageStore:p99_ms"], 1.0);
        assert_eq!(values["sheds_per_s"], 0.0);
        assert_eq!(values["errors_per_s"], 3.0, "failures only, not expected answers");
    }
}
