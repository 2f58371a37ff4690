//! Groups: membership and profile changes, each followed by the members' contact entries
//! (groups sit in their members' contact lists, as WeChat's chat rooms did) and a system
//! message in the group.
//!
//! Under `group-invites accept` nobody is put into a group: each user named gets an
//! invitation (a GROUP_INVITATION message, see `invitation.rs`) and joins by accepting it.
//!
//! A change holds the group's lock exclusively (sends hold it shared), reads the group, lets
//! a rule decide, and writes the group under its next revision: the store refuses a write
//! whose revision another logic node took first, and the change is then decided again.

use crate::invitation::Invitation;
use crate::limits::{Limit, key_of};
use crate::{Audience, GroupInvites, Logic, validate};
use missive_proto::client::group_event::Action;
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{
    CreateGroupRequest, GroupMemberRecord, GroupRecord, GroupRef, GroupState, UserRef,
    WriteGroupRequest,
};
use missive_rpc::{Code, Ctx, Status};

pub const GROUP_NAME_CHARS_MAX: usize = 64;
pub const ANNOUNCEMENT_BYTES_MAX: usize = 2048;
/// How long an invitation may be accepted.
pub const INVITATION_TTL_MS: i64 = 7 * 86_400_000;

/// What a rule decided: the group's new profile and membership, and the event to tell.
struct Change {
    group: GroupRecord,
    upsert: Vec<GroupMemberRecord>,
    remove: Vec<u64>,
    event: GroupEvent,
}

fn role(member: &GroupMemberRecord) -> GroupRole {
    GroupRole::try_from(member.role).unwrap_or(GroupRole::None)
}

fn record(state: &GroupState) -> &GroupRecord {
    state.group.as_ref().expect("stores return a group with its state")
}

/// The membership of a user who joins at `now` in `role`.
fn joining(user_id: u64, role: GroupRole, now: i64) -> GroupMemberRecord {
    GroupMemberRecord { user_id, role: role as i32, joined_at_ms: now }
}

fn event(action: Action, actor: u64, targets: Vec<u64>, value: String) -> GroupEvent {
    GroupEvent { action: action as i32, actor_id: actor, target_ids: targets, value }
}

/// Distinct ids, in the order given.
fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

impl Logic {
    pub(crate) async fn load_group(&self, ctx: &Ctx, group_id: u64) -> Result<GroupState, Status> {
        if !ids::is_group(group_id) {
            return Err(Status::not_found("no such group"));
        }
        self.deps
            .groups
            .get(ctx, GroupRef { group_id })
            .await
            .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such group")))
    }

    /// The user's role, or NOT_MEMBER (also for everyone once the group is dissolved).
    pub(crate) fn role_in(state: &GroupState, user_id: u64) -> Result<GroupRole, Status> {
        if record(state).dissolved {
            return Err(Status::new(Code::NotMember, "the group was dissolved"));
        }
        state
            .members
            .iter()
            .find(|m| m.user_id == user_id)
            .map(role)
            .ok_or_else(|| Status::new(Code::NotMember, "you are not a member of this group"))
    }

    /// A user's contact entry for the group: a member's, or (role NONE) a former member's.
    fn group_entry(state: &GroupState, user_id: u64) -> Contact {
        let group = record(state);
        let my_role =
            state.members.iter().find(|m| m.user_id == user_id).map_or(GroupRole::None, role);
        let admin_ids = state
            .members
            .iter()
            .filter(|m| role(m) == GroupRole::Admin)
            .map(|m| m.user_id)
            .collect();
        Contact {
            user_id: group.group_id,
            username: ids::group_handle(group.group_id),
            nickname: group.name.clone(),
            is_group: true,
            relation: if my_role == GroupRole::None { Relation::None } else { Relation::Member }
                as i32,
            group: Some(GroupProfile {
                announcement: group.announcement.clone(),
                owner_id: group.owner_id,
                admin_ids,
                role: my_role as i32,
                dissolved: group.dissolved,
            }),
            ..Contact::default()
        }
    }

