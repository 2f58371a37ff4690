//! The Missive client SDK, the reference implementation of the client protocol.
//!
//! A [`Client`] speaks to one server over the TCP or WebSocket long link (requests, answers
//! and notifies) or the HTTP short link (requests only). It keeps the session token and the
//! SyncKey, and [`Client::sync`] returns every change since the key, following `more` until
//! the server has nothing newer. On a long link [`Client::wait_for_notify`] resolves when the
//! server announces something new.
//!
//! [`AdminClient`] speaks the operators' API at a node's admin address.
//!
//! This crate knows the wire protocol only; it holds no server code.

pub mod admin;
pub mod heartbeat;
mod link;
pub mod profile;
mod trust;

pub use admin::AdminClient;
pub use heartbeat::{Backoff, HeartbeatPolicy};
pub use link::Endpoint;
pub use missive_proto::client as proto;
pub use missive_proto::ids;
pub use missive_rpc::Code;
pub use missive_rpc::unix_ms;
pub use trust::Trust;

use heartbeat::Advertised;
use link::Link;
use missive_proto::Command;
use missive_proto::client::*;
use rand::RngCore;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The protocol version this SDK speaks by default: the newest. Connect with
/// [`Client::connect_with`] and 1 to act as a version-1 client.
pub const PROTOCOL_VERSION: u32 = missive_proto::PROTOCOL_VERSION;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code; `retry_after` is the wait it named (zero
    /// when it named none).
    #[error("{code}: {message}")]
    Server { code: Code, message: String, retry_after: Duration },
    #[error("connection: {0}")]
    Transport(String),
    #[error("the server's answer is not valid: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection is closed")]
    Closed,
    #[error(
        "bad server url {0:?}: use tcp:// or tls://HOST:PORT, ws:// or wss://HOST:PORT/ws, \
         or http:// or https://HOST:PORT"
    )]
    BadUrl(String),
    #[error("bad admin url {0:?}: use http://HOST:PORT or https://HOST:PORT")]
    BadAdminUrl(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    BadArgument(String),
}

impl ClientError {
    /// A transport error, its causes joined (an HTTP client's "error sending request" says
    /// why only in its sources: a refused connection, an unknown certificate issuer).
    pub(crate) fn transport(error: &(dyn std::error::Error + 'static)) -> ClientError {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text = format!("{text}: {cause_text}");
            }
            source = cause.source();
        }
        ClientError::Transport(text)
    }

    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again (RATE_LIMITED, or OVERLOADED
    /// to AUTH); zero when it did not.
    pub fn retry_after(&self) -> Duration {
        match self {
            ClientError::Server { retry_after, .. } => *retry_after,
            _ => Duration::ZERO,
        }
    }

    /// Whether the answer ends the session: its token is refused, or its account disabled.
    pub fn signs_out(&self) -> bool {
        matches!(self.code(), Some(Code::Unauthenticated | Code::AccountDisabled))
    }
}

/// Who this client is signed in as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub user_id: u64,
    pub device_id: u64,
}

pub struct Client {
    link: Link,
    endpoint: Endpoint,
    trust: Trust,
    protocol_version: u32,
    session: Mutex<Option<Session>>,
    sync_key: Mutex<Vec<u8>>,
    /// What the smart heartbeat learnt of the network path, once AUTH named a range;
    /// carried over to the connection that replaces this one ([`Client::reconnect`]).
    heartbeat: Mutex<Option<Arc<Mutex<HeartbeatPolicy>>>>,
}

