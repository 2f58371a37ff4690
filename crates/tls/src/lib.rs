//! Transport security for every Missive listener and caller.
//!
//! A listener's certificate and key come from PEM files ([`Certificate`]); they are read
//! again, in place and without dropping a connection, when the files change or when the
//! operator asks ([`Certificate::reload`]); a handshake always gets the last pair that was
//! read whole and matched. Only TLS 1.3 and 1.2 are offered, with rustls's modern cipher
//! suites; rustls never renegotiates. A caller trusts Mozilla's roots and, for a private CA,
//! the certificates of a CA file ([`client_config`]).
//!
//! This crate owns TLS configuration only: it opens no socket and knows no protocol above
//! TLS (each listener names its own ALPN protocols).

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

pub use rustls;
pub use rustls_pki_types::ServerName;
pub use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// ALPN of HTTP/1.1: the short link, the WebSocket upgrade and the admin address.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of HTTP/2: the internal RPC.
pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("{path}: not a PEM certificate ({reason})")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("not a host name for TLS: {0:?}")]
    BadServerName(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// The crypto under every configuration made here (ring), named rather than left to a
/// process-wide default that another dependency could change.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default crypto for TLS, for code that builds its configuration
/// without naming one (an HTTP client made with its defaults); does nothing if a default is
/// already set.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A listener's certificate chain and key, read from two PEM files (they may be one file),
/// and read again when asked.
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when they were last read whole.
    read_at: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

impl Certificate {
    /// Reads the chain in `cert` and the key in `key`; fails unless both are there and match.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificate>, TlsError> {
        let provider = provider();
        let stamps = (modified(cert), modified(key));
        let pair = read_pair(cert, key, &provider)?;
        Ok(Arc::new(Certificate {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(pair)),
            read_at: Mutex::new(stamps),
        }))
    }

    /// Reads the files again; on any error the pair in use stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let pair = read_pair(&self.cert, &self.key, &self.provider)?;
        *self.current.write().expect("certificate lock") = Arc::new(pair);
        *self.read_at.lock().expect("certificate stamps") = stamps;
        Ok(())
    }

    /// Reads the files again if either changed since they were last read whole; says
    /// whether a new pair is now in use. A pair caught half written fails and is tried again
    /// at the next call.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        if stamps == *self.read_at.lock().expect("certificate stamps") {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// The files, for logs.
    pub fn files(&self) -> (&Path, &Path) {
        (&self.cert, &self.key)
    }

    /// A server configuration that always presents the current pair, offering `alpn`.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let resolver = Resolver(self.clone());
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(VERSIONS)
            .expect("ring offers TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// An acceptor that presents the current pair, offering `alpn`.
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config(alpn))
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificate>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("certificate lock").clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// The certificates of a PEM file, in order.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| {
            TlsError::BadCertificate { path: path.to_path_buf(), reason: e.to_string() }
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::NoKey { path: key.to_path_buf(), reason: e.to_string() })?;
    let signing = provider.key_provider.load_private_key(key_der)?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert: cert.to_path_buf(), key: key.to_path_buf() })
        }
        _ => Ok(pair),
    }
}

/// A caller's configuration: it trusts Mozilla's roots and every certificate in `ca_pem`
/// (a private CA), and offers `alpn`.
pub fn client_config(ca: Option<&Path>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca {
        for cert in read_certificates(path)? {
            roots.add(cert)?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("ring offers TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The name a caller checks the server's certificate against: the host of `host:port` (a
/// DNS name or an IP address, `[v6]` bracketed).
pub fn server_name(address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadServerName(host.to_string()))
}

#[cfg(feature = "test-ca")]
pub mod test_ca;

#[cfg(test)]
mod tests;
