//! `missive admin`: operators' commands that work on the SQL databases directly, as no node's
//! API can (docs/scale-out.md §3).

use clap::{Args, Subcommand};
use missive_storage_sql::{
    MoveOptions, MoveOutcome, Progress, ShardReport, SqlConfig, SqlStore, load_map, move_shard,
    rebalance_plan, redact, roll_back_move, shard_report, split_url_list,
};

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// The shard map (`missive admin shards`), and moving logical shards between databases.
    Shards(ShardsArgs),
}

#[derive(Args)]
struct ShardsArgs {
    /// The databases; only the first, the directory, is read for the map.
    #[arg(long = "store-url", env = "MISSIVE_STORE_URL", required = true)]
    store_urls: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<ShardsCommand>,
}

#[derive(Subcommand)]
enum ShardsCommand {
    /// Shows each database with its logical shards, and each logical shard with its
    /// database, its state there, its users, rows and bytes (estimated). The default.
    Show {
        /// Also the logical shards that hold nothing.
        #[arg(long)]
        all: bool,
    },
    /// Makes the shard map from the `--store-url` list if the first database has none (what
    /// the first node to start does), then shows it: the upgrade of a deployment made before
    /// logical shards, with every node stopped.
    Init {
        /// Logical shards of the map: a multiple of the number of databases. Default: the
        /// largest such multiple not above 1,024.
        #[arg(long)]
        logical_shards: Option<u64>,
    },
    /// Moves a logical shard to a database (added to the map if new) while traffic goes on,
    /// or resumes an interrupted move of it.
    Move {
        shard: u64,
        url: String,
        /// Resume even if the move's record was updated in the last 15 s: its mover is
        /// known to be dead.
        #[arg(long)]
        force: bool,
        /// The share of the time the mover works before the switch-over and while it
        /// cleans up, resting the rest so that the databases keep serving (1: flat out).
        #[arg(long, default_value_t = MoveOptions::default().pace)]
        pace: f64,
    },
    /// Spreads the logical shards evenly over these databases (the whole new list), moving
    /// as few as that takes, one after the other.
    Rebalance {
        #[arg(required = true)]
        urls: Vec<String>,
        /// Print the moves without making them.
        #[arg(long)]
        dry_run: bool,
        /// As for `move`.
        #[arg(long, default_value_t = MoveOptions::default().pace)]
        pace: f64,
    },
    /// Undoes an interrupted move that has not switched over yet.
    Rollback {
        shard: u64,
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let AdminCommand::Shards(shards) = args.command;
    let urls: Vec<String> = shards.store_urls.iter().flat_map(|l| split_url_list(l)).collect();
    match shards.command.unwrap_or(ShardsCommand::Show { all: false }) {
        ShardsCommand::Show { all } => {
            let report = shard_report(&urls).await?;
            match shards.json {
                true => println!("{}", serde_json::to_string_pretty(&report_json(&report))?),
                false => print!("{}", report_text(&report, all)),
            }
        }
        ShardsCommand::Init { logical_shards } => {
            let mut config = SqlConfig::new(urls.clone());
            config.logical_shards = logical_shards;
            drop(SqlStore::open(config).await?);
            print!("{}", report_text(&shard_report(&urls).await?, false));
        }
        ShardsCommand::Move { shard, url, force, pace } => {
            let options = MoveOptions { force, pace };
            let outcome = move_shard(&urls, shard, &url, options, show_progress).await?;
            print_outcome(&outcome, shards.json);
        }
        ShardsCommand::Rebalance { urls: list, dry_run, pace } => {
            let list: Vec<String> = list.iter().flat_map(|l| split_url_list(l)).collect();
            let plan = rebalance_plan(&load_map(&urls).await?, &list);
            eprintln!("{} logical shards to move", plan.len());
            for (n, (shard, url)) in plan.into_iter().enumerate() {
                eprintln!("move {}: logical shard {shard} to {}", n + 1, redact(&url));
                if !dry_run {
                    let options = MoveOptions { force: false, pace };
                    let outcome = move_shard(&urls, shard, &url, options, show_progress).await?;
                    print_outcome(&outcome, shards.json);
                }
            }
        }
        ShardsCommand::Rollback { shard, force } => {
            roll_back_move(&urls, shard, force).await?;
            eprintln!("the move of logical shard {shard} is rolled back");
        }
    }
    Ok(())
}

/// One line per step, on the standard error.
fn show_progress(progress: &Progress) {
    eprintln!(
        "logical shard {}: {} {}/{}",
        progress.shard, progress.step, progress.done, progress.total
    );
}

fn print_outcome(outcome: &MoveOutcome, json: bool) {
    if json {
        let line = serde_json::json!({
            "shard": outcome.shard, "from": outcome.from, "to": outcome.to,
            "users": outcome.users, "recopied": outcome.recopied,
            "copy_ms": outcome.copy.as_millis() as u64,
            "switch_over_ms": outcome.switch_over.as_millis() as u64,
            "clean_ms": outcome.clean.as_millis() as u64,
            "total_ms": outcome.total.as_millis() as u64,
        });
        println!("{line}");
        return;
    }
    println!(
        "moved logical shard {} from database {} to database {}: {} users, {} keys copied \
         again, copied in {:.1} s, writes held {} ms at the switch-over, cleaned up in {:.1} \
         s, {:.1} s in all",
        outcome.shard,
        outcome.from,
        outcome.to,
        outcome.users,
        outcome.recopied,
        outcome.copy.as_secs_f64(),
        outcome.switch_over.as_millis(),
        outcome.clean.as_secs_f64(),
        outcome.total.as_secs_f64()
    );
}

fn report_json(report: &ShardReport) -> serde_json::Value {
    let databases: Vec<_> = report
        .databases
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id, "url": d.url, "shards": d.shards, "users": d.users,
                "rows": d.rows, "bytes": d.bytes,
            })
        })
        .collect();
    let shards: Vec<_> = report
        .shards
        .iter()
        .map(|s| {
            serde_json::json!({
                "shard": s.shard, "database": s.database, "state": s.state, "users": s.users,
                "rows": s.rows, "bytes": s.bytes,
            })
        })
        .collect();
    serde_json::json!({
        "version": report.version,
        "logical_shards": report.logical_shards,
        "databases": databases,
        "shards": shards,
    })
}

