//! Latency histograms for the hot path: every service call, storage call and client request
//! records one, so recording must cost next to nothing.
//!
//! The Prometheus exporter keeps each raw sample until the next scrape, in a buffer shared by
//! all threads: with two threads recording into one histogram, a sample costs 280 ns of CPU
//! against 45 ns for one thread (`missive-bench histograms`), and some 15 samples per message
//! made metrics cost 7% of the message rate (docs/benchmarks.md). A [`Latency`] instead counts into fixed buckets
//! (the ones every node uses, so that histograms aggregate) in 8 shards over which threads
//! are spread, and sums the shards only when `/metrics` is rendered ([`render`]), in the
//! exposition format next to the exporter's.
//!
//! Nothing is recorded until [`enable`] (the process's recorder installs it); in a process
//! without metrics recording costs one load. A series appears in `/metrics` once it has
//! counted, as the exporter's do.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bucket bounds in seconds, from 50 µs to 10 s, the same on every node.
pub const BOUNDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Counting shards per histogram; threads are spread over them.
const SHARDS: usize = 8;

static ENABLED: AtomicBool = AtomicBool::new(false);
static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { series: Vec::new(), help: BTreeMap::new() });

struct Registry {
    series: Vec<Arc<Series>>,
    help: BTreeMap<&'static str, &'static str>,
}

/// From now on, new [`Latency`] handles record.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The help text `/metrics` gives the histogram `name`.
pub fn describe(name: &'static str, help: &'static str) {
    lock().help.insert(name, help);
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One series of a latency histogram: a name and its labels.
#[derive(Clone)]
pub struct Latency(Arc<Series>);

struct Series {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    shards: Box<[Shard; SHARDS]>,
}

/// One thread's counts, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    /// Samples at or below each bound, then above the last (not cumulative).
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    /// The series of histogram `name` with `labels` (keys in the order `/metrics` shows them).
    /// The same series for the same name and labels.
    pub fn new(name: &'static str, labels: &[(&'static str, &'static str)]) -> Latency {
        let mut registry = lock();
        let known = registry.series.iter().find(|s| s.name == name && s.labels == labels);
        if let Some(series) = known {
            return Latency(series.clone());
        }
        let series = Arc::new(Series {
            name,
            labels: labels.to_vec(),
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
        });
        registry.series.push(series.clone());
        Latency(series)
    }

    pub fn record(&self, elapsed: Duration) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let shard = &self.0.shards[shard_of_this_thread()];
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(BOUNDS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        shard.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }
}

fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// Every enabled histogram in the Prometheus text format, one family per name.
pub fn render() -> String {
    let registry = lock();
    let mut families: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for series in &registry.series {
        families.entry(series.name).or_default().push(series);
    }
    let mut out = String::new();
    for (name, all) in families {
        // A series appears once it has counted, as the exporter's do.
        let mut samples = String::new();
        for series in all {
            series.render(&mut samples);
        }
        if samples.is_empty() {
            continue;
        }
        if let Some(help) = registry.help.get(name) {
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        let _ = writeln!(out, "# TYPE {name} histogram");
        out.push_str(&samples);
        out.push('\n');
    }
    out
}

impl Series {
    fn render(&self, out: &mut String) {
        let mut buckets = [0u64; BOUNDS.len() + 1];
        let mut sum_ns = 0u64;
        for shard in self.shards.iter() {
            for (total, count) in buckets.iter_mut().zip(&shard.buckets) {
                *total += count.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
        }
        if buckets.iter().all(|&count| count == 0) {
            return;
        }
        let mut labels = String::new();
        for (key, value) in &self.labels {
            let value = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(labels, "{key}=\"{value}\",");
        }
        let name = self.name;
        let mut cumulative = 0;
        for (bound, count) in BOUNDS.iter().zip(buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += buckets[BOUNDS.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
        let labels = labels.trim_end_matches(',');
        let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{labels} {}", sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{labels} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_cumulative_buckets_from_every_thread() {
        enable();
        describe("test_latency_seconds", "A test histogram.");
        let latency = Latency::new("test_latency_seconds", &[("method", "Get")]);
        let other = Latency::new("test_latency_seconds", &[("method", "Put")]);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    latency.record(Duration::from_micros(40));
                    latency.record(Duration::from_millis(3));
                });
            }
        });
        latency.record(Duration::from_secs(60));
        other.record(Duration::from_millis(1));
        let _unused = Latency::new("test_unused_seconds", &[]);
        let bare = Latency::new("test_bare_seconds", &[]);
        bare.record(Duration::from_millis(2));
        Latency::new("test_bare_seconds", &[]).record(Duration::from_millis(2));

        let text = render();
        let family: Vec<&str> =
            text.lines().filter(|line| line.contains("test_latency_seconds")).collect();
        assert_eq!(family[0], "# HELP test_latency_seconds A test histogram.");
        assert_eq!(family[1], "# TYPE test_latency_seconds histogram");
        assert_eq!(family.iter().filter(|l| l.starts_with("# TYPE")).count(), 1);
        let get = |suffix: &str| {
            family
                .iter()
                .find(|line| line.starts_with(&format!("test_latency_seconds{suffix}")))
                .and_then(|line| line.rsplit(' ').next())
                .unwrap_or_else(|| panic!("{suffix} missing from {family:#?}"))
        };
        assert_eq!(get("_bucket{method=\"Get\",le=\"0.00005\"}"), "4");
        assert_eq!(get("_bucket{method=\"Get\",le=\"0.0025\"}"), "4");
        assert_eq!(get("_bucket{method=\"Get\",le=\"0.005\"}"), "8");
        assert_eq!(get("_bucket{method=\"Get\",le=\"10\"}"), "8");
        assert_eq!(get("_bucket{method=\"Get\",le=\"+Inf\"}"), "9");
        assert_eq!(get("_count{method=\"Get\"}"), "9");
        assert_eq!(get("_sum{method=\"Get\"}"), "60.01216");
        assert_eq!(get("_count{method=\"Put\"}"), "1");
        assert!(!text.contains("test_unused_seconds"), "a series appears once it counts");
        assert!(text.contains("test_bare_seconds_count 2\n"), "one series per name and labels");
        assert!(text.contains("test_bare_seconds_bucket{le=\"+Inf\"} 2\n"));
    }
}
