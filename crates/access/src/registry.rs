//! Which devices are online on this node, and the `Push` service that reaches them.
//!
//! A notify does not queue a frame per change: each connection keeps, per data type, the
//! newest version not yet announced, and its writer sends one `Notify` per type when it next
//! runs. A burst of a thousand messages to a slow client therefore costs at most one pending
//! notify per type, never an unbounded queue.
//!
//! Ephemeral events (typing, presence) are the exception: each is a frame of its own, so a
//! connection queues a few (at most [`EVENTS_QUEUED_MAX`]) and drops the oldest beyond, for
//! they are worthless once late. Only version-3 connections take them.
//!
//! When access nodes are several, the routing table (another crate) learns from
//! [`Registry::watch_presence`] which users came online or went offline here.

use bytes::Bytes;
use missive_proto::client::DataType;
use missive_proto::internal::{
    EventTarget, KickTarget, NotifyRequest, NotifyResponse, Presence, Push, UserRef,
};
use missive_rpc::{Code, Ctx, Status};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, mpsc};

/// Data types a notify can name (index = `DataType` number; the last is MESSAGE, which a test
/// below holds to).
pub const DATA_TYPES: usize = DataType::Message as usize + 1;
const SHARDS: usize = 64;
/// Events a connection holds for its writer at most; a newer one pushes the oldest out.
pub const EVENTS_QUEUED_MAX: usize = 16;
/// The first protocol version whose connections take events.
const EVENTS_SINCE_VERSION: u32 = 3;

/// One authenticated long-link connection, shared by its tasks and the registry.
pub struct Connection {
    pub id: u64,
    pub user_id: u64,
    pub device_id: u64,
    pub protocol_version: u32,
    /// Per data type, the newest version waiting to be announced (`Some(0)`: "something may
    /// have changed", after notifies may have been lost).
    pending: Mutex<[Option<u64>; DATA_TYPES]>,
    /// Encoded `Event`s waiting for the writer, oldest first.
    events: Mutex<VecDeque<Bytes>>,
    wake: Notify,
    /// Set once when an operator signs the device out; the link tells the client, then closes.
    kick: OnceLock<Status>,
    kicked: Notify,
}

impl Connection {
    /// Takes the notifies waiting to be sent: (data type, newest version) pairs.
    pub fn take_pending(&self) -> Vec<(i32, u64)> {
        let mut pending = self.pending.lock().expect("pending notifies");
        let taken =
            pending.iter().enumerate().filter_map(|(t, v)| v.map(|v| (t as i32, v))).collect();
        *pending = [None; DATA_TYPES];
        taken
    }

    /// Takes the events waiting to be sent, oldest first.
    pub fn take_events(&self) -> VecDeque<Bytes> {
        std::mem::take(&mut *self.events.lock().expect("pending events"))
    }

    /// Resolves when a notify or an event is waiting.
    pub async fn notified(&self) {
        self.wake.notified().await
    }

    /// Resolves with the status to tell the client once the connection is kicked.
    pub async fn kicked(&self) -> Status {
        loop {
            if let Some(status) = self.kick.get() {
                return status.clone();
            }
            self.kicked.notified().await;
        }
    }

    fn kick(&self, status: Status) {
        if self.kick.set(status).is_ok() {
            self.kicked.notify_one();
        }
    }

    fn queue_event(&self, event: Bytes) {
        let mut events = self.events.lock().expect("pending events");
        if events.len() == EVENTS_QUEUED_MAX {
            events.pop_front();
            metrics::counter!("missive_events_dropped_total").increment(1);
        }
        events.push_back(event);
        drop(events);
        self.wake.notify_one();
    }

    fn announce(&self, data_type: usize, version: u64) {
        let mut pending = self.pending.lock().expect("pending notifies");
        let slot = &mut pending[data_type];
        *slot = Some(slot.map_or(version, |v| v.max(version)));
        drop(pending);
        self.wake.notify_one();
    }
}

