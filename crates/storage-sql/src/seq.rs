//! The version allocator's persisted upper bounds, on each user's logical shard.

use crate::map::Item;
use crate::{SqlError, SqlStore, db_id};
use missive_proto::internal::{Empty, SeqSection, SeqStore, StoreMaxRequest, UserRef};
use missive_rpc::{Ctx, Status};
use sqlx::Row;

#[async_trait::async_trait]
impl SeqStore for SqlStore {
    async fn load_max(&self, _: &Ctx, req: UserRef) -> Result<SeqSection, Status> {
        let user_id = db_id(req.user_id, "user")?;
        let row = sqlx::query(self.q().seq_load)
            .bind(user_id)
            .fetch_optional(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        let max_version = match row {
            Some(row) => row.try_get::<i64, _>(0).map_err(SqlError::from)? as u64,
            None => 0,
        };
        Ok(SeqSection { user_id: req.user_id, max_version })
    }

    async fn store_max(&self, _: &Ctx, req: StoreMaxRequest) -> Result<Empty, Status> {
        let user_id = db_id(req.user_id, "user")?;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        let moved = if req.expected_max == 0 {
            sqlx::query(self.q().seq_insert)
                .bind(user_id)
                .bind(req.max_version as i64)
                .execute(&mut *tx)
                .await
        } else {
            sqlx::query(self.q().seq_move)
                .bind(req.max_version as i64)
                .bind(user_id)
                .bind(req.expected_max as i64)
                .execute(&mut *tx)
                .await
        }
        .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        if moved.rows_affected() == 0 {
            let current = self.load_max(&Ctx::new(0), UserRef { user_id: req.user_id }).await?;
            return Err(SqlError::Stale(format!(
                "the bound of user {} is {}, not {}",
                req.user_id, current.max_version, req.expected_max
            ))
            .into());
        }
        Ok(Empty {})
    }
}
