//! Tells the logic tier (its `Links` service) which users came online on this node or left
//! it, for their friends to learn (the logic tier decides who may see what).
//!
//! A user is reported online when their first long link here registers, and offline when
//! their last one has been gone for a grace period: a phone that drops and reconnects within
//! it is no news to anyone. Reports are state-based (what the registry says when the report
//! is made), so a burst of changes is coalesced, and each user is reported at most once per
//! change of state. A report that cannot be delivered is dropped: presence is a hint, and the
//! next change, or a friend's GET_PRESENCE, tells the truth.

use crate::registry::Registry;
use missive_proto::internal::{LinkChange, LinkChanges, Links};
use missive_rpc::Ctx;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Changes told in one call at most.
const CHANGES_PER_CALL: usize = 500;
/// How long a stopping node waits for its links to close, reporting them.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long one report may take before it is given up.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reports presence changes of `registry`'s users to `links`. Once `stop` fires, the node is
/// going away: links that close are reported at once, without the grace, until none is left
/// or [`STOP_WAIT`] has passed; whoever is still here then is reported gone.
pub async fn report(
    registry: Arc<Registry>,
    links: Arc<dyn Links>,
    mut grace: Duration,
    stop: CancellationToken,
) {
    let mut changes = registry.watch_presence();
    let mut state = Reporter::default();
    let mut stopping: Option<Instant> = None;
    loop {
        let next_leave = state.leaving.front().map(|(at, _)| *at);
        tokio::select! {
            () = stop.cancelled(), if stopping.is_none() => {
                let now = Instant::now();
                stopping = Some(now + STOP_WAIT);
                grace = Duration::ZERO;
                state.leaving.iter_mut().for_each(|(at, _)| *at = now);
            }
            () = sleep_until(stopping) => break,
            Some(user_id) = changes.recv() => {
                state.changed(&registry, user_id, Instant::now() + grace);
                while let Ok(user_id) = changes.try_recv() {
                    state.changed(&registry, user_id, Instant::now() + grace);
                }
            }
            () = sleep_until(next_leave) => {}
        }
        state.due(&registry, Instant::now());
        send(&*links, std::mem::take(&mut state.ready)).await;
        if stopping.is_some() && state.online.is_empty() {
            return;
        }
    }
    let gone = state.online.drain().map(|user_id| LinkChange { user_id, online: false });
    send(&*links, gone.collect()).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send(links: &dyn Links, changes: Vec<LinkChange>) {
    for chunk in changes.chunks(CHANGES_PER_CALL) {
        let request = LinkChanges { changes: chunk.to_vec() };
        let ctx = Ctx::new(0).with_timeout(REPORT_TIMEOUT);
        match tokio::time::timeout(REPORT_TIMEOUT, links.changed(&ctx, request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => tracing::warn!(%status, users = chunk.len(), "presence not told"),
            Err(_) => tracing::warn!(users = chunk.len(), "presence not told in time"),
        }
    }
}

/// What has been reported, and what waits to be.
#[derive(Default)]
struct Reporter {
    /// Users reported online and not since reported gone.
    online: HashSet<u64>,
    /// Users whose last link here closed, with when their grace ends, in that order.
    leaving: VecDeque<(Instant, u64)>,
    /// Changes to report now.
    ready: Vec<LinkChange>,
}

impl Reporter {
    /// A user's first link registered, or their last unregistered.
    fn changed(&mut self, registry: &Registry, user_id: u64, grace_ends: Instant) {
        if registry.is_online(user_id) {
            if self.online.insert(user_id) {
                self.ready.push(LinkChange { user_id, online: true });
            }
        } else if self.online.contains(&user_id) {
            self.leaving.push_back((grace_ends, user_id));
        }
    }

    /// Reports those whose grace has ended and who have not come back.
    fn due(&mut self, registry: &Registry, now: Instant) {
        while let Some(&(at, user_id)) = self.leaving.front() {
            if at > now {
                break;
            }
            self.leaving.pop_front();
            if !registry.is_online(user_id) && self.online.remove(&user_id) {
                self.ready.push(LinkChange { user_id, online: false });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn online_at_once_offline_after_the_grace_and_a_quick_return_is_no_news() {
        let registry = Registry::new();
        let grace = Duration::from_secs(5);
        let mut reporter = Reporter::default();
        let start = Instant::now();

        let phone = registry.register(1, 10, 3);
        reporter.changed(&registry, 1, start + grace);
        let laptop = registry.register(1, 11, 3);
        reporter.changed(&registry, 1, start + grace);
        assert_eq!(std::mem::take(&mut reporter.ready), [LinkChange { user_id: 1, online: true }]);

        // Gone and back within the grace: nothing to say.
        drop((phone, laptop));
        reporter.changed(&registry, 1, start + grace);
        let back = registry.register(1, 10, 3);
        reporter.changed(&registry, 1, start + grace);
        reporter.due(&registry, start + grace);
        assert!(reporter.ready.is_empty() && reporter.leaving.is_empty());

        // Gone for good: told once the grace has passed.
        drop(back);
        reporter.changed(&registry, 1, start + grace * 2);
        reporter.due(&registry, start + grace);
        assert!(reporter.ready.is_empty());
        reporter.due(&registry, start + grace * 2);
        assert_eq!(reporter.ready, [LinkChange { user_id: 1, online: false }]);
        assert!(reporter.online.is_empty());
    }
}