pub struct Registry {
    next_id: AtomicU64,
    shards: Vec<Mutex<HashMap<u64, Vec<Arc<Connection>>>>>,
    /// Who hears of users coming online here or leaving (the routes, the presence reporter).
    watchers: std::sync::RwLock<Vec<mpsc::UnboundedSender<u64>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            next_id: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            watchers: Default::default(),
        })
    }

    /// From now on, the id of every user whose first connection registers or whose last one
    /// unregisters. The receiver reads [`Registry::is_online`] for the current state, so
    /// events may be coalesced freely.
    pub fn watch_presence(&self) -> mpsc::UnboundedReceiver<u64> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.watchers.write().expect("presence watchers").push(sender);
        receiver
    }

    pub fn is_online(&self, user_id: u64) -> bool {
        self.shard(user_id).lock().expect("registry shard").contains_key(&user_id)
    }

    /// Every user with a connection here.
    pub fn online_users(&self) -> Vec<u64> {
        let mut users = Vec::new();
        for shard in &self.shards {
            users.extend(shard.lock().expect("registry shard").keys().copied());
        }
        users
    }

    /// Tells every connection to SYNC: notifies meant for this node may have been lost.
    pub fn wake_all(&self) {
        for shard in &self.shards {
            for connection in shard.lock().expect("registry shard").values().flatten() {
                for data_type in 1..DATA_TYPES {
                    connection.announce(data_type, 0);
                }
            }
        }
    }

    fn presence_changed(&self, user_id: u64) {
        for sender in self.watchers.read().expect("presence watchers").iter() {
            // A watcher has stopped only at shutdown; nothing is left to tell then.
            let _ = sender.send(user_id);
        }
    }

    fn shard(&self, user_id: u64) -> &Mutex<HashMap<u64, Vec<Arc<Connection>>>> {
        &self.shards[(user_id % SHARDS as u64) as usize]
    }

    /// Registers an authenticated connection; drop the returned guard to unregister it.
    pub fn register(
        self: &Arc<Self>,
        user_id: u64,
        device_id: u64,
        protocol_version: u32,
    ) -> Registration {
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id,
            device_id,
            protocol_version,
            pending: Mutex::new([None; DATA_TYPES]),
            events: Mutex::default(),
            wake: Notify::new(),
            kick: OnceLock::new(),
            kicked: Notify::new(),
        });
        let mut shard = self.shard(user_id).lock().expect("registry shard");
        let list = shard.entry(user_id).or_default();
        list.push(connection.clone());
        if list.len() == 1 {
            self.presence_changed(user_id);
        }
        drop(shard);
        Registration { registry: self.clone(), connection }
    }

    fn unregister(&self, connection: &Connection) {
        let mut shard = self.shard(connection.user_id).lock().expect("registry shard");
        if let Some(list) = shard.get_mut(&connection.user_id) {
            list.retain(|c| c.id != connection.id);
            if list.is_empty() {
                shard.remove(&connection.user_id);
                self.presence_changed(connection.user_id);
            }
        }
    }
}

/// Keeps a connection registered while it lives.
pub struct Registration {
    registry: Arc<Registry>,
    pub connection: Arc<Connection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(&self.connection);
    }
}

