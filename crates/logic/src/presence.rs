//! Typing and presence: ephemeral signals, never stored and never in the sync stream. Each is
//! pushed as an `Event` to the online version-3 long links of the users concerned, through
//! the same `Push` as notifies (so across access nodes too); a user offline misses it, which
//! is what an ephemeral signal means.
//!
//! Presence is online, or offline with the time the user was last seen. The access tier tells
//! this layer when a user's first long link on a node opens or the last closes (`Links`,
//! after a grace so that a reconnect is no news); the user's friends are then told, as far as
//! the user's privacy setting lets them see it. Anyone may ask (GET_PRESENCE), with the same
//! rule.

use crate::Logic;
use crate::auth::profile_of;
use crate::contact::relation;
use crate::limits::{Limit, key_of};
use futures_util::{StreamExt as _, TryStreamExt as _};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{
    AccountRecord, Empty, EventTarget, InboxEntry, LastSeenRequest, LinkChange, LinkChanges,
    NotifyRequest, SetVisibilityRequest, UserRef,
};
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;

/// How long a receiver shows "typing" unless the signal is repeated.
pub const TYPING_EXPIRES_MS: u32 = 6_000;
/// Users one GET_PRESENCE asks about at most.
pub const PRESENCE_USERS_MAX: usize = 200;
/// Presence changes handled at once.
const CHANGES_AT_ONCE: usize = 16;

impl Logic {
    pub(crate) async fn typing(
        &self,
        ctx: &Ctx,
        req: TypingRequest,
    ) -> Result<TypingResponse, Status> {
        let caller = ctx.caller()?;
        self.limit(Limit::Typing, key_of(caller.user_id), 1).await?;
        let to = req.conversation_id;
        let (audience, conversation_id) = if ids::is_group(to) {
            let state = self.load_group(ctx, to).await?;
            Logic::role_in(&state, caller.user_id)?;
            let members = state.members.iter().map(|m| m.user_id);
            (members.filter(|&m| m != caller.user_id).collect(), to)
        } else {
            if to == 0 || to == caller.user_id {
                return Err(Status::invalid_argument(
                    "conversation_id must name a peer or a group",
                ));
            }
            self.username_of(ctx, to)
                .await
                .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user")))?;
            self.check_direct(ctx, caller.user_id, to).await?;
            (vec![to], caller.user_id)
        };
        let typing = TypingEvent {
            conversation_id,
            user_id: caller.user_id,
            typing: req.typing,
            expires_in_ms: if req.typing { TYPING_EXPIRES_MS } else { 0 },
        };
        self.push_event(ctx, &audience, event::Body::Typing(typing)).await;
        Ok(TypingResponse {})
    }

    pub(crate) async fn set_privacy(
        &self,
        ctx: &Ctx,
        req: SetPrivacyRequest,
    ) -> Result<SetPrivacyResponse, Status> {
        let caller = ctx.caller()?;
        let visibility = PresenceVisibility::try_from(req.presence_visibility)
            .map_err(|_| Status::invalid_argument("unknown presence_visibility"))?;
        let before = self.deps.accounts.get_by_id(ctx, UserRef { user_id: caller.user_id }).await?;
        let (account, entries) = self
            .write_versioned(ctx, &[caller.user_id], |entries| {
                let request = SetVisibilityRequest {
                    user_id: caller.user_id,
                    presence_visibility: visibility as i32,
                    version: entries[0].version,
                };
                self.deps.accounts.set_visibility(ctx, request)
            })
            .await?;
        let version = entries[0].version;
        self.notify_written(
            ctx,
            &[InboxEntry { user_id: caller.user_id, version }],
            DataType::Account,
        )
        .await;
        // Friends learn at once when what they see changes: hidden from now on, or the
        // current state again.
        let nobody = PresenceVisibility::Nobody as i32;
        if (before.presence_visibility == nobody) != (account.presence_visibility == nobody) {
            let online = self.is_online(ctx, caller.user_id).await.unwrap_or(false);
            self.announce_presence(ctx, &account, online, true).await;
        }
        Ok(SetPrivacyResponse { profile: Some(profile_of(&account)), version })
    }