impl Client {
    /// Connects to `url`: `tcp://HOST:PORT` or `tls://HOST:PORT` (the long link),
    /// `ws://HOST:PORT/ws` or `wss://HOST:PORT/ws` (the long link in WebSocket), or
    /// `http://HOST:PORT` or `https://HOST:PORT` (the short link). Over TLS the server's
    /// certificate must chain to Mozilla's roots; see [`Client::connect_trusting`].
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, PROTOCOL_VERSION).await
    }

    /// Connects declaring `protocol_version`.
    pub async fn connect_with(url: &str, protocol_version: u32) -> Result<Client, ClientError> {
        Client::connect_trusting(url, protocol_version, &Trust::default()).await
    }

    /// Connects declaring `protocol_version`, trusting `trust` over TLS.
    pub async fn connect_trusting(
        url: &str,
        protocol_version: u32,
        trust: &Trust,
    ) -> Result<Client, ClientError> {
        let endpoint = Endpoint::parse(url)?;
        Ok(Client {
            link: Link::connect(&endpoint, protocol_version, trust).await?,
            endpoint,
            trust: trust.clone(),
            protocol_version,
            session: Mutex::new(None),
            sync_key: Mutex::new(Vec::new()),
            heartbeat: Mutex::new(None),
        })
    }

    /// A new connection to the same server, signed in with this client's session, carrying
    /// its SyncKey and what its heartbeat learnt: what a client does after losing its long
    /// link (docs/protocol.md §5.10). Each failed attempt waits as `backoff` says (at least
    /// the wait an answer named) before the next; it gives up only when the session is
    /// refused ([`ClientError::signs_out`]) or the client has none. Sync next: notifies of
    /// what came meanwhile were not kept.
    pub async fn reconnect(&self, backoff: &mut Backoff) -> Result<Client, ClientError> {
        let session =
            self.session().ok_or_else(|| ClientError::BadArgument("no session".into()))?;
        loop {
            let attempt = async {
                let link =
                    Link::connect(&self.endpoint, self.protocol_version, &self.trust).await?;
                let client = Client {
                    link,
                    endpoint: self.endpoint.clone(),
                    trust: self.trust.clone(),
                    protocol_version: self.protocol_version,
                    session: Mutex::new(None),
                    sync_key: Mutex::new(self.sync_key()),
                    heartbeat: Mutex::new(self.heartbeat.lock().expect("heartbeat").clone()),
                };
                client.resume(&session.token).await?;
                Ok::<_, ClientError>(client)
            };
            match attempt.await {
                Ok(client) => {
                    backoff.reset();
                    return Ok(client);
                }
                Err(error) if error.signs_out() => return Err(error),
                Err(error) => {
                    let wait = backoff.next_wait(&mut rand::rng(), error.retry_after());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The protocol version this client declares.
    pub fn protocol_version(&self) -> u32 {
        self.protocol_version
    }

    /// True for TCP and WebSocket, which carry notifies.
    pub fn is_long_link(&self) -> bool {
        self.link.is_long()
    }

    pub fn session(&self) -> Option<Session> {
        self.session.lock().expect("session").clone()
    }

    pub fn sync_key(&self) -> Vec<u8> {
        self.sync_key.lock().expect("sync key").clone()
    }

    /// Starts syncing from a stored key instead of from the beginning.
    pub fn set_sync_key(&self, key: Vec<u8>) {
        *self.sync_key.lock().expect("sync key") = key;
    }

    async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        command: Command,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let token = self.session.lock().expect("session").as_ref().map(|s| s.token.clone());
        let body =
            self.link.call(command, request.encode_to_vec().into(), token.as_deref()).await?;
        Resp::decode(body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn ping(&self) -> Result<PingResponse, ClientError> {
        self.call(Command::Ping, &PingRequest::default()).await
    }

    pub async fn register(
        &self,
        username: &str,
        password: &str,
    ) -> Result<RegisterResponse, ClientError> {
        let request = RegisterRequest {
            username: username.into(),
            password: password.into(),
            nickname: String::new(),
        };
        self.call(Command::Register, &request).await
    }

    /// Logs in as a new device and, on a long link, authenticates the connection.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Session, ClientError> {
        let request = LoginRequest {
            username: username.into(),
            password: password.into(),
            device_name: device_name.into(),
        };
        let answer: LoginResponse = self.call(Command::Login, &request).await?;
        self.resume(&answer.token).await
    }

    /// Uses an existing session token; on a long link this authenticates the connection.
    pub async fn resume(&self, token: &str) -> Result<Session, ClientError> {
        let session = if self.link.is_long() {
            let request =
                AuthRequest { token: token.into(), protocol_version: self.protocol_version };
            let answer: AuthResponse = self.call(Command::Auth, &request).await?;
            let advertised = Advertised::from_seconds(
                answer.heartbeat_interval_s,
                answer.heartbeat_min_s,
                answer.heartbeat_max_s,
            );
            let policy = self
                .heartbeat
                .lock()
                .expect("heartbeat")
                .get_or_insert_with(|| Arc::new(Mutex::new(HeartbeatPolicy::new(advertised))))
                .clone();
            self.link.start_heartbeat(policy);
            Session { token: token.into(), user_id: answer.user_id, device_id: answer.device_id }
        } else {
            // The short link has no AUTH: every request carries the token. Ask who we are,
            // and keep the session we had if the server refuses this one.
            let previous = self.session.lock().expect("session").replace(Session {
                token: token.into(),
                user_id: 0,
                device_id: 0,
            });
            match self.profile("").await {
                Ok(me) => Session { token: token.into(), user_id: me.user_id, device_id: 0 },
                Err(error) => {
                    *self.session.lock().expect("session") = previous;
                    return Err(error);
                }
            }
        };
        *self.session.lock().expect("session") = Some(session.clone());
        Ok(session)
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        let _: LogoutResponse = self.call(Command::Logout, &LogoutRequest {}).await?;
        *self.session.lock().expect("session") = None;
        Ok(())
    }

    /// A user's profile; an empty username means one's own.
    pub async fn profile(&self, username: &str) -> Result<Profile, ClientError> {
        let request = GetProfileRequest { username: username.into() };
        let answer: GetProfileResponse = self.call(Command::GetProfile, &request).await?;
        answer.profile.ok_or_else(|| ClientError::Protocol("profile missing".into()))
    }

    pub async fn set_nickname(&self, nickname: &str) -> Result<UpdateProfileResponse, ClientError> {
        let request = UpdateProfileRequest { nickname: nickname.into() };
        self.call(Command::UpdateProfile, &request).await
    }

    /// Sends a text to a user (by username) with a fresh client message id.
    pub async fn send_text(&self, to: &str, text: &str) -> Result<SendResponse, ClientError> {
        self.send(SendRequest {
            to: to.into(),
            client_msg_id: new_client_msg_id(),
            kind: MessageKind::Text as i32,
            text: text.into(),
            ..SendRequest::default()
        })
        .await
    }

    /// Sends a message as given; retrying with the same `client_msg_id` never duplicates it.
    pub async fn send(&self, request: SendRequest) -> Result<SendResponse, ClientError> {
        self.call(Command::Send, &request).await
    }

    /// Sends a text to a group.
    pub async fn send_to_group(
        &self,
        group_id: u64,
        text: &str,
        mentions: Vec<u64>,
    ) -> Result<SendResponse, ClientError> {
        self.send(SendRequest {
            to_user_id: group_id,
            client_msg_id: new_client_msg_id(),
            kind: MessageKind::Text as i32,
            text: text.into(),
            mentions,
            ..SendRequest::default()
        })
        .await
    }

    /// Uploads an image or file for a conversation (a peer user or a group) and sends it.
    pub async fn send_media(
        &self,
        conversation_id: u64,
        kind: MessageKind,
        media: &MediaRef,
        caption: &str,
    ) -> Result<SendResponse, ClientError> {
        self.send(SendRequest {
            to_user_id: conversation_id,
            client_msg_id: new_client_msg_id(),
            kind: kind as i32,
            text: caption.into(),
            media_id: media.media_id.clone(),
            ..SendRequest::default()
        })
        .await
    }

    /// Uploads media in one UPLOAD request, which the server's request limit (1 MiB by
    /// default) bounds; [`Client::upload`] picks this or parts by size.
    pub async fn upload_whole(
        &self,
        conversation_id: u64,
        name: &str,
        mime_type: &str,
        data: Vec<u8>,
    ) -> Result<MediaRef, ClientError> {
        let request =
            UploadRequest { conversation_id, name: name.into(), mime_type: mime_type.into(), data };
        let answer: UploadResponse = self.call(Command::Upload, &request).await?;
        answer.media.ok_or_else(media_missing)
    }

    /// Uploads an image or file for a conversation: whole if it is small, else in parts
    /// (UPLOAD_BEGIN, then UPLOAD_PART from wherever the server says it is).
    pub async fn upload(
        &self,
        conversation_id: u64,
        name: &str,
        mime_type: &str,
        data: Vec<u8>,
    ) -> Result<MediaRef, ClientError> {
        if data.len() <= missive_proto::UPLOAD_PART_BYTES_MAX as usize {
            return self.upload_whole(conversation_id, name, mime_type, data).await;
        }
        let (name, mime_type) = (name.to_string(), mime_type.to_string());
        let size = data.len() as u64;
        let begin = UploadBeginRequest { conversation_id, name, mime_type, size };
        let begun: UploadBeginResponse = self.call(Command::UploadBegin, &begin).await?;
        let part_max = (begun.part_bytes_max as usize).max(1);
        let mut offset = 0usize;
        // Each answer says where to go on from; a server that stops moving is a broken one.
        for _ in 0..=data.len().div_ceil(part_max) * 2 {
            let end = (offset + part_max).min(data.len());
            let part = UploadPartRequest {
                media_id: begun.media_id.clone(),
                offset: offset as u64,
                data: data[offset..end].to_vec(),
            };
            let answer: UploadPartResponse = self.call(Command::UploadPart, &part).await?;
            if let Some(media) = answer.media {
                return Ok(media);
            }
            offset = usize::try_from(answer.received).unwrap_or(usize::MAX).min(data.len());
        }
        Err(media_missing())
    }

    pub async fn download(&self, media_id: &str) -> Result<DownloadResponse, ClientError> {
        self.call(Command::Download, &DownloadRequest { media_id: media_id.into() }).await
    }

    pub async fn recall(&self, message_id: u64) -> Result<RecallResponse, ClientError> {
        self.call(Command::Recall, &RecallRequest { message_id }).await
    }

    pub async fn mark_read(&self, message_id: u64) -> Result<MarkReadResponse, ClientError> {
        self.call(Command::MarkRead, &MarkReadRequest { message_id }).await
    }

    // ---- contacts ----

    pub async fn friend_request(
        &self,
        username: &str,
        greeting: &str,
    ) -> Result<ContactResponse, ClientError> {
        let request = FriendRequestRequest {
            username: username.into(),
            greeting: greeting.into(),
            user_id: 0,
        };
        self.call(Command::FriendRequest, &request).await
    }

    pub async fn friend_respond(
        &self,
        username: &str,
        accept: bool,
    ) -> Result<ContactResponse, ClientError> {
        let request = FriendRespondRequest { username: username.into(), accept, user_id: 0 };
        self.call(Command::FriendRespond, &request).await
    }

    pub async fn friend_remove(&self, username: &str) -> Result<ContactResponse, ClientError> {
        let request = FriendRemoveRequest { username: username.into(), user_id: 0 };
        self.call(Command::FriendRemove, &request).await
    }

    pub async fn set_blocked(
        &self,
        username: &str,
        blocked: bool,
    ) -> Result<ContactResponse, ClientError> {
        let request = SetBlockedRequest { username: username.into(), blocked, user_id: 0 };
        self.call(Command::SetBlocked, &request).await
    }

    pub async fn set_remark(
        &self,
        username: &str,
        remark: &str,
    ) -> Result<ContactResponse, ClientError> {
        let request =
            SetRemarkRequest { username: username.into(), remark: remark.into(), user_id: 0 };
        self.call(Command::SetRemark, &request).await
    }

    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        let answer: ListContactsResponse =
            self.call(Command::ListContacts, &ListContactsRequest {}).await?;
        Ok(answer.contacts)
    }

    // ---- groups ----

    async fn group_call<Req: prost::Message>(
        &self,
        command: Command,
        request: &Req,
    ) -> Result<Group, ClientError> {
        let answer: GroupResponse = self.call(command, request).await?;
        answer.group.ok_or_else(|| ClientError::Protocol("group missing".into()))
    }

    pub async fn group_create(
        &self,
        name: &str,
        member_ids: Vec<u64>,
    ) -> Result<Group, ClientError> {
        self.group_call(Command::GroupCreate, &GroupCreateRequest { name: name.into(), member_ids })
            .await
    }

    pub async fn group_invite(
        &self,
        group_id: u64,
        user_ids: Vec<u64>,
    ) -> Result<Group, ClientError> {
        self.group_call(Command::GroupInvite, &GroupInviteRequest { group_id, user_ids }).await
    }

    pub async fn group_remove(
        &self,
        group_id: u64,
        user_ids: Vec<u64>,
    ) -> Result<Group, ClientError> {
        self.group_call(Command::GroupRemove, &GroupRemoveRequest { group_id, user_ids }).await
    }

    pub async fn group_leave(&self, group_id: u64) -> Result<Group, ClientError> {
        self.group_call(Command::GroupLeave, &GroupLeaveRequest { group_id }).await
    }

    pub async fn group_rename(&self, group_id: u64, name: &str) -> Result<Group, ClientError> {
        let request = GroupUpdateRequest { group_id, name: Some(name.into()), announcement: None };
        self.group_call(Command::GroupUpdate, &request).await
    }

    pub async fn group_announce(&self, group_id: u64, text: &str) -> Result<Group, ClientError> {
        let request = GroupUpdateRequest { group_id, name: None, announcement: Some(text.into()) };
        self.group_call(Command::GroupUpdate, &request).await
    }

    pub async fn group_set_admin(
        &self,
        group_id: u64,
        user_id: u64,
        admin: bool,
    ) -> Result<Group, ClientError> {
        let request = GroupSetAdminRequest { group_id, user_id, admin };
        self.group_call(Command::GroupSetAdmin, &request).await
    }

    pub async fn group_transfer(&self, group_id: u64, user_id: u64) -> Result<Group, ClientError> {
        self.group_call(Command::GroupTransfer, &GroupTransferRequest { group_id, user_id }).await
    }

    pub async fn group_dissolve(&self, group_id: u64) -> Result<Group, ClientError> {
        self.group_call(Command::GroupDissolve, &GroupDissolveRequest { group_id }).await
    }

    pub async fn group_info(&self, group_id: u64) -> Result<Group, ClientError> {
        self.group_call(Command::GroupInfo, &GroupInfoRequest { group_id }).await
    }

    /// Accepts an invitation into a group (a GROUP_INVITATION message's `invitation`).
    pub async fn group_join(&self, invitation: &str) -> Result<Group, ClientError> {
        let request = GroupJoinRequest { invitation: invitation.into() };
        self.group_call(Command::GroupJoin, &request).await
    }

    /// One SYNC call from the stored key; stores the new key.
    pub async fn sync_once(&self, limit: u32) -> Result<SyncResponse, ClientError> {
        let request = SyncRequest { sync_key: self.sync_key(), limit };
        let answer: SyncResponse = self.call(Command::Sync, &request).await?;
        self.set_sync_key(answer.sync_key.clone());
        Ok(answer)
    }

    /// Every change since the stored key, following `more` to the end.
    pub async fn sync(&self) -> Result<Vec<SyncItem>, ClientError> {
        let mut items = Vec::new();
        loop {
            let answer = self.sync_once(0).await?;
            items.extend(answer.items);
            if !answer.more {
                return Ok(items);
            }
        }
    }

    /// Resolves when the server has announced something new (long links only), or when the
    /// connection closes (with an error).
    pub async fn wait_for_notify(&self) -> Result<(), ClientError> {
        self.link.wait_for_notify().await
    }

    /// The next event the server pushed (typing, presence; version 3, long links only), oldest
    /// first; waits for one. Fails when the connection closes.
    pub async fn next_event(&self) -> Result<Event, ClientError> {
        self.link.next_event().await
    }

    /// Replaces the text of one of this user's TEXT messages (within the edit window).
    pub async fn edit(&self, message_id: u64, text: &str) -> Result<EditResponse, ClientError> {
        self.call(Command::Edit, &EditRequest { message_id, text: text.into() }).await
    }

    /// Puts this user's reaction on a message (replacing theirs), or takes it back with an
    /// empty `emoji`.
    pub async fn react(&self, message_id: u64, emoji: &str) -> Result<ReactResponse, ClientError> {
        self.call(Command::React, &ReactRequest { message_id, emoji: emoji.into() }).await
    }

    /// This user's messages that hold every word of `request.query`, newest first; the
    /// answer's `next_before_version` asks for the next page.
    pub async fn search(&self, request: SearchRequest) -> Result<SearchResponse, ClientError> {
        self.call(Command::Search, &request).await
    }

    /// Registers (or replaces, by endpoint) a push target of this device.
    pub async fn set_pusher(&self, pusher: Pusher) -> Result<Pusher, ClientError> {
        let answer: PusherSetResponse =
            self.call(Command::PusherSet, &PusherSetRequest { pusher: Some(pusher) }).await?;
        answer.pusher.ok_or_else(|| ClientError::Protocol("pusher missing".into()))
    }

    /// Removes a push target by its endpoint; answers whether there was one.
    pub async fn remove_pusher(&self, endpoint: &str) -> Result<bool, ClientError> {
        let request = PusherRemoveRequest { endpoint: endpoint.into() };
        let answer: PusherRemoveResponse = self.call(Command::PusherRemove, &request).await?;
        Ok(answer.removed)
    }

    /// This user's push targets, and the server's VAPID public key.
    pub async fn pushers(&self) -> Result<PusherListResponse, ClientError> {
        self.call(Command::PusherList, &PusherListRequest {}).await
    }

    /// No offline push for a conversation (a user or group id) until `until_ms`; 0 unmutes.
    pub async fn set_muted(
        &self,
        conversation_id: u64,
        until_ms: i64,
    ) -> Result<ContactResponse, ClientError> {
        let request = SetMutedRequest { conversation_id, muted_until_ms: until_ms };
        self.call(Command::SetMuted, &request).await
    }

    /// Tells the peer (a user id) or a group that this user is typing, or stopped.
    pub async fn typing(&self, conversation_id: u64, typing: bool) -> Result<(), ClientError> {
        let _: TypingResponse =
            self.call(Command::Typing, &TypingRequest { conversation_id, typing }).await?;
        Ok(())
    }

    /// Sets who sees this user's presence.
    pub async fn set_privacy(
        &self,
        visibility: PresenceVisibility,
    ) -> Result<SetPrivacyResponse, ClientError> {
        let request = SetPrivacyRequest { presence_visibility: visibility as i32 };
        self.call(Command::SetPrivacy, &request).await
    }

    /// Whether users are online, or when they were last seen, as far as each lets this user
    /// see (in the order asked).
    pub async fn presence(&self, user_ids: &[u64]) -> Result<Vec<UserPresence>, ClientError> {
        let request = GetPresenceRequest { user_ids: user_ids.to_vec() };
        let answer: GetPresenceResponse = self.call(Command::GetPresence, &request).await?;
        Ok(answer.presences)
    }

    /// Waits for a notify, or at most `fallback` (a lost notify costs only this delay), then
    /// syncs.
    pub async fn next_changes(&self, fallback: Duration) -> Result<Vec<SyncItem>, ClientError> {
        if let Ok(Err(error)) = tokio::time::timeout(fallback, self.wait_for_notify()).await {
            return Err(error);
        }
        self.sync().await
    }
}

/// An UPLOAD or UPLOAD_PART answer that should have carried the media and did not.
fn media_missing() -> ClientError {
    ClientError::Protocol("media missing".into())
}

/// 16 random bytes in hex: unique per sender for all practical purposes.
pub fn new_client_msg_id() -> String {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
