//! The storage suite against real MariaDB and PostgreSQL servers, each store sharded over two
//! databases so that every cross-shard path runs.
//!
//! Each test gets its own databases, named after it (`missive_storage_suite::fresh_databases`
//! says which servers).

use missive_proto::internal::{AccountStore, CreateAccountRequest, UserRef};
use missive_rpc::Ctx;
use missive_storage_sql::{SqlConfig, SqlError, SqlStore};
use missive_storage_suite::{DatabaseServer, Fixture, fresh_databases, storage_suite};

const SHARDS: usize = 2;

struct Databases {
    urls: Vec<String>,
}

#[async_trait::async_trait]
impl Fixture for Databases {
    type Store = SqlStore;

    async fn open(&self) -> SqlStore {
        SqlStore::open(SqlConfig::new(self.urls.clone())).await.expect("opening the shards")
    }

    async fn forget_search_terms(&self) {
        use sqlx::Connection;
        for url in &self.urls {
            let mut conn = sqlx::AnyConnection::connect(url).await.expect("a shard");
            for statement in missive_storage_suite::FORGET_SEARCH_TERMS {
                sqlx::raw_sql(statement).execute(&mut conn).await.expect("forgetting search terms");
            }
        }
    }
}

mod mariadb {
    use super::*;

    pub async fn fixture(test: &str) -> Databases {
        Databases {
            urls: fresh_databases(DatabaseServer::MariaDb, &format!("ms_{test}"), SHARDS).await,
        }
    }

    storage_suite!(fixture);
}

mod postgres {
    use super::*;

    pub async fn fixture(test: &str) -> Databases {
        Databases {
            urls: fresh_databases(DatabaseServer::Postgres, &format!("ms_{test}"), SHARDS).await,
        }
    }

    storage_suite!(fixture);
}

/// Users land on every database, and each database's users are the ones the map names.
#[tokio::test]
async fn accounts_spread_over_the_databases() {
    let store = postgres::fixture("spread").await.open().await;
    let mut per_database = [0; SHARDS];
    for n in 0..16 {
        let req = CreateAccountRequest { username: format!("user{n}"), ..Default::default() };
        let account = store.create(&Ctx::new(0), req).await.unwrap();
        per_database[store.database_of_user(account.user_id) as usize] += 1;
    }
    assert!(per_database.iter().all(|n| *n > 0), "every database holds users: {per_database:?}");
}

/// A url list that changed before the map was made is refused, not misread; once the map
/// exists, the directory alone names every database.
#[tokio::test]
async fn a_changed_list_is_refused_and_the_map_names_the_databases() {
    let fixture = mariadb::fixture("changed_list").await;
    let store = fixture.open().await;
    let req = CreateAccountRequest { username: "somebody".into(), ..Default::default() };
    let account = store.create(&Ctx::new(0), req).await.unwrap();
    drop(store);
    let reversed: Vec<String> = fixture.urls.iter().rev().cloned().collect();
    let refused = SqlStore::open(SqlConfig::new(reversed)).await;
    assert!(matches!(refused, Err(SqlError::ShardMismatch { .. })));
    let directory = SqlStore::open(SqlConfig::new(fixture.urls[..1].to_vec())).await.unwrap();
    assert_eq!(directory.database_count(), SHARDS as u64);
    let found = directory.get_by_id(&Ctx::new(0), UserRef { user_id: account.user_id }).await;
    assert_eq!(found.unwrap().username, "somebody");
}
