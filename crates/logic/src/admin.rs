//! The operators' API (`missive.admin.v1.Admin`): look users and groups up, sign devices out,
//! disable accounts, send system notices, read the statistics and the audit log. The admin
//! address checks the credential and names the operator in the call's context; a call that
//! names none is refused here, whoever makes it, and everything an operator looks at or
//! changes is written to the audit log here, refused or not, whichever node it came through.

use crate::{Logic, page, validate};
use missive_proto::admin::*;
use missive_proto::client::{Message, MessageKind};
use missive_proto::internal::{
    AccountRecord, Empty, KickTarget, MessageRef, NotifyRequest, RevokeSessionRequest, UserRef,
    UsernameRef,
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

    /// Forgets the named device's cached sessions and push targets, and closes its connections
    /// on every access node (every device's for `device_id` 0), telling them `code`.
    pub(crate) async fn sign_out(
        &self,
        ctx: &Ctx,
        user_id: u64,
        device_id: u64,
        code: Code,
        message: &str,
    ) -> Result<(), Status> {
        self.forget_sessions(user_id, (device_id != 0).then_some(device_id));
        crate::push::forget_device_pushers(self, ctx, user_id, device_id).await;
        let kick = KickTarget { user_id, device_id, code: code as u32, message: message.into() };
        self.deps
            .push
            .notify(ctx, NotifyRequest { kicks: vec![kick], ..Default::default() })
            .await?;
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

/// The operator a call names, or UNAUTHENTICATED.
fn operator(ctx: &Ctx) -> Result<std::net::SocketAddr, Status> {
    ctx.operator.ok_or_else(|| {
        Status::new(Code::Unauthenticated, "an operators' call must name its operator")
    })
}

/// How a request names a user, for the audit log.
fn user_target(user_id: u64, username: &str) -> String {
    if username.is_empty() { user_id.to_string() } else { username.to_string() }
}

impl Logic {
    /// Runs an operator's `work`, then writes it to the audit log (and the server log), as
    /// `action` on `target`. An action done but not recorded is reported as failed: the
    /// operator must know the log misses it.
    async fn audited<T>(
        &self,
        ctx: &Ctx,
        (action, target, detail): (&str, String, String),
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let address = operator(ctx)?;
        let result = work.await;
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code);
        tracing::info!(%address, action, target, code = %code, "admin action");
        let entry = AuditEntry {
            at_ms: self.now_ms(),
            actor: "admin".into(),
            address: address.to_string(),
            action: action.into(),
            target,
            detail,
            code: code as u32,
            ..AuditEntry::default()
        };
        self.deps.ops.record(ctx, entry).await?;
        result
    }

    async fn users_page(
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

    async fn user_view(&self, ctx: &Ctx, req: GetUserRequest) -> Result<GetUserResponse, Status> {
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

    async fn kick_device(&self, ctx: &Ctx, req: KickRequest) -> Result<KickResponse, Status> {
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

    async fn disable_account(
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

    async fn send_notice(&self, ctx: &Ctx, req: NoticeRequest) -> Result<NoticeResponse, Status> {
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
}

#[async_trait::async_trait]
impl Admin for Logic {
    async fn list_users(
        &self,
        ctx: &Ctx,
        req: ListUsersRequest,
    ) -> Result<ListUsersResponse, Status> {
        let detail = format!("query={:?} after={} limit={}", req.query, req.after, req.limit);
        let action = ("list_users", String::new(), detail);
        self.audited(ctx, action, self.users_page(ctx, req)).await
    }

    async fn get_user(&self, ctx: &Ctx, req: GetUserRequest) -> Result<GetUserResponse, Status> {
        let action = ("get_user", user_target(req.user_id, &req.username), String::new());
        self.audited(ctx, action, self.user_view(ctx, req)).await
    }

    async fn kick(&self, ctx: &Ctx, req: KickRequest) -> Result<KickResponse, Status> {
        let target = user_target(req.user_id, &req.username);
        let action = ("kick", target, format!("device {}", req.device_id));
        self.audited(ctx, action, self.kick_device(ctx, req)).await
    }

    async fn set_disabled(
        &self,
        ctx: &Ctx,
        req: SetDisabledRequest,
    ) -> Result<SetDisabledResponse, Status> {
        let name = if req.disabled { "disable" } else { "enable" };
        let action = (name, user_target(req.user_id, &req.username), String::new());
        self.audited(ctx, action, self.disable_account(ctx, req)).await
    }

    async fn notice(&self, ctx: &Ctx, req: NoticeRequest) -> Result<NoticeResponse, Status> {
        let action = ("notice", user_target(req.user_id, &req.username), req.text.clone());
        self.audited(ctx, action, self.send_notice(ctx, req)).await
    }

    async fn get_group(&self, ctx: &Ctx, req: GetGroupRequest) -> Result<GetGroupResponse, Status> {
        let target = missive_proto::ids::group_handle(req.group_id);
        let work = async {
            let state = self.load_group(ctx, req.group_id).await?;
            let dissolved = state.group.as_ref().is_some_and(|g| g.dissolved);
            let group = self.group_view(ctx, &state).await?;
            Ok(GetGroupResponse { group: Some(group), dissolved })
        };
        self.audited(ctx, ("get_group", target, String::new()), work).await
    }

    async fn get_message(
        &self,
        ctx: &Ctx,
        req: GetMessageRequest,
    ) -> Result<GetMessageResponse, Status> {
        let target = user_target(req.user_id, &req.username);
        let action = ("get_message", target, format!("message {}", req.message_id));
        let work = async {
            let user_id = self.user_id_named(ctx, req.user_id, req.username).await?;
            let message_ref = MessageRef { user_id, message_id: req.message_id };
            let message = self.deps.messages.get(ctx, message_ref).await?;
            Ok(GetMessageResponse { message: Some(message) })
        };
        self.audited(ctx, action, work).await
    }

    async fn stats(&self, ctx: &Ctx, req: StatsRequest) -> Result<StatsResponse, Status> {
        let hours = page(req.hours, PERIODS_DEFAULT, PERIODS_MAX);
        self.deps.ops.list_periods(ctx, StatsRequest { hours }).await
    }

    async fn totals(&self, ctx: &Ctx, _: TotalsRequest) -> Result<TotalsResponse, Status> {
        self.store_totals(ctx).await
    }

    async fn audit(&self, ctx: &Ctx, req: AuditRequest) -> Result<AuditResponse, Status> {
        operator(ctx)?;
        let limit = page(req.limit, PAGE_DEFAULT, PAGE_MAX);
        self.deps.ops.audit(ctx, AuditRequest { limit, ..req }).await
    }

    async fn report_sample(&self, ctx: &Ctx, req: NodeSample) -> Result<Recorded, Status> {
        self.deps.ops.record_sample(ctx, req).await?;
        Ok(Recorded {})
    }
}
