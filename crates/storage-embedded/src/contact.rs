//! Contacts (data type 2): one current entry per (owner, peer), which Sync reads by version.

use crate::db::{EmbeddedStore, Result, StoreError};
use missive_proto::client::Contact;
use missive_proto::internal::{
    ContactChanges, ContactChangesRequest, ContactEntry, ContactList, ContactRecord, ContactRef,
    ContactStore, Empty, PutContactsRequest, UserRef,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, params};

fn newest_contact_version(conn: &Connection, owner_id: u64) -> Result<u64> {
    let newest: Option<u64> = conn
        .prepare_cached("SELECT MAX(version) FROM contacts WHERE owner_id = ?1")?
        .query_row([owner_id], |row| row.get(0))?;
    Ok(newest.unwrap_or(0))
}

fn decode(body: &[u8]) -> Result<Contact> {
    Contact::decode(body).map_err(|e| StoreError::Corrupt(format!("contact entry: {e}")))
}

fn record(owner_id: u64, version: u64, body: &[u8]) -> Result<ContactRecord> {
    Ok(ContactRecord { owner_id, version, contact: Some(decode(body)?) })
}

/// A row of `SELECT version, body FROM contacts`.
fn version_and_body(row: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, Vec<u8>)> {
    Ok((row.get(0)?, row.get(1)?))
}

/// `owner`'s entry for `peer`, if it has one.
fn entry(conn: &Connection, owner_id: u64, peer_id: u64) -> Result<Option<ContactRecord>> {
    let row = conn
        .prepare_cached("SELECT version, body FROM contacts WHERE owner_id = ?1 AND peer_id = ?2")?
        .query_row([owner_id, peer_id], version_and_body)
        .optional()?;
    row.map(|(version, body)| record(owner_id, version, &body)).transpose()
}

/// Writes the entries in order, each above its owner's newest contact version.
fn put(conn: &Connection, records: &[ContactRecord]) -> Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO contacts (owner_id, peer_id, version, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (owner_id, peer_id) DO UPDATE SET version = excluded.version,
                                                       body = excluded.body",
    )?;
    for record in records {
        let contact = record.contact.as_ref().ok_or(StoreError::NotFound("contact body"))?;
        let newest = newest_contact_version(conn, record.owner_id)?;
        if record.version <= newest {
            return Err(StoreError::Stale(format!(
                "contact version {} of user {} is not above {newest}",
                record.version, record.owner_id
            )));
        }
        upsert.execute(params![
            record.owner_id,
            contact.user_id,
            record.version,
            contact.encode_to_vec()
        ])?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl ContactStore for EmbeddedStore {
    async fn changes(&self, _: &Ctx, req: ContactChangesRequest) -> Result<ContactChanges, Status> {
        let newest = match self.caches().contact_version(req.user_id) {
            Some(newest) => newest,
            None => {
                let generation = self.caches().contact_generation(req.user_id);
                let newest = self.read(|conn| newest_contact_version(conn, req.user_id)).await?;
                self.caches().put_read_contact_version(req.user_id, newest, generation);
                newest
            }
        };
        if req.after_version >= newest {
            return Ok(ContactChanges::default());
        }
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT version, body FROM contacts
                     WHERE owner_id = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
                )?
                .query_map(params![req.user_id, req.after_version, req.limit], version_and_body)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let entries = rows
                .into_iter()
                .map(|(version, body)| Ok(ContactEntry { version, contact: Some(decode(&body)?) }))
                .collect::<Result<_>>()?;
            Ok(ContactChanges { entries })
        })
        .await
    }

    async fn get(&self, _: &Ctx, req: ContactRef) -> Result<ContactRecord, Status> {
        let (owner_id, peer_id) = (req.owner_id, req.peer_id);
        let found = match self.caches().contact(owner_id, peer_id) {
            Some(found) => found,
            // Every entry has a version above 0, so an owner whose newest is 0 has none (the
            // version is cached for every user who synced lately).
            None if self.caches().contact_version(owner_id) == Some(0) => None,
            None => {
                let generation = self.caches().contact_entry_generation(owner_id, peer_id);
                let found = self.read(move |conn| entry(conn, owner_id, peer_id)).await?;
                self.caches().put_read_contact(owner_id, peer_id, found.clone(), generation);
                found
            }
        };
        found.ok_or_else(|| StoreError::NotFound("contact").into())
    }

    async fn put(&self, _: &Ctx, req: PutContactsRequest) -> Result<Empty, Status> {
        let store = self.clone();
        self.write_then(
            move |conn| put(conn, &req.records).map(|()| req.records),
            move |written| {
                for record in written {
                    store.caches().contact_written(record);
                }
            },
        )
        .await?;
        Ok(Empty {})
    }

    async fn list(&self, _: &Ctx, req: UserRef) -> Result<ContactList, Status> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT version, body FROM contacts WHERE owner_id = ?1 ORDER BY peer_id",
                )?
                .query_map([req.user_id], version_and_body)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut records = Vec::new();
            for (version, body) in rows {
                let record = record(req.user_id, version, &body)?;
                let contact = record.contact.as_ref().expect("decoded above");
                if contact.relation != 0 || contact.blocked {
                    records.push(record);
                }
            }
            Ok(ContactList { records })
        })
        .await
    }
}
