//! TLS on every listener: the long link (TCP and WebSocket), the short link, the admin
//! address and RPC, with certificates from a CA made in the test; plaintext refused where
//! TLS is spoken; certificates read again without a restart.

use crate::harness::{PASSWORD, Server, receive, texts};
use missive_client::{AdminClient, Client, PROTOCOL_VERSION, Trust};
use missive_tls::test_ca::{Pair, TestCa};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The flags that give every listener the certificate `pair`.
fn tls_flags(pair: &Pair) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("a utf-8 path").to_string();
    vec!["--tls-cert".into(), path(&pair.cert), "--tls-key".into(), path(&pair.key)]
}

async fn signed_in(url: &str, name: &str, trust: &Trust) -> Client {
    let client = Client::connect_trusting(url, PROTOCOL_VERSION, trust).await.expect("connect");
    client.register(name, PASSWORD).await.expect("register");
    client.login(name, PASSWORD, "test").await.expect("login");
    client
}

/// Keeps trying to sign `user` in over `url` trusting `trust` until it works; panics if it
/// does not within `within`.
async fn signs_in_within(url: &str, trust: &Trust, user: &str, within: Duration) {
    let signed_in = async {
        loop {
            let client = Client::connect_trusting(url, PROTOCOL_VERSION, trust);
            if let Ok(client) = client.await
                && client.login(user, PASSWORD, "retrying").await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(within, signed_in).await.expect("signed in in time");
}

/// The error of a LOGIN over `url` trusting `trust`, whether it fails connecting or after.
async fn login_error(url: &str, trust: &Trust) -> missive_client::ClientError {
    match Client::connect_trusting(url, PROTOCOL_VERSION, trust).await {
        Ok(client) => client.login("alice", PASSWORD, "doubtful").await.unwrap_err(),
        Err(error) => error,
    }
}

/// Whether the connection at `address` is closed by the server within `within`, the client
/// having sent `first` (nothing if empty).
async fn closed_within(address: &str, first: &[u8], within: Duration) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(first).await.unwrap();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A split deployment with TLS everywhere: users on the TCP, WebSocket and HTTP listeners
/// chat through an access and logic node that reaches its store node over `https://` RPC;
/// the operator uses the admin API over https. Plaintext and untrusted certificates are
/// refused on each listener, and a silent peer is closed at the handshake's time limit.
#[tokio::test]
async fn every_listener_speaks_tls_and_refuses_plaintext_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "deployment CA");
    let pair = ca.issue("node", &["localhost", "127.0.0.1"]);
    let ca_file = ca.ca_file().to_str().unwrap().to_string();
    let mut store_flags = tls_flags(&pair);
    store_flags.extend(["--role".into(), "store".into()]);
    let store = Server::start_with(&store_flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(store.rpc.starts_with("https://"), "{}", store.rpc);
    let mut flags = tls_flags(&pair);
    flags.extend(
        ["--role", "access", "--role", "logic", "--store-rpc", &store.rpc, "--rpc-ca-file"]
            .map(String::from),
    );
    flags.extend([ca_file.clone(), "--http-header-timeout-s".into(), "1".into()]);
    let node = Server::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(node.tcp.starts_with("tls://"), "{}", node.tcp);
    assert!(node.http.starts_with("https://"), "{}", node.http);
    assert!(node.admin.starts_with("https://"), "{}", node.admin);

    let trust = Trust::new(Some(ca.ca_file().as_path())).unwrap();
    let alice = signed_in(&node.tcp, "alice", &trust).await;
    let bob = signed_in(&node.ws(), "bob", &trust).await;
    let carol = signed_in(&node.http, "carol", &trust).await;
    alice.send_text("bob", "over tls").await.unwrap();
    alice.send_text("carol", "over https").await.unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["over tls"]);
    assert_eq!(texts(&carol.sync().await.unwrap()), ["over https"]);

    let token = std::fs::read_to_string(node.data.join("admin.token")).unwrap();
    let admin = AdminClient::new(&node.admin, token.trim(), &trust).unwrap();
    assert_eq!(admin.user("alice").await.unwrap().user.unwrap().username, "alice");

    // Plaintext on a TLS port: the long link never authenticates, HTTP gets no answer.
    let plain_tcp = format!("tcp://{}", node.tcp_addr());
    let refused = login_error(&plain_tcp, &Trust::default()).await;
    assert_eq!(refused.code(), None, "no answer to plaintext: {refused}");
    let plain_http = node.http.replacen("https://", "http://", 1);
    let plain = Client::connect(&plain_http).await.unwrap();
    assert_eq!(plain.login("alice", PASSWORD, "plain").await.unwrap_err().code(), None);
    let plain_admin = node.admin.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain_admin}/healthz")).await.is_err());

    // A client that does not trust the deployment's CA refuses the server's certificate.
    for url in [node.tcp.clone(), node.ws(), node.http.clone()] {
        let error = login_error(&url, &Trust::default()).await;
        assert!(error.to_string().contains("UnknownIssuer"), "{url}: {error}");
    }

    // RPC: a plaintext caller gets nothing; a TLS caller without the deployment's key gets
    // UNAUTHENTICATED; one that does not trust the CA never reaches the store.
    use missive_proto::internal::{AccountStore, AccountStoreRemote, UsernameRef};
    use missive_rpc::remote::{Client as RpcClient, NodeKey, Trust as RpcTrust};
    let lookup = UsernameRef { username: "alice".into() };
    let ctx = missive_rpc::Ctx::new(1);
    let reach = |url: &str, trust: &RpcTrust, key: &NodeKey| {
        let client = RpcClient::new("account_store", &[url.to_string()], key, trust).unwrap();
        AccountStoreRemote::new(client)
    };
    let secret = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster.secret");
    let member = NodeKey::from_secret(&std::fs::read(secret).unwrap());
    let ca_trust = RpcTrust::with_ca_pem(std::fs::read(ca.ca_file()).unwrap());
    let found = reach(&store.rpc, &ca_trust, &member).get_by_name(&ctx, lookup.clone()).await;
    assert_eq!(found.unwrap().username, "alice", "a node of the deployment is served");
    let stranger = reach(&store.rpc, &ca_trust, &NodeKey::random());
    let refused = stranger.get_by_name(&ctx, lookup.clone()).await.unwrap_err();
    assert_eq!(refused.code, missive_rpc::Code::Unauthenticated, "{refused}");
    let plain_rpc = store.rpc.replacen("https://", "http://", 1);
    let plain = reach(&plain_rpc, &ca_trust, &member).get_by_name(&ctx, lookup.clone()).await;
    // The server's TLS alert reaches the caller's HTTP/2 as a closed connection or as a
    // frame it cannot parse, whichever comes first.
    let code = plain.unwrap_err().code;
    assert!(matches!(code, missive_rpc::Code::Unavailable | missive_rpc::Code::Internal), "{code}");
    let doubtful = reach(&store.rpc, &RpcTrust::default(), &member).get_by_name(&ctx, lookup).await;
    assert_eq!(doubtful.unwrap_err().code, missive_rpc::Code::Unavailable);

    // A peer that opens a connection and never completes its handshake is closed at the
    // listener's time limit (one second for HTTP here; the TCP long link's is the time to
    // authenticate).
    let http_address = node.http.trim_start_matches("https://");
    assert!(closed_within(http_address, b"", Duration::from_secs(5)).await);
    assert!(closed_within(http_address, b"\x16\x03\x01", Duration::from_secs(5)).await);

    // Each refused handshake is counted, per listener, in the node's metrics.
    let ca_pem = std::fs::read(ca.ca_file()).unwrap();
    let scraper = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).unwrap()])
        .build()
        .unwrap();
    let metrics = scraper.get(format!("{}/metrics", node.admin)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let failed = |listener: &str| {
        let prefix = format!("missive_tls_handshakes_failed_total{{listener=\"{listener}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(failed("tcp") >= 2.0 && failed("http") >= 4.0, "{metrics}");

    // Through all of it, the users kept their links.
    bob.send_text("alice", "still here").await.unwrap();
    assert_eq!(texts(&receive(&alice, 3).await), ["over tls", "over https", "still here"]);
}

/// A certificate replaced on disk is presented from the next handshake, without a restart
/// and without closing the links that are open; at SIGHUP at once, on a file change at the
/// next check. A broken pair on disk leaves the one in use.
#[tokio::test]
async fn a_replaced_certificate_is_presented_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = TestCa::new(dir.path(), "first CA");
    let pair = first_ca.issue("node", &["localhost", "127.0.0.1"]);
    let mut flags = tls_flags(&pair);
    flags.extend(["--tls-reload-check-s".into(), "1".into()]);
    let server = Server::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let first = Trust::new(Some(first_ca.ca_file().as_path())).unwrap();
    let alice = signed_in(&server.tcp, "alice", &first).await;
    let bob = signed_in(&server.tcp, "bob", &first).await;

    // A new CA's certificate, over the files the server reads; with a key that does not
    // match at first (as when the key is written before the certificate).
    let second_dir = tempfile::tempdir().unwrap();
    let second_ca = TestCa::new(second_dir.path(), "second CA");
    let second = second_ca.issue("node", &["localhost", "127.0.0.1"]);
    let second_trust = Trust::new(Some(second_ca.ca_file().as_path())).unwrap();
    std::fs::copy(&second.key, &pair.key).unwrap();
    server.hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signed_in(&server.tcp, "carol", &first).await;

    std::fs::copy(&second.cert, &pair.cert).unwrap();
    // Presented within the check interval (1 s here).
    signs_in_within(&server.tcp, &second_trust, "alice", Duration::from_secs(5)).await;
    // (A fresh client: one that connected before may resume its TLS session, which stands
    // on the certificate it checked then.)
    let first = Trust::new(Some(first_ca.ca_file().as_path())).unwrap();
    let error = login_error(&server.tcp, &first).await;
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");

    // The links opened under the old certificate carry on.
    alice.send_text("bob", "same link").await.unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["same link"]);

    // At SIGHUP the files are read at once, changed or not.
    let third_dir = tempfile::tempdir().unwrap();
    let third_ca = TestCa::new(third_dir.path(), "third CA");
    let third = third_ca.issue("node", &["localhost", "127.0.0.1"]);
    std::fs::copy(&third.cert, &pair.cert).unwrap();
    std::fs::copy(&third.key, &pair.key).unwrap();
    server.hangup();
    let third_trust = Trust::new(Some(third_ca.ca_file().as_path())).unwrap();
    signs_in_within(&server.http, &third_trust, "bob", Duration::from_secs(2)).await;
}

