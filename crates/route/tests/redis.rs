//! Routes and cross-node push against a real Redis, this test run's own
//! (`MISSIVE_TEST_REDIS`, set by scripts/test): two access nodes' registries, one publisher.

use missive_access::Registry;
use missive_proto::internal::{KickTarget, NotifyRequest, NotifyTarget, Presence, Push, UserRef};
use missive_route::{AccessRoutes, RedisPush, RouteConfig};
use missive_rpc::{Code, Ctx};
use std::time::Duration;

const MESSAGE: i32 = 3;

/// This test run's Redis.
fn url() -> String {
    std::env::var("MISSIVE_TEST_REDIS").unwrap_or_else(|_| {
        panic!("MISSIVE_TEST_REDIS is not set: scripts/test starts private servers and sets it (scripts/test-services)")
    })
}

fn config(namespace: &str, node_id: &str) -> RouteConfig {
    RouteConfig { namespace: namespace.to_string(), ..RouteConfig::new(url(), node_id) }
}

/// A namespace no other test run shares.
fn namespace() -> String {
    format!("missive-test-{:016x}", rand::random::<u64>())
}

async fn notify(push: &RedisPush, user_id: u64, version: u64) {
    let target = NotifyTarget { user_id, except_device_id: 0, r#type: MESSAGE, version };
    push.notify(&Ctx::new(0), NotifyRequest { targets: vec![target], ..Default::default() })
        .await
        .unwrap();
}

/// Waits until `take` returns something non-empty, or 5 s.
async fn eventually<T: PartialEq + std::fmt::Debug>(mut take: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let taken = take();
        if !taken.is_empty() || tokio::time::Instant::now() > deadline {
            return taken;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pushes until the connection hears of `version` (route writes are asynchronous).
async fn push_until_heard(
    push: &RedisPush,
    connection: &missive_access::registry::Connection,
    user_id: u64,
    version: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Right after a Redis restart the publisher's connection may need a try to come back.
        let target = NotifyTarget { user_id, except_device_id: 0, r#type: MESSAGE, version };
        let _ = push
            .notify(&Ctx::new(0), NotifyRequest { targets: vec![target], ..Default::default() })
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pending = connection.take_pending();
        if pending.contains(&(MESSAGE, version)) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never heard of {version}: {pending:?}");
    }
}

#[tokio::test]
async fn an_idle_subscription_stays_up() {
    let namespace = namespace();
    let registry = Registry::new();
    let routes = AccessRoutes::start(config(&namespace, "idle"), registry.clone()).await.unwrap();
    let push = RedisPush::connect(config(&namespace, "logic")).await.unwrap();
    let dana = registry.register(4, 40, 3);
    push_until_heard(&push, &dana.connection, 4, 1).await;
    // Past the subscription's keep-alive ping: a lost subscription would wake the connection.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(dana.connection.take_pending(), [], "no resubscription, so no wake");
    routes.stop().await;
}

#[tokio::test]
async fn a_notify_reaches_the_node_that_holds_the_user_and_only_it() {
    let namespace = namespace();
    let (east, west) = (Registry::new(), Registry::new());
    let east_routes = AccessRoutes::start(config(&namespace, "east"), east.clone()).await.unwrap();
    let west_routes = AccessRoutes::start(config(&namespace, "west"), west.clone()).await.unwrap();
    let push = RedisPush::connect(config(&namespace, "logic")).await.unwrap();

    let alice = east.register(1, 10, 3);
    push_until_heard(&push, &alice.connection, 1, 5).await;

    // Alice moves to the other node: only it hears from now on.
    drop(alice);
    let alice = west.register(1, 11, 3);
    push_until_heard(&push, &alice.connection, 1, 6).await;
    let stray = east.register(2, 20, 3);
    notify(&push, 1, 7).await;
    assert_eq!(eventually(|| alice.connection.take_pending()).await, [(MESSAGE, 7)]);
    assert_eq!(stray.connection.take_pending(), [], "a node without the user hears nothing");

    // A node that stops removes its routes.
    west_routes.stop().await;
    let mut connection =
        redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{namespace}:route:1"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(fields, Vec::<String>::new());
    east_routes.stop().await;
}

#[tokio::test]
async fn kicks_reach_the_node_holding_the_device_presence_reads_routes_and_dead_routes_go() {
    let namespace = namespace();
    let (east, west) = (Registry::new(), Registry::new());
    let east_routes = AccessRoutes::start(config(&namespace, "east"), east.clone()).await.unwrap();
    let west_routes = AccessRoutes::start(config(&namespace, "west"), west.clone()).await.unwrap();
    let push = RedisPush::connect(config(&namespace, "logic")).await.unwrap();
    let ctx = Ctx::new(0);
    let presence = |user_id| push.presence(&ctx, UserRef { user_id });

    assert_eq!(presence(1).await.unwrap(), Presence { online: false, device_ids: vec![] });
    let phone = east.register(1, 10, 3);
    let laptop = west.register(1, 11, 3);
    let other = west.register(2, 20, 3);
    push_until_heard(&push, &phone.connection, 1, 1).await;
    push_until_heard(&push, &laptop.connection, 1, 1).await;
    assert!(presence(1).await.unwrap().online);

    let kick = KickTarget {
        user_id: 1,
        device_id: 10,
        code: Code::Unauthenticated as u32,
        message: "signed out by an operator".into(),
    };
    push.notify(&ctx, NotifyRequest { kicks: vec![kick], ..Default::default() }).await.unwrap();
    let told = tokio::time::timeout(Duration::from_secs(5), phone.connection.kicked()).await;
    assert_eq!(told.expect("the phone's node hears the kick").code, Code::Unauthenticated);
    // The west node got nothing for device 10: its devices are untouched.
    notify(&push, 1, 2).await;
    assert_eq!(eventually(|| laptop.connection.take_pending()).await, [(MESSAGE, 2)]);
    let untouched = tokio::time::timeout(Duration::from_millis(200), laptop.connection.kicked());
    assert!(untouched.await.is_err(), "the laptop stays signed in");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), other.connection.kicked()).await.is_err()
    );

    // A route whose node died without cleaning up is expired: not online, and deleted by the
    // next push that reads it.
    drop((phone, laptop));
    east_routes.stop().await;
    west_routes.stop().await;
    let mut connection =
        redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = format!("{namespace}:route:3");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("dead-node")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!presence(3).await.unwrap().online, "an expired route is not presence");
    notify(&push, 3, 1).await;
    let fields: Vec<String> =
        redis::cmd("HKEYS").arg(&key).query_async(&mut connection).await.unwrap();
    assert_eq!(fields, Vec::<String>::new(), "the expired route was deleted");
}

