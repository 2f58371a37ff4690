//! Send: a message made durable in every inbox it goes to (the sender's, and the recipient's
//! or every group member's: write diffusion) before the sender hears back, then a notify to
//! every other online device concerned. Also the messages the server makes on a user's
//! behalf: recalls and read receipts.

use crate::limits::{Limit, key_of};
use crate::{Logic, validate};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{
    AppendRequest, AppendResponse, MediaQuery, MessageRef, ReplaceMessageRequest, UserRef,
    UsernameRef,
};
use missive_rpc::{Code, Ctx, Status};
use std::collections::HashMap;
use std::sync::Mutex;

/// Usernames cached at most; usernames never change, so entries never go stale.
const NAMES_CACHED_MAX: usize = 200_000;
/// Members one group message may mention at most.
pub const MENTIONS_MAX: usize = 50;

/// user id <-> username, so a send costs no account read in the common case.
#[derive(Default)]
pub(crate) struct NameCache {
    by_id: Mutex<HashMap<u64, String>>,
    by_name: Mutex<HashMap<String, u64>>,
}

impl NameCache {
    fn remember(&self, user_id: u64, username: &str) {
        let mut by_id = self.by_id.lock().expect("name cache");
        let mut by_name = self.by_name.lock().expect("name cache");
        if by_id.len() >= NAMES_CACHED_MAX {
            by_id.clear();
            by_name.clear();
        }
        by_id.insert(user_id, username.to_string());
        by_name.insert(username.to_string(), user_id);
    }
}

/// Every kind a metric may name.
pub(crate) const KINDS: [MessageKind; 9] = [
    MessageKind::Text,
    MessageKind::Image,
    MessageKind::File,
    MessageKind::Recall,
    MessageKind::Receipt,
    MessageKind::System,
    MessageKind::GroupInvitation,
    MessageKind::Edit,
    MessageKind::Reaction,
];

/// A message the server makes about `original` on its sender's behalf (a recall, an edit),
/// addressed as `original` was: to the same peer or group.
pub(crate) fn notice_about(original: &Message, kind: MessageKind) -> Message {
    Message {
        from_user_id: original.from_user_id,
        from: original.from.clone(),
        from_nickname: original.from_nickname.clone(),
        to_user_id: original.to_user_id,
        to: original.to.clone(),
        group_id: original.group_id,
        kind: kind as i32,
        ref_message_id: original.id,
        ..Message::default()
    }
}

pub(crate) fn kind_index(kind: MessageKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

pub(crate) fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Unspecified | MessageKind::Text => "text",
        MessageKind::Image => "image",
        MessageKind::File => "file",
        MessageKind::Recall => "recall",
        MessageKind::Receipt => "receipt",
        MessageKind::System => "system",
        MessageKind::GroupInvitation => "group_invitation",
        MessageKind::Edit => "edit",
        MessageKind::Reaction => "reaction",
    }
}

impl Logic {
    pub(crate) async fn username_of(&self, ctx: &Ctx, user_id: u64) -> Result<String, Status> {
        if let Some(name) = self.names.by_id.lock().expect("name cache").get(&user_id) {
            return Ok(name.clone());
        }
        let account = self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await?;
        self.names.remember(account.user_id, &account.username);
        Ok(account.username)
    }

    pub(crate) async fn user_id_of(&self, ctx: &Ctx, username: &str) -> Result<u64, Status> {
        if let Some(id) = self.names.by_name.lock().expect("name cache").get(username) {
            return Ok(*id);
        }
        let account = self
            .deps
            .accounts
            .get_by_name(ctx, UsernameRef { username: username.to_string() })
            .await?;
        self.names.remember(account.user_id, &account.username);
        Ok(account.user_id)
    }

    pub(crate) async fn nickname_of(&self, ctx: &Ctx, user_id: u64) -> Result<String, Status> {
        Ok(self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await?.nickname)
    }

    /// Stores `message` once with an entry in each of `users`' inboxes, then notifies them
    /// (all but the calling device, which learns from its answer). A retry with the same
    /// sender and client id stores nothing new.
    pub(crate) async fn deliver(
        &self,
        ctx: &Ctx,
        message: Message,
        users: &[u64],
    ) -> Result<AppendResponse, Status> {
        let (stored, _) = self
            .write_versioned(ctx, users, |entries| {
                let append = AppendRequest { message: Some(message.clone()), entries };
                self.deps.messages.append(ctx, append)
            })
            .await?;
        if !stored.duplicate {
            let kind = MessageKind::try_from(message.kind).unwrap_or(MessageKind::Text);
            self.metrics.sent[kind_index(kind)].increment(1);
            let offline = self.notify_written(ctx, &stored.written, DataType::Message).await;
            // What a person said, or asked, wakes the others' devices that are off.
            let wakes = matches!(
                kind,
                MessageKind::Text
                    | MessageKind::Image
                    | MessageKind::File
                    | MessageKind::GroupInvitation
            );
            let others: Vec<u64> =
                offline.into_iter().filter(|&u| u != message.from_user_id).collect();
            if wakes && !others.is_empty() {
                let sent = stored.message.as_ref().unwrap_or(&message);
                for user in others {
                    self.push_offline(&[user], || self.message_event(sent, user));
                }
            }
        }
        Ok(stored)
    }

