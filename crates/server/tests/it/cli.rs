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

/// `watch --json` running for `profile`, and the lines it prints.
fn watch(
    server: &str,
    profile: &std::path::Path,
) -> (std::process::Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut watch = std::process::Command::new(cli_binary())
        .args(["--server", server, "--profile"])
        .arg(profile)
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines, printed) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (watch, printed)
}

/// The next line `watch` prints, within 10 s.
async fn next(printed: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), printed.recv());
    line.await.expect("watch printed in time").expect("watch is running")
}

#[tokio::test]
async fn cli_watch_prints_messages_as_they_arrive() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bob");
    assert!(cli(&server.tcp, &profile, &["register", "bob", PASSWORD]).ok);
    assert!(cli(&server.tcp, &profile, &["login", "bob", PASSWORD]).ok);
    let (mut watch, mut printed) = watch(&server.tcp, &profile);
    let alice = user(&server.tcp, "alice").await;
    // Watch prints what was waiting (Bob's profile) once it is connected and synced; only
    // then is the message sent, so it can only arrive through a notify.
    let first = next(&mut printed).await;
    assert!(first.contains("\"type\":\"profile\""), "{first}");
    alice.send_text("bob", "live").await.unwrap();
    let line = loop {
        let line = next(&mut printed).await;
        if line.contains("\"type\":\"message\"") {
            break line;
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["text"], "live");
}

#[tokio::test]
async fn cli_typing_presence_and_privacy_work_end_to_end() {
    let server = Server::start();
    let url = server.tcp.as_str();
    let dir = tempfile::tempdir().unwrap();
    let [ann, ben] = ["ann", "ben"].map(|n| dir.path().join(n));
    for (name, profile) in [("ann", &ann), ("ben", &ben)] {
        run(url, profile, &["register", name, PASSWORD]);
        run(url, profile, &["login", name, PASSWORD]);
    }
    run(url, &ann, &["friend", "add", "ben"]);
    run(url, &ben, &["friend", "accept", "ann"]);
    let (mut watching, mut printed) = watch(url, &ben);
    assert!(next(&mut printed).await.contains("\"type\":\"profile\""));
    assert_eq!(run(url, &ann, &["typing", "ben"]).trim(), "typing to ben");
    let line = loop {
        let line = next(&mut printed).await;
        if line.contains("\"type\":\"typing\"") {
            break line;
        }
    };
    let typing: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (typing["typing"].as_bool(), typing["expires_in_ms"].as_u64()),
        (Some(true), Some(6000))
    );

    assert_eq!(run(url, &ann, &["presence", "ben"]).trim(), "ben online");
    assert!(run(url, &ben, &["privacy", "nobody"]).contains("visible to nobody"));
    assert_eq!(run(url, &ann, &["presence", "ben"]).trim(), "ben hidden");
    let _ = watching.kill();
    let _ = watching.wait();

    // Offline push: the server's VAPID key, a target refused for naming loopback, a mute.
    let listed = run(url, &ann, &["pusher", "list"]);
    assert!(listed.starts_with("vapid public key B"), "{listed}");
    let refused = cli(url, &ann, &["pusher", "add", "https://127.0.0.1:8443/push"]);
    assert!(!refused.ok && refused.stderr.contains("invalid_argument"), "{}", refused.stderr);
    run(url, &ann, &["pusher", "add", "https://push.example.org/ann-phone"]);
    assert!(
        run(url, &ann, &["pusher", "list"])
            .contains("PUSHER_KIND_UNIFIED_PUSH https://push.example.org/ann-phone")
    );
    assert_eq!(run(url, &ann, &["mute", "ben", "--hours", "8"]).trim(), "muted ben");
    let muted = synced(url, &ann, "contact");
    assert!(muted.iter().any(|c| c["username"] == "ben"), "{muted:?}");
    assert_eq!(
        run(url, &ann, &["pusher", "remove", "https://push.example.org/ann-phone"]).trim(),
        "removed"
    );
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

/// Runs a CLI command that must succeed; returns its standard output.
fn run(server: &str, profile: &std::path::Path, args: &[&str]) -> String {
    let out = cli(server, profile, args);
    assert!(out.ok, "{args:?}: {}", out.stderr);
    out.stdout
}

