//! The storage test suite: the behaviour every backend of the storage traits must show.
//!
//! Each backend runs the same tests unchanged (Quickwit's metastore suite does the same): it
//! implements [`Fixture`] (how to open its store on fresh, empty storage, and how to open that
//! same storage again) and invokes [`storage_suite!`] in an integration test, which expands to
//! one `#[tokio::test]` per test below. The tests know nothing of the backend: they do not
//! assume how ids are assigned or how users spread over shards.
//!
//! This crate owns the tests only; it holds no backend and is never linked into the server.

pub mod replicated;
pub mod tests;

use missive_proto::internal::{
    AccountStore, ContactStore, GroupStore, MessageStore, OpsStore, SeqStore,
};

/// Every data-access service of one backend (media live in files, with tests of their own).
pub trait Stores:
    AccountStore + ContactStore + MessageStore + GroupStore + SeqStore + OpsStore
{
}

impl<T> Stores for T where
    T: AccountStore + ContactStore + MessageStore + GroupStore + SeqStore + OpsStore
{
}

/// Fresh, empty storage for one test, which it may open more than once (a reopen is how the
/// tests check what survives a restart). A test drops one store before it opens the next.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    type Store: Stores;

    async fn open(&self) -> Self::Store;

    /// Makes the stored messages look as they do after an upgrade from a store that had no
    /// search: no terms, none in the full-text index, the backfill still to do. The test has
    /// dropped its store. Every backend runs [`FORGET_SEARCH_TERMS`] on each database.
    async fn forget_search_terms(&self);
}

/// What [`Fixture::forget_search_terms`] runs on each database (the same on every backend).
pub const FORGET_SEARCH_TERMS: [&str; 2] = [
    "UPDATE messages SET terms = ''",
    "UPDATE search_backfill SET next_id = 0,
     upto = (SELECT COALESCE(MAX(message_id), 0) FROM messages)",
];

/// The url of a server this test run started for itself, from `variable`. Tests never fall
/// back to a server of the machine's: its data is not theirs to drop, and a machine without
/// one would pass in silence what it cannot test.
pub fn test_server_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| panic!("{variable} is not set: scripts/test starts private servers and sets it (scripts/test-services)"))
}

/// A database server the SQL backends' tests run against.
#[derive(Debug, Clone, Copy)]
pub enum DatabaseServer {
    /// `MISSIVE_TEST_MYSQL`, e.g. `mysql://root@127.0.0.1:<port>`.
    MariaDb,
    /// `MISSIVE_TEST_POSTGRES`, e.g. `postgres://root@127.0.0.1:<port>`.
    Postgres,
}

impl DatabaseServer {
    fn url(self) -> String {
        test_server_url(match self {
            DatabaseServer::MariaDb => "MISSIVE_TEST_MYSQL",
            DatabaseServer::Postgres => "MISSIVE_TEST_POSTGRES",
        })
    }
}

/// `count` empty databases `<name>_<n>` on `server` (dropped first if a previous run left
/// them), created through its `test` database; returns their urls, in order.
pub async fn fresh_databases(server: DatabaseServer, name: &str, count: usize) -> Vec<String> {
    use sqlx::Connection;
    let server = server.url();
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&format!("{server}/test"))
        .await
        .unwrap_or_else(|e| panic!("cannot reach {server}: {e}"));
    let mut urls = Vec::with_capacity(count);
    for n in 0..count {
        let database = format!("{name}_{n}");
        for statement in
            [format!("DROP DATABASE IF EXISTS {database}"), format!("CREATE DATABASE {database}")]
        {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
        }
        urls.push(format!("{server}/{database}"));
    }
    urls
}

/// Expands to one `#[tokio::test]` per suite test. `$fixture` is an async function taking the
/// test's name (unique, at most 48 characters, `[a-z_]`) and returning a [`Fixture`].
#[macro_export]
macro_rules! storage_suite {
    ($fixture:path) => {
        $crate::storage_suite!(@tests $fixture;
            usernames_are_unique,
            accounts_are_found_by_id_and_name,
            sessions_are_found_by_token_hash_until_revoked,
            a_retried_append_returns_the_first_message,
            inbox_pages_in_version_order,
            messages_reach_users_on_every_shard,
            a_stale_inbox_version_is_refused,
            a_stale_nickname_version_is_refused,
            presence_settings_and_last_seen,
            search_finds_words_in_any_script_newest_first,
            messages_from_before_search_are_backfilled,
            pushers_by_endpoint_and_device,
            collect_waits_for_every_device_and_the_cutoff,
            seq_bounds_move_only_from_the_expected_bound,
            contact_changes_start_empty,
            contact_entries_replace_and_sync_by_version,
            an_entry_written_after_a_lookup_found_none_is_found,
            a_stale_contact_version_is_refused,
            groups_keep_members_and_fence_revisions,
            messages_keep_their_extra_fields_and_can_be_replaced,
            racing_changes_of_one_message_all_land,
            accounts_are_listed_searched_and_disabled,
            periods_add_up_samples_activity_and_registrations,
            audit_entries_page_newest_first,
            concurrent_appends_land_once_and_in_order,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $fixture(stringify!($name)).await;
                $crate::tests::$name(&fixture).await;
            }
        )*
    };
}
