//! `missive-bench group`: write diffusion into one large group, measured end to end.
//!
//! Every member holds its own long link and syncs on notify. Two phases: one message at a
//! time (the fan-out latency: from the send call to the last of the other members syncing
//! the message), then several members sending as fast as the server answers (the sustained
//! rate of group messages fully delivered to every member).

use crate::{Population, setup};
use anyhow::bail;
use hdrhistogram::Histogram;
use missive_client::proto::sync_item::Body;
use missive_client::{Client, Trust};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(clap::Args, Clone)]
pub struct GroupArgs {
    /// tcp:// or tls://HOST:PORT, ws:// or wss://HOST:PORT/ws (several, comma-separated,
    /// spread the members).
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Members of the group, its owner included (the server's limit is 500 by default).
    #[arg(long, default_value_t = 500)]
    members: usize,
    /// Messages sent one at a time, each waited for until every member has it.
    #[arg(long, default_value_t = 200)]
    latency_messages: u64,
    /// Messages sent at full speed afterwards.
    #[arg(long, default_value_t = 2_000)]
    messages: u64,
    /// Members sending at once in the full-speed phase, one message in flight each.
    #[arg(long, default_value_t = 8)]
    senders: usize,
    #[arg(long, default_value = "gbench")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Seconds to wait for stragglers.
    #[arg(long, default_value_t = 30)]
    drain_s: u64,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

/// Per message id: how many members have synced it, and when the last one did.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashMap<u64, (usize, Instant)>>,
    changed: Notify,
}

impl Arrivals {
    fn record(&self, message_id: u64, at: Instant) {
        let mut seen = self.seen.lock().expect("arrivals");
        let entry = seen.entry(message_id).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
        drop(seen);
        self.changed.notify_waiters();
    }

    /// When the `count`-th member synced the message, if that many have.
    fn complete(&self, message_id: u64, count: usize) -> Option<Instant> {
        let seen = self.seen.lock().expect("arrivals");
        seen.get(&message_id).filter(|(n, _)| *n >= count).map(|(_, last)| *last)
    }

    async fn wait_complete(
        &self,
        message_id: u64,
        count: usize,
        limit: Duration,
    ) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            if let Some(at) = self.complete(message_id, count) {
                return Some(at);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

pub async fn run(args: GroupArgs, trust: Trust) -> anyhow::Result<()> {
    if args.members < 2 || args.senders == 0 {
        bail!("--members must be at least 2 and --senders at least 1");
    }
    let clients = setup(&Population {
        servers: args.server.clone(),
        users: args.members,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        quiet: args.quiet,
        trust,
    })
    .await?;
    let ids: Vec<u64> = clients.iter().map(|c| c.session().expect("logged in").user_id).collect();
    let group =
        clients[0].group_create(&format!("{} group", args.prefix), ids[1..].to_vec()).await?;
    let group_id = group.group_id;
    // Every member but the sender syncs each message (the sender has it from its answer).
    let others = args.members - 1;

    let arrivals = Arc::new(Arrivals::default());
    let mut receivers = Vec::new();
    for client in &clients {
        let client = client.clone();
        let arrivals = arrivals.clone();
        receivers.push(tokio::spawn(async move {
            let me = client.session().expect("logged in").user_id;
            while let Ok(items) = client.next_changes(Duration::from_millis(500)).await {
                let now = Instant::now();
                for item in items {
                    if let Some(Body::Message(m)) = item.body
                        && m.group_id == group_id
                        && m.from_user_id != me
                        && m.text.starts_with("bench ")
                    {
                        arrivals.record(m.id, now);
                    }
                }
            }
        }));
    }

    // Phase 1: one message at a time.
    let mut fan_out = histogram();
    let mut lost = 0u64;
    let limit = Duration::from_secs(args.drain_s);
    for n in 0..args.latency_messages {
        let sender = &clients[(n as usize % (args.members - 1)) + 1];
        let started = Instant::now();
        let sent = sender.send_to_group(group_id, &format!("bench latency {n}"), vec![]).await?;
        match arrivals.wait_complete(sent.message_id, others, limit).await {
            Some(last) => fan_out.record((last - started).as_micros().max(1) as u64)?,
            None => lost += 1,
        }
    }

    // Phase 2: several senders at full speed.
    let started = Instant::now();
    let sends: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let per_sender = args.messages / args.senders as u64;
    let mut senders = Vec::new();
    for s in 0..args.senders {
        let client: Arc<Client> = clients[(s % (args.members - 1)) + 1].clone();
        let sends = sends.clone();
        senders.push(tokio::spawn(async move {
            for n in 0..per_sender {
                let at = Instant::now();
                let sent =
                    client.send_to_group(group_id, &format!("bench load {s} {n}"), vec![]).await?;
                sends.lock().expect("sends").push((sent.message_id, at));
            }
            anyhow::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let sends = std::mem::take(&mut *sends.lock().expect("sends"));
    let mut under_load = histogram();
    let mut last_delivery = started;
    for (message_id, at) in &sends {
        match arrivals.wait_complete(*message_id, others, limit).await {
            Some(last) => {
                under_load.record((last - *at).as_micros().max(1) as u64)?;
                last_delivery = last_delivery.max(last);
            }
            None => lost += 1,
        }
    }
    for receiver in receivers {
        receiver.abort();
    }
    let seconds = (last_delivery - started).as_secs_f64().max(1e-9);
    let rate = sends.len() as f64 / seconds;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "members": args.members, "senders": args.senders,
                "fan_out_ms": { "messages": fan_out.len(), "p50": ms(&fan_out, 0.5), "p99": ms(&fan_out, 0.99), "max": fan_out.max() as f64 / 1000.0 },
                "sustained": { "messages": sends.len(), "seconds": seconds, "messages_per_second": rate,
                               "member_deliveries_per_second": rate * others as f64,
                               "p50_ms": ms(&under_load, 0.5), "p99_ms": ms(&under_load, 0.99) },
                "lost": lost,
            })
        );
    } else {
        println!("group of {} members, {} online", args.members, clients.len());
        println!(
            "fan-out, one message at a time ({}): to the last member p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            fan_out.len(),
            ms(&fan_out, 0.5),
            ms(&fan_out, 0.99),
            fan_out.max() as f64 / 1000.0
        );
        println!(
            "sustained, {} senders: {rate:.0} group messages/s ({:.0} member deliveries/s), to the last member p50 {:.2} ms p99 {:.2} ms",
            args.senders,
            rate * others as f64,
            ms(&under_load, 0.5),
            ms(&under_load, 0.99)
        );
        println!("lost {lost}");
    }
    if lost > 0 {
        bail!("{lost} group messages did not reach every member");
    }
    Ok(())
}
