//! `missive-cli` end to end: the command-line contract.

use crate::harness::*;

#[tokio::test]
async fn two_cli_users_chat_over_every_transport() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (n, url) in [server.tcp.clone(), server.ws(), server.http.clone()].iter().enumerate() {
        let (a, b) = (format!("ann{n}"), format!("ben{n}"));
        let (pa, pb) = (dir.path().join(&a), dir.path().join(&b));
        for (name, profile) in [(&a, &pa), (&b, &pb)] {
            let out = cli(url, profile, &["register", name, PASSWORD]);
            assert!(out.ok, "{}", out.stderr);
            let out = cli(url, profile, &["login", name, PASSWORD, "--device", "cli"]);
            assert!(out.ok, "{}", out.stderr);
        }
        let sent = cli(url, &pa, &["send", &b, "hello from the cli"]);
        assert!(sent.ok, "{}", sent.stderr);
        let id: u64 = sent.stdout.trim().parse().expect("send prints the message id");

        let synced = cli(url, &pb, &["sync", "--json"]);
        assert!(synced.ok, "{}", synced.stderr);
        let messages: Vec<serde_json::Value> = synced
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &serde_json::Value| v["type"] == "message")
            .collect();
        assert_eq!(messages.len(), 1, "{}", synced.stdout);
        assert_eq!(messages[0]["from"], a.as_str());
        assert_eq!(messages[0]["to"], b.as_str());
        assert_eq!(messages[0]["text"], "hello from the cli");
        assert_eq!(messages[0]["id"], id);

        // The key was stored: nothing new the second time.
        let again = cli(url, &pb, &["sync", "--json"]);
        assert!(again.ok && again.stdout.trim().is_empty(), "{}", again.stdout);

        let reply = cli(url, &pb, &["send", &a, "hi back"]);
        assert!(reply.ok, "{}", reply.stderr);
        let synced = cli(url, &pa, &["sync"]);
        assert!(synced.stdout.contains(&format!("{b} -> {a}: hi back")), "{}", synced.stdout);

        let out = cli(url, &pa, &["logout"]);
        assert!(out.ok, "{}", out.stderr);
        let refused = cli(url, &pa, &["sync"]);
        assert!(!refused.ok);
    }
}

#[tokio::test]
async fn cli_failures_exit_non_zero_with_one_line() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p");
    let out = cli(&server.tcp, &profile, &["login", "nobody", PASSWORD]);
    assert!(!out.ok);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_credentials"), "{}", out.stderr);
    let out = cli("ftp://nowhere", &profile, &["sync"]);
    assert!(!out.ok);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn cli_watch_prints_messages_as_they_arrive() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bob");
    assert!(cli(&server.tcp, &profile, &["register", "bob", PASSWORD]).ok);
    assert!(cli(&server.tcp, &profile, &["login", "bob", PASSWORD]).ok);
    let mut watch = std::process::Command::new(cli_binary())
        .args(["--server", &server.tcp, "--profile"])
        .arg(&profile)
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let alice = user(&server.tcp, "alice").await;
    // Give watch a moment to connect, then send.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    alice.send_text("bob", "live").await.unwrap();
    let stdout = watch.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            .find(|l| l.contains("\"type\":\"message\""))
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), line).await;
    let _ = watch.kill();
    let _ = watch.wait();
    let line = line.expect("watch printed in time").unwrap().expect("a message line");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["text"], "live");
}

#[tokio::test]
async fn cli_chat_sends_typed_lines_and_shows_the_peers() {
    use std::io::{BufRead, Write};
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("alice");
    assert!(cli(&server.tcp, &profile, &["register", "alice", PASSWORD]).ok);
    assert!(cli(&server.tcp, &profile, &["login", "alice", PASSWORD]).ok);
    let bob = user(&server.tcp, "bob").await;
    bob.sync().await.unwrap();

    let mut chat = std::process::Command::new(cli_binary())
        .args(["--server", &server.tcp, "--profile"])
        .arg(&profile)
        .args(["chat", "bob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = chat.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let next_line = async |lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str| {
        let wait = async {
            while let Some(line) = lines.recv().await {
                if line.contains(want) {
                    return line;
                }
            }
            panic!("chat ended before printing {want:?}");
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("in time")
    };
    next_line(&mut lines, "chatting with bob").await;

    bob.send_text("alice", "are you there?").await.unwrap();
    assert_eq!(next_line(&mut lines, "are you there?").await, "bob: are you there?");
    // Bob's own inbox holds what he sent; move past it.
    assert_eq!(texts(&bob.sync().await.unwrap()), ["are you there?"]);

    writeln!(stdin, "yes, typing in the chat").unwrap();
    assert_eq!(texts(&receive(&bob, 1).await), ["yes, typing in the chat"]);
    writeln!(stdin, "/quit").unwrap();
    let status = tokio::task::spawn_blocking(move || chat.wait().unwrap()).await.unwrap();
    assert!(status.success());
}
