//! Operations: the admin API and its credential, kicks and disabled accounts seen by real
//! clients, the audit log, `/metrics` checked by promtool, and the periodic statistics
//! delivered to a local SMTP sink and a local webhook receiver.

use crate::harness::{
    Output, PASSWORD, Server, cli_binary, device, messages, receive, texts, user,
};
use missive_client::{Client, ClientError, Code};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn admin_token(server: &Server) -> String {
    std::fs::read_to_string(server.data.join("admin.token")).expect("admin token").trim().into()
}

/// An admin API call: (HTTP status, JSON body).
async fn admin(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", server.admin);
    let http = reqwest::Client::new();
    let mut request = match method {
        "GET" => http.get(&url),
        _ => http.post(&url),
    };
    if !token.is_empty() {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("admin api answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Runs `missive-cli admin` against the server's admin address with the server's token file.
fn admin_cli(server: &Server, args: &[&str]) -> Output {
    Output::of(
        std::process::Command::new(cli_binary())
            .args(["admin", "--admin", &server.admin, "--admin-token-file"])
            .arg(server.data.join("admin.token"))
            .args(args)
            .env_remove("MISSIVE_ADMIN_TOKEN"),
    )
}

/// Pings until the server has closed the client's link; returns the error it saw.
async fn signed_out(client: &Client) -> ClientError {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.ping().await {
            Err(error) => return error,
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "the link stayed open");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn the_admin_api_takes_only_its_own_credential_and_a_kick_closes_exactly_one_device() {
    let server = Server::start_with(&["--push-private-endpoints", "true"]);
    let token = admin_token(&server);
    let phone = user(&server.tcp, "alice").await;
    let laptop = device(&server.ws(), "alice", "laptop").await;
    let bob = user(&server.tcp, "bob").await;
    phone.set_pusher(unified_push("phone")).await.unwrap();
    laptop.set_pusher(unified_push("laptop")).await.unwrap();

    let (status, body) = admin(&server, "GET", "/v1/admin/users", "", None).await;
    assert_eq!((status, body["name"].as_str()), (401, Some("unauthenticated")));
    let user_token = phone.session().unwrap().token;
    let (status, _) = admin(&server, "GET", "/v1/admin/users", &user_token, None).await;
    assert_eq!(status, 401, "a user's token is not the admin credential");

    let (status, body) = admin(&server, "GET", "/v1/admin/users?query=ALI", &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"][0]["username"], "alice");
    assert_eq!(body["users"].as_array().unwrap().len(), 1);

    let (status, body) = admin(&server, "GET", "/v1/admin/users/alice", &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online"], true);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d["online"] == true && d["revoked"] == false), "{body}");
    let phone_id = phone.session().unwrap().device_id;

    let path = format!("/v1/admin/users/alice/devices/{phone_id}/kick");
    let (status, body) = admin(&server, "POST", &path, &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(signed_out(&phone).await.code(), Some(Code::Unauthenticated));
    laptop.ping().await.expect("the other device stays connected");
    let pushers = laptop.pushers().await.unwrap().pushers;
    let endpoints: Vec<_> = pushers.iter().map(|p| p.endpoint.as_str()).collect();
    assert_eq!(endpoints, [unified_push("laptop").endpoint], "the kicked device's target is gone");
    laptop.send_text("bob", "still here").await.expect("and can send");
    assert_eq!(texts(&receive(&bob, 1).await), ["still here"]);

    let again = Client::connect(&server.tcp).await.unwrap();
    let resumed = again.resume(&user_token).await.unwrap_err();
    assert_eq!(resumed.code(), Some(Code::Unauthenticated), "the kicked token is revoked");
    let (_, body) = admin(&server, "GET", "/v1/admin/users/alice", &token, None).await;
    let phone_row =
        body["devices"].as_array().unwrap().iter().find(|d| d["device_id"] == phone_id).cloned();
    assert_eq!(
        phone_row.as_ref().map(|d| (&d["revoked"], &d["online"])),
        Some((&Value::Bool(true), &Value::Bool(false)))
    );
    let (status, body) = admin(&server, "POST", &path, &token, None).await;
    assert_eq!((status, body["name"].as_str()), (404, Some("not_found")), "kicked once");
}

#[tokio::test]
async fn a_disabled_account_is_signed_out_and_cannot_log_in_until_enabled() {
    let server = Server::start_with(&["--push-private-endpoints", "true"]);
    let token = admin_token(&server);
    let alice = user(&server.tcp, "alice").await;
    alice.set_pusher(unified_push("phone")).await.unwrap();
    let bob = user(&server.ws(), "bob").await;

    let (status, body) =
        admin(&server, "POST", "/v1/admin/users/alice/disable", &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["disabled"], true);
    assert_eq!(signed_out(&alice).await.code(), Some(Code::AccountDisabled));
    let retry = Client::connect(&server.tcp).await.unwrap();
    let refused = retry.login("alice", PASSWORD, "phone").await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::AccountDisabled));
    let wrong = retry.login("alice", "wrong password", "phone").await.unwrap_err();
    assert_eq!(wrong.code(), Some(Code::InvalidCredentials), "no hint without the password");
    bob.ping().await.expect("other users are untouched");

    let (status, _) = admin(&server, "POST", "/v1/admin/users/alice/enable", &token, None).await;
    assert_eq!(status, 200);
    retry.login("alice", PASSWORD, "phone").await.expect("enabled again");
    assert!(retry.pushers().await.unwrap().pushers.is_empty(), "no push while disabled");
}

/// LOGOUT drops the device's push targets; the user's other devices keep theirs.
#[tokio::test]
async fn a_logout_drops_the_devices_push_targets() {
    let server = Server::start_with(&["--push-private-endpoints", "true"]);
    let phone = user(&server.tcp, "alice").await;
    let tablet = device(&server.tcp, "alice", "tablet").await;
    phone.set_pusher(unified_push("phone")).await.unwrap();
    tablet.set_pusher(unified_push("tablet")).await.unwrap();
    tablet.logout().await.unwrap();
    let pushers = phone.pushers().await.unwrap().pushers;
    let endpoints: Vec<_> = pushers.iter().map(|p| p.endpoint.as_str()).collect();
    assert_eq!(endpoints, [unified_push("phone").endpoint]);
}

/// A UnifiedPush target that nothing listens on: the tests here only list them.
fn unified_push(device: &str) -> missive_client::proto::Pusher {
    missive_client::proto::Pusher {
        kind: missive_client::proto::PusherKind::UnifiedPush as i32,
        endpoint: format!("http://127.0.0.1:9/up/{device}"),
        ..Default::default()
    }
}

#[tokio::test]
async fn notices_arrive_as_system_messages_groups_are_shown_and_every_action_is_audited() {
    let server = Server::start();
    let token = admin_token(&server);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    let bob_id = bob.session().unwrap().user_id;

    let notice = serde_json::json!({ "text": "maintenance at 02:00 UTC" });
    let path = format!("/v1/admin/users/{bob_id}/notice");
    let (status, body) = admin(&server, "POST", &path, &token, Some(notice)).await;
    assert_eq!(status, 200, "{body}");
    let received = messages(&receive(&bob, 1).await);
    assert_eq!(received[0].text, "maintenance at 02:00 UTC");
    assert_eq!((received[0].from.as_str(), received[0].from_user_id), ("system", 0));
    assert_eq!(received[0].kind, missive_client::proto::MessageKind::System as i32);
    let blank = serde_json::json!({ "text": "  " });
    let (status, _) = admin(&server, "POST", &path, &token, Some(blank)).await;
    assert_eq!(status, 400);

    let group = alice.group_create("ops", vec![bob_id]).await.unwrap();
    let path = format!("/v1/admin/groups/{}@chatroom", group.group_id);
    let (status, body) = admin(&server, "GET", &path, &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["group"]["name"], "ops");
    assert_eq!(body["group"]["members"].as_array().unwrap().len(), 2);
    let (status, _) = admin(&server, "GET", "/v1/admin/groups/nonsense", &token, None).await;
    assert_eq!(status, 404);

    let (status, body) = admin(&server, "GET", "/v1/admin/audit?limit=10", &token, None).await;
    assert_eq!(status, 200, "{body}");
    let actions: Vec<(&str, u64)> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["code"].as_u64().unwrap_or(0)))
        .collect();
    let not_found = Code::NotFound as u64;
    let invalid = Code::InvalidArgument as u64;
    assert_eq!(
        actions,
        [("get_group", not_found), ("get_group", 0), ("notice", invalid), ("notice", 0)],
        "newest first, refusals included"
    );
    assert!(body["entries"][0]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn missive_cli_admin_runs_every_operator_command() {
    // Totals are counted afresh whenever asked.
    let server = Server::start_with(&["--totals-max-age-s", "0"]);
    let phone = user(&server.tcp, "alice").await;
    let laptop = device(&server.tcp, "alice", "laptop").await;
    let bob = user(&server.tcp, "bob").await;
    let bob_id = bob.session().unwrap().user_id;
    let group = phone.group_create("night shift", vec![bob_id]).await.unwrap();

    let refused = std::process::Command::new(cli_binary())
        .args(["admin", "--admin", &server.admin, "users"])
        .env("MISSIVE_ADMIN_TOKEN", phone.session().unwrap().token)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unauthenticated"), "{stderr}");

    // Another HTTP server on the port: its answer is not mistaken for the admin API's.
    // (a thread: the runtime is blocked while the CLI runs)
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut socket in other.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut socket, &mut request);
            let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot here\n";
            let _ = std::io::Write::write_all(&mut socket, answer.as_bytes());
        }
    });
    let elsewhere = std::process::Command::new(cli_binary())
        .args(["admin", "--admin", &other_url, "--admin-token", "x".repeat(20).as_str()])
        .args(["users"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(stderr.contains("HTTP 404 Not Found without a code"), "{stderr}");
    let dots = admin_cli(&server, &["user", ".."]);
    assert!(!dots.ok && dots.stderr.contains("names no user"), "{}", dots.stderr);

    let found = admin_cli(&server, &["users", "ali"]);
    assert!(found.ok, "{}", found.stderr);
    assert_eq!(found.stdout.lines().count(), 1, "{}", found.stdout);
    assert!(found.stdout.contains("alice"));

    let shown = admin_cli(&server, &["user", "alice"]);
    assert!(shown.stdout.contains("online: yes"), "{}", shown.stdout);
    assert_eq!(shown.stdout.matches(" online ").count(), 2, "{}", shown.stdout);
    let json = admin_cli(&server, &["--json", "user", "alice"]);
    let json: Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    assert_eq!(json["devices"].as_array().unwrap().len(), 2);

    let phone_id = phone.session().unwrap().device_id.to_string();
    let kicked = admin_cli(&server, &["kick", "alice", &phone_id]);
    assert!(kicked.ok, "{}", kicked.stderr);
    assert_eq!(signed_out(&phone).await.code(), Some(Code::Unauthenticated));
    laptop.ping().await.expect("the other device stays connected");
    let again = admin_cli(&server, &["kick", "alice", &phone_id]);
    assert!(!again.ok && again.stderr.contains("not_found"), "{}", again.stderr);

    assert!(admin_cli(&server, &["disable", "bob"]).ok);
    assert_eq!(signed_out(&bob).await.code(), Some(Code::AccountDisabled));
    let listed = admin_cli(&server, &["users"]);
    assert!(listed.stdout.lines().any(|l| l.contains("bob") && l.contains("DISABLED")));
    assert!(admin_cli(&server, &["enable", "bob"]).ok);
    let bob = device(&server.tcp, "bob", "phone").await;

    let notice = admin_cli(&server, &["notice", "bob", "the server restarts at noon"]);
    assert!(notice.ok, "{}", notice.stderr);
    assert_eq!(texts(&receive(&bob, 1).await).last().unwrap(), "the server restarts at noon");

    let shown = admin_cli(&server, &["group", &group.handle]);
    assert!(shown.stdout.contains("night shift (2 members)"), "{}", shown.stdout);
    let totals = admin_cli(&server, &["totals"]);
    assert!(totals.stdout.contains("registered users  2"), "{}", totals.stdout);

    let audit = admin_cli(&server, &["audit", "--limit", "100"]);
    let actions: Vec<&str> =
        audit.stdout.lines().filter_map(|line| line.split_whitespace().nth(6)).collect();
    assert_eq!(
        actions,
        [
            "get_group",
            "notice",
            "enable",
            "list_users",
            "disable",
            "kick",
            "kick",
            "get_user",
            "get_user",
            "list_users",
        ],
        "{}",
        audit.stdout
    );
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_online_devices_by_transport_and_version() {
    // Totals are counted afresh whenever asked, so the gauge below sees both users.
    let server = Server::start_with(&["--totals-max-age-s", "0"]);
    let alice = user(&server.tcp, "alice").await;
    let bob = crate::harness::user_with(&server.ws(), "bob", 1).await;
    alice.send_text("bob", "hi").await.unwrap();
    receive(&bob, 1).await;
    let token = admin_token(&server);
    let (_, totals) = admin(&server, "GET", "/v1/admin/totals", &token, None).await;
    assert_eq!(totals["registered_users"], 2);
    assert!(totals["counted_at_ms"].as_i64().unwrap() > 0, "{totals}");

    let text =
        reqwest::get(format!("{}/metrics", server.admin)).await.unwrap().text().await.unwrap();
    for expected in [
        "missive_online_devices{transport=\"tcp\",protocol_version=\"3\"} 1",
        "missive_online_devices{transport=\"websocket\",protocol_version=\"1\"} 1",
        "missive_registered_users 2",
        "missive_messages_sent_total{kind=\"text\"} 1",
        "# HELP missive_rpc_duration_seconds",
        "missive_store_duration_seconds_count{data_type=\"message\",backend=\"embedded\",\
         method=\"Append\"} 1",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from /metrics:\n{text}");
    }
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut check = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{promtool} runs (scripts/install-test-tools installs it): {e}")
        });
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && said.trim().is_empty(), "promtool: {said}");
}

/// A local SMTP server that keeps every message it is given.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mail = Arc::new(Mutex::new(Vec::new()));
    let kept = mail.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = &mut data {
                        if line == "." {
                            kept.lock().unwrap().push(data.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://{address}"), mail)
}

/// A local HTTP server that keeps every JSON body POSTed to `/hook`.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| async move {
            kept.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
            "ok"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}/hook"), received)
}

#[tokio::test]
async fn each_period_is_kept_in_the_store_and_reported_by_mail_and_webhook() {
    let (smtp, mail) = smtp_sink().await;
    let (hook, posted) = webhook_receiver().await;
    let server = Server::start_with(&[
        "--stats-period-s",
        "2",
        "--report-smtp",
        &smtp,
        "--report-to",
        "ops@example.org",
        "--report-webhook",
        &hook,
        "--deployment",
        "test-deployment",
    ]);
    let alice = user(&server.tcp, "alice").await;
    let bob = user(&server.tcp, "bob").await;
    for text in ["one", "two", "three"] {
        alice.send_text("bob", text).await.unwrap();
    }
    receive(&bob, 3).await;

    // Periods close a little after they end; wait until the reports add up to the traffic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let total = |field: &str| -> u64 {
        posted.lock().unwrap().iter().map(|p| p["period"][field].as_u64().unwrap_or(0)).sum()
    };
    while total("messages_sent") < 3
        || total("new_registrations") < 2
        || total("messages_delivered") < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reports so far: {:?}",
            posted.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!((total("messages_sent"), total("new_registrations")), (3, 2));
    let reports = posted.lock().unwrap().clone();
    assert!(reports.iter().all(|r| r["deployment"] == "test-deployment"));
    assert!(reports.iter().any(|r| r["period"]["active_users"].as_u64() == Some(2)), "{reports:?}");
    assert!(reports.iter().any(|r| r["period"]["online_peak"].as_u64() == Some(2)), "{reports:?}");

    // Every delivered webhook has its mail, sent to the configured recipient.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mail.lock().unwrap().len() < reports.len() {
        assert!(tokio::time::Instant::now() < deadline, "mails: {:?}", mail.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = mail.lock().unwrap().clone();
    assert!(
        mails.iter().all(
            |m| m.contains("To: ops@example.org") && m.contains("[test-deployment] statistics")
        )
    );
    assert!(
        mails.iter().any(|m| m.contains("Messages sent: 3") || m.contains("Messages sent: 1")),
        "{mails:?}"
    );

    let token = admin_token(&server);
    let (status, body) = admin(&server, "GET", "/v1/admin/stats?hours=100", &token, None).await;
    assert_eq!(status, 200);
    let stored: u64 = body["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["messages_sent"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 3, "the store keeps what was reported");

    let table = admin_cli(&server, &["stats", "--hours", "100"]);
    assert!(table.ok, "{}", table.stderr);
    let sent: u64 = table
        .stdout
        .lines()
        .skip(1)
        .map(|row| row.split_whitespace().nth(8).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, 3, "{}", table.stdout);
}
