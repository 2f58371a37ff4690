//! `missive-bench connections`: what idle authenticated long links cost the servers, and
//! whether they all still wake.
//!
//! Serve with `--connections-per-address-max` above the link count (every link comes from
//! 127.0.0.1), `--rate-limits false` and `--direct-messages anyone`.
//!
//! Opens `--connections` long links, one user each, spread over the `--server` addresses
//! (link i on server i mod n). They are held by child processes of this binary, at most
//! `--per-process` links each, since one process may hold only so many files. Each link is
//! kept alive by the client's own heartbeat. The parent samples the resident memory and CPU
//! time of the `--server-pid` processes (Linux `/proc`):
//! - before the links open;
//! - once they are all open and have settled;
//! - its peak meanwhile.
//!
//! It then writes a message to each of `--wake` links picked at random and measures how long
//! each takes to see its NOTIFY.
//!
//! With `--restart CMD`, it then runs CMD (`sh -c`), which is meant to kill an access process
//! with SIGKILL and start it again: every link that process held is lost, and its client
//! reconnects with the SDK's back-off (`Client::reconnect`), then syncs. The parent reports how
//! many links were lost and how long after the kill each was back and synced.
//!
//! At last it closes every link and samples the memory again, 10 s later, to show what is
//! given back.
//!
//! Children speak to the parent in lines on standard output: `progress N`, `ready`,
//! `woke INDEX UNIX_MICROS`, `lost INDEX`, `back INDEX UNIX_MICROS`. The parent tells them
//! `close` on standard input (or closes it).

use anyhow::{Context as _, bail};
use missive_client::{Backoff, Client, PROTOCOL_VERSION, Trust};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Semaphore, mpsc};

