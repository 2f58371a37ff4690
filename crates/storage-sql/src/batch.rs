//! The group-committing writer of one shard: message writes bound for the shard queue here,
//! and one task gathers whatever queued while its previous commit ran into one transaction,
//! so that one commit (one fsync on a durable database) covers the batch.
//!
//! A batch costs a fixed handful of statements whatever its size: each table's rows travel
//! as one JSON array (`JSON_TABLE` on MySQL/MariaDB, `json_array_elements` on PostgreSQL),
//! so statements stay prepared and cached, with no placeholder limit to chunk around.
//!
//! The transaction first locks the logical shards its writes touch, shared (a write to a
//! shard this database no longer holds fails as moved, alone; one being copied away notes the
//! users it wrote, for the move), then the inbox heads it touches, in user id order, then applies
//! every write's head fence in memory, in queue order: a write whose version is not above
//! its inbox's head (as committed, or as moved by an earlier write of the batch) fails as
//! stale alone, and the rest of the batch goes on. A batch whose statements fail is run
//! again one write per transaction, so that a write only fails for its own reasons. A
//! caller is answered once the commit is known: an unknown outcome (the connection lost
//! while committing) is answered as unavailable, which the caller's retry resolves through
//! the retry record.

use crate::database::Dialect;
use crate::map::{self, Item, ShardState};
use crate::primary::Primary;
use crate::queries::Queries;
use crate::{Result, SqlError, db_id};
use base64::Engine as _;
use missive_proto::client::Message;
use missive_proto::extra;
use missive_proto::internal::InboxEntry;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Connection, Row, Transaction};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Writes waiting for a shard's writer, at most; a caller beyond waits for room.
const QUEUE_WRITES: usize = 4096;
/// Writes per transaction, at most.
const BATCH_WRITES: usize = 256;
/// Inbox entries per transaction, at most (a write larger than this goes alone).
const BATCH_ENTRIES: usize = 4096;
/// How long a batch may take from its first statement to its commit; beyond, the connection
/// is dropped (the database rolls back what did not commit) and the batch's callers are
/// answered unavailable.
const BATCH_DEADLINE: Duration = Duration::from_secs(10);
/// How long the writer waits for a connection to its database.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// One write of the message path.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// A send's first attempt on the sender's shard: the retry record, the message, the
    /// entries of users on this shard and a pending mark for each user elsewhere.
    Home { message: Message, local: Vec<InboxEntry>, remote: Vec<u64>, sender_version: u64 },
    /// A message's entries on a recipient's shard, with the copy they point to. On a
    /// `retry`, entries already there for the message are skipped.
    Deliver { message: Message, entries: Vec<InboxEntry>, retry: bool },
    /// A message's pending marks, once every other shard has its entries.
    ClearPending { message_id: u64 },
}

impl Write {
    /// The users whose rows the write touches.
    fn users(&self) -> impl Iterator<Item = u64> + '_ {
        let (sender, entries) = match self {
            Write::Home { message, local, .. } => (Some(message.from_user_id), local.as_slice()),
            Write::Deliver { entries, .. } => (None, entries.as_slice()),
            Write::ClearPending { .. } => (None, &[][..]),
        };
        sender.into_iter().chain(entries.iter().map(|e| e.user_id))
    }

    /// The logical shards whose rows the write touches: its users', and for the pending
    /// marks the sender's, which the message id names.
    fn shards(&self, logical: u64) -> BTreeSet<u64> {
        let mut shards: BTreeSet<u64> = self.users().map(|user| user % logical).collect();
        if let Write::ClearPending { message_id } = self {
            shards.insert(message_id % logical);
        }
        shards
    }

    fn entries(&self) -> usize {
        match self {
            Write::Home { local, remote, .. } => local.len() + remote.len(),
            Write::Deliver { entries, .. } => entries.len(),
            Write::ClearPending { .. } => 0,
        }
    }
}

