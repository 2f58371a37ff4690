//! The logic layer: the business services clients call (accounts, send, sync) and the basic
//! services they share (the version allocator, notify fan-out through the access layer's
//! `Push`, acknowledgement bookkeeping and garbage collection).
//!
//! Everything here talks to other tiers only through the service traits of `missive-proto`:
//! it never opens a socket, never sees a frame or an HTTP request, and never knows which
//! storage backend answers. Time comes from an injected [`Clock`].

mod activity;
mod admin;
mod auth;
mod compat;
mod contact;
mod edit;
mod group;
mod invitation;
mod janitor;
mod limits;
mod locks;
mod media;
mod message;
mod presence;
mod push;
mod search;
mod seq;
mod sync;
mod sync_key;
mod validate;

#[cfg(test)]
mod tests;

pub use auth::PasswordCost;
pub use invitation::{Invitation, InvitationCodec};
pub use limits::{Rate, RateLimits};
pub use seq::{SEQ_STEP_DEFAULT, SeqAllocator};
pub use sync_key::{SyncKey, SyncKeyCodec, SyncKeyError};

use missive_proto::client::*;
use missive_proto::internal::{
    AccountStore, AllocRequest, AuthenticateRequest, ClientApi, ContactStore, Empty, GroupStore,
    InboxEntry, Limiter, LinkChanges, Links, MediaStore, MessageStore, NotifyRequest, NotifyTarget,
    OfflinePush, OpsStore, Push, Seq, SessionRecord,
};
use missive_rpc::{Code, Ctx, Status};
use std::sync::Arc;
use std::time::Duration;

/// Attempts at a versioned write before its ABORTED reaches the client. Each retry starts
/// above the persisted bound, so a second conflict needs yet another writer racing.
const VERSIONED_WRITE_ATTEMPTS: u32 = 3;

/// How many items a request asking for `limit` gets: `default` for 0, at most `max`.
pub(crate) fn page(limit: u32, default: u32, max: u32) -> u32 {
    if limit == 0 { default } else { limit.min(max) }
}

/// Wall-clock milliseconds since the Unix epoch, injectable for tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(missive_rpc::unix_ms))
    }

    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

/// How long messages are held after every device of the recipient has acknowledged them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Deleted as soon as every device has acknowledged them.
    UntilDelivered,
    /// Kept this long after delivery (the default: 7 days).
    After(Duration),
    /// Never deleted.
    Forever,
}

/// The setting's form: `delivered`, `forever`, or the duration in its largest whole unit.
impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = match self {
            Retention::UntilDelivered => return f.write_str("delivered"),
            Retention::Forever => return f.write_str("forever"),
            Retention::After(duration) => duration.as_secs(),
        };
        let units = [(86_400, "d"), (3_600, "h"), (60, "m")];
        match units.iter().find(|(unit, _)| seconds > 0 && seconds % unit == 0) {
            Some((unit, name)) => write!(f, "{}{name}", seconds / unit),
            None => write!(f, "{seconds}s"),
        }
    }
}

impl std::str::FromStr for Retention {
    type Err = String;

    /// `delivered`, `forever`, or a duration such as `7d`, `12h`, `30m`, `45s`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "delivered" => return Ok(Retention::UntilDelivered),
            "forever" => return Ok(Retention::Forever),
            _ => {}
        }
        let (number, unit) = text.split_at(text.len().saturating_sub(1));
        let number: u64 = number.parse().map_err(|_| format!("bad retention {text:?}"))?;
        let seconds = match unit {
            "d" => number * 86_400,
            "h" => number * 3_600,
            "m" => number * 60,
            "s" => number,
            _ => return Err(format!("bad retention unit in {text:?} (use d, h, m or s)")),
        };
        Ok(Retention::After(Duration::from_secs(seconds)))
    }
}

/// Whom a user accepts something from: a 1:1 message (`direct_messages`), or being put into
/// a group (`group_invites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Friends only (the default for both, as WeChat): others get NOT_FRIENDS.
    Friends,
    /// Anyone the user has not blocked.
    Anyone,
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Audience::Friends => "friends",
            Audience::Anyone => "anyone",
        })
    }
}

