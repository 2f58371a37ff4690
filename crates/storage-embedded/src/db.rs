//! The SQLite file: migrations, the group-committing writer thread and the reader pool.

use missive_rpc::{Code, Status};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A crash or `kill -9` of the process (the log is written, not fsynced).
    #[default]
    Process,
    /// A power loss: every group commit fsyncs the log before anyone is answered.
    PowerLoss,
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
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database schema version {found} is newer than this binary knows ({known})")]
    SchemaTooNew { found: usize, known: usize },
    #[error("the store is shut down")]
    Closed,
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
            other => {
                tracing::error!(error = %other, "embedded storage failure");
                Status::internal("storage failure")
            }
        }
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs inside the writer's transaction; returns what to do once the commit is known.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;
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
}

impl EmbeddedStore {
    /// Opens (creating if needed) `missive.db` in the data directory and migrates it.
    pub fn open(config: StoreConfig) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(&config.dir).map_err(|source| StoreError::Dir {
            path: config.dir.clone(),
            source,
        })?;
        let path = config.dir.join("missive.db");
        let mut conn = Connection::open(&path)?;
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
            .map_err(|e| StoreError::Dir {
                path: config.dir.clone(),
                source: e,
            })?;
        tracing::info!(path = %path.display(), durability = ?config.durability, "embedded store open");
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                readers_idle_max: config.readers_idle_max,
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
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, op);
            Box::new(move |commit_error: Option<&Status>| {
                let result = match commit_error {
                    Some(status) => Err(status.clone()),
                    None => result.map_err(Status::from),
                };
                let _ = reply.send(result);
            })
        });
        self.inner
            .writer
            .send(job)
            .await
            .map_err(|_| Status::from(StoreError::Closed))?;
        answer.await.map_err(|_| Status::from(StoreError::Closed))?
    }

    /// Runs `op` on a read-only connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let idle = inner.readers.lock().expect("reader pool lock").pop();
            let conn = match idle {
                Some(conn) => conn,
                None => Connection::open_with_flags(
                    &inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?,
            };
            let result = op(&conn);
            let mut readers = inner.readers.lock().expect("reader pool lock");
            if readers.len() < inner.readers_idle_max {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Status::internal(format!("read task failed: {e}")))?
        .map_err(Status::from)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew {
            found: applied,
            known: MIGRATIONS.len(),
        });
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
fn in_savepoint<T>(conn: &Connection, op: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    let result = op(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    }
    conn.prepare_cached("RELEASE op")?.execute([])?;
    result
}

fn run_writer(conn: Connection, mut queue: mpsc::Receiver<Job>, batch_ops_max: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_ops_max);
    let mut completions: Vec<Completion> = Vec::with_capacity(batch_ops_max);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < batch_ops_max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let ops = batch.len();
        let outcome = conn.execute_batch("BEGIN IMMEDIATE").map(|()| {
            completions.extend(batch.drain(..).map(|job| job(&conn)));
        });
        let outcome = outcome.and_then(|()| conn.execute_batch("COMMIT"));
        let commit_error = outcome.err().map(|err| {
            tracing::error!(error = %err, ops, "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            Status::internal("storage commit failed")
        });
        batch.clear();
        for completion in completions.drain(..) {
            completion(commit_error.as_ref());
        }
        metrics::histogram!("missive_store_commit_ops").record(ops as f64);
        metrics::histogram!("missive_store_commit_seconds").record(started.elapsed().as_secs_f64());
    }
    tracing::debug!("store writer stopped");
}
