//! Offline push: when a message or a friend request reaches a user none of whose devices holds
//! a long link, each push target (pusher) the user's devices registered gets a notification
//! through the `OfflinePush` service.
//!
//! - **Content-free by default.** A notification names the conversation, the sender and how
//!   many messages wait; the text rides along only when the operator allows it
//!   (`push_content`), so no words pass through third-party push services otherwise.
//! - **Coalesced.** Events for a user wait here, folded into one pending notification, which
//!   goes out when the user's turn comes: at once for the first, then at most one per
//!   `push_interval` (a bucket in the shared limiter, so every logic node of a deployment
//!   takes turns on it). A burst of a hundred messages is one notification saying a hundred.
//! - **Exactly one node sends each.** An event is queued on the logic node that handled it
//!   and sent from there; nodes coordinate only the pace.
//! - **Muted conversations** (the user's contact entry's `muted_until_ms`) are left out when
//!   the notification is made.
//! - **Gone targets are forgotten:** a push service's 404 or 410 removes the pusher.
//!
//! A notification is a hint, like a notify: one lost (a node that stops, a push service
//! that stays down through the retries) costs only the wake-up, never a message.

use crate::limits::{Limit, key_of};
use crate::{Logic, compat};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{PushDelivery, PusherRecord, PusherRef, UserRef, push_outcome};
use missive_rpc::{Code, Ctx, Status};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Push targets one user keeps at most.
pub const PUSHERS_PER_USER_MAX: usize = 10;
/// Users with a notification waiting, at most; events for others are dropped beyond it.
const PENDING_USERS_MAX: usize = 100_000;
/// Deliveries in flight at once from one logic node.
const DELIVERIES_AT_ONCE: usize = 64;
/// How much of a message a notification quotes, when the operator allows content.
const EXCERPT_CHARS_MAX: usize = 100;

/// What waits to be pushed to one user.
#[derive(Debug, Default)]
struct Pending {
    /// When it may go (ms since the Unix epoch).
    due_ms: i64,
    /// Per conversation: messages waiting, the newest sender's name, the newest excerpt.
    conversations: BTreeMap<u64, (u32, String, String)>,
    /// The newest conversation.
    latest: u64,
    friend_requests: u32,
    requester: String,
}

/// Something to tell a user who is offline.
pub(crate) enum PushEvent {
    Message { conversation: u64, sender: String, excerpt: String },
    FriendRequest { requester: String },
}

/// The notifications waiting on this node.
#[derive(Default)]
pub(crate) struct PushQueue {
    pending: Mutex<HashMap<u64, Pending>>,
    wake: tokio::sync::Notify,
}