fn report_text(report: &ShardReport, all: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shard map version {}: {} logical shards over {} databases",
        report.version,
        report.logical_shards,
        report.databases.len()
    );
    let _ = writeln!(
        out,
        "\n{:>8}  {:>6}  {:>10}  {:>12}  {:>10}  url",
        "database", "shards", "users", "rows", "bytes"
    );
    for d in &report.databases {
        let _ = writeln!(
            out,
            "{:>8}  {:>6}  {:>10}  {:>12}  {:>10}  {}",
            d.id,
            d.shards,
            d.users,
            d.rows,
            bytes(d.bytes),
            d.url
        );
    }
    let _ = writeln!(
        out,
        "\n{:>8}  {:>8}  {:>8}  {:>10}  {:>12}  {:>10}",
        "shard", "database", "state", "users", "rows", "bytes"
    );
    for s in report.shards.iter().filter(|s| all || s.rows > 0 || s.state != Some("held")) {
        let _ = writeln!(
            out,
            "{:>8}  {:>8}  {:>8}  {:>10}  {:>12}  {:>10}",
            s.shard,
            s.database,
            s.state.unwrap_or("missing"),
            s.users,
            s.rows,
            bytes(s.bytes)
        );
    }
    out
}

/// Bytes in the largest unit that keeps a number of at least 1.
fn bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 KB");
        assert_eq!(bytes(12_300_000), "12.3 MB");
    }
}
