//! The connection to the routing engine that every part of this crate uses: one multiplexed
//! connection to the Redis master, found at a fixed url or asked of Redis Sentinel, and
//! rebuilt when it is lost, stops answering, or turns out to be on a server that is no longer
//! the master (`READONLY`: an old master that came back as a replica).
//!
//! redis's `ConnectionManager` is not enough for a failover: it reconnects to the one address
//! it was built with, and a write refused with `READONLY` leaves it where it is. Here every
//! rebuild starts by asking where the master is now, and commands that find the wrong server
//! drop the connection so that the next one asks again. With Sentinel, a watcher also
//! follows the sentinels' `+switch-master` announcements: a failover that demoted a live
//! master is then followed at once, also by what only reads or publishes (which a replica
//! would serve without a word), and the subscriptions move to the new master.

use crate::RouteError;
use futures_util::StreamExt as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where the routing engine's Redis master is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// One server: `redis://[:password@]host:port[/db]`.
    Url(String),
    /// The master that Redis Sentinel calls `master`, asked of these sentinels (`host:port`,
    /// or `redis://host:port`); any one of them that answers is enough.
    Sentinel { sentinels: Vec<String>, master: String },
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Url(url) => f.write_str(url),
            Engine::Sentinel { sentinels, master } => {
                write!(f, "master {master:?} of the sentinels {}", sentinels.join(","))
            }
        }
    }
}

impl From<String> for Engine {
    fn from(url: String) -> Engine {
        Engine::Url(url)
    }
}

impl From<&str> for Engine {
    fn from(url: &str) -> Engine {
        Engine::Url(url.to_string())
    }
}

/// Redis Sentinel's own port, for a sentinel named without one.
pub const SENTINEL_PORT_DEFAULT: u16 = 26379;

/// A sentinel's address as a url: `host:port` becomes `redis://host:port`, and a bare host
/// gets Sentinel's port.
fn sentinel_url(address: &str) -> String {
    if address.contains("://") {
        return address.to_string();
    }
    // An IPv6 address is bracketed; a port follows the last `]`, or the only `:`.
    let after_host = address.rsplit(']').next().unwrap_or(address);
    match after_host.contains(':') {
        true => format!("redis://{address}"),
        false => format!("redis://{address}:{SENTINEL_PORT_DEFAULT}"),
    }
}

/// The first pause after a failed connection attempt; it doubles after each further failure.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(50);
/// The longest pause between connection attempts. A failover takes seconds (Sentinel's
/// `down-after-milliseconds`, then an election), so attempts stay frequent enough to follow
/// it within a second of its end, and rare enough to cost the sentinels nothing.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(1);

/// Why a connection is dropped and built again, as the metric names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The connection broke or the server does not answer: it may be gone.
    Lost,
    /// The server is not (or no longer) the master: a write was refused there.
    WrongServer,
    /// The sentinels announced a new master.
    Switched,
}

impl Trouble {
    fn label(self) -> &'static str {
        match self {
            Trouble::Lost => "lost",
            Trouble::WrongServer => "not_master",
            Trouble::Switched => "switch_master",
        }
    }
}

/// The master name of a `+switch-master` announcement (`<name> <old ip> <old port> <new ip>
/// <new port>`), if it is one.
fn switched_master(payload: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(payload).ok()?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        [name, _, _, _, _] => Some(name),
        _ => None,
    }
}

/// What a failed command says about the connection it ran on: nothing (the command itself
/// was refused, as `NOSCRIPT` or a wrong type is), or a reason to build it again.
pub(crate) fn trouble(error: &redis::RedisError) -> Option<Trouble> {
    use redis::{ErrorKind, ServerErrorKind};
    match error.kind() {
        // A replica refuses writes; one that lost its master with `replica-serve-stale-data
        // no` refuses everything. Either way the master is elsewhere.
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown) => {
            Some(Trouble::WrongServer)
        }
        _ if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_timeout()
            || error.is_unrecoverable_error() =>
        {
            Some(Trouble::Lost)
        }
        // A script's write refused on a replica comes back as the script's error.
        _ if error.detail().is_some_and(|detail| detail.contains("READONLY")) => {
            Some(Trouble::WrongServer)
        }
        _ => None,
    }
}

/// How long to wait before the next connection attempt, after `failures` in a row.
fn retry_delay(failures: u32) -> Duration {
    RETRY_DELAY_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RETRY_DELAY_MAX)
}

