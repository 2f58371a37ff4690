//! What a message run looked like over time, and what it cost the server: a CSV row per
//! interval (sends answered, refused and delivered per second, and, read from the server's
//! `/metrics`, its ClientApi admission level and queueing delay), and the server's CPU time
//! over the message phase, read from `/proc/<pid>/stat` when the server runs on this machine.

use crate::Shared;
use missive_client::AdminClient;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The clock ticks of `/proc/<pid>/stat` (Linux's USER_HZ, fixed at 100 by its ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The service whose admission the curve follows: the one clients' requests enter by.
const CLIENT_API: &str = "missive.internal.v1.ClientApi";

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

/// Writes a row every `every` until the task is aborted.
pub async fn record(
    shared: Arc<Shared>,
    admin: Option<AdminClient>,
    path: std::path::PathBuf,
    every: Duration,
) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(file, "second,sent_per_s,refused_per_s,delivered_per_s,admission_level,queueing_ms")?;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (0, 0, 0);
    loop {
        ticker.tick().await;
        let now = (
            shared.sent.load(Ordering::Relaxed),
            shared.refused(),
            shared.received.load(Ordering::Relaxed),
        );
        let per_s = |a: u64, b: u64| (a - b) as f64 / every.as_secs_f64();
        let (level, queueing) = match &admin {
            Some(admin) => match admin.metrics().await {
                Ok(text) => (
                    gauge(&text, "missive_rpc_admission_level"),
                    gauge(&text, "missive_rpc_queueing_seconds").map(|s| s * 1e3),
                ),
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        let show = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        writeln!(
            file,
            "{:.1},{:.0},{:.0},{:.0},{},{}",
            shared.started.elapsed().as_secs_f64(),
            per_s(now.0, last.0),
            per_s(now.1, last.1),
            per_s(now.2, last.2),
            show(level),
            show(queueing)
        )?;
        file.flush()?;
        last = now;
    }
}

/// The value of `name{service="...ClientApi"}` in a Prometheus text page.
fn gauge(text: &str, name: &str) -> Option<f64> {
    let series = format!("{name}{{service=\"{CLIENT_API}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_is_read_by_its_name_and_service() {
        let text = "missive_rpc_admission_level{service=\"missive.internal.v1.Seq\"} 512\n\
                    missive_rpc_admission_level{service=\"missive.internal.v1.ClientApi\"} 347\n\
                    missive_rpc_admission_level_other{service=\"missive.internal.v1.ClientApi\"} 1\n";
        assert_eq!(gauge(text, "missive_rpc_admission_level"), Some(347.0));
        assert_eq!(gauge(text, "missive_rpc_queueing_seconds"), None);
    }

    #[test]
    fn the_cpu_a_process_spends_is_counted() {
        let before = cpu_seconds(std::process::id()).expect("own stat");
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let mut spins = 0u64;
        while cpu_seconds(std::process::id()).expect("own stat") <= before {
            assert!(std::time::Instant::now() < until, "5 s of spinning counted no tick");
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        assert!(cpu_seconds(u32::MAX).is_err(), "no such process");
    }
}
