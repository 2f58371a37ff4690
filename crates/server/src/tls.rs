//! The listeners' certificates: which pair each listener presents, the refusal to serve
//! plaintext beyond loopback, and reading the pairs again when their files change or at
//! SIGHUP, without a restart.

use crate::settings::Settings;
use anyhow::Context as _;
use missive_tls::{Certificate, TlsAcceptor};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The listeners a process may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    Http,
    Admin,
    Rpc,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::Http => "http",
            Listener::Admin => "admin",
            Listener::Rpc => "rpc",
        }
    }

    /// The protocols a TLS client may ask for by ALPN on this listener.
    fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Listener::Tcp => &[],
            Listener::Http | Listener::Admin => &[missive_tls::ALPN_HTTP1],
            Listener::Rpc => &[missive_tls::ALPN_H2],
        }
    }
}

/// Each distinct certificate pair of the settings, loaded once, and which listener
/// presents which.
pub struct Certificates {
    pairs: Vec<((PathBuf, PathBuf), Arc<Certificate>)>,
    client: Option<usize>,
    admin: Option<usize>,
    rpc: Option<usize>,
    insecure_plaintext: bool,
    check_every: Duration,
}

impl Certificates {
    /// Reads every pair the settings name; fails if one is missing, broken or mismatched.
    pub fn load(settings: &Settings) -> anyhow::Result<Certificates> {
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>| match (cert, key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        let client = pair(&settings.tls_cert, &settings.tls_key);
        let admin = pair(&settings.admin_tls_cert, &settings.admin_tls_key).or(client.clone());
        let rpc = pair(&settings.rpc_tls_cert, &settings.rpc_tls_key).or(client.clone());
        let mut certificates = Certificates {
            pairs: Vec::new(),
            client: None,
            admin: None,
            rpc: None,
            insecure_plaintext: settings.insecure_plaintext,
            check_every: Duration::from_secs(settings.tls_reload_check_s.max(1)),
        };
        certificates.client = certificates.add(client)?;
        certificates.admin = certificates.add(admin)?;
        certificates.rpc = certificates.add(rpc)?;
        Ok(certificates)
    }

    fn add(&mut self, files: Option<(PathBuf, PathBuf)>) -> anyhow::Result<Option<usize>> {
        let Some(files) = files else { return Ok(None) };
        if let Some(index) = self.pairs.iter().position(|(known, _)| *known == files) {
            return Ok(Some(index));
        }
        let certificate = Certificate::load(&files.0, &files.1)
            .with_context(|| format!("loading the TLS certificate {}", files.0.display()))?;
        self.pairs.push((files, certificate));
        Ok(Some(self.pairs.len() - 1))
    }

    /// Which listeners speak TLS.
    pub fn secured(&self) -> crate::Secured {
        crate::Secured {
            client: self.client.is_some(),
            admin: self.admin.is_some(),
            rpc: self.rpc.is_some(),
        }
    }

    /// What `listener` presents, if it speaks TLS.
    fn certificate(&self, listener: Listener) -> Option<&Arc<Certificate>> {
        let index = match listener {
            Listener::Tcp | Listener::Http => self.client,
            Listener::Admin => self.admin,
            Listener::Rpc => self.rpc,
        };
        index.map(|i| &self.pairs[i].1)
    }

    /// The TLS acceptor of `listener` at `address`, or none for plaintext: allowed on
    /// loopback, beyond it only with `--insecure-plaintext` (and a warning).
    pub fn acceptor(
        &self,
        listener: Listener,
        address: SocketAddr,
    ) -> anyhow::Result<Option<TlsAcceptor>> {
        if let Some(certificate) = self.certificate(listener) {
            return Ok(Some(certificate.acceptor(listener.alpn())));
        }
        let name = listener.name();
        anyhow::ensure!(
            address.ip().is_loopback() || self.insecure_plaintext,
            "refusing to serve {name} in plaintext on {address}, beyond loopback: give \
             --tls-cert and --tls-key, or --insecure-plaintext if TLS ends before this process"
        );
        if !address.ip().is_loopback() {
            tracing::warn!(listener = name, %address, "serving in plaintext beyond loopback");
        }
        Ok(None)
    }

    /// Reads the pairs again whenever their files change and at every SIGHUP, until
    /// `shutdown`. A pair that fails to read (half written, mismatched) is logged and the
    /// one in use stays.
    pub async fn watch(self, shutdown: CancellationToken) {
        if self.pairs.is_empty() {
            return;
        }
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: certificates reload on change only");
                None
            }
        };
        let mut tick = tokio::time::interval(self.check_every);
        loop {
            let asked = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => false,
                Some(()) = async { hangup.as_mut()?.recv().await } => true,
            };
            for ((cert, _), certificate) in &self.pairs {
                let outcome = if asked {
                    certificate.reload().map(|()| true)
                } else {
                    certificate.reload_if_changed()
                };
                match outcome {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::info!(cert = %cert.display(), "tls certificate loaded");
                        metrics::counter!("missive_tls_reloads_total", "result" => "ok")
                            .increment(1);
                    }
                    Err(error) => {
                        tracing::error!(%error, "tls certificate not reloaded; the old one stays");
                        metrics::counter!("missive_tls_reloads_total", "result" => "failed")
                            .increment(1);
                    }
                }
            }
        }
    }
}
