//! The Missive server: wires the tiers together and runs them until shutdown.
//!
//! In the all-in-one default every tier runs in this process and calls the next through its
//! service trait directly: the access layer's dispatcher calls the logic layer's `ClientApi`,
//! the logic layer calls the data-access services and the access layer's `Push`. With
//! `--role`, a process runs only some tiers: each service it lacks is reached through the
//! same trait over the RPC framework (`*Remote`), each it offers is served on its RPC
//! listener (`*_routes`), and notifies cross nodes through the routing engine. This crate
//! owns configuration, listeners, the admin endpoint and process signals; it holds no
//! business logic.

mod memory;
pub use memory::on_idle_worker;
pub mod plan;
pub mod settings;
mod telemetry;
mod tls;

use anyhow::Context as _;
use missive_access::serve::HttpLimits;
use missive_access::tcp::LinkServer;
use missive_access::{AccessConfig, http};
use missive_access::{Dispatcher, Registry};
use missive_logic::{Deps, Logic, LogicConfig, SeqAllocator};
use missive_ops::report::{ReportConfig, Reporter};
use missive_ops::{AdminToken, Ops, OpsConfig, stats};
use missive_proto::admin::{Admin, AdminGuarded, AdminRemote, admin_routes};
use missive_proto::internal::{
    AccountStore, ClientApi, ClientApiGuarded, ClientApiRemote, ContactStore, GroupStore, Limiter,
    Links, LinksGuarded, LinksRemote, MessageStore, OfflinePush, OpsStore, Push, PushGuarded, Seq,
    SeqGuarded, SeqRemote, SeqStore, Storage, client_api_routes, links_routes, seq_routes,
};
use missive_route::{AccessRoutes, RedisLimiter, RedisPush, RouteConfig, SignOut, SignOuts};
use missive_rpc::GuardConfig;
use missive_rpc::remote::{Client, NodeKey, Routes, Trust};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use missive_storage_sql::{SqlConfig, SqlStore, split_url_list};
use missive_tls::TlsAcceptor;
use plan::{LogicPlan, NotifyVia, Plan, Reach};
use settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;
use tls::{Certificates, Listener};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Connections the admin address holds at once: operators, scrapes and health checks.
const ADMIN_CONNECTIONS_MAX: usize = 64;

/// The addresses actually bound (ports chosen by the system when 0 was asked for); a
/// listener the process's roles do not need is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub tcp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub rpc: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// Which listeners speak TLS.
    pub tls: Secured,
}

/// Which listeners speak TLS: the client ones (TCP, HTTP and WebSocket) share a certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secured {
    pub client: bool,
    pub admin: bool,
    pub rpc: bool,
}

/// What the steps of a start share: the services this process offers others, and the
/// background tasks to wait for at shutdown.
struct Node {
    served: Routes,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    guard: GuardConfig,
    /// Signs the calls this process makes and checks the calls it serves.
    key: NodeKey,
    /// What calls to `https://` nodes trust.
    trust: Trust,
    shutdown: CancellationToken,
}

impl Node {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name, tokio::spawn(task)));
    }

    /// A client of `service` on the nodes at `urls`, signing with the deployment's key.
    fn client(&self, service: &'static str, urls: &[String]) -> anyhow::Result<Client> {
        Ok(Client::new(service, urls, &self.key, &self.trust)?)
    }
}

/// The logic tier of this process: what the access role and the admin address call.
struct LogicHere {
    api: Arc<dyn ClientApi>,
    links: Arc<dyn Links>,
    admin: Arc<dyn Admin>,
    ops_store: Arc<dyn OpsStore>,
}

/// The access tier of this process, kept to drain it at shutdown.
struct AccessHere {
    links: LinkServer,
    tcp: tokio::task::JoinHandle<()>,
    http: tokio::task::JoinHandle<()>,
    routes: Option<AccessRoutes>,
}