/// Where a connection is made.
enum Source {
    Fixed(redis::Client),
    /// Asked before each connection; its lookups need `&mut`, so one runs at a time.
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

/// The shared connection, if there is one, and the pacing of attempts to make one.
#[derive(Default)]
struct Slot {
    connection: Option<(u64, redis::aio::MultiplexedConnection)>,
    /// Counts the connections made, so that a failure drops only the connection it met.
    generation: u64,
    /// Failed attempts since the last connection was made.
    failures: u32,
    /// No attempt before this, after a failure.
    retry_at: Option<Instant>,
}

/// A command or a pipeline.
pub(crate) trait Request: Sync {
    fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl Request for redis::Cmd {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

impl Request for redis::Pipeline {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

/// The routing engine as one part of a node reaches it.
pub(crate) struct Redis {
    engine: Engine,
    source: Source,
    /// Every command's deadline, its connection's (re)building included.
    timeout: Duration,
    /// Held only to read or swap the connection, never across an `.await`.
    slot: Mutex<Slot>,
    /// One attempt to connect at a time: callers that find no connection wait for it
    /// rather than each opening their own.
    connecting: tokio::sync::Mutex<()>,
    /// Counts the sentinels' announcements of a new master, for the subscriptions to move.
    switches: tokio::sync::watch::Sender<u64>,
    /// Stops the watcher of announcements when this is dropped.
    stop: CancellationToken,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Redis {
    /// Checks the address and connects once, so that a wrong setting fails the start.
    pub(crate) async fn connect(
        engine: Engine,
        timeout: Duration,
    ) -> Result<Arc<Redis>, RouteError> {
        let bad = |source| RouteError::BadAddress { engine: engine.to_string(), source };
        let mut watch = None;
        let source = match &engine {
            Engine::Url(url) => Source::Fixed(redis::Client::open(url.as_str()).map_err(bad)?),
            Engine::Sentinel { sentinels, master } => {
                let urls: Vec<String> = sentinels.iter().map(|s| sentinel_url(s)).collect();
                let clients = urls
                    .iter()
                    .map(|url| redis::Client::open(url.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                watch = Some((clients, master.clone()));
                let client = redis::sentinel::SentinelClient::build(
                    urls,
                    master.clone(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(bad)?;
                Source::Sentinel(tokio::sync::Mutex::new(client))
            }
        };
        let redis = Arc::new(Redis {
            engine,
            source,
            timeout,
            slot: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
            switches: tokio::sync::watch::Sender::new(0),
            stop: CancellationToken::new(),
        });
        if let Some((sentinels, master)) = watch {
            let stop = redis.stop.clone();
            tokio::spawn(watch_switches(Arc::downgrade(&redis), sentinels, master, stop));
        }
        match tokio::time::timeout(timeout, redis.connection()).await {
            Ok(Ok(_)) => Ok(redis),
            Ok(Err(source)) => Err(redis.unreachable(source)),
            Err(_) => Err(RouteError::Timeout { engine: redis.engine.to_string(), timeout }),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes whenever the sentinels announce a new master: a subscription moves to it.
    pub(crate) fn switches(&self) -> tokio::sync::watch::Receiver<u64> {
        self.switches.subscribe()
    }

    /// The sentinels announced a new master: the connection is dropped whatever it is on,
    /// and the next command connects at once.
    fn switched(&self) {
        {
            let mut slot = self.slot.lock().expect("routing engine slot");
            slot.failures = 0;
            slot.retry_at = None;
            if let Some((generation, _)) = slot.connection {
                drop(slot);
                self.drop_connection(generation, Trouble::Switched);
            }
        }
        self.switches.send_modify(|count| *count += 1);
    }

    pub(crate) fn unreachable(&self, source: redis::RedisError) -> RouteError {
        RouteError::Unreachable { engine: self.engine.to_string(), source }
    }

    /// A client of the current master (asked of the sentinels), for a connection of its own
    /// such as a subscription. Bounded by the deadline of a command.
    pub(crate) async fn client(&self) -> Result<redis::Client, RouteError> {
        let resolved = tokio::time::timeout(self.timeout, self.resolve()).await;
        let timeout = self.timeout;
        resolved
            .map_err(|_| RouteError::Timeout { engine: self.engine.to_string(), timeout })?
            .map_err(|source| self.unreachable(source))
    }

    async fn resolve(&self) -> redis::RedisResult<redis::Client> {
        match &self.source {
            Source::Fixed(client) => Ok(client.clone()),
            // `async_get_client` checks with ROLE that the server it names is the master.
            Source::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }

    /// Runs `request` within the deadline. A connection that failed is dropped, so that the
    /// next command connects again (to wherever the master is then); a command refused
    /// because the server is a replica was not run, so it is run once more on the new master.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        request: &impl Request,
    ) -> Result<T, RouteError> {
        let mut in_use = None;
        match tokio::time::timeout(self.timeout, self.attempt(request, &mut in_use)).await {
            Ok(result) => result,
            Err(_) => {
                // A server that holds a command this long may be gone without a word.
                if let Some(generation) = in_use {
                    self.drop_connection(generation, Trouble::Lost);
                }
                Err(RouteError::Timeout { engine: self.engine.to_string(), timeout: self.timeout })
            }
        }
    }

    async fn attempt<T: redis::FromRedisValue>(
        &self,
        request: &impl Request,
        in_use: &mut Option<u64>,
    ) -> Result<T, RouteError> {
        let mut retried = false;
        loop {
            let (generation, mut connection) =
                self.connection().await.map_err(|source| self.unreachable(source))?;
            *in_use = Some(generation);
            let error = match request.run(&mut connection).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            *in_use = None;
            let trouble = trouble(&error);
            if let Some(trouble) = trouble {
                self.drop_connection(generation, trouble);
            }
            if trouble == Some(Trouble::WrongServer) && !retried {
                retried = true;
                continue;
            }
            return Err(RouteError::Command { engine: self.engine.to_string(), source: error });
        }
    }

    /// The shared connection, made first if there is none (unless the last attempt failed
    /// too recently).
    async fn connection(&self) -> redis::RedisResult<(u64, redis::aio::MultiplexedConnection)> {
        if let Some(found) = self.current()? {
            return Ok(found);
        }
        // Holding this across the attempt is the point: one attempt at a time.
        let _turn = self.connecting.lock().await;
        if let Some(found) = self.current()? {
            return Ok(found);
        }
        let made = async {
            let client = self.resolve().await?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout));
            client.get_multiplexed_async_connection_with_config(&config).await
        }
        .await;
        let mut slot = self.slot.lock().expect("routing engine slot");
        match made {
            Ok(connection) => {
                slot.generation += 1;
                slot.failures = 0;
                slot.retry_at = None;
                slot.connection = Some((slot.generation, connection.clone()));
                Ok((slot.generation, connection))
            }
            Err(error) => {
                slot.failures = slot.failures.saturating_add(1);
                slot.retry_at = Some(Instant::now() + retry_delay(slot.failures));
                metrics::counter!("missive_route_connect_errors_total").increment(1);
                tracing::warn!(engine = %self.engine, %error, "connecting to the routing engine failed");
                Err(error)
            }
        }
    }

    /// The connection, if there is one; an error while attempts are paused.
    fn current(&self) -> redis::RedisResult<Option<(u64, redis::aio::MultiplexedConnection)>> {
        let slot = self.slot.lock().expect("routing engine slot");
        if let Some(connection) = &slot.connection {
            return Ok(Some(connection.clone()));
        }
        match slot.retry_at {
            Some(at) if Instant::now() < at => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected to the routing engine; the next attempt is soon",
            ))),
            _ => Ok(None),
        }
    }

    /// Drops connection `generation` if it is still the shared one (other commands may have
    /// met the same failure, and a newer connection must not be dropped for it).
    fn drop_connection(&self, generation: u64, trouble: Trouble) {
        let mut slot = self.slot.lock().expect("routing engine slot");
        if slot.connection.as_ref().is_some_and(|(current, _)| *current == generation) {
            slot.connection = None;
            drop(slot);
            metrics::counter!("missive_route_reconnects_total", "cause" => trouble.label())
                .increment(1);
            tracing::warn!(engine = %self.engine, cause = trouble.label(), "routing engine connection dropped; reconnecting");
        }
    }
}

/// How often the watcher checks that its sentinel still answers.
const WATCH_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Follows the sentinels' `+switch-master` announcements of `master` (on one sentinel at a
/// time, the next when it is lost) until `stop`, telling `redis` of each. An announcement
/// missed (every sentinel unreachable, or a failover that happened meanwhile) costs only
/// speed: a connection to a gone or demoted master is still dropped by the commands that
/// fail on it.
async fn watch_switches(
    redis: Weak<Redis>,
    sentinels: Vec<redis::Client>,
    master: String,
    stop: CancellationToken,
) {
    let Some(timeout) = redis.upgrade().map(|redis| redis.timeout) else { return };
    let mut failures = 0;
    for sentinel in sentinels.iter().cycle() {
        let watched = async {
            let pubsub = within(timeout, sentinel.get_async_pubsub()).await?;
            let (mut sink, mut stream) = pubsub.split();
            within(timeout, sink.subscribe("+switch-master")).await?;
            failures = 0;
            let mut ping =
                tokio::time::interval_at(Instant::now() + WATCH_PING_INTERVAL, WATCH_PING_INTERVAL);
            loop {
                tokio::select! {
                    message = stream.next() => {
                        let Some(message) = message else {
                            return Err(redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "the sentinel closed the subscription",
                            )));
                        };
                        if switched_master(message.get_payload_bytes()) != Some(master.as_str()) {
                            continue;
                        }
                        let Some(redis) = redis.upgrade() else { return Ok(()) };
                        tracing::info!(%master, "the sentinels announced a new master");
                        redis.switched();
                    }
                    _ = ping.tick() => {
                        within(timeout, sink.ping::<redis::Value>()).await?;
                    }
                }
            }
        };
        let error = tokio::select! {
            result = watched => match result {
                Ok(()) => return,
                Err(error) => error,
            },
            () = stop.cancelled() => return,
        };
        failures += 1;
        tracing::warn!(%master, %error, "lost the sentinels' announcements; following another");
        tokio::select! {
            () = tokio::time::sleep(retry_delay(failures)) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn within<T>(
    timeout: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "no answer in time"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_are_named_by_host_and_port() {
        let check = |address: &str, expect: &str| assert_eq!(sentinel_url(address), expect);
        check("10.0.0.1:26380", "redis://10.0.0.1:26380");
        check("sentinel-a", "redis://sentinel-a:26379");
        check("[::1]:5000", "redis://[::1]:5000");
        check("[::1]", "redis://[::1]:26379");
        check("redis://s:1", "redis://s:1");
    }

    #[test]
    fn errors_say_whether_the_connection_is_to_be_built_again() {
        use redis::{ErrorKind, ServerErrorKind};
        let check = |error: redis::RedisError, expect: Option<Trouble>| {
            assert_eq!(trouble(&error), expect, "{error}");
        };
        let server = |kind: ServerErrorKind, text: &'static str| {
            redis::RedisError::from((ErrorKind::Server(kind), text))
        };
        check(server(ServerErrorKind::ReadOnly, "replica"), Some(Trouble::WrongServer));
        check(server(ServerErrorKind::MasterDown, "link down"), Some(Trouble::WrongServer));
        check(server(ServerErrorKind::NoScript, "load it"), None);
        check(server(ServerErrorKind::ResponseError, "WRONGTYPE"), None);
        let io = |kind: std::io::ErrorKind| redis::RedisError::from(std::io::Error::from(kind));
        check(io(std::io::ErrorKind::ConnectionReset), Some(Trouble::Lost));
        check(io(std::io::ErrorKind::BrokenPipe), Some(Trouble::Lost));
        check(io(std::io::ErrorKind::TimedOut), Some(Trouble::Lost));
        check(redis::RedisError::from((ErrorKind::Io, "dropped")), Some(Trouble::Lost));
        let script = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "script",
            "READONLY You can't write against a read only replica.".to_string(),
        ));
        check(script, Some(Trouble::WrongServer));
    }

    #[test]
    fn switch_announcements_name_their_master() {
        assert_eq!(switched_master(b"routing 10.0.0.1 6379 10.0.0.2 6380"), Some("routing"));
        assert_eq!(switched_master(b"routing 10.0.0.1 6379"), None);
        assert_eq!(switched_master(b"\xff 1 2 3 4"), None);
    }

    #[test]
    fn attempts_back_off_to_a_second() {
        let delays: Vec<u128> = (1..=8).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(retry_delay(u32::MAX), RETRY_DELAY_MAX);
    }
}
