//! Per-user write ordering.
//!
//! Sync returns "every change newer than the key", so a user's versions must become visible in
//! the order they were handed out: if version 6 committed while 5 was still in flight, a sync
//! in between would move the key past 5 and lose it. Every write that takes versions for a
//! user therefore holds that user's lock from allocation until its commit is acknowledged.
//! Locks are striped: users in one stripe share a lock, which costs only a little concurrency.

use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct UserLocks {
    stripes: Vec<Mutex<()>>,
}

impl UserLocks {
    pub fn new(stripes: usize) -> Self {
        assert!(stripes > 0);
        UserLocks { stripes: (0..stripes).map(|_| Mutex::new(())).collect() }
    }

    /// Locks every given user's stripe, always in ascending stripe order so that two writers
    /// never deadlock.
    pub async fn lock(&self, users: &[u64]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> =
            users.iter().map(|u| (*u % self.stripes.len() as u64) as usize).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }
}

/// Per-group ordering between membership changes and group messages: a change holds its
/// group's lock exclusively, a send holds it shared, so a member removed is removed for every
/// send that starts after the removal was answered, and none that started before lingers.
pub struct GroupLocks {
    stripes: Vec<RwLock<()>>,
}

impl GroupLocks {
    pub fn new(stripes: usize) -> Self {
        assert!(stripes > 0);
        GroupLocks { stripes: (0..stripes).map(|_| RwLock::new(())).collect() }
    }

    fn stripe(&self, group_id: u64) -> &RwLock<()> {
        &self.stripes[(group_id % self.stripes.len() as u64) as usize]
    }

    pub async fn change(&self, group_id: u64) -> RwLockWriteGuard<'_, ()> {
        self.stripe(group_id).write().await
    }

    pub async fn send(&self, group_id: u64) -> RwLockReadGuard<'_, ()> {
        self.stripe(group_id).read().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn crossing_lock_orders_do_not_deadlock() {
        let locks = Arc::new(UserLocks::new(8));
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let locks = locks.clone();
            tasks.push(tokio::spawn(async move {
                let users = if i % 2 == 0 { [i, i + 3] } else { [i + 3, i] };
                let _guards = locks.lock(&users).await;
                tokio::task::yield_now().await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
}
