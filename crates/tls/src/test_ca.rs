//! A certificate authority made in memory, and the certificates it signs, written as PEM
//! files: for tests, so that no private key is ever checked in.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

/// A CA whose certificate is in `ca.pem` in a directory of its own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a self-signed CA");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("writing ca.pem");
        TestCa { issuer: Issuer::new(params, key), dir: dir.to_path_buf() }
    }

    /// The CA's certificate, for callers to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA, written to
    /// `<file>.pem` and `<file>.key` beside the CA's (over what was there).
    pub fn issue(&self, file: &str, names: &[&str]) -> Pair {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, &self.issuer).expect("a signed certificate");
        let pair = Pair {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("writing the certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("writing the key");
        pair
    }
}
