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

pub mod settings;
mod telemetry;

use anyhow::{Context as _, bail};
use missive_access::http;
use missive_access::tcp::LinkServer;
use missive_access::{Dispatcher, Registry};
use missive_logic::{Deps, Logic, LogicConfig, SeqAllocator};
use missive_ops::report::{ReportConfig, Reporter};
use missive_ops::{AdminToken, Ops, OpsConfig, stats};
use missive_proto::admin::{Admin, AdminGuarded, AdminRemote, admin_routes};
use missive_proto::internal::{
    AccountStore, ClientApi, ClientApiGuarded, ClientApiRemote, ContactStore, GroupStore,
    MessageStore, OpsStore, Push, PushGuarded, Seq, SeqGuarded, SeqRemote, SeqStore, Storage,
    client_api_routes, seq_routes,
};
use missive_route::{AccessRoutes, RedisPush, RouteConfig};
use missive_rpc::GuardConfig;
use missive_rpc::remote::{Client, Routes};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use missive_storage_sql::{SqlConfig, SqlStore};
use settings::{Role, Settings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where RPC is served when a process runs only some roles and `--rpc` is not given.
const RPC_DEFAULT: &str = "127.0.0.1:7400";

/// The addresses actually bound (ports chosen by the system when 0 was asked for); a
/// listener the process's roles do not need is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub tcp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub rpc: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// Runs the server until `shutdown` is cancelled, then drains connections and returns.
/// `on_bound` hears the listening addresses once every listener is up.
pub async fn run(
    settings: Settings,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    // Every role keeps something here: the store its data, every node its dashboard curves.
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating {}", settings.data.display()))?;
    let renders = telemetry::install(settings.metrics);
    let guard = settings.guard_config();
    let mut served = Routes::default();
    let mut tasks = Vec::new();

    let local_stores = if settings.runs(Role::Store) {
        let stores = open_stores(&settings, &guard).await?;
        served = served.merge(stores.routes());
        Some(stores)
    } else {
        None
    };

    let registry = settings.runs(Role::Access).then(Registry::new);
    let node_id = settings.node_id.clone().unwrap_or_else(random_node_id);
    let route_config = settings.redis_url.as_ref().map(|url| RouteConfig {
        namespace: settings.redis_namespace.clone(),
        ..RouteConfig::new(url.clone(), node_id.clone())
    });

    let mut ops_store = None;
    let local_logic = if settings.runs(Role::Logic) {
        let stores = reach_stores(&settings, local_stores.as_ref())?;
        ops_store = Some(stores.ops_store.clone());
        let push: Arc<dyn Push> = match (&route_config, &registry) {
            (Some(config), _) => RedisPush::connect(config.clone()).await?,
            (None, Some(registry)) => PushGuarded::new(registry.clone(), &guard),
            (None, None) => bail!(
                "the logic role without the access role needs --redis-url: it carries \
                 notifies to the access nodes"
            ),
        };
        let allocator: Arc<dyn Seq> = SeqGuarded::new(
            Arc::new(SeqAllocator::new(stores.seq_store.clone(), settings.seq_step)),
            &guard,
        );
        served = served.merge(seq_routes(allocator.clone()));
        let seq = if settings.seq_rpc.is_empty() {
            allocator
        } else {
            SeqRemote::new(Client::new("seq", &settings.seq_rpc)?)
        };
        if !settings.runs(Role::Store) && settings.secret_file.is_none() {
            tracing::warn!(
                "no --secret-file: SyncKeys signed here are valid only on this logic node"
            );
        }
        let deps = Deps {
            accounts: stores.account_store,
            contacts: stores.contact_store,
            messages: stores.message_store,
            groups: stores.group_store,
            media: stores.media_store,
            seq,
            push,
            ops: stores.ops_store,
        };
        let logic = Logic::new(
            deps,
            LogicConfig {
                sync_key_secret: settings::load_or_create_secret(&settings)?,
                password_cost: settings.password_cost(),
                retention: settings.retention,
                direct_messages: settings.direct_messages,
                group_members_max: settings.group_members_max.max(1),
                media_bytes_max: settings.media_bytes_max,
                stats_period: settings.stats_period(),
                totals_max_age: std::time::Duration::from_secs(settings.totals_max_age_s),
                ..LogicConfig::default()
            },
        );
        tasks.push((
            "janitor",
            tokio::spawn(logic.clone().run_janitor(shutdown.clone().cancelled_owned())),
        ));
        tasks.push((
            "counter",
            tokio::spawn(logic.clone().run_counter(shutdown.clone().cancelled_owned())),
        ));
        let admin: Arc<dyn Admin> = AdminGuarded::new(logic.clone(), &guard);
        served = served.merge(admin_routes(admin.clone()));
        let api: Arc<dyn ClientApi> = ClientApiGuarded::new(logic, &guard);
        served = served.merge(client_api_routes(api.clone()));
        Some((api, admin))
    } else {
        None
    };

    let admin_listener = bind(settings.admin).await?;
    let mut bound = Bound { tcp: None, http: None, rpc: None, admin: admin_listener.local_addr()? };
    let every_role = [Role::Access, Role::Logic, Role::Store].iter().all(|r| settings.runs(*r));
    if !served.is_empty() && (!every_role || settings.rpc.is_some()) {
        let address = settings.rpc.unwrap_or_else(|| RPC_DEFAULT.parse().expect("valid address"));
        let listener = bind(address).await?;
        bound.rpc = Some(listener.local_addr()?);
        let rpc = served.serve(listener, shutdown.clone());
        tasks.push((
            "rpc",
            tokio::spawn(async move {
                if let Err(error) = rpc.await {
                    tracing::error!(%error, "rpc server failed");
                }
            }),
        ));
    }

    // The admin API runs where the logic does, or is forwarded to a logic node.
    let (local_api, admin) = match local_logic {
        Some((api, admin)) => (Some(api), Some(admin)),
        None if !settings.logic_rpc.is_empty() => {
            (None, Some(AdminRemote::new(Client::new("logic", &settings.logic_rpc)?) as _))
        }
        None => (None, None),
    };
    let mut access = None;
    if let Some(registry) = registry {
        let api = match local_api {
            Some(api) => api,
            None if !settings.logic_rpc.is_empty() => {
                ClientApiRemote::new(Client::new("logic", &settings.logic_rpc)?)
            }
            None => bail!("the access role without the logic role needs --logic-rpc"),
        };
        if settings.redis_url.is_none() && !settings.runs(Role::Logic) {
            bail!(
                "the access role without the logic role needs --redis-url: notifies reach \
                 this node through it"
            );
        }
        let routes = match &route_config {
            Some(config) => Some(AccessRoutes::start(config.clone(), registry.clone()).await?),
            None => None,
        };
        let dispatcher = Arc::new(Dispatcher::new(api));
        let links = LinkServer::new(dispatcher, registry, settings.access_config());
        let tcp = bind(settings.tcp).await?;
        let http_listener = bind(settings.http).await?;
        bound.tcp = Some(tcp.local_addr()?);
        bound.http = Some(http_listener.local_addr()?);
        let tcp_task = tokio::spawn({
            let links = links.clone();
            let shutdown = shutdown.clone();
            async move { links.run_tcp(tcp, shutdown).await }
        });
        let http_task = tokio::spawn(serve_router(
            http_listener,
            http::router(links.clone(), shutdown.clone()),
            shutdown.clone(),
        ));
        access = Some((links, tcp_task, http_task, routes));
    }
    // The credential is made only where the admin API is served.
    let admin_api = match &admin {
        Some(admin) => {
            let token = AdminToken::new(&settings::load_or_create_admin_token(&settings)?);
            Some((admin.clone(), token))
        }
        None => None,
    };
    let ops = Ops::new(
        OpsConfig {
            node_id: node_id.clone(),
            sample_interval: std::time::Duration::from_secs(settings.dashboard_sample_s),
            series_file: settings.data.join("dashboard-series.json"),
        },
        renders.clone(),
        admin_api,
    );
    if settings.metrics {
        tasks.push((
            "sampler",
            tokio::spawn(ops.clone().run_sampler(shutdown.clone().cancelled_owned())),
        ));
        if let Some(admin) = admin {
            let report = stats::report_samples(
                admin,
                renders.figures,
                node_id.clone(),
                settings.stats_period(),
                shutdown.clone().cancelled_owned(),
            );
            tasks.push(("samples", tokio::spawn(report)));
        }
    }
    if let Some(store) = ops_store {
        let reporter = Reporter::new(ReportConfig {
            smtp_url: settings.report_smtp.clone(),
            mail_from: settings.report_from.clone(),
            mail_to: settings.report_to.clone(),
            webhook_url: settings.report_webhook.clone(),
            deployment: settings.deployment.clone(),
        })?;
        let job = stats::run_job(
            store,
            Arc::new(reporter),
            settings.stats_period(),
            shutdown.clone().cancelled_owned(),
        );
        tasks.push(("statistics", tokio::spawn(job)));
    }
    let admin_task = tokio::spawn(serve_router(admin_listener, ops.router(), shutdown.clone()));
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

    shutdown.cancelled().await;
    let drain = settings.access_config().drain_timeout;
    if let Some((links, tcp_task, http_task, routes)) = access {
        tracing::info!("shutting down: draining connections");
        let _ = tcp_task.await;
        links.drain().await;
        // An HTTP peer that keeps its connection open must not hold the process forever.
        if tokio::time::timeout(drain, http_task).await.is_err() {
            tracing::warn!("http connections still open after the drain timeout");
        }
        if let Some(routes) = routes {
            routes.stop().await;
        }
    }
    tasks.push(("admin", admin_task));
    for (name, task) in tasks {
        if tokio::time::timeout(drain, task).await.is_err() {
            tracing::warn!(task = name, "still running after the drain timeout");
        }
    }
    tracing::info!("shut down");
    Ok(())
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("binding {address}"))
}

