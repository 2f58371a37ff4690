//! The dashboard: a page with live curves and the current totals, its vendored charting
//! library (uPlot, see `assets/README.md`), and the JSON it reads.

use crate::exposition;
use crate::{Ops, sampler};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use missive_proto::admin::TotalsRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long the page waits for the store's totals before showing them unknown.
const TOTALS_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn now_s() -> i64 {
    missive_rpc::unix_ms() / 1000
}

macro_rules! asset {
    ($file:literal, $type:literal) => {
        get(|| async {
            (
                [(header::CONTENT_TYPE, $type), (header::CACHE_CONTROL, "no-cache")],
                include_str!(concat!("../assets/", $file)),
            )
        })
    };
}

pub(crate) fn router(ops: Arc<Ops>) -> axum::Router {
    axum::Router::new()
        .route("/dashboard", asset!("dashboard.html", "text/html; charset=utf-8"))
        .route("/dashboard/", asset!("dashboard.html", "text/html; charset=utf-8"))
        .route("/dashboard/dashboard.js", asset!("dashboard.js", "text/javascript; charset=utf-8"))
        .route("/dashboard/dashboard.css", asset!("dashboard.css", "text/css; charset=utf-8"))
        .route(
            "/dashboard/uplot.iife.min.js",
            asset!("uplot.iife.min.js", "text/javascript; charset=utf-8"),
        )
        .route("/dashboard/uplot.min.css", asset!("uplot.min.css", "text/css; charset=utf-8"))
        .route("/dashboard/api/series", get(series))
        .route("/dashboard/api/totals", get(totals))
        .with_state(ops)
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

fn no_store<T: Serialize>(body: T) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// One range of curves: `series` holds the node's curves, `rpc` one pair per service.
async fn series(State(ops): State<Arc<Ops>>, Query(query): Query<RangeQuery>) -> Response {
    let name = query.range.as_deref().unwrap_or("1h");
    let series = ops.series.lock().expect("series");
    let Some(range) = series.range(name) else {
        let message = format!("unknown range {name:?} (use 1h, 24h or 7d)");
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let mut curves = Map::new();
    let mut rpc: Map<String, Value> = Map::new();
    for (column, values) in range.columns {
        let values = serde_json::to_value(values).unwrap_or_default();
        match column.strip_prefix("rpc:").and_then(|rest| rest.split_once(':')) {
            Some((service, figure)) => {
                let entry = rpc.entry(service).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(figures) = entry {
                    figures.insert(figure.to_string(), values);
                }
            }
            None => {
                curves.insert(column.clone(), values);
            }
        }
    }
    no_store(serde_json::json!({
        "node": ops.config.node_id,
        "range": range.range,
        "step_s": range.step_s,
        "times": range.times,
        "series": curves,
        "rpc": rpc,
    }))
}

/// This node's figures and, where the logic tier is reachable, the store's totals.
async fn totals(State(ops): State<Arc<Ops>>) -> Response {
    let samples = exposition::parse(&(ops.renders.figures)());
    let (messages_sent, messages_delivered) = sampler::messages(&samples);
    let mut body = serde_json::json!({
        "node": ops.config.node_id,
        "online": sampler::online(&samples),
        "messages_sent": messages_sent,
        "messages_delivered": messages_delivered,
        "registered_users": null,
        "groups": null,
        "messages": null,
        "inbox_entries": null,
        "counted_at_ms": null,
    });
    if let Some((admin, _)) = &ops.admin {
        let ctx = crate::operator_ctx(TOTALS_TIMEOUT);
        match admin.totals(&ctx, TotalsRequest {}).await {
            Ok(totals) => {
                body["registered_users"] = totals.registered_users.into();
                body["groups"] = totals.groups.into();
                body["messages"] = totals.messages.into();
                body["inbox_entries"] = totals.inbox_entries.into();
                body["counted_at_ms"] = totals.counted_at_ms.into();
            }
            Err(status) => tracing::warn!(%status, "the dashboard could not count the store"),
        }
    }
    no_store(body)
}
