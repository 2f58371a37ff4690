//! Contacts (data type 2): friend requests, friendships, blocking and remarks, and the rule of
//! who may send whom a 1:1 message.
//!
//! An entry is the owner's view of one peer, written whole under the owner's next version;
//! sync delivers an entry's current state each time it changes. A change that concerns both
//! users (a request, an acceptance, a removal) writes both entries under both users' locks,
//! after reading them under those locks.

use crate::{Audience, Logic, validate};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{ContactRecord, ContactRef, InboxEntry, PutContactsRequest, UserRef};
use missive_rpc::{Code, Ctx, Status};

pub const GREETING_BYTES_MAX: usize = 256;
pub const REMARK_CHARS_MAX: usize = 64;

pub(crate) fn relation(contact: &Contact) -> Relation {
    Relation::try_from(contact.relation).unwrap_or(Relation::None)
}

impl Logic {
    /// The user a contact command names: by id, or by username when the id is 0.
    pub(crate) async fn peer_of(
        &self,
        ctx: &Ctx,
        user_id: u64,
        username: &str,
    ) -> Result<u64, Status> {
        let caller = ctx.caller()?;
        let peer = if user_id != 0 {
            user_id
        } else if !username.is_empty() {
            self.user_id_of(ctx, username).await?
        } else {
            return Err(Status::invalid_argument("user_id or username is required"));
        };
        if ids::is_group(peer) {
            return Err(Status::invalid_argument("a group is not a user"));
        }
        if peer == caller.user_id {
            return Err(Status::invalid_argument("that is yourself"));
        }
        self.username_of(ctx, peer)
            .await
            .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user")))?;
        Ok(peer)
    }

