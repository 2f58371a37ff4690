//! Accounts, device sessions and acknowledgements (data type 1).

use crate::db::{EmbeddedStore, Result, StoreError};
use missive_proto::admin::ListUsersRequest;
use missive_proto::internal::{
    AccountList, AccountRecord, AccountStore, AckRequest, CreateAccountRequest,
    CreateSessionRequest, Empty, LastSeenRequest, PusherList, PusherRecord, PusherRef, Removed,
    RevokeSessionRequest, SessionList, SessionRecord, SetDisabledRequest, SetVisibilityRequest,
    TokenHashRef, UpdateNicknameRequest, UserRef, UsernameRef,
};
use missive_rpc::{Ctx, Status};
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, Row, params};

// Macros, so that `concat!` builds each statement at compile time.
macro_rules! account_columns {
    () => {
        "user_id, username, nickname, password_hash, created_at_ms, version, disabled, \
         presence_visibility, last_seen_ms"
    };
}
macro_rules! session_columns {
    () => {
        "user_id, device_id, device_name, created_at_ms, acked_version, revoked"
    };
}

fn account_row(row: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        user_id: row.get(0)?,
        username: row.get(1)?,
        nickname: row.get(2)?,
        password_hash: row.get(3)?,
        created_at_ms: row.get(4)?,
        version: row.get(5)?,
        disabled: row.get(6)?,
        presence_visibility: row.get(7)?,
        last_seen_ms: row.get(8)?,
    })
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        user_id: row.get(0)?,
        device_id: row.get(1)?,
        device_name: row.get(2)?,
        created_at_ms: row.get(3)?,
        acked_version: row.get(4)?,
        revoked: row.get(5)?,
    })
}

fn account_by_id(conn: &Connection, user_id: u64) -> Result<AccountRecord> {
    // An id above SQLite's integers (2^63 - 1) fails to bind, which is NOT_FOUND too.
    conn.prepare_cached(concat!(
        "SELECT ",
        account_columns!(),
        " FROM accounts WHERE user_id = ?1"
    ))?
    .query_row([user_id], account_row)
    .optional()?
    .ok_or(StoreError::NotFound("account"))
}

/// After a device acknowledged or left: if every active device has now acknowledged a higher
/// version than the last mark, record a new delivery mark.
fn mark_delivery(conn: &Connection, user_id: u64, at_ms: i64) -> Result<()> {
    let delivered: Option<u64> = conn
        .prepare_cached(
            "SELECT MIN(acked_version) FROM sessions WHERE user_id = ?1 AND revoked = 0",
        )?
        .query_row([user_id], |row| row.get(0))?;
    let Some(delivered) = delivered.filter(|v| *v > 0) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO delivery_marks (user_id, version, at_ms)
         SELECT ?1, ?2, ?3
         WHERE ?2 > COALESCE((SELECT MAX(version) FROM delivery_marks WHERE user_id = ?1), 0)",
    )?
    .execute(params![user_id, delivered, at_ms])?;
    Ok(())
}

impl EmbeddedStore {
    /// Runs `sql` (parameters: user id, `value`, version) to change one field of an account
    /// under a new version: ABORTED unless the version is above the account's.
    async fn update_versioned<T: rusqlite::ToSql + Send + 'static>(
        &self,
        sql: &'static str,
        user_id: u64,
        value: T,
        version: u64,
    ) -> Result<AccountRecord, Status> {
        let store = self.clone();
        self.write_then(
            move |conn| {
                let changed =
                    conn.prepare_cached(sql)?.execute(params![user_id, value, version])?;
                let account = account_by_id(conn, user_id)?;
                if changed == 0 {
                    return Err(StoreError::Stale(format!(
                        "version {version} of user {user_id} is not above the account's {}",
                        account.version
                    )));
                }
                Ok(account)
            },
            move |account| store.caches().put_account(account),
        )
        .await
    }
}

