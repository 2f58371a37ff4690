//! `missive-bench delay`: TCP forwarders that hold every chunk of bytes for a fixed delay in
//! each direction, so that links between the nodes of a benchmark deployment cost what they
//! cost between machines. It stands in for `tc netem` where the kernel has no queueing
//! disciplines: `scripts/bench-netns` puts one in front of every service a node calls.
//!
//! One thread serves every connection (the forwarder must cost little next to the nodes it
//! sits between). Each direction has a reader task, which stamps each chunk with the time it
//! is due, and a writer task, which waits for that time on a timer of its own: a Linux
//! `timerfd`, whose nanosecond deadlines keep sub-millisecond delays (tokio's timer rounds
//! them up to its 1 ms tick). Bytes keep their order, and a burst is delayed once, not once
//! per chunk.

use anyhow::Context;
use clap::Args;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Args, Clone)]
pub struct DelayArgs {
    /// LISTEN=TARGET: accept on LISTEN (host:port) and forward to TARGET (host:port); repeat
    /// for several.
    #[arg(long = "route", required = true)]
    routes: Vec<String>,
    /// Delay added to each direction, in milliseconds (a round trip through the forwarder
    /// costs twice this).
    #[arg(long, default_value_t = 0.5)]
    delay_ms: f64,
}

/// Chunks in flight in one direction at most; a reader beyond waits.
const CHUNKS_IN_FLIGHT: usize = 1024;

pub fn run(args: DelayArgs) -> anyhow::Result<()> {
    let delay = Duration::from_secs_f64(args.delay_ms / 1000.0);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut accepting = Vec::new();
        for route in &args.routes {
            let (listen, target) = route.split_once('=').context("a route is LISTEN=TARGET")?;
            let listener =
                TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
            println!("delay {listen} -> {target}");
            accepting.push(tokio::spawn(accept(listener, target.to_string(), delay)));
        }
        for task in accepting {
            let _ = task.await;
        }
        Ok(())
    })
}

async fn accept(listener: TcpListener, target: String, delay: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&target).await {
                Ok(server) => {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(forward(client_read, server_write, delay));
                    tokio::spawn(forward(server_read, client_write, delay));
                }
                Err(error) => eprintln!("delay: cannot reach {target}: {error}"),
            }
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    if delay.is_zero() {
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.shutdown().await;
        return;
    }
    let Ok(timer) = Timer::new() else {
        eprintln!("delay: no timerfd: {}", io::Error::last_os_error());
        return;
    };
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            if chunks.send((Instant::now() + delay, buffer[..read].to_vec())).await.is_err() {
                break;
            }
        }
    });
    while let Some((at, chunk)) = due.recv().await {
        if timer.wait_until(at).await.is_err() || to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A one-shot timer with a nanosecond deadline: a Linux timerfd, polled by the runtime.
struct Timer(AsyncFd<OwnedFd>);

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers; a negative result is an error, anything
        // else a new descriptor that nothing else owns.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by no one else; the OwnedFd keeps it open,
        // and its as_raw_fd returns it, for as long as the AsyncFd holds it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer(unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }?))
    }

    /// Returns at `at`, or at once if it has passed.
    async fn wait_until(&self, at: Instant) -> io::Result<()> {
        let Some(wait) = at.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) else {
            return Ok(());
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.0.get_ref().as_raw_fd();
        // SAFETY: `fd` is this timer's open timerfd; `spec` lives across the call and the old
        // value is not asked for (null).
        if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into an 8-byte buffer from the open timerfd.
            let read = ready.try_io(|fd| {
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
