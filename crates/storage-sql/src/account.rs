//! Accounts, device sessions and acknowledgements (data type 1). A user's account, sessions
//! and delivery marks live on the user's logical shard; the token index lives on the logical
//! shard its hash points to.

use crate::lookup::Key;
use crate::map::Item;
use crate::{Result, SqlError, SqlStore, db_id};
use missive_proto::admin::ListUsersRequest;
use missive_proto::internal::{
    AccountList, AccountRecord, AccountStore, AckRequest, CreateAccountRequest,
    CreateSessionRequest, DeviceAck, Empty, LastSeenRequest, PusherList, PusherRecord, PusherRef,
    Removed, RevokeSessionRequest, SessionList, SessionRecord, SetDisabledRequest,
    SetVisibilityRequest, TokenHashRef, UpdateNicknameRequest, UserRef, UsernameRef,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

fn account_row(row: &AnyRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        user_id: row.try_get::<i64, _>(0)? as u64,
        username: row.try_get(1)?,
        nickname: row.try_get(2)?,
        password_hash: row.try_get(3)?,
        created_at_ms: row.try_get(4)?,
        version: row.try_get::<i64, _>(5)? as u64,
        disabled: row.try_get::<i64, _>(6)? != 0,
        presence_visibility: row.try_get::<i32, _>(7)?,
        last_seen_ms: row.try_get(8)?,
    })
}

fn session_row(row: &AnyRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        user_id: row.try_get::<i64, _>(0)? as u64,
        device_id: row.try_get::<i64, _>(1)? as u64,
        device_name: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
        acked_version: row.try_get::<i64, _>(4)? as u64,
        revoked: row.try_get::<i64, _>(5)? != 0,
    })
}

impl SqlStore {
    /// The account after an update under `version` that changed `rows`: stale (ABORTED)
    /// when none, the version not being above the account's.
    async fn updated_versioned(
        &self,
        user_id: u64,
        version: u64,
        rows: u64,
    ) -> Result<AccountRecord> {
        let account = self.account_by_id(user_id).await?;
        if rows == 0 {
            return Err(SqlError::Stale(format!(
                "version {version} of user {user_id} is not above the account's {}",
                account.version
            )));
        }
        Ok(account)
    }

    async fn account_by_id(&self, user_id: u64) -> Result<AccountRecord> {
        db_id(user_id, "account")?;
        let row = self.user_db(user_id).lookups.get(Key::Account(user_id)).await?;
        account_row(&*row.ok_or(SqlError::NotFound("account"))?)
    }

    /// Locks every session row of `users`, in user and device order, until the transaction
    /// ends: two transactions acknowledging different devices of one user must not each read
    /// the other's device as still behind (no mark), nor both insert the same mark; and
    /// concurrent writers never wait on each other in a cycle.
    async fn lock_sessions(
        &self,
        tx: &mut Transaction<'static, Any>,
        users: impl IntoIterator<Item = i64>,
    ) -> Result<()> {
        let ids = Value::from(users.into_iter().collect::<Vec<_>>()).to_string();
        sqlx::query(self.q().acks_lock).bind(ids).fetch_all(&mut **tx).await?;
        Ok(())
    }

