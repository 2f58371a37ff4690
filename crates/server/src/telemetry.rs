//! The process's metrics: the recorder, the process figures, and the help text of every
//! metric Missive records (docs/operations.md lists them with their labels).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use missive_ops::Renders;
use std::sync::Arc;

/// Installs the recorder (unless `enabled` is false) and returns what renders the metrics:
/// the process figures are collected only for `/metrics`.
pub fn install(enabled: bool) -> Renders {
    if !enabled {
        return Renders { metrics: Arc::new(String::new), figures: Arc::new(String::new) };
    }
    let exposition = missive_rpc::recorder::install();
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    let figures = exposition.clone();
    Renders {
        metrics: Arc::new(move || {
            process.collect();
            exposition.render()
        }),
        figures: Arc::new(move || figures.render()),
    }
}

/// What a metric is, for its help text.
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// A hot-path histogram of [`missive_rpc::Latency`].
    Latency,
}

/// Every metric Missive records: kind, name, unit, help.
const METRICS: &[(Kind, &str, Unit, &str)] = {
    use Kind::{Counter, Gauge, Histogram, Latency};
    use Unit::{Bytes, Count, Seconds};
    &[
        (
            Counter,
            "missive_connections_refused_total",
            Count,
            "Connections refused at the connection limit.",
        ),
        (
            Counter,
            "missive_auth_refused_total",
            Count,
            "AUTHs answered OVERLOADED at admission: as many were in the logic layer as allowed.",
        ),
        (
            Counter,
            "missive_rate_limited_total",
            Count,
            "Requests refused with RATE_LIMITED, by limit.",
        ),
        (
            Counter,
            "missive_http_connections_refused_total",
            Count,
            "HTTP connections refused at a listener's connection or per-address limit.",
        ),
        (
            Counter,
            "missive_tls_handshakes_failed_total",
            Count,
            "TLS handshakes that failed or timed out, by listener.",
        ),
        (
            Counter,
            "missive_tls_reloads_total",
            Count,
            "Certificate pairs read again after a change or SIGHUP, by result (ok, failed).",
        ),
        (
            Counter,
            "missive_requests_total",
            Count,
            "Client requests answered, by command and result code.",
        ),
        (Counter, "missive_registrations_total", Count, "Accounts registered."),
        (Counter, "missive_logins_total", Count, "Successful logins (new device sessions)."),
        (Counter, "missive_messages_sent_total", Count, "Messages stored, by kind."),
        (
            Counter,
            "missive_messages_delivered_total",
            Count,
            "Messages handed to devices by sync, by kind.",
        ),
        (Counter, "missive_sync_calls_total", Count, "Sync calls answered."),
        (Counter, "missive_sync_items_total", Count, "Items returned by sync calls."),
        (Counter, "missive_notify_pushes_total", Count, "NOTIFY frames pushed to long links."),
        (
            Counter,
            "missive_events_total",
            Count,
            "Ephemeral events (typing, presence) handed to the access tier, by kind.",
        ),
        (
            Counter,
            "missive_push_notifications_total",
            Count,
            "Offline push notifications made for a user (each to all of their targets).",
        ),
        (
            Counter,
            "missive_push_deliveries_total",
            Count,
            "Offline push notifications handed to push services, by kind and result.",
        ),
        (Counter, "missive_push_retries_total", Count, "Push service calls tried again."),
        (
            Counter,
            "missive_push_muted_total",
            Count,
            "Conversations left out of a notification because the user muted them.",
        ),
        (
            Counter,
            "missive_push_dropped_total",
            Count,
            "Push events dropped because too many users had a notification waiting.",
        ),
        (
            Counter,
            "missive_pushers_removed_total",
            Count,
            "Push targets forgotten because their push service said they are gone.",
        ),
        (
            Counter,
            "missive_events_dropped_total",
            Count,
            "Events a long link did not take in time, dropped for newer ones.",
        ),
        (
            Counter,
            "missive_notify_requests_total",
            Count,
            "Notify targets handed to the access tier.",
        ),
        (Counter, "missive_contact_changes_total", Count, "Contact entries written."),
        (Counter, "missive_groups_created_total", Count, "Groups created."),
        (
            Counter,
            "missive_group_invitations_total",
            Count,
            "Group invitations sent (group-invites accept).",
        ),
        (Counter, "missive_group_changes_total", Count, "Changes of existing groups."),
        (Counter, "missive_media_uploads_total", Count, "Images and files uploaded."),
        (
            Counter,
            "missive_media_uploaded_bytes_total",
            Bytes,
            "Bytes of images and files uploaded.",
        ),
        (
            Counter,
            "missive_versioned_write_retries_total",
            Count,
            "Versioned writes retried after a lost race.",
        ),
        (
            Counter,
            "missive_gc_inbox_entries_deleted_total",
            Count,
            "Inbox entries deleted by garbage collection.",
        ),
        (
            Counter,
            "missive_gc_messages_deleted_total",
            Count,
            "Messages deleted by garbage collection.",
        ),
        (
            Counter,
            "missive_pending_redriven_total",
            Count,
            "Sends left pending across shards that the janitor delivered.",
        ),
        (
            Counter,
            "missive_rpc_calls_total",
            Count,
            "Service calls received, by service and method.",
        ),
        (
            Counter,
            "missive_rpc_errors_total",
            Count,
            "Service calls that ended with an error, by code.",
        ),
        (
            Counter,
            "missive_rpc_shed_total",
            Count,
            "Service calls refused by overload control, by priority.",
        ),
        (Counter, "missive_route_writes_total", Count, "Routing table entries written."),
        (Counter, "missive_route_write_errors_total", Count, "Failed writes of the routing table."),
        (
            Counter,
            "missive_route_publishes_total",
            Count,
            "Notify batches published to access nodes.",
        ),
        (
            Counter,
            "missive_route_deliveries_total",
            Count,
            "Notify batches received from the routing engine.",
        ),
        (
            Counter,
            "missive_route_subscription_losses_total",
            Count,
            "Losses of the routing subscription.",
        ),
        (
            Counter,
            "missive_route_reconnects_total",
            Count,
            "Routing engine connections dropped to be made again, by cause \
             (lost, not_master, switch_master).",
        ),
        (
            Counter,
            "missive_route_connect_errors_total",
            Count,
            "Failed attempts to find the routing engine's master and connect to it.",
        ),
        (
            Counter,
            "missive_reports_total",
            Count,
            "Statistics reports sent, by channel and outcome.",
        ),
        (
            Counter,
            "missive_stats_periods_closed_total",
            Count,
            "Statistics periods closed by this node.",
        ),
        (Gauge, "missive_connections", Count, "Open long-link connections, by transport."),
        (
            Gauge,
            "missive_online_devices",
            Count,
            "Authenticated long links, by transport and protocol version.",
        ),
        (Gauge, "missive_registered_users", Count, "Accounts in the store, as last counted."),
        (Gauge, "missive_groups", Count, "Groups in the store, as last counted."),
        (Gauge, "missive_stored_messages", Count, "Messages in the store, as last counted."),
        (
            Gauge,
            "missive_inbox_entries",
            Count,
            "Inbox entries in the store (all inboxes' size), as last counted.",
        ),
        (
            Gauge,
            "missive_rpc_admission_level",
            Count,
            "Overload control's admission level, by service.",
        ),
        (
            Gauge,
            "missive_rpc_queueing_seconds",
            Seconds,
            "Mean wait for a worker over overload control's last window, by service.",
        ),
        (Gauge, "missive_store_wal_pages", Count, "Pages in the embedded store's write-ahead log."),
        (
            Counter,
            "missive_store_failovers_total",
            Count,
            "Times a replicated SQL database's statements moved to another host, its new primary.",
        ),
        (
            Latency,
            "missive_request_duration_seconds",
            Seconds,
            "Client request latency, by command.",
        ),
        (
            Latency,
            "missive_rpc_duration_seconds",
            Seconds,
            "Service call latency, by service and method.",
        ),
        (
            Latency,
            "missive_store_duration_seconds",
            Seconds,
            "Storage call latency in the store tier, by data type, backend and method.",
        ),
        (
            Histogram,
            "missive_store_commit_seconds",
            Seconds,
            "Group commit latency (the embedded store, or a SQL database's message writer).",
        ),
        (
            Histogram,
            "missive_store_commit_ops",
            Count,
            "Operations per group commit (the embedded store, or a SQL database's message writer).",
        ),
    ]
};

fn describe() {
    for (kind, name, unit, help) in METRICS {
        let (name, unit, help) = (*name, *unit, *help);
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
            Kind::Latency => missive_rpc::latency::describe(name, help),
        }
    }
}
