//! Contacts (data type 2): the change log that Sync reads under the contact key.

use crate::{SqlError, SqlStore, db_id};
use missive_proto::client::Contact;
use missive_proto::internal::{ContactChanges, ContactChangesRequest, ContactEntry, ContactStore};
use missive_rpc::{Ctx, Status};
use sqlx::Row;

#[async_trait::async_trait]
impl ContactStore for SqlStore {
    async fn changes(&self, _: &Ctx, req: ContactChangesRequest) -> Result<ContactChanges, Status> {
        let user_id = db_id(req.user_id, "user")?;
        let rows = sqlx::query(self.q().contact_changes)
            .bind(user_id)
            .bind(req.after_version.min(i64::MAX as u64) as i64)
            .bind(i64::from(req.limit))
            .fetch_all(&self.user_shard(req.user_id).pool)
            .await
            .map_err(SqlError::from)?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(ContactEntry {
                    version: row.try_get::<i64, _>(0)? as u64,
                    contact: Some(Contact {
                        user_id: row.try_get::<i64, _>(1)? as u64,
                        username: row.try_get(2)?,
                        nickname: row.try_get(3)?,
                    }),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(SqlError::from)?;
        Ok(ContactChanges { entries })
    }
}
