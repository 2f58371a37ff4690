//! `missive-bench histograms`: what recording one latency sample costs, from one thread and
//! from two threads recording into the same series at once, for the Prometheus exporter's
//! histogram (each raw sample kept until the next render) and for `missive_rpc::Latency`
//! (counts in shards, summed at render). This is why the hot path's latency histograms are
//! `Latency`s (docs/benchmarks.md, the cost of metrics).

use clap::Args;
use missive_rpc::Latency;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct HistogramArgs {
    /// Samples each thread records per measurement.
    #[arg(long, default_value_t = 5_000_000)]
    samples: u64,
}

/// Wall time per sample and CPU time per sample (wall time times threads) for `threads`
/// threads each recording `samples` samples with `record`.
fn measure(threads: u64, samples: u64, record: &(dyn Fn(Duration) + Sync)) -> (f64, f64) {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for i in 0..samples {
                    record(Duration::from_nanos(i % 1_000_000));
                }
            });
        }
    });
    let wall_ns = started.elapsed().as_nanos() as f64 / (samples * threads) as f64;
    (wall_ns, wall_ns * threads as f64)
}

pub fn run(args: HistogramArgs) -> anyhow::Result<()> {
    let exposition = missive_rpc::recorder::install();
    let exporter = metrics::histogram!("bench_exporter_seconds");
    let latency = Latency::new("bench_latency_seconds", &[]);
    let record_exporter = |d: Duration| exporter.record(d.as_secs_f64());
    let record_latency = |d: Duration| latency.record(d);
    let kinds: [(&str, &(dyn Fn(Duration) + Sync)); 2] =
        [("exporter histogram", &record_exporter), ("missive_rpc::Latency", &record_latency)];
    println!(
        "{:<22} {:>8} {:>16} {:>16}",
        "histogram", "threads", "wall ns/sample", "cpu ns/sample"
    );
    for (name, record) in kinds {
        for threads in [1, 2] {
            let (wall, cpu) = measure(threads, args.samples, record);
            // Renders drain the exporter's buffers, as a scrape would.
            exposition.render();
            println!("{name:<22} {threads:>8} {wall:>16.1} {cpu:>16.1}");
        }
    }
    Ok(())
}