    /// The id a SEND names: a user or group id, or a username or group handle.
    async fn recipient_of(&self, ctx: &Ctx, req: &SendRequest) -> Result<u64, Status> {
        if req.to_user_id != 0 {
            return Ok(req.to_user_id);
        }
        if req.to.is_empty() {
            return Err(Status::invalid_argument("recipient is missing"));
        }
        if let Some(group_id) = ids::parse_group_handle(&req.to) {
            return Ok(group_id);
        }
        self.user_id_of(ctx, &req.to)
            .await
            .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such recipient")))
    }

    /// The media a message attaches: uploaded by the sender for this very conversation.
    async fn attachment(
        &self,
        ctx: &Ctx,
        media_id: &str,
        conversation_id: u64,
    ) -> Result<MediaRef, Status> {
        let caller = ctx.caller()?;
        if media_id.is_empty() {
            return Err(Status::invalid_argument("images and files need a media_id"));
        }
        let query = MediaQuery { media_id: media_id.to_string(), with_data: false };
        let record = self.deps.media.get(ctx, query).await?.record.unwrap_or_default();
        if record.owner_id != caller.user_id || record.conversation_id != conversation_id {
            return Err(Status::new(
                Code::PermissionDenied,
                "attach media you uploaded for this conversation",
            ));
        }
        Ok(crate::media::media_ref(record))
    }

    pub(crate) async fn send(&self, ctx: &Ctx, req: SendRequest) -> Result<SendResponse, Status> {
        let caller = ctx.caller()?;
        self.limit(Limit::DeviceSends, key_of((caller.user_id, caller.device_id)), 1).await?;
        self.limit(Limit::Sends, key_of(caller.user_id), 1).await?;
        validate::client_msg_id(&req.client_msg_id)?;
        let kind = match MessageKind::try_from(req.kind) {
            Ok(MessageKind::Unspecified | MessageKind::Text) => {
                validate::text(&req.text)?;
                MessageKind::Text
            }
            Ok(kind @ (MessageKind::Image | MessageKind::File)) => {
                validate::caption(&req.text)?;
                kind
            }
            Ok(_) => {
                return Err(Status::invalid_argument("that message kind is made by the server"));
            }
            Err(_) => return Err(Status::invalid_argument("unknown message kind")),
        };
        if req.mentions.len() > MENTIONS_MAX {
            return Err(Status::invalid_argument(format!("at most {MENTIONS_MAX} mentions")));
        }
        let to_user_id = self.recipient_of(ctx, &req).await?;
        let media = match kind {
            MessageKind::Image | MessageKind::File => {
                Some(self.attachment(ctx, &req.media_id, to_user_id).await?)
            }
            _ => None,
        };
        let message = Message {
            from_user_id: caller.user_id,
            from: self.username_of(ctx, caller.user_id).await?,
            to_user_id,
            kind: kind as i32,
            text: req.text,
            sent_at_ms: self.now_ms(),
            client_msg_id: req.client_msg_id,
            media,
            ..Message::default()
        };
        let stored = if ids::is_group(to_user_id) {
            self.send_to_group(ctx, message, req.mentions).await?
        } else {
            if !req.mentions.is_empty() {
                return Err(Status::invalid_argument("mentions are for group messages"));
            }
            let to = self.username_of(ctx, to_user_id).await.map_err(|s| {
                s.translate(Code::NotFound, || Status::not_found("no such recipient"))
            })?;
            self.check_direct(ctx, caller.user_id, to_user_id).await?;
            let mut users = vec![caller.user_id];
            if to_user_id != caller.user_id {
                users.push(to_user_id);
            }
            self.deliver(ctx, Message { to, ..message }, &users).await?
        };
        let message = stored.message.ok_or_else(|| Status::internal("append lost the message"))?;
        Ok(SendResponse {
            message_id: message.id,
            version: stored.sender_version,
            sent_at_ms: message.sent_at_ms,
            duplicate: stored.duplicate,
        })
    }

