//! One logic node in process, over the real embedded store, with the clock and the push side
//! in the test's hands: a business rule is checked in milliseconds, and the notifies a change
//! sends are read back instead of waited for on a socket.

use crate::{Audience, Clock, Deps, GroupInvites, Logic, LogicConfig, Retention, SeqAllocator};
use missive_proto::client::*;
use missive_proto::internal::{
    ClientApi, NotifyRequest, NotifyResponse, NotifyTarget, Presence, Push, UserRef,
};
use missive_rpc::{Caller, Ctx, Status};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) const DAY_MS: i64 = 86_400_000;

/// The push side of the access tier, reduced to a record of what it was asked to send.
#[derive(Default)]
pub(crate) struct Pushed(Mutex<Vec<NotifyTarget>>);

#[async_trait::async_trait]
impl Push for Pushed {
    async fn notify(&self, _: &Ctx, req: NotifyRequest) -> Result<NotifyResponse, Status> {
        self.0.lock().unwrap().extend(req.targets);
        Ok(NotifyResponse::default())
    }

    async fn presence(&self, _: &Ctx, _: UserRef) -> Result<Presence, Status> {
        Ok(Presence::default())
    }
}

/// One logic node with its own version allocator over `store`, at the time `now` holds.
pub(crate) fn logic_node(
    store: Arc<EmbeddedStore>,
    now: Arc<AtomicI64>,
    push: Arc<Pushed>,
    configure: impl FnOnce(&mut LogicConfig),
) -> Arc<Logic> {
    let deps = Deps {
        accounts: store.clone(),
        contacts: store.clone(),
        messages: store.clone(),
        groups: store.clone(),
        media: Arc::new(FileMediaStore::open(store.path().parent().unwrap()).unwrap()),
        seq: Arc::new(SeqAllocator::new(store.clone(), 100)),
        push,
        ops: store,
        limiter: None,
        offline_push: None,
    };
    let mut config = LogicConfig {
        sync_key_secret: b"test secret".to_vec(),
        password_cost: crate::PasswordCost { memory_kib: 64, iterations: 1 },
        retention: Retention::Forever,
        clock: Clock::from_fn(move || now.load(Ordering::SeqCst)),
        ..LogicConfig::default()
    };
    configure(&mut config);
    Logic::new(deps, config)
}

