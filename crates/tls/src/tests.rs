//! Certificates loaded, presented, refused and read again, over real TLS handshakes on
//! loopback.

use super::*;
use crate::test_ca::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects to `address` trusting `ca`, and says which certificate's common name the
/// server presented.
async fn presented(address: std::net::SocketAddr, ca: &Path) -> Result<String, std::io::Error> {
    let connector = TlsConnector::from(client_config(Some(ca), &[]).unwrap());
    let stream = tokio::net::TcpStream::connect(address).await?;
    let mut tls = connector.connect(server_name("localhost").unwrap(), stream).await?;
    let (_, session) = tls.get_ref();
    let der = session.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"ping").await?;
    let mut answer = [0u8; 4];
    tls.read_exact(&mut answer).await?;
    assert_eq!(&answer, b"pong");
    // The common name is the file name the test CA gave the pair: find it in the DER.
    let text = String::from_utf8_lossy(&der).to_string();
    Ok(["first", "second"].into_iter().find(|n| text.contains(n)).unwrap_or("?").to_string())
}

/// Serves "pong" to every "ping" over TLS until the test ends.
async fn serve(acceptor: TlsAcceptor) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut ping = [0u8; 4];
                    if tls.read_exact(&mut ping).await.is_ok() {
                        let _ = tls.write_all(b"pong").await;
                        let _ = tls.flush().await;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_changed_pair_is_presented_from_the_next_handshake_and_a_broken_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test CA");
    let first = ca.issue("first", &["localhost"]);
    let certificate = Certificate::load(&first.cert, &first.key).unwrap();
    let address = serve(certificate.acceptor(&[])).await;
    assert_eq!(presented(address, &ca.ca_file()).await.unwrap(), "first");
    assert!(!certificate.reload_if_changed().unwrap(), "nothing changed yet");

    // A key that is not the certificate's: refused, the first pair stays in use.
    let second = ca.issue("second", &["localhost"]);
    std::fs::copy(&second.key, &first.key).unwrap();
    bump(&first.key);
    assert!(matches!(certificate.reload_if_changed(), Err(TlsError::KeyMismatch { .. })));
    assert_eq!(presented(address, &ca.ca_file()).await.unwrap(), "first");

    // The certificate that goes with it arrives: the next handshake presents the new pair.
    std::fs::copy(&second.cert, &first.cert).unwrap();
    bump(&first.cert);
    assert!(certificate.reload_if_changed().unwrap());
    assert_eq!(presented(address, &ca.ca_file()).await.unwrap(), "second");

    // An empty file (caught mid-write) changes nothing either.
    std::fs::write(&first.cert, "").unwrap();
    bump(&first.cert);
    assert!(matches!(certificate.reload(), Err(TlsError::NoCertificate { .. })));
    assert_eq!(presented(address, &ca.ca_file()).await.unwrap(), "second");
}

/// Moves a file's modification time on, as a later write would (file systems may keep
/// coarse times).
fn bump(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let later = SystemTime::now() + std::time::Duration::from_secs(5);
    file.set_modified(later).unwrap();
}

#[tokio::test]
async fn a_caller_refuses_a_certificate_its_roots_do_not_vouch_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test CA");
    let pair = ca.issue("first", &["localhost"]);
    let address = serve(Certificate::load(&pair.cert, &pair.key).unwrap().acceptor(&[])).await;
    let stranger = tempfile::tempdir().unwrap();
    let other = TestCa::new(stranger.path(), "another CA");
    let error = presented(address, &other.ca_file()).await.unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[test]
fn a_missing_or_foreign_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let nothing = dir.path().join("absent.pem");
    let error = Certificate::load(&nothing, &nothing).unwrap_err();
    assert!(error.to_string().contains("absent.pem"), "{error}");
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "hello").unwrap();
    assert!(matches!(Certificate::load(&text, &text), Err(TlsError::NoCertificate { .. })));
}

#[test]
fn the_host_of_an_address_is_its_server_name() {
    assert_eq!(server_name("chat.example.com:443").unwrap().to_str(), "chat.example.com");
    assert_eq!(server_name("127.0.0.1:7300").unwrap().to_str(), "127.0.0.1");
    assert_eq!(server_name("[::1]:7300").unwrap().to_str(), "::1");
    assert!(server_name("bad name:1").is_err());
}
