//! The SQLite file: migrations, the group-committing writer thread and the reader pool.

use crate::cache::Caches;
use missive_rpc::{Code, Status};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_fences.sql"),
    include_str!("../migrations/0003_contacts_groups.sql"),
    include_str!("../migrations/0004_ops.sql"),
    include_str!("../migrations/0005_presence.sql"),
    include_str!("../migrations/0006_search.sql"),
    include_str!("../migrations/0007_pushers.sql"),
    include_str!("../migrations/0008_search_backfill.sql"),
];

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A crash or `kill -9` of the process (the log is written, not fsynced).
    #[default]
    Process,
    /// A power loss: every group commit fsyncs the log before anyone is answered.
    PowerLoss,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Process => "process",
            Durability::PowerLoss => "power-loss",
        })
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "process" => Ok(Durability::Process),
            "power-loss" => Ok(Durability::PowerLoss),
            other => Err(format!("unknown durability {other:?} (use process or power-loss)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Operations committed together at most; bounds a batch's latency.
    pub batch_ops_max: usize,
    /// Operations waiting for the writer at most; senders wait beyond it (backpressure).
    pub queue_ops_max: usize,
    /// Idle read connections kept open.
    pub readers_idle_max: usize,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            durability: Durability::Process,
            batch_ops_max: 2048,
            queue_ops_max: 16384,
            readers_idle_max: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("database schema version {found} is newer than this binary knows ({known})")]
    SchemaTooNew { found: usize, known: usize },
    #[error("the store is shut down")]
    Closed,
    /// A stored value does not decode: the file was damaged or written by a foreign program.
    #[error("corrupt {0}")]
    Corrupt(String),
    /// A versioned write lost to a concurrent writer with a newer version.
    #[error("{0}")]
    Stale(String),
}

