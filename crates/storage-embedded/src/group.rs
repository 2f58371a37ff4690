//! Groups: a profile and a member list per group, cached whole, since every group message
//! reads the member list.

use crate::db::{EmbeddedStore, Result, StoreError};
use missive_proto::ids::GROUP_ID_BASE;
use missive_proto::internal::{
    CreateGroupRequest, GroupMemberRecord, GroupRecord, GroupRef, GroupState, GroupStore,
    WriteGroupRequest,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use rusqlite::{Connection, params};

fn local_id(group_id: u64) -> Result<u64> {
    group_id.checked_sub(GROUP_ID_BASE).ok_or(StoreError::NotFound("group"))
}

/// The group and its members, in one statement (one snapshot, whatever the connection).
fn load(conn: &Connection, group_id: u64) -> Result<GroupState> {
    let mut statement = conn.prepare_cached(
        "SELECT g.revision, g.body, m.user_id, m.role, m.joined_at_ms
             FROM groups g LEFT JOIN group_members m ON m.group_id = ?2
             WHERE g.local_id = ?1 ORDER BY m.joined_at_ms, m.user_id",
    )?;
    let rows = statement
        .query_map([local_id(group_id)?, group_id], |row| {
            let member = match row.get::<_, Option<u64>>(2)? {
                Some(user_id) => Some(GroupMemberRecord {
                    user_id,
                    role: row.get(3)?,
                    joined_at_ms: row.get(4)?,
                }),
                None => None,
            };
            Ok((row.get::<_, u64>(0)?, row.get::<_, Vec<u8>>(1)?, member))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut group = None;
    let mut members = Vec::new();
    for (revision, body, member) in rows {
        if group.is_none() {
            let mut record = GroupRecord::decode(&*body)
                .map_err(|e| StoreError::Corrupt(format!("group: {e}")))?;
            // Neither is in the body: the row's own columns are the truth.
            record.group_id = group_id;
            record.revision = revision;
            group = Some(record);
        }
        members.extend(member);
    }
    let group = group.ok_or(StoreError::NotFound("group"))?;
    Ok(GroupState { group: Some(group), members })
}

fn upsert_members(conn: &Connection, group_id: u64, members: &[GroupMemberRecord]) -> Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role",
    )?;
    for member in members {
        upsert.execute(params![group_id, member.user_id, member.role, member.joined_at_ms])?;
    }
    Ok(())
}

fn create(conn: &Connection, req: CreateGroupRequest) -> Result<GroupState> {
    let group = req.group.ok_or(StoreError::NotFound("group body"))?;
    conn.prepare_cached("INSERT INTO groups (revision, body) VALUES (1, ?1)")?
        .execute([group.encode_to_vec()])?;
    let group_id = GROUP_ID_BASE + conn.last_insert_rowid() as u64;
    upsert_members(conn, group_id, &req.members)?;
    load(conn, group_id)
}

fn write(conn: &Connection, req: WriteGroupRequest) -> Result<GroupState> {
    let group = req.group.ok_or(StoreError::NotFound("group body"))?;
    let updated = conn
        .prepare_cached(
            "UPDATE groups SET revision = ?1, body = ?2 WHERE local_id = ?3 AND revision = ?4",
        )?
        .execute(params![
            group.revision,
            group.encode_to_vec(),
            local_id(group.group_id)?,
            group.revision.wrapping_sub(1)
        ])?;
    if updated == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM groups WHERE local_id = ?1")?
            .exists([local_id(group.group_id)?])?;
        if !exists {
            return Err(StoreError::NotFound("group"));
        }
        return Err(StoreError::Stale(format!(
            "group {} is no longer at revision {}",
            group.group_id,
            group.revision.wrapping_sub(1)
        )));
    }
    upsert_members(conn, group.group_id, &req.upsert)?;
    let mut remove =
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?;
    for user_id in req.remove {
        remove.execute([group.group_id, user_id])?;
    }
    load(conn, group.group_id)
}

#[async_trait::async_trait]
impl GroupStore for EmbeddedStore {
    async fn create(&self, _: &Ctx, req: CreateGroupRequest) -> Result<GroupState, Status> {
        let store = self.clone();
        self.write_then(move |conn| create(conn, req), move |state| store.caches().put_group(state))
            .await
    }

    async fn get(&self, _: &Ctx, req: GroupRef) -> Result<GroupState, Status> {
        if let Some(state) = self.caches().group(req.group_id) {
            return Ok(state);
        }
        let generation = self.caches().group_generation(req.group_id);
        let state = self.read(|conn| load(conn, req.group_id)).await?;
        self.caches().put_read_group(&state, generation);
        Ok(state)
    }

    async fn write(&self, _: &Ctx, req: WriteGroupRequest) -> Result<GroupState, Status> {
        let store = self.clone();
        self.write_then(move |conn| write(conn, req), move |state| store.caches().put_group(state))
            .await
    }
}
