//! Server settings: zero-config defaults, overridable by flags or `MISSIVE_*` variables.

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use missive_access::AccessConfig;
use missive_logic::{
    Audience, GroupInvites, LogicConfig, PasswordCost, Rate, RateLimits, Retention,
};
use missive_route::Engine;
use missive_rpc::GuardConfig;
use missive_rpc::remote::{NodeKey, Trust};
use missive_storage_embedded::Durability;
use missive_storage_sql::SqlConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tier this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Holds client connections (long and short links) and nothing else.
    Access,
    /// The business services and the version allocator; stateless apart from caches.
    Logic,
    /// The data-access services over the configured storage backend.
    Store,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// The tiers this process runs (comma-separated or repeated). Other tiers are reached
    /// at the addresses of `--logic-rpc`, `--store-rpc` and friends.
    #[arg(
        long = "role",
        env = "MISSIVE_ROLE",
        value_delimiter = ',',
        default_values = ["access", "logic", "store"]
    )]
    pub roles: Vec<Role>,
    /// Listener of the RPC services this process offers other processes (its logic and store
    /// services). Defaults to 127.0.0.1:7400 when the process does not run every role.
    #[arg(long, env = "MISSIVE_RPC")]
    pub rpc: Option<SocketAddr>,
    /// Logic nodes serving the access role's requests (`http://host:port`, comma-separated).
    #[arg(long = "logic-rpc", env = "MISSIVE_LOGIC_RPC", value_delimiter = ',')]
    pub logic_rpc: Vec<String>,
    /// Nodes whose version allocator this logic node uses, each user always on the same one
    /// (rendezvous hashing on the user id). Default: its own allocator.
    #[arg(long = "seq-rpc", env = "MISSIVE_SEQ_RPC", value_delimiter = ',')]
    pub seq_rpc: Vec<String>,
    /// Store nodes serving every data type, for a logic node without the store role.
    #[arg(long = "store-rpc", env = "MISSIVE_STORE_RPC", value_delimiter = ',')]
    pub store_rpc: Vec<String>,
    /// Store nodes for accounts and sessions only (overrides `--store-rpc`).
    #[arg(long = "account-store-rpc", env = "MISSIVE_ACCOUNT_STORE_RPC", value_delimiter = ',')]
    pub account_store_rpc: Vec<String>,
    /// Store nodes for contacts only (overrides `--store-rpc`).
    #[arg(long = "contact-store-rpc", env = "MISSIVE_CONTACT_STORE_RPC", value_delimiter = ',')]
    pub contact_store_rpc: Vec<String>,
    /// Store nodes for messages and inboxes only (overrides `--store-rpc`).
    #[arg(long = "message-store-rpc", env = "MISSIVE_MESSAGE_STORE_RPC", value_delimiter = ',')]
    pub message_store_rpc: Vec<String>,
    /// Store nodes for groups only (overrides `--store-rpc`).
    #[arg(long = "group-store-rpc", env = "MISSIVE_GROUP_STORE_RPC", value_delimiter = ',')]
    pub group_store_rpc: Vec<String>,
    /// Store nodes for images and files only (overrides `--store-rpc`).
    #[arg(long = "media-store-rpc", env = "MISSIVE_MEDIA_STORE_RPC", value_delimiter = ',')]
    pub media_store_rpc: Vec<String>,
    /// Store nodes for operations data only: statistics and the audit log (overrides
    /// `--store-rpc`).
    #[arg(long = "ops-store-rpc", env = "MISSIVE_OPS_STORE_RPC", value_delimiter = ',')]
    pub ops_store_rpc: Vec<String>,
    /// Store nodes for the allocator's persisted bounds only (overrides `--store-rpc`).
    #[arg(long = "seq-store-rpc", env = "MISSIVE_SEQ_STORE_RPC", value_delimiter = ',')]
    pub seq_store_rpc: Vec<String>,
    /// The routing engine (`redis://host:port`): which access node holds which user, and
    /// notifies between nodes. Required once access and logic run in different processes.
    /// Or: neither this nor `--redis-sentinels`.
    #[arg(long = "redis-url", env = "MISSIVE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The routing engine as the master that Redis Sentinel watches, instead of
    /// `--redis-url`: its sentinels (`host:port`, comma-separated; any one that answers is
    /// enough), asked where the master is whenever a connection is made, so the nodes
    /// follow a failover. Needs `--redis-master-name`.
    #[arg(long = "redis-sentinels", env = "MISSIVE_REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,
    /// The name under which the sentinels monitor the routing engine's master (`sentinel
    /// monitor <name> ...` in their configuration).
    #[arg(long = "redis-master-name", env = "MISSIVE_REDIS_MASTER_NAME")]
    pub redis_master_name: Option<String>,
    /// Prefix of the routing engine's keys and channels, for deployments sharing one Redis.
    #[arg(long, env = "MISSIVE_REDIS_NAMESPACE", default_value = missive_route::NAMESPACE_DEFAULT)]
    pub redis_namespace: String,
    /// This node's name in the routing table and the shard map's list of nodes; must be
    /// unique among live nodes. Default: a fresh random name at every start.
    #[arg(long, env = "MISSIVE_NODE_ID")]
    pub node_id: Option<String>,
    /// The SyncKey signing secret (32 bytes, created if missing). Every logic node of a
    /// deployment must use the same one. Default: `sync-key.secret` in the data directory.
    #[arg(long, env = "MISSIVE_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// The deployment's shared secret (created if missing): every node of a split deployment
    /// signs its RPC calls with a key derived from it and serves only calls so signed.
    /// Required once a process serves or calls RPC.
    #[arg(long, env = "MISSIVE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) presented on every listener: the TCP long link, HTTP and
    /// WebSocket, the admin address and RPC. Read again when it changes, or at SIGHUP.
    #[arg(long, env = "MISSIVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "MISSIVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A certificate for the admin address only (overrides `--tls-cert` there).
    #[arg(long, env = "MISSIVE_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    #[arg(long, env = "MISSIVE_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// A certificate for the RPC listener only (overrides `--tls-cert` there), such as one
    /// from the deployment's own CA.
    #[arg(long, env = "MISSIVE_RPC_TLS_CERT", requires = "rpc_tls_key")]
    pub rpc_tls_cert: Option<PathBuf>,
    #[arg(long, env = "MISSIVE_RPC_TLS_KEY", requires = "rpc_tls_cert")]
    pub rpc_tls_key: Option<PathBuf>,
    /// A CA (PEM) that `https://` RPC endpoints' certificates may chain to, besides Mozilla's
    /// roots.
    #[arg(long, env = "MISSIVE_RPC_CA_FILE")]
    pub rpc_ca_file: Option<PathBuf>,
    /// Seconds between checks of the certificate files for a change.
    #[arg(long, env = "MISSIVE_TLS_RELOAD_CHECK_S", default_value_t = 10)]
    pub tls_reload_check_s: u64,
    /// Lets a listener without TLS bind an address other than loopback (behind a proxy that
    /// terminates TLS, or on a network that is private end to end); logged as a warning.
    #[arg(long, env = "MISSIVE_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// Data directory of the embedded store.
    #[arg(long, env = "MISSIVE_DATA", default_value = "missive-data")]
    pub data: PathBuf,
    /// Long link over raw TCP.
    #[arg(long, env = "MISSIVE_TCP", default_value = "127.0.0.1:7300")]
    pub tcp: SocketAddr,
    /// Short link (`/v1/<command>`) and WebSocket long link (`/ws`).
    #[arg(long, env = "MISSIVE_HTTP", default_value = "127.0.0.1:7380")]
    pub http: SocketAddr,
    /// Operations: health, Prometheus metrics, the dashboard and the admin API.
    #[arg(long, env = "MISSIVE_ADMIN", default_value = "127.0.0.1:7390")]
    pub admin: SocketAddr,
    /// Bind `--tcp` and `--http` with SO_REUSEPORT, so that several access processes on one
    /// host share one address and the kernel spreads connections over them.
    #[arg(long, env = "MISSIVE_REUSE_PORT", default_value_t = false)]
    pub reuse_port: bool,
    /// What an acknowledged send survives: `process` (a crash of the process) or `power-loss`
    /// (fsync at every group commit).
    #[arg(long, env = "MISSIVE_DURABILITY", default_value_t = Durability::default())]
    pub durability: Durability,
    /// How long messages are kept after every device received them: `delivered`, `forever`,
    /// or a duration such as `7d`, `12h`.
    #[arg(long, env = "MISSIVE_RETENTION", default_value_t = logic_defaults().retention)]
    pub retention: Retention,
    /// Heartbeat interval a connection starts with, told to clients; silence for three of a
    /// connection's intervals closes it.
    #[arg(long, env = "MISSIVE_HEARTBEAT_INTERVAL_S",
          default_value_t = AccessConfig::default().heartbeat_interval.as_secs() as u32)]
    pub heartbeat_interval_s: u32,
    /// Shortest heartbeat interval a client's PING may set (the start interval if above it).
    #[arg(long, env = "MISSIVE_HEARTBEAT_MIN_S",
          default_value_t = AccessConfig::default().heartbeat_min.as_secs() as u32)]
    pub heartbeat_min_s: u32,
    /// Longest heartbeat interval a client's PING may set (the start interval if below it).
    #[arg(long, env = "MISSIVE_HEARTBEAT_MAX_S",
          default_value_t = AccessConfig::default().heartbeat_max.as_secs() as u32)]
    pub heartbeat_max_s: u32,
    /// AUTHs in the logic layer at once per access node; beyond, AUTH is answered OVERLOADED
    /// with a time to wait (a crowd reconnecting at once is admitted as fast as it is served).
    #[arg(long, env = "MISSIVE_AUTH_CONCURRENCY_MAX",
          default_value_t = AccessConfig::default().auth_concurrency_max)]
    pub auth_concurrency_max: usize,
    /// Seconds a new long link has to authenticate.
    #[arg(long, env = "MISSIVE_AUTH_TIMEOUT_S",
          default_value_t = AccessConfig::default().auth_timeout.as_secs())]
    pub auth_timeout_s: u64,
    /// Largest frame body accepted, in bytes.
    #[arg(long, env = "MISSIVE_FRAME_BODY_BYTES_MAX",
          default_value_t = AccessConfig::default().frame_body_bytes_max)]
    pub frame_body_bytes_max: u32,
    /// Long-link connections held at once at most.
    #[arg(long, env = "MISSIVE_CONNECTIONS_MAX",
          default_value_t = AccessConfig::default().connections_max)]
    pub connections_max: usize,
    /// Long-link connections held at once from one client address (a carrier's NAT puts
    /// many users behind one address: keep it well above one user's devices).
    #[arg(long, env = "MISSIVE_CONNECTIONS_PER_ADDRESS_MAX",
          default_value_t = AccessConfig::default().connections_per_address_max)]
    pub connections_per_address_max: usize,
    /// HTTP connections (short link, WebSocket before its upgrade) held at once at most;
    /// beyond, a connection is closed at once.
    #[arg(long, env = "MISSIVE_HTTP_CONNECTIONS_MAX",
          default_value_t = AccessConfig::default().http_connections_max)]
    pub http_connections_max: usize,
    /// HTTP connections held at once from one client address, on the client and the admin
    /// listeners alike.
    #[arg(long, env = "MISSIVE_HTTP_CONNECTIONS_PER_ADDRESS_MAX",
          default_value_t = AccessConfig::default().http_connections_per_address_max)]
    pub http_connections_per_address_max: usize,
    /// Seconds an HTTP request's head may take to arrive, and a kept-alive HTTP connection
    /// may sit idle between requests.
    #[arg(long, env = "MISSIVE_HTTP_HEADER_TIMEOUT_S",
          default_value_t = AccessConfig::default().http_header_timeout.as_secs())]
    pub http_header_timeout_s: u64,
    /// Argon2id memory cost in KiB (lower only for tests and load runs).
    #[arg(long, env = "MISSIVE_PASSWORD_MEMORY_KIB",
          default_value_t = PasswordCost::default().memory_kib)]
    pub password_memory_kib: u32,
    /// Argon2id iterations (lower only for tests and load runs).
    #[arg(long, env = "MISSIVE_PASSWORD_ITERATIONS",
          default_value_t = PasswordCost::default().iterations)]
    pub password_iterations: u32,
    /// How far the version allocator's persisted bound runs ahead.
    #[arg(long, env = "MISSIVE_SEQ_STEP", default_value_t = missive_logic::SEQ_STEP_DEFAULT)]
    pub seq_step: u64,
    /// Store data in these MySQL/MariaDB or PostgreSQL databases instead of the embedded
    /// store (comma-separated or repeated), e.g.
    /// `mysql://missive@db1/missive,mysql://missive@db2/missive`. The first keeps the shard
    /// map, which is made from this list at first start and names the databases from then on
    /// (so later starts need only the first). A replicated database names each of its hosts:
    /// `postgres://missive@db1a:5432,db1b:5432/missive` (its primary is followed through a
    /// failover).
    #[arg(long = "store-url", env = "MISSIVE_STORE_URL")]
    pub store_urls: Vec<String>,
    /// Logical shards of a shard map made at first start: a multiple of the number of
    /// `--store-url`s. Default: the largest such multiple not above 1,024.
    #[arg(long, env = "MISSIVE_STORE_LOGICAL_SHARDS")]
    pub store_logical_shards: Option<u64>,
    /// Database connections per database.
    #[arg(long, env = "MISSIVE_STORE_CONNECTIONS",
          default_value_t = SqlConfig::new(Vec::new()).connections_per_shard)]
    pub store_connections: u32,
    /// Group-commit transactions of the message path in flight per database at once (each on a
    /// connection of its own, besides `--store-connections`).
    #[arg(long, env = "MISSIVE_STORE_WRITERS",
          default_value_t = SqlConfig::new(Vec::new()).writers_per_shard)]
    pub store_writers: usize,
    /// Calls each service runs at once; more wait in its queue, whose delay drives overload
    /// control.
    #[arg(long, env = "MISSIVE_RPC_WORKERS", default_value_t = GuardConfig::default().workers)]
    pub rpc_workers: usize,
    /// Mean queueing delay (ms) above which a service sheds its lowest-priority calls.
    #[arg(long, env = "MISSIVE_RPC_QUEUE_DELAY_MAX_MS",
          default_value_t = GuardConfig::default().queue_delay_max.as_millis() as u64)]
    pub rpc_queue_delay_max_ms: u64,
    /// Who may send a user a 1:1 message: `friends` (the default, as WeChat) or `anyone`
    /// who is not blocked.
    #[arg(long, env = "MISSIVE_DIRECT_MESSAGES", default_value_t = logic_defaults().direct_messages)]
    pub direct_messages: Audience,
    /// Who may put a user into a group (create one with them, or invite them): `friends`
    /// (the default, as WeChat) or `anyone` who is not blocked; or `accept`: nobody is put
    /// in, each user named (who has not blocked the inviter) is invited and must accept.
    #[arg(long, env = "MISSIVE_GROUP_INVITES", default_value_t = logic_defaults().group_invites)]
    pub group_invites: GroupInvites,
    /// Apply the rate limits below; off only for load tests, which create thousands of
    /// accounts from one address.
    #[arg(long, env = "MISSIVE_RATE_LIMITS", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limits: bool,
    /// Failed LOGINs per username (`<count>/<duration>`, e.g. `10/15m`).
    #[arg(long, env = "MISSIVE_RATE_LOGIN_FAILURES_PER_ACCOUNT",
          default_value_t = RateLimits::default().login_failures_per_account)]
    pub rate_login_failures_per_account: Rate,
    /// Failed LOGINs per client address.
    #[arg(long, env = "MISSIVE_RATE_LOGIN_FAILURES_PER_ADDRESS",
          default_value_t = RateLimits::default().login_failures_per_address)]
    pub rate_login_failures_per_address: Rate,
    /// The longest wait (s) that the back-off of failed LOGINs grows to.
    #[arg(long, env = "MISSIVE_LOGIN_BACKOFF_MAX_S",
          default_value_t = RateLimits::default().login_backoff_max.as_secs())]
    pub login_backoff_max_s: u64,
    /// LOGIN attempts per client address.
    #[arg(long, env = "MISSIVE_RATE_LOGINS_PER_ADDRESS",
          default_value_t = RateLimits::default().logins_per_address)]
    pub rate_logins_per_address: Rate,
    /// REGISTERs per client address.
    #[arg(long, env = "MISSIVE_RATE_REGISTRATIONS_PER_ADDRESS",
          default_value_t = RateLimits::default().registrations_per_address)]
    pub rate_registrations_per_address: Rate,
    /// SENDs per user, all devices together.
    #[arg(long, env = "MISSIVE_RATE_SENDS_PER_USER",
          default_value_t = RateLimits::default().sends_per_user)]
    pub rate_sends_per_user: Rate,
    /// SENDs per device.
    #[arg(long, env = "MISSIVE_RATE_SENDS_PER_DEVICE",
          default_value_t = RateLimits::default().sends_per_device)]
    pub rate_sends_per_device: Rate,
    /// Bytes a user uploads (`<bytes>/<duration>`; default 1 GiB a day).
    #[arg(long, env = "MISSIVE_RATE_UPLOAD_BYTES_PER_USER",
          default_value_t = RateLimits::default().upload_bytes_per_user)]
    pub rate_upload_bytes_per_user: Rate,
    /// Users a user puts into groups (created with or invited).
    #[arg(long, env = "MISSIVE_RATE_GROUP_ADDS_PER_USER",
          default_value_t = RateLimits::default().group_adds_per_user)]
    pub rate_group_adds_per_user: Rate,
    /// TYPING signals a user sends (all devices and conversations together).
    #[arg(long, env = "MISSIVE_RATE_TYPING_PER_USER",
          default_value_t = RateLimits::default().typing_per_user)]
    pub rate_typing_per_user: Rate,
    /// SEARCHes a user makes.
    #[arg(long, env = "MISSIVE_RATE_SEARCHES_PER_USER",
          default_value_t = RateLimits::default().searches_per_user)]
    pub rate_searches_per_user: Rate,
    /// Offline push: at most one notification per user this often, in seconds; what comes
    /// meanwhile is coalesced into the next.
    #[arg(long, env = "MISSIVE_PUSH_INTERVAL_S", default_value_t = 10)]
    pub push_interval_s: u64,
    /// How long a push service may keep a notification for a device that is off, in seconds.
    #[arg(long, env = "MISSIVE_PUSH_TTL_S", default_value_t = 86_400)]
    pub push_ttl_s: u64,
    /// Put the start of a message's text into its offline push notification. Off by default:
    /// notifications then pass no words through third-party push services.
    #[arg(long, env = "MISSIVE_PUSH_CONTENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub push_content: bool,
    /// Let push targets name private or loopback addresses, and plain http: for a push
    /// service inside your own network. Keep it off on the internet (the server would call
    /// whatever address a client names).
    #[arg(long, env = "MISSIVE_PUSH_PRIVATE_ENDPOINTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub push_private_endpoints: bool,
    /// VAPID's contact for push services' operators: `mailto:you@example.com` or an https URL.
    #[arg(long, env = "MISSIVE_PUSH_CONTACT")]
    pub push_contact: Option<String>,
    /// The server's VAPID key (PKCS#8, created at first start; default `<data>/vapid.key`).
    /// Every logic node of a deployment needs the same one: browsers subscribe to it.
    #[arg(long, env = "MISSIVE_VAPID_KEY_FILE")]
    pub vapid_key_file: Option<PathBuf>,
    /// Seconds a user's last long link on an access node may be gone before the user counts
    /// as offline there (a reconnect within it is no news to their friends).
    #[arg(long, env = "MISSIVE_PRESENCE_GRACE_S", default_value_t = 5)]
    pub presence_grace_s: u64,
    /// How long after sending a sender may edit a text, in seconds (default 48 hours).
    #[arg(long, env = "MISSIVE_EDIT_WINDOW_S", default_value_t = 48 * 3600)]
    pub edit_window_s: u64,
    /// Keep the texts that edits replace, for the operators to read (`missive-cli admin
    /// message`); by default they are gone.
    #[arg(long, env = "MISSIVE_KEEP_EDIT_HISTORY", default_value_t = false, action = clap::ArgAction::Set)]
    pub keep_edit_history: bool,
    /// Members a group holds at most, its owner included.
    #[arg(long, env = "MISSIVE_GROUP_MEMBERS_MAX",
          default_value_t = logic_defaults().group_members_max)]
    pub group_members_max: usize,
    /// The largest image or file accepted, in bytes.
    #[arg(long, env = "MISSIVE_MEDIA_BYTES_MAX", default_value_t = logic_defaults().media_bytes_max)]
    pub media_bytes_max: usize,
    /// Bytes of media one user keeps stored at most (10 GiB); 0 for no quota.
    #[arg(long, env = "MISSIVE_MEDIA_QUOTA_BYTES", default_value_t = logic_defaults().media_quota_bytes)]
    pub media_quota_bytes: u64,
    /// Length of a statistics period in seconds: every period the figures are added up,
    /// kept in the store and reported (default: hourly).
    #[arg(long, env = "MISSIVE_STATS_PERIOD_S",
          default_value_t = logic_defaults().stats_period.as_secs() as u32)]
    pub stats_period_s: u32,
    /// On a sharded store: how long a send's delivery to another shard may stay pending
    /// (its attempt failed and its sender never retried) before a logic node re-drives it.
    #[arg(long, env = "MISSIVE_PENDING_REDRIVE_AFTER_S",
          default_value_t = logic_defaults().pending_redrive_after.as_secs())]
    pub pending_redrive_after_s: u64,
    /// How old the store's totals (users, groups, messages) may be when shown; counting
    /// them scans tables.
    #[arg(long, env = "MISSIVE_TOTALS_MAX_AGE_S",
          default_value_t = logic_defaults().totals_max_age.as_secs())]
    pub totals_max_age_s: u64,
    /// The admin API's credential. Default: the token in `--admin-token-file`.
    #[arg(long, env = "MISSIVE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Where the admin token is kept (created at first start, mode 0600). Default:
    /// `admin.token` in the data directory.
    #[arg(long, env = "MISSIVE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds between two points of the dashboard's curves.
    #[arg(long, env = "MISSIVE_DASHBOARD_SAMPLE_S",
          default_value_t = missive_ops::SAMPLE_INTERVAL_DEFAULT.as_secs())]
    pub dashboard_sample_s: u64,
    /// Mail each period's statistics through this relay: `smtp://[user:password@]host[:port]`.
    #[arg(long, env = "MISSIVE_REPORT_SMTP")]
    pub report_smtp: Option<String>,
    /// The reports' sender address.
    #[arg(long, env = "MISSIVE_REPORT_FROM", default_value = "missive@localhost")]
    pub report_from: String,
    /// The reports' recipients (comma-separated).
    #[arg(long, env = "MISSIVE_REPORT_TO", value_delimiter = ',')]
    pub report_to: Vec<String>,
    /// POST each period's statistics as JSON to this url.
    #[arg(long, env = "MISSIVE_REPORT_WEBHOOK")]
    pub report_webhook: Option<String>,
    /// The deployment's name in reports.
    #[arg(long, env = "MISSIVE_DEPLOYMENT", default_value = "missive")]
    pub deployment: String,
    /// Record metrics (`/metrics`, the dashboard and the statistics need them); off only to
    /// measure what recording costs.
    #[arg(long, env = "MISSIVE_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Log format: `text` or `json`.
    #[arg(long, env = "MISSIVE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// The logic layer's defaults, which the flags' defaults are (each default lives once, in
