//! `missive-bench flood`: plays an attacker from one address, for the flood benchmark
//! (`scripts/bench-flood`) that measures what real users feel meanwhile. It holds idle
//! connections on the TCP and HTTP ports, sends HTTP heads one byte every 5 s, guesses one
//! account's password over the short link, and starts unauthenticated uploads as large as a
//! request may be, each reopened as soon as the server ends it; then prints what the server did with
//! them. One process holds at most `--idle-tcp + --idle-http + --slow-http` connections plus
//! its guessers and uploads: spread 20,000 over several processes (20,000 open files each).

use anyhow::Context as _;
use clap::Args;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Args, Clone)]
pub struct FloodArgs {
    /// The server's TCP long-link address (HOST:PORT), for --idle-tcp.
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// The server's HTTP address (HOST:PORT), for --idle-http, --slow-http, --guessers and
    /// --uploads.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The address every attack connection comes from (a loopback address such as
    /// 127.0.0.2, so that the real users on 127.0.0.1 are other clients to the server).
    #[arg(long, default_value = "127.0.0.2")]
    source: IpAddr,
    /// Connections to the TCP port that never send a byte.
    #[arg(long, default_value_t = 0)]
    idle_tcp: usize,
    /// Connections to the HTTP port that never send a byte.
    #[arg(long, default_value_t = 0)]
    idle_http: usize,
    /// Connections to the HTTP port that send a request head one byte every 5 s.
    #[arg(long, default_value_t = 0)]
    slow_http: usize,
    /// Parallel loops of LOGIN with a wrong password for --victim.
    #[arg(long, default_value_t = 0)]
    guessers: usize,
    #[arg(long, default_value = "bench0")]
    victim: String,
    /// Parallel loops of unauthenticated uploads announcing --upload-bytes.
    #[arg(long, default_value_t = 0)]
    uploads: usize,
    #[arg(long, default_value_t = 1_000_000)]
    upload_bytes: usize,
    /// How long the flood lasts.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Pause before a connection refused at once is opened again.
    #[arg(long, default_value_t = 1_000)]
    retry_ms: u64,
}

/// What the server did with one kind of held connection.
#[derive(Default)]
struct Held {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    /// Closed by the server within a second of opening: refused at a cap.
    refused: AtomicU64,
    /// Closed by the server later: a timeout.
    closed_later: AtomicU64,
    now: AtomicU64,
    peak: AtomicU64,
}

impl Held {
    fn summary(&self) -> serde_json::Value {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        serde_json::json!({
            "opened": get(&self.opened), "connect_failed": get(&self.connect_failed),
            "refused_at_once": get(&self.refused), "closed_later": get(&self.closed_later),
            "held_peak": get(&self.peak), "held_at_end": get(&self.now),
        })
    }
}