impl std::str::FromStr for Audience {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "friends" => Ok(Audience::Friends),
            "anyone" => Ok(Audience::Anyone),
            _ => Err(format!("bad policy {text:?} (use friends or anyone)")),
        }
    }
}

/// How users come into groups (`group_invites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupInvites {
    /// Put in at once by a user of this audience (friends by default, as WeChat).
    Add(Audience),
    /// Nobody is put in: each user named gets an invitation, and joins by accepting it.
    Accept,
}

impl std::fmt::Display for GroupInvites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupInvites::Add(audience) => audience.fmt(f),
            GroupInvites::Accept => f.write_str("accept"),
        }
    }
}

impl std::str::FromStr for GroupInvites {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "accept" => Ok(GroupInvites::Accept),
            _ => text
                .parse()
                .map(GroupInvites::Add)
                .map_err(|_| format!("bad policy {text:?} (use friends, anyone or accept)")),
        }
    }
}

#[derive(Clone)]
pub struct LogicConfig {
    /// Signs SyncKeys; keep it across restarts or every client resyncs from scratch.
    pub sync_key_secret: Vec<u8>,
    pub password_cost: PasswordCost,
    /// Password hashes computed at once at most (each takes one core for tens of ms).
    pub hashing_concurrency: usize,
    pub sync_items_default: u32,
    pub sync_items_max: u32,
    pub retention: Retention,
    /// How often acknowledgements are written and garbage is collected.
    pub janitor_interval: Duration,
    /// How long a send's delivery to another shard may stay pending before the janitor
    /// re-drives it (a sharded store only).
    pub pending_redrive_after: Duration,
    pub clock: Clock,
    /// Who may send a user a 1:1 message.
    pub direct_messages: Audience,
    /// Who may put a user into a group (create one with them, or invite them), or whether
    /// they must accept.
    pub group_invites: GroupInvites,
    /// Members a group holds at most, its owner included.
    pub group_members_max: usize,
    /// The largest image or file accepted.
    pub media_bytes_max: usize,
    /// Bytes of media a user keeps stored at most; 0 for no quota.
    pub media_quota_bytes: u64,
    /// How long after sending a sender may recall a message.
    pub recall_window: Duration,
    /// How long after sending a sender may edit a text.
    pub edit_window: Duration,
    /// Keep the texts edits replaced, for the operators (`edit_history` of the message).
    pub keep_edit_history: bool,
    /// How long a push service may hold a notification for a device that is off.
    pub push_ttl: Duration,
    /// Put the message's text into notifications (it then passes through the push services).
    pub push_content: bool,
    /// The VAPID public key browsers subscribe with (PUSHER_LIST tells it).
    pub vapid_public_key: Vec<u8>,
    /// The statistics period: users are counted active once per period.
    pub stats_period: Duration,
    /// How stale the store's totals (users, messages) may be when asked for; counting them
    /// scans tables.
    pub totals_max_age: Duration,
    pub rate_limits: RateLimits,
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            sync_key_secret: Vec::new(),
            password_cost: PasswordCost::default(),
            hashing_concurrency: 2,
            sync_items_default: 100,
            sync_items_max: 500,
            retention: Retention::After(Duration::from_secs(7 * 86_400)),
            janitor_interval: Duration::from_secs(1),
            pending_redrive_after: Duration::from_secs(30),
            clock: Clock::system(),
            direct_messages: Audience::Friends,
            group_invites: GroupInvites::Add(Audience::Friends),
            group_members_max: 500,
            media_bytes_max: missive_proto::MEDIA_BYTES_MAX_DEFAULT,
            media_quota_bytes: 10 << 30,
            recall_window: Duration::from_secs(120),
            edit_window: Duration::from_secs(48 * 3600),
            keep_edit_history: false,
            push_ttl: Duration::from_secs(86_400),
            push_content: false,
            vapid_public_key: Vec::new(),
            stats_period: Duration::from_secs(3600),
            totals_max_age: Duration::from_secs(30),
            rate_limits: RateLimits::default(),
        }
    }
}

