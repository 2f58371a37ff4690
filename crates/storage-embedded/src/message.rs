//! Messages and inboxes (data type 3): a message is stored once and referenced by one inbox
//! entry per recipient, each under that user's version.

use crate::db::{EmbeddedStore, Result, StoreError};
use missive_proto::client::Message;
use missive_proto::extra;
use missive_proto::internal::{
    AppendRequest, AppendResponse, ClaimPendingRequest, CollectRequest, CollectResponse, Empty,
    InboxItem, InboxPage, InboxQuery, MessageRef, MessageStore, PendingSends,
    ReplaceMessageRequest, SearchQuery,
};
use missive_rpc::{Ctx, Status};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::Arc;

// A macro, so that `concat!` splices it into statements built at compile time (a `format!`
// per call would allocate and hash each statement again for the statement cache).
macro_rules! message_columns {
    () => {
        "m.message_id, m.from_user_id, m.from_name, m.to_user_id, m.to_name, m.kind, m.text, \
         m.sent_at_ms, m.client_msg_id, m.extra"
    };
}

fn message_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Message> {
    let mut message = Message {
        id: row.get(first)?,
        from_user_id: row.get(first + 1)?,
        from: row.get(first + 2)?,
        to_user_id: row.get(first + 3)?,
        to: row.get(first + 4)?,
        kind: row.get(first + 5)?,
        text: row.get(first + 6)?,
        sent_at_ms: row.get(first + 7)?,
        client_msg_id: row.get(first + 8)?,
        ..Message::default()
    };
    if let Some(extra) = row.get::<_, Option<Vec<u8>>>(first + 9)? {
        extra::merge(&mut message, &extra).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                first + 9,
                rusqlite::types::Type::Blob,
                Box::new(e),
            )
        })?;
    }
    Ok(message)
}

/// The message a sender stored under a client id, and its version in the sender's inbox (0
/// once that entry has been collected).
fn find_by_client_id(
    conn: &Connection,
    from_user_id: u64,
    client_msg_id: &str,
) -> Result<Option<AppendResponse>> {
    let found = conn
        .prepare_cached(concat!(
            "SELECT COALESCE(i.version, 0), ",
            message_columns!(),
            " FROM messages m
             LEFT JOIN inbox i ON i.message_id = m.message_id AND i.user_id = m.from_user_id
             WHERE m.from_user_id = ?1 AND m.client_msg_id = ?2"
        ))?
        .query_row(params![from_user_id, client_msg_id], |row| {
            Ok((row.get::<_, u64>(0)?, message_row(row, 1)?))
        })
        .optional()?;
    Ok(found.map(|(sender_version, message)| AppendResponse {
        message: Some(message),
        sender_version,
        duplicate: true,
        written: Vec::new(),
    }))
}

/// Stores a message and its inbox entries (`written` says which: none for a duplicate).
fn append(conn: &Connection, req: AppendRequest) -> Result<AppendResponse> {
    let mut message = req.message.ok_or(StoreError::NotFound("message body"))?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (from_user_id, from_name, to_user_id, to_name, kind, text,
                                   sent_at_ms, client_msg_id, refs, extra, terms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            message.from_user_id,
            message.from,
            message.to_user_id,
            message.to,
            message.kind,
            message.text,
            message.sent_at_ms,
            message.client_msg_id,
            req.entries.len() as u64,
            extra::encode(&message),
            missive_search::document(&message),
        ])
        .map_err(StoreError::from_sqlite);
    match inserted {
        Ok(_) => {}
        Err(StoreError::AlreadyExists) => {
            let stored = find_by_client_id(conn, message.from_user_id, &message.client_msg_id)?;
            return stored.ok_or(StoreError::NotFound("message"));
        }
        Err(other) => return Err(other),
    }
    message.id = conn.last_insert_rowid() as u64;
    let mut insert_entry = conn
        .prepare_cached("INSERT INTO inbox (user_id, version, message_id) VALUES (?1, ?2, ?3)")?;
    let mut advance_head = conn.prepare_cached(
        "INSERT INTO inbox_heads (user_id, version) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET version = excluded.version
         WHERE excluded.version > inbox_heads.version",
    )?;
    let mut sender_version = 0;
    for entry in &req.entries {
        if advance_head.execute([entry.user_id, entry.version])? == 0 {
            return Err(StoreError::Stale(format!(
                "version {} of user {} is not above the inbox head",
                entry.version, entry.user_id
            )));
        }
        insert_entry
            .execute([entry.user_id, entry.version, message.id])
            .map_err(StoreError::from_sqlite)?;
        if entry.user_id == message.from_user_id {
            sender_version = entry.version;
        }
    }
    Ok(AppendResponse {
        message: Some(message),
        sender_version,
        duplicate: false,
        written: req.entries,
    })
}