fn random_node_id() -> String {
    format!("node-{:016x}", rand::random::<u64>())
}

/// The data-access services a logic node calls: each from the flag naming its service
/// (`--account-store-rpc`), else this process's store role, else `--store-rpc`.
fn reach_stores(settings: &Settings, local: Option<&Storage>) -> anyhow::Result<Storage> {
    Storage::reach(local, |service| {
        let specific = settings.store_rpc_of(service);
        let urls = match (specific.is_empty(), local) {
            (false, _) => specific,
            (true, Some(_)) => return Ok(None),
            (true, None) if !settings.store_rpc.is_empty() => &settings.store_rpc,
            (true, None) => bail!("the logic role without the store role needs --store-rpc"),
        };
        Ok(Some(Client::new(service, urls)?))
    })
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
async fn open_stores(settings: &Settings, guard: &GuardConfig) -> anyhow::Result<Storage> {
    let media = FileMediaStore::open(&settings.data).context("opening the media directory")?;
    if settings.store_urls.is_empty() {
        let mut config = StoreConfig::new(&settings.data);
        config.durability = settings.durability;
        let store = EmbeddedStore::open(config).context("opening the embedded store")?;
        return Ok(layered(Arc::new(store), "embedded", media, guard));
    }
    let mut config = SqlConfig::new(settings.store_urls.clone());
    config.connections_per_shard = settings.store_connections.max(1);
    let store = SqlStore::open(config).await.context("opening the sql store")?;
    tracing::info!(shards = store.shard_count(), "storing in sql databases");
    let backend = store.backend();
    Ok(layered(Arc::new(store), backend, media, guard))
}

/// Serves `router` until `shutdown`; handlers may ask for the peer's address.
async fn serve_router(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let served =
        axum::serve(listener, service).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    if let Err(error) = served {
        tracing::error!(%error, "http server failed");
    }
}