/// What a write did.
#[derive(Debug, PartialEq)]
pub(crate) enum Written {
    /// The send was recorded before (by an earlier attempt): nothing was written.
    Recorded,
    /// The entries written.
    Entries(Vec<InboxEntry>),
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<Written>>,
}

/// The handle to a shard's writer task; the task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer of the shard at `url`: `tasks` tasks taking turns at the queue, each
    /// on a connection of its own, so that one gathers a batch while another commits.
    pub fn start(
        primary: Arc<Primary>,
        queries: Arc<Queries>,
        dialect: Dialect,
        database: u64,
        logical: u64,
        tasks: usize,
    ) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE_WRITES);
        let jobs = Arc::new(Mutex::new(jobs));
        let task = Arc::new(Task {
            primary,
            queries,
            dialect,
            logical,
            commit_ops: metrics::histogram!(
                "missive_store_commit_ops", "database" => database.to_string()
            ),
            commit_seconds: metrics::histogram!(
                "missive_store_commit_seconds", "database" => database.to_string()
            ),
        });
        for _ in 0..tasks.max(1) {
            tokio::spawn(task.clone().run(jobs.clone()));
        }
        Writer { queue }
    }

    /// Queues `write` and waits for the commit that holds it.
    pub async fn write(&self, write: Write) -> Result<Written> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Job { write, done }).await.map_err(|_| SqlError::WriterGone)?;
        answer.await.map_err(|_| SqlError::WriterGone)?
    }
}

struct Task {
    /// Where the database's primary is: every connection goes there.
    primary: Arc<Primary>,
    queries: Arc<Queries>,
    dialect: Dialect,
    /// The number of logical shards.
    logical: u64,
    commit_ops: metrics::Histogram,
    commit_seconds: metrics::Histogram,
}

