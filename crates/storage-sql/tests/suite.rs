//! The storage suite against real MariaDB and PostgreSQL servers, each store sharded over two
//! databases so that every cross-shard path runs.
//!
//! Servers: `MISSIVE_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`) and
//! `MISSIVE_TEST_POSTGRES` (default `postgres://root@127.0.0.1:5432`); each test creates its
//! own databases (named after the test) and drops them first if a previous run left them.

use missive_proto::internal::{AccountStore, CreateAccountRequest};
use missive_rpc::Ctx;
use missive_storage_sql::{SqlConfig, SqlError, SqlStore};
use missive_storage_suite::{Fixture, storage_suite};
use sqlx::Connection;

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
}

fn server(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}

/// Fresh databases `<prefix>_<test>_<n>` on the server, through its `test` database.
async fn databases(server: &str, prefix: &str, test: &str, count: usize) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&format!("{server}/test"))
        .await
        .unwrap_or_else(|e| panic!("cannot reach {server}: {e}"));
    let mut urls = Vec::new();
    for n in 0..count {
        let name = format!("{prefix}_{test}_{n}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        urls.push(format!("{server}/{name}"));
    }
    urls
}

mod mariadb {
    use super::*;

    pub async fn fixture(test: &str) -> Databases {
        let server = server("MISSIVE_TEST_MYSQL", "mysql://root@127.0.0.1:3306");
        Databases { urls: databases(&server, "ms", test, SHARDS).await }
    }

    storage_suite!(fixture);
}

mod postgres {
    use super::*;

    pub async fn fixture(test: &str) -> Databases {
        let server = server("MISSIVE_TEST_POSTGRES", "postgres://root@127.0.0.1:5432");
        Databases { urls: databases(&server, "ms", test, SHARDS).await }
    }

    storage_suite!(fixture);
}

/// Users land on every shard, and each shard's users are the ones its index names.
#[tokio::test]
async fn accounts_spread_over_the_shards() {
    let store = postgres::fixture("spread").await.open().await;
    let mut per_shard = [0; SHARDS];
    for n in 0..16 {
        let req = CreateAccountRequest { username: format!("user{n}"), ..Default::default() };
        let account = store.create(&Ctx::new(0), req).await.unwrap();
        per_shard[store.shard_of_user(account.user_id) as usize] += 1;
    }
    assert!(per_shard.iter().all(|n| *n > 0), "every shard holds users: {per_shard:?}");
}

/// A shard list that changed after the databases were created is refused, not misread.
#[tokio::test]
async fn a_changed_shard_list_is_refused() {
    let fixture = mariadb::fixture("changed_list").await;
    drop(fixture.open().await);
    let reversed: Vec<String> = fixture.urls.iter().rev().cloned().collect();
    let refused = SqlStore::open(SqlConfig::new(reversed)).await;
    assert!(matches!(refused, Err(SqlError::ShardMismatch { .. })));
    let fewer = SqlStore::open(SqlConfig::new(fixture.urls[..1].to_vec())).await;
    assert!(matches!(fewer, Err(SqlError::ShardMismatch { .. })));
}