/// The JSON lines of `sync --json` of one type.
fn synced(server: &str, profile: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    run(server, profile, &["sync", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == kind)
        .collect()
}

#[tokio::test]
async fn cli_friend_commands_work_end_to_end() {
    let server = Server::start_with(&["--direct-messages", "friends"]);
    let url = server.tcp.as_str();
    let dir = tempfile::tempdir().unwrap();
    let [ann, ben, cat] = ["ann", "ben", "cat"].map(|n| dir.path().join(n));
    for (name, profile) in [("ann", &ann), ("ben", &ben), ("cat", &cat)] {
        run(url, profile, &["register", name, PASSWORD]);
        run(url, profile, &["login", name, PASSWORD]);
    }
    let refused = cli(url, &ann, &["send", "ben", "hi"]);
    assert!(!refused.ok && refused.stderr.contains("not_friends"), "{}", refused.stderr);

    assert!(
        run(url, &ann, &["friend", "add", "ben", "--greeting", "hello"])
            .contains("request-sent ben")
    );
    let listed = run(url, &ben, &["friend", "list"]);
    assert!(
        listed.contains("request-received ann") && listed.contains("greeting=\"hello\""),
        "{listed}"
    );
    assert!(run(url, &ben, &["friend", "accept", "ann"]).contains("friend ann"));
    assert!(run(url, &ann, &["friend", "list"]).contains("friend ben"));
    run(url, &ann, &["send", "ben", "now we talk"]);
    let texts: Vec<_> = synced(url, &ben, "message").iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, ["now we talk"]);

    run(url, &cat, &["friend", "add", "ann"]);
    run(url, &ann, &["friend", "decline", "cat"]);
    assert_eq!(run(url, &cat, &["friend", "list"]).trim(), "");

    run(url, &ann, &["friend", "block", "cat"]);
    let blocked = cli(url, &cat, &["friend", "add", "ann"]);
    assert!(!blocked.ok && blocked.stderr.contains("blocked"), "{}", blocked.stderr);
    assert!(run(url, &ann, &["friend", "list"]).contains("none cat (cat) blocked"));
    run(url, &ann, &["friend", "block", "cat", "--undo"]);
    run(url, &cat, &["friend", "add", "ann"]);

    assert!(
        run(url, &ben, &["friend", "remark", "ann", "Ann (work)"]).contains("remark=Ann (work)")
    );
    assert!(run(url, &ben, &["friend", "list"]).contains("friend ann (ann) remark=Ann (work)"));
    run(url, &ben, &["friend", "remove", "ann"]);
    assert!(!run(url, &ann, &["friend", "list"]).contains("ben"));
}