    /// The group as clients see it, members named.
    pub(crate) async fn group_view(&self, ctx: &Ctx, state: &GroupState) -> Result<Group, Status> {
        let group = record(state);
        // The members' accounts are read at once: over RPC or SQL, each read is a round trip.
        let members =
            futures_util::future::try_join_all(state.members.iter().map(|member| async {
                let account =
                    self.deps.accounts.get_by_id(ctx, UserRef { user_id: member.user_id });
                let account = account.await?;
                Ok::<_, Status>(GroupMember {
                    user_id: member.user_id,
                    username: account.username,
                    nickname: account.nickname,
                    role: member.role,
                    joined_at_ms: member.joined_at_ms,
                })
            }))
            .await?;
        Ok(Group {
            group_id: group.group_id,
            handle: ids::group_handle(group.group_id),
            name: group.name.clone(),
            announcement: group.announcement.clone(),
            owner_id: group.owner_id,
            created_at_ms: group.created_at_ms,
            member_limit: self.config.group_members_max as u32,
            members,
        })
    }

    /// Users who may join: existing, not members yet, who have not blocked the actor and (by
    /// default) are the actor's friends: nobody is put into a stranger's group.
    async fn joiners(
        &self,
        ctx: &Ctx,
        actor: u64,
        user_ids: &[u64],
        state: Option<&GroupState>,
    ) -> Result<Vec<u64>, Status> {
        let candidates: Vec<u64> = distinct(user_ids)
            .into_iter()
            .filter(|&user_id| {
                user_id != actor
                    && !state.is_some_and(|s| s.members.iter().any(|m| m.user_id == user_id))
            })
            .collect();
        if candidates.iter().any(|&user_id| ids::is_group(user_id)) {
            return Err(Status::invalid_argument("a group cannot join a group"));
        }
        // Checked at once, each a round trip or two over RPC or SQL.
        futures_util::future::try_join_all(candidates.iter().map(|&user_id| async move {
            self.username_of(ctx, user_id).await.map_err(|s| {
                s.translate(Code::NotFound, || Status::not_found(format!("no such user {user_id}")))
            })?;
            let theirs = self.entry_of(ctx, user_id, actor).await?.unwrap_or_default();
            if theirs.blocked {
                return Err(Status::new(Code::Blocked, format!("user {user_id} has blocked you")));
            }
            if self.config.group_invites == GroupInvites::Add(Audience::Friends)
                && crate::contact::relation(&theirs) != Relation::Friend
            {
                return Err(Status::new(
                    Code::NotFriends,
                    format!("user {user_id} is not your friend; only friends join your groups"),
                ));
            }
            Ok(())
        }))
        .await?;
        Ok(candidates)
    }

    fn check_size(&self, members: usize) -> Result<(), Status> {
        if members > self.config.group_members_max {
            return Err(Status::new(
                Code::LimitExceeded,
                format!("a group holds at most {} members", self.config.group_members_max),
            ));
        }
        Ok(())
    }

    /// The text of a system message: what happened, by whom, in words.
    async fn describe(&self, ctx: &Ctx, event: &GroupEvent) -> Result<String, Status> {
        let actor = self.nickname_of(ctx, event.actor_id).await?;
        let action = Action::try_from(event.action).unwrap_or(Action::Unspecified);
        // Only the texts that name them read the targets' nicknames (a new group's 499
        // members are in its event, not in its text).
        let named = matches!(
            action,
            Action::Invited
                | Action::Joined
                | Action::Removed
                | Action::AdminAdded
                | Action::AdminRemoved
                | Action::OwnerChanged
        );
        let targets = futures_util::future::try_join_all(
            event.target_ids.iter().filter(|_| named).map(|&id| self.nickname_of(ctx, id)),
        )
        .await?
        .join(", ");
        let value = &event.value;
        Ok(match action {
            Action::Created => format!("{actor} created the group \"{value}\""),
            Action::Invited => format!("{actor} invited {targets}"),
            Action::Removed => format!("{actor} removed {targets}"),
            Action::Left => format!("{actor} left the group"),
            Action::Renamed => format!("{actor} renamed the group to \"{value}\""),
            Action::Announcement if value.is_empty() => format!("{actor} cleared the announcement"),
            Action::Announcement => format!("{actor} set the announcement: {value}"),
            Action::AdminAdded => format!("{actor} made {targets} an admin"),
            Action::AdminRemoved => format!("{actor} removed {targets} as admin"),
            Action::OwnerChanged => format!("{actor} transferred ownership to {targets}"),
            Action::Dissolved => format!("{actor} dissolved the group"),
            Action::Joined => format!("{actor} joined the group, invited by {targets}"),
            Action::Unspecified => format!("{actor} changed the group"),
        })
    }