#[async_trait::async_trait]
impl AccountStore for EmbeddedStore {
    async fn create(&self, _: &Ctx, req: CreateAccountRequest) -> Result<AccountRecord, Status> {
        let store = self.clone();
        let insert = move |conn: &Connection| {
            conn.prepare_cached(
                "INSERT INTO accounts (username, nickname, password_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![req.username, req.nickname, req.password_hash, req.created_at_ms])
            .map_err(StoreError::from_sqlite)?;
            account_by_id(conn, conn.last_insert_rowid() as u64)
        };
        self.write_then(insert, move |account| store.caches().put_account(account)).await
    }

    async fn get_by_id(&self, _: &Ctx, req: UserRef) -> Result<AccountRecord, Status> {
        if let Some(account) = self.caches().account(req.user_id) {
            return Ok(account);
        }
        let generation = self.caches().account_generation(req.user_id);
        let account = self.read(move |conn| account_by_id(conn, req.user_id)).await?;
        self.caches().put_read_account(&account, generation);
        Ok(account)
    }

    async fn get_by_name(&self, _: &Ctx, req: UsernameRef) -> Result<AccountRecord, Status> {
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                account_columns!(),
                " FROM accounts WHERE username = ?1"
            ))?
            .query_row([&req.username], account_row)
            .optional()?
            .ok_or(StoreError::NotFound("account"))
        })
        .await
    }

    async fn update_nickname(
        &self,
        _: &Ctx,
        req: UpdateNicknameRequest,
    ) -> Result<AccountRecord, Status> {
        let sql =
            "UPDATE accounts SET nickname = ?2, version = ?3 WHERE user_id = ?1 AND version < ?3";
        self.update_versioned(sql, req.user_id, req.nickname, req.version).await
    }

    async fn set_visibility(
        &self,
        _: &Ctx,
        req: SetVisibilityRequest,
    ) -> Result<AccountRecord, Status> {
        let sql = "UPDATE accounts SET presence_visibility = ?2, version = ?3
                   WHERE user_id = ?1 AND version < ?3";
        self.update_versioned(sql, req.user_id, req.presence_visibility, req.version).await
    }

    async fn set_last_seen(&self, _: &Ctx, req: LastSeenRequest) -> Result<Empty, Status> {
        let store = self.clone();
        self.write_then(
            move |conn| {
                let mut seen = Vec::with_capacity(req.user_ids.len());
                for user_id in req.user_ids {
                    conn.prepare_cached(
                        "UPDATE accounts SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE user_id = ?1",
                    )?
                    .execute(params![user_id, req.at_ms])?;
                    if let Ok(account) = account_by_id(conn, user_id) {
                        seen.push(account);
                    }
                }
                Ok(seen)
            },
            move |seen| seen.iter().for_each(|account| store.caches().put_account(account)),
        )
        .await?;
        Ok(Empty {})
    }

    async fn put_pusher(&self, _: &Ctx, req: PusherRecord) -> Result<Empty, Status> {
        let pusher = req.pusher.unwrap_or_default();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO pushers (user_id, endpoint, device_id, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, endpoint)
                 DO UPDATE SET device_id = excluded.device_id, body = excluded.body",
            )?
            .execute(params![
                req.user_id,
                pusher.endpoint,
                pusher.device_id,
                pusher.encode_to_vec()
            ])?;
            Ok(())
        })
        .await?;
        Ok(Empty {})
    }

    async fn remove_pushers(&self, _: &Ctx, req: PusherRef) -> Result<Removed, Status> {
        let count = self
            .write(move |conn| {
                let removed = if req.endpoint.is_empty() {
                    conn.prepare_cached(
                        "DELETE FROM pushers WHERE user_id = ?1 AND (?2 = 0 OR device_id = ?2)",
                    )?
                    .execute(params![req.user_id, req.device_id])?
                } else {
                    conn.prepare_cached("DELETE FROM pushers WHERE user_id = ?1 AND endpoint = ?2")?
                        .execute(params![req.user_id, req.endpoint])?
                };
                Ok(removed as u32)
            })
            .await?;
        Ok(Removed { count })
    }

    async fn list_pushers(&self, _: &Ctx, req: UserRef) -> Result<PusherList, Status> {
        self.read(move |conn| {
            let bodies = conn
                .prepare_cached("SELECT body FROM pushers WHERE user_id = ?1 ORDER BY endpoint")?
                .query_map([req.user_id], |row| row.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let pushers = bodies
                .iter()
                .map(|body| missive_proto::client::Pusher::decode(body.as_slice()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(PusherList { pushers })
        })
        .await
    }

    async fn create_session(
        &self,
        _: &Ctx,
        req: CreateSessionRequest,
    ) -> Result<SessionRecord, Status> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (user_id, device_name, token_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![req.user_id, req.device_name, req.token_hash, req.created_at_ms])
            .map_err(StoreError::from_sqlite)?;
            Ok(SessionRecord {
                user_id: req.user_id,
                device_id: conn.last_insert_rowid() as u64,
                device_name: req.device_name,
                created_at_ms: req.created_at_ms,
                acked_version: 0,
                revoked: false,
            })
        })
        .await
    }

    async fn get_session(&self, _: &Ctx, req: TokenHashRef) -> Result<SessionRecord, Status> {
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE token_hash = ?1 AND revoked = 0"
            ))?
            .query_row([&req.token_hash], session_row)
            .optional()?
            .ok_or(StoreError::NotFound("session"))
        })
        .await
    }

    async fn revoke_session(&self, _: &Ctx, req: RevokeSessionRequest) -> Result<Empty, Status> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE sessions SET revoked = 1 WHERE user_id = ?1 AND device_id = ?2 AND revoked = 0",
                )?
                .execute([req.user_id, req.device_id])?;
            if changed == 0 {
                return Err(StoreError::NotFound("session"));
            }
            mark_delivery(conn, req.user_id, req.at_ms)?;
            Ok(Empty {})
        })
        .await
    }

    async fn ack(&self, _: &Ctx, req: AckRequest) -> Result<Empty, Status> {
        self.write(move |conn| {
            let mut update = conn.prepare_cached(
                "UPDATE sessions SET acked_version = ?3
                 WHERE user_id = ?1 AND device_id = ?2 AND acked_version < ?3",
            )?;
            for ack in req.acks {
                if update.execute([ack.user_id, ack.device_id, ack.version])? > 0 {
                    mark_delivery(conn, ack.user_id, ack.at_ms)?;
                }
            }
            Ok(Empty {})
        })
        .await
    }

    async fn list(&self, _: &Ctx, req: ListUsersRequest) -> Result<AccountList, Status> {
        let after = i64::try_from(req.after).unwrap_or(i64::MAX);
        // ASCII only, as SQLite's lower() folds.
        let query = req.query.to_ascii_lowercase();
        let limit = req.limit;
        self.read_scan(move |conn| {
            let accounts = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE user_id > ?1",
                    " AND (instr(lower(username), ?2) > 0 OR instr(lower(nickname), ?2) > 0)",
                    " ORDER BY user_id LIMIT ?3"
                ))?
                .query_map(params![after, query, limit], account_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(AccountList { accounts })
        })
        .await
    }

    async fn list_sessions(&self, _: &Ctx, req: UserRef) -> Result<SessionList, Status> {
        self.read(move |conn| {
            let sessions = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE user_id = ?1 ORDER BY device_id"
                ))?
                .query_map([req.user_id], session_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(SessionList { sessions })
        })
        .await
    }

    async fn set_disabled(
        &self,
        _: &Ctx,
        req: SetDisabledRequest,
    ) -> Result<AccountRecord, Status> {
        let store = self.clone();
        self.write_then(
            move |conn| {
                let account = account_by_id(conn, req.user_id)?;
                conn.prepare_cached("UPDATE accounts SET disabled = ?2 WHERE user_id = ?1")?
                    .execute(params![req.user_id, req.disabled])?;
                if req.disabled {
                    conn.prepare_cached(
                        "UPDATE sessions SET revoked = 1 WHERE user_id = ?1 AND revoked = 0",
                    )?
                    .execute([req.user_id])?;
                }
                Ok(AccountRecord { disabled: req.disabled, ..account })
            },
            move |account| store.caches().put_account(account),
        )
        .await
    }
}