#[tokio::test]
async fn cli_group_media_and_recall_commands_work_end_to_end() {
    let server = Server::start();
    let url = server.http.as_str();
    let dir = tempfile::tempdir().unwrap();
    let [ann, ben, cat, old] = ["ann", "ben", "cat", "old"].map(|n| dir.path().join(n));
    for (name, profile) in [("ann", &ann), ("ben", &ben), ("cat", &cat), ("old", &old)] {
        run(url, profile, &["register", name, PASSWORD]);
        run(url, profile, &["login", name, PASSWORD]);
    }
    let created = run(url, &ann, &["group", "create", "Plans", "ben", "old"]);
    let handle = created.split_whitespace().next().unwrap().to_string();
    assert!(handle.ends_with("@chatroom") && created.contains("Plans (3 members)"), "{created}");
    assert!(run(url, &ann, &["group", "invite", &handle, "cat"]).contains("(4 members)"));
    assert!(run(url, &ann, &["group", "rename", &handle, "Trip"]).contains("Trip"));
    let info = run(url, &ben, &["group", "info", &handle]);
    for line in ["owner ann", "member ben", "member cat", "member old"] {
        assert!(info.contains(line), "{info}");
    }
    assert!(run(url, &cat, &["group", "list"]).contains(&format!("{handle} Trip (member)")));

    let sent = run(url, &ben, &["send", &handle, "who brings the tent?", "--mention", "cat"]);
    let sent_id: u64 = sent.trim().parse().unwrap();
    let got = synced(url, &cat, "message");
    let tent = got.iter().find(|m| m["id"] == sent_id).expect("the group message");
    assert_eq!(tent["group_id"].as_u64().unwrap().to_string() + "@chatroom", handle);
    // `profile` prints "cat (user id N, nickname cat)".
    let profile = run(url, &cat, &["profile"]);
    let cat_id: u64 =
        profile.split("user id ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(tent["mentions"], serde_json::json!([cat_id]));

    // A version-1 CLI sees the group as a contact and its messages as prefixed text.
    let old_view = cli(url, &old, &["--protocol", "1", "sync"]);
    assert!(old_view.ok, "{}", old_view.stderr);
    assert!(
        old_view.stdout.contains(&format!("{handle} -> old: ben: who brings the tent?")),
        "{}",
        old_view.stdout
    );
    assert!(
        run(url, &old, &["--protocol", "1", "send", &handle, "me!"]).trim().parse::<u64>().is_ok()
    );
    let replies = synced(url, &ann, "message");
    let reply = replies.iter().find(|m| m["text"] == "me!").expect("the old client's reply");
    assert_eq!(
        (reply["from"].as_str(), reply["kind"].as_str()),
        (Some("old"), Some("MESSAGE_KIND_TEXT"))
    );

    // Upload and send a file, download it as a member; recall a message.
    let file = dir.path().join("packing.txt");
    std::fs::write(&file, "tent, stove, map").unwrap();
    let uploaded = run(url, &ann, &["upload", &handle, file.to_str().unwrap()]);
    let media_id = uploaded.split_whitespace().next().unwrap().to_string();
    let out = dir.path().join("copy.txt");
    run(url, &cat, &["download", &media_id, out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "tent, stove, map");
    let oops: u64 = run(url, &ann, &["send", &handle, "oops"]).trim().parse().unwrap();
    run(url, &ann, &["recall", &oops.to_string()]);
    let seen = synced(url, &cat, "message");
    assert!(
        seen.iter().any(
            |m| m["kind"] == "MESSAGE_KIND_FILE" && m["fallback_text"] == "[File: packing.txt]"
        )
    );
    let recalled = seen.iter().find(|m| m["id"] == oops).expect("the recalled message");
    assert_eq!(recalled["recalled"], true);
    assert!(seen.iter().any(|m| m["kind"] == "MESSAGE_KIND_RECALL" && m["ref_message_id"] == oops));

    run(url, &ann, &["group", "remove", &handle, "ben"]);
    let refused = cli(url, &ben, &["send", &handle, "hello?"]);
    assert!(!refused.ok && refused.stderr.contains("not_member"), "{}", refused.stderr);
    assert_eq!(run(url, &cat, &["group", "leave", &handle]).trim(), format!("left {handle}"));
    assert!(run(url, &ann, &["group", "info", &handle]).contains("(2 members)"));

    // The rest of a group's life, as the owner runs it from the command line.
    run(url, &ann, &["nickname", "Ann"]);
    assert!(
        run(url, &ann, &["group", "announce", &handle, "leave at 8"])
            .contains("announcement: leave at 8")
    );
    run(url, &ann, &["group", "admin", &handle, "old"]);
    assert!(run(url, &old, &["group", "info", &handle]).contains("admin old"));
    run(url, &ann, &["group", "transfer", &handle, "old"]);
    let info = run(url, &ann, &["group", "info", &handle]);
    assert!(info.contains("owner old") && info.contains("admin ann"), "{info}");
    let refused = cli(url, &ann, &["group", "dissolve", &handle]);
    assert!(!refused.ok && refused.stderr.contains("permission_denied"), "{}", refused.stderr);
    assert_eq!(
        run(url, &old, &["group", "dissolve", &handle]).trim(),
        format!("dissolved {handle}")
    );
    let texts: Vec<_> = synced(url, &cat, "message").iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts.last().unwrap(), "cat left the group", "nothing after leaving: {texts:?}");
    let seen = synced(url, &ann, "message");
    assert!(seen.iter().any(|m| m["text"] == "Ann transferred ownership to old"), "{seen:?}");
}

/// Under `group-invites accept`, the CLI shows an invitation with the command that accepts
/// it (and carries it in `sync --json`), and `group join` makes the invitee a member.
#[tokio::test]
async fn cli_accepts_a_group_invitation_end_to_end() {
    let server = Server::start_with(&["--group-invites", "accept"]);
    let url = server.tcp.as_str();
    let dir = tempfile::tempdir().unwrap();
    let [ann, ben] = ["ann", "ben"].map(|n| dir.path().join(n));
    for (name, profile) in [("ann", &ann), ("ben", &ben)] {
        run(url, profile, &["register", name, PASSWORD]);
        run(url, profile, &["login", name, PASSWORD]);
    }
    let created = run(url, &ann, &["group", "create", "Climbing", "ben"]);
    let handle = created.split_whitespace().next().unwrap().to_string();
    assert!(created.contains("Climbing (1 members)"), "invited, not added: {created}");

    let shown = run(url, &ben, &["sync"]);
    let line = shown.lines().find(|l| l.contains("invited you")).expect("the invitation");
    assert!(line.contains("ann invited you to the group \"Climbing\""), "{line}");
    let (_, invitation) = line.split_once("(accept: group join ").expect("how to accept");
    let invitation = invitation.trim_end_matches(')');
    let json = synced(url, &ann, "message");
    assert_eq!(json.last().unwrap()["invitation"], invitation, "the inviter's copy, in JSON");

    let joined = run(url, &ben, &["group", "join", invitation]);
    assert!(joined.contains("Climbing (2 members)") && joined.contains("member ben"), "{joined}");
    assert!(run(url, &ben, &["group", "list"]).contains(&format!("{handle} Climbing (member)")));
}