/// Answers by HTTP status, and the request bytes sent before each answer.
#[derive(Default)]
struct Answers {
    by_status: Mutex<BTreeMap<u16, u64>>,
    failed: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Answers {
    fn count(&self, status: u16) {
        *self.by_status.lock().expect("answers").entry(status).or_insert(0) += 1;
    }

    fn summary(&self) -> serde_json::Value {
        let by_status = self.by_status.lock().expect("answers").clone();
        let answered: u64 = by_status.values().sum();
        let sent = self.bytes_sent.load(Ordering::Relaxed);
        serde_json::json!({
            "by_status": by_status, "failed": self.failed.load(Ordering::Relaxed),
            "mean_bytes_sent_before_answer": sent.checked_div(answered).unwrap_or(0),
        })
    }
}

pub async fn run(args: FloodArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let [idle_tcp, idle_http, slow_http] = [(); 3].map(|()| Arc::new(Held::default()));
    let [guesses, uploads] = [(); 2].map(|()| Arc::new(Answers::default()));
    let mut tasks = Vec::new();
    let need = |address: Option<SocketAddr>, flag: &str| {
        address.with_context(|| format!("{flag} is needed for this flood"))
    };
    for (count, target, flag, held, slow) in [
        (args.idle_tcp, args.tcp, "--tcp", &idle_tcp, false),
        (args.idle_http, args.http, "--http", &idle_http, false),
        (args.slow_http, args.http, "--http", &slow_http, true),
    ] {
        if count == 0 {
            continue;
        }
        let target = need(target, flag)?;
        for _ in 0..count {
            let held = held.clone();
            let retry = Duration::from_millis(args.retry_ms);
            tasks.push(tokio::spawn(hold(args.source, target, held, slow, retry, deadline)));
        }
    }
    for _ in 0..args.guessers {
        let (http, answers) = (need(args.http, "--http")?, guesses.clone());
        let victim = args.victim.clone();
        tasks.push(tokio::spawn(guess(args.source, http, victim, answers, deadline)));
    }
    for _ in 0..args.uploads {
        let (http, answers) = (need(args.http, "--http")?, uploads.clone());
        let bytes = args.upload_bytes;
        tasks.push(tokio::spawn(upload(args.source, http, bytes, answers, deadline)));
    }
    for task in tasks {
        task.await?;
    }
    let summary = serde_json::json!({
        "seconds": args.seconds, "source": args.source.to_string(),
        "idle_tcp": idle_tcp.summary(), "idle_http": idle_http.summary(),
        "slow_http": slow_http.summary(), "guesses": guesses.summary(),
        "uploads": uploads.summary(),
    });
    println!("{summary}");
    Ok(())
}

async fn connect(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// Keeps one connection open (silent, or sending a head one byte every 5 s) until the
/// deadline, opening another whenever the server closes it.
async fn hold(
    source: IpAddr,
    target: SocketAddr,
    held: Arc<Held>,
    slow: bool,
    retry: Duration,
    deadline: Instant,
) {
    let head = b"GET /healthz HTTP/1.1\r\nHost: flood\r\nX-Slow: ";
    while Instant::now() < deadline {
        let mut stream = match connect(source, target).await {
            Ok(stream) => stream,
            // Reset by a server that refuses it, before the connect was seen to complete: a
            // refusal like a close.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                held.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(retry).await;
                continue;
            }
            Err(_) => {
                held.connect_failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        held.opened.fetch_add(1, Ordering::Relaxed);
        let now = held.now.fetch_add(1, Ordering::Relaxed) + 1;
        held.peak.fetch_max(now, Ordering::Relaxed);
        let opened = Instant::now();
        let closed = tokio::time::timeout_at(deadline.into(), async {
            let mut buffer = [0u8; 1024];
            let mut next = 0;
            loop {
                let pause = tokio::time::sleep(Duration::from_secs(5));
                tokio::select! {
                    read = stream.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = pause, if slow => {
                        let byte = head.get(next).copied().unwrap_or(b'x');
                        next += 1;
                        if stream.write_all(&[byte]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .await
        .is_ok();
        held.now.fetch_sub(1, Ordering::Relaxed);
        if !closed {
            return;
        }
        if opened.elapsed() < Duration::from_secs(1) {
            held.refused.fetch_add(1, Ordering::Relaxed);
            // A pause keeps the loop from only measuring how fast loopback opens sockets.
            tokio::time::sleep(retry).await;
        } else {
            held.closed_later.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The status of an HTTP/1.1 answer read from `stream`, its body skipped; none if the
/// connection ends first.
async fn read_answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let length = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(status)
}

/// LOGIN for `victim` with wrong passwords, one after another on a kept-alive connection.
async fn guess(
    source: IpAddr,
    http: SocketAddr,
    victim: String,
    answers: Arc<Answers>,
    deadline: Instant,
) {
    let mut attempt = 0u64;
    while Instant::now() < deadline {
        let Ok(mut stream) = connect(source, http).await else {
            answers.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while Instant::now() < deadline {
            attempt += 1;
            let body = serde_json::json!({
                "username": victim, "password": format!("guess-{attempt}"), "device_name": "x",
            })
            .to_string();
            let request = format!(
                "POST /v1/login HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(request.as_bytes()).await.is_err() {
                break;
            }
            match read_answer(&mut stream).await {
                Some(status) => answers.count(status),
                None => {
                    answers.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Uploads announcing `bytes` without a token, the body written as fast as the server
/// takes it until it answers; counts the answers and the bytes it took first.
async fn upload(
    source: IpAddr,
    http: SocketAddr,
    bytes: usize,
    answers: Arc<Answers>,
    deadline: Instant,
) {
    let chunk = vec![b'A'; 64 * 1024];
    while Instant::now() < deadline {
        let Ok(stream) = connect(source, http).await else {
            answers.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut read, mut write) = stream.into_split();
        let head = format!(
            "POST /v1/upload HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n\
             Content-Length: {bytes}\r\n\r\n"
        );
        let sent = Arc::new(AtomicU64::new(0));
        let writer = {
            let (sent, chunk) = (sent.clone(), chunk.clone());
            tokio::spawn(async move {
                if write.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if write.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    left -= n;
                }
            })
        };
        let answer = tokio::time::timeout_at(deadline.into(), read_answer(&mut read)).await;
        writer.abort();
        match answer {
            Ok(Some(status)) => {
                answers.count(status);
                answers.bytes_sent.fetch_add(sent.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(None) => {
                answers.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}