impl StoreError {
    /// Translates a driver error: a unique-key violation becomes [`StoreError::AlreadyExists`].
    pub(crate) fn from_sqlite(err: rusqlite::Error) -> StoreError {
        match &err {
            rusqlite::Error::SqliteFailure(e, _)
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::AlreadyExists
            }
            _ => StoreError::Sqlite(err),
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        match err {
            StoreError::AlreadyExists => Status::new(Code::AlreadyExists, "already exists"),
            StoreError::NotFound(what) => Status::not_found(format!("{what} not found")),
            StoreError::Closed => Status::new(Code::Unavailable, "storage is shut down"),
            StoreError::Stale(message) => Status::aborted(message),
            // A u64 from a request above SQLite's integers (2^63 - 1) names nothing stored.
            StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(_)) => {
                Status::not_found("no such record: the number is out of range")
            }
            other => {
                tracing::error!(error = %other, "embedded storage failure");
                Status::internal("storage failure")
            }
        }
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs inside the writer's transaction (or, given `None` when no transaction could begin,
/// fails without running); returns what to do once the commit is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Option<&Status>) + Send>;

/// Every embedded data-access service, over one database file.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    /// Idle read-only connections; a read takes one, or opens one when none is idle.
    readers: Mutex<Vec<Connection>>,
    readers_idle_max: usize,
    caches: Caches,
    /// Dropped with the store, which stops the checkpointer.
    _stop_checkpoints: std::sync::mpsc::Sender<()>,
    /// Dropped with the store, which stops the search indexer.
    _stop_indexing: std::sync::mpsc::Sender<()>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `missive.db` in the data directory and migrates it.
    pub fn open(config: StoreConfig) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|source| StoreError::Dir { path: config.dir.clone(), source })?;
        let path = config.dir.join("missive.db");
        disable_memory_statistics();
        let mut conn = Connection::open(&path)?;
        // The writer reads through a memory map: as the log's only writer it seldom starts a
        // transaction with the log changed under it, so the map stays. Its own page cache
        // holds what a transaction dirties, and SQLite sweeps that cache at every commit
        // (`pcache1Truncate`), so a large one costs a scan per commit and saves no read.
        tune(&conn, WRITER_CACHE_KIB)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        // Checkpoints run on their own thread (`run_checkpointer`), never in a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "page_size", PAGE_BYTES)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match config.durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;

        let (writer, queue) = mpsc::channel(config.queue_ops_max);
        let batch_ops_max = config.batch_ops_max;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(conn, queue, batch_ops_max))
            .map_err(|e| StoreError::Dir { path: config.dir.clone(), source: e })?;
        let indexer = writer.clone();
        let index_reader = open_reader(&path)?;
        let (stop_indexing, stop_index) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("store-indexer".into())
            .spawn(move || run_indexer(indexer, index_reader, stop_index))
            .map_err(|e| StoreError::Dir { path: config.dir.clone(), source: e })?;
        let checkpoint_conn = Connection::open(&path)?;
        let (stop_checkpoints, stop) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run_checkpointer(checkpoint_conn, stop))
            .map_err(|e| StoreError::Dir { path: config.dir.clone(), source: e })?;
        tracing::info!(path = %path.display(), durability = ?config.durability, "embedded store open");
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                readers_idle_max: config.readers_idle_max,
                caches: Caches::new(),
                _stop_checkpoints: stop_checkpoints,
                _stop_indexing: stop_indexing,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` in the next group commit and answers once that commit is durable.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_then(op, |_| ()).await
    }

    /// Like [`write`](Self::write), and runs `committed` on the writer thread right after a
    /// successful commit, in commit order, before anyone is answered: the place to keep
    /// caches coherent.
    pub(crate) async fn write_then<T, F, C>(&self, op: F, committed: C) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, op).map_err(Status::from),
                None => Err(Status::internal("storage cannot begin a transaction")),
            };
            Box::new(move |commit_error: Option<&Status>| {
                let result = match commit_error {
                    Some(status) => Err(status.clone()),
                    None => result,
                };
                if let Ok(value) = &result {
                    committed(value);
                }
                let _ = reply.send(result);
            })
        });
        self.inner.writer.send(job).await.map_err(|_| Status::from(StoreError::Closed))?;
        answer.await.map_err(|_| Status::from(StoreError::Closed))?
    }

    pub(crate) fn caches(&self) -> &Caches {
        &self.inner.caches
    }

    /// Runs `op` on a pooled read-only connection, on the calling thread.
    ///
    /// Reads are point lookups and bounded pages (a sync batch is at most 500 rows), which
    /// take microseconds in WAL mode and never wait for the writer; handing each one to
    /// another thread cost more in wake-ups than the reads themselves.
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T, Status>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.read_here(op)
    }

    /// Like [`read`](Self::read), on the blocking pool: for scans (counting a table) that
    /// would hold a runtime thread too long.
    pub(crate) async fn read_scan<T, F>(&self, op: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_here(op))
            .await
            .map_err(|_| Status::internal("storage scan panicked"))?
    }

    fn read_here<T, F>(&self, op: F) -> Result<T, Status>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let inner = &self.inner;
        let idle = inner.readers.lock().expect("reader pool lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&inner.path).map_err(Status::from)?,
        };
        let result = op(&conn);
        let mut readers = inner.readers.lock().expect("reader pool lock");
        if readers.len() < inner.readers_idle_max {
            readers.push(conn);
        }
        result.map_err(Status::from)
    }
}

/// Statements each connection keeps prepared; more than any connection uses, so none is
/// ever parsed twice.
const STATEMENT_CACHE_MAX: usize = 64;

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // No memory map for readers (the writer has one): a read transaction that finds the log
    // changed since the connection's last one (under a stream of sends, nearly every one)
    // unmaps the whole file and maps it again, page faults and cross-CPU TLB flushes
    // included; reading the few pages a lookup needs costs less.
    tune(&conn, READER_CACHE_KIB)?;
    Ok(conn)
}

/// Prepared statements and the page cache, for the writer and the readers alike.
fn tune(conn: &Connection, cache_kib: i64) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_MAX);
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(())
}

const MMAP_BYTES: i64 = 1 << 30;
const READER_CACHE_KIB: i64 = 64 * 1024;
const WRITER_CACHE_KIB: i64 = 4 * 1024;
/// How often the checkpointer copies the log into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// A batch stops taking more operations once it has run this long.
const BATCH_TIME_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

/// Turns off SQLite's allocation statistics, which take a process-wide mutex on every
/// allocation. Effective only before the first connection of the process; later calls are
/// refused by SQLite and harmless.
fn disable_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection exists in this process
        // (the Once runs ahead of the first open); if one did exist, SQLite returns
        // SQLITE_MISUSE and changes nothing.
        unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0);
        }
    });
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew { found: applied, known: MIGRATIONS.len() });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
        tracing::info!(migration = index + 1, "applied schema migration");
    }
    Ok(())
}

/// Runs one caller's operation so that its failure undoes only its own writes.
///
/// If the operation's own writes cannot be undone, the whole batch is rolled back: the
/// writer sees the transaction gone and fails every operation of the batch, so nothing is
/// ever committed that its caller was told failed.
fn in_savepoint<T>(conn: &Connection, op: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let result = op(conn);
    let undone = match &result {
        Ok(_) => Ok(()),
        Err(_) => conn.prepare_cached("ROLLBACK TO op").and_then(|mut s| s.execute([])).map(drop),
    };
    if let Err(error) =
        undone.and_then(|()| conn.prepare_cached("RELEASE op")?.execute([]).map(drop))
    {
        tracing::error!(%error, "cannot close a savepoint; abandoning the batch");
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error.into());
    }
    result
}

fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Job>, batch_ops_max: usize) {
    let mut completions: Vec<Completion> = Vec::with_capacity(batch_ops_max);
    let commit_ops = metrics::histogram!("missive_store_commit_ops");
    let commit_seconds = metrics::histogram!("missive_store_commit_seconds");
    while let Some(first) = queue.blocking_recv() {
        let started = Instant::now();
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(err) = &began {
            tracing::error!(error = %err, "cannot begin a write transaction");
        }
        // SQLite may roll a transaction back by itself (a full disk, an I/O error); from then
        // on no operation may run, or each would commit alone as its own transaction.
        let open = |conn: &Connection| began.is_ok() && !conn.is_autocommit();
        completions.push(first(open(&conn).then_some(&conn)));
        // Everything already waiting joins this commit, up to a count and a time budget so
        // that one batch never holds its callers long.
        while completions.len() < batch_ops_max && started.elapsed() < BATCH_TIME_BUDGET {
            match queue.try_recv() {
                Ok(job) => completions.push(job(open(&conn).then_some(&conn))),
                Err(_) => break,
            }
        }
        let ops = completions.len();
        let still_open = open(&conn);
        let committed = began.and_then(|()| {
            if still_open {
                conn.execute_batch("COMMIT")
            } else {
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the transaction was rolled back during the batch".into()),
                ))
            }
        });
        let commit_error = match committed {
            Ok(()) => None,
            Err(err) => {
                tracing::error!(error = %err, ops, "group commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                Some(Status::internal("storage commit failed"))
            }
        };
        for completion in completions.drain(..) {
            completion(commit_error.as_ref());
        }
        commit_ops.record(ops as f64);
        commit_seconds.record(started.elapsed().as_secs_f64());
    }
    tracing::debug!("store writer stopped");
}

/// How often new messages are added to the search index (a message is found by SEARCH at
/// most about this long after it was stored).
const INDEX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Messages indexed in one pass at most (a backlog goes in several).
const INDEX_BATCH: i64 = 50_000;

/// Asks the writer to index new messages' search terms every [`INDEX_INTERVAL`], as one job
/// of its group commit. Before that, while messages stored before search existed lack
/// their terms, backfills them one batch after another: each read and tokenized here, on
/// `reader`, and only written by the writer. Stops when the store is dropped.
fn run_indexer(writer: mpsc::Sender<Job>, reader: Connection, stop: std::sync::mpsc::Receiver<()>) {
    let mut backfilling = true;
    let mut failed = false;
    let mut indexed = Instant::now();
    loop {
        let pause = if backfilling && !failed { std::time::Duration::ZERO } else { INDEX_INTERVAL };
        if let Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) =
            stop.recv_timeout(pause)
        {
            return;
        }
        if backfilling {
            match crate::message::backfill_batch(&reader) {
                Ok(Some(batch)) => {
                    let (done, written) = std::sync::mpsc::channel();
                    let job: Job = Box::new(move |conn| {
                        let wrote = conn.map(|conn| crate::message::backfill_write(conn, &batch));
                        if let Some(Err(error)) = &wrote {
                            tracing::error!(%error, "backfilling search terms failed; will retry");
                        }
                        let wrote = matches!(wrote, Some(Ok(())));
                        Box::new(move |status| {
                            let _ = done.send(wrote && status.is_none());
                        })
                    });
                    if writer.blocking_send(job).is_err() {
                        return;
                    }
                    // A failed batch is tried again after a pause, not at once.
                    match written.recv() {
                        Ok(wrote) => failed = !wrote,
                        Err(_) => return,
                    }
                }
                Ok(None) => backfilling = false,
                Err(error) => {
                    tracing::error!(%error, "reading messages to backfill failed; stopped");
                    backfilling = false;
                }
            }
        }
        if indexed.elapsed() < INDEX_INTERVAL {
            continue;
        }
        indexed = Instant::now();
        let job: Job = Box::new(|conn| {
            if let Some(conn) = conn
                && let Err(error) = index_terms(conn)
            {
                tracing::error!(%error, "indexing search terms failed; will retry");
            }
            Box::new(|_| ())
        });
        if writer.blocking_send(job).is_err() {
            return;
        }
    }
}

/// Adds the terms of messages stored since the last pass to the full-text index, and moves
/// `search_progress` past them.
fn index_terms(conn: &Connection) -> rusqlite::Result<()> {
    let upto: i64 = conn
        .prepare_cached("SELECT upto FROM search_progress WHERE id = 0")?
        .query_row([], |row| row.get(0))?;
    let last: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(message_id) FROM
             (SELECT message_id FROM messages WHERE message_id > ?1 ORDER BY message_id LIMIT ?2)",
        )?
        .query_row(rusqlite::params![upto, INDEX_BATCH], |row| row.get(0))?;
    let Some(last) = last else { return Ok(()) };
    conn.prepare_cached(
        "INSERT INTO message_terms (rowid, terms)
         SELECT message_id, terms FROM messages
         WHERE message_id > ?1 AND message_id <= ?2 AND terms <> ''",
    )?
    .execute([upto, last])?;
    conn.prepare_cached("UPDATE search_progress SET upto = ?1 WHERE id = 0")?.execute([last])?;
    Ok(())
}

/// Copies the write-ahead log into the database off the writer's thread, so that sends never
/// wait for a checkpoint's I/O. Stops when the store is dropped.
fn run_checkpointer(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(CHECKPOINT_INTERVAL)
    {
        let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpoint {
            Ok((log_pages, copied_pages)) => {
                metrics::gauge!("missive_store_wal_pages").set(log_pages as f64);
                tracing::trace!(log_pages, copied_pages, "checkpoint");
            }
            Err(error) => tracing::warn!(%error, "checkpoint failed"),
        }
    }
}

/// Page size of a new database file: smaller than SQLite's 4096, because a send touches a few
/// random index and inbox pages and each commit writes every touched page to the log whole.
const PAGE_BYTES: i64 = 2048;
