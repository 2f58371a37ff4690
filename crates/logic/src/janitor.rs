//! Background upkeep: writing acknowledgements and activity, collecting delivered messages,
//! re-driving sends left pending across shards, counting what the store holds.
//!
//! A Sync acknowledges the presented key at once in memory; the janitor writes the newest
//! acknowledgement per device every interval, as one batch. Losing a few unwritten
//! acknowledgements in a crash only keeps messages a little longer: it never loses one.

use crate::{Logic, Retention};
use missive_proto::client::DataType;
use missive_proto::internal::{
    AckRequest, AppendRequest, ClaimPendingRequest, CollectRequest, DeviceAck,
};
use missive_rpc::Ctx;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Acknowledgements written in one store call at most.
const ACKS_PER_WRITE_MAX: usize = 64;
/// Inbox entries deleted per collection pass at most, so one pass never holds the writer long.
const COLLECT_USERS_MAX: u32 = 1000;
/// Pending sends re-driven per pass at most (per shard).
const REDRIVE_SENDS_MAX: u32 = 100;
/// How long a pending send claimed for re-driving is left to this node before another may
/// take it over.
const REDRIVE_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

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

    /// Delivers the sends whose delivery to another shard was left pending long enough ago
    /// that their senders will not retry: each as a retry of the send would, with fresh
    /// versions for the recipients still without it, so that each gets it exactly once.
    /// Returns how many sends were re-driven.
    pub async fn redrive_pending(&self) -> usize {
        let now_ms = self.now_ms();
        let ctx = Ctx::new(0);
        let request = ClaimPendingRequest {
            created_before_ms: now_ms - self.config.pending_redrive_after.as_millis() as i64,
            now_ms,
            claimed_until_ms: now_ms + REDRIVE_LEASE.as_millis() as i64,
            limit: REDRIVE_SENDS_MAX,
        };
        let pending = match self.deps.messages.claim_pending(&ctx, request).await {
            Ok(pending) => pending.sends,
            Err(status) => {
                tracing::warn!(%status, "claiming pending sends failed");
                return 0;
            }
        };
        let mut redriven = 0;
        for send in pending {
            let Some(message) = send.message else { continue };
            let message_id = message.id;
            let written = self
                .write_versioned(&ctx, &send.user_ids, |entries| {
                    let append = AppendRequest { message: Some(message.clone()), entries };
                    self.deps.messages.append(&ctx, append)
                })
                .await;
            match written {
                // Every entry was there (its marks outlived the send): they are cleared now.
                Ok((stored, _)) if stored.written.is_empty() => {
                    tracing::debug!(message_id, "a pending send was delivered already");
                }
                Ok((stored, _)) => {
                    redriven += 1;
                    metrics::counter!("missive_pending_redriven_total").increment(1);
                    tracing::info!(
                        message_id,
                        users = stored.written.len(),
                        "re-drove a pending send"
                    );
                    self.notify_written(&ctx, &stored.written, DataType::Message).await;
                }
                Err(status) => {
                    tracing::warn!(message_id, %status, "re-driving a pending send failed");
                }
            }
        }
        redriven
    }

    /// Runs upkeep every `janitor_interval` until `shutdown` resolves, then flushes once more.
    pub async fn run_janitor(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.janitor_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A send is re-driven once its marks are `pending_redrive_after` old: asking the
        // store twice in that time is soon enough, and costs each shard a query per ask.
        let every =
            (self.config.pending_redrive_after / 2).max(std::time::Duration::from_millis(100));
        let mut redrive = tokio::time::interval(every);
        redrive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.flush_acks().await;
                    self.flush_activity().await;
                    self.collect_garbage().await;
                }
                _ = redrive.tick() => {
                    self.redrive_pending().await;
                }
                () = &mut shutdown => break,
            }
        }
        self.flush_acks().await;
        self.flush_activity().await;
    }
}
