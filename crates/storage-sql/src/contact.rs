//! Contacts (data type 2): one current entry per (owner, peer) on the owner's logical shard, which
//! Sync reads by version; `contact_heads` keeps each owner's changes in version order.

use crate::lookup::Key;
use crate::map::Item;
use crate::{Fence, Result, SqlError, SqlStore, db_id};
use missive_proto::client::Contact;
use missive_proto::internal::{
    ContactChanges, ContactChangesRequest, ContactEntry, ContactList, ContactRecord, ContactRef,
    ContactStore, Empty, PutContactsRequest, UserRef,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use sqlx::Row;
use sqlx::any::AnyRow;

/// (version, contact) from a `SELECT version, body` row.
/// A contact entry's version and body, from the columns at `first` and after.
fn entry(row: &AnyRow, first: usize) -> Result<(u64, Contact)> {
    let version = row.try_get::<i64, _>(first)? as u64;
    let body: Vec<u8> = row.try_get(first + 1)?;
    let contact =
        Contact::decode(&*body).map_err(|e| SqlError::Corrupt(format!("contact entry: {e}")))?;
    Ok((version, contact))
}

impl SqlStore {
    /// Writes the records of owners on one database.
    async fn put_on_database(&self, records: Vec<ContactRecord>) -> Result<()> {
        let q = self.q();
        let items: Vec<Item> = records.iter().map(|r| Item::User(r.owner_id)).collect();
        let mut tx = self.begin_owned(&items).await?;
        for record in &records {
            let contact = record.contact.as_ref().ok_or(SqlError::NotFound("contact body"))?;
            let fence = Fence {
                advance: q.contact_head_advance,
                insert: q.contact_head_insert,
                what: "contact",
            };
            self.advance_fence(&mut tx, fence, record.owner_id, record.version).await?;
            sqlx::query(q.contact_upsert)
                .bind(db_id(record.owner_id, "user")?)
                .bind(db_id(contact.user_id, "contact")?)
                .bind(record.version as i64)
                .bind(contact.encode_to_vec())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ContactStore for SqlStore {
    async fn changes(&self, _: &Ctx, req: ContactChangesRequest) -> Result<ContactChanges, Status> {
        db_id(req.user_id, "user")?;
        let key = Key::Changes { owner: req.user_id, after: req.after_version, limit: req.limit };
        let rows = self.user_db(req.user_id).lookups.read(key).await?;
        let entries = rows
            .iter()
            .map(|row| entry(row, 1).map(|(version, c)| ContactEntry { version, contact: Some(c) }))
            .collect::<Result<Vec<_>>>()?;
        Ok(ContactChanges { entries })
    }

    async fn get(&self, _: &Ctx, req: ContactRef) -> Result<ContactRecord, Status> {
        db_id(req.owner_id, "user")?;
        db_id(req.peer_id, "contact")?;
        let key = Key::Contact { owner: req.owner_id, peer: req.peer_id };
        let row = self.user_db(req.owner_id).lookups.get(key).await?;
        let (version, contact) = entry(&*row.ok_or(SqlError::NotFound("contact"))?, 2)?;
        Ok(ContactRecord { owner_id: req.owner_id, version, contact: Some(contact) })
    }

    async fn put(&self, _: &Ctx, req: PutContactsRequest) -> Result<Empty, Status> {
        let owner = |record: &ContactRecord| record.owner_id;
        let put = |records| Box::pin(self.put_on_database(records)) as _;
        self.by_database(req.records, owner, put).await?;
        Ok(Empty {})
    }

    async fn list(&self, _: &Ctx, req: UserRef) -> Result<ContactList, Status> {
        let rows = sqlx::query(self.q().contact_list)
            .bind(db_id(req.user_id, "user")?)
            .fetch_all(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        let mut records = Vec::new();
        for row in &rows {
            let (version, contact) = entry(row, 0)?;
            if contact.relation != 0 || contact.blocked {
                records.push(ContactRecord {
                    owner_id: req.user_id,
                    version,
                    contact: Some(contact),
                });
            }
        }
        Ok(ContactList { records })
    }
}
