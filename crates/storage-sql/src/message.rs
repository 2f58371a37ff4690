//! Messages and inboxes (data type 3), across databases.
//!
//! A send commits on the sender's database first, in one transaction: the retry record
//! (`sent_messages`), the message, the inbox entries of users on that database, and a pending
//! mark for every recipient on another one. Then each other database gets, in one
//! transaction, a copy of the message and its users' entries; then the pending marks go. Each
//! of these writes joins the group commit of its database's writer (`batch.rs`), with
//! whatever other sends are bound for the database at the time. A write that meets a logical
//! shard its database no longer holds fails as moved, and the send starts again by the map
//! read again: as a retry, it completes what the first attempt wrote.
//! If a step fails, the call fails, and a retry of the same send (same sender and client id)
//! finds the retry record and writes, with its fresh versions, every pending entry that an
//! earlier attempt did not commit. Every entry
//! passes the inbox head fence, so each inbox commits in version order.

use crate::batch::{Write, Written};
use crate::database::{Database, Dialect};
use crate::map::Item;
use crate::{Result, SqlError, SqlStore, db_id};
use missive_proto::client::Message;
use missive_proto::extra;
use missive_proto::internal::{
    AppendRequest, AppendResponse, ClaimPendingRequest, CollectRequest, CollectResponse, Empty,
    InboxEntry, InboxItem, InboxPage, InboxQuery, MessageRef, MessageStore, PendingSend,
    PendingSends, ReplaceMessageRequest, SearchQuery,
};
use missive_rpc::{Ctx, Status};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Messages the search backfill reads and updates in one transaction.
const BACKFILL_BATCH: i64 = 1_000;
/// How long the backfill waits after a failure before it tries again.
const BACKFILL_RETRY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long after the store opens the backfill starts: not while the node is starting.
const BACKFILL_START: std::time::Duration = std::time::Duration::from_secs(1);