    /// After a change: the contact entries of `owners`, then the system message to the
    /// members and to `also` (those who just left or were removed, so that they learn it).
    async fn announce(
        &self,
        ctx: &Ctx,
        state: &GroupState,
        owners: Vec<u64>,
        event: GroupEvent,
        also: &[u64],
    ) -> Result<(), Status> {
        let entries: Vec<(u64, Contact)> =
            owners.iter().map(|&owner| (owner, Self::group_entry(state, owner))).collect();
        let guards = self.locks.lock(&owners).await;
        let written = self.commit_contacts(ctx, entries).await?;
        drop(guards);
        self.contacts_changed(ctx, &written).await;
        let group = record(state);
        let mut audience: Vec<u64> = state.members.iter().map(|m| m.user_id).collect();
        audience.extend(also.iter().filter(|u| !audience.contains(u)).collect::<Vec<_>>());
        let notice = Message {
            to_user_id: group.group_id,
            to: ids::group_handle(group.group_id),
            group_id: group.group_id,
            kind: MessageKind::System as i32,
            text: self.describe(ctx, &event).await?,
            sent_at_ms: self.now_ms(),
            client_msg_id: format!("group:{}:{}", group.group_id, group.revision),
            event: Some(event),
            ..Message::default()
        };
        self.deliver(ctx, notice, &audience).await?;
        Ok(())
    }

    /// Runs one change of an existing group: decide, write (deciding again if another node
    /// wrote first), then announce to the users whose contact entry for the group differs
    /// from before (members who joined or left, everyone when the profile or the admins
    /// changed). The group's lock is released before its members are named for the answer.
    async fn change_group<F>(
        &self,
        ctx: &Ctx,
        group_id: u64,
        decide: F,
    ) -> Result<GroupResponse, Status>
    where
        F: Fn(&GroupState, u64) -> Result<Change, Status>,
    {
        let actor = ctx.caller()?.user_id;
        let exclusive = self.group_locks.change(group_id).await;
        let mut attempt = 0;
        let (before, state, event, removed) = loop {
            let before = self.load_group(ctx, group_id).await?;
            let Change { mut group, upsert, remove, event } = decide(&before, actor)?;
            group.revision = record(&before).revision + 1;
            let write = WriteGroupRequest { group: Some(group), upsert, remove: remove.clone() };
            match self.deps.groups.write(ctx, write).await {
                Ok(state) => break (before, state, event, remove),
                Err(status) if self.retry_after(ctx, &status, attempt) => attempt += 1,
                Err(status) => return Err(status),
            }
        };
        let mut concerned: Vec<u64> = before.members.iter().map(|m| m.user_id).collect();
        concerned.extend(state.members.iter().map(|m| m.user_id));
        let concerned = distinct(&concerned);
        let owners = concerned
            .into_iter()
            .filter(|&user| Self::group_entry(&before, user) != Self::group_entry(&state, user))
            .collect();
        self.announce(ctx, &state, owners, event, &removed).await?;
        drop(exclusive);
        metrics::counter!("missive_group_changes_total").increment(1);
        Ok(GroupResponse { group: Some(self.group_view(ctx, &state).await?) })
    }

    pub(crate) async fn group_create(
        &self,
        ctx: &Ctx,
        req: GroupCreateRequest,
    ) -> Result<GroupResponse, Status> {
        let actor = ctx.caller()?.user_id;
        let name = group_name(&req.name)?;
        let adds = u32::try_from(req.member_ids.len()).unwrap_or(u32::MAX);
        self.limit(Limit::GroupAdds, key_of(actor), adds).await?;
        let joiners = self.joiners(ctx, actor, &req.member_ids, None).await?;
        self.check_size(joiners.len() + 1)?;
        let now = self.now_ms();
        let mut members = vec![joining(actor, GroupRole::Owner, now)];
        let accept = self.config.group_invites == GroupInvites::Accept;
        let (joiners, invitees) =
            if accept { (Vec::new(), joiners) } else { (joiners, Vec::new()) };
        members.extend(joiners.iter().map(|&u| joining(u, GroupRole::Member, now)));
        let group = GroupRecord {
            name: name.clone(),
            owner_id: actor,
            created_at_ms: now,
            ..GroupRecord::default()
        };
        let create = CreateGroupRequest { group: Some(group), members };
        let state = self.deps.groups.create(ctx, create).await?;
        let owners = state.members.iter().map(|m| m.user_id).collect();
        self.announce(ctx, &state, owners, event(Action::Created, actor, joiners, name), &[])
            .await?;
        self.invite(ctx, &state, actor, &invitees).await?;
        metrics::counter!("missive_groups_created_total").increment(1);
        Ok(GroupResponse { group: Some(self.group_view(ctx, &state).await?) })
    }

