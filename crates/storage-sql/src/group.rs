//! Groups: profile and members on the group's own logical shard, `(group_id - 2^50) % L`.

use crate::map::Item;
use crate::{Result, SqlError, SqlStore, db_id};
use missive_proto::ids::GROUP_ID_BASE;
use missive_proto::internal::{
    CreateGroupRequest, GroupMemberRecord, GroupRecord, GroupRef, GroupState, GroupStore,
    WriteGroupRequest,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use sqlx::{Any, Executor, Row, Transaction};

impl SqlStore {
    /// The group's key: its local id.
    fn group_item(group_id: u64) -> Result<Item<'static>> {
        let local = group_id.checked_sub(GROUP_ID_BASE).ok_or(SqlError::NotFound("group"))?;
        Ok(Item::Group(local))
    }

    /// Whether the group exists (a write refused as stale tells a missing group from a moved
    /// one by it).
    async fn group_exists(
        &self,
        tx: &mut Transaction<'static, Any>,
        group_id: u64,
    ) -> Result<bool> {
        let row = sqlx::query(self.q().group_exists)
            .bind(db_id(group_id, "group")?)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }

    /// The group and its members, in one statement.
    async fn read_state<'c, E>(&self, executor: E, group_id: u64) -> Result<GroupState>
    where
        E: Executor<'c, Database = Any>,
    {
        let rows = sqlx::query(self.q().group_state)
            .bind(db_id(group_id, "group")?)
            .fetch_all(executor)
            .await?;
        let first = rows.first().ok_or(SqlError::NotFound("group"))?;
        let body: Vec<u8> = first.try_get(1)?;
        let mut group =
            GroupRecord::decode(&*body).map_err(|e| SqlError::Corrupt(format!("group: {e}")))?;
        group.revision = first.try_get::<i64, _>(0)? as u64;
        let mut members = Vec::with_capacity(rows.len());
        for row in &rows {
            // A group without members still yields its one row, with NULL member columns.
            let Some(user_id) = row.try_get::<Option<i64>, _>(2)? else { continue };
            members.push(GroupMemberRecord {
                user_id: user_id as u64,
                role: row.try_get::<i64, _>(3)? as i32,
                joined_at_ms: row.try_get(4)?,
            });
        }
        Ok(GroupState { group: Some(group), members })
    }

    async fn upsert_members(
        &self,
        tx: &mut Transaction<'static, Any>,
        group_id: u64,
        members: &[GroupMemberRecord],
    ) -> Result<()> {
        for member in members {
            sqlx::query(self.q().group_member_upsert)
                .bind(group_id as i64)
                .bind(db_id(member.user_id, "user")?)
                .bind(i64::from(member.role))
                .bind(member.joined_at_ms)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn state(&self, mut tx: Transaction<'static, Any>, group_id: u64) -> Result<GroupState> {
        let state = self.read_state(&mut *tx, group_id).await?;
        tx.commit().await?;
        Ok(state)
    }
}

#[async_trait::async_trait]
impl GroupStore for SqlStore {
    async fn create(&self, _: &Ctx, req: CreateGroupRequest) -> Result<GroupState, Status> {
        let mut group = req.group.ok_or(SqlError::NotFound("group body"))?;
        // Any logical shard may mint it (the owner's does): the id names the one that did.
        group.group_id = GROUP_ID_BASE + self.mint("group", self.shard_of(group.owner_id)).await?;
        group.revision = 1;
        let mut tx = self.begin_owned(&[Self::group_item(group.group_id)?]).await?;
        sqlx::query(self.q().group_insert)
            .bind(group.group_id as i64)
            .bind(group.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        self.upsert_members(&mut tx, group.group_id, &req.members).await?;
        Ok(self.state(tx, group.group_id).await?)
    }

    async fn get(&self, _: &Ctx, req: GroupRef) -> Result<GroupState, Status> {
        let shard = Self::group_item(req.group_id)?.shard(self.inner.logical);
        Ok(self.read_state(&self.routing().database(shard).pool(), req.group_id).await?)
    }

    async fn write(&self, _: &Ctx, req: WriteGroupRequest) -> Result<GroupState, Status> {
        let group = req.group.ok_or(SqlError::NotFound("group body"))?;
        let mut tx = self.begin_owned(&[Self::group_item(group.group_id)?]).await?;
        let expected = group.revision.wrapping_sub(1);
        let updated = sqlx::query(self.q().group_update)
            .bind(group.revision as i64)
            .bind(group.encode_to_vec())
            .bind(db_id(group.group_id, "group")?)
            .bind(expected as i64)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        if updated.rows_affected() == 0 {
            if !self.group_exists(&mut tx, group.group_id).await? {
                return Err(SqlError::NotFound("group").into());
            }
            let stale = format!("group {} is no longer at revision {expected}", group.group_id);
            return Err(SqlError::Stale(stale).into());
        }
        self.upsert_members(&mut tx, group.group_id, &req.upsert).await?;
        for user_id in req.remove {
            sqlx::query(self.q().group_member_delete)
                .bind(group.group_id as i64)
                .bind(db_id(user_id, "user")?)
                .execute(&mut *tx)
                .await
                .map_err(SqlError::from)?;
        }
        Ok(self.state(tx, group.group_id).await?)
    }
}