impl SqlStore {
    /// Gives messages stored before search existed their terms (migration 8): database after
    /// database, a batch per transaction, in the background of the open store, from a second
    /// after it opened. Ends when every database is done or the store is dropped; another
    /// node doing the same at once only repeats work (each write is conditional on the
    /// message as read).
    pub(crate) fn spawn_backfill(&self) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(BACKFILL_START).await;
            while let Some(inner) = inner.upgrade() {
                match (SqlStore { inner }).backfill_terms().await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::warn!(%error, "backfilling search terms failed; will retry");
                        tokio::time::sleep(BACKFILL_RETRY).await;
                    }
                }
            }
        });
    }

    /// One batch of the backfill, on the first database with messages left; false when none
    /// has any.
    async fn backfill_terms(&self) -> Result<bool> {
        for shard in self.routing().databases.values() {
            let state = sqlx::query(self.q().backfill_state).fetch_one(&shard.pool()).await?;
            let (next, upto): (i64, i64) = (state.try_get(0)?, state.try_get(1)?);
            if next >= upto {
                continue;
            }
            let rows = sqlx::query(self.q().backfill_batch)
                .bind(next)
                .bind(upto)
                .bind(BACKFILL_BATCH)
                .fetch_all(&shard.pool())
                .await?;
            let messages =
                rows.iter().map(|row| message_row(row, 0)).collect::<Result<Vec<_>>>()?;
            let moved_to = match messages.last() {
                Some(last) if messages.len() as i64 == BACKFILL_BATCH => last.id as i64,
                _ => upto,
            };
            let mut tx = shard.pool().begin().await?;
            for message in &messages {
                let terms = missive_search::document(message);
                if terms.is_empty() {
                    continue;
                }
                sqlx::query(self.q().backfill_terms)
                    .bind(terms)
                    .bind(message.id as i64)
                    .bind(&message.text)
                    .bind(extra::encode(message))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(self.q().backfill_move).bind(moved_to).execute(&mut *tx).await?;
            tx.commit().await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// A page of inbox entries from rows of (version, message columns), fetched `limit + 1` at
/// most: `more` when the extra one came.
fn inbox_page(rows: &[AnyRow], limit: u32) -> Result<InboxPage> {
    let mut items = rows
        .iter()
        .map(|row| {
            Ok(InboxItem {
                version: row.try_get::<i64, _>(0)? as u64,
                message: Some(message_row(row, 1)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(InboxPage { items, more })
}

fn message_row(row: &AnyRow, first: usize) -> Result<Message> {
    let mut message = Message {
        id: row.try_get::<i64, _>(first)? as u64,
        from_user_id: row.try_get::<i64, _>(first + 1)? as u64,
        from: row.try_get(first + 2)?,
        to_user_id: row.try_get::<i64, _>(first + 3)? as u64,
        to: row.try_get(first + 4)?,
        kind: row.try_get::<i64, _>(first + 5)? as i32,
        text: row.try_get(first + 6)?,
        sent_at_ms: row.try_get(first + 7)?,
        client_msg_id: row.try_get(first + 8)?,
        ..Message::default()
    };
    if let Some(stored) = row.try_get::<Option<Vec<u8>>, _>(first + 9)? {
        extra::merge(&mut message, &stored)
            .map_err(|e| SqlError::Corrupt(format!("message {}: {e}", message.id)))?;
    }
    Ok(message)
}

impl SqlStore {
    /// Delivers to users on other databases than the sender's, every database at once, then
    /// clears the message's pending marks (without waiting). A failure leaves them all, and
    /// the retry skips the entries an earlier attempt committed.
    async fn deliver_remote(
        &self,
        home: &Database,
        message: &Message,
        entries: Vec<InboxEntry>,
        retry: bool,
    ) -> Result<Vec<InboxEntry>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let routing = self.routing();
        let mut by_database: BTreeMap<u64, Vec<InboxEntry>> = BTreeMap::new();
        for entry in entries {
            let owner = routing.map.owner(self.shard_of(entry.user_id));
            by_database.entry(owner).or_default().push(entry);
        }
        let deliveries = by_database.into_iter().map(|(id, entries)| {
            let write = Write::Deliver { message: message.clone(), entries, retry };
            let writer = &routing.databases[&id].writer;
            async move {
                match writer.write(write).await {
                    // A racing attempt of the same send wrote an entry first: this attempt
                    // lost, and its retry finds the entry.
                    Err(SqlError::AlreadyExists) => Err(SqlError::Conflict),
                    other => other,
                }
            }
        });
        let mut written = Vec::new();
        for done in futures_util::future::try_join_all(deliveries).await? {
            if let Written::Entries(entries) = done {
                written.extend(entries);
            }
        }
        // Every entry is committed: the send is done. The marks go with a later batch of
        // the sender's database, unwaited; if that is lost, the janitor finds every entry
        // present and clears them then.
        let (writer, message_id) = (home.writer.clone(), message.id);
        tokio::spawn(async move {
            if let Err(error) = writer.write(Write::ClearPending { message_id }).await {
                tracing::warn!(message_id, %error, "clearing pending marks failed");
            }
        });
        Ok(written)
    }

    /// A send, started again by the map read again each time one of its writes meets a
    /// logical shard that has moved.
    async fn append_following(&self, req: AppendRequest) -> Result<AppendResponse> {
        let started = Instant::now();
        loop {
            let version = self.routing().map.version;
            match self.append(req.clone()).await {
                Err(SqlError::Moved) => self.await_move(version, started).await?,
                other => return other,
            }
        }
    }

    /// A new send costs no read of its own: the database's writer reads the retry records
    /// of its whole batch at once.
    async fn append(&self, req: AppendRequest) -> Result<AppendResponse> {
        let mut message = req.message.ok_or(SqlError::NotFound("message body"))?;
        db_id(message.from_user_id, "user")?;
        let routing = self.routing();
        let sender_shard = self.shard_of(message.from_user_id);
        let home = routing.database(sender_shard).clone();
        let (local, remote): (Vec<InboxEntry>, Vec<InboxEntry>) = req
            .entries
            .iter()
            .partition(|e| routing.map.owner(self.shard_of(e.user_id)) == home.id);
        let sender_version =
            local.iter().find(|e| e.user_id == message.from_user_id).map_or(0, |e| e.version);
        message.id = self.mint("message", sender_shard).await?;
        let write = Write::Home {
            message: message.clone(),
            local,
            remote: remote.iter().map(|e| e.user_id).collect(),
            sender_version,
        };
        let mut written = match home.writer.write(write).await {
            Ok(Written::Entries(local)) => local,
            // Recorded before, or by a concurrent attempt that committed first.
            Ok(Written::Recorded) | Err(SqlError::AlreadyExists) => {
                return self.complete(&home, &message, req.entries).await;
            }
            Err(other) => return Err(other),
        };
        written.extend(self.deliver_remote(&home, &message, remote, false).await?);
        Ok(AppendResponse { message: Some(message), sender_version, duplicate: false, written })
    }

    /// A send seen before: writes what an earlier attempt left pending, using this attempt's
    /// versions; a duplicate when nothing was.
    async fn complete(
        &self,
        home: &Database,
        attempt: &Message,
        entries: Vec<InboxEntry>,
    ) -> Result<AppendResponse> {
        let sent = sqlx::query(self.q().sent_find)
            .bind(attempt.from_user_id as i64)
            .bind(&attempt.client_msg_id)
            .fetch_optional(&home.pool())
            .await?
            .ok_or(SqlError::NotFound("message"))?;
        let message_id: i64 = sent.try_get(0)?;
        let sender_version = sent.try_get::<i64, _>(1)? as u64;
        let row = sqlx::query(self.q().message_by_id)
            .bind(message_id)
            .fetch_optional(&home.pool())
            .await?
            .ok_or(SqlError::NotFound("message"))?;
        let message = message_row(&row, 0)?;
        let pending: Vec<u64> = sqlx::query(self.q().pending_list)
            .bind(message_id)
            .fetch_all(&home.pool())
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0).map(|id| id as u64))
            .collect::<Result<_, _>>()?;
        let todo: Vec<InboxEntry> =
            entries.into_iter().filter(|e| pending.contains(&e.user_id)).collect();
        let written = self.deliver_remote(home, &message, todo, true).await?;
        Ok(AppendResponse {
            message: Some(message),
            sender_version,
            duplicate: pending.is_empty(),
            written,
        })
    }

    /// The sends of one database whose pending marks are due, each claimed by this call;
    /// those of senders whose logical shard has moved away are left to the move.
    async fn claim_pending_on(
        &self,
        shard: &Database,
        req: &ClaimPendingRequest,
    ) -> Result<Vec<PendingSend>> {
        let q = self.q();
        let due: Vec<i64> = sqlx::query(q.pending_due)
            .bind(req.created_before_ms)
            .bind(req.now_ms)
            .bind(i64::from(req.limit))
            .fetch_all(&shard.pool())
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut sends = Vec::with_capacity(due.len());
        let routing = self.routing();
        for message_id in due {
            if routing.map.owner(self.shard_of(message_id as u64)) != shard.id {
                continue;
            }
            let claimed = sqlx::query(q.pending_claim)
                .bind(req.claimed_until_ms)
                .bind(message_id)
                .bind(req.now_ms)
                .execute(&shard.pool())
                .await?;
            if claimed.rows_affected() == 0 {
                continue; // Another caller claimed it meanwhile.
            }
            let user_ids: Vec<u64> = sqlx::query(q.pending_list)
                .bind(message_id)
                .fetch_all(&shard.pool())
                .await?
                .iter()
                .map(|row| row.try_get::<i64, _>(0).map(|id| id as u64))
                .collect::<Result<_, _>>()?;
            let row =
                sqlx::query(q.message_by_id).bind(message_id).fetch_optional(&shard.pool()).await?;
            match row {
                Some(row) if !user_ids.is_empty() => {
                    sends.push(PendingSend { message: Some(message_row(&row, 0)?), user_ids });
                }
                Some(_) => {}
                None => tracing::warn!(message_id, "a pending send's message is gone"),
            }
        }
        Ok(sends)
    }

    /// Deletes what every device of a user has acknowledged, a user per transaction; users
    /// whose logical shard this database may not write now (a move is switching it over or
    /// deleting what it left) wait for the next round.
    async fn collect_on(&self, shard: &Database, req: &CollectRequest) -> Result<CollectResponse> {
        let q = self.q();
        let due: Vec<(i64, i64)> = sqlx::query(q.marks_due)
            .bind(req.delivered_before_ms)
            .bind(i64::from(req.limit))
            .fetch_all(&shard.pool())
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let mut done = CollectResponse::default();
        for (user_id, version) in due {
            let mut tx = shard.pool().begin().await?;
            let user = [Item::User(user_id as u64)];
            if !crate::map::claim_items(&mut tx, q, self.inner.logical, &user).await? {
                continue;
            }
            let message_ids: Vec<i64> = sqlx::query(q.entries_upto)
                .bind(user_id)
                .bind(version)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            for message_id in message_ids {
                sqlx::query(q.message_release).bind(message_id).execute(&mut *tx).await?;
                let deleted = sqlx::query(q.message_delete)
                    .bind(message_id)
                    .bind(message_id)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() > 0 {
                    done.messages_deleted += 1;
                    // The retry window closes with the sender's copy.
                    sqlx::query(q.sent_delete).bind(message_id).execute(&mut *tx).await?;
                }
            }
            let entries =
                sqlx::query(q.entries_delete).bind(user_id).bind(version).execute(&mut *tx).await?;
            done.inbox_entries_deleted += entries.rows_affected();
            sqlx::query(q.marks_delete).bind(user_id).bind(version).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok(done)
    }
}

#[async_trait::async_trait]
impl MessageStore for SqlStore {
    async fn append(&self, _: &Ctx, req: AppendRequest) -> Result<AppendResponse, Status> {
        Ok(self.append_following(req).await?)
    }

    async fn read_inbox(&self, _: &Ctx, req: InboxQuery) -> Result<InboxPage, Status> {
        let Ok(user_id) = db_id(req.user_id, "user") else {
            return Ok(InboxPage::default());
        };
        let rows = sqlx::query(self.q().inbox_read)
            .bind(user_id)
            .bind(req.after_version.min(i64::MAX as u64) as i64)
            .bind(i64::from(req.limit) + 1)
            .fetch_all(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        Ok(inbox_page(&rows, req.limit)?)
    }

    async fn search(&self, _: &Ctx, req: SearchQuery) -> Result<InboxPage, Status> {
        let Ok(user_id) = db_id(req.user_id, "user") else {
            return Ok(InboxPage::default());
        };
        if req.terms.is_empty() {
            return Ok(InboxPage::default());
        }
        let mut matching = match self.inner.dialect {
            Dialect::MySql => {
                req.terms.iter().map(|t| format!("+{t}")).collect::<Vec<_>>().join(" ")
            }
            Dialect::Postgres => req.terms.join(" & "),
        };
        if !req.scopes.is_empty() {
            match self.inner.dialect {
                Dialect::MySql => matching.push_str(&format!(" +({})", req.scopes.join(" "))),
                Dialect::Postgres => matching.push_str(&format!(" & ({})", req.scopes.join(" | "))),
            }
        }
        // Bounds beyond what the columns hold mean no bound at all.
        let id = |value: u64| i64::try_from(value).unwrap_or(0);
        let (before, peer, group, sender) =
            (id(req.before_version), id(req.peer_id), id(req.group_id), id(req.sender_id));
        let rows = sqlx::query(self.q().message_search)
            .bind(user_id)
            .bind(matching)
            .bind(before)
            .bind(before)
            .bind(peer)
            .bind(user_id)
            .bind(peer)
            .bind(peer)
            .bind(user_id)
            .bind(group)
            .bind(group)
            .bind(sender)
            .bind(sender)
            .bind(req.after_ms)
            .bind(req.after_ms)
            .bind(req.before_ms)
            .bind(req.before_ms)
            .bind(i64::from(req.limit) + 1)
            .fetch_all(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        Ok(inbox_page(&rows, req.limit)?)
    }

    /// A message the user holds, as its home copy has it (see `replace`).
    async fn get(&self, _: &Ctx, req: MessageRef) -> Result<Message, Status> {
        let user_id = db_id(req.user_id, "user")?;
        let message_id = db_id(req.message_id, "message")?;
        let routing = self.routing();
        let own = routing.database(self.shard_of(req.user_id));
        let held = sqlx::query(self.q().message_held)
            .bind(user_id)
            .bind(message_id)
            .fetch_optional(&own.pool())
            .await
            .map_err(SqlError::from)?
            .ok_or(SqlError::NotFound("message"))?;
        for shard in routing.databases.values() {
            if shard.id == own.id {
                break;
            }
            let home = sqlx::query(self.q().message_by_id)
                .bind(message_id)
                .fetch_optional(&shard.pool())
                .await
                .map_err(SqlError::from)?;
            if let Some(home) = home {
                return Ok(message_row(&home, 0)?);
            }
        }
        Ok(message_row(&held, 0)?)
    }

    /// Updates the copy on every database (one without a copy changes nothing): whoever held
    /// it, even a member who has left the group since, sees the new content.
    ///
    /// The copy on the first database that has one is the message's home: each change locks it
    /// first and commits it last, so changes of one message, from any logic node, take turns
    /// and leave every copy alike. A compare-and-set compares with the home copy, which `get`
    /// reads; a change cut off before its home commit is overwritten by the next one.
    async fn replace(&self, _: &Ctx, req: ReplaceMessageRequest) -> Result<Empty, Status> {
        let message = req.message.ok_or(SqlError::NotFound("message body"))?;
        let message_id = db_id(message.id, "message")?;
        let extra = extra::encode(&message);
        let terms = missive_search::document(&message);
        let expected = req.compare.then(|| Some(req.expected_extra).filter(|b| !b.is_empty()));
        let update = || {
            sqlx::query(self.q().message_replace)
                .bind(i64::from(message.kind))
                .bind(&message.text)
                .bind(extra.clone())
                .bind(&terms)
                .bind(message_id)
        };
        let mut home = None;
        for shard in self.routing().databases.values() {
            if home.is_some() {
                update().execute(&shard.pool()).await.map_err(SqlError::from)?;
                continue;
            }
            let mut tx = shard.pool().begin().await.map_err(SqlError::from)?;
            let locked = sqlx::query(self.q().message_lock)
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(SqlError::from)?;
            let Some(locked) = locked else { continue };
            let stored: Option<Vec<u8>> = locked.try_get(0).map_err(SqlError::from)?;
            if expected.as_ref().is_some_and(|expected| *expected != stored) {
                return Err(
                    SqlError::Stale(format!("message {} changed meanwhile", message.id)).into()
                );
            }
            update().execute(&mut *tx).await.map_err(SqlError::from)?;
            home = Some(tx);
        }
        let home = home.ok_or(SqlError::NotFound("message"))?;
        home.commit().await.map_err(SqlError::from)?;
        Ok(Empty {})
    }

    async fn claim_pending(
        &self,
        _: &Ctx,
        req: ClaimPendingRequest,
    ) -> Result<PendingSends, Status> {
        let mut sends = Vec::new();
        for shard in self.routing().databases.values() {
            sends.extend(self.claim_pending_on(shard, &req).await?);
        }
        Ok(PendingSends { sends })
    }

    async fn collect(&self, _: &Ctx, req: CollectRequest) -> Result<CollectResponse, Status> {
        let mut done = CollectResponse::default();
        for shard in self.routing().databases.values() {
            let shard_done = self.collect_on(shard, &req).await?;
            done.inbox_entries_deleted += shard_done.inbox_entries_deleted;
            done.messages_deleted += shard_done.messages_deleted;
        }
        Ok(done)
    }
}
