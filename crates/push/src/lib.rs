//! Offline push delivery: the `OfflinePush` service that carries one notification to one
//! device's push service, as Web Push (RFC 8030, encrypted per RFC 8291, signed with the
//! server's VAPID key per RFC 8292) or UnifiedPush (the same, or plain JSON for an endpoint
//! without keys), over HTTPS with retries.
//!
//! Outcomes: a 2xx answer is delivered; 404 or 410 means the subscription is gone (the
//! caller forgets the pusher); 429 and 5xx, and connection failures, are retried with a
//! growing pause (the push service's `Retry-After` when it gives one) up to
//! [`PushConfig::attempts`]; any other answer fails at once.
//!
//! This crate owns the HTTP calls out to push services and their cryptography. It decides
//! nothing about who is pushed or when (the logic layer does), and never touches storage.

pub mod endpoint;
pub mod webpush;

use missive_proto::client::Pusher;
use missive_proto::client::PusherKind;
use missive_proto::internal::{Empty, OfflinePush, PushDelivery, PushOutcome, push_outcome};
use missive_rpc::{Ctx, Status};
use std::sync::Arc;
use std::time::Duration;
pub use webpush::VapidKey;

/// How the sender reaches push services.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Let pushers name private and loopback endpoints, over plain HTTP too: for a push
    /// service inside the operator's own network, and for tests. Off on the internet.
    pub allow_private_endpoints: bool,
    /// VAPID's `sub`: a `mailto:` or `https:` contact for push services' operators.
    pub contact: Option<String>,
    /// Tries per notification, the first included.
    pub attempts: u32,
    /// The pause before the first retry, doubled at each.
    pub retry_base: Duration,
    /// One call's time limit.
    pub timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow_private_endpoints: false,
            contact: None,
            attempts: 5,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Carries notifications to push services.
pub struct PushSender {
    config: PushConfig,
    vapid: Arc<VapidKey>,
    http: reqwest::Client,
}

/// The longest pause before a retry, whatever a push service asks.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

impl PushSender {
    pub fn new(config: PushConfig, vapid: Arc<VapidKey>) -> PushSender {
        let tls = missive_tls::client_config(None, &[b"http/1.1"]).expect("the default roots load");
        let mut http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if !config.allow_private_endpoints {
            http = http.dns_resolver(Arc::new(endpoint::PublicOnly));
        }
        let http = http.build().expect("a preconfigured rustls client");
        PushSender { config, vapid, http }
    }

    /// One attempt: the outcome, or the pause to wait before trying again.
    async fn attempt(&self, delivery: &PushDelivery) -> Result<PushOutcome, Duration> {
        let pusher = delivery.pusher.clone().unwrap_or_default();
        let url = match endpoint::check(&pusher.endpoint, self.config.allow_private_endpoints) {
            Ok(url) => url,
            Err(error) => return Ok(outcome(push_outcome::Result::Gone, error.to_string())),
        };
        let encrypted = pusher.kind == PusherKind::WebPush as i32 || !pusher.p256dh.is_empty();
        let mut request = self
            .http
            .post(url.as_str())
            .header("TTL", delivery.ttl_s.to_string())
            .header("Urgency", "normal");
        if !delivery.topic.is_empty() {
            request = request.header("Topic", delivery.topic.as_str());
        }
        if encrypted {
            let body = match webpush::encrypt(&delivery.payload, &pusher.p256dh, &pusher.auth) {
                Ok(body) => body,
                Err(error) => return Ok(outcome(push_outcome::Result::Gone, error.to_string())),
            };
            let audience = url.origin().ascii_serialization();
            let now = missive_rpc::unix_ms().max(0) as u64 / 1000;
            let authorization = self
                .vapid
                .authorization(&audience, self.config.contact.as_deref(), now)
                .map_err(|_| self.config.retry_base)?;
            request = request
                .header("Content-Encoding", "aes128gcm")
                .header("Content-Type", "application/octet-stream")
                .header("Authorization", authorization)
                .body(body);
        } else {
            request =
                request.header("Content-Type", "application/json").body(delivery.payload.clone());
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%error, "push service unreachable");
                return Err(Duration::ZERO);
            }
        };
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(RETRY_AFTER_MAX));
        match status {
            200..=299 => Ok(outcome(push_outcome::Result::Delivered, String::new())),
            404 | 410 => Ok(outcome(push_outcome::Result::Gone, format!("HTTP {status}"))),
            429 | 500..=599 => Err(retry_after.unwrap_or(Duration::ZERO)),
            _ => Ok(outcome(push_outcome::Result::Failed, format!("HTTP {status}"))),
        }
    }
}

fn outcome(result: push_outcome::Result, detail: String) -> PushOutcome {
    PushOutcome { result: result as i32, detail }
}

fn result_name(result: i32) -> &'static str {
    match push_outcome::Result::try_from(result) {
        Ok(push_outcome::Result::Delivered) => "delivered",
        Ok(push_outcome::Result::Gone) => "gone",
        _ => "failed",
    }
}

#[async_trait::async_trait]
impl OfflinePush for PushSender {
    async fn deliver(&self, _: &Ctx, delivery: PushDelivery) -> Result<PushOutcome, Status> {
        let kind = match delivery.pusher.as_ref().map(|p| p.kind) {
            Some(kind) if kind == PusherKind::WebPush as i32 => "web_push",
            _ => "unified_push",
        };
        let mut pause = self.config.retry_base;
        let mut tries = 0;
        let done = loop {
            tries += 1;
            match self.attempt(&delivery).await {
                Ok(done) => break done,
                Err(_) if tries >= self.config.attempts.max(1) => {
                    break outcome(push_outcome::Result::Failed, format!("{tries} tries failed"));
                }
                Err(asked) => {
                    metrics::counter!("missive_push_retries_total").increment(1);
                    tokio::time::sleep(asked.max(pause)).await;
                    pause = (pause * 2).min(RETRY_AFTER_MAX);
                }
            }
        };
        metrics::counter!("missive_push_deliveries_total", "kind" => kind, "result" => result_name(done.result))
            .increment(1);
        Ok(done)
    }

    async fn check_endpoint(&self, _: &Ctx, pusher: Pusher) -> Result<Empty, Status> {
        endpoint::check(&pusher.endpoint, self.config.allow_private_endpoints)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        Ok(Empty {})
    }
}
