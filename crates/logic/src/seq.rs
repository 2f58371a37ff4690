//! The per-user version allocator, designed like WeChat's seqsvr.
//!
//! Versions are handed out from memory. Each user has a persisted upper bound (`max`); before
//! handing out a version above it, the allocator durably raises the bound by a whole step, so a
//! store write happens once per `step` allocations. After a crash, every version up to the
//! persisted bound may have been handed out, so a restarted allocator starts *above* it: some
//! versions are skipped, none is ever handed out twice.

use missive_proto::internal::{
    AllocRequest, AllocResponse, Seq, SeqStore, StoreMaxRequest, UserRef,
};
use missive_rpc::{Code, Ctx, Status};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// How far a persisted bound runs ahead by default: WeChat's seqsvr uses 10,000, one store
/// write per 10,000 versions.
pub const SEQ_STEP_DEFAULT: u64 = 10_000;

/// Independent locks over the users' states, so users in different shards never wait for
/// each other, not even while one shard persists a new bound.
const SHARDS: usize = 64;
/// Users kept in memory per shard at most. A full shard forgets its users: safe, because a
/// forgotten user restarts above the persisted bound exactly as after a restart (skipping at
/// most a step of versions, never reusing one).
const USERS_PER_SHARD_MAX: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct UserSeq {
    /// The last version handed out.
    current: u64,
    /// The persisted bound: versions up to here may be handed out without a store write.
    max: u64,
}

pub struct SeqAllocator {
    store: Arc<dyn SeqStore>,
    step: u64,
    shards: Vec<Mutex<HashMap<u64, UserSeq>>>,
}

impl SeqAllocator {
    /// `step`: how far each persisted bound runs ahead ([`SEQ_STEP_DEFAULT`]).
    pub fn new(store: Arc<dyn SeqStore>, step: u64) -> Self {
        assert!(step > 0, "seq step must be positive");
        SeqAllocator { store, step, shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }

    fn shard(&self, user_id: u64) -> &Mutex<HashMap<u64, UserSeq>> {
        &self.shards[(user_id % SHARDS as u64) as usize]
    }

    async fn load(&self, ctx: &Ctx, user_id: u64) -> Result<UserSeq, Status> {
        let section = self.store.load_max(ctx, UserRef { user_id }).await?;
        Ok(UserSeq { current: section.max_version, max: section.max_version })
    }
}

#[async_trait::async_trait]
impl Seq for SeqAllocator {
    async fn alloc(&self, ctx: &Ctx, req: AllocRequest) -> Result<AllocResponse, Status> {
        if req.count == 0 {
            return Err(Status::invalid_argument("count must be positive"));
        }
        let mut users = self.shard(req.user_id).lock().await;
        let mut state = match users.get(&req.user_id) {
            Some(state) if !req.fresh => *state,
            _ => self.load(ctx, req.user_id).await?,
        };
        let mut reloaded = false;
        let last = loop {
            let last = state.current + u64::from(req.count);
            if last <= state.max {
                break last;
            }
            let max = last + self.step;
            let moved =
                StoreMaxRequest { user_id: req.user_id, expected_max: state.max, max_version: max };
            match self.store.store_max(ctx, moved).await {
                Ok(_) => {
                    state.max = max;
                    break last;
                }
                // Another allocator moved the bound (this user's range moved between nodes):
                // everything up to its bound may be handed out there, so start above it.
                Err(status) if status.code == Code::Aborted && !reloaded => {
                    reloaded = true;
                    state = self.load(ctx, req.user_id).await?;
                }
                Err(status) => {
                    users.remove(&req.user_id);
                    return Err(status);
                }
            }
        };
        let first = state.current + 1;
        state.current = last;
        if users.len() >= USERS_PER_SHARD_MAX && !users.contains_key(&req.user_id) {
            users.clear();
        }
        users.insert(req.user_id, state);
        Ok(AllocResponse { first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_storage_embedded::{EmbeddedStore, StoreConfig};
    use proptest::prelude::*;

    fn ctx() -> Ctx {
        Ctx::new(0)
    }

    async fn alloc(seq: &SeqAllocator, user_id: u64, count: u32) -> u64 {
        seq.alloc(&ctx(), AllocRequest { user_id, count, fresh: false }).await.unwrap().first
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the step, the batch sizes and the restarts ("crashes" that lose all memory),
        /// each user's versions strictly increase and are never handed out twice.
        #[test]
        fn versions_strictly_increase_across_restarts(
            step in 1u64..50,
            ops in proptest::collection::vec((0u64..3, 1u32..20, proptest::bool::weighted(0.1)), 1..80),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
                let mut seq = SeqAllocator::new(store.clone(), step);
                let mut last: HashMap<u64, u64> = HashMap::new();
                for (user_id, count, restart) in ops {
                    if restart {
                        seq = SeqAllocator::new(store.clone(), step);
                    }
                    let first = alloc(&seq, user_id, count).await;
                    let previous = last.get(&user_id).copied().unwrap_or(0);
                    prop_assert!(first > previous, "user {user_id}: {first} after {previous}");
                    last.insert(user_id, first + u64::from(count) - 1);
                }
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn writes_the_bound_once_per_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(StoreConfig::new(dir.path())).unwrap());
        let seq = SeqAllocator::new(store.clone(), 100);
        for expected in 1..=150 {
            assert_eq!(alloc(&seq, 9, 1).await, expected);
        }
        let bound = store.load_max(&ctx(), UserRef { user_id: 9 }).await.unwrap().max_version;
        assert_eq!(bound, 102 + 100, "raised to 101 at version 1, then to 202 at 102");
    }
}
