//! The raw-TCP long link.

use crate::frames::{FrameReader, FrameWriter};
use crate::link::{self, LinkShared};
use crate::serve::{AddressSlot, PerAddress, handshake};
use crate::{AccessConfig, Dispatcher, Registry};
use missive_rpc::Sparse;
use missive_tls::TlsAcceptor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A long link's places: one under the node's cap, one under its address's.
pub(crate) type Slot = (tokio::sync::OwnedSemaphorePermit, AddressSlot);

/// What one node's long links share, over every listener.
#[derive(Clone)]
pub struct LinkServer {
    shared: Arc<LinkShared>,
    /// Bounds the connections held at once over all long-link transports.
    slots: Arc<Semaphore>,
    /// Bounds the connections held at once from one client address.
    addresses: Arc<PerAddress>,
    /// When a refusal was last logged.
    told: Arc<Sparse>,
    /// Connections refused at the limit; shown from 0 on, so that alerts on it see a series.
    refused: metrics::Counter,
    tasks: TaskTracker,
}

impl LinkServer {
    pub fn new(dispatcher: Arc<Dispatcher>, registry: Arc<Registry>, config: AccessConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.connections_max));
        LinkServer {
            shared: Arc::new(LinkShared::new(dispatcher, registry, config)),
            slots,
            addresses: Arc::default(),
            told: Arc::default(),
            refused: metrics::counter!("missive_connections_refused_total"),
            tasks: TaskTracker::new(),
        }
    }

    pub fn config(&self) -> &AccessConfig {
        &self.shared.config
    }

    pub(crate) fn shared(&self) -> &Arc<LinkShared> {
        &self.shared
    }

    /// A place for a connection from `peer` under both limits; none (counted, and logged now
    /// and then) at either.
    pub(crate) fn try_slot(&self, peer: SocketAddr) -> Option<Slot> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.refused.increment(1);
            if self.told.due() {
                tracing::warn!(%peer, "long-link connection limit reached; refusing");
            }
            return None;
        };
        let max = self.shared.config.connections_per_address_max;
        let Some(address) = self.addresses.take(peer.ip(), max) else {
            self.refused.increment(1);
            if self.told.due() {
                tracing::warn!(%peer, "long links per address reached; refusing");
            }
            return None;
        };
        Some((permit, address))
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Waits (up to the drain timeout) for every connection to finish after shutdown.
    pub async fn drain(&self) {
        self.tasks.close();
        if tokio::time::timeout(self.shared.config.drain_timeout, self.tasks.wait()).await.is_err()
        {
            tracing::warn!(left = self.tasks.len(), "connections still open after drain timeout");
        }
    }

    /// Accepts TCP long links, over TLS when `tls` is given, until `shutdown` fires; each
    /// connection closes on it too. A TLS handshake must end within the time to authenticate.
    pub async fn run_tcp(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) {
        while let Some((stream, peer)) = crate::serve::accept(&listener, "tcp", &shutdown).await {
            let Some(slot) = self.try_slot(peer) else {
                crate::serve::reset(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let (shutdown, tls) = (shutdown.clone(), tls.clone());
            let opened = (Some(peer.ip()), tokio::time::Instant::now());
            self.tasks.spawn(async move {
                let _slot = slot;
                let Some(tls) = tls else {
                    let (read, write) = stream.into_split();
                    return serve_bytes(shared, opened, read, write, shutdown).await;
                };
                // The handshake comes out of the time to authenticate, not on top of it.
                let timeout = shared.config.auth_timeout;
                let Some(stream) = handshake(&tls, stream, peer, timeout, "tcp").await else {
                    return;
                };
                let (read, write) = tokio::io::split(stream);
                serve_bytes(shared, opened, read, write, shutdown).await;
            });
        }
    }
}

/// Serves one long link over a byte stream's halves (a TCP socket's, or an in-memory pipe's
/// in tests), frames cut by [`FrameReader`]; `opened` is the peer and when it connected.
pub(crate) async fn serve_bytes<R, W>(
    shared: Arc<LinkShared>,
    opened: (Option<std::net::IpAddr>, tokio::time::Instant),
    read: R,
    write: W,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let max = shared.config.frame_body_bytes_max;
    let reader = FrameReader::new(read, max);
    let writer = FrameWriter::new(write);
    link::serve(shared, "tcp", opened, reader, writer, shutdown).await;
}