    /// Write diffusion: one stored message, an entry in every current member's inbox. The
    /// group's lock is held shared, so no membership change interleaves.
    async fn send_to_group(
        &self,
        ctx: &Ctx,
        message: Message,
        mentions: Vec<u64>,
    ) -> Result<AppendResponse, Status> {
        let group_id = message.to_user_id;
        let _shared = self.group_locks.send(group_id).await;
        let state = self.load_group(ctx, group_id).await?;
        Self::role_in(&state, message.from_user_id)?;
        let members: Vec<u64> = state.members.iter().map(|m| m.user_id).collect();
        if let Some(stranger) = mentions.iter().find(|m| !members.contains(m)) {
            return Err(Status::invalid_argument(format!("user {stranger} is not a member")));
        }
        let message = Message {
            to: ids::group_handle(group_id),
            group_id,
            from_nickname: self.nickname_of(ctx, message.from_user_id).await?,
            mentions,
            ..message
        };
        self.deliver(ctx, message, &members).await
    }

    /// The audience of a conversation as it stands: both users of a 1:1 chat, or the
    /// group's members and the given user.
    async fn audience(&self, ctx: &Ctx, message: &Message, user: u64) -> Result<Vec<u64>, Status> {
        if message.group_id == 0 {
            let mut users = vec![message.from_user_id, message.to_user_id];
            users.dedup();
            return Ok(users);
        }
        let state = self.load_group(ctx, message.group_id).await?;
        let mut users: Vec<u64> = state.members.iter().map(|m| m.user_id).collect();
        if !users.contains(&user) {
            users.push(user);
        }
        Ok(users)
    }

    pub(crate) async fn recall(
        &self,
        ctx: &Ctx,
        req: RecallRequest,
    ) -> Result<RecallResponse, Status> {
        let caller = ctx.caller()?;
        let original = self
            .deps
            .messages
            .get(ctx, MessageRef { user_id: caller.user_id, message_id: req.message_id })
            .await?;
        if original.from_user_id != caller.user_id {
            return Err(Status::new(
                Code::PermissionDenied,
                "only the sender may recall a message",
            ));
        }
        let kind = MessageKind::try_from(original.kind).unwrap_or(MessageKind::Unspecified);
        if !matches!(kind, MessageKind::Text | MessageKind::Image | MessageKind::File) {
            return Err(Status::invalid_argument("only texts, images and files can be recalled"));
        }
        let window = self.config.recall_window.as_millis() as i64;
        if !original.recalled && self.now_ms() - original.sent_at_ms > window {
            return Err(Status::new(
                Code::TooLate,
                format!("messages can be recalled within {} s of sending", window / 1000),
            ));
        }
        let audience = self.audience(ctx, &original, caller.user_id).await?;
        let recalled = Message {
            text: String::new(),
            media: None,
            mentions: Vec::new(),
            reactions: Vec::new(),
            recalled: true,
            ..original.clone()
        };
        let replace = ReplaceMessageRequest { message: Some(recalled), ..Default::default() };
        self.deps.messages.replace(ctx, replace).await?;
        let notice = Message {
            sent_at_ms: self.now_ms(),
            // A retried recall finds this one and stores nothing new.
            client_msg_id: format!("recall:{}", original.id),
            ..notice_about(&original, MessageKind::Recall)
        };
        let stored = self.deliver(ctx, notice, &audience).await?;
        Ok(RecallResponse { version: stored.sender_version })
    }

    pub(crate) async fn mark_read(
        &self,
        ctx: &Ctx,
        req: MarkReadRequest,
    ) -> Result<MarkReadResponse, Status> {
        let caller = ctx.caller()?;
        let read = self
            .deps
            .messages
            .get(ctx, MessageRef { user_id: caller.user_id, message_id: req.message_id })
            .await?;
        if read.group_id != 0
            || read.to_user_id != caller.user_id
            || read.from_user_id == caller.user_id
        {
            return Err(Status::invalid_argument("receipts are for 1:1 messages you received"));
        }
        // Only what a person wrote is read: a receipt for a receipt (or a recall, or an
        // operator's notice) would let two clients that mark everything read bounce receipts
        // forever.
        let kind = MessageKind::try_from(read.kind).unwrap_or(MessageKind::Unspecified);
        if !matches!(kind, MessageKind::Text | MessageKind::Image | MessageKind::File) {
            return Err(Status::invalid_argument("receipts are for text, image and file messages"));
        }
        let receipt = Message {
            from_user_id: caller.user_id,
            from: read.to.clone(),
            to_user_id: read.from_user_id,
            to: read.from.clone(),
            kind: MessageKind::Receipt as i32,
            sent_at_ms: self.now_ms(),
            client_msg_id: format!("read:{}", read.id),
            ref_message_id: read.id,
            ..Message::default()
        };
        let stored = self.deliver(ctx, receipt, &[caller.user_id, read.from_user_id]).await?;
        Ok(MarkReadResponse { version: stored.sender_version })
    }
}
