//! Edits and reactions: changes to a message already delivered. Each rewrites the stored
//! message (so a device that syncs it later gets it as it now is) with a compare-and-set on
//! what was read (a racing edit or reaction, on any logic node, makes the loser read again),
//! then writes an EDIT or REACTION item into every inbox of the conversation (so devices that
//! had the message change it). On one logic node the changes of one message take turns, so
//! the compare-and-set loses only to another node.

use crate::limits::{Limit, key_of};
use crate::{Logic, compat, validate};
use missive_proto::client::*;
use missive_proto::extra;
use missive_proto::internal::{MessageRef, ReplaceMessageRequest};
use missive_rpc::{Code, Ctx, Status};

/// How many times one message may be edited.
pub const EDITS_MAX: usize = 10;
/// The longest reaction accepted.
pub const EMOJI_BYTES_MAX: usize = 32;
/// Compare-and-sets tried before ABORTED reaches the client: another logic node changing
/// the same message is the only rival, and each retry waits a little longer.
const ATTEMPTS: u32 = 8;
/// Different reactions one message may carry.
pub const REACTIONS_MAX: usize = 20;
/// How much of the reacted message a REACTION item quotes (for older clients' fallback).
const EXCERPT_CHARS_MAX: usize = 50;

impl Logic {
    pub(crate) async fn edit(&self, ctx: &Ctx, req: EditRequest) -> Result<EditResponse, Status> {
        let caller = ctx.caller()?;
        self.limit(Limit::DeviceSends, key_of((caller.user_id, caller.device_id)), 1).await?;
        self.limit(Limit::Sends, key_of(caller.user_id), 1).await?;
        validate::text(&req.text)?;
        let _turn = self.message_locks.lock(&[req.message_id]).await;
        let mut attempt = 0;
        let (original, edited, audience) = loop {
            let (original, audience) = self.conversation_of(ctx, req.message_id).await?;
            if original.from_user_id != caller.user_id {
                return Err(Status::new(Code::PermissionDenied, "only the sender may edit"));
            }
            if original.kind != MessageKind::Text as i32 || original.recalled {
                return Err(Status::invalid_argument("only texts can be edited"));
            }
            let window = self.config.edit_window.as_millis() as i64;
            let now = self.now_ms();
            if now - original.sent_at_ms > window {
                return Err(Status::new(
                    Code::TooLate,
                    format!("messages can be edited within {} s of sending", window / 1000),
                ));
            }
            if original.edit_history.len() >= EDITS_MAX {
                return Err(Status::new(
                    Code::LimitExceeded,
                    format!("a message can be edited {EDITS_MAX} times"),
                ));
            }
            let kept =
                if self.config.keep_edit_history { original.text.clone() } else { String::new() };
            let mut edited = original.clone();
            edited.text = req.text.clone();
            edited.edited_at_ms = now;
            edited.edit_history.push(EditRecord { text: kept, replaced_at_ms: now });
            match self.replace_if_unchanged(ctx, &original, edited.clone()).await {
                Ok(()) => break (original, edited, audience),
                Err(status) if status.code == Code::Aborted && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(status) => return Err(status),
            }
        };
        let notice = Message {
            text: edited.text,
            sent_at_ms: edited.edited_at_ms,
            edited_at_ms: edited.edited_at_ms,
            // One per edit: a retry of the same edit finds it and stores nothing new.
            client_msg_id: format!("edit:{}:{}", original.id, edited.edit_history.len()),
            ..crate::message::notice_about(&original, MessageKind::Edit)
        };
        let stored = self.deliver(ctx, notice, &audience).await?;
        Ok(EditResponse { version: stored.sender_version })
    }

    pub(crate) async fn react(
        &self,
        ctx: &Ctx,
        req: ReactRequest,
    ) -> Result<ReactResponse, Status> {
        let caller = ctx.caller()?;
        self.limit(Limit::DeviceSends, key_of((caller.user_id, caller.device_id)), 1).await?;
        self.limit(Limit::Sends, key_of(caller.user_id), 1).await?;
        if req.emoji.len() > EMOJI_BYTES_MAX || req.emoji.chars().any(char::is_whitespace) {
            return Err(Status::invalid_argument(format!(
                "a reaction is one emoji, at most {EMOJI_BYTES_MAX} bytes"
            )));
        }
        validate::name_characters("emoji", &req.emoji)?;
        let _turn = self.message_locks.lock(&[req.message_id]).await;
        let mut attempt = 0;
        let (original, reactions, audience) = loop {
            let (original, audience) = self.conversation_of(ctx, req.message_id).await?;
            let kind = MessageKind::try_from(original.kind).unwrap_or(MessageKind::Unspecified);
            if !matches!(kind, MessageKind::Text | MessageKind::Image | MessageKind::File)
                || original.recalled
            {
                return Err(Status::invalid_argument("reactions are for texts, images and files"));
            }
            let reactions = with_reaction(&original.reactions, caller.user_id, &req.emoji)?;
            if reactions == original.reactions {
                return Ok(ReactResponse { version: 0, reactions });
            }
            let changed = Message { reactions: reactions.clone(), ..original.clone() };
            match self.replace_if_unchanged(ctx, &original, changed).await {
                Ok(()) => break (original, reactions, audience),
                Err(status) if status.code == Code::Aborted && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(status) => return Err(status),
            }
        };
        let now = self.now_ms();
        let notice = Message {
            from_user_id: caller.user_id,
            from: self.username_of(ctx, caller.user_id).await?,
            from_nickname: self.nickname_of(ctx, caller.user_id).await?,
            to_user_id: original.to_user_id,
            to: original.to.clone(),
            group_id: original.group_id,
            kind: MessageKind::Reaction as i32,
            text: excerpt(&original),
            sent_at_ms: now,
            client_msg_id: format!("react:{}:{now}:{}", original.id, req.emoji),
            ref_message_id: original.id,
            reaction: req.emoji,
            reactions: reactions.clone(),
            ..Message::default()
        };
        let stored = self.deliver(ctx, notice, &audience).await?;
        Ok(ReactResponse { version: stored.sender_version, reactions })
    }

