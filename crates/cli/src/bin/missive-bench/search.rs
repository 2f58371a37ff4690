//! `missive-bench search`: search latency over what an earlier run stored with `--words`, for
//! words of each frequency: the rare ones that find a handful of messages, the common ones
//! that find most of a user's inbox, and Chinese bigrams.

use crate::Population;
use anyhow::Context as _;
use hdrhistogram::Histogram;
use missive_client::Trust;
use missive_client::proto::SearchRequest;
use rand::Rng;
use std::time::Instant;

/// The vocabulary: word `i` is `w<i>` in base 36 with a letter prefix, so that every word is
/// a term of its own; rank 0 is the most common.
const VOCABULARY: usize = 20_000;
/// Chinese phrases, one of which every tenth message carries.
const CHINESE: [&str; 8] = [
    "我们明天去北京开会",
    "今天晚上一起吃饭吧",
    "请把文件发给我看看",
    "周末天气很好出去走走",
    "会议改到下午三点了",
    "这个问题我们再讨论",
    "东京的会议很顺利",
    "明天早上九点见面",
];

/// A word of the vocabulary, Zipf-distributed: rank r with probability about 1/(r+1).
fn word() -> String {
    let u: f64 = rand::rng().random();
    let rank = ((VOCABULARY as f64 + 1.0).powf(u) - 1.0) as usize;
    format!("w{}", radix(rank.min(VOCABULARY - 1)))
}

fn radix(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// `count` words for a message's text.
pub fn sentence(count: usize) -> String {
    let mut words: Vec<String> = (0..count).map(|_| word()).collect();
    if rand::rng().random_range(0..10) == 0 {
        words.push(CHINESE[rand::rng().random_range(0..CHINESE.len())].to_string());
    }
    words.join(" ")
}

/// Makes one query of a class of words.
type Query = dyn Fn() -> String + Send + Sync;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The servers and users of the run that stored the messages (`--prefix`, `--users`).
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// Searches per class of word.
    #[arg(long, default_value_t = 500)]
    searches: usize,
    /// Searches in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long)]
    quiet: bool,
}

pub async fn run(args: SearchArgs, trust: Trust) -> anyhow::Result<()> {
    let population = Population {
        servers: args.server.clone(),
        users: args.users,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        quiet: args.quiet,
        trust,
    };
    let clients = crate::setup(&population).await.context("logging the users in")?;
    let classes: [(&str, Box<Query>); 4] = [
        (
            "rare (rank 5,000 to 20,000)",
            Box::new(|| format!("w{}", radix(rand::rng().random_range(5_000..VOCABULARY)))),
        ),
        (
            "medium (rank 50 to 500)",
            Box::new(|| format!("w{}", radix(rand::rng().random_range(50..500)))),
        ),
        (
            "common (rank 0 to 4)",
            Box::new(|| format!("w{}", radix(rand::rng().random_range(0..5)))),
        ),
        (
            "Chinese (one bigram)",
            Box::new(|| {
                ["北京", "会议", "明天", "吃饭"][rand::rng().random_range(0..4)].to_string()
            }),
        ),
    ];
    println!("class | searches | hits per page (mean) | p50 ms | p99 ms | max ms");
    for (name, query) in &classes {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut hits = 0u64;
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let mut tasks = Vec::new();
        for _ in 0..args.searches {
            let client = clients[rand::rng().random_range(0..clients.len())].clone();
            let request = SearchRequest { query: query(), ..Default::default() };
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire().await.expect("gate");
                let started = Instant::now();
                let answer = client.search(request).await?;
                anyhow::Ok((started.elapsed(), answer.hits.len() as u64))
            }));
        }
        for task in tasks {
            let (elapsed, found) = task.await??;
            latency.record(elapsed.as_micros().max(1) as u64)?;
            hits += found;
        }
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{name} | {} | {:.1} | {:.2} | {:.2} | {:.2}",
            args.searches,
            hits as f64 / args.searches as f64,
            ms(0.5),
            ms(0.99),
            latency.max() as f64 / 1000.0
        );
    }
    Ok(())
}
