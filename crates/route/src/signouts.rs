//! The logic layer's side of sign-outs: every logic node follows `<namespace>:signouts`, so
//! that a session signed out through one logic node stops being trusted by the others' caches
//! at once, not when their cached copy ages out.

use crate::channel::{Follower, follow};
use crate::{RouteConfig, RouteError};
use missive_proto::internal::NotifyRequest;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a logic node is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOut {
    /// One device of a user, or every device (`None`).
    Device { user_id: u64, device_id: Option<u64> },
    /// Sign-outs may have been missed (the subscription was lost): trust no cached session.
    Unknown,
}

/// Follows the sign-outs of the deployment until [`SignOuts::stop`].
pub struct SignOuts {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Forget<F>(F);

impl<F: Fn(SignOut) + Send + Sync> Follower for Forget<F> {
    fn subscribed(&self) {
        (self.0)(SignOut::Unknown);
    }

    async fn deliver(&self, payload: &[u8]) {
        match NotifyRequest::decode(payload) {
            Ok(request) => {
                for kick in request.kicks {
                    let device_id = (kick.device_id != 0).then_some(kick.device_id);
                    (self.0)(SignOut::Device { user_id: kick.user_id, device_id });
                }
            }
            Err(error) => tracing::warn!(%error, "undecodable sign-out"),
        }
    }
}

impl SignOuts {
    /// Checks that Redis answers, then calls `forget` for every sign-out published.
    pub async fn start(
        config: RouteConfig,
        forget: impl Fn(SignOut) + Send + Sync + 'static,
    ) -> Result<SignOuts, RouteError> {
        let redis = config.connect().await?;
        let stop = CancellationToken::new();
        let channel = config.sign_outs_channel();
        let follower = Forget(forget);
        let task = tokio::spawn(follow(redis, channel, follower, stop.clone()));
        Ok(SignOuts { stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
