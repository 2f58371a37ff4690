//! `missive-bench delay`: TCP forwarders that hold every chunk of bytes for a fixed delay in
//! each direction, so that links between the nodes of a benchmark deployment cost what they
//! cost between machines. It stands in for `tc netem` where the kernel has no queueing
//! disciplines: `scripts/bench-netns` puts one in front of every service a node calls.
//!
//! Each direction of a connection has a reader and a writer thread: the reader stamps each
//! chunk with the time it is due, and the writer sleeps until then (a thread's sleep keeps
//! sub-millisecond delays; an async timer would round them up to its 1 ms tick). Bytes keep
//! their order, and a burst is delayed once, not once per chunk.

use anyhow::Context;
use clap::Args;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    let mut accepting = Vec::new();
    for route in &args.routes {
        let (listen, target) = route.split_once('=').context("a route is LISTEN=TARGET")?;
        let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let target = target.to_string();
        println!("delay {listen} -> {target}");
        accepting.push(std::thread::spawn(move || accept(listener, &target, delay)));
    }
    for thread in accepting {
        let _ = thread.join();
    }
    Ok(())
}

fn accept(listener: TcpListener, target: &str, delay: Duration) {
    for client in listener.incoming().flatten() {
        match TcpStream::connect(target) {
            Ok(server) => {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                forward(&client, &server, delay);
                forward(&server, &client, delay);
            }
            Err(error) => eprintln!("delay: cannot reach {target}: {error}"),
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn forward(from: &TcpStream, to: &TcpStream, delay: Duration) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { return };
    let (chunks, due) = mpsc::sync_channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer) {
            if chunks.send((Instant::now() + delay, buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in due {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
