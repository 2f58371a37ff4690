//! Serves HTTP connections (the short link, the WebSocket upgrade, the admin address) under
//! limits a stranger cannot stretch: connections held at once, connections per client
//! address, and the time a request's head may take to arrive, which is also how long a
//! kept-alive connection may sit idle between requests. Past a cap a connection is accepted
//! and closed at once, without reading from it. With TLS, the handshake must end within the
//! same time as a request's head.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use missive_rpc::Sparse;
use missive_tls::TlsAcceptor;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The listener's name in metrics and logs (`http`, `admin`).
    pub name: &'static str,
    /// Connections held at once.
    pub connections_max: usize,
    /// Connections held at once from one client address.
    pub connections_per_address_max: usize,
    /// A request's head must arrive within this; a kept-alive connection idle this long
    /// between requests is closed.
    pub header_timeout: Duration,
}

/// What the limits per client address count by: an IPv4 address (an IPv4-mapped IPv6 one as
/// IPv4), and for IPv6 the address's /64, which one host or subscriber commonly holds whole:
/// counting each of its 2^64 addresses apart would let one host through every such limit.
pub fn client_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Connections per client network ([`client_network`]), each counted while its
/// [`AddressSlot`] lives.
#[derive(Default)]
pub(crate) struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

pub(crate) struct AddressSlot {
    table: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    pub(crate) fn take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<AddressSlot> {
        let address = client_network(address);
        let mut table = self.0.lock().expect("address table");
        let held = table.entry(address).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(AddressSlot { table: self.clone(), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().expect("address table");
        if let Some(held) = table.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                table.remove(&self.address);
            }
        }
    }
}

/// Serves `router` on `listener` under `limits`, over TLS when `tls` is given, until
/// `shutdown`, then lets each connection finish its request and returns when all have
/// closed. Handlers may ask for the peer's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let addresses = Arc::new(PerAddress::default());
    let told = Sparse::default();
    let connections = TaskTracker::new();
    let refused =
        metrics::counter!("missive_http_connections_refused_total", "listener" => limits.name);
    while let Some((stream, peer)) = accept(&listener, limits.name, &shutdown).await {
        let Some(slot) = admit(&slots, &addresses, &limits, peer, &told) else {
            refused.increment(1);
            reset(stream);
            continue;
        };
        let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        let (shutdown, timeout, tls) = (shutdown.clone(), limits.header_timeout, tls.clone());
        let name = limits.name;
        connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let Some(tls) = tls else {
                return serve_connection(stream, service, peer, timeout, shutdown).await;
            };
            if let Some(stream) = handshake(&tls, stream, peer, timeout, name).await {
                serve_connection(stream, service, peer, timeout, shutdown).await;
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The TLS session of a new connection, or none (logged) when the peer does not complete a
/// handshake within `timeout`.
pub(crate) async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    listener: &'static str,
) -> Option<missive_tls::server::TlsStream<TcpStream>> {
    let error = match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out".to_string(),
    };
    tracing::debug!(listener, %peer, %error, "tls handshake failed");
    metrics::counter!("missive_tls_handshakes_failed_total", "listener" => listener).increment(1);
    None
}

/// HTTP/1.1 over one connection until the peer leaves, a head is late, or `shutdown`
/// (which lets the request in progress finish).
async fn serve_connection<S>(
    stream: S,
    service: axum::Router,
    peer: SocketAddr,
    timeout: Duration,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeout);
    let hyper_service = TowerToHyperService::new(service);
    let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
    let mut connection = std::pin::pin!(connection.with_upgrades());
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "http connection ended");
            }
            return;
        }
        () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// The next connection of `listener` (named `name` in logs), or `None` once `shutdown`
/// fires. A failed accept (out of descriptors and the like) pauses rather than spins.
pub(crate) async fn accept(
    listener: &TcpListener,
    name: &'static str,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(error) => {
                tracing::warn!(listener = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A place for a connection from `peer`, or none past a cap (logged now and then).
/// Closes a refused connection with a reset: no FIN exchange, and no TIME_WAIT socket left
/// behind for each of a flood's connections (a flood of tens of thousands a second would
/// otherwise fill the kernel's table of them).
pub(crate) fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

fn admit(
    slots: &Arc<Semaphore>,
    addresses: &Arc<PerAddress>,
    limits: &HttpLimits,
    peer: SocketAddr,
    told: &Sparse,
) -> Option<(OwnedSemaphorePermit, AddressSlot)> {
    let name = limits.name;
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        if told.due() {
            tracing::warn!(listener = name, %peer, "http connection limit reached; refusing");
        }
        return None;
    };
    let Some(address) = addresses.take(peer.ip(), limits.connections_per_address_max) else {
        if told.due() {
            tracing::warn!(listener = name, %peer, "http connections per address reached; refusing");
        }
        return None;
    };
    Some((permit, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let network = |text: &str| client_network(text.parse().unwrap()).to_string();
        assert_eq!(network("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(network("2001:db8:1:2::1"), "2001:db8:1:2::");
        assert_eq!(network("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(network("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(network("192.0.2.7"), "192.0.2.7");
        let table = Arc::new(PerAddress::default());
        let one = table.take("2001:db8::1".parse().unwrap(), 1).unwrap();
        assert!(table.take("2001:db8::2".parse().unwrap(), 1).is_none(), "the same /64");
        drop(one);
    }

    #[test]
    fn an_address_gets_its_places_back_when_its_connections_close() {
        let table = Arc::new(PerAddress::default());
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.take(here, 2).unwrap();
        let second = table.take(here, 2).unwrap();
        assert!(table.take(here, 2).is_none(), "a third from the same address");
        let other = table.take(there, 2).expect("another address is not held up");
        drop(first);
        let again = table.take(here, 2).expect("a place freed is a place taken again");
        drop((second, other, again));
        assert!(table.0.lock().unwrap().is_empty(), "nothing kept for gone addresses");
    }
}