/// Runs the server until `shutdown` is cancelled, then drains connections and returns.
/// `on_bound` hears the listening addresses once every listener is up.
pub async fn run(
    settings: Settings,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let plan = Plan::of(&settings)?;
    let descriptors = settings::descriptor_limit();
    let access_config = settings.access_config_within(descriptors);
    tracing::info!(
        descriptors,
        long_links = access_config.connections_max,
        http_connections = access_config.http_connections_max,
        "connection caps fitted to the descriptor limit"
    );
    // Every role keeps something here: the store its data, every node its dashboard curves.
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating {}", settings.data.display()))?;
    let renders = telemetry::install(settings.metrics);
    let mut node = Node {
        served: Routes::default(),
        tasks: Vec::new(),
        guard: settings.guard_config(),
        key: settings::load_or_create_node_key(&settings)?,
        trust: settings::rpc_trust(&settings)?,
        shutdown,
    };
    let certificates = Certificates::load(&settings)?;
    let admin_tls = certificates.acceptor(Listener::Admin, settings.admin)?;
    let node_id = settings.node_id.clone().unwrap_or_else(random_node_id);
    let route_config = settings.routing_engine()?.map(|engine| RouteConfig {
        namespace: settings.redis_namespace.clone(),
        ..RouteConfig::new(engine, node_id.clone())
    });

    let stores = match plan.store {
        true => Some(open_stores(&settings, &node.guard, &node_id).await?),
        false => None,
    };
    if let Some(stores) = &stores {
        node.served = std::mem::take(&mut node.served).merge(stores.routes());
    }
    let registry = plan.access.as_ref().map(|_| Registry::new());
    let logic = match &plan.logic {
        Some(logic) => {
            let ctx = (stores.as_ref(), registry.as_ref(), route_config.as_ref());
            Some(start_logic(&settings, logic, ctx, &mut node).await?)
        }
        None => None,
    };

    let admin_listener = bind(settings.admin).await?;
    let admin = admin_listener.local_addr()?;
    let tls = certificates.secured();
    let mut bound = Bound { tcp: None, http: None, rpc: None, admin, tls };
    if let Some(address) = plan.rpc {
        let tls = certificates.acceptor(Listener::Rpc, address)?;
        bound.rpc = Some(serve_rpc(address, tls, &mut node).await?);
    }
    let admin: Option<Arc<dyn Admin>> = match (&plan.admin, &logic) {
        (Some(Reach::Here), Some(logic)) => Some(logic.admin.clone()),
        (Some(Reach::Nodes(urls)), _) => Some(AdminRemote::new(node.client("logic", urls)?)),
        _ => None,
    };
    let access = match (&plan.access, registry) {
        (Some(access), Some(registry)) => {
            let (api, links): (Arc<dyn ClientApi>, Arc<dyn Links>) = match (&access.logic, &logic) {
                (Reach::Here, Some(logic)) => (logic.api.clone(), logic.links.clone()),
                (Reach::Nodes(urls), _) => {
                    let client = node.client("logic", urls)?;
                    (ClientApiRemote::new(client.clone()), LinksRemote::new(client))
                }
                (Reach::Here, None) => unreachable!("the plan runs the logic here"),
            };
            let grace = std::time::Duration::from_secs(settings.presence_grace_s);
            let reporter = missive_access::presence::report(
                registry.clone(),
                links,
                grace,
                node.shutdown.clone(),
            );
            node.spawn("presence", reporter);
            let routes = match (access.routes, &route_config) {
                (true, Some(config)) => {
                    Some(AccessRoutes::start(config.clone(), registry.clone()).await?)
                }
                _ => None,
            };
            let config = access_config.clone();
            let tls = (
                certificates.acceptor(Listener::Tcp, settings.tcp)?,
                certificates.acceptor(Listener::Http, settings.http)?,
            );
            let links = (config, api, registry, routes, tls);
            Some(start_access(&settings, links, &mut bound, &node).await?)
        }
        _ => None,
    };
    let ops_store = logic.map(|logic| logic.ops_store);
    let admin_listener = (admin_listener, admin_tls);
    let admin_task =
        start_ops(&settings, admin, ops_store, renders, admin_listener, &node_id, &mut node)?;
    node.spawn("tls", certificates.watch(node.shutdown.clone()));
    node.spawn("memory", memory::return_freed_memory(node.shutdown.clone()));
    tracing::info!(
        roles = ?settings.roles,
        node = %node_id,
        tcp = ?bound.tcp,
        http = ?bound.http,
        rpc = ?bound.rpc,
        admin = %bound.admin,
        "missive serving"
    );
    on_bound(bound);

    node.shutdown.cancelled().await;
    let drain = access_config.drain_timeout;
    if let Some(access) = access {
        tracing::info!("shutting down: draining connections");
        let _ = access.tcp.await;
        access.links.drain().await;
        // An HTTP peer that keeps its connection open must not hold the process forever.
        if tokio::time::timeout(drain, access.http).await.is_err() {
            tracing::warn!("http connections still open after the drain timeout");
        }
        if let Some(routes) = access.routes {
            routes.stop().await;
        }
    }
    node.tasks.push(("admin", admin_task));
    for (name, task) in node.tasks {
        if tokio::time::timeout(drain, task).await.is_err() {
            tracing::warn!(task = name, "still running after the drain timeout");
        }
    }
    tracing::info!("shut down");
    Ok(())
}

