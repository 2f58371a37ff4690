//! `missive-bench`: drives simulated users that send each other 1:1 messages (random pairs:
//! the server must let strangers write, `--direct-messages anyone`), and reports
//! what was sent, received and lost, the delivered rate and the end-to-end latency (from the
//! send call to the recipient's sync returning the message: send, durable commit, notify,
//! sync, receive). `missive-bench group` measures write diffusion into one large group;
//! `missive-bench rpc` measures the RPC framework alone; `missive-bench histograms` what
//! recording a latency sample costs; `missive-bench uploads` many large uploads at once;
//! `missive-bench search` search latency over a store filled with `--words`;
//! `missive-bench push` offline push notifications to a local receiver.

mod connections;
mod curve;
mod delay;
mod flood;
mod group;
mod histograms;
mod push;
mod rpc;
mod search;
mod uploads;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use missive_client::proto::sync_item::Body;
use missive_client::{Client, ClientError, Code, PROTOCOL_VERSION, Trust};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(name = "missive-bench", version, about = "Missive load generator")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// PEM file of a private CA whose certificates the servers present over tls://, wss://
    /// and https:// (Mozilla's roots are trusted either way).
    #[arg(long, global = true, env = "MISSIVE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    messages: Args,
}

#[derive(Subcommand)]
enum Mode {
    /// Round trips of one small call through the RPC framework, in process and over loopback.
    Rpc(rpc::RpcArgs),
    /// Write diffusion into one large group: fan-out latency and sustained rate.
    Group(group::GroupArgs),
    /// An attacker from one address: idle and slow connections, password guesses,
    /// unauthenticated uploads (`scripts/bench-flood` runs it beside real users).
    Flood(flood::FloodArgs),
    /// What recording one latency sample costs, from one thread and from two.
    Histograms(histograms::HistogramArgs),
    /// Many users uploading large media at once (`scripts/bench-uploads`).
    Uploads(uploads::UploadArgs),
    /// TCP forwarders adding a delay to each direction (`scripts/bench-netns`).
    Delay(delay::DelayArgs),
    /// Search latency for words of each frequency, as the users of an earlier run.
    Search(search::SearchArgs),
    /// Offline push: users whose devices are all off get a message each; the notifications
    /// reach a receiver in this process.
    Push(push::PushArgs),
    /// Idle long links: the servers' memory and CPU per link, and how fast a sample of them
    /// wakes (over several processes when there are more than one may hold).
    Connections(connections::ConnectionsArgs),
}

#[derive(clap::Args, Clone)]
struct Args {
    /// tcp:// or tls://HOST:PORT, ws:// or wss://HOST:PORT/ws, http:// or https://HOST:PORT;
    /// several (comma-separated) spread the users over them, user i on server i mod n.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Simulated users, each with its own connection.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Messages to send in all.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Messages per second in all; 0 sends as fast as the server answers.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Username prefix; users are created (or reused) as PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Seconds to wait for stragglers after the last send.
    #[arg(long, default_value_t = 10)]
    drain_s: u64,
    /// Prints the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Hides the progress bar.
    #[arg(long)]
    quiet: bool,
    /// The server's process id, when it runs on this machine: the summary then gives its
    /// CPU time over the message phase (setup excluded) per delivered message.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's admin address (http://HOST:PORT), whose /metrics the curve reads.
    #[arg(long)]
    metrics: Option<String>,
    /// Writes a CSV row per --curve-interval-ms, and one for the last part-interval: the
    /// time, sends answered, refused and delivered per second, the median and 99th
    /// percentile latency of the messages delivered in the interval, and the server's
    /// ClientApi admission level and queueing delay.
    #[arg(long, requires = "metrics")]
    curve: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1000)]
    curve_interval_ms: u64,
    /// Words from a fixed vocabulary (Zipf-distributed, one in ten messages Chinese) added to
    /// each text, for `missive-bench search` to look for afterwards.
    #[arg(long, default_value_t = 0)]
    words: usize,
    /// Typing and presence traffic beside the messages: a TYPING before and after each send,
    /// and a GET_PRESENCE of 20 users every 10 sends (version-3 links; serve with
    /// `--rate-limits false`).
    #[arg(long)]
    chatter: bool,
}

