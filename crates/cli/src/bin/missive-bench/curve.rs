//! What a message run looked like over time, and what it cost the server: a CSV row per
//! interval (sends answered, refused and delivered per second, the latency of what was
//! delivered in it, and from the server's `/metrics` its ClientApi admission level and
//! queueing delay), and the server's CPU time
//! over the message phase, from `/proc/<pid>/stat` when the server runs on this machine
//! (the exporter's `process_cpu_seconds_total` counts whole seconds only).

use crate::Shared;
use missive_client::AdminClient;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The series the curve follows: the service clients' requests enter by.
const ADMISSION_LEVEL: &str =
    "missive_rpc_admission_level{service=\"missive.internal.v1.ClientApi\"}";
const QUEUEING: &str = "missive_rpc_queueing_seconds{service=\"missive.internal.v1.ClientApi\"}";

/// The clock ticks of `/proc/<pid>/stat` (Linux's USER_HZ, fixed at 100 by its ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU time (user and system, every thread) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces; fields count on after it.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?.parse()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Writes a row every `every`, and one for the interval under way when `stop` is cancelled.
pub async fn record(
    shared: Arc<Shared>,
    admin: AdminClient,
    path: std::path::PathBuf,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(
        file,
        "second,unix_ms,sent_per_s,refused_per_s,delivered_per_s,p50_ms,p99_ms,\
         admission_level,queueing_ms"
    )?;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = ((0, 0, 0), Instant::now());
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let counts = (
            shared.sent.load(Ordering::Relaxed),
            shared.refused(),
            shared.received.load(Ordering::Relaxed),
        );
        let at = Instant::now();
        let seconds = at.duration_since(last.1).as_secs_f64().max(1e-3);
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
        let (p50, p99) = {
            let mut latency = shared.interval_latency_us.lock().expect("histogram");
            let quantile = |q: f64| match latency.is_empty() {
                true => String::new(),
                false => format!("{:.1}", latency.value_at_quantile(q) as f64 / 1e3),
            };
            let quantiles = (quantile(0.5), quantile(0.99));
            latency.reset();
            quantiles
        };
        let text = admin.metrics().await.unwrap_or_default();
        let show = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        writeln!(
            file,
            "{:.1},{unix_ms},{:.0},{:.0},{:.0},{p50},{p99},{},{}",
            shared.started.elapsed().as_secs_f64(),
            per_s(counts.0, last.0.0),
            per_s(counts.1, last.0.1),
            per_s(counts.2, last.0.2),
            show(value(&text, ADMISSION_LEVEL)),
            show(value(&text, QUEUEING).map(|s| s * 1e3))
        )?;
        file.flush()?;
        if stopping {
            return Ok(());
        }
        last = (counts, at);
    }
}

/// The value of one series (its name and labels as the page writes them) in a Prometheus
/// text page.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_by_its_name_and_labels() {
        let text = "missive_rpc_admission_level{service=\"missive.internal.v1.Seq\"} 512\n\
                    missive_rpc_admission_level{service=\"missive.internal.v1.ClientApi\"} 347\n\
                    missive_rpc_admission_level{service=\"missive.internal.v1.ClientApi\"}_x 1\n";
        assert_eq!(value(text, ADMISSION_LEVEL), Some(347.0));
        assert_eq!(value(text, QUEUEING), None);
    }

    #[test]
    fn the_cpu_a_process_spends_is_counted() {
        let before = cpu_seconds(std::process::id()).expect("own stat");
        let until = Instant::now() + Duration::from_secs(5);
        let mut spins = 0u64;
        while cpu_seconds(std::process::id()).expect("own stat") <= before {
            assert!(Instant::now() < until, "5 s of spinning counted no tick");
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        assert!(cpu_seconds(u32::MAX).is_err(), "no such process");
    }
}
