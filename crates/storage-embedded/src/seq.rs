//! The version allocator's persisted upper bounds.

use crate::db::EmbeddedStore;
use missive_proto::internal::{Empty, SeqSection, SeqStore, UserRef};
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

    async fn store_max(&self, _: &Ctx, req: SeqSection) -> Result<Empty, Status> {
        self.write(move |conn| {
            // Never lowers a bound: a stale writer cannot make versions reusable.
            conn.prepare_cached(
                "INSERT INTO seq_max (user_id, max_version) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET max_version = MAX(max_version, excluded.max_version)",
            )?
            .execute([req.user_id, req.max_version])?;
            Ok(Empty {})
        })
        .await
    }
}
