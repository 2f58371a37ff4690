//! `missive-db-pair`: a replicated database pair from the storage suite's harness, for the
//! benchmark scripts (`scripts/bench-replication`). Starts a PostgreSQL or MariaDB primary
//! with a synchronous standby, an asynchronous one, or none; prints `group URL` (every host,
//! as `--store-url` takes a replicated database), `primary URL`, `standby URL` and `ready`;
//! then reads commands, one per line: `kill` (SIGKILL of the primary) and `promote` (the
//! standby becomes the primary), each answered with the Unix time in ms it was done at. At
//! the end of its input it stops both servers and removes their files.
//!
//!   missive-db-pair postgres sync|async|none

use missive_storage_suite::replicated::{MariaDbPair, PostgresPair, Replication};
use std::io::BufRead as _;

enum Pair {
    Postgres(PostgresPair),
    MariaDb(MariaDbPair),
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// `scheme://user@h1,h2/db` from one url per host.
fn group(urls: &[String]) -> String {
    let host = |url: &str| {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or_default();
        authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_string()
    };
    let first = &urls[0];
    let (scheme, rest) = first.split_once("://").expect("a url");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let user = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
    let hosts: Vec<String> = urls.iter().map(|url| host(url)).collect();
    format!("{scheme}://{user}{}{path}", hosts.join(","))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let replication = match args.get(1).map(String::as_str) {
        Some("sync") => Replication::Synchronous,
        Some("async") => Replication::Asynchronous,
        Some("none") => Replication::NoStandby,
        _ => usage(),
    };
    let mut pair = match args.first().map(String::as_str) {
        Some("postgres") => Pair::Postgres(PostgresPair::start_with(replication).await),
        Some("mariadb") => Pair::MariaDb(MariaDbPair::start_with(replication).await),
        _ => usage(),
    };
    let urls = match &pair {
        Pair::Postgres(pair) => pair.urls(),
        Pair::MariaDb(pair) => pair.urls(),
    };
    println!("group {}", group(&urls));
    println!("primary {}", urls[0]);
    if let Some(standby) = urls.get(1) {
        println!("standby {standby}");
    }
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        match (line.unwrap_or_default().trim(), &mut pair) {
            ("kill", Pair::Postgres(pair)) => pair.kill_primary(),
            ("kill", Pair::MariaDb(pair)) => pair.kill_primary(),
            ("promote", Pair::Postgres(pair)) => pair.promote_standby().await,
            ("promote", Pair::MariaDb(pair)) => pair.promote_replica().await,
            (other, _) => {
                eprintln!("unknown command {other:?} (kill, promote)");
                continue;
            }
        }
        println!("done {}", unix_ms());
    }
}

fn usage() -> ! {
    eprintln!("usage: missive-db-pair postgres|mariadb sync|async|none");
    std::process::exit(2);
}