    /// `owner`'s entry for `peer`, if there is one.
    pub(crate) async fn entry_of(
        &self,
        ctx: &Ctx,
        owner_id: u64,
        peer_id: u64,
    ) -> Result<Option<Contact>, Status> {
        match self.deps.contacts.get(ctx, ContactRef { owner_id, peer_id }).await {
            Ok(record) => Ok(record.contact),
            Err(status) if status.code == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// `owner`'s entry for the user `peer`, as it stands (or a fresh one), with the peer's
    /// current names.
    pub(crate) async fn user_entry(
        &self,
        ctx: &Ctx,
        owner_id: u64,
        peer_id: u64,
    ) -> Result<Contact, Status> {
        let account = self.deps.accounts.get_by_id(ctx, UserRef { user_id: peer_id }).await?;
        let mut entry = self.entry_of(ctx, owner_id, peer_id).await?.unwrap_or_default();
        entry.user_id = peer_id;
        entry.username = account.username;
        entry.nickname = account.nickname;
        entry.is_group = false;
        Ok(entry)
    }

    /// Writes entries (one per owner) under the owners' next versions, the caller holding
    /// their locks; returns the entries written, in order, for [`Logic::contacts_changed`]
    /// once the locks are released.
    pub(crate) async fn commit_contacts(
        &self,
        ctx: &Ctx,
        changes: Vec<(u64, Contact)>,
    ) -> Result<Vec<InboxEntry>, Status> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let owners: Vec<u64> = changes.iter().map(|(owner, _)| *owner).collect();
        let (_, entries) = self
            .write_versioned_locked(ctx, &owners, |entries| {
                let records = entries
                    .iter()
                    .zip(&changes)
                    .map(|(entry, (owner_id, contact))| ContactRecord {
                        owner_id: *owner_id,
                        version: entry.version,
                        contact: Some(contact.clone()),
                    })
                    .collect();
                self.deps.contacts.put(ctx, PutContactsRequest { records })
            })
            .await?;
        metrics::counter!("missive_contact_changes_total").increment(entries.len() as u64);
        Ok(entries)
    }

    /// Tells the owners' devices (all but the calling one) of contact entries written.
    pub(crate) async fn contacts_changed(&self, ctx: &Ctx, entries: &[InboxEntry]) {
        self.notify_written(ctx, entries, DataType::Contact).await;
    }

    /// Reads both users' entries under both locks, lets `decide` change them, and writes the
    /// ones it changed. Answers with the caller's entry.
    async fn change_pair<F>(
        &self,
        ctx: &Ctx,
        peer: u64,
        decide: F,
    ) -> Result<ContactResponse, Status>
    where
        F: FnOnce(&mut Contact, &mut Contact) -> Result<(), Status>,
    {
        let me = ctx.caller()?.user_id;
        let guards = self.locks.lock(&[me, peer]).await;
        let mine = self.user_entry(ctx, me, peer).await?;
        let theirs = self.user_entry(ctx, peer, me).await?;
        let (mut new_mine, mut new_theirs) = (mine.clone(), theirs.clone());
        decide(&mut new_mine, &mut new_theirs)?;
        let mine_changed = new_mine != mine;
        let mut changes = Vec::new();
        if mine_changed {
            changes.push((me, new_mine.clone()));
        }
        if new_theirs != theirs {
            changes.push((peer, new_theirs));
        }
        let written = self.commit_contacts(ctx, changes).await?;
        drop(guards);
        self.contacts_changed(ctx, &written).await;
        let version = if mine_changed { written[0].version } else { 0 };
        Ok(ContactResponse { contact: Some(new_mine), version })
    }

    pub(crate) async fn friend_request(
        &self,
        ctx: &Ctx,
        req: FriendRequestRequest,
    ) -> Result<ContactResponse, Status> {
        let peer = self.peer_of(ctx, req.user_id, &req.username).await?;
        let greeting = req.greeting;
        validate::plain_text("greeting", &greeting, GREETING_BYTES_MAX)?;
        let answer = self
            .change_pair(ctx, peer, |mine, theirs| {
                if theirs.blocked {
                    return Err(blocked());
                }
                if mine.blocked {
                    return Err(Status::new(
                        Code::FailedPrecondition,
                        "you blocked this user; unblock first",
                    ));
                }
                match relation(mine) {
                    Relation::Friend => {}
                    // They asked first: asking back is accepting.
                    Relation::RequestReceived => befriend(mine, theirs),
                    _ => {
                        mine.relation = Relation::RequestSent as i32;
                        theirs.relation = Relation::RequestReceived as i32;
                        theirs.greeting = greeting;
                    }
                }
                Ok(())
            })
            .await?;
        let asked = answer.contact.as_ref().is_some_and(|c| relation(c) == Relation::RequestSent);
        if asked && self.deps.offline_push.is_some() {
            let offline = self.deps.push.presence(ctx, UserRef { user_id: peer }).await;
            if offline.is_ok_and(|p| !p.online) {
                let requester = self.nickname_of(ctx, ctx.caller()?.user_id).await?;
                self.push_offline(&[peer], || crate::push::PushEvent::FriendRequest {
                    requester: requester.clone(),
                });
            }
        }
        Ok(answer)
    }

    pub(crate) async fn friend_respond(
        &self,
        ctx: &Ctx,
        req: FriendRespondRequest,
    ) -> Result<ContactResponse, Status> {
        let peer = self.peer_of(ctx, req.user_id, &req.username).await?;
        let accept = req.accept;
        self.change_pair(ctx, peer, |mine, theirs| {
            if relation(mine) != Relation::RequestReceived {
                return Err(Status::new(
                    Code::FailedPrecondition,
                    "no friend request from that user",
                ));
            }
            if accept {
                befriend(mine, theirs);
            } else {
                forget(mine);
                if relation(theirs) == Relation::RequestSent {
                    forget(theirs);
                }
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn friend_remove(
        &self,
        ctx: &Ctx,
        req: FriendRemoveRequest,
    ) -> Result<ContactResponse, Status> {
        let peer = self.peer_of(ctx, req.user_id, &req.username).await?;
        self.change_pair(ctx, peer, |mine, theirs| {
            let pending_or_friends = |c: &Contact| {
                matches!(
                    relation(c),
                    Relation::Friend | Relation::RequestSent | Relation::RequestReceived
                )
            };
            if pending_or_friends(mine) {
                forget(mine);
            }
            if pending_or_friends(theirs) {
                forget(theirs);
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_blocked(
        &self,
        ctx: &Ctx,
        req: SetBlockedRequest,
    ) -> Result<ContactResponse, Status> {
        let peer = self.peer_of(ctx, req.user_id, &req.username).await?;
        let blocked = req.blocked;
        self.change_pair(ctx, peer, |mine, _| {
            mine.blocked = blocked;
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_remark(
        &self,
        ctx: &Ctx,
        req: SetRemarkRequest,
    ) -> Result<ContactResponse, Status> {
        let peer = self.peer_of(ctx, req.user_id, &req.username).await?;
        let remark = req.remark;
        validate::display_name("remark", &remark, REMARK_CHARS_MAX)?;
        self.change_pair(ctx, peer, |mine, _| {
            if relation(mine) == Relation::None {
                return Err(Status::new(Code::FailedPrecondition, "not a contact"));
            }
            mine.remark = remark;
            Ok(())
        })
        .await
    }

    pub(crate) async fn list_contacts(
        &self,
        ctx: &Ctx,
        _: ListContactsRequest,
    ) -> Result<ListContactsResponse, Status> {
        let caller = ctx.caller()?;
        let list = self.deps.contacts.list(ctx, UserRef { user_id: caller.user_id }).await?;
        let contacts = list.records.into_iter().filter_map(|r| r.contact).collect();
        Ok(ListContactsResponse { contacts })
    }

    /// The rule for a 1:1 message from `from` to `to`: refused when `to` blocked `from`, and
    /// under the friends-only policy unless they are friends.
    pub(crate) async fn check_direct(&self, ctx: &Ctx, from: u64, to: u64) -> Result<(), Status> {
        if from == to {
            return Ok(());
        }
        let theirs = self.entry_of(ctx, to, from).await?.unwrap_or_default();
        if theirs.blocked {
            return Err(blocked());
        }
        if self.config.direct_messages == Audience::Friends && relation(&theirs) != Relation::Friend
        {
            return Err(Status::new(
                Code::NotFriends,
                "this user accepts messages from friends only; send a friend request",
            ));
        }
        Ok(())
    }
}

fn blocked() -> Status {
    Status::new(Code::Blocked, "this user has blocked you")
}

fn befriend(mine: &mut Contact, theirs: &mut Contact) {
    for entry in [mine, theirs] {
        entry.relation = Relation::Friend as i32;
        entry.greeting.clear();
    }
}

fn forget(entry: &mut Contact) {
    entry.relation = Relation::None as i32;
    entry.greeting.clear();
    entry.remark.clear();
}
