//! Whom a client trusts over `tls://`, `wss://` and `https://`: Mozilla's roots, and the
//! certificates of a private CA when given one.

use crate::ClientError;
use missive_tls::rustls::ClientConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The TLS settings of a client; cheap to clone, so one serves any number of connections.
#[derive(Clone)]
pub struct Trust {
    /// For the TCP long link (no ALPN).
    stream: Arc<ClientConfig>,
    /// For HTTP/1.1: the short link, the WebSocket upgrade and the admin API.
    http: Arc<ClientConfig>,
}

impl Default for Trust {
    /// Mozilla's roots alone, made once per process: `Client::connect` uses it for every
    /// connection, and two configurations over some 150 roots are not worth making each time.
    fn default() -> Trust {
        static PUBLIC: std::sync::OnceLock<Trust> = std::sync::OnceLock::new();
        PUBLIC
            .get_or_init(|| {
                Trust::new(None).expect("Mozilla's roots alone always make a configuration")
            })
            .clone()
    }
}

impl Trust {
    /// Trusts Mozilla's roots and, when given, the CA certificates in the PEM file `ca`.
    pub fn new(ca: Option<&Path>) -> Result<Trust, ClientError> {
        let tls = |e: missive_tls::TlsError| ClientError::Tls(e.to_string());
        Ok(Trust {
            stream: missive_tls::client_config(ca, &[]).map_err(tls)?,
            http: missive_tls::client_config(ca, &[missive_tls::ALPN_HTTP1]).map_err(tls)?,
        })
    }

    /// An HTTP client with this trust, each call limited to `timeout` when given.
    pub(crate) fn http_client(&self, timeout: Option<Duration>) -> reqwest::Client {
        let mut builder =
            reqwest::Client::builder().tls_backend_preconfigured((*self.http).clone());
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder.build().expect("a preconfigured rustls client")
    }

    /// A TLS session over a new TCP connection to `address` (`host:port`), the server's
    /// certificate checked for `host`; `http` offers HTTP/1.1 by ALPN (for WebSocket).
    pub(crate) async fn connect(
        &self,
        address: &str,
        http: bool,
    ) -> Result<missive_tls::client::TlsStream<TcpStream>, ClientError> {
        let transport = |e: std::io::Error| ClientError::transport(&e);
        let name =
            missive_tls::server_name(address).map_err(|e| ClientError::BadUrl(e.to_string()))?;
        let stream = TcpStream::connect(address).await.map_err(transport)?;
        let _ = stream.set_nodelay(true);
        let config = if http { &self.http } else { &self.stream };
        missive_tls::TlsConnector::from(config.clone())
            .connect(name, stream)
            .await
            .map_err(transport)
    }
}