/// The next batch from `queue`: the first item to arrive, then whatever else is already
/// waiting, up to `max` items or `max_weight` in `weigh`'s measure. `None` once the queue
/// is closed. The queue is the caller's until its batch is gathered, so tasks sharing it
/// take turns.
pub(crate) async fn gather<T>(
    queue: &Mutex<mpsc::Receiver<T>>,
    max: usize,
    mut weigh: impl FnMut(&T) -> usize,
    max_weight: usize,
) -> Option<Vec<T>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut weight = weigh(&first);
    let mut batch = vec![first];
    while batch.len() < max && weight < max_weight {
        match queue.try_recv() {
            Ok(item) => {
                weight += weigh(&item);
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// How a batch failed as a whole.
struct Failed {
    error: SqlError,
    /// Whether the commit may have happened (the connection was lost while committing).
    unknown: bool,
}

impl Task {
    async fn run(self: Arc<Task>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
        // The connection is kept from batch to batch, and replaced after a failure.
        let mut conn = None;
        let entries = |job: &Job| job.write.entries();
        while let Some(jobs) = gather(&queue, BATCH_WRITES, entries, BATCH_ENTRIES).await {
            self.run_batch(&mut conn, jobs).await;
        }
    }

    async fn run_batch(&self, conn: &mut Option<AnyConnection>, jobs: Vec<Job>) {
        let started = Instant::now();
        let writes: Vec<&Write> = jobs.iter().map(|job| &job.write).collect();
        let outcome = self.commit_within_deadline(conn, &writes).await;
        self.commit_ops.record(jobs.len() as f64);
        self.commit_seconds.record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(results) => {
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.done.send(result);
                }
            }
            Err(failed) if failed.unknown => {
                tracing::warn!(error = %failed.error, writes = jobs.len(), "batch outcome unknown");
                for job in jobs {
                    let _ = job.done.send(Err(SqlError::CommitUnknown));
                }
            }
            Err(failed) if jobs.len() == 1 => {
                tracing::warn!(error = %failed.error, "write failed");
                let job = jobs.into_iter().next().expect("one write");
                let _ = job.done.send(Err(failed.error));
            }
            Err(failed) => {
                // One write's failure must not fail the others: each runs on its own.
                tracing::debug!(error = %failed.error, writes = jobs.len(), "batch failed; one by one");
                for job in jobs {
                    let result = match self.commit_within_deadline(conn, &[&job.write]).await {
                        Ok(mut results) => results.pop().expect("one result per write"),
                        Err(failed) if failed.unknown => Err(SqlError::CommitUnknown),
                        Err(failed) => Err(failed.error),
                    };
                    let _ = job.done.send(result);
                }
            }
        }
    }

    async fn commit_within_deadline(
        &self,
        kept: &mut Option<AnyConnection>,
        writes: &[&Write],
    ) -> std::result::Result<Vec<Result<Written>>, Failed> {
        let outcome = match kept.take() {
            Some(conn) => Ok(conn),
            None => self.connect().await,
        };
        let mut conn = outcome.map_err(|error| {
            self.primary.suspect();
            Failed { error, unknown: false }
        })?;
        let outcome = tokio::time::timeout(BATCH_DEADLINE, self.commit(&mut conn, writes)).await;
        match outcome {
            Ok(Ok(results)) => {
                *kept = Some(conn);
                Ok(results)
            }
            // The connection is dropped with whatever it was doing: a new one, to the
            // primary as then found, serves the next batch.
            Ok(Err(failed)) => {
                if failed.unknown || matches!(failed.error, SqlError::Unreachable) {
                    self.primary.suspect();
                }
                Err(failed)
            }
            Err(_) => {
                self.primary.suspect();
                Err(Failed { error: SqlError::CommitUnknown, unknown: true })
            }
        }
    }

    async fn connect(&self) -> Result<AnyConnection> {
        let url = self.primary.url();
        let connect = AnyConnection::connect(&url);
        let mut conn = match tokio::time::timeout(CONNECT_DEADLINE, connect).await {
            Ok(conn) => conn?,
            Err(_) => return Err(SqlError::Unreachable),
        };
        if self.dialect == Dialect::MySql {
            // Locking reads see the newest commit, and inserts take no gap locks.
            sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
    }

    /// Runs `writes` in one transaction: their results, each `Ok` or a failure of its own
    /// (stale), once committed; or the failure of the whole.
    async fn commit(
        &self,
        conn: &mut AnyConnection,
        writes: &[&Write],
    ) -> std::result::Result<Vec<Result<Written>>, Failed> {
        let before = |error: SqlError| Failed { error, unknown: false };
        let mut tx = conn.begin().await.map_err(|e| before(e.into()))?;
        let (results, plan) = self.plan(&mut tx, writes).await.map_err(before)?;
        self.apply(&mut tx, plan).await.map_err(before)?;
        match tx.commit().await {
            Ok(()) => Ok(results),
            // The database refused the commit: nothing of it holds.
            Err(error @ sqlx::Error::Database(_)) => Err(before(error.into())),
            Err(error) => Err(Failed { error: error.into(), unknown: true }),
        }
    }

    /// Reads what the batch depends on (the heads, locked; the retry records; the entries a
    /// retry may have written) and decides each write's fate and the rows to write.
    async fn plan(
        &self,
        tx: &mut Transaction<'_, Any>,
        writes: &[&Write],
    ) -> Result<(Vec<Result<Written>>, Plan)> {
        let q = &self.queries;
        let shards: BTreeSet<u64> = writes.iter().flat_map(|w| w.shards(self.logical)).collect();
        let states = map::lock_shards(tx, q, &shards).await?;
        let state = |shard: &u64| states.get(shard).copied();
        let writable: Vec<bool> = writes
            .iter()
            .map(|w| w.shards(self.logical).iter().all(|s| state(s).is_some_and(|s| s.writable())))
            .collect();
        let writes: Vec<&Write> =
            writes.iter().zip(&writable).filter(|(_, ok)| **ok).map(|(w, _)| *w).collect();
        let writes = writes.as_slice();
        let mut heads = self.lock_heads(tx, writes).await?;

        let sent_keys: Vec<Value> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Home { message, .. } => {
                    Some(json!([message.from_user_id, message.client_msg_id]))
                }
                _ => None,
            })
            .collect();
        let mut recorded: HashSet<(u64, String)> = HashSet::new();
        for row in rows_of(tx, q.batch_sent_find, sent_keys).await? {
            recorded.insert((row.try_get::<i64, _>(0)? as u64, row.try_get(1)?));
        }

        let held_keys: Vec<Value> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Deliver { message, entries, retry: true } => Some((message, entries)),
                _ => None,
            })
            .flat_map(|(message, entries)| entries.iter().map(|e| json!([e.user_id, message.id])))
            .collect();
        let mut held: HashSet<(u64, u64)> = HashSet::new();
        for row in rows_of(tx, q.batch_entries_find, held_keys).await? {
            held.insert((row.try_get::<i64, _>(0)? as u64, row.try_get::<i64, _>(1)? as u64));
        }

        let mut plan = Plan::default();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let result = match write {
                Write::Home { message, local, remote, sender_version } => {
                    let key = (message.from_user_id, message.client_msg_id.clone());
                    if recorded.contains(&key) {
                        Ok(Written::Recorded)
                    } else {
                        fence(&mut heads, local).map(|()| {
                            recorded.insert(key);
                            plan.sent.push(json!([
                                message.from_user_id,
                                message.client_msg_id,
                                message.id,
                                sender_version
                            ]));
                            plan.message(message, local.len());
                            plan.entries(message.id, local);
                            for user_id in remote {
                                // The mark's age is the send's, on the logic layer's clock
                                // that the janitor measures it with.
                                plan.pending.push(json!([message.id, user_id, message.sent_at_ms]));
                            }
                            Written::Entries(local.clone())
                        })
                    }
                }
                Write::Deliver { message, entries, retry } => {
                    let todo: Vec<InboxEntry> = entries
                        .iter()
                        .filter(|e| !(*retry && held.contains(&(e.user_id, message.id))))
                        .copied()
                        .collect();
                    fence(&mut heads, &todo).map(|()| {
                        if !todo.is_empty() {
                            plan.message(message, todo.len());
                            plan.entries(message.id, &todo);
                        }
                        Written::Entries(todo)
                    })
                }
                Write::ClearPending { message_id } => {
                    plan.cleared.push(json!(message_id));
                    Ok(Written::Entries(Vec::new()))
                }
            };
            results.push(result);
        }
        plan.heads = heads
            .into_iter()
            .filter(|(_, h)| h.moved)
            .map(|(u, h)| json!([u, h.version]))
            .collect();
        let copying = |user: &u64| state(&(user % self.logical)) == Some(ShardState::Copying);
        plan.dirty = writes.iter().flat_map(|w| w.users()).filter(copying).collect();
        // The writes this database may not make fail as moved, in their places.
        let mut results = results.into_iter();
        let results = writable
            .into_iter()
            .map(|ok| match ok {
                true => results.next().expect("a result per writable write"),
                false => Err(SqlError::Moved),
            })
            .collect();
        Ok((results, plan))
    }

    /// Makes sure every inbox the batch writes has a head row, locks them all in user id
    /// order and reads them.
    async fn lock_heads(
        &self,
        tx: &mut Transaction<'_, Any>,
        writes: &[&Write],
    ) -> Result<HashMap<u64, Head>> {
        let users: BTreeSet<u64> = writes
            .iter()
            .flat_map(|w| match w {
                Write::Home { local: entries, .. } | Write::Deliver { entries, .. } => {
                    entries.as_slice()
                }
                Write::ClearPending { .. } => &[],
            })
            .map(|e| e.user_id)
            .collect();
        let mut heads = HashMap::with_capacity(users.len());
        if users.is_empty() {
            return Ok(heads);
        }
        for &user_id in &users {
            db_id(user_id, "user")?;
        }
        let ids: Vec<Value> = users.into_iter().map(Value::from).collect();
        let q = &self.queries;
        run_with(tx, q.batch_heads_lock, ids.clone()).await?;
        let rows = rows_of(tx, q.batch_heads_read, ids).await?;
        for row in rows {
            let user_id = row.try_get::<i64, _>(0)? as u64;
            let version = row.try_get::<i64, _>(1)? as u64;
            heads.insert(user_id, Head { version, moved: false });
        }
        Ok(heads)
    }

    async fn apply(&self, tx: &mut Transaction<'_, Any>, plan: Plan) -> Result<()> {
        let q = &self.queries;
        let steps = [
            (q.batch_sent_insert, plan.sent),
            (q.batch_messages_upsert, plan.messages),
            (q.batch_entries_insert, plan.inbox),
            (q.batch_heads_set, plan.heads),
            (q.batch_pending_insert, plan.pending),
            (q.batch_pending_clear, plan.cleared),
        ];
        for (statement, rows) in steps {
            run_with(tx, statement, rows).await?;
        }
        let dirty: Vec<Item> = plan.dirty.into_iter().map(Item::User).collect();
        map::note_dirty(tx, q, self.logical, &dirty).await
    }
}

