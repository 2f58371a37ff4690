//! Background upkeep: writing acknowledgements and activity, collecting delivered messages,
//! counting what the store holds.
//!
//! A Sync acknowledges the presented key at once in memory; the janitor writes the newest
//! acknowledgement per device every interval, as one batch. Losing a few unwritten
//! acknowledgements in a crash only keeps messages a little longer: it never loses one.

use crate::{Logic, Retention};
use missive_proto::internal::{AckRequest, CollectRequest, DeviceAck};
use missive_rpc::Ctx;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Acknowledgements written in one store call at most.
const ACKS_PER_WRITE_MAX: usize = 64;
/// Inbox entries deleted per collection pass at most, so one pass never holds the writer long.
const COLLECT_USERS_MAX: u32 = 1000;

#[derive(Default)]
pub(crate) struct AckBuffer {
    /// (user, device) -> (version, when acknowledged).
    pending: Mutex<HashMap<(u64, u64), (u64, i64)>>,
}

impl AckBuffer {
    pub(crate) fn record(&self, user_id: u64, device_id: u64, version: u64, at_ms: i64) {
        let mut pending = self.pending.lock().expect("ack buffer");
        let entry = pending.entry((user_id, device_id)).or_insert((version, at_ms));
        if version > entry.0 {
            *entry = (version, at_ms);
        }
    }

    fn take(&self) -> Vec<DeviceAck> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("ack buffer"));
        pending
            .into_iter()
            .map(|((user_id, device_id), (version, at_ms))| DeviceAck {
                user_id,
                device_id,
                version,
                at_ms,
            })
            .collect()
    }
}

impl Logic {
    /// Writes pending acknowledgements; on failure they are kept for the next pass.
    ///
    /// They go in small chunks, one commit each, so that sends waiting for the same writer
    /// slip in between chunks instead of waiting for all of them.
    pub async fn flush_acks(&self) {
        let acks = self.acks.take();
        let ctx = Ctx::new(0);
        for chunk in acks.chunks(ACKS_PER_WRITE_MAX) {
            let request = AckRequest { acks: chunk.to_vec() };
            if let Err(status) = self.deps.accounts.ack(&ctx, request).await {
                tracing::warn!(%status, count = chunk.len(), "writing acknowledgements failed");
                for ack in chunk {
                    self.acks.record(ack.user_id, ack.device_id, ack.version, ack.at_ms);
                }
            }
        }
    }

    /// Deletes messages whose retention after delivery has passed; returns how many inbox
    /// entries went.
    pub async fn collect_garbage(&self) -> u64 {
        let cutoff = match self.config.retention {
            Retention::Forever => return 0,
            Retention::UntilDelivered => self.now_ms(),
            Retention::After(keep) => self.now_ms() - keep.as_millis() as i64,
        };
        let ctx = Ctx::new(0);
        let request = CollectRequest { delivered_before_ms: cutoff, limit: COLLECT_USERS_MAX };
        match self.deps.messages.collect(&ctx, request).await {
            Ok(done) => {
                metrics::counter!("missive_gc_inbox_entries_deleted_total")
                    .increment(done.inbox_entries_deleted);
                metrics::counter!("missive_gc_messages_deleted_total")
                    .increment(done.messages_deleted);
                done.inbox_entries_deleted
            }
            Err(status) => {
                tracing::warn!(%status, "garbage collection failed");
                0
            }
        }
    }

    /// Runs upkeep every `janitor_interval` until `shutdown` resolves, then flushes once more.
    pub async fn run_janitor(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.janitor_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.flush_acks().await;
                    self.flush_activity().await;
                    self.collect_garbage().await;
                }
                () = &mut shutdown => break,
            }
        }
        self.flush_acks().await;
        self.flush_activity().await;
    }
}
