//! Batched reads of one shard: the reads every send and sync makes (an account by id, a
//! contact entry by owner and peer, a user's contact changes after a version) queue here, and
//! a task reads whatever queued while its previous statement ran in one statement per kind,
//! the keys as one JSON array. Contact changes are bounded per user by the user's contacts
//! (one row per peer), so a batch of them stays bounded; inbox pages are not batched, since a
//! backlog is not. A shard's
//! database spends most of its time per statement, not per row (waking a thread, a round
//! trip), so a batch of reads costs about what one does. Each read sees what was committed
//! when its statement ran, as a read of its own would.

use crate::batch::gather;
use crate::primary::Primary;
use crate::queries::Queries;
use crate::{Result, SqlError};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Reads waiting for a shard's reader, at most; a caller beyond waits for room.
const QUEUE_READS: usize = 4096;
/// Keys per statement, at most.
const BATCH_READS: usize = 512;

/// What a read looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Account(u64),
    Contact {
        owner: u64,
        peer: u64,
    },
    /// At most `limit` of `owner`'s contact entries above version `after`, oldest first.
    Changes {
        owner: u64,
        after: u64,
        limit: u32,
    },
}

impl Key {
    /// The statement kind: reads of one kind share a statement.
    fn kind(&self) -> usize {
        match self {
            Key::Account(_) => 0,
            Key::Contact { .. } => 1,
            Key::Changes { .. } => 2,
        }
    }
}

struct Read {
    key: Key,
    done: oneshot::Sender<Result<Vec<Arc<AnyRow>>>>,
}

/// The handle to a shard's reader tasks; they end when every handle is gone.
#[derive(Clone)]
pub(crate) struct Lookups {
    queue: mpsc::Sender<Read>,
}

impl Lookups {
    /// Starts `tasks` readers taking turns at the queue, on connections to the primary.
    pub fn start(primary: Arc<Primary>, queries: Arc<Queries>, tasks: usize) -> Lookups {
        let (queue, reads) = mpsc::channel(QUEUE_READS);
        let reads = Arc::new(Mutex::new(reads));
        for _ in 0..tasks.max(1) {
            tokio::spawn(run(primary.clone(), queries.clone(), reads.clone()));
        }
        Lookups { queue }
    }

    /// The row `key` names, if there is one: for an account, its columns in the order of
    /// `account_columns!`; for a contact, owner, peer, version and body.
    pub async fn get(&self, key: Key) -> Result<Option<Arc<AnyRow>>> {
        Ok(self.read(key).await?.into_iter().next())
    }

    /// The rows `key` names; for contact changes, each row is its place in the batch,
    /// version and body.
    pub async fn read(&self, key: Key) -> Result<Vec<Arc<AnyRow>>> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Read { key, done }).await.map_err(|_| SqlError::WriterGone)?;
        answer.await.map_err(|_| SqlError::WriterGone)?
    }
}

async fn run(
    primary: Arc<Primary>,
    queries: Arc<Queries>,
    queue: Arc<Mutex<mpsc::Receiver<Read>>>,
) {
    while let Some(reads) = gather(&queue, BATCH_READS, |_| 0, 1).await {
        let mut kinds: [Vec<Read>; 3] = Default::default();
        for read in reads {
            kinds[read.key.kind()].push(read);
        }
        let statements = [queries.lookup_accounts, queries.lookup_contacts, queries.lookup_changes];
        for (statement, reads) in statements.into_iter().zip(kinds) {
            if !reads.is_empty() {
                answer(&primary, statement, reads).await;
            }
        }
    }
}

/// Runs one statement for `reads` (all of one kind) and answers each.
async fn answer(primary: &Primary, statement: &'static str, reads: Vec<Read>) {
    let keys: Vec<Value> = reads
        .iter()
        .map(|read| match read.key {
            Key::Account(user_id) => Value::from(user_id),
            Key::Contact { owner, peer } => Value::from(vec![owner, peer]),
            Key::Changes { owner, after, limit } => {
                Value::from(vec![owner, after.min(i64::MAX as u64), u64::from(limit)])
            }
        })
        .collect();
    let pool = primary.pool();
    let rows = sqlx::query(statement).bind(Value::Array(keys).to_string()).fetch_all(&pool).await;
    if rows.is_err() {
        primary.suspect();
    }
    let found = rows.map_err(SqlError::from).and_then(|rows| {
        // Each read's rows, by its place in the batch.
        let mut found: Vec<Vec<Arc<AnyRow>>> = vec![Vec::new(); reads.len()];
        let mut points: HashMap<Key, Arc<AnyRow>> = HashMap::new();
        for row in rows {
            let first = row.try_get::<i64, _>(0)? as u64;
            let key = match reads[0].key {
                Key::Account(_) => Key::Account(first),
                Key::Contact { .. } => {
                    Key::Contact { owner: first, peer: row.try_get::<i64, _>(1)? as u64 }
                }
                // A change names its read by its place in the batch, from 1.
                Key::Changes { .. } => {
                    if let Some(rows) = first.checked_sub(1).and_then(|n| found.get_mut(n as usize))
                    {
                        rows.push(Arc::new(row));
                    }
                    continue;
                }
            };
            points.insert(key, Arc::new(row));
        }
        for (place, read) in reads.iter().enumerate() {
            if let Some(row) = points.get(&read.key) {
                found[place].push(row.clone());
            }
        }
        Ok(found)
    });
    match found {
        Ok(found) => {
            for (read, rows) in reads.into_iter().zip(found) {
                let _ = read.done.send(Ok(rows));
            }
        }
        Err(error) => {
            tracing::warn!(%error, reads = reads.len(), "batched read failed");
            let text = error.to_string();
            for read in reads {
                let error = match &error {
                    SqlError::Unreachable => SqlError::Unreachable,
                    _ => SqlError::Failed(text.clone()),
                };
                let _ = read.done.send(Err(error));
            }
        }
    }
}