fn read_inbox(conn: &Connection, req: &InboxQuery) -> Result<InboxPage> {
    let mut items = conn
        .prepare_cached(concat!(
            "SELECT i.version, ",
            message_columns!(),
            " FROM inbox i JOIN messages m ON m.message_id = i.message_id
             WHERE i.user_id = ?1 AND i.version > ?2
             ORDER BY i.version LIMIT ?3"
        ))?
        .query_map(params![req.user_id, req.after_version, req.limit + 1], |row| {
            Ok(InboxItem { version: row.get(0)?, message: Some(message_row(row, 1)?) })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    Ok(InboxPage { items, more })
}

/// Deletes entries below delivery marks older than the cutoff, then messages nobody holds.
/// Also returns, per user, the version up to which entries went, for the cache.
fn collect(conn: &Connection, req: &CollectRequest) -> Result<(CollectResponse, Vec<(u64, u64)>)> {
    let due: Vec<(u64, u64)> = conn
        .prepare_cached(
            "SELECT user_id, MAX(version) FROM delivery_marks WHERE at_ms <= ?1
             GROUP BY user_id LIMIT ?2",
        )?
        .query_map(params![req.delivered_before_ms, req.limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut done = CollectResponse::default();
    let mut entries =
        conn.prepare_cached("SELECT message_id FROM inbox WHERE user_id = ?1 AND version <= ?2")?;
    let mut release = conn.prepare_cached(
        "UPDATE messages SET refs = refs - 1 WHERE message_id = ?1 RETURNING refs",
    )?;
    let mut delete_message = conn.prepare_cached("DELETE FROM messages WHERE message_id = ?1")?;
    let mut delete_entries =
        conn.prepare_cached("DELETE FROM inbox WHERE user_id = ?1 AND version <= ?2")?;
    let mut delete_marks =
        conn.prepare_cached("DELETE FROM delivery_marks WHERE user_id = ?1 AND version <= ?2")?;
    for &(user_id, version) in &due {
        let message_ids = entries
            .query_map([user_id, version], |row| row.get::<_, u64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for message_id in message_ids {
            let refs: i64 = release.query_row([message_id], |row| row.get(0))?;
            if refs <= 0 {
                done.messages_deleted += delete_message.execute([message_id])? as u64;
            }
        }
        done.inbox_entries_deleted += delete_entries.execute([user_id, version])? as u64;
        delete_marks.execute([user_id, version])?;
    }
    Ok((done, due))
}

/// The user's inbox entries whose message holds every term, newest first.
fn search(conn: &Connection, req: &SearchQuery) -> Result<InboxPage> {
    let mut terms: Vec<String> = req.terms.iter().map(|t| format!("\"{t}\"")).collect();
    if !req.scopes.is_empty() {
        let scopes: Vec<String> = req.scopes.iter().map(|t| format!("\"{t}\"")).collect();
        terms.push(format!("({})", scopes.join(" OR ")));
    }
    let mut items = conn
        .prepare_cached(concat!(
            "SELECT i.version, ",
            message_columns!(),
            // CROSS JOIN keeps this order: the full-text index first (its hits are few, the
            // searcher's scope narrows them), never the user's whole inbox row by row.
            " FROM message_terms t
             CROSS JOIN messages m ON m.message_id = t.rowid
             CROSS JOIN inbox i ON i.message_id = m.message_id AND i.user_id = ?1
             WHERE message_terms MATCH ?2
               AND (?3 = 0 OR i.version < ?3)
               AND (?4 = 0 OR (m.from_user_id = ?1 AND m.to_user_id = ?4)
                           OR (m.from_user_id = ?4 AND m.to_user_id = ?1))
               AND (?5 = 0 OR m.to_user_id = ?5)
               AND (?6 = 0 OR m.from_user_id = ?6)
               AND (?7 = 0 OR m.sent_at_ms >= ?7)
               AND (?8 = 0 OR m.sent_at_ms < ?8)
             ORDER BY i.version DESC LIMIT ?9"
        ))?
        .query_map(
            params![
                req.user_id,
                terms.join(" AND "),
                req.before_version,
                req.peer_id,
                req.group_id,
                req.sender_id,
                req.after_ms,
                req.before_ms,
                req.limit + 1
            ],
            |row| Ok(InboxItem { version: row.get(0)?, message: Some(message_row(row, 1)?) }),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    Ok(InboxPage { items, more })
}

fn get(conn: &Connection, req: &MessageRef) -> Result<Message> {
    conn.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id
         WHERE i.message_id = ?1 AND i.user_id = ?2"
    ))?
    .query_row([req.message_id, req.user_id], |row| message_row(row, 0))
    .optional()?
    .ok_or(StoreError::NotFound("message"))
}

/// Messages the search backfill reads at once.
const BACKFILL_BATCH: i64 = 2_000;

/// One step of the search backfill (migration 8): the terms of messages stored before search
/// existed, computed from the messages as read, and where the backfill goes on after them.
pub(crate) struct Backfill {
    /// (message id, its text and extra fields as read, its terms).
    terms: Vec<(u64, String, Option<Vec<u8>>, String)>,
    next: i64,
}

/// Reads the backfill's next batch and computes its terms (on a reader connection, so that
/// the tokenizing is not the writer's work); `None` once the backfill is done.
pub(crate) fn backfill_batch(conn: &Connection) -> rusqlite::Result<Option<Backfill>> {
    let (next, upto): (i64, i64) = conn
        .prepare_cached("SELECT next_id, upto FROM search_backfill WHERE id = 0")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if next >= upto {
        return Ok(None);
    }
    let messages = conn
        .prepare_cached(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.message_id > ?1 AND m.message_id <= ?2 AND m.terms = ''
              ORDER BY m.message_id LIMIT ?3"
        ))?
        .query_map(params![next, upto, BACKFILL_BATCH], |row| message_row(row, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = match messages.last() {
        Some(last) if messages.len() as i64 == BACKFILL_BATCH => last.id as i64,
        _ => upto,
    };
    let terms = messages
        .iter()
        .map(|m| (m.id, m.text.clone(), extra::encode(m), missive_search::document(m)))
        .filter(|(.., terms)| !terms.is_empty())
        .collect();
    Ok(Some(Backfill { terms, next }))
}

/// Stores a backfill batch's terms, each only if its message is as it was read (a recall
/// or an edit since then wrote terms of its own), and moves the backfill on.
pub(crate) fn backfill_write(conn: &Connection, batch: &Backfill) -> rusqlite::Result<()> {
    let mut update = conn.prepare_cached(
        "UPDATE messages SET terms = ?2
         WHERE message_id = ?1 AND terms = '' AND text = ?3 AND extra IS ?4",
    )?;
    for (id, text, extra, terms) in &batch.terms {
        update.execute(params![id, terms, text, extra])?;
    }
    conn.prepare_cached("UPDATE search_backfill SET next_id = ?1 WHERE id = 0")?
        .execute([batch.next])?;
    Ok(())
}

/// Replaces a message's kind, text and extra fields; with `expected`, only while its extra
/// fields are still those bytes (`None`: it has none). Returns the users whose inboxes hold it.
fn replace(
    conn: &Connection,
    message: &Message,
    expected: Option<&Option<Vec<u8>>>,
) -> Result<Vec<u64>> {
    let extra = extra::encode(message);
    let terms = missive_search::document(message);
    let updated = match expected {
        None => conn
            .prepare_cached(
                "UPDATE messages SET kind = ?1, text = ?2, extra = ?3, terms = ?5
                 WHERE message_id = ?4",
            )?
            .execute(params![message.kind, message.text, extra, message.id, terms])?,
        Some(expected) => conn
            .prepare_cached(
                "UPDATE messages SET kind = ?1, text = ?2, extra = ?3, terms = ?6
                 WHERE message_id = ?4 AND extra IS ?5",
            )?
            .execute(params![message.kind, message.text, extra, message.id, expected, terms])?,
    };
    if updated == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM messages WHERE message_id = ?1")?
            .exists([message.id])?;
        return Err(if exists {
            StoreError::Stale(format!("message {} changed meanwhile", message.id))
        } else {
            StoreError::NotFound("message")
        });
    }
    let holders = conn
        .prepare_cached("SELECT user_id FROM inbox WHERE message_id = ?1")?
        .query_map([message.id], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<u64>>>()?;
    Ok(holders)
}

#[async_trait::async_trait]
impl MessageStore for EmbeddedStore {
    /// One database, one transaction per send: nothing is ever left pending.
    async fn claim_pending(&self, _: &Ctx, _: ClaimPendingRequest) -> Result<PendingSends, Status> {
        Ok(PendingSends::default())
    }

    async fn append(&self, _: &Ctx, req: AppendRequest) -> Result<AppendResponse, Status> {
        let store = self.clone();
        let stored = self
            .write_then(
                move |conn| append(conn, req),
                move |stored| {
                    if let Some(message) = &stored.message {
                        let message = Arc::new(message.clone());
                        for entry in &stored.written {
                            store.caches().appended(entry.user_id, entry.version, &message);
                        }
                    }
                },
            )
            .await?;
        Ok(stored)
    }

    async fn read_inbox(&self, _: &Ctx, req: InboxQuery) -> Result<InboxPage, Status> {
        if let Some(page) = self.caches().inbox_page(req.user_id, req.after_version, req.limit) {
            return Ok(page);
        }
        self.read(move |conn| read_inbox(conn, &req)).await
    }

    async fn get(&self, _: &Ctx, req: MessageRef) -> Result<Message, Status> {
        self.read(move |conn| get(conn, &req)).await
    }

    async fn replace(&self, _: &Ctx, req: ReplaceMessageRequest) -> Result<Empty, Status> {
        let message = req.message.ok_or_else(|| Status::invalid_argument("message missing"))?;
        let store = self.clone();
        let replaced = Arc::new(message.clone());
        let expected =
            req.compare.then(|| Some(req.expected_extra).filter(|bytes| !bytes.is_empty()));
        self.write_then(
            move |conn| replace(conn, &message, expected.as_ref()),
            move |holders| store.caches().replaced(holders, &replaced),
        )
        .await?;
        Ok(Empty {})
    }

    async fn search(&self, _: &Ctx, req: SearchQuery) -> Result<InboxPage, Status> {
        if req.terms.is_empty() {
            return Ok(InboxPage::default());
        }
        self.read(move |conn| search(conn, &req)).await
    }

    async fn collect(&self, _: &Ctx, req: CollectRequest) -> Result<CollectResponse, Status> {
        let store = self.clone();
        let (done, _) = self
            .write_then(
                move |conn| collect(conn, &req),
                move |(_, collected)| {
                    for &(user_id, version) in collected {
                        store.caches().collected(user_id, version);
                    }
                },
            )
            .await?;
        Ok(done)
    }
}