#[derive(clap::Args, Clone)]
pub struct ConnectionsArgs {
    /// tcp:// or ws:// addresses of the access processes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    server: Vec<String>,
    /// Long links to open in all.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Links one child process holds at most (each is a file descriptor).
    #[arg(long, default_value_t = 15_000)]
    per_process: usize,
    /// Server processes to sample (resident memory, CPU), comma-separated.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Links sent a message, to measure how long each takes to wake.
    #[arg(long, default_value_t = 200)]
    wake: usize,
    /// How long to hold the links idle before waking some (the idle CPU is measured then).
    #[arg(long, default_value_t = 30)]
    hold_s: u64,
    /// Links set up at once per child process.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// A shell command that kills an access process (SIGKILL) and starts it again; the links
    /// it held are timed until they are back and synced.
    #[arg(long)]
    restart: Option<String>,
    /// How long to wait for every lost link to be back.
    #[arg(long, default_value_t = 600)]
    restart_patience_s: u64,
    #[arg(long, default_value = "conn")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    #[arg(long)]
    quiet: bool,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// Internal: this process is a child holding links `first` to `first + count - 1`.
    #[arg(long, hide = true)]
    child_first: Option<usize>,
    #[arg(long, hide = true, default_value_t = 0)]
    child_count: usize,
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// `ca_file` is the private CA the servers' certificates chain to, if any: the children
/// trust it too.
pub async fn run(
    args: ConnectionsArgs,
    trust: Trust,
    ca_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    match args.child_first {
        Some(first) => hold(args.clone(), first, trust).await,
        None => lead(args, trust, ca_file).await,
    }
}

/// A child: opens its links, says when they are ready, reports every NOTIFY, and closes them
/// all when told to (or when the parent goes away).
async fn hold(args: ConnectionsArgs, first: usize, trust: Trust) -> anyhow::Result<()> {
    // One socket per link, beside the few files every process has.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let wanted = (args.child_count as u64 + 64).min(hard);
    if soft < wanted {
        rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, hard)?;
    }
    let (lines, mut said) = mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(line) = said.recv().await {
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
        }
    });
    let gate = Arc::new(Semaphore::new(args.setup_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.child_count);
    for index in first..first + args.child_count {
        let (gate, args, trust, lines) = (gate.clone(), args.clone(), trust.clone(), lines.clone());
        tasks.push(tokio::spawn(async move {
            let slot = gate.acquire_owned().await.expect("gate");
            let server = &args.server[index % args.server.len()];
            let client = Client::connect_trusting(server, PROTOCOL_VERSION, &trust)
                .await
                .with_context(|| format!("connecting to {server}"))?;
            let name = format!("{}{index}", args.prefix);
            crate::sign_in(&client, &name, &args.password, "idle").await?;
            crate::until_admitted(|| client.sync()).await?;
            drop(slot);
            let _ = lines.send(format!("progress {index}\n"));
            anyhow::Ok((index, client))
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await??);
    }
    let mut watchers = Vec::with_capacity(clients.len());
    for (index, mut client) in clients {
        let lines = lines.clone();
        watchers.push(tokio::spawn(async move {
            loop {
                while client.wait_for_notify().await.is_ok() {
                    let _ = lines.send(format!("woke {index} {}\n", unix_micros()));
                }
                // The link is lost: back with the SDK's back-off, then caught up; a sync that
                // fails loses the new link too.
                let _ = lines.send(format!("lost {index}\n"));
                let mut backoff = Backoff::default();
                loop {
                    let Ok(again) = client.reconnect(&mut backoff).await else {
                        return;
                    };
                    client = again;
                    match crate::until_admitted(|| client.sync()).await {
                        Ok(_) => break,
                        Err(error) => {
                            let wait = backoff.next_wait(&mut rand::rng(), error.retry_after());
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                let _ = lines.send(format!("back {index} {}\n", unix_micros()));
            }
        }));
    }
    let _ = lines.send("ready\n".into());
    // Until the parent says `close` or its end of the pipe closes.
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = input.next_line().await {
        if line == "close" {
            break;
        }
    }
    for watcher in &watchers {
        watcher.abort();
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
    drop(lines);
    let _ = printer.await;
    Ok(())
}

/// What a child said.
enum Said {
    Progress,
    Ready,
    Woke { index: usize, at_us: u64 },
    Lost,
    Back { at_us: u64 },
}

/// The parent: starts the children, samples the servers, wakes a sample, closes, reports.
async fn lead(
    args: ConnectionsArgs,
    trust: Trust,
    ca_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if args.connections == 0 || args.per_process == 0 {
        bail!("--connections and --per-process must be positive");
    }
    let servers = Servers::new(&args.server_pid)?;
    let before = servers.rss_kib()?;
    let (tell, mut heard) = mpsc::unbounded_channel::<Said>();
    let mut children: Vec<(Child, ChildStdin)> = Vec::new();
    let mut first = 0;
    while first < args.connections {
        let count = args.per_process.min(args.connections - first);
        let mut child = Command::new(std::env::current_exe()?);
        if let Some(ca_file) = &ca_file {
            child.env("MISSIVE_CA_FILE", ca_file);
        }
        let mut child = child
            .arg("connections")
            .args(["--server", &args.server.join(",")])
            .args(["--prefix", &args.prefix, "--password", &args.password])
            .args(["--setup-concurrency", &args.setup_concurrency.to_string()])
            .args(["--child-first", &first.to_string(), "--child-count", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a child process")?;
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let tell = tell.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split(' ');
                let said = match (words.next(), words.next(), words.next()) {
                    (Some("progress"), ..) => Said::Progress,
                    (Some("ready"), ..) => Said::Ready,
                    (Some("woke"), Some(index), Some(at)) => Said::Woke {
                        index: index.parse().unwrap_or(usize::MAX),
                        at_us: at.parse().unwrap_or(0),
                    },
                    (Some("lost"), ..) => Said::Lost,
                    (Some("back"), Some(_), Some(at)) => {
                        Said::Back { at_us: at.parse().unwrap_or(0) }
                    }
                    _ => continue,
                };
                if tell.send(said).is_err() {
                    return;
                }
            }
        });
        children.push((child, stdin));
        first += count;
    }
    drop(tell);

    let progress = crate::bar(args.connections as u64, "connecting", args.quiet);
    let started = Instant::now();
    let mut peak = before.clone();
    let mut ready = 0;
    let mut sampled = Instant::now();
    while ready < children.len() {
        let said = tokio::time::timeout(Duration::from_secs(120), heard.recv())
            .await
            .context("no child said anything for 120 s")?;
        match said {
            Some(Said::Progress) => progress.inc(1),
            Some(Said::Ready) => ready += 1,
            Some(_) => {}
            None => bail!("a child process ended before its links were ready (see its errors)"),
        }
        if sampled.elapsed() > Duration::from_millis(500) {
            sampled = Instant::now();
            servers.raise(&mut peak)?;
        }
    }
    progress.finish_and_clear();
    let connect_s = started.elapsed().as_secs_f64();

    // Idle: what the links cost held, and the CPU their heartbeats take.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_before = servers.cpu_s()?;
    tokio::time::sleep(Duration::from_secs(args.hold_s)).await;
    let idle_cpu = (servers.cpu_s()? - cpu_before) / args.hold_s.max(1) as f64;
    let connected = servers.rss_kib()?;
    servers.raise(&mut peak)?;

    // Wake a random sample: a message to each, timed to the NOTIFY its link reports.
    let sender = Client::connect_trusting(&args.server[0], PROTOCOL_VERSION, &trust).await?;
    let sender_name = format!("{}sender", args.prefix);
    crate::sign_in(&sender, &sender_name, &args.password, "waker").await?;
    let wake = args.wake.min(args.connections);
    let picked = rand::seq::index::sample(&mut rand::rng(), args.connections, wake).into_vec();
    let mut sent_at: HashMap<usize, u64> = HashMap::new();
    for &index in &picked {
        sent_at.insert(index, unix_micros());
        sender.send_text(&format!("{}{index}", args.prefix), "wake up").await?;
    }
    let mut wakes = hdrhistogram::Histogram::<u64>::new(3)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sent_at.is_empty() {
        match tokio::time::timeout_at(deadline, heard.recv()).await {
            Ok(Some(Said::Woke { index, at_us })) => {
                if let Some(&sent) = sent_at.get(&index)
                    && at_us >= sent
                {
                    sent_at.remove(&index);
                    wakes.record(at_us - sent)?;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let not_woken = sent_at.len();

    let restart = match &args.restart {
        Some(command) => Some(restart(command, &mut heard, args.restart_patience_s).await?),
        None => None,
    };

    // Close everything; what the servers give back.
    for (_, stdin) in &mut children {
        let _ = stdin.write_all(b"close\n").await;
    }
    for (mut child, stdin) in children {
        drop(stdin);
        child.wait().await?;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = servers.rss_kib()?;

    let total = |kib: &[u64]| kib.iter().sum::<u64>();
    let per_link =
        |kib: u64| (kib.saturating_sub(total(&before)) * 1024) as f64 / args.connections as f64;
    let ms = |us: u64| us as f64 / 1000.0;
    let processes = args.connections.div_ceil(args.per_process);
    let per_second = args.connections as f64 / connect_s;
    let bytes_per_link = per_link(total(&connected));
    let report = serde_json::json!({
        "connections": args.connections,
        "processes": processes,
        "connect_seconds": connect_s,
        "connects_per_second": per_second,
        "rss_kib": {
            "before": before, "connected": connected, "peak": peak, "after_close": after,
        },
        "bytes_per_connection": bytes_per_link,
        "peak_bytes_per_connection": per_link(total(&peak)),
        "idle_cpu_percent": idle_cpu * 100.0,
        "wake": {
            "sent": picked.len(),
            "not_woken_in_10_s": not_woken,
            "p50_ms": ms(wakes.value_at_quantile(0.5)),
            "p99_ms": ms(wakes.value_at_quantile(0.99)),
            "max_ms": ms(wakes.max()),
        },
        "restart": restart.as_ref().map(|r| serde_json::json!({
            "lost": r.lost,
            "back": r.back.len(),
            "all_back_seconds": r.seconds(r.back.max()),
            "p50_seconds": r.seconds(r.back.value_at_quantile(0.5)),
            "p99_seconds": r.seconds(r.back.value_at_quantile(0.99)),
        })),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} idle long links in {connect_s:.1} s ({per_second:.0}/s) over {processes} client \
             processes",
            args.connections
        );
        println!(
            "server resident memory: before {} KiB, all connected {} KiB (peak {} KiB), \
             10 s after closing {} KiB",
            total(&before),
            total(&connected),
            total(&peak),
            total(&after)
        );
        println!(
            "per connection: {bytes_per_link:.0} bytes; idle CPU {:.1}% of a core",
            idle_cpu * 100.0
        );
        println!(
            "woken: {} of {} within 10 s; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            picked.len() - not_woken,
            picked.len(),
            ms(wakes.value_at_quantile(0.5)),
            ms(wakes.value_at_quantile(0.99)),
            ms(wakes.max())
        );
        if let Some(r) = &restart {
            println!(
                "restart: {} links lost, {} back and synced; all back {:.1} s after the kill \
                 (p50 {:.1} s, p99 {:.1} s)",
                r.lost,
                r.back.len(),
                r.seconds(r.back.max()),
                r.seconds(r.back.value_at_quantile(0.5)),
                r.seconds(r.back.value_at_quantile(0.99))
            );
        }
    }
    if restart.as_ref().is_some_and(|r| r.back.len() < r.lost as u64) {
        bail!("links lost at the restart did not all come back");
    }
    if not_woken > 0 {
        bail!("{not_woken} links were not woken within 10 s");
    }
    Ok(())
}

/// What a restart of an access process cost its links.
struct Restart {
    lost: usize,
    /// Microseconds after the kill at which each lost link was back and synced.
    back: hdrhistogram::Histogram<u64>,
}

impl Restart {
    fn seconds(&self, micros: u64) -> f64 {
        micros as f64 / 1e6
    }
}

/// Runs `command` (which kills an access process and starts it again), then waits until every
/// link lost is back, and no more are lost for 5 s, or `patience_s` passes.
async fn restart(
    command: &str,
    heard: &mut mpsc::UnboundedReceiver<Said>,
    patience_s: u64,
) -> anyhow::Result<Restart> {
    let killed_us = unix_micros();
    let status = Command::new("sh").arg("-c").arg(command).status().await?;
    if !status.success() {
        bail!("--restart command failed: {status}");
    }
    let mut result = Restart { lost: 0, back: hdrhistogram::Histogram::new(3)? };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(patience_s);
    loop {
        let quiet = tokio::time::Instant::now() + Duration::from_secs(5);
        let wait = if result.lost > 0 && result.back.len() == result.lost as u64 {
            quiet
        } else {
            deadline
        };
        match tokio::time::timeout_at(wait.min(deadline), heard.recv()).await {
            Ok(Some(Said::Lost)) => result.lost += 1,
            Ok(Some(Said::Back { at_us })) => {
                result.back.record(at_us.saturating_sub(killed_us))?;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Ok(result),
        }
    }
}

/// The server processes sampled, by pid.
struct Servers {
    pids: Vec<u32>,
    ticks_per_s: f64,
}

impl Servers {
    fn new(pids: &[u32]) -> anyhow::Result<Servers> {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let servers = Servers { pids: pids.to_vec(), ticks_per_s: ticks.max(1) as f64 };
        servers.rss_kib().context("reading the servers' memory (--server-pid)")?;
        Ok(servers)
    }

    /// Each server's resident memory (VmRSS), in KiB; 0 for one that has gone (killed by
    /// `--restart`).
    fn rss_kib(&self) -> anyhow::Result<Vec<u64>> {
        self.pids
            .iter()
            .map(|pid| {
                let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                    read => read?,
                };
                let line = status.lines().find(|l| l.starts_with("VmRSS:"));
                let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
                kib.with_context(|| format!("no VmRSS for process {pid}"))
            })
            .collect()
    }

    /// Raises `peak` to the memory now, server by server.
    fn raise(&self, peak: &mut [u64]) -> anyhow::Result<()> {
        for (peak, now) in peak.iter_mut().zip(self.rss_kib()?) {
            *peak = (*peak).max(now);
        }
        Ok(())
    }

    /// CPU time the servers have used in all (user and system), in seconds.
    fn cpu_s(&self) -> anyhow::Result<f64> {
        let mut ticks = 0u64;
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // After the command name in parentheses: state is field 3, utime 14, stime 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for at in [11, 12] {
                ticks += fields.get(at).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Ok(ticks as f64 / self.ticks_per_s)
    }
}