/// How long a simulated user waits after an OVERLOADED answer (times 0.5 to 1.5).
const OVERLOADED_BACKOFF: Duration = Duration::from_millis(100);

/// Sessions set up at once; bounds the password hashing the server must do at once.
const SETUP_CONCURRENCY: usize = 16;

struct Shared {
    started: Instant,
    sent: AtomicU64,
    /// Refused sends by error code (OVERLOADED is the one expected under load).
    send_errors_by_code: Mutex<BTreeMap<&'static str, u64>>,
    received: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    /// The latencies since the curve's last row (the curve empties it).
    interval_latency_us: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Sends refused so far, whatever the code.
    fn refused(&self) -> u64 {
        self.send_errors_by_code.lock().expect("errors").values().sum()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let trust = Trust::new(cli.ca_file.as_deref()).context("reading --ca-file")?;
    match cli.mode {
        Some(Mode::Rpc(args)) => rpc::run(args).await,
        Some(Mode::Group(args)) => group::run(args, trust).await,
        Some(Mode::Flood(args)) => flood::run(args).await,
        Some(Mode::Histograms(args)) => histograms::run(args),
        Some(Mode::Uploads(args)) => uploads::run(args, trust).await,
        Some(Mode::Delay(args)) => tokio::task::spawn_blocking(|| delay::run(args)).await?,
        Some(Mode::Search(args)) => search::run(args, trust).await,
        Some(Mode::Push(args)) => push::run(args, trust).await,
        Some(Mode::Connections(args)) => connections::run(args, trust, cli.ca_file).await,
        None => messages(cli.messages, trust).await,
    }
}

async fn messages(args: Args, trust: Trust) -> anyhow::Result<()> {
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    let clients = setup(&args.population(trust.clone())).await?;
    let names: Arc<Vec<String>> =
        Arc::new((0..args.users).map(|i| format!("{}{i}", args.prefix)).collect());
    let shared = Arc::new(Shared {
        started: Instant::now(),
        sent: AtomicU64::new(0),
        send_errors_by_code: Mutex::default(),
        received: AtomicU64::new(0),
        latency_us: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ),
        interval_latency_us: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ),
    });
    let progress = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.messages) };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} received {msg}")
            .expect("template")
            .progress_chars("=> "),
    );

    // Receivers: every user syncs on notify and records what reaches it.
    let mut receivers = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let client = client.clone();
        let shared = shared.clone();
        let me = names[index].clone();
        let progress = progress.clone();
        receivers.push(tokio::spawn(async move {
            loop {
                let items = match client.next_changes(Duration::from_millis(500)).await {
                    Ok(items) => items,
                    // The server refused this sync (unavailable during a database failover,
                    // say): the next one picks up from the same key.
                    Err(error) if error.code().is_some() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => return,
                };
                let now_us = shared.started.elapsed().as_micros() as u64;
                for item in items {
                    let Some(Body::Message(message)) = item.body else {
                        continue;
                    };
                    if message.to != me || message.from == me {
                        continue;
                    }
                    if let Some(sent_us) = message
                        .text
                        .strip_prefix("bench ")
                        .and_then(|t| t.split(' ').next())
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        let latency = now_us.saturating_sub(sent_us).max(1);
                        let _ = shared.latency_us.lock().expect("histogram").record(latency);
                        let interval = &shared.interval_latency_us;
                        let _ = interval.lock().expect("histogram").record(latency);
                    }
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    progress.inc(1);
                }
            }
        }));
    }

    let admin = match &args.metrics {
        Some(url) => Some(missive_client::AdminClient::new(url, "", &trust)?),
        None => None,
    };
    let cpu_before = args.server_pid.map(curve::cpu_seconds).transpose()?;
    let stop_curve = tokio_util::sync::CancellationToken::new();
    let curve = match (&args.curve, &admin) {
        (Some(path), Some(admin)) => {
            let every = Duration::from_millis(args.curve_interval_ms.max(10));
            let recording = curve::record(
                shared.clone(),
                admin.clone(),
                path.clone(),
                every,
                stop_curve.clone(),
            );
            Some(tokio::spawn(recording))
        }
        _ => None,
    };

    let ids: Arc<Vec<u64>> =
        Arc::new(clients.iter().map(|c| c.session().map_or(0, |s| s.user_id)).collect());
    if args.chatter {
        // Events are read as a real client would (and dropped here): a link that does not
        // take them would only lose them.
        for client in &clients {
            let client = client.clone();
            tokio::spawn(async move { while client.next_event().await.is_ok() {} });
        }
    }

    // Senders: each user sends its share, one message at a time, paced to the rate.
    let per_user = args.messages / args.users as u64;
    let remainder = args.messages % args.users as u64;
    let mut senders = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let count = per_user + u64::from((index as u64) < remainder);
        let client = client.clone();
        let shared = shared.clone();
        let names = names.clone();
        let interval =
            (args.rate > 0).then(|| Duration::from_secs_f64(args.users as f64 / args.rate as f64));
        let (words, chatter) = (args.words, args.chatter);
        let ids = ids.clone();
        senders.push(tokio::spawn(async move {
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(rand::rng().random::<f64>()));
            for n in 0..count {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let peer = loop {
                    let peer = rand::rng().random_range(0..names.len());
                    if peer != index {
                        break peer;
                    }
                };
                if chatter {
                    let _ = client.typing(ids[peer], true).await;
                    if n % 10 == 0 {
                        let asked: Vec<u64> =
                            (0..20).map(|_| ids[rand::rng().random_range(0..ids.len())]).collect();
                        let _ = client.presence(&asked).await;
                    }
                }
                let sent_us = shared.started.elapsed().as_micros();
                let mut text = format!("bench {sent_us} {index} {n}");
                if words > 0 {
                    text.push(' ');
                    text.push_str(&search::sentence(words));
                }
                let sent = client.send_text(&names[peer], &text).await;
                if chatter {
                    let _ = client.typing(ids[peer], false).await;
                }
                match sent {
                    Ok(_) => {
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.code() == Some(Code::NotFriends) => bail!(
                        "the server takes 1:1 messages from friends only; these users write \
                         to random others: serve with --direct-messages anyone"
                    ),
                    Err(e) => {
                        // As the protocol asks of clients: an overloaded server is given a
                        // moment before this user's next send, not a busy loop of refusals.
                        if e.code() == Some(Code::Overloaded) {
                            let pause =
                                OVERLOADED_BACKOFF.mul_f64(0.5 + rand::rng().random::<f64>());
                            tokio::time::sleep(pause).await;
                        }
                        let code = e.code().map_or("transport", |c| c.as_str());
                        *shared
                            .send_errors_by_code
                            .lock()
                            .expect("errors")
                            .entry(code)
                            .or_default() += 1;
                    }
                };
            }
            anyhow::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let sending_done = shared.started.elapsed();
    let sent = shared.sent.load(Ordering::Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(args.drain_s);
    let mut last_received = shared.received.load(Ordering::Relaxed);
    let mut last_change = shared.started.elapsed();
    while shared.received.load(Ordering::Relaxed) < sent && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let received = shared.received.load(Ordering::Relaxed);
        if received != last_received {
            last_received = received;
            last_change = shared.started.elapsed();
        }
    }
    progress.finish_and_clear();
    for receiver in receivers {
        receiver.abort();
    }
    let received = shared.received.load(Ordering::Relaxed);
    let server_cpu_s = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(curve::cpu_seconds(pid)? - before),
        _ => None,
    };
    stop_curve.cancel();
    if let Some(curve) = curve {
        curve.await??;
    }
    let elapsed = if received >= sent { last_change.max(sending_done) } else { sending_done };
    let histogram = shared.latency_us.lock().expect("histogram").clone();
    let errors = std::mem::take(&mut *shared.send_errors_by_code.lock().expect("errors"));
    report(&args, sent, received, &errors, elapsed, &histogram, server_cpu_s);
    if received < sent {
        bail!("{} messages were not delivered", sent - received);
    }
    Ok(())
}

/// Who takes part in a run: users PREFIX0, PREFIX1, ..., user i on server i mod n.
#[derive(Clone)]
struct Population {
    servers: Vec<String>,
    users: usize,
    prefix: String,
    password: String,
    quiet: bool,
    trust: Trust,
}

impl Args {
    fn population(&self, trust: Trust) -> Population {
        Population {
            trust,
            servers: self.server.clone(),
            users: self.users,
            prefix: self.prefix.clone(),
            password: self.password.clone(),
            quiet: self.quiet,
        }
    }
}

/// Runs a setup call again while the server sheds it (OVERLOADED, as right after a heavy
/// fill), waiting longer each time, up to about a minute in all.
async fn until_admitted<T, F: Future<Output = Result<T, ClientError>>>(
    call: impl Fn() -> F,
) -> Result<T, ClientError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..12 {
        match call().await {
            Err(e) if e.code() == Some(Code::Overloaded) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            done => return done,
        }
    }
    call().await
}

