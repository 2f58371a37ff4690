//! Contacts (data type 2): the change log that Sync reads under the contact key.

use crate::db::EmbeddedStore;
use missive_proto::client::Contact;
use missive_proto::internal::{ContactChanges, ContactChangesRequest, ContactEntry, ContactStore};
use missive_rpc::{Ctx, Status};
use rusqlite::{Connection, params};

fn newest_contact_version(conn: &Connection, user_id: u64) -> crate::db::Result<u64> {
    let newest: Option<u64> = conn
        .prepare_cached("SELECT MAX(version) FROM contact_changes WHERE user_id = ?1")?
        .query_row([user_id], |row| row.get(0))?;
    Ok(newest.unwrap_or(0))
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
            let entries = conn
                .prepare_cached(
                    "SELECT version, contact_user_id, username, nickname FROM contact_changes
                     WHERE user_id = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
                )?
                .query_map(params![req.user_id, req.after_version, req.limit], |row| {
                    Ok(ContactEntry {
                        version: row.get(0)?,
                        contact: Some(Contact {
                            user_id: row.get(1)?,
                            username: row.get(2)?,
                            nickname: row.get(3)?,
                        }),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ContactChanges { entries })
        })
        .await
    }
}