/// Without a certificate a listener binds loopback only, unless the operator says that
/// plaintext beyond it is meant.
#[test]
fn plaintext_beyond_loopback_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_missive"));
        command
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .args(["--tcp", "0.0.0.0:0", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra)
            .env("MISSIVE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().unwrap()
    };
    let refused = run(&[]).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refusing to serve tcp in plaintext on 0.0.0.0:0"), "{stderr}");

    let mut allowed = run(&["--insecure-plaintext"]);
    let stdout = allowed.stdout.take().unwrap();
    let ready = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .any(|line| line == "missive ready");
    allowed.kill().unwrap();
    let output = allowed.wait_with_output().unwrap();
    assert!(ready, "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("serving in plaintext beyond loopback"), "{stderr}");
}

/// The admin address may present a certificate of its own (here from another CA) while the
/// client listeners present the deployment's.
#[tokio::test]
async fn the_admin_address_may_present_a_certificate_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "public CA");
    let pair = ca.issue("public", &["localhost", "127.0.0.1"]);
    let ops_dir = tempfile::tempdir().unwrap();
    let ops_ca = TestCa::new(ops_dir.path(), "operators' CA");
    let ops = ops_ca.issue("ops", &["localhost", "127.0.0.1"]);
    let mut flags = tls_flags(&pair);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    flags.extend(["--admin-tls-cert".into(), path(&ops.cert)]);
    flags.extend(["--admin-tls-key".into(), path(&ops.key)]);
    let server = Server::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let token = std::fs::read_to_string(server.data.join("admin.token")).unwrap();
    let users = |trust: Trust| {
        let admin = AdminClient::new(&server.admin, token.trim(), &trust).unwrap();
        async move { admin.list_users("", 0, 0).await }
    };
    let public = Trust::new(Some(ca.ca_file().as_path())).unwrap();
    let operators = Trust::new(Some(ops_ca.ca_file().as_path())).unwrap();
    assert!(users(public.clone()).await.is_err(), "the admin address is not the public one");
    assert!(users(operators).await.is_ok());
    signed_in(&server.http, "alice", &public).await;
    let doubtful = Client::connect(&server.http).await.unwrap().ping().await.unwrap_err();
    assert_eq!(doubtful.code(), None, "Mozilla's roots do not vouch for a test CA");
}
