//! Delivery of each period's statistics, as the seed's hourly mail was: by e-mail over SMTP
//! and/or as a webhook (an HTTP POST of the period as JSON). A failed delivery is logged and
//! counted; the figures stay in the store either way.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use missive_proto::admin::PeriodStats;
use std::time::Duration;

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct ReportConfig {
    /// `smtp://[user:password@]host[:port]` of the relay that takes the mail (plain SMTP;
    /// point it at a local relay that does TLS onwards, or use a submission port's relay).
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub mail_to: Vec<String>,
    /// Receives each period as `application/json`.
    pub webhook_url: Option<String>,
    /// Names the deployment in the mail's subject.
    pub deployment: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("bad mail address {0:?}: {1}")]
    Address(String, lettre::address::AddressError),
    #[error("bad smtp url {0:?}: {1}")]
    SmtpUrl(String, String),
    #[error("mail: {0}")]
    Mail(String),
    #[error("webhook: {0}")]
    Webhook(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends each report where the configuration says.
pub struct Reporter {
    config: ReportConfig,
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox, Vec<Mailbox>)>,
    http: reqwest::Client,
}

impl Reporter {
    /// Checks the configuration at start, so a typo fails the start, not the first report.
    pub fn new(config: ReportConfig) -> Result<Reporter, ReportError> {
        let mail = match &config.smtp_url {
            None => None,
            Some(url) => {
                let parse = |address: &str| {
                    address.parse::<Mailbox>().map_err(|e| ReportError::Address(address.into(), e))
                };
                let from = parse(&config.mail_from)?;
                let to = config.mail_to.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
                if to.is_empty() {
                    return Err(ReportError::SmtpUrl(url.clone(), "no recipients".into()));
                }
                Some((smtp_transport(url)?, from, to))
            }
        };
        // Webhooks over https trust Mozilla's roots, under this crate's own TLS settings.
        let tls = missive_tls::client_config(None, &[missive_tls::ALPN_HTTP1])
            .expect("Mozilla's roots alone always make a configuration");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .expect("a preconfigured rustls client");
        Ok(Reporter { config, mail, http })
    }

    /// Delivers one period everywhere configured; each failure is logged and counted.
    pub async fn deliver(&self, stats: &PeriodStats) {
        if self.mail.is_some() {
            self.outcome("smtp", self.mail(stats).await);
        }
        if self.config.webhook_url.is_some() {
            self.outcome("webhook", self.webhook(stats).await);
        }
    }

    fn outcome(&self, channel: &'static str, result: Result<(), ReportError>) {
        let outcome = if result.is_ok() { "delivered" } else { "failed" };
        metrics::counter!("missive_reports_total", "channel" => channel, "outcome" => outcome)
            .increment(1);
        match result {
            Ok(()) => tracing::info!(channel, "statistics report delivered"),
            Err(error) => tracing::warn!(channel, %error, "statistics report not delivered"),
        }
    }

    async fn mail(&self, stats: &PeriodStats) -> Result<(), ReportError> {
        let (transport, from, to) = self.mail.as_ref().expect("mail is configured");
        let mut builder = lettre::Message::builder()
            .from(from.clone())
            .subject(subject(&self.config.deployment, stats))
            .header(ContentType::TEXT_PLAIN);
        for recipient in to {
            builder = builder.to(recipient.clone());
        }
        let message = builder.body(text(stats)).map_err(|e| ReportError::Mail(e.to_string()))?;
        tokio::time::timeout(DELIVERY_TIMEOUT, transport.send(message))
            .await
            .map_err(|_| ReportError::Timeout(DELIVERY_TIMEOUT))?
            .map_err(|e| ReportError::Mail(e.to_string()))?;
        Ok(())
    }

    async fn webhook(&self, stats: &PeriodStats) -> Result<(), ReportError> {
        let url = self.config.webhook_url.as_deref().expect("webhook is configured");
        let body = serde_json::json!({
            "deployment": self.config.deployment,
            "period": stats,
        });
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(DELIVERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| ReportError::Webhook(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ReportError::Webhook(format!("answered {}", response.status())));
        }
        Ok(())
    }
}

fn smtp_transport(text: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, ReportError> {
    let bad = |why: &str| ReportError::SmtpUrl(text.to_string(), why.to_string());
    let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "smtp" {
        return Err(bad("use smtp://host[:port]"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(25))
        .timeout(Some(DELIVERY_TIMEOUT));
    if !url.username().is_empty() {
        let password = url.password().unwrap_or("");
        builder = builder.credentials(Credentials::new(url.username().into(), password.into()));
    }
    Ok(builder.build())
}

/// The period's start, as HTTP writes dates (`Tue, 25 Nov 2025 11:00:00 GMT`).
pub fn period_name(stats: &PeriodStats) -> String {
    let start = std::time::UNIX_EPOCH + Duration::from_millis(stats.start_ms.max(0) as u64);
    httpdate::fmt_http_date(start)
}

fn subject(deployment: &str, stats: &PeriodStats) -> String {
    format!("[{deployment}] statistics for {}", period_name(stats))
}

/// The mail's body: one figure per line.
pub fn text(stats: &PeriodStats) -> String {
    format!(
        "Period: {} ({} s)\n\
         Registered users: {}\n\
         New registrations: {}\n\
         Online devices, peak: {}\n\
         Online devices, average: {:.1}\n\
         Messages sent: {}\n\
         Messages delivered: {}\n\
         Active users: {}\n",
        period_name(stats),
        stats.period_s,
        stats.registered_users,
        stats.new_registrations,
        stats.online_peak,
        stats.online_average,
        stats.messages_sent,
        stats.messages_delivered,
        stats.active_users,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_named_by_their_utc_start() {
        let stats = PeriodStats { start_ms: 1_764_068_400_000, ..PeriodStats::default() };
        assert_eq!(period_name(&stats), "Tue, 25 Nov 2025 11:00:00 GMT");
    }

    #[test]
    fn smtp_urls_are_checked_at_start() {
        let config = |url: &str| ReportConfig {
            smtp_url: Some(url.into()),
            mail_from: "missive@example.org".into(),
            mail_to: vec!["ops@example.org".into()],
            ..ReportConfig::default()
        };
        assert!(Reporter::new(config("smtp://127.0.0.1:2525")).is_ok());
        assert!(Reporter::new(config("smtp://user:secret@relay")).is_ok());
        assert!(Reporter::new(config("http://relay")).is_err());
        assert!(Reporter::new(config("smtp://relay:port")).is_err());
        let no_recipients = ReportConfig { mail_to: vec![], ..config("smtp://relay") };
        assert!(Reporter::new(no_recipients).is_err());
    }
}