/// Registers `name` unless it exists, then logs it in as `device`, waiting out OVERLOADED.
pub(crate) async fn sign_in(
    client: &Client,
    name: &str,
    password: &str,
    device: &str,
) -> anyhow::Result<()> {
    match until_admitted(|| client.register(name, password)).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(Code::AlreadyExists) => {}
        Err(e) => return Err(e).with_context(|| format!("registering {name}")),
    }
    until_admitted(|| client.login(name, password, device))
        .await
        .with_context(|| format!("logging in {name}"))?;
    Ok(())
}

/// A progress bar over `len` steps labelled `what` (hidden when `quiet`).
pub(crate) fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    let template = format!("{what} [{{bar:40}}] {{pos}}/{{len}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("template"));
    bar
}

/// Registers (or reuses) and logs in every user, each on its own connection.
async fn setup(args: &Population) -> anyhow::Result<Vec<Arc<Client>>> {
    if args.servers.is_empty() {
        bail!("--server is required");
    }
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let progress = bar(args.users as u64, "setting up users", args.quiet);
    let mut tasks = Vec::new();
    for index in 0..args.users {
        let gate = gate.clone();
        let args = args.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("gate");
            let name = format!("{}{index}", args.prefix);
            let server = &args.servers[index % args.servers.len()];
            let client = Client::connect_trusting(server, PROTOCOL_VERSION, &args.trust)
                .await
                .with_context(|| format!("connecting to {server}"))?;
            sign_in(&client, &name, &args.password, "bench").await?;
            // Start from now: older messages of reused users are not part of this run.
            until_admitted(|| client.sync()).await?;
            progress.inc(1);
            anyhow::Ok(Arc::new(client))
        }));
    }
    let mut clients = Vec::with_capacity(args.users);
    for task in tasks {
        clients.push(task.await??);
    }
    progress.finish_and_clear();
    Ok(clients)
}