    pub(crate) async fn group_invite(
        &self,
        ctx: &Ctx,
        req: GroupInviteRequest,
    ) -> Result<GroupResponse, Status> {
        let actor = ctx.caller()?.user_id;
        let before = self.load_group(ctx, req.group_id).await?;
        Self::role_in(&before, actor)?;
        let adds = u32::try_from(req.user_ids.len()).unwrap_or(u32::MAX);
        self.limit(Limit::GroupAdds, key_of(actor), adds).await?;
        let joiners = self.joiners(ctx, actor, &req.user_ids, Some(&before)).await?;
        if joiners.is_empty() {
            return Err(Status::invalid_argument("nobody to invite: all are members already"));
        }
        if self.config.group_invites == GroupInvites::Accept {
            self.invite(ctx, &before, actor, &joiners).await?;
            return Ok(GroupResponse { group: Some(self.group_view(ctx, &before).await?) });
        }
        let now = self.now_ms();
        self.change_group(ctx, req.group_id, |state, actor| {
            Self::role_in(state, actor)?;
            let new: Vec<u64> = joiners
                .iter()
                .copied()
                .filter(|u| !state.members.iter().any(|m| m.user_id == *u))
                .collect();
            self.check_size(state.members.len() + new.len())?;
            Ok(Change {
                group: record(state).clone(),
                upsert: new
                    .iter()
                    .map(|&user_id| joining(user_id, GroupRole::Member, now))
                    .collect(),
                remove: Vec::new(),
                event: event(Action::Invited, actor, new.clone(), String::new()),
            })
        })
        .await
    }

    pub(crate) async fn group_remove(
        &self,
        ctx: &Ctx,
        req: GroupRemoveRequest,
    ) -> Result<GroupResponse, Status> {
        let targets = distinct(&req.user_ids);
        if targets.is_empty() {
            return Err(Status::invalid_argument("name the members to remove"));
        }
        self.change_group(ctx, req.group_id, |state, actor| {
            let actor_role = Self::role_in(state, actor)?;
            for target in &targets {
                let target_role =
                    state.members.iter().find(|m| m.user_id == *target).map(role).ok_or_else(
                        || Status::invalid_argument(format!("user {target} is not a member")),
                    )?;
                let allowed = match actor_role {
                    GroupRole::Owner => target_role != GroupRole::Owner,
                    GroupRole::Admin => target_role == GroupRole::Member,
                    _ => false,
                };
                if !allowed {
                    return Err(Status::new(
                        Code::PermissionDenied,
                        "the owner removes anyone, an admin removes members",
                    ));
                }
            }
            Ok(Change {
                group: record(state).clone(),
                upsert: Vec::new(),
                remove: targets.clone(),
                event: event(Action::Removed, actor, targets.clone(), String::new()),
            })
        })
        .await
    }

    pub(crate) async fn group_leave(
        &self,
        ctx: &Ctx,
        req: GroupLeaveRequest,
    ) -> Result<GroupResponse, Status> {
        self.change_group(ctx, req.group_id, |state, actor| {
            if Self::role_in(state, actor)? == GroupRole::Owner {
                return Err(Status::new(
                    Code::FailedPrecondition,
                    "the owner must transfer ownership or dissolve the group",
                ));
            }
            Ok(Change {
                group: record(state).clone(),
                upsert: Vec::new(),
                remove: vec![actor],
                event: event(Action::Left, actor, Vec::new(), String::new()),
            })
        })
        .await
    }