/// The services the logic layer calls.
#[derive(Clone)]
pub struct Deps {
    pub accounts: Arc<dyn AccountStore>,
    pub contacts: Arc<dyn ContactStore>,
    pub messages: Arc<dyn MessageStore>,
    pub groups: Arc<dyn GroupStore>,
    pub media: Arc<dyn MediaStore>,
    pub seq: Arc<dyn Seq>,
    pub push: Arc<dyn Push>,
    pub ops: Arc<dyn OpsStore>,
    /// Rate-limit buckets shared by the deployment's logic nodes; none: this node's own.
    pub limiter: Option<Arc<dyn Limiter>>,
    /// Where offline push notifications go out; none: no offline push.
    pub offline_push: Option<Arc<dyn OfflinePush>>,
}

/// The business services, behind the `ClientApi` trait that the access layer calls.
pub struct Logic {
    deps: Deps,
    config: LogicConfig,
    sync_keys: SyncKeyCodec,
    invitations: invitation::InvitationCodec,
    locks: locks::UserLocks,
    group_locks: locks::GroupLocks,
    /// Orders the edits and reactions of one message on this node (stripes of message ids);
    /// taken before any user's lock, never after.
    message_locks: locks::UserLocks,
    auth: auth::AuthState,
    acks: janitor::AckBuffer,
    push_queue: push::PushQueue,
    names: message::NameCache,
    activity: activity::Activity,
    /// The rate limits' buckets.
    buckets: Arc<limits::Buckets>,
    /// When an unreachable shared limiter was last told in the log.
    rate_warnings: missive_rpc::Sparse,
    /// The store's totals and when they were counted.
    totals: std::sync::Mutex<Option<(std::time::Instant, missive_proto::admin::TotalsResponse)>>,
    metrics: Metrics,
}

/// The handles of the metrics counted on every send and sync, made once (docs/operations.md).
struct Metrics {
    /// `missive_messages_sent_total` and `missive_messages_delivered_total`, by kind (in the
    /// order of `message::KINDS`).
    sent: [metrics::Counter; message::KINDS.len()],
    delivered: [metrics::Counter; message::KINDS.len()],
    sync_calls: metrics::Counter,
    sync_items: metrics::Counter,
    notify_requests: metrics::Counter,
    write_retries: metrics::Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let by_kind = |name: &'static str| {
            message::KINDS.map(|kind| metrics::counter!(name, "kind" => message::kind_name(kind)))
        };
        Metrics {
            sent: by_kind("missive_messages_sent_total"),
            delivered: by_kind("missive_messages_delivered_total"),
            sync_calls: metrics::counter!("missive_sync_calls_total"),
            sync_items: metrics::counter!("missive_sync_items_total"),
            notify_requests: metrics::counter!("missive_notify_requests_total"),
            write_retries: metrics::counter!("missive_versioned_write_retries_total"),
        }
    }
}

impl Logic {
    pub fn new(deps: Deps, config: LogicConfig) -> Arc<Logic> {
        assert!(!config.sync_key_secret.is_empty(), "a sync key secret is required");
        Arc::new(Logic {
            sync_keys: SyncKeyCodec::new(&config.sync_key_secret),
            invitations: invitation::InvitationCodec::new(&config.sync_key_secret),
            locks: locks::UserLocks::new(4096),
            group_locks: locks::GroupLocks::new(1024),
            message_locks: locks::UserLocks::new(1024),
            auth: auth::AuthState::new(config.hashing_concurrency),
            acks: janitor::AckBuffer::default(),
            push_queue: push::PushQueue::default(),
            names: message::NameCache::default(),
            activity: activity::Activity::new(config.stats_period.as_millis() as i64),
            buckets: Arc::default(),
            rate_warnings: missive_rpc::Sparse::default(),
            totals: std::sync::Mutex::new(None),
            metrics: Metrics::new(),
            deps,
            config,
        })
    }

    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    fn mark_caller_active(&self, ctx: &Ctx) {
        if let Some(caller) = ctx.caller {
            self.activity.mark(caller.user_id, self.now_ms());
        }
    }