fn report(
    args: &Args,
    sent: u64,
    received: u64,
    errors: &BTreeMap<&'static str, u64>,
    elapsed: Duration,
    latency: &Histogram<u64>,
    server_cpu_s: Option<f64>,
) {
    let cpu_us_per_message = server_cpu_s.map(|s| 1e6 * s / received.max(1) as f64);
    let rate = received as f64 / elapsed.as_secs_f64().max(1e-9);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let error_count: u64 = errors.values().sum();
    if args.json {
        let summary = serde_json::json!({
            "server": args.server, "users": args.users, "target_rate": args.rate,
            "sent": sent, "received": received, "lost": sent.saturating_sub(received),
            "send_errors": error_count, "send_errors_by_code": errors,
            "seconds": elapsed.as_secs_f64(), "delivered_per_second": rate,
            "latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": latency.max() as f64 / 1000.0 },
            "server_cpu_s": server_cpu_s, "server_cpu_us_per_message": cpu_us_per_message,
        });
        println!("{summary}");
    } else {
        println!(
            "server {} users {} target rate {}",
            args.server.join(","),
            args.users,
            if args.rate == 0 { "unlimited".to_string() } else { format!("{}/s", args.rate) }
        );
        println!(
            "sent {sent} received {received} lost {} send errors {error_count} {errors:?}",
            sent.saturating_sub(received)
        );
        println!("delivered {rate:.0} messages/s end to end over {:.2} s", elapsed.as_secs_f64());
        println!(
            "latency p50 {:.2} ms p99 {:.2} ms p999 {:.2} ms max {:.2} ms",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            latency.max() as f64 / 1000.0
        );
        if let (Some(seconds), Some(per_message)) = (server_cpu_s, cpu_us_per_message) {
            println!("server CPU {seconds:.1} s, {per_message:.0} µs per delivered message");
        }
    }
}