/// the library that uses it).
fn logic_defaults() -> LogicConfig {
    LogicConfig::default()
}

impl Settings {
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The routing engine, if one is named: a url, or sentinels with a master name, never
    /// both and never half of the latter.
    pub fn routing_engine(&self) -> anyhow::Result<Option<Engine>> {
        let sentinels: Vec<String> =
            self.redis_sentinels.iter().map(|s| s.trim().to_string()).collect();
        match (&self.redis_url, sentinels.is_empty(), &self.redis_master_name) {
            (None, true, None) => Ok(None),
            (Some(url), true, None) => Ok(Some(Engine::Url(url.clone()))),
            (None, false, Some(master)) if !master.is_empty() => {
                if sentinels.iter().any(String::is_empty) {
                    bail!("--redis-sentinels names an empty address");
                }
                Ok(Some(Engine::Sentinel { sentinels, master: master.clone() }))
            }
            (Some(_), _, _) => bail!(
                "--redis-url names one Redis server, --redis-sentinels and --redis-master-name \
                 the master of a Sentinel deployment: give one or the other, not both"
            ),
            (None, false, _) => bail!("--redis-sentinels needs --redis-master-name"),
            (None, true, Some(_)) => bail!("--redis-master-name needs --redis-sentinels"),
        }
    }

