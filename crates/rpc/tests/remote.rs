//! The remote transport over a real loopback socket, through the glue generated for a service
//! of the schema: a service served with `*_routes` and called through `*Remote` answers as it
//! does in process, with the call context carried across, and a client skips an endpoint
//! that cannot be reached.

use missive_proto::internal::{
    AllocRequest, AllocResponse, Seq, SeqGuarded, SeqRemote, seq_routes,
};
use missive_rpc::remote::{Client, NodeKey, Trust};
use missive_rpc::{Caller, Code, Ctx, GuardConfig, Priority, Status};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Answers with what it saw of the call context, so the test can check what crossed.
struct Witness;

#[async_trait::async_trait]
impl Seq for Witness {
    async fn alloc(&self, ctx: &Ctx, req: AllocRequest) -> Result<AllocResponse, Status> {
        match req.count {
            0 => Err(Status::aborted("count 0 asks for an abort")),
            1 => {
                let caller = ctx.caller()?;
                let left = ctx
                    .deadline
                    .expect("deadline crossed")
                    .duration_since(std::time::Instant::now());
                assert!(
                    left <= Duration::from_secs(5) && left > Duration::from_secs(3),
                    "{left:?}"
                );
                assert_eq!(ctx.priority, Priority::Critical);
                Ok(AllocResponse { first: caller.user_id * 1000 + ctx.request_id })
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(u64::from(req.count))).await;
                Ok(AllocResponse { first: req.user_id })
            }
        }
    }
}

/// The key of the deployment these tests are nodes of.
fn key() -> &'static NodeKey {
    static KEY: std::sync::OnceLock<NodeKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| NodeKey::from_secret(b"the deployment's secret"))
}

async fn serve(service: Arc<dyn Seq>) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(seq_routes(service).serve(listener, key().clone(), None, shutdown.clone()));
    (url, shutdown)
}

fn caller_ctx() -> Ctx {
    let caller = Caller { user_id: 7, device_id: 3, protocol_version: 1 };
    Ctx { caller: Some(caller), ..Ctx::new(42) }
        .with_timeout(Duration::from_secs(5))
        .with_priority(Priority::Critical)
}

#[tokio::test]
async fn a_remote_call_carries_the_context_and_the_status() {
    let (url, _shutdown) = serve(SeqGuarded::new(Arc::new(Witness), &GuardConfig::default())).await;
    let remote = SeqRemote::new(Client::new("seq", &[url], key(), &Trust::default()).unwrap());
    let ctx = caller_ctx();
    let answer = remote.alloc(&ctx, AllocRequest { user_id: 7, count: 1, fresh: false });
    assert_eq!(answer.await.unwrap().first, 7042);

    let aborted = remote.alloc(&ctx, AllocRequest { user_id: 7, count: 0, fresh: false });
    assert_eq!(aborted.await.unwrap_err().code, Code::Aborted);

    let short = Ctx::new(1).with_timeout(Duration::from_millis(100));
    let late = remote.alloc(&short, AllocRequest { user_id: 7, count: 2000, fresh: false });
    assert_eq!(late.await.unwrap_err().code, Code::DeadlineExceeded);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_skipped() {
    let (url, _shutdown) = serve(Arc::new(Witness)).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let remote =
        SeqRemote::new(Client::new("seq", &[dead.clone(), url], key(), &Trust::default()).unwrap());
    for user_id in 0..20 {
        let req = AllocRequest { user_id, count: 2, fresh: false };
        assert_eq!(remote.alloc(&Ctx::new(1), req).await.unwrap().first, user_id);
    }
    let nobody = SeqRemote::new(Client::new("seq", &[dead], key(), &Trust::default()).unwrap());
    let req = AllocRequest { user_id: 1, count: 2, fresh: false };
    assert_eq!(nobody.alloc(&Ctx::new(1), req).await.unwrap_err().code, Code::Unavailable);
}

/// A caller that does not hold the deployment's key (another deployment's node, or a
/// stranger forging a caller) is refused, and nothing runs.
#[tokio::test]
async fn a_caller_without_the_deployments_key_is_refused_and_nothing_runs() {
    let (url, _shutdown) = serve(Arc::new(Witness)).await;
    let forged = Caller { user_id: 7, device_id: 3, protocol_version: 2 };
    let ctx = Ctx { caller: Some(forged), ..Ctx::new(1) };
    for stranger in [NodeKey::random(), NodeKey::from_secret(b"another deployment")] {
        let remote = SeqRemote::new(
            Client::new("seq", std::slice::from_ref(&url), &stranger, &Trust::default()).unwrap(),
        );
        // Count 0 would answer ABORTED if the call ran.
        let refused = remote.alloc(&ctx, AllocRequest { user_id: 7, count: 0, fresh: false });
        let status = refused.await.unwrap_err();
        assert_eq!(status.code, Code::Unauthenticated, "{status}");
    }
    let node = SeqRemote::new(Client::new("seq", &[url], key(), &Trust::default()).unwrap());
    let ran = node.alloc(&ctx, AllocRequest { user_id: 7, count: 0, fresh: false }).await;
    assert_eq!(ran.unwrap_err().code, Code::Aborted, "a node's call runs");
}