/// A logic node over a fresh store in a temporary directory.
pub(crate) struct Node {
    pub logic: Arc<Logic>,
    pub store: Arc<EmbeddedStore>,
    pub now: Arc<AtomicI64>,
    pub pushed: Arc<Pushed>,
    /// Users registered so far: each gets an address of its own.
    users: std::sync::atomic::AtomicU16,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Friends-only 1:1 chat, messages kept forever, the clock at day 1,000.
    pub async fn new() -> Node {
        Node::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut LogicConfig)) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
        let now = Arc::new(AtomicI64::new(1_000 * DAY_MS));
        let pushed = Arc::new(Pushed::default());
        let logic = logic_node(store.clone(), now.clone(), pushed.clone(), configure);
        Node { logic, store, now, pushed, users: Default::default(), _dir: dir }
    }

    /// Anyone may send anyone a 1:1 message or put them into a group: for tests of
    /// something else than contacts and consent.
    pub async fn open() -> Node {
        Node::with(|config| {
            config.direct_messages = Audience::Anyone;
            config.group_invites = GroupInvites::Add(Audience::Anyone);
        })
        .await
    }

    /// The node as the access layer calls it.
    pub fn api(&self) -> &dyn ClientApi {
        self.logic.as_ref()
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// A second logic node, with its own allocator and caches, over the same store and clock
    /// (what a split deployment runs).
    pub fn second_node(&self) -> Arc<Logic> {
        let config = self.logic.config.clone();
        logic_node(self.store.clone(), self.now.clone(), self.pushed.clone(), |c| *c = config)
    }

    /// Registers `name` and signs in its first device, speaking the current version.
    pub async fn user(&self, name: &str) -> Ctx {
        self.user_with_token(name).await.0
    }

    /// [`Node::user`], and the device's token.
    pub async fn user_with_token(&self, name: &str) -> (Ctx, String) {
        let register = RegisterRequest {
            username: name.into(),
            password: PASSWORD.into(),
            ..Default::default()
        };
        // Each user from an address of its own, as people are: the limits per address are
        // tested on their own (tests/limits.rs).
        let address = std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            self.users.fetch_add(1, Ordering::Relaxed),
        );
        let from = Ctx { client_address: Some(address.into()), ..Ctx::new(0) };
        self.api().register(&from, register).await.unwrap();
        self.signed_in(name, "first").await
    }

    /// Signs in another device of `name`.
    pub async fn device(&self, name: &str, device: &str) -> Ctx {
        self.signed_in(name, device).await.0
    }

    async fn signed_in(&self, name: &str, device: &str) -> (Ctx, String) {
        let login = LoginRequest {
            username: name.into(),
            password: PASSWORD.into(),
            device_name: device.into(),
        };
        let session = self.api().login(&Ctx::new(0), login).await.unwrap();
        let caller = Caller {
            user_id: session.user_id,
            device_id: session.device_id,
            protocol_version: missive_proto::PROTOCOL_VERSION,
        };
        (Ctx { caller: Some(caller), ..Ctx::new(0) }, session.token)
    }

    /// `a` asks, `b` accepts.
    pub async fn befriend(&self, a: &Ctx, b: &Ctx) {
        let ask = FriendRequestRequest { user_id: id(b), ..Default::default() };
        self.api().friend_request(a, ask).await.unwrap();
        let accept = FriendRespondRequest { user_id: id(a), accept: true, ..Default::default() };
        self.api().friend_respond(b, accept).await.unwrap();
    }

    /// The notifies asked for since the last call.
    pub fn notified(&self) -> Vec<NotifyTarget> {
        std::mem::take(&mut *self.pushed.0.lock().unwrap())
    }

    /// Every item the user's stream holds, synced from the empty key.
    pub async fn items(&self, ctx: &Ctx) -> Vec<SyncItem> {
        let mut items = Vec::new();
        let mut key = Vec::new();
        loop {
            let request = SyncRequest { sync_key: key, limit: 500 };
            let batch = self.api().sync(ctx, request).await.unwrap();
            items.extend(batch.items);
            key = batch.sync_key;
            if !batch.more {
                return items;
            }
        }
    }

    /// The messages of the user's stream, in order.
    pub async fn messages(&self, ctx: &Ctx) -> Vec<Message> {
        let items = self.items(ctx).await;
        bodies(items, |body| match body {
            sync_item::Body::Message(message) => Some(message),
            _ => None,
        })
    }

    /// The contact entries of the user's stream, in order.
    pub async fn contacts(&self, ctx: &Ctx) -> Vec<Contact> {
        let items = self.items(ctx).await;
        bodies(items, |body| match body {
            sync_item::Body::Contact(contact) => Some(contact),
            _ => None,
        })
    }
}

/// The bodies of one kind among `items`, in order.
fn bodies<T>(items: Vec<SyncItem>, pick: impl Fn(sync_item::Body) -> Option<T>) -> Vec<T> {
    items.into_iter().filter_map(|item| item.body.and_then(&pick)).collect()
}

const PASSWORD: &str = "long enough";

pub(crate) fn id(ctx: &Ctx) -> u64 {
    ctx.caller.unwrap().user_id
}

/// The context of an operators' call from `address`, as the admin address makes it.
pub(crate) fn operator(address: &str) -> Ctx {
    Ctx { operator: Some(address.parse().unwrap()), ..Ctx::new(0) }
}

pub(crate) fn device_id(ctx: &Ctx) -> u64 {
    ctx.caller.unwrap().device_id
}

/// The same session, speaking protocol `version`.
pub(crate) fn speaking(ctx: &Ctx, version: u32) -> Ctx {
    let mut caller = ctx.caller.unwrap();
    caller.protocol_version = version;
    Ctx { caller: Some(caller), ..Ctx::new(0) }
}

pub(crate) fn text_to(to: &str, client_msg_id: &str, text: &str) -> SendRequest {
    SendRequest {
        to: to.into(),
        client_msg_id: client_msg_id.into(),
        kind: MessageKind::Text as i32,
        text: text.into(),
        ..Default::default()
    }
}
