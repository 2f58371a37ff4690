//! The storage suite against the embedded backend served over the RPC framework's remote
//! transport, as a split deployment wires it: every call crosses a loopback gRPC connection
//! through the generated `*Remote` clients and `*_routes` servers, so what the stores promise
//! must survive encoding, the call context in metadata, and status codes on the wire.

use missive_proto::internal::Storage;
use missive_rpc::remote::{Client, NodeKey};
use missive_storage_embedded::{EmbeddedStore, FileMediaStore, StoreConfig};
use missive_storage_suite::{Fixture, storage_suite};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct OverRpc {
    dir: tempfile::TempDir,
    /// The store node of the last `open`: stopped before the next opens the same files, as a
    /// restarted store node would be.
    serving: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

#[async_trait::async_trait]
impl Fixture for OverRpc {
    type Store = Storage;

    async fn open(&self) -> Storage {
        let previous = self.serving.lock().unwrap().take();
        if let Some((shutdown, served)) = previous {
            shutdown.cancel();
            served.await.expect("the store node stops");
        }
        let store = Arc::new(EmbeddedStore::open(StoreConfig::new(self.dir.path())).unwrap());
        let media = Arc::new(FileMediaStore::open(self.dir.path()).unwrap());
        let local = Storage {
            account_store: store.clone(),
            contact_store: store.clone(),
            message_store: store.clone(),
            group_store: store.clone(),
            media_store: media,
            seq_store: store.clone(),
            ops_store: store,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let served = tokio::spawn({
            let (routes, shutdown) = (local.routes(), shutdown.clone());
            async move { routes.serve(listener, node_key(), None, shutdown).await.expect("serving") }
        });
        *self.serving.lock().unwrap() = Some((shutdown, served));
        let reached = Storage::reach(None, |service| {
            Client::new(service, std::slice::from_ref(&url), &node_key(), &Default::default())
                .map(Some)
        });
        reached.expect("a client of every service")
    }

    /// On the file the store node keeps open, as an upgrade would have left it.
    async fn forget_search_terms(&self) {
        let conn = rusqlite::Connection::open(self.dir.path().join("missive.db")).unwrap();
        for statement in missive_storage_suite::FORGET_SEARCH_TERMS {
            conn.execute(statement, []).expect("forgetting search terms");
        }
    }
}

/// The key the store node and its client share, as a deployment's nodes do.
fn node_key() -> NodeKey {
    NodeKey::from_secret(b"the suite's deployment")
}

async fn fixture(_test: &str) -> OverRpc {
    let dir = tempfile::tempdir().expect("temporary directory");
    OverRpc { dir, serving: Mutex::new(None) }
}

storage_suite!(fixture);