    /// The nodes named for one data-access service (a field of `Storage`, e.g.
    /// `account_store`) by its own flag; empty when the flag is not given.
    pub fn store_rpc_of(&self, service: &str) -> &[String] {
        match service {
            "account_store" => &self.account_store_rpc,
            "contact_store" => &self.contact_store_rpc,
            "message_store" => &self.message_store_rpc,
            "group_store" => &self.group_store_rpc,
            "media_store" => &self.media_store_rpc,
            "ops_store" => &self.ops_store_rpc,
            "seq_store" => &self.seq_store_rpc,
            _ => panic!("no --{}-rpc flag for {service}", service.replace('_', "-")),
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file.clone().unwrap_or_else(|| self.data.join(ADMIN_TOKEN_FILE))
    }

    pub fn stats_period(&self) -> Duration {
        Duration::from_secs(u64::from(self.stats_period_s.max(1)))
    }

    pub fn password_cost(&self) -> PasswordCost {
        PasswordCost { memory_kib: self.password_memory_kib, iterations: self.password_iterations }
    }

    pub fn rate_limits(&self) -> RateLimits {
        RateLimits {
            enabled: self.rate_limits,
            login_failures_per_account: self.rate_login_failures_per_account,
            login_failures_per_address: self.rate_login_failures_per_address,
            login_backoff_max: Duration::from_secs(self.login_backoff_max_s),
            logins_per_address: self.rate_logins_per_address,
            registrations_per_address: self.rate_registrations_per_address,
            sends_per_user: self.rate_sends_per_user,
            sends_per_device: self.rate_sends_per_device,
            upload_bytes_per_user: self.rate_upload_bytes_per_user,
            group_adds_per_user: self.rate_group_adds_per_user,
            typing_per_user: self.rate_typing_per_user,
            searches_per_user: self.rate_searches_per_user,
            push_interval: Duration::from_secs(self.push_interval_s.max(1)),
        }
    }

    pub fn guard_config(&self) -> GuardConfig {
        GuardConfig {
            workers: self.rpc_workers.max(1),
            queue_delay_max: Duration::from_millis(self.rpc_queue_delay_max_ms),
            ..GuardConfig::default()
        }
    }

    /// The access layer's limits, with its connection caps fitted to what `descriptors`
    /// (the process's descriptor limit) can hold: see [`fit_to_descriptors`].
    pub fn access_config_within(&self, descriptors: u64) -> AccessConfig {
        fit_to_descriptors(self.access_config(), descriptors)
    }

    pub fn access_config(&self) -> AccessConfig {
        AccessConfig {
            frame_body_bytes_max: self.frame_body_bytes_max,
            connections_max: self.connections_max,
            connections_per_address_max: self.connections_per_address_max.max(1),
            http_connections_max: self.http_connections_max.max(1),
            http_connections_per_address_max: self.http_connections_per_address_max.max(1),
            http_header_timeout: Duration::from_secs(self.http_header_timeout_s.max(1)),
            auth_timeout: Duration::from_secs(self.auth_timeout_s),
            heartbeat_interval: Duration::from_secs(u64::from(self.heartbeat_interval_s.max(1))),
            heartbeat_min: Duration::from_secs(u64::from(self.heartbeat_min_s.max(1))),
            heartbeat_max: Duration::from_secs(u64::from(self.heartbeat_max_s.max(1))),
            auth_concurrency_max: self.auth_concurrency_max.max(1),
            ..AccessConfig::default()
        }
    }
}

/// Descriptors kept, at the least, for all but client connections: the store's files and
/// connections, the listeners, the admin address's places, RPC and Redis connections, logs.
const DESCRIPTORS_RESERVED_MIN: u64 = 256;

/// Caps the long links and HTTP connections so that, together, they leave a reserve of the
/// process's `descriptors` (an eighth, at least 256): a flood of
/// connections is refused at the caps instead of using up every descriptor, so the store,
/// the admin address and `/healthz` keep working. HTTP gets up to a quarter of what remains
/// (less when configured lower), long links the rest; a configured cap below its share stays
/// as configured.
pub fn fit_to_descriptors(mut config: AccessConfig, descriptors: u64) -> AccessConfig {
    let reserve = (descriptors / 8).max(DESCRIPTORS_RESERVED_MIN);
    let available = descriptors.saturating_sub(reserve).max(2);
    let share = |part: u64| usize::try_from(part).unwrap_or(usize::MAX).max(1);
    config.http_connections_max = config.http_connections_max.min(share(available / 4));
    let left = available.saturating_sub(config.http_connections_max as u64);
    config.connections_max = config.connections_max.min(share(left));
    config
}

/// Raises the soft descriptor limit to the hard one (the default soft limit is often 1,024)
/// and answers the limit the process now has.
pub fn descriptor_limit() -> u64 {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    rlimit::increase_nofile_limit(hard).unwrap_or(soft)
}

const SECRET_FILE: &str = "sync-key.secret";
const SECRET_BYTES: usize = 32;
const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Admin tokens are told apart from users' at a glance.
const ADMIN_TOKEN_PREFIX: &str = "madm_";

/// The SyncKey signing secret, created at first start and kept (by default in the data
/// directory) so that keys stay valid across restarts.
pub fn load_or_create_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    let path = settings.secret_file.clone().unwrap_or_else(|| settings.data.join(SECRET_FILE));
    load_or_create(
        &path,
        |bytes| bytes.len() == SECRET_BYTES,
        || {
            let mut secret = vec![0u8; SECRET_BYTES];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
            secret
        },
    )
}