/// An inbox head as the batch has it: the committed version, or the one an earlier write of
/// the batch moved it to.
struct Head {
    version: u64,
    moved: bool,
}

/// Moves the heads of `entries`' inboxes, or none of them when one is stale.
fn fence(heads: &mut HashMap<u64, Head>, entries: &[InboxEntry]) -> Result<()> {
    for entry in entries {
        let head = heads.get(&entry.user_id).map_or(0, |h| h.version);
        if entry.version <= head {
            return Err(SqlError::Stale(format!(
                "version {} of user {} is not above the inbox head {head}",
                entry.version, entry.user_id
            )));
        }
    }
    for entry in entries {
        let head = heads.entry(entry.user_id).or_insert(Head { version: 0, moved: false });
        head.version = entry.version;
        head.moved = true;
    }
    Ok(())
}

/// The rows a batch writes, each table's as the JSON array its statement takes.
#[derive(Default)]
struct Plan {
    sent: Vec<Value>,
    /// One row per message id (a statement may not upsert one key twice), in first-seen order.
    messages: Vec<Value>,
    message_rows: HashMap<u64, usize>,
    inbox: Vec<Value>,
    heads: Vec<Value>,
    pending: Vec<Value>,
    cleared: Vec<Value>,
    /// The users written on logical shards being copied away.
    dirty: BTreeSet<u64>,
}

