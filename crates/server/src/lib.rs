//! The Missive server: wires the tiers together and runs them until shutdown.
//!
//! In the all-in-one default every tier runs in this process and calls the next through its
//! service trait directly: the access layer's dispatcher calls the logic layer's `ClientApi`,
//! the logic layer calls the embedded store's data-access services and the access layer's
//! `Push`. This crate owns configuration, listeners, the admin endpoint and process signals;
//! it holds no business logic.

mod admin;
pub mod settings;

use anyhow::Context as _;
use missive_access::http;
use missive_access::tcp::LinkServer;
use missive_access::{Dispatcher, Registry};
use missive_logic::{Deps, Logic, LogicConfig, SeqAllocator};
use missive_proto::internal::{
    AccountStore, AccountStoreGuarded, ClientApiGuarded, ContactStore, ContactStoreGuarded,
    MessageStore, MessageStoreGuarded, PushGuarded, SeqGuarded, SeqStore, SeqStoreGuarded,
};
use missive_rpc::GuardConfig;
use missive_storage_embedded::{EmbeddedStore, StoreConfig};
use missive_storage_sql::{SqlConfig, SqlStore};
use settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The addresses actually bound (ports chosen by the system when 0 was asked for).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// Runs the server until `shutdown` is cancelled, then drains connections and returns.
/// `on_bound` hears the listening addresses once every listener is up.
pub async fn run(
    settings: Settings,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let metrics = admin::install_metrics();
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating {}", settings.data.display()))?;
    let guard = settings.guard_config();
    let stores = open_stores(&settings, &guard).await?;
    let secret = settings::load_or_create_secret(&settings.data)?;

    let registry = Registry::new();
    let seq = SeqAllocator::new(stores.seq.clone(), settings.seq_step);
    let deps = Deps {
        accounts: stores.accounts,
        contacts: stores.contacts,
        messages: stores.messages,
        seq: SeqGuarded::new(Arc::new(seq), &guard),
        push: PushGuarded::new(registry.clone(), &guard),
    };
    let logic = Logic::new(
        deps,
        LogicConfig {
            sync_key_secret: secret,
            password_cost: settings.password_cost(),
            heartbeat_interval_s: settings.heartbeat_interval_s,
            retention: settings.retention,
            ..LogicConfig::default()
        },
    );
    let dispatcher = Arc::new(Dispatcher::new(ClientApiGuarded::new(logic.clone(), &guard)));
    let access = settings.access_config();
    let drain = access.drain_timeout;
    let links = LinkServer::new(dispatcher, registry, access);

    let tcp = TcpListener::bind(settings.tcp)
        .await
        .with_context(|| format!("binding {}", settings.tcp))?;
    let http_listener = TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("binding {}", settings.http))?;
    let admin_listener = TcpListener::bind(settings.admin)
        .await
        .with_context(|| format!("binding {}", settings.admin))?;
    let bound = Bound {
        tcp: tcp.local_addr()?,
        http: http_listener.local_addr()?,
        admin: admin_listener.local_addr()?,
    };

    let janitor = tokio::spawn(logic.clone().run_janitor(shutdown.clone().cancelled_owned()));
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
    let admin_task =
        tokio::spawn(serve_router(admin_listener, admin::router(metrics), shutdown.clone()));
    tracing::info!(tcp = %bound.tcp, http = %bound.http, admin = %bound.admin, data = %settings.data.display(), "missive serving");
    on_bound(bound);

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining connections");
    let _ = tcp_task.await;
    links.drain().await;
    // An HTTP peer that keeps its connection open must not hold the process forever.
    for (name, task) in [("http", http_task), ("admin", admin_task)] {
        if tokio::time::timeout(drain, task).await.is_err() {
            tracing::warn!(listener = name, "connections still open after the drain timeout");
        }
    }
    let _ = janitor.await;
    tracing::info!("shut down");
    Ok(())
}

/// Every data-access service, each behind the RPC guard.
struct Stores {
    accounts: Arc<dyn AccountStore>,
    contacts: Arc<dyn ContactStore>,
    messages: Arc<dyn MessageStore>,
    seq: Arc<dyn SeqStore>,
}

impl Stores {
    fn guarded<S>(store: Arc<S>, guard: &GuardConfig) -> Stores
    where
        S: AccountStore + ContactStore + MessageStore + SeqStore,
    {
        Stores {
            accounts: AccountStoreGuarded::new(store.clone(), guard),
            contacts: ContactStoreGuarded::new(store.clone(), guard),
            messages: MessageStoreGuarded::new(store.clone(), guard),
            seq: SeqStoreGuarded::new(store, guard),
        }
    }
}

/// The SQL shards when urls are configured, else the embedded store in the data directory.
async fn open_stores(settings: &Settings, guard: &GuardConfig) -> anyhow::Result<Stores> {
    if settings.store_urls.is_empty() {
        let mut config = StoreConfig::new(&settings.data);
        config.durability = settings.durability;
        let store = EmbeddedStore::open(config).context("opening the embedded store")?;
        return Ok(Stores::guarded(Arc::new(store), guard));
    }
    let mut config = SqlConfig::new(settings.store_urls.clone());
    config.connections_per_shard = settings.store_connections.max(1);
    let store = SqlStore::open(config).await.context("opening the sql store")?;
    tracing::info!(shards = store.shard_count(), "storing in sql databases");
    Ok(Stores::guarded(Arc::new(store), guard))
}

async fn serve_router(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) {
    let served =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    if let Err(error) = served {
        tracing::error!(%error, "http server failed");
    }
}
