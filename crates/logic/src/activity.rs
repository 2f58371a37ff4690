//! Who was active in each statistics period: a user who logged in, authenticated, synced or
//! sent is noted once per period here, and the janitor writes the new names to the store in
//! one call per pass. The hourly statistics count them there, over every logic node.

use crate::Logic;
use missive_proto::internal::ActiveUsers;
use missive_rpc::Ctx;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// Users named in one store call at most.
const USERS_PER_WRITE_MAX: usize = 1000;
/// Independently locked parts, by user id: every send and sync notes its user here.
const STRIPES: usize = 64;

pub(crate) struct Activity {
    period_ms: i64,
    stripes: Vec<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The period `seen` is about.
    period_start_ms: i64,
    seen: HashSet<u64>,
    /// Noted but not yet written: period start -> users.
    unwritten: BTreeMap<i64, Vec<u64>>,
}

impl Activity {
    pub(crate) fn new(period_ms: i64) -> Activity {
        Activity {
            period_ms: period_ms.max(1),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    pub(crate) fn period_start(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.period_ms)
    }

    /// Notes the user active now; costs a set lookup once the user was seen this period.
    pub(crate) fn mark(&self, user_id: u64, now_ms: i64) {
        let start = self.period_start(now_ms);
        let mut state = self.stripe(user_id).lock().expect("activity");
        if state.period_start_ms != start {
            state.period_start_ms = start;
            state.seen.clear();
        }
        if state.seen.insert(user_id) {
            state.unwritten.entry(start).or_default().push(user_id);
        }
    }

    fn stripe(&self, user_id: u64) -> &Mutex<State> {
        &self.stripes[(user_id % STRIPES as u64) as usize]
    }

    fn take(&self) -> BTreeMap<i64, Vec<u64>> {
        let mut taken: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for stripe in &self.stripes {
            let unwritten = std::mem::take(&mut stripe.lock().expect("activity").unwritten);
            for (period_start_ms, users) in unwritten {
                taken.entry(period_start_ms).or_default().extend(users);
            }
        }
        taken
    }

    fn put_back(&self, period_start_ms: i64, users: &[u64]) {
        for &user_id in users {
            let mut state = self.stripe(user_id).lock().expect("activity");
            state.unwritten.entry(period_start_ms).or_default().push(user_id);
        }
    }
}

impl Logic {
    /// Writes the users noted active since the last pass; on failure they wait for the next.
    pub async fn flush_activity(&self) {
        let ctx = Ctx::new(0);
        for (period_start_ms, users) in self.activity.take() {
            for chunk in users.chunks(USERS_PER_WRITE_MAX) {
                let request = ActiveUsers { period_start_ms, user_ids: chunk.to_vec() };
                if let Err(status) = self.deps.ops.mark_active(&ctx, request).await {
                    tracing::warn!(%status, count = chunk.len(), "writing activity failed");
                    self.activity.put_back(period_start_ms, chunk);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_noted_once_per_period() {
        let activity = Activity::new(1000);
        activity.mark(1, 10);
        activity.mark(1, 999);
        activity.mark(2, 500);
        activity.mark(1, 1000);
        activity.mark(1, 1500);
        let taken = activity.take();
        assert_eq!(taken, BTreeMap::from([(0, vec![1, 2]), (1000, vec![1])]));
        assert!(activity.take().is_empty());
        activity.mark(1, 1999);
        assert!(activity.take().is_empty(), "already noted in this period");
        activity.put_back(1000, &[7]);
        assert_eq!(activity.take(), BTreeMap::from([(1000, vec![7])]));
    }
}
