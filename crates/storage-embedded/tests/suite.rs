//! The storage suite against the embedded backend.

use missive_storage_embedded::{EmbeddedStore, StoreConfig};
use missive_storage_suite::{Fixture, storage_suite};

struct Embedded {
    dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Fixture for Embedded {
    type Store = EmbeddedStore;

    async fn open(&self) -> EmbeddedStore {
        EmbeddedStore::open(StoreConfig::new(self.dir.path())).expect("opening the store")
    }

    async fn forget_search_terms(&self) {
        let conn = rusqlite::Connection::open(self.dir.path().join("missive.db")).unwrap();
        for statement in missive_storage_suite::FORGET_SEARCH_TERMS {
            conn.execute(statement, []).expect("forgetting search terms");
        }
    }
}

async fn fixture(_test: &str) -> Embedded {
    Embedded { dir: tempfile::tempdir().expect("temporary directory") }
}

storage_suite!(fixture);
