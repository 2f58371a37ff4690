//! The process's metrics: the recorder, the process figures, and the help text of every
//! metric Missive records (docs/operations.md lists them with their labels).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use missive_ops::Render;
use std::sync::Arc;

/// Installs the recorder (unless `enabled` is false) and returns what renders `/metrics`.
pub fn install(enabled: bool) -> Render {
    if !enabled {
        return Arc::new(String::new);
    }
    let handle = missive_rpc::recorder::install();
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    Arc::new(move || {
        process.collect();
        handle.render()
    })
}

fn describe() {
    use Unit::{Bytes, Count, Seconds};
    let counters: &[(&'static str, Unit, &'static str)] = &[
        (
            "missive_connections_refused_total",
            Count,
            "Connections refused at the connection limit.",
        ),
        ("missive_requests_total", Count, "Client requests answered, by command and result code."),
        ("missive_registrations_total", Count, "Accounts registered."),
        ("missive_logins_total", Count, "Successful logins (new device sessions)."),
        ("missive_messages_sent_total", Count, "Messages stored, by kind."),
        ("missive_messages_delivered_total", Count, "Messages handed to devices by sync, by kind."),
        ("missive_sync_calls_total", Count, "Sync calls answered."),
        ("missive_sync_items_total", Count, "Items returned by sync calls."),
        ("missive_notify_pushes_total", Count, "NOTIFY frames pushed to long links."),
        ("missive_notify_requests_total", Count, "Notify targets handed to the access tier."),
        ("missive_contact_changes_total", Count, "Contact entries written."),
        ("missive_groups_created_total", Count, "Groups created."),
        ("missive_group_changes_total", Count, "Changes of existing groups."),
        ("missive_media_uploads_total", Count, "Images and files uploaded."),
        ("missive_media_uploaded_bytes_total", Bytes, "Bytes of images and files uploaded."),
        (
            "missive_versioned_write_retries_total",
            Count,
            "Versioned writes retried after a lost race.",
        ),
        (
            "missive_gc_inbox_entries_deleted_total",
            Count,
            "Inbox entries deleted by garbage collection.",
        ),
        ("missive_gc_messages_deleted_total", Count, "Messages deleted by garbage collection."),
        ("missive_rpc_calls_total", Count, "Service calls received, by service and method."),
        ("missive_rpc_errors_total", Count, "Service calls that ended with an error, by code."),
        (
            "missive_rpc_shed_total",
            Count,
            "Service calls refused by overload control, by priority.",
        ),
        ("missive_route_writes_total", Count, "Routing table entries written."),
        ("missive_route_write_errors_total", Count, "Failed writes of the routing table."),
        ("missive_route_publishes_total", Count, "Notify batches published to access nodes."),
        (
            "missive_route_deliveries_total",
            Count,
            "Notify batches received from the routing engine.",
        ),
        ("missive_route_subscription_losses_total", Count, "Losses of the routing subscription."),
        ("missive_reports_total", Count, "Statistics reports sent, by channel and outcome."),
        ("missive_stats_periods_closed_total", Count, "Statistics periods closed by this node."),
    ];
    for (name, unit, help) in counters {
        describe_counter!(*name, *unit, *help);
    }
    let gauges: &[(&'static str, Unit, &'static str)] = &[
        ("missive_connections", Count, "Open long-link connections, by transport."),
        (
            "missive_online_devices",
            Count,
            "Authenticated long links, by transport and protocol version.",
        ),
        ("missive_registered_users", Count, "Accounts in the store, as last counted."),
        ("missive_groups", Count, "Groups in the store, as last counted."),
        ("missive_stored_messages", Count, "Messages in the store, as last counted."),
        (
            "missive_inbox_entries",
            Count,
            "Inbox entries in the store (all inboxes' size), as last counted.",
        ),
        ("missive_rpc_admission_level", Count, "Overload control's admission level, by service."),
        ("missive_store_wal_pages", Count, "Pages in the embedded store's write-ahead log."),
    ];
    for (name, unit, help) in gauges {
        describe_gauge!(*name, *unit, *help);
    }
    let histograms: &[(&'static str, Unit, &'static str)] = &[
        ("missive_request_duration_seconds", Seconds, "Client request latency, by command."),
        ("missive_rpc_duration_seconds", Seconds, "Service call latency, by service and method."),
        ("missive_store_commit_seconds", Seconds, "Embedded store group commit latency."),
        ("missive_store_commit_ops", Count, "Operations per embedded store group commit."),
    ];
    for (name, unit, help) in histograms {
        describe_histogram!(*name, *unit, *help);
    }
}