    /// Runs a write that takes one fresh version per user, holding the users' locks from
    /// allocation to commit. When the store refuses a version as stale (a writer on another
    /// logic node, or an allocator that has since moved, committed a newer one first), it
    /// retries with versions from above the persisted bound.
    async fn write_versioned<T, F, Fut>(
        &self,
        ctx: &Ctx,
        users: &[u64],
        write: F,
    ) -> Result<(T, Vec<InboxEntry>), Status>
    where
        F: FnMut(Vec<InboxEntry>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let _guards = self.locks.lock(users).await;
        self.write_versioned_locked(ctx, users, write).await
    }

    /// [`write_versioned`](Self::write_versioned) for a caller that already holds the users'
    /// locks (it read what it is about to change under them).
    async fn write_versioned_locked<T, F, Fut>(
        &self,
        ctx: &Ctx,
        users: &[u64],
        mut write: F,
    ) -> Result<(T, Vec<InboxEntry>), Status>
    where
        F: FnMut(Vec<InboxEntry>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0;
        loop {
            // The users' locks are held, so their allocations may run at once (a group
            // message takes one per member, each a round trip when the allocator is remote).
            let allocations = users.iter().map(|&user_id| async move {
                let alloc = AllocRequest { user_id, count: 1, fresh: attempt > 0 };
                let version = self.deps.seq.alloc(ctx, alloc).await?.first;
                Ok::<_, Status>(InboxEntry { user_id, version })
            });
            let entries = futures_util::future::try_join_all(allocations).await?;
            match write(entries.clone()).await {
                Ok(done) => return Ok((done, entries)),
                Err(status) if self.retry_after(ctx, &status, attempt) => attempt += 1,
                Err(status) => return Err(status),
            }
        }
    }

    /// Whether a write that failed with `status` at `attempt` (0 for the first) is tried
    /// again: it lost a race to a concurrent writer (ABORTED) and attempts are left.
    fn retry_after(&self, ctx: &Ctx, status: &Status, attempt: u32) -> bool {
        let retry = status.code == Code::Aborted && attempt + 1 < VERSIONED_WRITE_ATTEMPTS;
        if retry {
            self.metrics.write_retries.increment(1);
            tracing::debug!(request_id = ctx.request_id, %status, "lost a race, retrying");
        }
        retry
    }

    /// Tells the devices of the users whose `entries` were written of their new `data_type`
    /// versions, all but the calling device: whatever the change (a message, a group's system
    /// message, a contact entry), the device that made it learns of it from its answer. A
    /// lost notify costs only a delay (the client syncs at its next heartbeat or notify), so
    /// failures are logged, never returned.
    /// Answers the users written to who hold no long link anywhere (as far as the push
    /// could tell: none when it failed).
    async fn notify_written(
        &self,
        ctx: &Ctx,
        entries: &[InboxEntry],
        data_type: DataType,
    ) -> Vec<u64> {
        if entries.is_empty() {
            return Vec::new();
        }
        let (origin, device) = ctx.caller.map_or((0, 0), |c| (c.user_id, c.device_id));
        let targets: Vec<NotifyTarget> = entries
            .iter()
            .map(|entry| NotifyTarget {
                user_id: entry.user_id,
                except_device_id: if entry.user_id == origin { device } else { 0 },
                r#type: data_type as i32,
                version: entry.version,
            })
            .collect();
        let count = targets.len() as u64;
        match self.deps.push.notify(ctx, NotifyRequest { targets, ..Default::default() }).await {
            Ok(answer) => {
                self.metrics.notify_requests.increment(count);
                answer.offline
            }
            Err(status) => {
                tracing::warn!(request_id = ctx.request_id, %status, "notify failed");
                Vec::new()
            }
        }
    }
}

/// Each operation is the inherent method of the same name, in the module of its data
/// (`auth.rs`, `message.rs`, `group.rs`, ...), which the path `Logic::<name>` names before this
/// trait's method. What this impl adds is what calls share: a user who signs in, sends or
/// syncs is counted active in the statistics.
#[async_trait::async_trait]
impl ClientApi for Logic {
    async fn authenticate(
        &self,
        ctx: &Ctx,
        req: AuthenticateRequest,
    ) -> Result<SessionRecord, Status> {
        let session = Logic::authenticate(self, ctx, req).await?;
        self.activity.mark(session.user_id, self.now_ms());
        Ok(session)
    }

