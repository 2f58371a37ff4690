//! Sync: every change newer than the presented SyncKey, in version order, in bounded batches.
//!
//! Presenting a key is the acknowledgement: the message version in it is recorded for the
//! calling device, and once every device of the user has acknowledged a message, retention
//! decides when it is deleted. No separate ACK command exists.

use crate::{Logic, auth, compat, message};
use missive_proto::client::*;
use missive_proto::internal::{ContactChangesRequest, InboxQuery, UserRef};
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;

/// Encoded items in one sync answer at most (one item may exceed it alone); keeps every
/// answer well under the frame limit whatever the texts' lengths.
pub const SYNC_BYTES_MAX: usize = 256 * 1024;

impl Logic {
    pub(crate) async fn sync(&self, ctx: &Ctx, req: SyncRequest) -> Result<SyncResponse, Status> {
        let caller = ctx.caller()?;
        let mut key = self
            .sync_keys
            .open(&req.sync_key, caller.user_id)
            .map_err(|e| Status::new(Code::BadSyncKey, e.to_string()))?;
        let acknowledged = key.get(DataType::Message);
        if acknowledged > 0 {
            self.acks.record(caller.user_id, caller.device_id, acknowledged, self.now_ms());
        }
        let limit =
            crate::page(req.limit, self.config.sync_items_default, self.config.sync_items_max);

        let mut items = Vec::new();
        let mut more = false;
        // The three reads at once: a sync costs one round trip to the store, not three.
        let account = self.deps.accounts.get_by_id(ctx, UserRef { user_id: caller.user_id });
        let contacts = ContactChangesRequest {
            user_id: caller.user_id,
            after_version: key.get(DataType::Contact),
            limit: limit + 1,
        };
        let contacts = self.deps.contacts.changes(ctx, contacts);
        let inbox = InboxQuery {
            user_id: caller.user_id,
            after_version: key.get(DataType::Message),
            limit,
        };
        let inbox = self.deps.messages.read_inbox(ctx, inbox);
        let (account, contacts, inbox) =
            futures_util::future::try_join3(account, contacts, inbox).await?;
        if account.version > key.get(DataType::Account) {
            items.push(SyncItem {
                r#type: DataType::Account as i32,
                version: account.version,
                body: Some(sync_item::Body::Profile(auth::profile_of(&account))),
            });
        }
        let contacts = contacts.entries;
        more |= contacts.len() > limit as usize;
        items.extend(contacts.into_iter().take(limit as usize).map(|entry| SyncItem {
            r#type: DataType::Contact as i32,
            version: entry.version,
            body: entry.contact.map(sync_item::Body::Contact),
        }));
        more |= inbox.more;
        items.extend(inbox.items.into_iter().map(|item| SyncItem {
            r#type: DataType::Message as i32,
            version: item.version,
            body: item.message.map(sync_item::Body::Message),
        }));

        // One batch, oldest first; what does not fit waits for the next call, and the key
        // advances only past what is delivered.
        items.sort_by_key(|item| item.version);
        if items.len() > limit as usize {
            items.truncate(limit as usize);
            more = true;
        }
        // What the client is sent of each item depends on its version (an item a version-1
        // client cannot show is left out); the key moves past every item either way.
        let me = (caller.user_id, account.username.as_str());
        let adapted: Vec<(i32, u64, Option<SyncItem>)> = items
            .into_iter()
            .map(|i| (i.r#type, i.version, compat::adapt(i, caller.protocol_version, me)))
            .collect();
        // Bound the answer's size too (a batch of long texts), always delivering one item.
        let mut bytes = 0;
        let fitting = adapted
            .iter()
            .take_while(|(_, _, item)| {
                bytes += item.as_ref().map_or(0, |item| item.encoded_len());
                bytes <= SYNC_BYTES_MAX
            })
            .count()
            .max(1);
        if fitting < adapted.len() {
            more = true;
        }
        let mut delivered = [0u64; message::KINDS.len()];
        let mut items = Vec::with_capacity(fitting);
        for (data_type, version, item) in adapted.into_iter().take(fitting) {
            key.advance(DataType::try_from(data_type).unwrap_or(DataType::Unspecified), version);
            let Some(item) = item else { continue };
            if let Some(sync_item::Body::Message(message)) = &item.body {
                let kind = MessageKind::try_from(message.kind).unwrap_or(MessageKind::Text);
                delivered[message::kind_index(kind)] += 1;
            }
            items.push(item);
        }
        for (count, counter) in delivered.into_iter().zip(&self.metrics.delivered) {
            if count > 0 {
                counter.increment(count);
            }
        }
        self.metrics.sync_calls.increment(1);
        self.metrics.sync_items.increment(items.len() as u64);
        Ok(SyncResponse { items, sync_key: self.sync_keys.seal(&key), more })
    }
}
