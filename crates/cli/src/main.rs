//! `missive-cli`: a scriptable and interactive Missive client.
//!
//! Each profile directory holds one device's session token and SyncKey, so that successive
//! invocations continue where the last one stopped.

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use missive_client::profile::{ProfileDir, ProfileState};
use missive_client::proto::{DataType, SyncItem, sync_item::Body};
use missive_client::{Client, PROTOCOL_VERSION};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(name = "missive-cli", version, about = "Missive command-line client")]
struct Cli {
    /// tcp://HOST:PORT, ws://HOST:PORT/ws or http://HOST:PORT (default: the profile's server).
    #[arg(long, env = "MISSIVE_SERVER")]
    server: Option<String>,
    /// Directory keeping this device's token and SyncKey.
    #[arg(long, env = "MISSIVE_PROFILE", default_value = ".missive-profile")]
    profile: std::path::PathBuf,
    /// Client protocol version to declare.
    #[arg(long, default_value_t = PROTOCOL_VERSION)]
    protocol: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates an account.
    Register { user: String, password: String },
    /// Signs in as a new device and keeps its token in the profile.
    Login {
        user: String,
        password: String,
        #[arg(long, default_value = "missive-cli")]
        device: String,
    },
    /// Sends a text and prints the server message id.
    Send { peer: String, text: String },
    /// Prints every change since the stored SyncKey and stores the new key.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Stays connected and prints changes as they arrive.
    Watch {
        #[arg(long)]
        json: bool,
    },
    /// Chats with a peer interactively: type a line to send it; /quit or end of input leaves.
    Chat { peer: String },
    /// Shows a profile (one's own without a name).
    Profile { user: Option<String> },
    /// Changes one's nickname.
    Nickname { name: String },
    /// Revokes this device's token.
    Logout,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = ProfileDir::new(&cli.profile);
    let mut state =
        dir.load().with_context(|| format!("reading profile {}", dir.path().display()))?;
    let server = match cli
        .server
        .clone()
        .or_else(|| (!state.server.is_empty()).then(|| state.server.clone()))
    {
        Some(server) => server,
        None => bail!("no server: pass --server URL"),
    };
    let client = Client::connect_with(&server, cli.protocol)
        .await
        .with_context(|| format!("connecting to {server}"))?;

    match cli.command {
        Command::Register { user, password } => {
            let answer = client.register(&user, &password).await?;
            println!("registered {user} (user id {})", answer.user_id);
        }
        Command::Login { user, password, device } => {
            let session = client.login(&user, &password, &device).await?;
            state = ProfileState {
                server,
                username: user.clone(),
                token: session.token,
                user_id: session.user_id,
                device_id: session.device_id,
                sync_key: String::new(),
            };
            dir.save(&state)?;
            println!(
                "logged in as {user} (user id {}, device {})",
                session.user_id, session.device_id
            );
        }
        command => {
            if state.token.is_empty() {
                bail!("not logged in: run login first");
            }
            client.resume(&state.token).await?;
            client.set_sync_key(state.sync_key_bytes());
            match command {
                Command::Send { peer, text } => {
                    let answer = client.send_text(&peer, &text).await?;
                    println!("{}", answer.message_id);
                }
                Command::Sync { json } => {
                    let items = client.sync().await?;
                    save_key(&dir, &mut state, &client)?;
                    for item in &items {
                        println!("{}", render(item, json));
                    }
                }
                Command::Watch { json } => {
                    let fallback = fallback(&client);
                    // What is already waiting first, then whatever each notify announces.
                    let mut items = client.sync().await?;
                    loop {
                        save_key(&dir, &mut state, &client)?;
                        for item in &items {
                            println!("{}", render(item, json));
                        }
                        items = client.next_changes(fallback).await?;
                    }
                }
                Command::Chat { peer } => chat(&client, &dir, &mut state, &peer).await?,
                Command::Profile { user } => {
                    let profile = client.profile(user.as_deref().unwrap_or("")).await?;
                    println!(
                        "{} (user id {}, nickname {})",
                        profile.username, profile.user_id, profile.nickname
                    );
                }
                Command::Nickname { name } => {
                    client.set_nickname(&name).await?;
                    println!("nickname set to {name}");
                }
                Command::Logout => {
                    client.logout().await?;
                    state.token.clear();
                    dir.save(&state)?;
                    println!("logged out");
                }
                Command::Register { .. } | Command::Login { .. } => unreachable!("handled above"),
            }
        }
    }
    Ok(())
}

/// How long to wait for a notify before syncing anyway: the short link has none.
fn fallback(client: &Client) -> Duration {
    if client.is_long_link() { Duration::from_secs(30) } else { Duration::from_secs(1) }
}

fn save_key(dir: &ProfileDir, state: &mut ProfileState, client: &Client) -> anyhow::Result<()> {
    state.set_sync_key(&client.sync_key());
    dir.save(state).context("saving the sync key")
}

async fn chat(
    client: &Client,
    dir: &ProfileDir,
    state: &mut ProfileState,
    peer: &str,
) -> anyhow::Result<()> {
    client.profile(peer).await.with_context(|| format!("looking up {peer}"))?;
    println!("chatting with {peer}; type a message and press enter, /quit to leave");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let fallback = fallback(client);
    let show = |items: Vec<SyncItem>| {
        for item in items {
            if let Some(Body::Message(m)) = &item.body
                && (m.from == peer || m.to == peer)
            {
                println!("{}: {}", m.from, m.text);
            }
        }
    };
    show(client.sync().await?);
    save_key(dir, state, client)?;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                if line == "/quit" {
                    break;
                }
                if !line.is_empty() {
                    client.send_text(peer, line).await?;
                }
            }
            items = client.next_changes(fallback) => {
                show(items?);
                save_key(dir, state, client)?;
            }
        }
    }
    Ok(())
}

fn render(item: &SyncItem, json: bool) -> String {
    let data_type = DataType::try_from(item.r#type).unwrap_or(DataType::Unspecified);
    match (&item.body, json) {
        (Some(Body::Message(m)), true) => serde_json::json!({
            "type": "message", "version": item.version, "id": m.id, "from": m.from, "to": m.to,
            "text": m.text, "sent_at_ms": m.sent_at_ms, "client_msg_id": m.client_msg_id,
        })
        .to_string(),
        (Some(Body::Message(m)), false) => {
            format!("[{}] {} -> {}: {}", item.version, m.from, m.to, m.text)
        }
        (Some(Body::Profile(p)), true) => serde_json::json!({
            "type": "profile", "version": item.version, "user_id": p.user_id,
            "username": p.username, "nickname": p.nickname,
        })
        .to_string(),
        (Some(Body::Profile(p)), false) => {
            format!("[{}] profile {} ({})", item.version, p.username, p.nickname)
        }
        (Some(Body::Contact(c)), true) => serde_json::json!({
            "type": "contact", "version": item.version, "user_id": c.user_id,
            "username": c.username, "nickname": c.nickname,
        })
        .to_string(),
        (Some(Body::Contact(c)), false) => {
            format!("[{}] contact {} ({})", item.version, c.username, c.nickname)
        }
        (None, true) => {
            serde_json::json!({ "type": data_type.as_str_name(), "version": item.version })
                .to_string()
        }
        (None, false) => format!("[{}] {}", item.version, data_type.as_str_name()),
    }
}