/// The logic role: the business services over the stores the plan names, the version
/// allocator, notifies through this process's access role or the routing engine, and the
/// janitor and counter in the background. Its services are offered over RPC.
async fn start_logic(
    settings: &Settings,
    plan: &LogicPlan,
    (local, registry, routing): (Option<&Storage>, Option<&Arc<Registry>>, Option<&RouteConfig>),
    node: &mut Node,
) -> anyhow::Result<LogicHere> {
    let stores = Storage::reach(local, |service| {
        let reach = plan.stores.iter().find(|(s, _)| *s == service).map(|(_, r)| r);
        match reach.expect("the plan names every store") {
            Reach::Here => Ok::<_, anyhow::Error>(None),
            Reach::Nodes(urls) => Ok(Some(node.client(service, urls)?)),
        }
    })?;
    let push: Arc<dyn Push> = match (plan.notify, routing, registry) {
        (NotifyVia::Redis, Some(config), _) => RedisPush::connect(config.clone()).await?,
        (NotifyVia::Here, _, Some(registry)) => PushGuarded::new(registry.clone(), &node.guard),
        _ => unreachable!("the plan checked how notifies travel"),
    };
    // With the routing engine, every logic node counts against the same rate-limit buckets.
    let limiter: Option<Arc<dyn Limiter>> = match routing {
        Some(config) => Some(RedisLimiter::connect(config.clone()).await?),
        None => None,
    };
    let allocator: Arc<dyn Seq> = SeqGuarded::new(
        Arc::new(SeqAllocator::new(stores.seq_store.clone(), settings.seq_step)),
        &node.guard,
    );
    let served = std::mem::take(&mut node.served).merge(seq_routes(allocator.clone()));
    let seq = match &plan.seq {
        Reach::Here => allocator,
        Reach::Nodes(urls) => SeqRemote::new(node.client("seq", urls)?),
    };
    if !plan.secret_shared {
        tracing::warn!("no --secret-file: SyncKeys signed here are valid only on this logic node");
    }
    let vapid = Arc::new(settings::load_or_create_vapid_key(settings)?);
    let push_config = missive_push::PushConfig {
        allow_private_endpoints: settings.push_private_endpoints,
        contact: settings.push_contact.clone(),
        ..missive_push::PushConfig::default()
    };
    let offline_push: Arc<dyn OfflinePush> =
        Arc::new(missive_push::PushSender::new(push_config, vapid.clone()));
    let deps = Deps {
        accounts: stores.account_store,
        contacts: stores.contact_store,
        messages: stores.message_store,
        groups: stores.group_store,
        media: stores.media_store,
        seq,
        push,
        ops: stores.ops_store.clone(),
        limiter,
        offline_push: Some(offline_push),
    };
    let logic = Logic::new(
        deps,
        LogicConfig {
            sync_key_secret: settings::load_or_create_secret(settings)?,
            password_cost: settings.password_cost(),
            retention: settings.retention,
            direct_messages: settings.direct_messages,
            group_invites: settings.group_invites,
            rate_limits: settings.rate_limits(),
            group_members_max: settings.group_members_max.max(1),
            media_bytes_max: settings.media_bytes_max,
            media_quota_bytes: settings.media_quota_bytes,
            edit_window: std::time::Duration::from_secs(settings.edit_window_s),
            push_ttl: std::time::Duration::from_secs(settings.push_ttl_s),
            push_content: settings.push_content,
            vapid_public_key: vapid.public_key().to_vec(),
            keep_edit_history: settings.keep_edit_history,
            stats_period: settings.stats_period(),
            totals_max_age: std::time::Duration::from_secs(settings.totals_max_age_s),
            pending_redrive_after: std::time::Duration::from_secs(
                settings.pending_redrive_after_s.max(1),
            ),
            ..LogicConfig::default()
        },
    );
    if let Some(config) = routing {
        // Sessions signed out through other logic nodes leave this node's cache at once.
        let forgetting = logic.clone();
        let sign_outs = SignOuts::start(config.clone(), move |sign_out| match sign_out {
            SignOut::Device { user_id, device_id } => {
                forgetting.forget_sessions(user_id, device_id);
            }
            SignOut::Unknown => forgetting.forget_all_sessions(),
        })
        .await?;
        let shutdown = node.shutdown.clone();
        node.spawn("sign-outs", async move {
            shutdown.cancelled().await;
            sign_outs.stop().await;
        });
    }
    node.spawn("janitor", logic.clone().run_janitor(node.shutdown.clone().cancelled_owned()));
    node.spawn("counter", logic.clone().run_counter(node.shutdown.clone().cancelled_owned()));
    node.spawn("pusher", logic.clone().run_pusher(node.shutdown.clone().cancelled_owned()));
    let admin: Arc<dyn Admin> = AdminGuarded::new(logic.clone(), &node.guard);
    let links: Arc<dyn Links> = LinksGuarded::new(logic.clone(), &node.guard);
    let api: Arc<dyn ClientApi> = ClientApiGuarded::new(logic, &node.guard);
    node.served = served
        .merge(admin_routes(admin.clone()))
        .merge(client_api_routes(api.clone()))
        .merge(links_routes(links.clone()));
    Ok(LogicHere { api, links, admin, ops_store: stores.ops_store })
}

