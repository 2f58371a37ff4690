//! Which devices are online on this node, and the `Push` service that reaches them.
//!
//! A notify does not queue a frame per change: each connection keeps, per data type, the
//! newest version not yet announced, and its writer sends one `Notify` per type when it next
//! runs. A burst of a thousand messages to a slow client therefore costs at most one pending
//! notify per type, never an unbounded queue.

use missive_proto::internal::{Empty, NotifyRequest, Push};
use missive_rpc::{Ctx, Status};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Data types a notify can name (index = `DataType` number).
pub const DATA_TYPES: usize = 4;
const SHARDS: usize = 64;

/// One authenticated long-link connection, shared by its tasks and the registry.
pub struct Connection {
    pub id: u64,
    pub user_id: u64,
    pub device_id: u64,
    pending: Mutex<[u64; DATA_TYPES]>,
    wake: Notify,
}

impl Connection {
    /// Takes the notifies waiting to be sent: (data type, newest version) pairs.
    pub fn take_pending(&self) -> Vec<(i32, u64)> {
        let mut pending = self.pending.lock().expect("pending notifies");
        let taken = pending
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(t, v)| (t as i32, *v))
            .collect();
        *pending = [0; DATA_TYPES];
        taken
    }

    /// Resolves when a notify is waiting.
    pub async fn notified(&self) {
        self.wake.notified().await
    }

    fn announce(&self, data_type: usize, version: u64) {
        let mut pending = self.pending.lock().expect("pending notifies");
        pending[data_type] = pending[data_type].max(version);
        drop(pending);
        self.wake.notify_one();
    }
}

pub struct Registry {
    next_id: AtomicU64,
    shards: Vec<Mutex<HashMap<u64, Vec<Arc<Connection>>>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            next_id: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        })
    }

    fn shard(&self, user_id: u64) -> &Mutex<HashMap<u64, Vec<Arc<Connection>>>> {
        &self.shards[(user_id % SHARDS as u64) as usize]
    }

    /// Registers an authenticated connection; drop the returned guard to unregister it.
    pub fn register(self: &Arc<Self>, user_id: u64, device_id: u64) -> Registration {
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id,
            device_id,
            pending: Mutex::new([0; DATA_TYPES]),
            wake: Notify::new(),
        });
        self.shard(user_id)
            .lock()
            .expect("registry shard")
            .entry(user_id)
            .or_default()
            .push(connection.clone());
        Registration { registry: self.clone(), connection }
    }

    fn unregister(&self, connection: &Connection) {
        let mut shard = self.shard(connection.user_id).lock().expect("registry shard");
        if let Some(list) = shard.get_mut(&connection.user_id) {
            list.retain(|c| c.id != connection.id);
            if list.is_empty() {
                shard.remove(&connection.user_id);
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
    async fn notify(&self, _: &Ctx, req: NotifyRequest) -> Result<Empty, Status> {
        for target in req.targets {
            let data_type = usize::try_from(target.r#type)
                .ok()
                .filter(|t| (1..DATA_TYPES).contains(t))
                .ok_or_else(|| Status::invalid_argument("unknown data type"))?;
            let shard = self.shard(target.user_id).lock().expect("registry shard");
            for connection in shard.get(&target.user_id).into_iter().flatten() {
                if connection.device_id != target.except_device_id {
                    connection.announce(data_type, target.version);
                }
            }
        }
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_proto::internal::NotifyTarget;

    fn target(user_id: u64, except_device_id: u64, version: u64) -> NotifyTarget {
        NotifyTarget { user_id, except_device_id, r#type: 3, version }
    }

    #[tokio::test]
    async fn notifies_coalesce_and_skip_the_acting_device() {
        let registry = Registry::new();
        let phone = registry.register(1, 10);
        let laptop = registry.register(1, 11);
        let other = registry.register(2, 20);
        let ctx = Ctx::new(0);
        let targets = vec![target(1, 11, 5), target(1, 11, 7), target(1, 11, 6)];
        registry.notify(&ctx, NotifyRequest { targets }).await.unwrap();
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
}
