//! `missive-bench push`: offline push at scale. Users are set up over the short link only
//! (so none of them is ever online), each with a UnifiedPush target at a receiver in this
//! process; one sender on a long link then writes each of them a message, and the receiver
//! counts the notifications that arrive. Serve with `--push-private-endpoints true` (the
//! receiver is on loopback), `--direct-messages anyone` and `--rate-limits false`.

use anyhow::bail;
use missive_client::proto::{Pusher, PusherKind};
use missive_client::{Client, PROTOCOL_VERSION, Trust};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::Semaphore;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The server's HTTP address (users register and set their pushers there, never online).
    #[arg(long)]
    http: String,
    /// The long link the sender uses (tcp:// or ws://).
    #[arg(long)]
    server: String,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value = "pushbench")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to wait for the notifications after the last send.
    #[arg(long, default_value_t = 120)]
    drain_s: u64,
    #[arg(long)]
    quiet: bool,
}

/// Notifications received, and when the last one came.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    last_us: AtomicU64,
}

/// A push service that takes every POST (HTTP/1.1, kept alive) and answers 201.
async fn receive(listener: tokio::net::TcpListener, received: Arc<Received>, started: Instant) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let received = received.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    match read.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if read.read_exact(&mut body).await.is_err() {
                    return;
                }
                received.count.fetch_add(1, Ordering::Relaxed);
                received.last_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                let answer = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
                if write.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

pub async fn run(args: PushArgs, trust: Trust) -> anyhow::Result<()> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}", listener.local_addr()?);
    let received = Arc::new(Received::default());
    tokio::spawn(receive(listener, received.clone(), started));

    let gate = Arc::new(Semaphore::new(16));
    let progress = crate::bar(args.users as u64, "users and pushers", args.quiet);
    let mut tasks = Vec::new();
    for index in 0..args.users {
        let (gate, progress, trust) = (gate.clone(), progress.clone(), trust.clone());
        let (http, name, password) =
            (args.http.clone(), format!("{}{index}", args.prefix), args.password.clone());
        let endpoint = format!("{receiver}/u/{index}");
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.expect("gate");
            let client = Client::connect_trusting(&http, PROTOCOL_VERSION, &trust).await?;
            crate::sign_in(&client, &name, &password, "pushbench").await?;
            let pusher =
                Pusher { kind: PusherKind::UnifiedPush as i32, endpoint, ..Default::default() };
            client.set_pusher(pusher).await?;
            progress.inc(1);
            anyhow::Ok(name)
        }));
    }
    let mut names = Vec::with_capacity(args.users);
    for task in tasks {
        names.push(task.await??);
    }
    progress.finish_and_clear();

    let sender = Client::connect_trusting(&args.server, PROTOCOL_VERSION, &trust).await?;
    let sender_name = format!("{}sender", args.prefix);
    crate::sign_in(&sender, &sender_name, &args.password, "pushbench").await?;
    let sender = Arc::new(sender);
    let before = received.count.load(Ordering::Relaxed);
    let sending = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::new();
    for name in names {
        let (gate, sender) = (gate.clone(), sender.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.expect("gate");
            sender.send_text(&name, "wake up").await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let sent_in = sending.elapsed();
    let wanted = before + args.users as u64;
    let progress = crate::bar(args.users as u64, "notifications", args.quiet);
    let deadline = Instant::now() + Duration::from_secs(args.drain_s);
    while received.count.load(Ordering::Relaxed) < wanted && Instant::now() < deadline {
        progress.set_position(received.count.load(Ordering::Relaxed) - before);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.finish_and_clear();
    let got = received.count.load(Ordering::Relaxed) - before;
    let last = Duration::from_micros(received.last_us.load(Ordering::Relaxed));
    let span = last.saturating_sub(sending.duration_since(started)).max(Duration::from_millis(1));
    println!(
        "{} offline users, one message each: sent in {:.2} s ({:.0} msg/s)",
        args.users,
        sent_in.as_secs_f64(),
        args.users as f64 / sent_in.as_secs_f64()
    );
    println!(
        "notifications received {got} in {:.2} s from the first send: {:.0} per second",
        span.as_secs_f64(),
        got as f64 / span.as_secs_f64()
    );
    if got < args.users as u64 {
        bail!("{} notifications did not arrive", args.users as u64 - got);
    }
    Ok(())
}