#[async_trait::async_trait]
impl Push for Registry {
    async fn notify(&self, _: &Ctx, req: NotifyRequest) -> Result<NotifyResponse, Status> {
        let mut offline: Vec<u64> = req
            .targets
            .iter()
            .map(|t| t.user_id)
            .filter(|&user_id| !self.is_online(user_id))
            .collect();
        offline.sort_unstable();
        offline.dedup();
        for target in req.targets {
            // A target this node cannot announce is skipped alone: the others still go out.
            let Some(data_type) =
                usize::try_from(target.r#type).ok().filter(|t| (1..DATA_TYPES).contains(t))
            else {
                tracing::warn!(data_type = target.r#type, "notify for an unknown data type");
                continue;
            };
            let shard = self.shard(target.user_id).lock().expect("registry shard");
            for connection in shard.get(&target.user_id).into_iter().flatten() {
                if connection.device_id != target.except_device_id {
                    connection.announce(data_type, target.version);
                }
            }
        }
        for event in req.events {
            self.deliver_event(event);
        }
        for kick in req.kicks {
            self.kick(kick);
        }
        Ok(NotifyResponse { offline })
    }

    async fn presence(&self, _: &Ctx, req: UserRef) -> Result<Presence, Status> {
        let shard = self.shard(req.user_id).lock().expect("registry shard");
        let mut device_ids: Vec<u64> =
            shard.get(&req.user_id).into_iter().flatten().map(|c| c.device_id).collect();
        device_ids.sort_unstable();
        device_ids.dedup();
        Ok(Presence { online: !device_ids.is_empty(), device_ids })
    }
}

impl Registry {
    fn deliver_event(&self, target: EventTarget) {
        let event = Bytes::from(target.event);
        let shard = self.shard(target.user_id).lock().expect("registry shard");
        for connection in shard.get(&target.user_id).into_iter().flatten() {
            if connection.device_id != target.except_device_id
                && connection.protocol_version >= EVENTS_SINCE_VERSION
            {
                connection.queue_event(event.clone());
            }
        }
    }

    fn kick(&self, kick: KickTarget) {
        let code = u16::try_from(kick.code).ok().and_then(Code::from_u16);
        let status = Status::new(code.unwrap_or(Code::Unauthenticated), kick.message);
        let shard = self.shard(kick.user_id).lock().expect("registry shard");
        for connection in shard.get(&kick.user_id).into_iter().flatten() {
            if kick.device_id == 0 || connection.device_id == kick.device_id {
                tracing::info!(
                    user_id = kick.user_id,
                    device_id = connection.device_id,
                    code = %status.code,
                    "signing a device out"
                );
                connection.kick(status.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_type_has_a_slot() {
        for number in 0..64 {
            if DataType::try_from(number).is_ok() {
                assert!((number as usize) < DATA_TYPES, "data type {number} has no slot");
            }
        }
    }
    use missive_proto::internal::NotifyTarget;

    fn target(user_id: u64, except_device_id: u64, version: u64) -> NotifyTarget {
        NotifyTarget { user_id, except_device_id, r#type: 3, version }
    }

    /// One step of the model test below.
    #[derive(Debug, Clone)]
    enum Step {
        Register { user: u64, device: u64 },
        Unregister { index: usize },
        Notify { user: u64, except: u64, data_type: i32, version: u64 },
        Take { index: usize },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (1u64..4, 1u64..4).prop_map(|(user, device)| Step::Register { user, device }),
            any::<usize>().prop_map(|index| Step::Unregister { index }),
            (1u64..4, 0u64..4, 0i32..5, 0u64..50).prop_map(|(user, except, data_type, version)| {
                Step::Notify { user, except, data_type, version }
            }),
            any::<usize>().prop_map(|index| Step::Take { index }),
        ]
    }

    proptest::proptest! {
        /// Against a model: a connection is online from its registration to its drop, takes
        /// the newest version per data type of every notify for its user (but one naming its
        /// own device), each once, and presence is told at a user's first connection and at
        /// their last one going.
        #[test]
        fn registrations_notifies_and_presence_follow_the_model(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let registry = Registry::new();
                let mut presence = registry.watch_presence();
                // (registration, user, device, newest version per data type not yet taken)
                let mut live: Vec<(Registration, u64, u64, [Option<u64>; DATA_TYPES])> = Vec::new();
                for step in steps {
                    match step {
                        Step::Register { user, device } => {
                            let first = !live.iter().any(|l| l.1 == user);
                            live.push((registry.register(user, device, 3), user, device, [None; DATA_TYPES]));
                            if first {
                                assert_eq!(presence.try_recv().ok(), Some(user), "first connection told");
                            }
                        }
                        Step::Unregister { index } if !live.is_empty() => {
                            let (gone, user, ..) = live.remove(index % live.len());
                            drop(gone);
                            if !live.iter().any(|l| l.1 == user) {
                                assert_eq!(presence.try_recv().ok(), Some(user), "last one told");
                            }
                        }
                        Step::Notify { user, except, data_type, version } => {
                            let target = NotifyTarget { user_id: user, except_device_id: except, r#type: data_type, version };
                            let request = NotifyRequest { targets: vec![target], ..Default::default() };
                            let answer = registry.notify(&Ctx::new(0), request).await.unwrap();
                            let online = live.iter().any(|l| l.1 == user);
                            assert_eq!(answer.offline.is_empty(), online, "offline users are named");
                            if (1..DATA_TYPES as i32).contains(&data_type) {
                                for entry in live.iter_mut().filter(|l| l.1 == user && l.2 != except) {
                                    let slot = &mut entry.3[data_type as usize];
                                    *slot = Some(slot.map_or(version, |v| v.max(version)));
                                }
                            }
                        }
                        Step::Take { index } if !live.is_empty() => {
                            let at = index % live.len();
                            let expected: Vec<(i32, u64)> = live[at].3.iter().enumerate()
                                .filter_map(|(t, v)| v.map(|v| (t as i32, v))).collect();
                            assert_eq!(live[at].0.connection.take_pending(), expected);
                            live[at].3 = [None; DATA_TYPES];
                        }
                        _ => {}
                    }
                    for user in 1..4 {
                        assert_eq!(registry.is_online(user), live.iter().any(|l| l.1 == user));
                    }
                    assert!(presence.try_recv().is_err(), "no presence news beyond the model's");
                }
            });
        }
    }

    #[tokio::test]
    async fn notifies_coalesce_and_skip_the_acting_device() {
        let registry = Registry::new();
        let phone = registry.register(1, 10, 3);
        let laptop = registry.register(1, 11, 3);
        let other = registry.register(2, 20, 3);
        let ctx = Ctx::new(0);
        let targets = vec![target(1, 11, 5), target(1, 11, 7), target(1, 11, 6)];
        registry.notify(&ctx, NotifyRequest { targets, ..Default::default() }).await.unwrap();
        assert_eq!(phone.connection.take_pending(), vec![(3, 7)]);
        assert_eq!(phone.connection.take_pending(), vec![]);
        assert_eq!(laptop.connection.take_pending(), vec![]);
        assert_eq!(other.connection.take_pending(), vec![]);
        drop(phone);
        let online: Vec<u64> =
            registry.shard(1).lock().unwrap()[&1].iter().map(|c| c.device_id).collect();
        assert_eq!(online, vec![11]);
        drop((laptop, other));
        assert!(registry.shard(1).lock().unwrap().is_empty(), "the last connection unregisters");
    }

    #[tokio::test]
    async fn presence_reports_first_and_last_connections_and_wake_reaches_everyone() {
        let registry = Registry::new();
        let mut presence = registry.watch_presence();
        let phone = registry.register(1, 10, 3);
        let laptop = registry.register(1, 11, 3);
        let other = registry.register(2, 20, 3);
        assert_eq!((presence.recv().await, presence.recv().await), (Some(1), Some(2)));
        assert!(presence.try_recv().is_err(), "a second device of an online user is no news");
        let mut online = registry.online_users();
        online.sort();
        assert_eq!(online, [1, 2]);

        registry.wake_all();
        assert_eq!(phone.connection.take_pending(), [(1, 0), (2, 0), (3, 0)]);
        registry
            .notify(
                &Ctx::new(0),
                NotifyRequest { targets: vec![target(2, 0, 9)], ..Default::default() },
            )
            .await
            .unwrap();
        registry.wake_all();
        assert_eq!(other.connection.take_pending(), [(1, 0), (2, 0), (3, 9)]);

        drop(phone);
        assert!(registry.is_online(1) && presence.try_recv().is_err());
        drop(laptop);
        assert!(!registry.is_online(1));
        assert_eq!(presence.recv().await, Some(1));
    }

    #[tokio::test]
    async fn events_reach_version_3_links_only_and_the_oldest_give_way() {
        let registry = Registry::new();
        let phone = registry.register(1, 10, 3);
        let laptop = registry.register(1, 11, 3);
        let old = registry.register(1, 12, 2);
        let event = |n: u8| EventTarget { user_id: 1, except_device_id: 11, event: vec![n] };
        let events = (0..EVENTS_QUEUED_MAX as u8 + 2).map(event).collect();
        let request = NotifyRequest { events, ..Default::default() };
        registry.notify(&Ctx::new(0), request).await.unwrap();
        let taken: Vec<u8> = phone.connection.take_events().iter().map(|e| e[0]).collect();
        assert_eq!(taken, (2..EVENTS_QUEUED_MAX as u8 + 2).collect::<Vec<_>>());
        assert!(phone.connection.take_events().is_empty());
        assert!(laptop.connection.take_events().is_empty(), "the acting device is skipped");
        assert!(old.connection.take_events().is_empty(), "version 2 knows no events");
    }

    #[tokio::test]
    async fn a_kick_reaches_the_named_device_or_all_of_them_and_presence_lists_devices() {
        let registry = Registry::new();
        let phone = registry.register(1, 10, 3);
        let laptop = registry.register(1, 11, 3);
        let other = registry.register(2, 20, 3);
        let ctx = Ctx::new(0);
        let presence = registry.presence(&ctx, UserRef { user_id: 1 }).await.unwrap();
        assert_eq!(presence, Presence { online: true, device_ids: vec![10, 11] });
        let nobody = registry.presence(&ctx, UserRef { user_id: 3 }).await.unwrap();
        assert_eq!(nobody, Presence { online: false, device_ids: vec![] });

        let kick = |user_id, device_id| KickTarget {
            user_id,
            device_id,
            code: Code::Unauthenticated as u32,
            message: "signed out by an operator".into(),
        };
        registry
            .notify(&ctx, NotifyRequest { kicks: vec![kick(1, 11)], ..Default::default() })
            .await
            .unwrap();
        let status = laptop.connection.kicked().await;
        assert_eq!(status.code, Code::Unauthenticated);
        assert!(phone.connection.kick.get().is_none() && other.connection.kick.get().is_none());

        let all = KickTarget { code: Code::AccountDisabled as u32, ..kick(1, 0) };
        registry
            .notify(&ctx, NotifyRequest { kicks: vec![all], ..Default::default() })
            .await
            .unwrap();
        assert_eq!(phone.connection.kicked().await.code, Code::AccountDisabled);
        assert_eq!(
            laptop.connection.kicked().await.code,
            Code::Unauthenticated,
            "the first kick stays"
        );
        assert!(other.connection.kick.get().is_none());
    }
}
