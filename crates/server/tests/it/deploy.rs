//! The monitoring files in `deploy/`: the Grafana dashboard is well-formed and every query
//! parses as PromQL, the Prometheus configuration and alert rules pass promtool, and (from
//! the overload test, which drives a deployment into every state they chart) every metric
//! they query is served at `/metrics`.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn dashboard() -> Value {
    let path = deploy_dir().join("grafana/missive.json");
    let text = std::fs::read_to_string(&path).expect("the Grafana dashboard is readable");
    serde_json::from_str(&text).expect("the Grafana dashboard is JSON")
}

/// Every PromQL query of the dashboard, as Grafana sends it.
fn dashboard_queries() -> Vec<String> {
    dashboard()["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("every target has a query").to_string())
        .collect()
}

/// Every query of the alert rules.
fn alert_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("prometheus/missive-alerts.yml"))
        .expect("the alert rules are readable");
    text.lines().filter_map(|line| line.trim().strip_prefix("expr: ")).map(str::to_string).collect()
}

/// The series names the dashboard and the alerts query (Prometheus's own `up` aside).
pub fn queried_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for query in dashboard_queries().iter().chain(&alert_queries()) {
        for token in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if token.starts_with("missive_") || token.starts_with("process_") {
                names.insert(token.to_string());
            }
        }
    }
    names
}

/// The series names in `/metrics` texts.
pub fn served_metrics(texts: &[String]) -> BTreeSet<String> {
    texts
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn promtool(args: &[&str]) -> (bool, String) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let output = Command::new(&promtool).args(args).output().unwrap_or_else(|e| {
        panic!("{promtool} runs (scripts/install-test-tools installs it): {e}")
    });
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn the_grafana_dashboard_is_well_formed_and_its_queries_are_promql() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "missive-overview");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique: {panel}");
        let grid = &panel["gridPos"];
        let right = grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap();
        assert!(right <= 24, "panels fit Grafana's 24 columns: {panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} queries something", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("$instance"), "every query follows the node picker: {expr}");
        }
    }

    // Grafana's variables replaced as Grafana does, each query is checked by promtool as
    // the expression of a recording rule.
    let queries = dashboard_queries();
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for (n, query) in queries.iter().enumerate() {
        let query = query.replace("$__rate_interval", "1m").replace("$instance", ".*");
        rules += &format!("      - record: grafana:query_{n}\n        expr: '{query}'\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grafana-queries.yml");
    std::fs::write(&path, rules).unwrap();
    let (ok, said) = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(ok, "promtool on the dashboard's queries: {said}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", queries.len())), "{said}");
}

#[test]
fn the_prometheus_configuration_and_alert_rules_pass_promtool() {
    let config = deploy_dir().join("prometheus/prometheus.yml");
    let (ok, said) = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.contains("SUCCESS: 1 rule files found"), "the alerts are loaded: {said}");
    assert!(alert_queries().len() >= 5);
}

#[test]
fn queried_metrics_are_read_from_both_files() {
    let names = queried_metrics();
    for name in ["missive_online_devices", "missive_rpc_shed_total", "process_max_fds"] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    assert!(!names.contains("up") && !names.iter().any(|n| n.contains('$')), "{names:?}");
}