impl PushQueue {
    fn add(&self, user_id: u64, event: PushEvent, now_ms: i64) {
        let mut pending = self.pending.lock().expect("push queue");
        if pending.len() >= PENDING_USERS_MAX && !pending.contains_key(&user_id) {
            metrics::counter!("missive_push_dropped_total").increment(1);
            return;
        }
        let entry = pending
            .entry(user_id)
            .or_insert_with(|| Pending { due_ms: now_ms, ..Pending::default() });
        match event {
            PushEvent::Message { conversation, sender, excerpt } => {
                let slot = entry.conversations.entry(conversation).or_default();
                *slot = (slot.0 + 1, sender, excerpt);
                entry.latest = conversation;
            }
            PushEvent::FriendRequest { requester } => {
                entry.friend_requests += 1;
                entry.requester = requester;
            }
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Takes the users whose notification is due; answers when the next one is.
    fn due(&self, now_ms: i64) -> (Vec<(u64, Pending)>, Option<i64>) {
        let mut pending = self.pending.lock().expect("push queue");
        let due: Vec<u64> =
            pending.iter().filter(|(_, p)| p.due_ms <= now_ms).map(|(u, _)| *u).collect();
        let taken = due.into_iter().filter_map(|u| pending.remove(&u).map(|p| (u, p))).collect();
        let next = pending.values().map(|p| p.due_ms).min();
        (taken, next)
    }

    /// Puts back a notification whose user's turn has not come, merging what came meanwhile.
    fn put_back(&self, user_id: u64, mut waiting: Pending, due_ms: i64) {
        let mut pending = self.pending.lock().expect("push queue");
        if let Some(newer) = pending.remove(&user_id) {
            for (conversation, (count, sender, excerpt)) in newer.conversations {
                let slot = waiting.conversations.entry(conversation).or_default();
                *slot = (slot.0 + count, sender, excerpt);
            }
            if newer.latest != 0 {
                waiting.latest = newer.latest;
            }
            waiting.friend_requests += newer.friend_requests;
            if !newer.requester.is_empty() {
                waiting.requester = newer.requester;
            }
        }
        waiting.due_ms = due_ms;
        pending.insert(user_id, waiting);
    }
}

impl Logic {
    /// Queues `event` for each of `users` (offline already), if this node pushes at all.
    pub(crate) fn push_offline(&self, users: &[u64], event: impl Fn() -> PushEvent) {
        if self.deps.offline_push.is_none() {
            return;
        }
        let now = self.now_ms();
        for &user_id in users {
            self.push_queue.add(user_id, event(), now);
        }
    }

    /// What a message's recipients who are offline are told.
    pub(crate) fn message_event(&self, message: &Message, recipient: u64) -> PushEvent {
        let conversation = if message.group_id != 0 {
            message.group_id
        } else if message.from_user_id == recipient {
            message.to_user_id
        } else {
            message.from_user_id
        };
        let sender = if message.from_nickname.is_empty() {
            message.from.clone()
        } else {
            message.from_nickname.clone()
        };
        let excerpt = if self.config.push_content {
            let fallback = compat::fallback_text(message);
            let text = if fallback.is_empty() { &message.text } else { &fallback };
            text.chars().take(EXCERPT_CHARS_MAX).collect()
        } else {
            String::new()
        };
        PushEvent::Message { conversation, sender, excerpt }
    }

    /// Sends the notifications that come due, until `stop`.
    pub async fn run_pusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        if self.deps.offline_push.is_none() {
            return stop.await;
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(DELIVERIES_AT_ONCE));
        tokio::pin!(stop);
        loop {
            let (due, next) = self.push_queue.due(self.now_ms());
            for (user_id, pending) in due {
                let logic = self.clone();
                let slots = slots.clone();
                tokio::spawn(async move { logic.push_one(user_id, pending, slots).await });
            }
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis((at - self.now_ms()).clamp(1, 3_600_000) as u64)
            });
            tokio::select! {
                () = &mut stop => return,
                () = self.push_queue.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends one user's notification to every pusher of theirs, if their turn has come.
    async fn push_one(
        self: Arc<Self>,
        user_id: u64,
        pending: Pending,
        slots: Arc<tokio::sync::Semaphore>,
    ) {
        let ctx = Ctx::new(0).with_timeout(Duration::from_secs(120));
        if let Err(wait) = self.turn(Limit::PushTurns, key_of(user_id)).await {
            let due = self.now_ms() + wait.as_millis() as i64;
            self.push_queue.put_back(user_id, pending, due);
            self.push_queue.wake.notify_one();
            return;
        }
        let Some(payload) = self.notification(&ctx, user_id, pending).await else { return };
        let pushers = match self.deps.accounts.list_pushers(&ctx, UserRef { user_id }).await {
            Ok(list) => list.pushers,
            Err(status) => {
                tracing::warn!(user_id, %status, "push: pushers unread");
                return;
            }
        };
        if pushers.is_empty() {
            return;
        }
        metrics::counter!("missive_push_notifications_total").increment(1);
        let Some(sender) = self.deps.offline_push.clone() else { return };
        let deliveries = pushers.into_iter().map(|pusher| {
            let (sender, slots, ctx, payload) =
                (sender.clone(), slots.clone(), ctx.clone(), payload.clone());
            let logic = self.clone();
            async move {
                let Ok(_slot) = slots.acquire().await else { return };
                let endpoint = pusher.endpoint.clone();
                let delivery = PushDelivery {
                    user_id,
                    pusher: Some(pusher),
                    payload,
                    ttl_s: logic.config.push_ttl.as_secs() as u32,
                    topic: String::new(),
                };
                match sender.deliver(&ctx, delivery).await {
                    Ok(outcome) if outcome.result == push_outcome::Result::Gone as i32 => {
                        tracing::info!(
                            user_id,
                            detail = outcome.detail,
                            "push target gone; forgotten"
                        );
                        let gone = PusherRef { user_id, endpoint, device_id: 0 };
                        if let Err(status) = logic.deps.accounts.remove_pushers(&ctx, gone).await {
                            tracing::warn!(user_id, %status, "push: a gone target not removed");
                        }
                        metrics::counter!("missive_pushers_removed_total").increment(1);
                    }
                    Ok(outcome) if outcome.result == push_outcome::Result::Failed as i32 => {
                        tracing::debug!(user_id, detail = outcome.detail, "push not delivered");
                    }
                    Ok(_) => {}
                    Err(status) => tracing::warn!(user_id, %status, "push service call failed"),
                }
            }
        });
        futures_util::future::join_all(deliveries).await;
    }

    /// The notification's JSON: what waits for the user, less muted conversations; none when
    /// nothing is left.
    async fn notification(&self, ctx: &Ctx, user_id: u64, pending: Pending) -> Option<Vec<u8>> {
        let now = self.now_ms();
        let mut conversations = Vec::new();
        for (conversation, waiting) in pending.conversations {
            let entry = self.entry_of(ctx, user_id, conversation).await.ok().flatten();
            if entry.is_some_and(|c| c.muted_until_ms > now) {
                metrics::counter!("missive_push_muted_total").increment(1);
                continue;
            }
            conversations.push((conversation, waiting));
        }
        if conversations.is_empty() && pending.friend_requests == 0 {
            return None;
        }
        let messages: u32 = conversations.iter().map(|(_, (count, ..))| count).sum();
        let latest = conversations
            .iter()
            .find(|(c, _)| *c == pending.latest)
            .or(conversations.last())
            .map(|(c, (_, sender, excerpt))| (*c, sender.clone(), excerpt.clone()));
        let mut body = serde_json::json!({
            "messages": messages,
            "conversations": conversations.len(),
            "friend_requests": pending.friend_requests,
        });
        if let Some((conversation, sender, excerpt)) = latest {
            body["conversation_id"] = conversation.into();
            body["is_group"] = ids::is_group(conversation).into();
            body["sender"] = sender.into();
            if self.config.push_content {
                body["text"] = excerpt.into();
            }
        }
        if pending.friend_requests > 0 {
            body["requester"] = pending.requester.into();
        }
        Some(body.to_string().into_bytes())
    }

    pub(crate) async fn pusher_set(
        &self,
        ctx: &Ctx,
        req: PusherSetRequest,
    ) -> Result<PusherSetResponse, Status> {
        let caller = ctx.caller()?;
        let Some(sender) = &self.deps.offline_push else {
            return Err(Status::new(Code::FailedPrecondition, "this server sends no push"));
        };
        let mut pusher = req.pusher.ok_or_else(|| Status::invalid_argument("pusher missing"))?;
        match PusherKind::try_from(pusher.kind) {
            Ok(PusherKind::WebPush) => {}
            Ok(PusherKind::UnifiedPush) if pusher.p256dh.is_empty() && pusher.auth.is_empty() => {}
            Ok(PusherKind::UnifiedPush) => {}
            _ => return Err(Status::invalid_argument("kind must be UNIFIED_PUSH or WEB_PUSH")),
        }
        let encrypted = pusher.kind == PusherKind::WebPush as i32 || !pusher.p256dh.is_empty();
        if encrypted
            && (pusher.p256dh.len() != 65 || pusher.p256dh[0] != 4 || pusher.auth.len() != 16)
        {
            return Err(Status::invalid_argument(
                "p256dh must be a 65-byte uncompressed P-256 key and auth 16 bytes",
            ));
        }
        sender.check_endpoint(ctx, pusher.clone()).await?;
        let existing =
            self.deps.accounts.list_pushers(ctx, UserRef { user_id: caller.user_id }).await?;
        let replacing = existing.pushers.iter().any(|p| p.endpoint == pusher.endpoint);
        if !replacing && existing.pushers.len() >= PUSHERS_PER_USER_MAX {
            return Err(Status::new(
                Code::LimitExceeded,
                format!("at most {PUSHERS_PER_USER_MAX} push targets per user"),
            ));
        }
        pusher.device_id = caller.device_id;
        pusher.created_at_ms = self.now_ms();
        let record = PusherRecord { user_id: caller.user_id, pusher: Some(pusher.clone()) };
        self.deps.accounts.put_pusher(ctx, record).await?;
        Ok(PusherSetResponse { pusher: Some(pusher) })
    }

    pub(crate) async fn pusher_remove(
        &self,
        ctx: &Ctx,
        req: PusherRemoveRequest,
    ) -> Result<PusherRemoveResponse, Status> {
        let caller = ctx.caller()?;
        if req.endpoint.is_empty() {
            return Err(Status::invalid_argument("name the endpoint"));
        }
        let gone = PusherRef { user_id: caller.user_id, endpoint: req.endpoint, device_id: 0 };
        let removed = self.deps.accounts.remove_pushers(ctx, gone).await?;
        Ok(PusherRemoveResponse { removed: removed.count > 0 })
    }

    pub(crate) async fn pusher_list(
        &self,
        ctx: &Ctx,
        _: PusherListRequest,
    ) -> Result<PusherListResponse, Status> {
        let caller = ctx.caller()?;
        let list =
            self.deps.accounts.list_pushers(ctx, UserRef { user_id: caller.user_id }).await?;
        Ok(PusherListResponse {
            pushers: list.pushers,
            vapid_public_key: self.config.vapid_public_key.clone(),
        })
    }

    pub(crate) async fn set_muted(
        &self,
        ctx: &Ctx,
        req: SetMutedRequest,
    ) -> Result<ContactResponse, Status> {
        let caller = ctx.caller()?;
        if req.muted_until_ms < 0 {
            return Err(Status::invalid_argument("muted_until_ms is ms since the Unix epoch"));
        }
        let conversation = req.conversation_id;
        let guards = self.locks.lock(&[caller.user_id]).await;
        let entry = if ids::is_group(conversation) {
            let found = self.entry_of(ctx, caller.user_id, conversation).await?;
            found.ok_or_else(|| Status::new(Code::NotMember, "you are not in this group"))?
        } else {
            if conversation == 0 || conversation == caller.user_id {
                return Err(Status::invalid_argument(
                    "conversation_id must name a peer or a group",
                ));
            }
            self.user_entry(ctx, caller.user_id, conversation).await?
        };
        let muted = Contact { muted_until_ms: req.muted_until_ms, ..entry.clone() };
        if muted == entry {
            return Ok(ContactResponse { contact: Some(muted), version: 0 });
        }
        let written = self.commit_contacts(ctx, vec![(caller.user_id, muted.clone())]).await?;
        drop(guards);
        self.contacts_changed(ctx, &written).await;
        Ok(ContactResponse { contact: Some(muted), version: written[0].version })
    }
}

/// Forgets the pushers of a device that signed out (of every device of the user for 0).
pub(crate) async fn forget_device_pushers(logic: &Logic, ctx: &Ctx, user_id: u64, device_id: u64) {
    let gone = PusherRef { user_id, endpoint: String::new(), device_id };
    if let Err(status) = logic.deps.accounts.remove_pushers(ctx, gone).await {
        tracing::warn!(user_id, device_id, %status, "a signed-out device's pushers stay");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(conversation: u64, sender: &str) -> PushEvent {
        PushEvent::Message { conversation, sender: sender.into(), excerpt: String::new() }
    }

    #[test]
    fn events_fold_into_one_notification_per_user_until_it_is_due() {
        let queue = PushQueue::default();
        queue.add(1, message(7, "ann"), 100);
        queue.add(1, message(7, "ann"), 150);
        queue.add(1, message(9, "bob"), 160);
        queue.add(2, PushEvent::FriendRequest { requester: "cat".into() }, 170);
        let (due, next) = queue.due(100);
        assert_eq!((due.len(), next), (1, Some(170)));
        let (user, pending) = &due[0];
        assert_eq!((*user, pending.latest), (1, 9));
        assert_eq!(pending.conversations[&7].0, 2);
        // Not its turn: put back, merging what came meanwhile.
        let (_, pending) = due.into_iter().next().unwrap();
        queue.add(1, message(7, "ann"), 200);
        queue.put_back(1, pending, 300);
        let (due, _) = queue.due(299);
        assert_eq!(due.len(), 1, "user 2 only");
        let (due, next) = queue.due(300);
        assert_eq!((due[0].1.conversations[&7].0, next), (3, None));
    }
}
