//! The operators' API (`missive.admin.v1.Admin`): look users and groups up, sign devices out,
//! disable accounts, send system notices, read the statistics and the audit log. Who may call
//! it is decided at the admin address, not here; what was done is recorded by the caller
//! through [`Admin::record`].

use crate::{Logic, page, validate};
use missive_proto::admin::*;
use missive_proto::client::{Message, MessageKind};
use missive_proto::internal::{
    AccountRecord, Empty, KickTarget, NotifyRequest, RevokeSessionRequest, UserRef, UsernameRef,
};
use missive_rpc::{Code, Ctx, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pages of users and audit entries hold this many by default, and at most `PAGE_MAX`.
const PAGE_DEFAULT: u32 = 100;
const PAGE_MAX: u32 = 1000;
/// Periods of statistics shown by default (a day of hours), and at most (a leap year's).
const PERIODS_DEFAULT: u32 = 24;
const PERIODS_MAX: u32 = 24 * 366;

fn summary(account: &AccountRecord) -> UserSummary {
    UserSummary {
        user_id: account.user_id,
        username: account.username.clone(),
        nickname: account.nickname.clone(),
        created_at_ms: account.created_at_ms,
        disabled: account.disabled,
    }
}

impl Logic {
    /// The user named by id, or by username when the id is 0.
    async fn user_named(
        &self,
        ctx: &Ctx,
        user_id: u64,
        username: String,
    ) -> Result<AccountRecord, Status> {
        let found = if user_id == 0 {
            self.deps.accounts.get_by_name(ctx, UsernameRef { username }).await
        } else {
            self.deps.accounts.get_by_id(ctx, UserRef { user_id }).await
        };
        found.map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user")))
    }

    /// [`user_named`](Self::user_named)'s id: the id given, or the username's through the
    /// name cache.
    async fn user_id_named(
        &self,
        ctx: &Ctx,
        user_id: u64,
        username: String,
    ) -> Result<u64, Status> {
        match user_id {
            0 => self
                .user_id_of(ctx, &username)
                .await
                .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user"))),
            id => Ok(id),
        }
    }

    /// Forgets the named device's cached sessions and closes its connections on every access
    /// node (every device's for `device_id` 0), telling them `code`.
    pub(crate) async fn sign_out(
        &self,
        ctx: &Ctx,
        user_id: u64,
        device_id: u64,
        code: Code,
        message: &str,
    ) -> Result<(), Status> {
        self.forget_sessions(user_id, (device_id != 0).then_some(device_id));
        let kick = KickTarget { user_id, device_id, code: code as u32, message: message.into() };
        self.deps.push.notify(ctx, NotifyRequest { targets: vec![], kicks: vec![kick] }).await?;
        Ok(())
    }

    /// Keeps the store's totals (and their gauges) no older than `totals_max_age` until
    /// `shutdown`: a task of its own, since counting scans tables and must not hold up the
    /// janitor's acknowledgements.
    pub async fn run_counter(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut tick =
            tokio::time::interval(self.config.totals_max_age.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(status) = self.store_totals(&Ctx::new(0)).await {
                        tracing::warn!(%status, "counting the store failed");
                    }
                }
                () = &mut shutdown => break,
            }
        }
    }

    /// What the store holds, counted at most `totals_max_age` ago.
    async fn store_totals(&self, ctx: &Ctx) -> Result<TotalsResponse, Status> {
        let cached = *self.totals.lock().expect("totals cache");
        if let Some((at, totals)) = cached
            && at.elapsed() < self.config.totals_max_age
        {
            return Ok(totals);
        }
        let counted = self.deps.ops.totals(ctx, Empty {}).await?;
        let totals = TotalsResponse { counted_at_ms: self.now_ms(), ..counted };
        *self.totals.lock().expect("totals cache") = Some((Instant::now(), totals));
        metrics::gauge!("missive_registered_users").set(totals.registered_users as f64);
        metrics::gauge!("missive_groups").set(totals.groups as f64);
        metrics::gauge!("missive_stored_messages").set(totals.messages as f64);
        metrics::gauge!("missive_inbox_entries").set(totals.inbox_entries as f64);
        Ok(totals)
    }
}

#[async_trait::async_trait]
impl Admin for Logic {
    async fn list_users(
        &self,
        ctx: &Ctx,
        req: ListUsersRequest,
    ) -> Result<ListUsersResponse, Status> {
        let limit = page(req.limit, PAGE_DEFAULT, PAGE_MAX);
        let request = ListUsersRequest { limit, ..req };
        let accounts = self.deps.accounts.list(ctx, request).await?.accounts;
        let next_after = match accounts.last() {
            Some(last) if accounts.len() == limit as usize => last.user_id,
            _ => 0,
        };
        Ok(ListUsersResponse { users: accounts.iter().map(summary).collect(), next_after })
    }

