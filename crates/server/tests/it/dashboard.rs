//! The built-in dashboard in a real browser: after a `missive-bench` run, headless Chromium
//! (driven by `tests/browser/dashboard.mjs`) must draw the online and messages-per-second
//! curves, and show totals equal to what the store holds. The screenshot is kept in
//! `target/test-artifacts/dashboard.png`.

use crate::harness::{Server, user, workspace_binary};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const USERS: u64 = 20;
const MESSAGES: u64 = 400;

/// Counts rows of `table` in the embedded store, read-only beside the running server.
fn stored(data: &Path, table: &str) -> u64 {
    let db = rusqlite::Connection::open_with_flags(
        data.join("missive.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the store opens read-only");
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn after_a_bench_run_the_dashboard_draws_curves_and_shows_the_stores_totals() {
    let server = Server::start_with(&["--dashboard-sample-s", "1", "--totals-max-age-s", "0"]);
    // Users who stay online while the page looks (the bench's leave when it ends).
    let mut watchers = Vec::new();
    for name in ["watcher0", "watcher1", "watcher2"] {
        watchers.push(user(&server.tcp, name).await);
    }
    let curve = server.data.with_file_name("curve.csv");
    let bench = Command::new(workspace_binary("missive-bench"))
        .args(["--server", &server.tcp, "--quiet", "--json"])
        .args(["--users", &USERS.to_string(), "--messages", &MESSAGES.to_string()])
        .args(["--server-pid", &server.pid().to_string(), "--metrics", &server.admin])
        .args(["--curve", curve.to_str().unwrap()])
        .args(["--curve-interval-ms", "100"])
        .output()
        .expect("missive-bench runs");
    assert!(bench.status.success(), "missive-bench: {}", String::from_utf8_lossy(&bench.stderr));
    let summary: Value = serde_json::from_slice(&bench.stdout).expect("the bench's JSON summary");
    assert_eq!(summary["received"], MESSAGES, "{summary}");
    // The server's CPU over the message phase, and the curve: every row has the admission
    // level of an unloaded node.
    assert!(summary["server_cpu_s"].as_f64().is_some_and(|s| s > 0.0), "{summary}");
    let text = std::fs::read_to_string(&curve).expect("the curve is written");
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split(',').collect();
    let level = header.iter().position(|c| *c == "admission_level").expect("a level column");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|row| row.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r[level] == 512.0), "{rows:?}");
    // The bench's users stay connected only while it runs; a few samples of its traffic must
    // be on the curves before the page looks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!("{}/dashboard/api/series?range=1h", server.admin);
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let series: Value = serde_json::from_str(&body).expect("the series as JSON");
    let peak = |curve: &str| {
        let values = series["series"][curve].as_array().cloned().unwrap_or_default();
        values.iter().filter_map(Value::as_f64).fold(0.0, f64::max)
    };
    assert!(peak("online") >= 3.0, "the online curve holds the watchers: {series}");
    assert!(peak("messages_per_s") > 0.0, "the bench's messages are on the curve: {series}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let screenshot = root.join("target/test-artifacts/dashboard.png");
    let page = format!("{}/dashboard?refresh=1", server.admin);
    let browser = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .arg(&page)
        .arg(&screenshot)
        .output()
        .expect("node runs (scripts/install-test-tools installs the browser test's packages)");
    let said = String::from_utf8_lossy(&browser.stderr);
    assert!(browser.status.success(), "the browser check failed: {said}");
    let seen: Value = serde_json::from_slice(&browser.stdout).expect("the check's JSON line");

    for chart in ["online", "messages"] {
        assert!(seen["points"][chart].as_u64().unwrap_or(0) > 0, "no {chart} curve: {seen}");
    }
    let totals = &seen["totals"];
    assert_eq!(totals["registered_users"], USERS + 3, "{seen}");
    assert_eq!(totals["registered_users"], stored(&server.data, "accounts"));
    assert_eq!(totals["messages"], MESSAGES, "{seen}");
    assert_eq!(totals["messages"], stored(&server.data, "messages"));
    assert_eq!(totals["inbox_entries"], stored(&server.data, "inbox"));
    assert_eq!(totals["messages_sent"], MESSAGES, "this node's own counter agrees: {seen}");
    assert_eq!(totals["online"], 3, "{seen}");
    assert!(screenshot.exists(), "the screenshot is kept");
    drop(watchers);
}

/// The 1-hour curves as the dashboard reads them: (times, online values).
async fn online_curve(server: &Server) -> (Vec<i64>, Vec<Value>) {
    let url = format!("{}/dashboard/api/series?range=1h", server.admin);
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let series: Value = serde_json::from_str(&body).expect("the series as JSON");
    let times = series["times"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    (times, series["series"]["online"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn the_curves_survive_a_restart_with_a_gap_where_the_node_was_down() {
    let mut server = Server::start_with(&["--dashboard-sample-s", "1"]);
    let watcher = user(&server.tcp, "watcher").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let before = loop {
        let (times, online) = online_curve(&server).await;
        if online.iter().filter(|v| v.as_f64() == Some(1.0)).count() >= 2 {
            break times;
        }
        assert!(tokio::time::Instant::now() < deadline, "no points: {times:?} {online:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    drop(watcher);
    assert!(server.terminate(), "a graceful stop saves the curves");
    // Down for more than a point's second, as any real restart is.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.restart();

    let (times, online) = online_curve(&server).await;
    assert!(
        before.iter().all(|t| times.contains(t)),
        "the points taken before the restart are still there: {before:?} in {times:?}"
    );
    let last_before = *before.last().unwrap();
    let gap = times.iter().position(|t| *t > last_before).expect("a point after the restart");
    assert_eq!(online[gap], Value::Null, "the curve breaks where the node was down: {online:?}");
}
