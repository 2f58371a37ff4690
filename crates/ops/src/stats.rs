//! The periodic statistics (hourly by default). Every node samples its own figures at the
//! same slots, 60 per period (online devices, messages sent and delivered since its previous
//! sample), and hands them to the logic tier; once a period has ended, the logic nodes close
//! it: the store adds the samples up over nodes, counts registrations and active users, and
//! keeps the row. The node whose call wrote the row delivers the report.

use crate::exposition;
use crate::report::Reporter;
use crate::{Render, sampler};
use missive_proto::admin::{Admin, NodeSample};
use missive_proto::internal::{ClosePeriodRequest, OpsStore};
use std::sync::Arc;
use std::time::Duration;

/// Samples per period.
const SLOTS_PER_PERIOD: u64 = 60;
/// How long a store call of the job may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The sampling slot of a period: a sixtieth of it, at least a second.
pub fn slot(period: Duration) -> Duration {
    Duration::from_secs((period.as_secs() / SLOTS_PER_PERIOD).max(1))
}

/// Sleeps until the wall clock reaches the next multiple of `step` (plus `after`); returns
/// that multiple, in ms.
async fn until_next(step: Duration, after: Duration) -> i64 {
    let step_ms = step.as_millis().max(1) as i64;
    let now = missive_rpc::unix_ms();
    let boundary = now - now.rem_euclid(step_ms) + step_ms;
    let wake = boundary + after.as_millis() as i64;
    tokio::time::sleep(Duration::from_millis((wake - now).max(0) as u64)).await;
    boundary
}

/// Reports this node's figures at every slot until `shutdown`.
pub async fn report_samples(
    admin: Arc<dyn Admin>,
    render: Render,
    node: String,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slot = slot(period);
    let mut previous = sampler::messages(&exposition::parse(&render()));
    tokio::pin!(shutdown);
    loop {
        let boundary = tokio::select! {
            boundary = until_next(slot, Duration::ZERO) => boundary,
            () = &mut shutdown => return,
        };
        let samples = exposition::parse(&render());
        let now = sampler::messages(&samples);
        let sample = NodeSample {
            node: node.clone(),
            slot_ms: boundary - slot.as_millis() as i64,
            online: sampler::online(&samples) as u64,
            messages_sent: (now.0 - previous.0).max(0.0) as u64,
            messages_delivered: (now.1 - previous.1).max(0.0) as u64,
        };
        let ctx = crate::operator_ctx(CALL_TIMEOUT);
        match admin.report_sample(&ctx, sample).await {
            // Counted from here on only once recorded; a failed slot is retold in the next.
            Ok(_) => previous = now,
            Err(status) => tracing::warn!(%status, "reporting this node's figures failed"),
        }
    }
}

/// Closes each period once it has ended (and every node's last sample and activity had time
/// to arrive), and delivers its report when this node closed it.
pub async fn run_job(
    store: Arc<dyn OpsStore>,
    reporter: Arc<Reporter>,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slot = slot(period);
    let grace = slot + Duration::from_secs(1);
    let period_s = period.as_secs().max(1) as u32;
    tokio::pin!(shutdown);
    loop {
        let end = tokio::select! {
            end = until_next(period, grace) => end,
            () = &mut shutdown => return,
        };
        let request = ClosePeriodRequest { start_ms: end - i64::from(period_s) * 1000, period_s };
        let ctx = crate::operator_ctx(CALL_TIMEOUT);
        match store.close_period(&ctx, request).await {
            Ok(closed) if closed.closed_here => {
                let stats = closed.stats.unwrap_or_default();
                metrics::counter!("missive_stats_periods_closed_total").increment(1);
                tracing::info!(
                    period = %crate::report::period_name(&stats),
                    registered_users = stats.registered_users,
                    online_peak = stats.online_peak,
                    messages_sent = stats.messages_sent,
                    active_users = stats.active_users,
                    "statistics period closed"
                );
                reporter.deliver(&stats).await;
            }
            Ok(_) => tracing::debug!("another node closed the statistics period"),
            Err(status) => tracing::warn!(%status, "closing the statistics period failed"),
        }
    }
}