    pub(crate) async fn get_presence(
        &self,
        ctx: &Ctx,
        req: GetPresenceRequest,
    ) -> Result<GetPresenceResponse, Status> {
        let caller = ctx.caller()?;
        if req.user_ids.len() > PRESENCE_USERS_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {PRESENCE_USERS_MAX} users at once"
            )));
        }
        let presences = futures_util::stream::iter(req.user_ids)
            .map(|user_id| self.presence_of(ctx, user_id, caller.user_id))
            .buffered(CHANGES_AT_ONCE)
            .try_collect()
            .await?;
        Ok(GetPresenceResponse { presences })
    }

    /// What `viewer` may see of `user_id`'s presence.
    async fn presence_of(
        &self,
        ctx: &Ctx,
        user_id: u64,
        viewer: u64,
    ) -> Result<UserPresence, Status> {
        let hidden = UserPresence { user_id, ..UserPresence::default() };
        if ids::is_group(user_id) || user_id == 0 {
            return Ok(hidden);
        }
        let account = match self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await {
            Ok(account) => account,
            Err(status) if status.code == Code::NotFound => return Ok(hidden),
            Err(status) => return Err(status),
        };
        if !self.may_see_presence(ctx, &account, viewer).await? {
            return Ok(hidden);
        }
        let online = self.is_online(ctx, user_id).await?;
        Ok(state_of(&account, online))
    }

    /// Whether `viewer` may see `account`'s presence: themself always; else as the account's
    /// setting says, and never a user the account has blocked.
    async fn may_see_presence(
        &self,
        ctx: &Ctx,
        account: &AccountRecord,
        viewer: u64,
    ) -> Result<bool, Status> {
        if account.user_id == viewer {
            return Ok(true);
        }
        let visibility = PresenceVisibility::try_from(account.presence_visibility)
            .unwrap_or(PresenceVisibility::Friends);
        if visibility == PresenceVisibility::Nobody {
            return Ok(false);
        }
        let entry = self.entry_of(ctx, account.user_id, viewer).await?.unwrap_or_default();
        Ok(!entry.blocked
            && (visibility == PresenceVisibility::Everyone || relation(&entry) == Relation::Friend))
    }

    async fn is_online(&self, ctx: &Ctx, user_id: u64) -> Result<bool, Status> {
        Ok(self.deps.push.presence(ctx, UserRef { user_id }).await?.online)
    }

    /// The access tier's report of users who came online on a node or left it.
    pub(crate) async fn links_changed(&self, ctx: &Ctx, req: LinkChanges) -> Result<Empty, Status> {
        futures_util::stream::iter(req.changes)
            .for_each_concurrent(CHANGES_AT_ONCE, |change| async move {
                if let Err(status) = self.link_changed(ctx, change).await {
                    tracing::warn!(user_id = change.user_id, %status, "presence change not told");
                }
            })
            .await;
        Ok(Empty {})
    }

    async fn link_changed(&self, ctx: &Ctx, change: LinkChange) -> Result<(), Status> {
        let user_id = change.user_id;
        if !change.online {
            // Gone from one node, but maybe still on another.
            if self.is_online(ctx, user_id).await? {
                return Ok(());
            }
            let seen = LastSeenRequest { user_ids: vec![user_id], at_ms: self.now_ms() };
            self.deps.accounts.set_last_seen(ctx, seen).await?;
        }
        let account = self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await?;
        self.announce_presence(ctx, &account, change.online, false).await;
        Ok(())
    }

    /// Tells the user's friends their presence, as far as the user lets them see it: with
    /// `nobody`, only when `forced` (the setting just changed), and as hidden.
    async fn announce_presence(
        &self,
        ctx: &Ctx,
        account: &AccountRecord,
        online: bool,
        forced: bool,
    ) {
        let visibility = PresenceVisibility::try_from(account.presence_visibility)
            .unwrap_or(PresenceVisibility::Friends);
        let presence = match visibility {
            PresenceVisibility::Nobody if !forced => return,
            PresenceVisibility::Nobody => {
                UserPresence { user_id: account.user_id, ..Default::default() }
            }
            _ => state_of(account, online),
        };
        let list = match self.deps.contacts.list(ctx, UserRef { user_id: account.user_id }).await {
            Ok(list) => list,
            Err(status) => {
                tracing::warn!(user_id = account.user_id, %status, "presence: contacts unread");
                return;
            }
        };
        let friends: Vec<u64> = list
            .records
            .into_iter()
            .filter_map(|record| record.contact)
            .filter(|c| !c.is_group && !c.blocked && relation(c) == Relation::Friend)
            .map(|c| c.user_id)
            .collect();
        self.push_event(ctx, &friends, event::Body::Presence(presence)).await;
    }

    /// Pushes one event to every online version-3 link of `users`. A lost event costs
    /// nothing that matters, so failures are logged, never returned.
    async fn push_event(&self, ctx: &Ctx, users: &[u64], body: event::Body) {
        if users.is_empty() {
            return;
        }
        let kind = match &body {
            event::Body::Typing(_) => "typing",
            event::Body::Presence(_) => "presence",
        };
        let event = Event { body: Some(body) }.encode_to_vec();
        let events: Vec<EventTarget> = users
            .iter()
            .map(|&user_id| EventTarget { user_id, except_device_id: 0, event: event.clone() })
            .collect();
        let count = events.len() as u64;
        match self.deps.push.notify(ctx, NotifyRequest { events, ..Default::default() }).await {
            Ok(_) => metrics::counter!("missive_events_total", "kind" => kind).increment(count),
            Err(status) => {
                tracing::debug!(request_id = ctx.request_id, %status, "event not pushed")
            }
        }
    }
}

/// A user's presence as those allowed see it.
fn state_of(account: &AccountRecord, online: bool) -> UserPresence {
    UserPresence {
        user_id: account.user_id,
        state: if online { PresenceState::Online } else { PresenceState::Offline } as i32,
        last_seen_ms: if online { 0 } else { account.last_seen_ms },
    }
}
