//! `missive-bench uploads`: many users uploading large media at once, as the client does it
//! (in parts above half a megabyte), for the upload benchmark (`scripts/bench-uploads`) that
//! watches the server's memory meanwhile. Each user uploads `--files` files of `--bytes` for
//! the next user, one after the other; all users at once. Prints the bytes stored per second
//! and each upload's time.

use crate::{Population, setup};
use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use missive_client::Trust;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct UploadArgs {
    /// tcp:// or tls://HOST:PORT, ws:// or wss://HOST:PORT/ws, http:// or https://HOST:PORT.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Users uploading at once, each on its own connection.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Files each user uploads, one after the other.
    #[arg(long, default_value_t = 2)]
    files: usize,
    /// Each file's size (the server's media limit is 16 MiB by default).
    #[arg(long, default_value_t = 16 << 20)]
    bytes: usize,
    /// Each file in one UPLOAD request, as servers before uploads in parts took it (over the
    /// short link, whose body limit for UPLOAD was the media limit then).
    #[arg(long)]
    whole: bool,
    #[arg(long, default_value = "ubench")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

pub async fn run(args: UploadArgs, trust: Trust) -> anyhow::Result<()> {
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    let population = Population {
        servers: args.server.clone(),
        users: args.users,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        quiet: args.quiet,
        trust,
    };
    let clients = setup(&population).await?;
    let ids: Vec<u64> = clients
        .iter()
        .map(|c| c.session().map(|s| s.user_id).context("signed in"))
        .collect::<anyhow::Result<_>>()?;
    let data: std::sync::Arc<Vec<u8>> =
        std::sync::Arc::new((0..args.bytes).map(|i| (i % 251) as u8).collect());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let (client, data) = (client.clone(), data.clone());
        let peer = ids[(index + 1) % ids.len()];
        let (files, whole) = (args.files, args.whole);
        tasks.push(tokio::spawn(async move {
            let mut times_ms = Vec::new();
            for file in 0..files {
                let began = Instant::now();
                let name = format!("bench-{index}-{file}.bin");
                let (mime, data) = ("application/octet-stream", data.to_vec());
                if whole {
                    client.upload_whole(peer, &name, mime, data).await?;
                } else {
                    client.upload(peer, &name, mime, data).await?;
                }
                times_ms.push(began.elapsed().as_millis() as u64);
            }
            anyhow::Ok(times_ms)
        }));
    }
    let mut times = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).expect("bounds");
    for task in tasks {
        for ms in task.await?? {
            times.record(ms.max(1)).expect("within bounds");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let uploads = (args.users * args.files) as u64;
    let mib_per_second = (uploads * args.bytes as u64) as f64 / (1 << 20) as f64 / elapsed;
    let (p50, p99) = (times.value_at_quantile(0.5), times.value_at_quantile(0.99));
    if args.json {
        let summary = serde_json::json!({
            "uploads": uploads, "bytes_each": args.bytes, "seconds": elapsed,
            "mib_per_second": mib_per_second, "upload_p50_ms": p50, "upload_p99_ms": p99,
        });
        println!("{summary}");
    } else {
        println!(
            "{uploads} uploads of {} bytes in {elapsed:.1} s: {mib_per_second:.1} MiB/s, \
             each p50 {p50} ms, p99 {p99} ms",
            args.bytes
        );
    }
    Ok(())
}