    pub(crate) async fn group_update(
        &self,
        ctx: &Ctx,
        req: GroupUpdateRequest,
    ) -> Result<GroupResponse, Status> {
        let name = req.name.as_deref().map(group_name).transpose()?;
        let announcement = req.announcement.clone();
        if let Some(announcement) = &announcement {
            validate::plain_text("announcement", announcement, ANNOUNCEMENT_BYTES_MAX)?;
        }
        let (action, value) = match (&name, &announcement) {
            (Some(name), None) => (Action::Renamed, name.clone()),
            (None, Some(announcement)) => (Action::Announcement, announcement.clone()),
            _ => return Err(Status::invalid_argument("give either a name or an announcement")),
        };
        self.change_group(ctx, req.group_id, |state, actor| {
            if !matches!(Self::role_in(state, actor)?, GroupRole::Owner | GroupRole::Admin) {
                return Err(Status::new(
                    Code::PermissionDenied,
                    "only the owner and admins may do this",
                ));
            }
            let mut group = record(state).clone();
            match action {
                Action::Renamed => group.name = value.clone(),
                _ => group.announcement = value.clone(),
            }
            Ok(Change {
                group,
                upsert: Vec::new(),
                remove: Vec::new(),
                event: event(action, actor, Vec::new(), value.clone()),
            })
        })
        .await
    }

    pub(crate) async fn group_set_admin(
        &self,
        ctx: &Ctx,
        req: GroupSetAdminRequest,
    ) -> Result<GroupResponse, Status> {
        self.change_group(ctx, req.group_id, |state, actor| {
            owner_only(state, actor)?;
            let mut target = member_record(state, req.user_id)?;
            if role(&target) == GroupRole::Owner {
                return Err(Status::invalid_argument("the owner is not an admin"));
            }
            let (new_role, action) = if req.admin {
                (GroupRole::Admin, Action::AdminAdded)
            } else {
                (GroupRole::Member, Action::AdminRemoved)
            };
            target.role = new_role as i32;
            Ok(Change {
                group: record(state).clone(),
                upsert: vec![target],
                remove: Vec::new(),
                event: event(action, actor, vec![req.user_id], String::new()),
            })
        })
        .await
    }

    pub(crate) async fn group_transfer(
        &self,
        ctx: &Ctx,
        req: GroupTransferRequest,
    ) -> Result<GroupResponse, Status> {
        self.change_group(ctx, req.group_id, |state, actor| {
            owner_only(state, actor)?;
            if req.user_id == actor {
                return Err(Status::invalid_argument("you own the group already"));
            }
            let mut heir = member_record(state, req.user_id)?;
            let mut former = state
                .members
                .iter()
                .find(|m| m.user_id == actor)
                .cloned()
                .expect("the actor is a member");
            heir.role = GroupRole::Owner as i32;
            former.role = GroupRole::Admin as i32;
            let mut group = record(state).clone();
            group.owner_id = req.user_id;
            Ok(Change {
                group,
                upsert: vec![heir, former],
                remove: Vec::new(),
                event: event(Action::OwnerChanged, actor, vec![req.user_id], String::new()),
            })
        })
        .await
    }

    pub(crate) async fn group_dissolve(
        &self,
        ctx: &Ctx,
        req: GroupDissolveRequest,
    ) -> Result<GroupResponse, Status> {
        self.change_group(ctx, req.group_id, |state, actor| {
            owner_only(state, actor)?;
            let mut group = record(state).clone();
            group.dissolved = true;
            let everyone: Vec<u64> = state.members.iter().map(|m| m.user_id).collect();
            Ok(Change {
                group,
                upsert: Vec::new(),
                remove: everyone,
                event: event(Action::Dissolved, actor, Vec::new(), String::new()),
            })
        })
        .await
    }

