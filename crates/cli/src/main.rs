//! `missive-cli`: a scriptable and interactive Missive client.
//!
//! Each profile directory holds one device's session token and SyncKey, so that successive
//! invocations continue where the last one stopped.

mod admin;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use missive_client::profile::{ProfileDir, ProfileState};
use missive_client::proto::{
    Contact, DataType, Event, Group, GroupRole, MessageKind, PresenceState, PresenceVisibility,
    Pusher, PusherKind, Relation, SyncItem, UserPresence, event, sync_item::Body,
};
use missive_client::{Client, PROTOCOL_VERSION, Trust};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(name = "missive-cli", version, about = "Missive command-line client")]
struct Cli {
    /// tcp:// or tls://HOST:PORT, ws:// or wss://HOST:PORT/ws, http:// or https://HOST:PORT
    /// (default: the profile's server).
    #[arg(long, env = "MISSIVE_SERVER")]
    server: Option<String>,
    /// PEM file of a private CA whose certificate the server (or admin address) presents
    /// over TLS; Mozilla's roots are trusted either way.
    #[arg(long, global = true, env = "MISSIVE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
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
    /// Sends a text to a user or a group (its handle `<id>@chatroom` or its id) and prints
    /// the server message id.
    Send {
        peer: String,
        text: String,
        /// Group messages: mention these members (usernames).
        #[arg(long = "mention")]
        mentions: Vec<String>,
    },
    /// Uploads an image or file for a conversation and sends it (an image when its type is
    /// image/*); prints the media id and the message id.
    Upload {
        peer: String,
        file: std::path::PathBuf,
        /// The media type; guessed from the file name when absent.
        #[arg(long)]
        mime: Option<String>,
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Downloads an uploaded image or file into a local file.
    Download { media_id: String, out: std::path::PathBuf },
    /// Recalls one of your messages (within 2 minutes of sending it).
    Recall { message_id: u64 },
    /// Tells the sender of a 1:1 message you have read up to it.
    Read { message_id: u64 },
    /// Replaces the text of one of your messages (within 48 hours of sending it).
    Edit { message_id: u64, text: String },
    /// Reacts to a message with an emoji (replacing your reaction), or with --remove takes
    /// your reaction back.
    React {
        message_id: u64,
        #[arg(required_unless_present = "remove")]
        emoji: Option<String>,
        #[arg(long)]
        remove: bool,
    },
    /// Friends: requests, answers, removal, blocking, remarks.
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Groups: create, invite, remove, leave, rename, info, list and more.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Prints every change since the stored SyncKey and stores the new key.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Stays connected and prints changes as they arrive, and (version 3, long links) the
    /// typing and presence events it is pushed.
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
    /// Tells a user or a group (its handle or id) that you are typing, or with --stop that
    /// you stopped.
    Typing {
        peer: String,
        #[arg(long)]
        stop: bool,
    },
    /// Finds your messages that hold every word of a query, newest first.
    Search {
        query: String,
        /// Only the conversation with this user, or this group (handle or id).
        #[arg(long = "in")]
        conversation: Option<String>,
        /// Only messages from this user.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Offline push targets of this device: add, remove, list (with the server's VAPID key).
    #[command(subcommand)]
    Pusher(PusherCommand),
    /// No offline push for a conversation (a user, or a group's handle or id) for a while,
    /// or for good; --undo unmutes.
    Mute {
        conversation: String,
        /// Hours; without it, for good.
        #[arg(long)]
        hours: Option<u64>,
        #[arg(long)]
        undo: bool,
    },
    /// Sets who sees your presence (online, last seen).
    Privacy { presence: Visibility },
    /// Shows whether users are online, or when they were last seen, as far as they let you.
    Presence { users: Vec<String> },
    /// Revokes this device's token.
    Logout,
    /// Operators' commands over a node's admin API, with the admin credential.
    Admin(admin::AdminArgs),
}

#[derive(Subcommand)]
enum PusherCommand {
    /// Registers a UnifiedPush endpoint (plain JSON, or Web Push encryption with --p256dh and
    /// --auth, both base64url), or with --web-push a browser's subscription.
    Add {
        endpoint: String,
        #[arg(long)]
        web_push: bool,
        #[arg(long)]
        p256dh: Option<String>,
        #[arg(long)]
        auth: Option<String>,
    },
    Remove {
        endpoint: String,
    },
    List,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Visibility {
    Friends,
    Everyone,
    Nobody,
}

#[derive(Subcommand)]
enum FriendCommand {
    /// Asks a user to be friends.
    Add {
        user: String,
        #[arg(long, default_value = "")]
        greeting: String,
    },
    /// Accepts a friend request.
    Accept { user: String },
    /// Declines a friend request.
    Decline { user: String },
    /// Ends a friendship or withdraws a request.
    Remove { user: String },
    /// Blocks a user (or unblocks with --undo).
    Block {
        user: String,
        #[arg(long)]
        undo: bool,
    },
    /// Sets your own name for a contact (empty removes it).
    Remark { user: String, remark: String },
    /// Lists your contacts, pending requests, groups and blocked users.
    List,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Creates a group with these members (usernames) and prints its id.
    Create { name: String, members: Vec<String> },
    /// Invites users (usernames).
    Invite { group: String, users: Vec<String> },
    /// Removes members (usernames); owner and admins only.
    Remove { group: String, users: Vec<String> },
    /// Leaves a group.
    Leave { group: String },
    /// Renames a group; owner and admins only.
    Rename { group: String, name: String },
    /// Sets the announcement (empty clears it); owner and admins only.
    Announce { group: String, text: String },
    /// Makes a member an admin (or a member again with --undo); owner only.
    Admin {
        group: String,
        user: String,
        #[arg(long)]
        undo: bool,
    },
    /// Hands ownership to a member; owner only.
    Transfer { group: String, user: String },
    /// Ends the group for everyone; owner only.
    Dissolve { group: String },
    /// Shows a group and its members.
    Info { group: String },
    /// Accepts an invitation into a group (printed with the invitation message).
    Join { invitation: String },
    /// Lists the groups you are in.
    List,
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
    let trust = Trust::new(cli.ca_file.as_deref()).context("reading --ca-file")?;
    if let Command::Admin(args) = cli.command {
        return admin::run(args, &trust).await;
    }
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
    let client = Client::connect_trusting(&server, cli.protocol, &trust)
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
                Command::Send { peer, text, mentions } => {
                    let mentioned = user_ids(&client, &mentions).await?;
                    let answer = match missive_client::ids::parse_group(&peer) {
                        Some(group) => client.send_to_group(group, &text, mentioned).await?,
                        None if mentioned.is_empty() => client.send_text(&peer, &text).await?,
                        None => bail!("mentions are for group messages"),
                    };
                    println!("{}", answer.message_id);
                }
                Command::Upload { peer, file, mime, caption } => {
                    let data = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .context("the file needs a name")?;
                    let mime = mime.unwrap_or_else(|| guess_mime(&name).to_string());
                    let to = match missive_client::ids::parse_group(&peer) {
                        Some(id) => id,
                        None => user_id(&client, &peer).await?,
                    };
                    let media = client.upload(to, &name, &mime, data).await?;
                    let kind = if mime.starts_with("image/") {
                        MessageKind::Image
                    } else {
                        MessageKind::File
                    };
                    let sent = client.send_media(to, kind, &media, &caption).await?;
                    println!("{} {}", media.media_id, sent.message_id);
                }
                Command::Download { media_id, out } => {
                    let downloaded = client.download(&media_id).await?;
                    std::fs::write(&out, &downloaded.data)
                        .with_context(|| format!("writing {}", out.display()))?;
                    let name = downloaded.media.map(|m| m.name).unwrap_or_default();
                    println!(
                        "{} bytes ({name}) written to {}",
                        downloaded.data.len(),
                        out.display()
                    );
                }
                Command::Recall { message_id } => {
                    client.recall(message_id).await?;
                    println!("recalled {message_id}");
                }
                Command::Read { message_id } => {
                    client.mark_read(message_id).await?;
                    println!("read up to {message_id}");
                }
                Command::Edit { message_id, text } => {
                    client.edit(message_id, &text).await?;
                    println!("edited {message_id}");
                }
                Command::React { message_id, emoji, remove } => {
                    let emoji = if remove { String::new() } else { emoji.unwrap_or_default() };
                    let answer = client.react(message_id, &emoji).await?;
                    let tally: Vec<String> = answer
                        .reactions
                        .iter()
                        .map(|r| format!("{} {}", r.emoji, r.user_ids.len()))
                        .collect();
                    println!("reactions on {message_id}: {}", tally.join(", "));
                }
                Command::Friend(command) => friend(&client, command).await?,
                Command::Group(command) => group(&client, command).await?,
                Command::Sync { json } => {
                    let items = client.sync().await?;
                    save_key(&dir, &mut state, &client)?;
                    for item in &items {
                        println!("{}", render(item, json));
                    }
                }
                Command::Watch { json } => {
                    let fallback = fallback(&client);
                    let events = client.is_long_link() && client.protocol_version() >= 3;
                    // What is already waiting first, then whatever each notify announces.
                    let mut items = client.sync().await?;
                    loop {
                        save_key(&dir, &mut state, &client)?;
                        for item in &items {
                            println!("{}", render(item, json));
                        }
                        items = tokio::select! {
                            items = client.next_changes(fallback) => items?,
                            event = client.next_event(), if events => {
                                println!("{}", render_event(&event?, json));
                                Vec::new()
                            }
                        };
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
                Command::Typing { peer, stop } => {
                    let to = match missive_client::ids::parse_group(&peer) {
                        Some(id) => id,
                        None => user_id(&client, &peer).await?,
                    };
                    client.typing(to, !stop).await?;
                    println!("{} {peer}", if stop { "stopped typing to" } else { "typing to" });
                }
                Command::Search { query, conversation, from, limit, json } => {
                    let conversation_id = match conversation {
                        Some(name) => match missive_client::ids::parse_group(&name) {
                            Some(id) => id,
                            None => user_id(&client, &name).await?,
                        },
                        None => 0,
                    };
                    let sender_id = match from {
                        Some(name) => user_id(&client, &name).await?,
                        None => 0,
                    };
                    let request = missive_client::proto::SearchRequest {
                        query,
                        conversation_id,
                        sender_id,
                        limit,
                        ..Default::default()
                    };
                    let answer = client.search(request).await?;
                    for hit in answer.hits {
                        let item = SyncItem {
                            r#type: DataType::Message as i32,
                            version: hit.version,
                            body: hit.message.map(Body::Message),
                        };
                        println!("{}", render(&item, json));
                    }
                }
                Command::Pusher(command) => pusher(&client, command).await?,
                Command::Mute { conversation, hours, undo } => {
                    let id = match missive_client::ids::parse_group(&conversation) {
                        Some(id) => id,
                        None => user_id(&client, &conversation).await?,
                    };
                    let until = match (undo, hours) {
                        (true, _) => 0,
                        (false, Some(hours)) => {
                            missive_client::unix_ms() + hours as i64 * 3_600_000
                        }
                        (false, None) => i64::MAX,
                    };
                    client.set_muted(id, until).await?;
                    println!("{} {conversation}", if undo { "unmuted" } else { "muted" });
                }
                Command::Privacy { presence } => {
                    let (visibility, whom) = match presence {
                        Visibility::Friends => (PresenceVisibility::Friends, "friends"),
                        Visibility::Everyone => (PresenceVisibility::Everyone, "everyone"),
                        Visibility::Nobody => (PresenceVisibility::Nobody, "nobody"),
                    };
                    client.set_privacy(visibility).await?;
                    println!("presence visible to {whom}");
                }
                Command::Presence { users } => {
                    let ids = user_ids(&client, &users).await?;
                    let now = missive_client::unix_ms();
                    for (name, presence) in users.iter().zip(client.presence(&ids).await?) {
                        println!("{name} {}", describe_presence(&presence, now));
                    }
                }
                Command::Logout => {
                    client.logout().await?;
                    state.token.clear();
                    dir.save(&state)?;
                    println!("logged out");
                }
                Command::Register { .. } | Command::Login { .. } | Command::Admin(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
    Ok(())
}

/// A group named by its id or its handle `<id>@chatroom`.
fn group_id(name: &str) -> anyhow::Result<u64> {
    missive_client::ids::parse_group(name)
        .with_context(|| format!("{name:?} is not a group id or handle"))
}

async fn user_id(client: &Client, username: &str) -> anyhow::Result<u64> {
    let profile =
        client.profile(username).await.with_context(|| format!("looking up {username}"))?;
    Ok(profile.user_id)
}

async fn user_ids(client: &Client, usernames: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(usernames.len());
    for username in usernames {
        ids.push(user_id(client, username).await?);
    }
    Ok(ids)
}

/// A media type from a file name's extension.
fn guess_mime(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn relation_name(contact: &Contact) -> &'static str {
    match Relation::try_from(contact.relation).unwrap_or(Relation::None) {
        Relation::None => "none",
        Relation::RequestSent => "request-sent",
        Relation::RequestReceived => "request-received",
        Relation::Friend => "friend",
        Relation::Member => "member",
    }
}

fn describe_contact(contact: &Contact) -> String {
    let mut line =
        format!("{} {} ({})", relation_name(contact), contact.username, contact.nickname);
    if !contact.remark.is_empty() {
        line.push_str(&format!(" remark={}", contact.remark));
    }
    if !contact.greeting.is_empty() {
        line.push_str(&format!(" greeting={:?}", contact.greeting));
    }
    if contact.blocked {
        line.push_str(" blocked");
    }
    line
}

async fn friend(client: &Client, command: FriendCommand) -> anyhow::Result<()> {
    let answer = match command {
        FriendCommand::Add { user, greeting } => client.friend_request(&user, &greeting).await?,
        FriendCommand::Accept { user } => client.friend_respond(&user, true).await?,
        FriendCommand::Decline { user } => client.friend_respond(&user, false).await?,
        FriendCommand::Remove { user } => client.friend_remove(&user).await?,
        FriendCommand::Block { user, undo } => client.set_blocked(&user, !undo).await?,
        FriendCommand::Remark { user, remark } => client.set_remark(&user, &remark).await?,
        FriendCommand::List => {
            for contact in client.contacts().await?.iter().filter(|c| !c.is_group) {
                println!("{}", describe_contact(contact));
            }
            return Ok(());
        }
    };
    println!("{}", describe_contact(&answer.contact.unwrap_or_default()));
    Ok(())
}

fn role_name(role: i32) -> &'static str {
    match GroupRole::try_from(role).unwrap_or(GroupRole::None) {
        GroupRole::None => "none",
        GroupRole::Member => "member",
        GroupRole::Admin => "admin",
        GroupRole::Owner => "owner",
    }
}

fn print_group(group: &Group, with_members: bool) {
    println!("{} {} ({} members)", group.handle, group.name, group.members.len());
    if !group.announcement.is_empty() {
        println!("announcement: {}", group.announcement);
    }
    if with_members {
        for member in &group.members {
            println!("  {} {} ({})", role_name(member.role), member.username, member.nickname);
        }
    }
}

async fn group(client: &Client, command: GroupCommand) -> anyhow::Result<()> {
    let group = match command {
        GroupCommand::Create { name, members } => {
            client.group_create(&name, user_ids(client, &members).await?).await?
        }
        GroupCommand::Invite { group, users } => {
            client.group_invite(group_id(&group)?, user_ids(client, &users).await?).await?
        }
        GroupCommand::Remove { group, users } => {
            client.group_remove(group_id(&group)?, user_ids(client, &users).await?).await?
        }
        GroupCommand::Leave { group } => {
            client.group_leave(group_id(&group)?).await?;
            println!("left {group}");
            return Ok(());
        }
        GroupCommand::Rename { group, name } => {
            client.group_rename(group_id(&group)?, &name).await?
        }
        GroupCommand::Announce { group, text } => {
            client.group_announce(group_id(&group)?, &text).await?
        }
        GroupCommand::Admin { group, user, undo } => {
            let user = user_id(client, &user).await?;
            client.group_set_admin(group_id(&group)?, user, !undo).await?
        }
        GroupCommand::Transfer { group, user } => {
            let user = user_id(client, &user).await?;
            client.group_transfer(group_id(&group)?, user).await?
        }
        GroupCommand::Dissolve { group } => {
            client.group_dissolve(group_id(&group)?).await?;
            println!("dissolved {group}");
            return Ok(());
        }
        GroupCommand::Info { group } => {
            print_group(&client.group_info(group_id(&group)?).await?, true);
            return Ok(());
        }
        GroupCommand::Join { invitation } => {
            print_group(&client.group_join(&invitation).await?, true);
            return Ok(());
        }
        GroupCommand::List => {
            for contact in client.contacts().await?.iter().filter(|c| c.is_group) {
                let role = contact.group.as_ref().map_or(0, |g| g.role);
                println!("{} {} ({})", contact.username, contact.nickname, role_name(role));
            }
            return Ok(());
        }
    };
    print_group(&group, false);
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

async fn pusher(client: &Client, command: PusherCommand) -> anyhow::Result<()> {
    use base64::Engine as _;
    let decode = |value: Option<String>, what: &str| -> anyhow::Result<Vec<u8>> {
        match value {
            None => Ok(Vec::new()),
            Some(text) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .with_context(|| format!("{what} is not base64url")),
        }
    };
    match command {
        PusherCommand::Add { endpoint, web_push, p256dh, auth } => {
            let kind = if web_push { PusherKind::WebPush } else { PusherKind::UnifiedPush };
            let pusher = Pusher {
                kind: kind as i32,
                endpoint,
                p256dh: decode(p256dh, "--p256dh")?,
                auth: decode(auth, "--auth")?,
                ..Default::default()
            };
            let stored = client.set_pusher(pusher).await?;
            println!("pusher {} for device {}", stored.endpoint, stored.device_id);
        }
        PusherCommand::Remove { endpoint } => {
            let removed = client.remove_pusher(&endpoint).await?;
            println!("{}", if removed { "removed" } else { "no such pusher" });
        }
        PusherCommand::List => {
            let list = client.pushers().await?;
            let key =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&list.vapid_public_key);
            println!("vapid public key {key}");
            for pusher in list.pushers {
                let kind = PusherKind::try_from(pusher.kind).map_or("unknown", |k| k.as_str_name());
                println!("{kind} {} (device {})", pusher.endpoint, pusher.device_id);
            }
        }
    }
    Ok(())
}

/// `online`, `offline, last seen ... ago`, or `hidden`.
fn describe_presence(presence: &UserPresence, now_ms: i64) -> String {
    match PresenceState::try_from(presence.state).unwrap_or(PresenceState::Hidden) {
        PresenceState::Online => "online".into(),
        PresenceState::Offline if presence.last_seen_ms == 0 => "offline, never seen".into(),
        PresenceState::Offline => {
            let ago = (now_ms - presence.last_seen_ms).max(0) / 1000;
            format!("offline, last seen {ago} s ago (at {} ms)", presence.last_seen_ms)
        }
        PresenceState::Hidden => "hidden".into(),
    }
}

fn render_event(event: &Event, json: bool) -> String {
    match (&event.body, json) {
        (Some(event::Body::Typing(t)), true) => serde_json::json!({
            "type": "typing", "conversation_id": t.conversation_id, "user_id": t.user_id,
            "typing": t.typing, "expires_in_ms": t.expires_in_ms,
        })
        .to_string(),
        (Some(event::Body::Typing(t)), false) => {
            let doing = if t.typing { "is typing" } else { "stopped typing" };
            format!("[typing] user {} {doing} in {}", t.user_id, t.conversation_id)
        }
        (Some(event::Body::Presence(p)), true) => serde_json::json!({
            "type": "presence", "user_id": p.user_id,
            "state": PresenceState::try_from(p.state).map_or("unknown", |s| s.as_str_name()),
            "last_seen_ms": p.last_seen_ms,
        })
        .to_string(),
        (Some(event::Body::Presence(p)), false) => {
            format!(
                "[presence] user {} {}",
                p.user_id,
                describe_presence(p, missive_client::unix_ms())
            )
        }
        (None, true) => serde_json::json!({ "type": "unknown event" }).to_string(),
        (None, false) => "[event] (a kind this client does not know)".into(),
    }
}

fn render(item: &SyncItem, json: bool) -> String {
    let data_type = DataType::try_from(item.r#type).unwrap_or(DataType::Unspecified);
    match (&item.body, json) {
        (Some(Body::Message(m)), true) => serde_json::json!({
            "type": "message", "version": item.version, "id": m.id, "from": m.from, "to": m.to,
            "text": m.text, "sent_at_ms": m.sent_at_ms, "client_msg_id": m.client_msg_id,
            "kind": MessageKind::try_from(m.kind).map_or("unknown", |k| k.as_str_name()),
            "group_id": m.group_id, "from_nickname": m.from_nickname,
            "media_id": m.media.as_ref().map(|media| media.media_id.clone()),
            "ref_message_id": m.ref_message_id, "mentions": m.mentions, "recalled": m.recalled,
            "fallback_text": m.fallback_text, "invitation": m.invitation,
            "edited_at_ms": m.edited_at_ms, "reaction": m.reaction,
            "reactions": m.reactions.iter().map(|r| serde_json::json!({
                "emoji": r.emoji, "user_ids": r.user_ids,
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        (Some(Body::Message(m)), false) => {
            // What a person reads: the text, or for any other kind its fallback.
            let shown = if m.fallback_text.is_empty() { &m.text } else { &m.fallback_text };
            let line = format!("[{}] #{} {} -> {}: {}", item.version, m.id, m.from, m.to, shown);
            if m.invitation.is_empty() {
                line
            } else {
                format!("{line} (accept: group join {})", m.invitation)
            }
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
            "username": c.username, "nickname": c.nickname, "is_group": c.is_group,
            "relation": relation_name(c), "blocked": c.blocked, "remark": c.remark,
            "greeting": c.greeting,
        })
        .to_string(),
        (Some(Body::Contact(c)), false) => {
            format!("[{}] contact {}", item.version, describe_contact(c))
        }
        (None, true) => {
            serde_json::json!({ "type": data_type.as_str_name(), "version": item.version })
                .to_string()
        }
        (None, false) => format!("[{}] {}", item.version, data_type.as_str_name()),
    }
}
