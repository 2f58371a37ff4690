//! `missive admin`: operators' commands that work on the SQL databases directly, as no node's
//! API can (docs/scale-out.md §3).

use clap::{Args, Subcommand};
use missive_storage_sql::{ShardReport, shard_report};

#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Shows the shard map: each database with its logical shards, and each logical shard
    /// with its database, its state there, its users, rows and bytes (estimated).
    Shards {
        /// The databases; only the first, the directory, is read for the map.
        #[arg(
            long = "store-url",
            env = "MISSIVE_STORE_URL",
            value_delimiter = ',',
            required = true
        )]
        store_urls: Vec<String>,
        /// Also the logical shards that hold nothing.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Shards { store_urls, all, json } => {
            let report = shard_report(&store_urls).await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report_json(&report))?),
                false => print!("{}", report_text(&report, all)),
            }
            Ok(())
        }
    }
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
