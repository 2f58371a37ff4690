//! Send: a 1:1 message made durable in both inboxes before the sender hears back, then a
//! notify to every other online device concerned.

use crate::{Logic, validate};
use missive_proto::client::*;
use missive_proto::internal::{AppendRequest, NotifyTarget, UserRef, UsernameRef};
use missive_rpc::{Code, Ctx, Status};
use std::collections::HashMap;
use std::sync::Mutex;

/// Usernames cached at most; usernames never change, so entries never go stale.
const NAMES_CACHED_MAX: usize = 200_000;

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

impl Logic {
    async fn username_of(&self, ctx: &Ctx, user_id: u64) -> Result<String, Status> {
        if let Some(name) = self.names.by_id.lock().expect("name cache").get(&user_id) {
            return Ok(name.clone());
        }
        let account = self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await?;
        self.names.remember(account.user_id, &account.username);
        Ok(account.username)
    }

    async fn user_id_of(&self, ctx: &Ctx, username: &str) -> Result<u64, Status> {
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

    pub(crate) async fn send_message(
        &self,
        ctx: &Ctx,
        req: SendRequest,
    ) -> Result<SendResponse, Status> {
        let caller = ctx.caller()?;
        validate::client_msg_id(&req.client_msg_id)?;
        validate::text(&req.text)?;
        let kind = match MessageKind::try_from(req.kind) {
            Ok(MessageKind::Unspecified | MessageKind::Text) => MessageKind::Text,
            Err(_) => return Err(Status::invalid_argument("unknown message kind")),
        };
        let no_such_user =
            |s: Status| s.translate(Code::NotFound, || Status::not_found("no such recipient"));
        let to_user_id = if req.to_user_id != 0 {
            req.to_user_id
        } else if !req.to.is_empty() {
            self.user_id_of(ctx, &req.to).await.map_err(no_such_user)?
        } else {
            return Err(Status::invalid_argument("recipient is missing"));
        };
        let to = self.username_of(ctx, to_user_id).await.map_err(no_such_user)?;
        let from = self.username_of(ctx, caller.user_id).await?;
        let message = Message {
            id: 0,
            from_user_id: caller.user_id,
            from,
            to_user_id,
            to,
            kind: kind as i32,
            text: req.text,
            sent_at_ms: self.now_ms(),
            client_msg_id: req.client_msg_id,
        };
        let mut users = vec![caller.user_id];
        if to_user_id != caller.user_id {
            users.push(to_user_id);
        }

        let (stored, _) = self
            .write_versioned(ctx, &users, |entries| {
                let append = AppendRequest { message: Some(message.clone()), entries };
                self.deps.messages.append(ctx, append)
            })
            .await?;
        let message = stored.message.ok_or_else(|| Status::internal("append lost the message"))?;
        if !stored.duplicate {
            metrics::counter!("missive_messages_sent_total", "kind" => "text").increment(1);
            let targets = stored
                .written
                .iter()
                .map(|entry| NotifyTarget {
                    user_id: entry.user_id,
                    // The sending device learns of its own message from the answer.
                    except_device_id: if entry.user_id == caller.user_id {
                        caller.device_id
                    } else {
                        0
                    },
                    r#type: DataType::Message as i32,
                    version: entry.version,
                })
                .collect();
            self.notify(ctx, targets).await;
        }
        Ok(SendResponse {
            message_id: message.id,
            version: stored.sender_version,
            sent_at_ms: message.sent_at_ms,
            duplicate: stored.duplicate,
        })
    }
}