    async fn register(&self, ctx: &Ctx, req: RegisterRequest) -> Result<RegisterResponse, Status> {
        Logic::register(self, ctx, req).await
    }

    async fn login(&self, ctx: &Ctx, req: LoginRequest) -> Result<LoginResponse, Status> {
        let login = Logic::login(self, ctx, req).await?;
        self.activity.mark(login.user_id, self.now_ms());
        Ok(login)
    }

    async fn logout(&self, ctx: &Ctx, req: LogoutRequest) -> Result<LogoutResponse, Status> {
        Logic::logout(self, ctx, req).await
    }

    async fn get_profile(
        &self,
        ctx: &Ctx,
        req: GetProfileRequest,
    ) -> Result<GetProfileResponse, Status> {
        Logic::get_profile(self, ctx, req).await
    }

    async fn update_profile(
        &self,
        ctx: &Ctx,
        req: UpdateProfileRequest,
    ) -> Result<UpdateProfileResponse, Status> {
        Logic::update_profile(self, ctx, req).await
    }

    async fn send(&self, ctx: &Ctx, req: SendRequest) -> Result<SendResponse, Status> {
        let sent = Logic::send(self, ctx, req).await?;
        self.mark_caller_active(ctx);
        Ok(sent)
    }

    async fn sync(&self, ctx: &Ctx, req: SyncRequest) -> Result<SyncResponse, Status> {
        let synced = Logic::sync(self, ctx, req).await?;
        self.mark_caller_active(ctx);
        Ok(synced)
    }

    async fn friend_request(
        &self,
        ctx: &Ctx,
        req: FriendRequestRequest,
    ) -> Result<ContactResponse, Status> {
        Logic::friend_request(self, ctx, req).await
    }

    async fn friend_respond(
        &self,
        ctx: &Ctx,
        req: FriendRespondRequest,
    ) -> Result<ContactResponse, Status> {
        Logic::friend_respond(self, ctx, req).await
    }

    async fn friend_remove(
        &self,
        ctx: &Ctx,
        req: FriendRemoveRequest,
    ) -> Result<ContactResponse, Status> {
        Logic::friend_remove(self, ctx, req).await
    }

    async fn set_blocked(
        &self,
        ctx: &Ctx,
        req: SetBlockedRequest,
    ) -> Result<ContactResponse, Status> {
        Logic::set_blocked(self, ctx, req).await
    }

    async fn set_remark(
        &self,
        ctx: &Ctx,
        req: SetRemarkRequest,
    ) -> Result<ContactResponse, Status> {
        Logic::set_remark(self, ctx, req).await
    }

    async fn list_contacts(
        &self,
        ctx: &Ctx,
        req: ListContactsRequest,
    ) -> Result<ListContactsResponse, Status> {
        Logic::list_contacts(self, ctx, req).await
    }

    async fn group_create(
        &self,
        ctx: &Ctx,
        req: GroupCreateRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_create(self, ctx, req).await
    }

    async fn group_invite(
        &self,
        ctx: &Ctx,
        req: GroupInviteRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_invite(self, ctx, req).await
    }

    async fn group_remove(
        &self,
        ctx: &Ctx,
        req: GroupRemoveRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_remove(self, ctx, req).await
    }

    async fn group_leave(
        &self,
        ctx: &Ctx,
        req: GroupLeaveRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_leave(self, ctx, req).await
    }

    async fn group_update(
        &self,
        ctx: &Ctx,
        req: GroupUpdateRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_update(self, ctx, req).await
    }

    async fn group_set_admin(
        &self,
        ctx: &Ctx,
        req: GroupSetAdminRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_set_admin(self, ctx, req).await
    }

    async fn group_transfer(
        &self,
        ctx: &Ctx,
        req: GroupTransferRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_transfer(self, ctx, req).await
    }