    /// After devices acknowledged or left, their users' sessions locked: records a delivery
    /// mark, at the given time, for each user whose every active device has now acknowledged
    /// a higher version than the last mark.
    async fn mark_delivery(
        &self,
        tx: &mut Transaction<'static, Any>,
        users: impl IntoIterator<Item = (i64, i64)>,
    ) -> Result<()> {
        let marks: Vec<Value> =
            users.into_iter().map(|(user, at_ms)| json!([user, at_ms])).collect();
        sqlx::query(self.q().acks_mark)
            .bind(Value::from(marks).to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Writes one database's acknowledgements in a fixed three statements, whatever their
    /// count: the users' sessions locked, each device's version moved up, then the marks.
    async fn ack_on(&self, acks: Vec<DeviceAck>) -> Result<()> {
        let q = self.q();
        // Each user's newest acknowledgement time: when its mark, if any, was reached.
        let mut users: BTreeMap<i64, i64> = BTreeMap::new();
        let mut moves = Vec::with_capacity(acks.len());
        for ack in &acks {
            let user_id = db_id(ack.user_id, "session")?;
            let device_id = db_id(ack.device_id, "session")?;
            moves.push(json!([user_id, device_id, ack.version.min(i64::MAX as u64)]));
            let at_ms = users.entry(user_id).or_insert(ack.at_ms);
            *at_ms = (*at_ms).max(ack.at_ms);
        }
        let items: Vec<Item> = acks.iter().map(|ack| Item::User(ack.user_id)).collect();
        let mut tx = self.begin_owned(&items).await?;
        self.lock_sessions(&mut tx, users.keys().copied()).await?;
        sqlx::query(q.acks_apply).bind(Value::Array(moves).to_string()).execute(&mut *tx).await?;
        self.mark_delivery(&mut tx, users).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AccountStore for SqlStore {
    async fn create(&self, _: &Ctx, req: CreateAccountRequest) -> Result<AccountRecord, Status> {
        let user_id = self.mint("user", self.name_shard(&req.username)).await?;
        let mut tx = self.begin_owned(&[Item::User(user_id)]).await?;
        sqlx::query(self.q().account_insert)
            .bind(user_id as i64)
            .bind(&req.username)
            .bind(&req.nickname)
            .bind(&req.password_hash)
            .bind(req.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(AccountRecord {
            user_id,
            username: req.username,
            nickname: req.nickname,
            password_hash: req.password_hash,
            created_at_ms: req.created_at_ms,
            ..AccountRecord::default()
        })
    }

    async fn get_by_id(&self, _: &Ctx, req: UserRef) -> Result<AccountRecord, Status> {
        Ok(self.account_by_id(req.user_id).await?)
    }

    async fn get_by_name(&self, _: &Ctx, req: UsernameRef) -> Result<AccountRecord, Status> {
        let row = sqlx::query(self.q().account_by_name)
            .bind(&req.username)
            .fetch_optional(&self.routing().database(self.name_shard(&req.username)).pool())
            .await
            .map_err(SqlError::from)?;
        Ok(account_row(&row.ok_or(SqlError::NotFound("account"))?)?)
    }

    async fn update_nickname(
        &self,
        _: &Ctx,
        req: UpdateNicknameRequest,
    ) -> Result<AccountRecord, Status> {
        let id = db_id(req.user_id, "account")?;
        let version = req.version as i64;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        let changed = sqlx::query(self.q().nickname_update)
            .bind(&req.nickname)
            .bind(version)
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(self.updated_versioned(req.user_id, req.version, changed.rows_affected()).await?)
    }

    async fn set_visibility(
        &self,
        _: &Ctx,
        req: SetVisibilityRequest,
    ) -> Result<AccountRecord, Status> {
        let id = db_id(req.user_id, "account")?;
        let version = req.version as i64;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        let changed = sqlx::query(self.q().visibility_update)
            .bind(req.presence_visibility)
            .bind(version)
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(self.updated_versioned(req.user_id, req.version, changed.rows_affected()).await?)
    }

    async fn put_pusher(&self, _: &Ctx, req: PusherRecord) -> Result<Empty, Status> {
        let user_id = db_id(req.user_id, "account")?;
        let pusher = req.pusher.unwrap_or_default();
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        sqlx::query(self.q().pusher_upsert)
            .bind(user_id)
            .bind(&pusher.endpoint)
            .bind(db_id(pusher.device_id, "device")?)
            .bind(pusher.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(Empty {})
    }

    async fn remove_pushers(&self, _: &Ctx, req: PusherRef) -> Result<Removed, Status> {
        let user_id = db_id(req.user_id, "account")?;
        let statement = if req.endpoint.is_empty() {
            let device_id = db_id(req.device_id, "device")?;
            sqlx::query(self.q().pushers_delete_device)
                .bind(user_id)
                .bind(device_id)
                .bind(device_id)
        } else {
            sqlx::query(self.q().pusher_delete).bind(user_id).bind(req.endpoint)
        };
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        let done = statement.execute(&mut *tx).await.map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(Removed { count: done.rows_affected() as u32 })
    }

    async fn list_pushers(&self, _: &Ctx, req: UserRef) -> Result<PusherList, Status> {
        let user_id = db_id(req.user_id, "account")?;
        let rows = sqlx::query(self.q().pushers_list)
            .bind(user_id)
            .fetch_all(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        let mut pushers = Vec::with_capacity(rows.len());
        for row in &rows {
            let body: Vec<u8> = row.try_get(0).map_err(SqlError::from)?;
            let pusher = missive_proto::client::Pusher::decode(body.as_slice())
                .map_err(|e| SqlError::Corrupt(e.to_string()))?;
            pushers.push(pusher);
        }
        Ok(PusherList { pushers })
    }

    async fn set_last_seen(&self, _: &Ctx, req: LastSeenRequest) -> Result<Empty, Status> {
        for &user_id in &req.user_ids {
            db_id(user_id, "account")?;
        }
        let at_ms = req.at_ms;
        let statement = self.q().last_seen_update;
        self.write_each_user(req.user_ids, statement, move |user| vec![at_ms, user, at_ms]).await?;
        Ok(Empty {})
    }

    /// The token index is written first: if the session row then fails, the token leads
    /// nowhere (unauthenticated), and no half-made device holds back garbage collection.
    async fn create_session(
        &self,
        _: &Ctx,
        req: CreateSessionRequest,
    ) -> Result<SessionRecord, Status> {
        let user_id = db_id(req.user_id, "account")?;
        let device_id = self.mint("device", self.shard_of(req.user_id)).await?;
        let token = Item::Token(&req.token_hash);
        let mut tx = self.begin_owned(&[token]).await?;
        sqlx::query(self.q().token_insert)
            .bind(req.token_hash.clone())
            .bind(user_id)
            .bind(device_id as i64)
            .bind(token.shard(self.inner.logical) as i64)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        sqlx::query(self.q().session_insert)
            .bind(user_id)
            .bind(device_id as i64)
            .bind(&req.device_name)
            .bind(req.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(SessionRecord {
            user_id: req.user_id,
            device_id,
            device_name: req.device_name,
            created_at_ms: req.created_at_ms,
            acked_version: 0,
            revoked: false,
        })
    }

    async fn get_session(&self, _: &Ctx, req: TokenHashRef) -> Result<SessionRecord, Status> {
        let token = sqlx::query(self.q().token_lookup)
            .bind(req.token_hash.clone())
            .fetch_optional(&self.token_db(&req.token_hash).pool())
            .await
            .map_err(SqlError::from)?
            .ok_or(SqlError::NotFound("session"))?;
        let user_id: i64 = token.try_get(0).map_err(SqlError::from)?;
        let device_id: i64 = token.try_get(1).map_err(SqlError::from)?;
        let session = sqlx::query(self.q().session_active)
            .bind(user_id)
            .bind(device_id)
            .fetch_optional(&self.user_db(user_id as u64).pool())
            .await
            .map_err(SqlError::from)?
            .ok_or(SqlError::NotFound("session"))?;
        Ok(session_row(&session)?)
    }

    async fn revoke_session(&self, _: &Ctx, req: RevokeSessionRequest) -> Result<Empty, Status> {
        let user_id = db_id(req.user_id, "session")?;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        self.lock_sessions(&mut tx, [user_id]).await?;
        let changed = sqlx::query(self.q().session_revoke)
            .bind(user_id)
            .bind(db_id(req.device_id, "session")?)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        if changed.rows_affected() == 0 {
            return Err(SqlError::NotFound("session").into());
        }
        self.mark_delivery(&mut tx, [(user_id, req.at_ms)]).await?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(Empty {})
    }

    async fn ack(&self, _: &Ctx, req: AckRequest) -> Result<Empty, Status> {
        let user = |ack: &DeviceAck| ack.user_id;
        self.by_database(req.acks, user, |acks| Box::pin(self.ack_on(acks))).await?;
        Ok(Empty {})
    }

    /// Each database's first page, merged in user id order.
    async fn list(&self, _: &Ctx, req: ListUsersRequest) -> Result<AccountList, Status> {
        let after = i64::try_from(req.after).unwrap_or(i64::MAX);
        let query = req.query.to_lowercase();
        let mut accounts = Vec::new();
        for db in self.routing().databases.values() {
            let rows = sqlx::query(self.q().account_search)
                .bind(after)
                .bind(&query)
                .bind(&query)
                .bind(i64::from(req.limit))
                .fetch_all(&db.pool())
                .await
                .map_err(SqlError::from)?;
            for row in &rows {
                accounts.push(account_row(row)?);
            }
        }
        accounts.sort_by_key(|a| a.user_id);
        accounts.truncate(req.limit as usize);
        Ok(AccountList { accounts })
    }

    async fn list_sessions(&self, _: &Ctx, req: UserRef) -> Result<SessionList, Status> {
        let rows = sqlx::query(self.q().sessions_of_user)
            .bind(db_id(req.user_id, "account")?)
            .fetch_all(&self.user_db(req.user_id).pool())
            .await
            .map_err(SqlError::from)?;
        let sessions = rows.iter().map(session_row).collect::<Result<_>>()?;
        Ok(SessionList { sessions })
    }

    async fn set_disabled(
        &self,
        _: &Ctx,
        req: SetDisabledRequest,
    ) -> Result<AccountRecord, Status> {
        let user_id = db_id(req.user_id, "account")?;
        let mut tx = self.begin_owned(&[Item::User(req.user_id)]).await?;
        let changed = sqlx::query(self.q().account_set_disabled)
            .bind(i64::from(req.disabled))
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::from)?;
        if changed.rows_affected() == 0 {
            return Err(SqlError::NotFound("account").into());
        }
        if req.disabled {
            self.lock_sessions(&mut tx, [user_id]).await?;
            sqlx::query(self.q().sessions_revoke_all)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(SqlError::from)?;
        }
        tx.commit().await.map_err(SqlError::from)?;
        Ok(self.account_by_id(req.user_id).await?)
    }
}