/// Serves this process's services to the others on `address`, in TLS with `tls`.
async fn serve_rpc(
    address: SocketAddr,
    tls: Option<TlsAcceptor>,
    node: &mut Node,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(address).await?;
    let bound = listener.local_addr()?;
    let (key, shutdown) = (node.key.clone(), node.shutdown.clone());
    let rpc = std::mem::take(&mut node.served).serve(listener, key, tls, shutdown);
    node.spawn("rpc", async move {
        if let Err(error) = rpc.await {
            tracing::error!(%error, "rpc server failed");
        }
    });
    Ok(bound)
}

/// What the access role is made of: its limits, the logic it calls, its connections, the
/// routing engine's side of it, and the TLS of the TCP and HTTP listeners.
type AccessParts = (
    AccessConfig,
    Arc<dyn ClientApi>,
    Arc<Registry>,
    Option<AccessRoutes>,
    (Option<TlsAcceptor>, Option<TlsAcceptor>),
);

/// The access role: the TCP long link, and the short link and WebSocket on the HTTP address.
async fn start_access(
    settings: &Settings,
    (config, api, registry, routes, (tcp_tls, http_tls)): AccessParts,
    bound: &mut Bound,
    node: &Node,
) -> anyhow::Result<AccessHere> {
    let dispatcher = Arc::new(Dispatcher::new(api));
    let limits = config.http_limits();
    let links = LinkServer::new(dispatcher, registry, config);
    let tcp = bind_shared(settings.tcp, settings.reuse_port)?;
    let http_listener = bind_shared(settings.http, settings.reuse_port)?;
    bound.tcp = Some(tcp.local_addr()?);
    bound.http = Some(http_listener.local_addr()?);
    let tcp_task = tokio::spawn({
        let links = links.clone();
        let shutdown = node.shutdown.clone();
        async move { links.run_tcp(tcp, tcp_tls, shutdown).await }
    });
    let http_task = tokio::spawn(missive_access::serve::serve(
        http_listener,
        http::router(links.clone(), node.shutdown.clone()),
        limits,
        http_tls,
        node.shutdown.clone(),
    ));
    Ok(AccessHere { links, tcp: tcp_task, http: http_task, routes })
}

