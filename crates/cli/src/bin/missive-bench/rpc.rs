//! `missive-bench rpc`: the cost of one small call through the RPC framework, in process
//! (the generated guard around a direct async call) and over loopback gRPC (the generated
//! remote client to the generated routes of another server in this process), with the
//! metrics recorder installed as the server installs it.

use clap::Args;
use hdrhistogram::Histogram;
use missive_proto::internal::{
    AllocRequest, AllocResponse, Seq, SeqGuarded, SeqRemote, seq_routes,
};
use missive_rpc::remote::{Client, NodeKey, Trust};
use missive_rpc::{Ctx, GuardConfig, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone)]
pub struct RpcArgs {
    /// Calls made in process.
    #[arg(long, default_value_t = 2_000_000)]
    local_calls: u64,
    /// Calls made over loopback.
    #[arg(long, default_value_t = 200_000)]
    remote_calls: u64,
    /// Calls in flight at once over loopback (the second loopback figure is for one).
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Prints the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The smallest useful call: an allocator that answers at once.
struct Instant0;

#[async_trait::async_trait]
impl Seq for Instant0 {
    async fn alloc(&self, _: &Ctx, req: AllocRequest) -> Result<AllocResponse, Status> {
        Ok(AllocResponse { first: req.user_id })
    }
}

struct Figure {
    name: &'static str,
    calls: u64,
    elapsed: Duration,
    latency_ns: Histogram<u64>,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(args: RpcArgs) -> anyhow::Result<()> {
    missive_rpc::recorder::install();
    let service: Arc<dyn Seq> = SeqGuarded::new(Arc::new(Instant0), &GuardConfig::default());
    let mut figures = vec![measure("in-process", service.clone(), args.local_calls, 1).await];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    // Signed and checked as between the nodes of a deployment: part of what a call costs.
    let key = NodeKey::random();
    let server =
        tokio::spawn(seq_routes(service).serve(listener, key.clone(), None, shutdown.clone()));
    let remote: Arc<dyn Seq> = SeqRemote::new(Client::new("seq", &[url], &key, &Trust::default())?);
    // The first call opens the connection; it is not part of the figures.
    remote.alloc(&Ctx::new(0), AllocRequest { user_id: 1, count: 1, fresh: false }).await?;
    let calls = args.remote_calls;
    figures.push(measure("loopback", remote.clone(), calls, args.concurrency).await);
    figures.push(measure("loopback, one in flight", remote, calls / 4, 1).await);
    shutdown.cancel();
    let _ = server.await;

    for figure in &figures {
        let us = |q: f64| figure.latency_ns.value_at_quantile(q) as f64 / 1000.0;
        if args.json {
            let summary = serde_json::json!({
                "path": figure.name, "calls": figure.calls, "seconds": figure.elapsed.as_secs_f64(),
                "calls_per_second": figure.per_second(),
                "latency_us": { "p50": us(0.5), "p99": us(0.99), "max": figure.latency_ns.max() as f64 / 1000.0 },
            });
            println!("{summary}");
        } else {
            println!(
                "{:<24} {:>12.0} calls/s   p50 {:>8.2} µs   p99 {:>8.2} µs",
                figure.name,
                figure.per_second(),
                us(0.5),
                us(0.99)
            );
        }
    }
    Ok(())
}

/// `calls` calls of `service`, `in_flight` at a time, each timed.
async fn measure(name: &'static str, service: Arc<dyn Seq>, calls: u64, in_flight: u64) -> Figure {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let service = service.clone();
        let share = calls / in_flight + u64::from(worker < calls % in_flight);
        tasks.push(tokio::spawn(async move {
            let mut latency = latency_histogram();
            let ctx = Ctx::new(worker);
            for n in 0..share {
                let request = AllocRequest { user_id: n, count: 1, fresh: false };
                let call = Instant::now();
                let answer = service.alloc(&ctx, request).await;
                let _ = latency.record(call.elapsed().as_nanos() as u64);
                assert_eq!(answer.map(|a| a.first).ok(), Some(n), "the call answers");
            }
            latency
        }));
    }
    let mut latency_ns = latency_histogram();
    for task in tasks {
        latency_ns.add(task.await.expect("bench task")).expect("same bounds");
    }
    Figure { name, calls, elapsed: started.elapsed(), latency_ns }
}

/// Nanoseconds, from 1 ns to a minute, to three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}
