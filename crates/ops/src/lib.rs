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

/// Renders the process's metrics as Prometheus text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

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

#[derive(Clone)]
pub struct OpsConfig {
    /// This node's name, shown on the dashboard and keyed in the statistics' samples.
    pub node_id: String,
    /// How often the dashboard's curves take a point.
    pub sample_interval: Duration,
    /// The statistics period; nodes sample their figures 60 times per period.
    pub stats_period: Duration,
    /// Where the curves are saved, so a restart does not blank them.
    pub series_file: Option<PathBuf>,
}

/// What every node serves at its admin address.
pub struct Ops {
    config: OpsConfig,
    render: Render,
    /// The logic tier's admin service, where this node reaches one.
    admin: Option<Arc<dyn Admin>>,
    token: Arc<AdminToken>,
    series: Mutex<series::Series>,
}

impl Ops {
    pub fn new(
        config: OpsConfig,
        render: Render,
        admin: Option<Arc<dyn Admin>>,
        token: AdminToken,
    ) -> Arc<Ops> {
        let sample_s = config.sample_interval.as_secs().max(1);
        let loaded =
            config.series_file.as_deref().and_then(|path| series::Series::load(path, sample_s));
        let series = match loaded {
            Some(mut series) => {
                series.gap(dashboard::now_s());
                series
            }
            None => series::Series::new(sample_s),
        };
        Arc::new(Ops { config, render, admin, token: Arc::new(token), series: Mutex::new(series) })
    }

    /// `/healthz`, `/metrics`, the dashboard and, where the logic tier is reachable, the
    /// admin API.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        let render = self.render.clone();
        let mut router = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(move || async move { render() }))
            .merge(dashboard::router(self.clone()));
        if let Some(admin) = &self.admin {
            router = router.merge(api::router(admin.clone(), self.token.clone()));
        }
        router
    }

    /// Takes the dashboard's points until `shutdown`, saving the curves every minute and at
    /// the end.
    pub async fn run_sampler(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let interval = self.config.sample_interval.max(Duration::from_secs(1));
        let save_every = (60 / interval.as_secs().max(1)).max(1);
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
            let samples = exposition::parse(&(self.render)());
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
        let Some(path) = &self.config.series_file else { return };
        let series = self.series.lock().expect("series").clone();
        if let Err(error) = series.save(path) {
            tracing::warn!(path = %path.display(), %error, "saving the curves failed");
        }
    }
}