    async fn group_dissolve(
        &self,
        ctx: &Ctx,
        req: GroupDissolveRequest,
    ) -> Result<GroupResponse, Status> {
        Logic::group_dissolve(self, ctx, req).await
    }

    async fn group_info(&self, ctx: &Ctx, req: GroupInfoRequest) -> Result<GroupResponse, Status> {
        Logic::group_info(self, ctx, req).await
    }

    async fn group_join(&self, ctx: &Ctx, req: GroupJoinRequest) -> Result<GroupResponse, Status> {
        Logic::group_join(self, ctx, req).await
    }

    async fn upload(&self, ctx: &Ctx, req: UploadRequest) -> Result<UploadResponse, Status> {
        Logic::upload(self, ctx, req).await
    }

    async fn upload_begin(
        &self,
        ctx: &Ctx,
        req: UploadBeginRequest,
    ) -> Result<UploadBeginResponse, Status> {
        Logic::upload_begin(self, ctx, req).await
    }

    async fn upload_part(
        &self,
        ctx: &Ctx,
        req: UploadPartRequest,
    ) -> Result<UploadPartResponse, Status> {
        Logic::upload_part(self, ctx, req).await
    }

    async fn download(&self, ctx: &Ctx, req: DownloadRequest) -> Result<DownloadResponse, Status> {
        Logic::download(self, ctx, req).await
    }

    async fn recall(&self, ctx: &Ctx, req: RecallRequest) -> Result<RecallResponse, Status> {
        Logic::recall(self, ctx, req).await
    }

    async fn mark_read(&self, ctx: &Ctx, req: MarkReadRequest) -> Result<MarkReadResponse, Status> {
        Logic::mark_read(self, ctx, req).await
    }

    async fn edit(&self, ctx: &Ctx, req: EditRequest) -> Result<EditResponse, Status> {
        let edited = Logic::edit(self, ctx, req).await?;
        self.mark_caller_active(ctx);
        Ok(edited)
    }

    async fn react(&self, ctx: &Ctx, req: ReactRequest) -> Result<ReactResponse, Status> {
        Logic::react(self, ctx, req).await
    }

    async fn search(&self, ctx: &Ctx, req: SearchRequest) -> Result<SearchResponse, Status> {
        Logic::search(self, ctx, req).await
    }

    async fn pusher_set(
        &self,
        ctx: &Ctx,
        req: PusherSetRequest,
    ) -> Result<PusherSetResponse, Status> {
        Logic::pusher_set(self, ctx, req).await
    }

    async fn pusher_remove(
        &self,
        ctx: &Ctx,
        req: PusherRemoveRequest,
    ) -> Result<PusherRemoveResponse, Status> {
        Logic::pusher_remove(self, ctx, req).await
    }

    async fn pusher_list(
        &self,
        ctx: &Ctx,
        req: PusherListRequest,
    ) -> Result<PusherListResponse, Status> {
        Logic::pusher_list(self, ctx, req).await
    }

    async fn set_muted(&self, ctx: &Ctx, req: SetMutedRequest) -> Result<ContactResponse, Status> {
        Logic::set_muted(self, ctx, req).await
    }

    async fn typing(&self, ctx: &Ctx, req: TypingRequest) -> Result<TypingResponse, Status> {
        Logic::typing(self, ctx, req).await
    }

    async fn set_privacy(
        &self,
        ctx: &Ctx,
        req: SetPrivacyRequest,
    ) -> Result<SetPrivacyResponse, Status> {
        Logic::set_privacy(self, ctx, req).await
    }

    async fn get_presence(
        &self,
        ctx: &Ctx,
        req: GetPresenceRequest,
    ) -> Result<GetPresenceResponse, Status> {
        Logic::get_presence(self, ctx, req).await
    }
}

/// What the access tier reports of its connections (`presence.rs`).
#[async_trait::async_trait]
impl Links for Logic {
    async fn changed(&self, ctx: &Ctx, req: LinkChanges) -> Result<Empty, Status> {
        Logic::links_changed(self, ctx, req).await
    }
}
