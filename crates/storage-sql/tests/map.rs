//! The shard map against real MariaDB and PostgreSQL servers: a deployment made before
//! logical shards upgraded in place, and the databases turning away writes of a stale map.

use missive_proto::client::Message;
use missive_proto::internal::{
    AccountStore, AppendRequest, CreateAccountRequest, InboxEntry, InboxQuery, MessageStore,
    TokenHashRef, UpdateNicknameRequest, UserRef, UsernameRef,
};
use missive_rpc::{Ctx, stable_hash};
use missive_storage_sql::{SqlConfig, SqlStore};
use missive_storage_suite::{DatabaseServer, fresh_databases};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};
use std::time::Duration;

const DATABASES: u64 = 2;

async fn connect(url: &str) -> AnyConnection {
    AnyConnection::connect(url).await.expect("a database")
}

async fn run(url: &str, statements: &[&str]) {
    let mut conn = connect(url).await;
    for statement in statements {
        let sql = sqlx::raw_sql(AssertSqlSafe(statement.to_string()));
        sql.execute(&mut conn).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn count(url: &str, query: &str) -> i64 {
    let mut conn = connect(url).await;
    let row = sqlx::query(AssertSqlSafe(query.to_string())).fetch_one(&mut conn).await;
    row.expect(query).try_get::<i64, _>(0).unwrap()
}

/// Usernames the hash places on `shard` of `of`.
fn names_on(shard: u64, of: u64, prefix: String) -> impl Iterator<Item = String> {
    (0..)
        .map(move |n| format!("{prefix}{n}"))
        .filter(move |n| stable_hash(n.as_bytes()) % of == shard)
}

/// Turns freshly made databases back into a deployment of the list from before logical
/// shards: no map, no logical shards, legacy counters at 6, and per database five users
/// `local × 2 + index` (local 1..=5), each with a device and a token placed by its hash.
async fn make_legacy(urls: &[String]) -> Vec<(u64, String, Vec<u8>)> {
    drop(SqlStore::open(SqlConfig::new(urls.to_vec())).await.expect("making the schema"));
    run(
        &urls[0],
        &["DELETE FROM shard_map_meta", "DELETE FROM shard_map", "DELETE FROM shard_databases"],
    )
    .await;
    let mut users = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        run(
            url,
            &[
                "DELETE FROM logical_shards",
                "DELETE FROM counters WHERE name LIKE '%:%'",
                "UPDATE counters SET next_value = 6",
            ],
        )
        .await;
        let mut conn = connect(url).await;
        let names = names_on(index as u64, DATABASES, format!("legacy{index}_"));
        let tokens = (0u32..)
            .map(|n| format!("token{n}").into_bytes())
            .filter(|t| stable_hash(t) % DATABASES == index as u64);
        for ((local, name), token) in (1..=5u64).zip(names).zip(tokens) {
            let user_id = local * DATABASES + index as u64;
            sqlx::query(AssertSqlSafe("INSERT INTO accounts (user_id, username, nickname, password_hash, created_at_ms) VALUES (?, ?, ?, '', 0)".replace_placeholders(url)))
                .bind(user_id as i64)
                .bind(&name)
                .bind(&name)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(AssertSqlSafe("INSERT INTO sessions (user_id, device_id, device_name, created_at_ms) VALUES (?, ?, 'old', 0)".replace_placeholders(url)))
                .bind(user_id as i64)
                .bind(user_id as i64)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(AssertSqlSafe(
                "INSERT INTO session_tokens (token_hash, user_id, device_id) VALUES (?, ?, ?)"
                    .replace_placeholders(url),
            ))
            .bind(token.clone())
            .bind(user_id as i64)
            .bind(user_id as i64)
            .execute(&mut conn)
            .await
            .unwrap();
            users.push((user_id, name, token));
        }
    }
    users
}

/// `?` placeholders as the url's database wants them.
trait Placeholders {
    fn replace_placeholders(&self, url: &str) -> String;
}

impl Placeholders for str {
    fn replace_placeholders(&self, url: &str) -> String {
        if !url.starts_with("postgres") {
            return self.to_string();
        }
        let mut n = 0;
        self.chars()
            .map(|c| match c {
                '?' => {
                    n += 1;
                    format!("${n}")
                }
                c => c.to_string(),
            })
            .collect()
    }
}

async fn upgrade_in_place(server: DatabaseServer, name: &str) {
    let urls = fresh_databases(server, name, DATABASES as usize).await;
    let legacy = make_legacy(&urls).await;
    let store = SqlStore::open(SqlConfig::new(urls.clone())).await.expect("making the map");
    let map = store.shard_map();
    assert_eq!(map.logical_shards, 1024);
    let ctx = Ctx::new(0);
    for (user_id, name, token) in &legacy {
        let by_id = store.get_by_id(&ctx, UserRef { user_id: *user_id }).await.unwrap();
        assert_eq!(&by_id.username, name);
        let by_name = store.get_by_name(&ctx, UsernameRef { username: name.clone() }).await;
        assert_eq!(by_name.unwrap().user_id, *user_id);
        let session = store.get_session(&ctx, TokenHashRef { token_hash: token.clone() }).await;
        assert_eq!(session.unwrap().user_id, *user_id);
        assert_eq!(store.database_of_user(*user_id), user_id % DATABASES);
    }
    for url in &urls {
        assert_eq!(count(url, "SELECT COUNT(*) FROM session_tokens WHERE shard = -1").await, 0);
    }
    let mut ids: Vec<u64> = legacy.iter().map(|(id, ..)| *id).collect();
    for n in 0..40 {
        let req = CreateAccountRequest { username: format!("new{n}"), ..Default::default() };
        let account = store.create(&ctx, req).await.unwrap();
        assert!(account.user_id > 11, "above every legacy id: {}", account.user_id);
        ids.push(account.user_id);
        let found = store.get_by_name(&ctx, UsernameRef { username: format!("new{n}") }).await;
        assert_eq!(found.unwrap().user_id, account.user_id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), legacy.len() + 40, "no id minted twice");
}

#[tokio::test]
async fn a_deployment_from_before_logical_shards_upgrades_in_place_on_mariadb() {
    upgrade_in_place(DatabaseServer::MariaDb, "mm_upgrade").await;
}

#[tokio::test]
async fn a_deployment_from_before_logical_shards_upgrades_in_place_on_postgres() {
    upgrade_in_place(DatabaseServer::Postgres, "mm_upgrade").await;
}

/// Moves logical shard `shard` to database `to` as a finished move leaves it, by hand: held
/// there (with its counters), gone from `from`, and the map saying so under a new version.
async fn flip(urls: &[String], shard: u64, from: usize, to: usize) {
    run(&urls[from], &[&format!("UPDATE logical_shards SET state = 3 WHERE shard = {shard}")])
        .await;
    run(
        &urls[to],
        &[
            &format!("DELETE FROM logical_shards WHERE shard = {shard}"),
            &format!("INSERT INTO logical_shards (shard, state) VALUES ({shard}, 0)"),
            &format!("DELETE FROM counters WHERE name LIKE '%:{shard}'"),
            &format!(
                "INSERT INTO counters (name, next_value) VALUES ('user:{shard}', {n}), \
             ('device:{shard}', {n}), ('message:{shard}', {n}), ('group:{shard}', {n})",
                n = 1000 * (to + 1)
            ),
        ],
    )
    .await;
    run(
        &urls[0],
        &[
            &format!("UPDATE shard_map SET database_id = {to} WHERE shard = {shard}"),
            "UPDATE shard_map_meta SET version = version + 1",
        ],
    )
    .await;
}

async fn holds(url: &str, table_query: &str) -> bool {
    count(url, table_query).await > 0
}

#[tokio::test]
async fn a_stale_map_is_turned_away_and_the_write_follows_the_shard() {
    let urls = fresh_databases(DatabaseServer::Postgres, "mm_stale", DATABASES as usize).await;
    let mut config = SqlConfig::new(urls.clone());
    config.logical_shards = Some(4);
    // The map is read only when a database turns a write away.
    config.map_poll = Duration::from_secs(3600);
    let store = SqlStore::open(config).await.unwrap();
    let ctx = Ctx::new(0);
    let shard = 2; // Held by database 0 at first.
    let mut names = names_on(shard, 4, "mover".into());

    // An account, then the shard moved under the store's feet: the next account of the
    // shard is written on database 1, where the shard now is.
    let first = names.next().unwrap();
    store
        .create(&ctx, CreateAccountRequest { username: first, ..Default::default() })
        .await
        .unwrap();
    flip(&urls, shard, 0, 1).await;
    let second = names.next().unwrap();
    let req = CreateAccountRequest { username: second.clone(), ..Default::default() };
    let account = store.create(&ctx, req).await.unwrap();
    let row = format!("SELECT COUNT(*) FROM accounts WHERE user_id = {}", account.user_id);
    assert!(holds(&urls[1], &row).await, "written where the shard is");
    assert!(!holds(&urls[0], &row).await, "not where it was");
    assert_eq!(store.shard_map().owner(shard), 1);

    // The message path, through the group commit: stale again, it follows too.
    flip(&urls, shard, 1, 0).await;
    // Database 0 holds the account only once a move would have copied it there.
    run(
        &urls[0],
        &[&format!(
            "INSERT INTO accounts (user_id, username, nickname, password_hash, created_at_ms) \
         VALUES ({}, '{second}', '', '', 0)",
            account.user_id
        )],
    )
    .await;
    let user = account.user_id;
    let message = Message {
        from_user_id: user,
        to_user_id: user,
        text: "hi".into(),
        client_msg_id: "m1".into(),
        ..Message::default()
    };
    let req = AppendRequest {
        message: Some(message),
        entries: vec![InboxEntry { user_id: user, version: 1 }],
    };
    store.append(&ctx, req).await.unwrap();
    let entry = format!("SELECT COUNT(*) FROM inbox WHERE user_id = {user}");
    assert!(holds(&urls[0], &entry).await);
    assert!(!holds(&urls[1], &entry).await);
    let page =
        store.read_inbox(&ctx, InboxQuery { user_id: user, after_version: 0, limit: 10 }).await;
    assert_eq!(page.unwrap().items.len(), 1);

    // A shard being copied away: the writes note the user they touched.
    run(&urls[0], &[&format!("UPDATE logical_shards SET state = 1 WHERE shard = {shard}")]).await;
    let nickname = UpdateNicknameRequest { user_id: user, nickname: "n".into(), version: 5 };
    store.update_nickname(&ctx, nickname).await.unwrap();
    let noted = format!("SELECT COUNT(*) FROM shard_dirty WHERE shard = {shard} AND kind = 1");
    assert_eq!(count(&urls[0], &noted).await, 1);
    let message = Message {
        from_user_id: user,
        to_user_id: user,
        text: "again".into(),
        client_msg_id: "m2".into(),
        ..Message::default()
    };
    let req = AppendRequest {
        message: Some(message),
        entries: vec![InboxEntry { user_id: user, version: 2 }],
    };
    store.append(&ctx, req).await.unwrap();
    let touched = format!("SELECT touch FROM shard_dirty WHERE shard = {shard} AND kind = 1");
    let mut conn = connect(&urls[0]).await;
    let touch: i64 = sqlx::query(AssertSqlSafe(touched)).fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(touch, 2, "the send touched the user again");

    // Fenced for a switch-over: a write waits for the map to move on, then follows it.
    run(&urls[0], &[&format!("UPDATE logical_shards SET state = 2 WHERE shard = {shard}")]).await;
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let nickname =
                UpdateNicknameRequest { user_id: user, nickname: "m".into(), version: 6 };
            store.update_nickname(&Ctx::new(0), nickname).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fenced shard holds the write back");
    run(
        &urls[1],
        &[&format!("UPDATE accounts SET nickname = 'copied', version = 5 WHERE user_id = {user}")],
    )
    .await;
    flip(&urls, shard, 0, 1).await;
    let updated = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    assert_eq!(updated.unwrap().nickname, "m");
    let nick = format!("SELECT COUNT(*) FROM accounts WHERE user_id = {user} AND nickname = 'm'");
    assert!(holds(&urls[1], &nick).await, "written after the switch-over, where the shard went");
}