    /// Sends each of `invitees` an invitation from `inviter` into the group, as a 1:1
    /// GROUP_INVITATION message that the inviter's devices see too.
    async fn invite(
        &self,
        ctx: &Ctx,
        state: &GroupState,
        inviter: u64,
        invitees: &[u64],
    ) -> Result<(), Status> {
        if invitees.is_empty() {
            return Ok(());
        }
        let group = record(state);
        let from = self.username_of(ctx, inviter).await?;
        let nickname = self.nickname_of(ctx, inviter).await?;
        let now = self.now_ms();
        futures_util::future::try_join_all(invitees.iter().map(|&invitee| {
            let (from, nickname) = (from.clone(), nickname.clone());
            async move {
                let invitation = Invitation {
                    group_id: group.group_id,
                    user_id: invitee,
                    inviter_id: inviter,
                    expires_at_ms: now + INVITATION_TTL_MS,
                };
                let message = Message {
                    from_user_id: inviter,
                    from,
                    from_nickname: nickname.clone(),
                    to_user_id: invitee,
                    to: self.username_of(ctx, invitee).await?,
                    kind: MessageKind::GroupInvitation as i32,
                    text: format!("{nickname} invited you to the group \"{}\"", group.name),
                    sent_at_ms: now,
                    client_msg_id: format!("invite:{}:{}:{now}", group.group_id, invitee),
                    event: Some(event(Action::Invited, inviter, vec![invitee], group.name.clone())),
                    invitation: self.invitations.seal(&invitation),
                    ..Message::default()
                };
                self.deliver(ctx, message, &[inviter, invitee]).await
            }
        }))
        .await?;
        metrics::counter!("missive_group_invitations_total").increment(invitees.len() as u64);
        Ok(())
    }

    /// Accepts an invitation: the caller joins, if it is theirs, unexpired, and its inviter
    /// is still a member. Accepting again, once a member, changes nothing.
    pub(crate) async fn group_join(
        &self,
        ctx: &Ctx,
        req: GroupJoinRequest,
    ) -> Result<GroupResponse, Status> {
        let actor = ctx.caller()?.user_id;
        let invitation = self
            .invitations
            .open(&req.invitation)
            .ok_or_else(|| Status::invalid_argument("not an invitation of this server"))?;
        if invitation.user_id != actor {
            return Err(Status::new(Code::PermissionDenied, "this invitation is someone else's"));
        }
        let now = self.now_ms();
        if now >= invitation.expires_at_ms {
            return Err(Status::new(Code::TooLate, "the invitation has expired"));
        }
        let joined = self.change_group(ctx, invitation.group_id, |state, actor| {
            if Self::role_in(state, actor).is_ok() {
                return Err(Status::new(Code::AlreadyExists, "already a member"));
            }
            if Self::role_in(state, invitation.inviter_id).is_err() {
                return Err(Status::new(
                    Code::PermissionDenied,
                    "the invitation ended: its inviter is no longer in the group",
                ));
            }
            self.check_size(state.members.len() + 1)?;
            Ok(Change {
                group: record(state).clone(),
                upsert: vec![joining(actor, GroupRole::Member, now)],
                remove: Vec::new(),
                event: event(Action::Joined, actor, vec![invitation.inviter_id], String::new()),
            })
        });
        match joined.await {
            // Accepted before: the group as it is.
            Err(status) if status.code == Code::AlreadyExists => {
                let current = self.load_group(ctx, invitation.group_id).await?;
                Ok(GroupResponse { group: Some(self.group_view(ctx, &current).await?) })
            }
            answer => answer,
        }
    }

    pub(crate) async fn group_info(
        &self,
        ctx: &Ctx,
        req: GroupInfoRequest,
    ) -> Result<GroupResponse, Status> {
        let actor = ctx.caller()?.user_id;
        let state = self.load_group(ctx, req.group_id).await?;
        Self::role_in(&state, actor)?;
        Ok(GroupResponse { group: Some(self.group_view(ctx, &state).await?) })
    }
}

/// A member's record, or INVALID_ARGUMENT naming a non-member.
fn member_record(state: &GroupState, user_id: u64) -> Result<GroupMemberRecord, Status> {
    state
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .cloned()
        .ok_or_else(|| Status::invalid_argument("that user is not a member"))
}

fn owner_only(state: &GroupState, actor: u64) -> Result<(), Status> {
    if Logic::role_in(state, actor)? != GroupRole::Owner {
        return Err(Status::new(Code::PermissionDenied, "only the owner may do this"));
    }
    Ok(())
}

fn group_name(name: &str) -> Result<String, Status> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Status::invalid_argument("a group needs a name"));
    }
    validate::display_name("group name", name, GROUP_NAME_CHARS_MAX)?;
    Ok(name.to_string())
}
