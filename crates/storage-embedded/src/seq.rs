//! The version allocator's persisted upper bounds.

use crate::db::{EmbeddedStore, StoreError};
use missive_proto::internal::{Empty, SeqSection, SeqStore, StoreMaxRequest, UserRef};
use missive_rpc::{Ctx, Status};
use rusqlite::OptionalExtension;

#[async_trait::async_trait]
impl SeqStore for EmbeddedStore {
    async fn load_max(&self, _: &Ctx, req: UserRef) -> Result<SeqSection, Status> {
        self.read(move |conn| {
            let max_version = conn
                .prepare_cached("SELECT max_version FROM seq_max WHERE user_id = ?1")?
                .query_row([req.user_id], |row| row.get(0))
                .optional()?
                .unwrap_or(0);
            Ok(SeqSection { user_id: req.user_id, max_version })
        })
        .await
    }

    async fn store_max(&self, _: &Ctx, req: StoreMaxRequest) -> Result<Empty, Status> {
        self.write(move |conn| {
            let moved = if req.expected_max == 0 {
                conn.prepare_cached(
                    "INSERT INTO seq_max (user_id, max_version) VALUES (?1, ?2)
                     ON CONFLICT (user_id) DO NOTHING",
                )?
                .execute([req.user_id, req.max_version])?
            } else {
                conn.prepare_cached(
                    "UPDATE seq_max SET max_version = ?3 WHERE user_id = ?1 AND max_version = ?2",
                )?
                .execute([req.user_id, req.expected_max, req.max_version])?
            };
            if moved == 0 {
                let current: Option<u64> = conn
                    .prepare_cached("SELECT max_version FROM seq_max WHERE user_id = ?1")?
                    .query_row([req.user_id], |row| row.get(0))
                    .optional()?;
                return Err(StoreError::Stale(format!(
                    "the bound of user {} is {}, not {}",
                    req.user_id,
                    current.unwrap_or(0),
                    req.expected_max
                )));
            }
            Ok(Empty {})
        })
        .await
    }
}
