//! The replicated pairs of `missive_storage_suite::replicated`, tested for the property Missive
//! relies on: a commit acknowledged before the primary is lost is on the standby once it is
//! promoted. Writers commit rows on the primary without pause, the primary is killed with
//! SIGKILL among their commits, the standby is promoted, and every acknowledged row must be on
//! it. Before that, the standby must refuse a write. The tests start their own servers.

use missive_storage_suite::replicated::{self, MariaDbPair, PostgresPair, Replication};
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Writers committing side by side, each on its own connection.
const WRITERS: i64 = 4;

/// Acknowledged commits to wait for before the primary is killed.
const COMMITS_BEFORE_KILL: usize = 300;

/// What one writer saw: the rows whose commit was acknowledged, and the one whose commit was
/// in flight when the connection was lost (its outcome unknown to the writer).
struct Written {
    acknowledged: Vec<i64>,
    in_doubt: Option<i64>,
}

/// Inserts rows `writer * 1_000_000 + n` into `acked`, one autocommitted statement each,
/// until an insert fails (the primary is gone) or 20 s have passed.
async fn write_until_failure(url: String, writer: i64, count: Arc<AtomicUsize>) -> Written {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    for n in 0.. {
        assert!(started.elapsed() < Duration::from_secs(20), "the primary was never killed");
        let id = writer * 1_000_000 + n;
        let insert = format!("INSERT INTO acked (id) VALUES ({id})");
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert)).execute(&mut connection),
        )
        .await
        .expect("a commit neither acknowledged nor failed within 10 s");
        match outcome {
            Ok(_) => {
                acknowledged.push(id);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return Written { acknowledged, in_doubt: Some(id) },
        }
    }
    unreachable!()
}