    async fn get_user(&self, ctx: &Ctx, req: GetUserRequest) -> Result<GetUserResponse, Status> {
        let account = self.user_named(ctx, req.user_id, req.username).await?;
        let user = UserRef { user_id: account.user_id };
        let sessions = self.deps.accounts.list_sessions(ctx, user).await?.sessions;
        let presence = self.deps.push.presence(ctx, user).await?;
        let devices = sessions
            .into_iter()
            .map(|s| Device {
                online: presence.device_ids.contains(&s.device_id),
                device_id: s.device_id,
                device_name: s.device_name,
                created_at_ms: s.created_at_ms,
                acked_version: s.acked_version,
                revoked: s.revoked,
            })
            .collect();
        Ok(GetUserResponse { user: Some(summary(&account)), devices, online: presence.online })
    }

    async fn kick(&self, ctx: &Ctx, req: KickRequest) -> Result<KickResponse, Status> {
        if req.device_id == 0 {
            return Err(Status::invalid_argument("name the device to sign out"));
        }
        let user_id = self.user_id_named(ctx, req.user_id, req.username).await?;
        let revoke =
            RevokeSessionRequest { user_id, device_id: req.device_id, at_ms: self.now_ms() };
        self.deps.accounts.revoke_session(ctx, revoke).await.map_err(|s| {
            s.translate(Code::NotFound, || Status::not_found("no such device signed in"))
        })?;
        self.sign_out(
            ctx,
            user_id,
            req.device_id,
            Code::Unauthenticated,
            "signed out by an operator",
        )
        .await?;
        Ok(KickResponse {})
    }

    async fn set_disabled(
        &self,
        ctx: &Ctx,
        req: SetDisabledRequest,
    ) -> Result<SetDisabledResponse, Status> {
        let user_id = self.user_id_named(ctx, req.user_id, req.username).await?;
        let request =
            missive_proto::internal::SetDisabledRequest { user_id, disabled: req.disabled };
        let account = self
            .deps
            .accounts
            .set_disabled(ctx, request)
            .await
            .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user")))?;
        if req.disabled {
            self.sign_out(ctx, user_id, 0, Code::AccountDisabled, "the account was disabled")
                .await?;
        }
        Ok(SetDisabledResponse { user: Some(summary(&account)) })
    }

    async fn notice(&self, ctx: &Ctx, req: NoticeRequest) -> Result<NoticeResponse, Status> {
        validate::text(&req.text)?;
        if req.text.trim().is_empty() {
            return Err(Status::invalid_argument("text must not be empty"));
        }
        let account = self.user_named(ctx, req.user_id, req.username).await?;
        let notice = Message {
            from_user_id: 0,
            from: validate::NOTICE_SENDER.into(),
            to_user_id: account.user_id,
            to: account.username,
            kind: MessageKind::System as i32,
            text: req.text,
            sent_at_ms: self.now_ms(),
            client_msg_id: format!("notice:{:032x}", rand::random::<u128>()),
            ..Message::default()
        };
        let stored = self.deliver(ctx, notice, &[account.user_id]).await?;
        Ok(NoticeResponse { message: stored.message })
    }

    async fn get_group(&self, ctx: &Ctx, req: GetGroupRequest) -> Result<GetGroupResponse, Status> {
        let state = self.load_group(ctx, req.group_id).await?;
        let dissolved = state.group.as_ref().is_some_and(|g| g.dissolved);
        let group = self.group_view(ctx, &state).await?;
        Ok(GetGroupResponse { group: Some(group), dissolved })
    }

    async fn stats(&self, ctx: &Ctx, req: StatsRequest) -> Result<StatsResponse, Status> {
        let hours = page(req.hours, PERIODS_DEFAULT, PERIODS_MAX);
        self.deps.ops.list_periods(ctx, StatsRequest { hours }).await
    }

    async fn totals(&self, ctx: &Ctx, _: TotalsRequest) -> Result<TotalsResponse, Status> {
        self.store_totals(ctx).await
    }

    async fn record(&self, ctx: &Ctx, req: AuditEntry) -> Result<Recorded, Status> {
        let at_ms = if req.at_ms == 0 { self.now_ms() } else { req.at_ms };
        self.deps.ops.record(ctx, AuditEntry { at_ms, ..req }).await?;
        Ok(Recorded {})
    }

    async fn audit(&self, ctx: &Ctx, req: AuditRequest) -> Result<AuditResponse, Status> {
        let limit = page(req.limit, PAGE_DEFAULT, PAGE_MAX);
        self.deps.ops.audit(ctx, AuditRequest { limit, ..req }).await
    }

    async fn report_sample(&self, ctx: &Ctx, req: NodeSample) -> Result<Recorded, Status> {
        self.deps.ops.record_sample(ctx, req).await?;
        Ok(Recorded {})
    }
}