/// The server's VAPID key, from `--vapid-key-file` or `<data>/vapid.key` (created at first
/// start).
pub fn load_or_create_vapid_key(settings: &Settings) -> anyhow::Result<missive_push::VapidKey> {
    let path = settings.vapid_key_file.clone().unwrap_or_else(|| settings.data.join("vapid.key"));
    let pkcs8 = load_or_create(
        &path,
        |bytes| missive_push::VapidKey::from_pkcs8(bytes).is_ok(),
        || missive_push::VapidKey::generate().expect("a new P-256 key").pkcs8().to_vec(),
    )?;
    Ok(missive_push::VapidKey::from_pkcs8(&pkcs8)?)
}

/// The deployment's node key, from `--cluster-secret-file` (created at first start, like the
/// SyncKey secret); a key of this process alone when the file is not named (no RPC).
pub fn load_or_create_node_key(settings: &Settings) -> anyhow::Result<NodeKey> {
    let Some(path) = &settings.cluster_secret_file else {
        return Ok(NodeKey::random());
    };
    let secret = load_or_create(
        path,
        |bytes| bytes.len() >= SECRET_BYTES,
        || {
            let mut secret = vec![0u8; SECRET_BYTES];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
            secret
        },
    )?;
    Ok(NodeKey::from_secret(&secret))
}