/// Starts the writers on `primary`, and returns once `COMMITS_BEFORE_KILL` commits are
/// acknowledged, with the writers still going.
async fn start_writers(primary: &str) -> Vec<tokio::task::JoinHandle<Written>> {
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|writer| tokio::spawn(write_until_failure(primary.into(), writer, count.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while count.load(Ordering::Relaxed) < COMMITS_BEFORE_KILL {
        assert!(Instant::now() < deadline, "only {count:?} commits within 15 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writers
}

/// Collects what the writers saw once the primary is gone.
async fn writers_outcome(writers: Vec<tokio::task::JoinHandle<Written>>) -> (Vec<i64>, Vec<i64>) {
    let (mut acknowledged, mut in_doubt) = (Vec::new(), Vec::new());
    for writer in writers {
        let written = writer.await.unwrap();
        acknowledged.extend(written.acknowledged);
        in_doubt.extend(written.in_doubt);
    }
    (acknowledged, in_doubt)
}

/// Every acknowledged row is at `url`, and nothing else but rows in doubt.
async fn check_rows_survived(url: &str, acknowledged: &[i64], in_doubt: &[i64]) {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM acked").fetch_all(&mut connection).await.unwrap();
    let rows: std::collections::HashSet<i64> = rows.into_iter().collect();
    let lost: Vec<&i64> = acknowledged.iter().filter(|id| !rows.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost in the failover: {lost:?}");
    let unexpected: Vec<&i64> =
        rows.iter().filter(|id| !acknowledged.contains(id) && !in_doubt.contains(id)).collect();
    assert!(unexpected.is_empty(), "rows no writer sent: {unexpected:?}");
    eprintln!(
        "{} acknowledged commits all survived; {} of {} in doubt landed",
        acknowledged.len(),
        in_doubt.iter().filter(|id| rows.contains(id)).count(),
        in_doubt.len()
    );
}

/// Waits until `acked` exists on the standby at `url` (replicated from the primary).
async fn wait_for_table(url: &str) {
    sqlx::any::install_default_drivers();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
        if sqlx::raw_sql("SELECT COUNT(*) FROM acked").execute(&mut connection).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "acked never reached the standby");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create_table(url: &str) {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE acked (id BIGINT PRIMARY KEY)")
        .execute(&mut connection)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_commits_survive_losing_the_primary() {
    let started = Instant::now();
    let mut pair = PostgresPair::start().await;
    eprintln!("postgres pair started in {:?}", started.elapsed());
    let [primary, standby] = <[String; 2]>::try_from(pair.urls()).unwrap();
    assert!(replicated::is_primary(&primary).await.unwrap());
    assert!(!replicated::is_primary(&standby).await.unwrap());

    create_table(&primary).await;
    wait_for_table(&standby).await;
    let mut connection = sqlx::PgConnection::connect(&standby).await.unwrap();
    let refused = sqlx::raw_sql("INSERT INTO acked (id) VALUES (0)")
        .execute(&mut connection)
        .await
        .expect_err("the standby refuses writes");
    let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "read_only_sql_transaction: {refused}");
    drop(connection);

    let writers = start_writers(&primary).await;
    // Still synchronous while the writers commit: no commit was acknowledged without it.
    let mut admin = sqlx::PgConnection::connect(&primary).await.unwrap();
    let state: String = sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(state, "sync");
    drop(admin);

    let killed = Instant::now();
    pair.kill_primary();
    let (acknowledged, in_doubt) = writers_outcome(writers).await;
    pair.promote_standby().await;
    let mut connection = sqlx::PgConnection::connect(&standby).await.unwrap();
    sqlx::raw_sql("INSERT INTO acked (id) VALUES (0)").execute(&mut connection).await.unwrap();
    eprintln!("postgres standby promoted and writable {:?} after the kill", killed.elapsed());
    assert!(!pair.primary_is_running());

    // Row 0 was acknowledged by the promoted standby.
    check_rows_survived(&standby, &[acknowledged, vec![0]].concat(), &in_doubt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_acknowledged_commits_survive_losing_the_primary() {
    let started = Instant::now();
    let mut pair = MariaDbPair::start().await;
    eprintln!("mariadb pair started in {:?}", started.elapsed());
    let [primary, replica] = <[String; 2]>::try_from(pair.urls()).unwrap();
    assert!(replicated::is_primary(&primary).await.unwrap());
    assert!(!replicated::is_primary(&replica).await.unwrap());

    create_table(&primary).await;
    wait_for_table(&replica).await;
    let mut connection = sqlx::MySqlConnection::connect(&replica).await.unwrap();
    let refused = sqlx::raw_sql("INSERT INTO acked (id) VALUES (0)")
        .execute(&mut connection)
        .await
        .expect_err("the replica refuses writes");
    let number = refused
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|e| e.number());
    assert_eq!(number, Some(1290), "ER_OPTION_PREVENTS_STATEMENT: {refused}");
    drop(connection);

    let writers = start_writers(&primary).await;
    // Still semi-synchronous while the writers commit: no commit was acknowledged without it.
    assert!(pair.semi_sync_is_on().await);
    assert_eq!(pair.commits_not_acknowledged_by_replica().await, 0);

    let killed = Instant::now();
    pair.kill_primary();
    let (acknowledged, in_doubt) = writers_outcome(writers).await;
    pair.promote_replica().await;
    let mut connection = sqlx::MySqlConnection::connect(&replica).await.unwrap();
    sqlx::raw_sql("INSERT INTO acked (id) VALUES (0)").execute(&mut connection).await.unwrap();
    eprintln!("mariadb replica promoted and writable {:?} after the kill", killed.elapsed());
    assert!(!pair.primary_is_running());

    // Row 0 was acknowledged by the promoted replica.
    check_rows_survived(&replica, &[acknowledged, vec![0]].concat(), &in_doubt).await;
}

/// The other settings start and commit: an asynchronous standby gets the rows (eventually),
/// and a primary with none takes writes alone. A benchmark compares their commit times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_start_asynchronous_and_without_a_standby() {
    for replication in [Replication::Asynchronous, Replication::NoStandby] {
        let postgres = PostgresPair::start_with(replication).await;
        let mariadb = MariaDbPair::start_with(replication).await;
        for urls in [postgres.urls(), mariadb.urls()] {
            let expected = if replication == Replication::NoStandby { 1 } else { 2 };
            assert_eq!(urls.len(), expected, "{replication:?}");
            create_table(&urls[0]).await;
            let mut connection = sqlx::AnyConnection::connect(&urls[0]).await.unwrap();
            sqlx::raw_sql("INSERT INTO acked (id) VALUES (1)")
                .execute(&mut connection)
                .await
                .unwrap();
            if let Some(standby) = urls.get(1) {
                wait_for_table(standby).await;
                assert!(!replicated::is_primary(standby).await.unwrap());
            }
        }
    }
}

/// Starts one autocommitted insert on `url`, and returns it running.
fn insert_in_background(url: &str, id: i64) -> tokio::task::JoinHandle<Result<(), sqlx::Error>> {
    let url = url.to_string();
    tokio::spawn(async move {
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&url).await?;
        let insert = format!("INSERT INTO acked (id) VALUES ({id})");
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert)).execute(&mut connection).await.map(|_| ())
    })
}

/// With the synchronous standby lost, a commit on the primary is not acknowledged: it waits
/// (in pg_stat_activity, wait event `SyncRep`) for a standby that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_wait_while_the_standby_is_lost() {
    let mut pair = PostgresPair::start().await;
    let primary = pair.primary_url();
    create_table(&primary).await;
    pair.kill_standby();
    let commit = insert_in_background(&primary, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!commit.is_finished(), "a commit acknowledged with no synchronous standby");
    let mut admin = sqlx::PgConnection::connect(&primary).await.unwrap();
    let waiting: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(waiting, 1);
    commit.abort();
}

/// With the replica lost, a commit on the primary waits for it up to
/// `rpl_semi_sync_master_timeout`, then is acknowledged anyway: the primary has gone
/// asynchronous, which only its status variables tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_commits_wait_for_the_timeout_then_go_asynchronous() {
    let mut pair = MariaDbPair::start().await;
    let primary = pair.primary_url();
    create_table(&primary).await;
    let mut admin = sqlx::MySqlConnection::connect(&pair.primary_admin_url()).await.unwrap();
    sqlx::raw_sql("SET GLOBAL rpl_semi_sync_master_timeout = 1500")
        .execute(&mut admin)
        .await
        .unwrap();
    pair.kill_replica();
    let started = Instant::now();
    let commit = insert_in_background(&primary, 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!commit.is_finished(), "a commit acknowledged at once with the replica lost");
    assert!(pair.semi_sync_is_on().await);
    tokio::time::timeout(Duration::from_secs(10), commit).await.unwrap().unwrap().unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "acknowledged after {waited:?}");
    assert!(!pair.semi_sync_is_on().await, "semi-synchronous replication switched off");
    assert_eq!(pair.commits_not_acknowledged_by_replica().await, 1);
    eprintln!("mariadb acknowledged a commit without its replica after {waited:?}");
}