impl Plan {
    /// A copy of `message` holding `refs` more entries on this shard.
    fn message(&mut self, message: &Message, refs: usize) {
        if let Some(&row) = self.message_rows.get(&message.id) {
            let count = &mut self.messages[row][9];
            *count = json!(count.as_u64().unwrap_or(0) + refs as u64);
            return;
        }
        let extra = extra::encode(message)
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        self.message_rows.insert(message.id, self.messages.len());
        self.messages.push(json!([
            message.id,
            message.from_user_id,
            message.from,
            message.to_user_id,
            message.to,
            message.kind,
            message.text,
            message.sent_at_ms,
            message.client_msg_id,
            refs,
            extra,
            missive_search::document(message)
        ]));
    }

    fn entries(&mut self, message_id: u64, entries: &[InboxEntry]) {
        for entry in entries {
            self.inbox.push(json!([entry.user_id, entry.version, message_id]));
        }
    }
}

/// Runs `statement` on `rows` as its one JSON array parameter; nothing when there are none.
async fn run_with(
    tx: &mut Transaction<'_, Any>,
    statement: &'static str,
    rows: Vec<Value>,
) -> Result<()> {
    if !rows.is_empty() {
        sqlx::query(statement).bind(Value::Array(rows).to_string()).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The rows `statement` answers for `keys`, its one JSON array parameter; none without keys.
async fn rows_of(
    tx: &mut Transaction<'_, Any>,
    statement: &'static str,
    keys: Vec<Value>,
) -> Result<Vec<AnyRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query(statement).bind(Value::Array(keys).to_string()).fetch_all(&mut **tx).await?)
}