/// A Redis server of the test's own, so that it can be killed.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        OwnRedis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn answering(self) -> OwnRedis {
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if client.get_multiplexed_async_connection().await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} does not answer", self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn after_a_redis_restart_routes_are_rewritten_and_connections_told_to_sync() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = OwnRedis::start(port).answering().await;
    let local = |node: &str| RouteConfig { engine: redis.url().into(), ..config("missive", node) };
    let registry = Registry::new();
    let routes = AccessRoutes::start(local("solo"), registry.clone()).await.unwrap();
    let push = RedisPush::connect(local("logic")).await.unwrap();
    let bob = registry.register(3, 30, 3);
    push_until_heard(&push, &bob.connection, 3, 1).await;

    // Redis keeps nothing on disk here: the restart loses every route and subscription.
    drop(redis);
    let _redis = OwnRedis::start(port).answering().await;
    let woken = eventually(|| bob.connection.take_pending()).await;
    assert!(woken.contains(&(MESSAGE, 0)), "what was published meanwhile is lost: {woken:?}");
    push_until_heard(&push, &bob.connection, 3, 2).await;
    routes.stop().await;
}

/// Two logic nodes count against the same buckets: a burst spread over both is still one
/// burst, and the time to wait is the bucket's.
#[tokio::test]
async fn logic_nodes_share_their_rate_limit_buckets() {
    use missive_proto::internal::{Limiter, TakeRequest};
    use missive_route::RedisLimiter;
    let namespace = namespace();
    let first = RedisLimiter::connect(config(&namespace, "logic-1")).await.unwrap();
    let second = RedisLimiter::connect(config(&namespace, "logic-2")).await.unwrap();
    /// Takes `cost` from `bucket` at `at` ms after the start, and says how long to wait.
    async fn take(node: &RedisLimiter, bucket: &str, cost: u32, refund: bool, at: i64) -> u64 {
        static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        let now_ms = *START.get_or_init(missive_rpc::unix_ms) + at;
        // Buckets named for failed LOGINs back off, up to 10 s past full.
        let backoff_max_ms = if bucket.starts_with("login") { 10_000 } else { 0 };
        let request = TakeRequest {
            bucket: bucket.into(),
            count: 4,
            per_ms: 4_000,
            cost,
            refund,
            now_ms,
            backoff_max_ms,
        };
        let node: &dyn Limiter = node;
        node.take(&Ctx::new(0), request).await.unwrap().wait_ms
    }
    for node in [&first, &second, &first, &second] {
        assert_eq!(take(node, "sends_per_user:1", 1, false, 0).await, 0);
    }
    assert_eq!(take(&first, "sends_per_user:1", 1, false, 0).await, 1_000, "one burst in all");
    assert_eq!(take(&second, "sends_per_user:1", 1, false, 250).await, 750);
    assert_eq!(take(&second, "sends_per_user:2", 4, false, 250).await, 0, "another bucket");
    assert_eq!(take(&first, "sends_per_user:1", 1, true, 250).await, 0, "a refund");
    assert_eq!(take(&second, "sends_per_user:1", 1, false, 250).await, 0, "the refunded one");
    assert_eq!(take(&first, "sends_per_user:1", 1, false, 250).await, 750);
    assert_eq!(take(&first, "sends_per_user:1", 4, true, 9_000).await, 0, "refunds stop at full");
    assert_eq!(take(&second, "sends_per_user:1", 4, false, 9_000).await, 0);
    assert_eq!(take(&second, "sends_per_user:1", 1, false, 9_000).await, 1_000, "four at most");

    // A bucket that backs off: the strike at the end of the burst doubles the wait, the next
    // strike doubles it again, whichever node counts; a refund takes its strike back.
    let failures = "login_failures_per_account:1";
    for node in [&first, &second, &first, &second] {
        assert_eq!(take(node, failures, 1, false, 0).await, 0);
    }
    assert_eq!(take(&first, failures, 1, false, 0).await, 2_000, "twice one refill");
    assert_eq!(take(&second, failures, 1, false, 2_000).await, 0);
    assert_eq!(take(&first, failures, 1, false, 2_000).await, 4_000, "twice again");
    assert_eq!(take(&second, failures, 1, false, 6_000).await, 0);
    assert_eq!(take(&second, failures, 1, true, 6_000).await, 0, "a success");
    assert_eq!(take(&first, failures, 1, false, 6_000).await, 0, "its attempt back");
    assert_eq!(take(&first, failures, 1, false, 6_000).await, 2_000, "one strike again");
    assert_eq!(take(&first, failures, 1, false, 30_000).await, 0, "refilled: forgotten");

    // A Redis that forgot the script (a restart, SCRIPT FLUSH) gets it again at the next call.
    let url = std::env::var("MISSIVE_TEST_REDIS").unwrap();
    let mut admin =
        redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut admin).await.unwrap();
    assert_eq!(take(&first, "sends_per_user:1", 1, false, 9_000).await, 1_000, "the same bucket");
}