    /// A message of the caller's inbox and who is in its conversation now, if the caller may
    /// still write to it: a member of its group, or allowed a 1:1 message to the peer.
    async fn conversation_of(
        &self,
        ctx: &Ctx,
        message_id: u64,
    ) -> Result<(Message, Vec<u64>), Status> {
        let caller = ctx.caller()?;
        let message =
            self.deps.messages.get(ctx, MessageRef { user_id: caller.user_id, message_id }).await?;
        if message.from_user_id == 0 {
            return Err(Status::invalid_argument("an operator's notice cannot be changed"));
        }
        if message.group_id != 0 {
            let state = self.load_group(ctx, message.group_id).await?;
            Logic::role_in(&state, caller.user_id)?;
            return Ok((message, state.members.iter().map(|m| m.user_id).collect()));
        }
        let peer = if message.from_user_id == caller.user_id {
            message.to_user_id
        } else {
            message.from_user_id
        };
        self.check_direct(ctx, caller.user_id, peer).await?;
        let mut users = vec![caller.user_id];
        if peer != caller.user_id {
            users.push(peer);
        }
        Ok((message, users))
    }

    /// Replaces `original` by `changed` unless someone changed it since it was read (ABORTED).
    async fn replace_if_unchanged(
        &self,
        ctx: &Ctx,
        original: &Message,
        changed: Message,
    ) -> Result<(), Status> {
        let request = ReplaceMessageRequest {
            message: Some(changed),
            compare: true,
            expected_extra: extra::encode(original).unwrap_or_default(),
        };
        self.deps.messages.replace(ctx, request).await?;
        Ok(())
    }
}

/// A random pause of up to 2^attempt ms, so that two nodes that raced do not race again.
async fn backoff(attempt: u32) {
    let ms = rand::random_range(0..=1u64 << attempt.min(10));
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// `reactions` with `user`'s reaction replaced by `emoji` (taken back when empty); a new
/// emoji goes last.
fn with_reaction(reactions: &[Reaction], user: u64, emoji: &str) -> Result<Vec<Reaction>, Status> {
    let mut changed: Vec<Reaction> = reactions
        .iter()
        .map(|r| Reaction {
            emoji: r.emoji.clone(),
            user_ids: r.user_ids.iter().copied().filter(|&u| u != user).collect(),
        })
        .collect();
    if !emoji.is_empty() {
        match changed.iter_mut().find(|r| r.emoji == emoji) {
            Some(reaction) => reaction.user_ids.push(user),
            None => changed.push(Reaction { emoji: emoji.to_string(), user_ids: vec![user] }),
        }
    }
    changed.retain(|r| !r.user_ids.is_empty());
    if changed.len() > REACTIONS_MAX {
        return Err(Status::new(
            Code::LimitExceeded,
            format!("a message carries at most {REACTIONS_MAX} different reactions"),
        ));
    }
    // Unchanged when the user gave this very reaction already: the same order as before.
    let same = reactions.iter().any(|r| r.emoji == emoji && r.user_ids.contains(&user));
    Ok(if same { reactions.to_vec() } else { changed })
}

/// The start of a message, as a REACTION item quotes it.
fn excerpt(message: &Message) -> String {
    let fallback = compat::fallback_text(message);
    let text = if fallback.is_empty() { &message.text } else { &fallback };
    let mut excerpt: String = text.chars().take(EXCERPT_CHARS_MAX).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaction(emoji: &str, user_ids: &[u64]) -> Reaction {
        Reaction { emoji: emoji.into(), user_ids: user_ids.to_vec() }
    }

    #[test]
    fn one_reaction_per_user_replaced_or_taken_back() {
        let start = vec![reaction("👍", &[1, 2]), reaction("🎉", &[3])];
        assert_eq!(
            with_reaction(&start, 2, "🎉").unwrap(),
            [reaction("👍", &[1]), reaction("🎉", &[3, 2])]
        );
        assert_eq!(with_reaction(&start, 3, "").unwrap(), [reaction("👍", &[1, 2])]);
        assert_eq!(with_reaction(&start, 1, "👍").unwrap(), start, "the same again: unchanged");
        assert_eq!(
            with_reaction(&start, 4, "❤️").unwrap(),
            [reaction("👍", &[1, 2]), reaction("🎉", &[3]), reaction("❤️", &[4])]
        );
        let full: Vec<Reaction> =
            (0..REACTIONS_MAX as u64).map(|n| reaction(&n.to_string(), &[n])).collect();
        assert_eq!(with_reaction(&full, 99, "x").unwrap_err().code, Code::LimitExceeded);
        assert_eq!(with_reaction(&full, 0, "x").unwrap().len(), REACTIONS_MAX, "a move fits");
    }

    #[test]
    fn an_excerpt_quotes_the_start_of_the_text_or_its_fallback() {
        let long = Message { text: "a".repeat(60), ..Default::default() };
        assert_eq!(excerpt(&long), format!("{}…", "a".repeat(50)));
        let image = Message { kind: MessageKind::Image as i32, ..Default::default() };
        assert_eq!(excerpt(&image), "[Image]");
    }
}