/// The admin address, on every node: health, metrics, the dashboard and its sampler, and
/// where the admin API is reached, the API, the statistics' samples and (with the logic
/// role) the periodic statistics job and its reports.
fn start_ops(
    settings: &Settings,
    admin: Option<Arc<dyn Admin>>,
    ops_store: Option<Arc<dyn OpsStore>>,
    renders: missive_ops::Renders,
    (listener, tls): (TcpListener, Option<TlsAcceptor>),
    node_id: &str,
    node: &mut Node,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // The credential is made only where the admin API is served.
    let admin_api = match &admin {
        Some(admin) => {
            let token = AdminToken::new(&settings::load_or_create_admin_token(settings)?);
            Some((admin.clone(), token))
        }
        None => None,
    };
    let ops = Ops::new(
        OpsConfig {
            node_id: node_id.to_string(),
            sample_interval: std::time::Duration::from_secs(settings.dashboard_sample_s),
            series_file: settings.data.join("dashboard-series.json"),
        },
        renders.clone(),
        admin_api,
    );
    let shutdown = node.shutdown.clone();
    let stopped = || shutdown.clone().cancelled_owned();
    if settings.metrics {
        let sampler = ops.clone().run_sampler(stopped());
        if let Some(admin) = admin {
            let period = settings.stats_period();
            let report = stats::report_samples(
                admin,
                renders.figures,
                node_id.to_string(),
                period,
                stopped(),
            );
            node.spawn("samples", report);
        }
        node.spawn("sampler", sampler);
    }
    if let Some(store) = ops_store {
        let reporter = Reporter::new(ReportConfig {
            smtp_url: settings.report_smtp.clone(),
            mail_from: settings.report_from.clone(),
            mail_to: settings.report_to.clone(),
            webhook_url: settings.report_webhook.clone(),
            deployment: settings.deployment.clone(),
        })?;
        let job = stats::run_job(store, Arc::new(reporter), settings.stats_period(), stopped());
        node.spawn("statistics", job);
    }
    // The admin address has places of its own, so that health checks, scrapes and operators
    // get in while the client listeners are full.
    let limits = HttpLimits {
        name: "admin",
        connections_max: ADMIN_CONNECTIONS_MAX,
        connections_per_address_max: settings.http_connections_per_address_max.max(1),
        header_timeout: settings.access_config().http_header_timeout,
    };
    let admin =
        missive_access::serve::serve(listener, ops.router(), limits, tls, node.shutdown.clone());
    Ok(tokio::spawn(admin))
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("binding {address}"))
}

/// A client listener; with `reuse_port`, one that other processes may bind too (SO_REUSEPORT).
fn bind_shared(address: SocketAddr, reuse_port: bool) -> anyhow::Result<TcpListener> {
    /// Connections waiting to be accepted at most (the kernel lowers it to `somaxconn`).
    const BACKLOG: u32 = 4096;
    let bind = || {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(address)?;
        socket.listen(BACKLOG)
    };
    bind().with_context(|| format!("binding {address}"))
}

fn random_node_id() -> String {
    format!("node-{:016x}", rand::random::<u64>())
}

/// Every data-access service of one backend (`backend` names it in metrics), and media in
/// files: each timed by data type, then behind the guard.
fn layered<S>(
    store: Arc<S>,
    backend: &'static str,
    media: FileMediaStore,
    guard: &GuardConfig,
) -> Storage
where
    S: AccountStore + ContactStore + MessageStore + GroupStore + SeqStore + OpsStore,
{
    let storage = Storage {
        account_store: store.clone(),
        contact_store: store.clone(),
        message_store: store.clone(),
        group_store: store.clone(),
        media_store: Arc::new(media),
        seq_store: store.clone(),
        ops_store: store,
    };
    let labels = |service: &'static str| {
        let data_type = service.strip_suffix("_store").unwrap_or(service);
        let backend = if data_type == "media" { "file" } else { backend };
        vec![("data_type", data_type), ("backend", backend)]
    };
    storage.timed("missive_store_duration_seconds", labels).guarded(guard)
}

/// The SQL shards when urls are configured, else the embedded store in the data directory;
/// media in the data directory either way.
async fn open_stores(
    settings: &Settings,
    guard: &GuardConfig,
    node_id: &str,
) -> anyhow::Result<Storage> {
    let media = FileMediaStore::open(&settings.data).context("opening the media directory")?;
    if settings.store_urls.is_empty() {
        let mut config = StoreConfig::new(&settings.data);
        config.durability = settings.durability;
        let store = EmbeddedStore::open(config).context("opening the embedded store")?;
        return Ok(layered(Arc::new(store), "embedded", media, guard));
    }
    let urls = settings.store_urls.iter().flat_map(|list| split_url_list(list)).collect();
    let mut config = SqlConfig::new(urls);
    config.connections_per_shard = settings.store_connections.max(1);
    config.writers_per_shard = settings.store_writers.max(1);
    config.logical_shards = settings.store_logical_shards;
    config.node_id = Some(node_id.to_string());
    let store = SqlStore::open(config).await.context("opening the sql store")?;
    tracing::info!(databases = store.database_count(), "storing in sql databases");
    let backend = store.backend();
    Ok(layered(Arc::new(store), backend, media, guard))
}