/// What this node's calls to `https://` RPC endpoints trust: Mozilla's roots and
/// `--rpc-ca-file`.
pub fn rpc_trust(settings: &Settings) -> anyhow::Result<Trust> {
    let Some(path) = &settings.rpc_ca_file else { return Ok(Trust::default()) };
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Trust::with_ca_pem(pem))
}

/// The admin credential: `--admin-token` if given, else the token file, created at first
/// start (mode 0600) with a fresh random token.
pub fn load_or_create_admin_token(settings: &Settings) -> anyhow::Result<String> {
    if let Some(token) = &settings.admin_token {
        anyhow::ensure!(token.len() >= 16, "--admin-token must be at least 16 characters");
        return Ok(token.clone());
    }
    let path = settings.admin_token_path();
    let valid = |bytes: &[u8]| std::str::from_utf8(bytes).is_ok_and(|t| t.trim().len() >= 16);
    let token = load_or_create(&path, valid, || {
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        format!("{ADMIN_TOKEN_PREFIX}{hex}\n").into_bytes()
    })?;
    Ok(String::from_utf8(token).expect("checked").trim().to_string())
}

/// A private file's content: read if it exists (and `valid` accepts it), else created with
/// `create()`. Processes starting together agree on one content: each writes aside, then
/// links into place, which fails if another got there first; then its file is the one.
fn load_or_create(
    path: &Path,
    valid: impl Fn(&[u8]) -> bool,
    create: impl Fn() -> Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(content) if valid(&content) => return Ok(content),
        Ok(_) => anyhow::bail!("{} is corrupt", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let content = create();
    let temporary = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
    write_private(&temporary, &content)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(content),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create(path, valid, create)
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// The settings of a command line (`missive serve` flags), for tests.
#[cfg(test)]
pub(crate) fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Settings {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }
    let words = std::iter::once("missive").chain(args);
    <Cli as clap::Parser>::parse_from(words).settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps_leave_a_reserve_of_the_descriptor_limit() {
        let fitted = |descriptors| {
            let config = fit_to_descriptors(AccessConfig::default(), descriptors);
            (config.connections_max, config.http_connections_max)
        };
        // 20,000 descriptors: a reserve of 2,500; 13,125 long links, 4,375 HTTP connections.
        assert_eq!(fitted(20_000), (13_125, 4_375));
        // Fewer HTTP connections configured: what they leave goes to long links.
        let few_http = AccessConfig { http_connections_max: 100, ..AccessConfig::default() };
        let config = fit_to_descriptors(few_http, 20_000);
        assert_eq!((config.connections_max, config.http_connections_max), (17_400, 100));
        // Plenty of descriptors: the configured caps (100,000 and 10,000) stand.
        assert_eq!(fitted(1_048_576), (100_000, 10_000));
        // A tiny limit still leaves the reserve and a place for each kind.
        assert_eq!(fitted(300), (33, 11));
        assert_eq!(fitted(10), (1, 1));
        for descriptors in [300, 1_024, 20_000, 65_536] {
            let (long, http) = fitted(descriptors);
            let reserve = (descriptors / 8).max(DESCRIPTORS_RESERVED_MIN);
            assert!(long as u64 + http as u64 + reserve <= descriptors, "{descriptors}");
        }
    }

    #[test]
    fn every_data_access_service_has_its_own_flag() {
        for service in missive_proto::internal::Storage::SERVICES {
            let flag = format!("--{}-rpc", service.replace('_', "-"));
            let settings = parse([flag.as_str(), "http://node:7401"]);
            assert_eq!(settings.store_rpc_of(service), ["http://node:7401"], "{flag}");
        }
    }

    #[test]
    fn logic_nodes_starting_together_agree_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared").join("sync-key.secret");
        let settings = parse(["--secret-file", file.to_str().unwrap()]);
        let nodes: Vec<_> = (0..8)
            .map(|_| {
                let settings = settings.clone();
                std::thread::spawn(move || load_or_create_secret(&settings).unwrap())
            })
            .collect();
        let secrets: Vec<Vec<u8>> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
        assert!(secrets.iter().all(|s| *s == secrets[0]), "one secret for all");
        assert_eq!(std::fs::read(&file).unwrap(), secrets[0], "and it is the one on disk");
        let leftovers = std::fs::read_dir(file.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
