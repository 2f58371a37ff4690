//! Operations support (the seed's monitoring pages, data curves and hourly mail), served by
//! every node at its admin address: `/metrics` for Prometheus, a dashboard with live curves
//! kept in process ([`series`]), the statistics job and its reports ([`stats`], [`report`]),
//! and the admin API (`/v1/admin/`, see `api`).
//!
//! This crate reads the process's own metrics and calls the logic tier's `Admin` service and
//! the `OpsStore` data service through their traits; it holds no business rule and no SQL.

mod api;
mod dashboard;
pub mod exposition;
pub mod report;
pub mod sampler;
pub mod series;
pub mod stats;

use axum::routing::get;
use missive_proto::admin::Admin;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The context of a call an operator's tool makes (the admin API, the dashboard's totals,
/// the statistics job): high priority, so that the overload guard keeps serving operators
/// while it sheds new writes, which is when they look.
fn operator_ctx(timeout: Duration) -> missive_rpc::Ctx {
    missive_rpc::Ctx::new(missive_rpc::random_request_id())
        .with_timeout(timeout)
        .with_priority(missive_rpc::Priority::High)
}

/// Renders metrics as Prometheus text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// What renders this node's metrics: all of them for `/metrics`, and Missive's own figures
/// (without the process figures, whose collection lists every open file) for the readers
/// inside the process: the dashboard and the statistics' samples.
#[derive(Clone)]
pub struct Renders {
    pub metrics: Render,
    pub figures: Render,
}

/// The admin credential, kept only as its hash.
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares hashes, so the time taken says nothing about the token.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented == self.0
    }
}

/// How often the dashboard's curves take a point unless told otherwise.
pub const SAMPLE_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct OpsConfig {
    /// This node's name, shown on the dashboard and keyed in the statistics' samples.
    pub node_id: String,
    /// How often the dashboard's curves take a point (at least a second).
    pub sample_interval: Duration,
    /// Where the curves are saved, so a restart does not blank them.
    pub series_file: PathBuf,
}

/// What every node serves at its admin address.
pub struct Ops {
    config: OpsConfig,
    renders: Renders,
    /// The logic tier's admin service and the credential it takes, where this node reaches
    /// one.
    admin: Option<(Arc<dyn Admin>, Arc<AdminToken>)>,
    series: Mutex<series::Series>,
}

impl Ops {
    pub fn new(
        mut config: OpsConfig,
        renders: Renders,
        admin: Option<(Arc<dyn Admin>, AdminToken)>,
    ) -> Arc<Ops> {
        config.sample_interval = config.sample_interval.max(Duration::from_secs(1));
        let sample_s = config.sample_interval.as_secs();
        let series = match series::Series::load(&config.series_file, sample_s) {
            Some(mut series) => {
                series.gap(dashboard::now_s());
                series
            }
            None => series::Series::new(sample_s),
        };
        let admin = admin.map(|(admin, token)| (admin, Arc::new(token)));
        Arc::new(Ops { config, renders, admin, series: Mutex::new(series) })
    }

    /// `/healthz`, `/metrics`, the dashboard and, where the logic tier is reachable, the
    /// admin API.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        let render = self.renders.metrics.clone();
        let mut router = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(move || async move { render() }))
            .merge(dashboard::router(self.clone()));
        if let Some((admin, token)) = &self.admin {
            router = router.merge(api::router(admin.clone(), token.clone()));
        }
        router
    }

    /// Takes the dashboard's points until `shutdown`, saving the curves every minute and at
    /// the end.
    pub async fn run_sampler(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let interval = self.config.sample_interval;
        let save_every = (60 / interval.as_secs()).max(1);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut previous: Option<(tokio::time::Instant, sampler::Counts)> = None;
        let mut taken = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => break,
            }
            let samples = exposition::parse(&(self.renders.figures)());
            let counts = sampler::Counts::of(&samples);
            let now = tokio::time::Instant::now();
            if let Some((at, before)) = &previous {
                let elapsed = now.duration_since(*at).as_secs_f64();
                let values = sampler::curves(&samples, before, &counts, elapsed);
                self.series.lock().expect("series").add(dashboard::now_s(), &values);
                taken += 1;
                if taken.is_multiple_of(save_every) {
                    self.save();
                }
            }
            previous = Some((now, counts));
        }
        self.save();
    }

    fn save(&self) {
        let path = &self.config.series_file;
        let series = self.series.lock().expect("series").clone();
        if let Err(error) = series.save(path) {
            tracing::warn!(path = %path.display(), %error, "saving the curves failed");
        }
    }
}
