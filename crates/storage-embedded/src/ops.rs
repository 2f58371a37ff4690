//! Operations data: what the store holds, the hourly statistics and their inputs, the audit
//! log.

use crate::db::{EmbeddedStore, Result};
use missive_proto::admin::{
    AuditEntry, AuditRequest, AuditResponse, NodeSample, PeriodStats, StatsRequest, StatsResponse,
    TotalsResponse,
};
use missive_proto::internal::{
    ActiveUsers, ClosePeriodRequest, ClosePeriodResponse, Empty, OpsStore,
};
use missive_rpc::{Ctx, Status};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64> {
    Ok(conn.prepare_cached(sql)?.query_row(params, |row| row.get(0))?)
}

macro_rules! period_columns {
    () => {
        "start_ms, period_s, registered_users, new_registrations, online_peak, online_average, \
         samples, messages_sent, messages_delivered, active_users"
    };
}

fn period_row(row: &Row<'_>) -> rusqlite::Result<PeriodStats> {
    Ok(PeriodStats {
        start_ms: row.get(0)?,
        period_s: row.get(1)?,
        registered_users: row.get(2)?,
        new_registrations: row.get(3)?,
        online_peak: row.get(4)?,
        online_average: row.get(5)?,
        samples: row.get(6)?,
        messages_sent: row.get(7)?,
        messages_delivered: row.get(8)?,
        active_users: row.get(9)?,
    })
}

fn period(conn: &Connection, start_ms: i64) -> Result<Option<PeriodStats>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            period_columns!(),
            " FROM ops_periods WHERE start_ms = ?1"
        ))?
        .query_row([start_ms], period_row)
        .optional()?)
}

/// The statistics of the period `[start, end)` from what the store holds now.
fn compute(conn: &Connection, req: &ClosePeriodRequest) -> Result<PeriodStats> {
    let start = req.start_ms;
    let end = start + i64::from(req.period_s) * 1000;
    let registered_users =
        count(conn, "SELECT COUNT(*) FROM accounts WHERE created_at_ms < ?1", [end])?;
    let new_registrations = count(
        conn,
        "SELECT COUNT(*) FROM accounts WHERE created_at_ms >= ?1 AND created_at_ms < ?2",
        [start, end],
    )?;
    // Summed over nodes per slot; then the slots give the peak and the average online.
    let (online_peak, online_average, samples, messages_sent, messages_delivered): (
        Option<u64>,
        Option<f64>,
        u32,
        Option<u64>,
        Option<u64>,
    ) = conn
        .prepare_cached(
            "SELECT MAX(online), AVG(online), COUNT(*), SUM(sent), SUM(delivered) FROM
               (SELECT SUM(online) AS online, SUM(messages_sent) AS sent,
                       SUM(messages_delivered) AS delivered
                FROM ops_samples WHERE slot_ms >= ?1 AND slot_ms < ?2 GROUP BY slot_ms)",
        )?
        .query_row([start, end], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
        })?;
    let active_users =
        count(conn, "SELECT COUNT(*) FROM ops_active WHERE period_start_ms = ?1", [start])?;
    Ok(PeriodStats {
        start_ms: start,
        period_s: req.period_s,
        registered_users,
        new_registrations,
        online_peak: online_peak.unwrap_or(0),
        online_average: online_average.unwrap_or(0.0),
        samples,
        messages_sent: messages_sent.unwrap_or(0),
        messages_delivered: messages_delivered.unwrap_or(0),
        active_users,
    })
}

#[async_trait::async_trait]
impl OpsStore for EmbeddedStore {
    async fn totals(&self, _: &Ctx, _: Empty) -> Result<TotalsResponse, Status> {
        self.read_scan(|conn| {
            Ok(TotalsResponse {
                registered_users: count(conn, "SELECT COUNT(*) FROM accounts", [])?,
                groups: count(conn, "SELECT COUNT(*) FROM groups", [])?,
                messages: count(conn, "SELECT COUNT(*) FROM messages", [])?,
                inbox_entries: count(conn, "SELECT COUNT(*) FROM inbox", [])?,
                ..TotalsResponse::default()
            })
        })
        .await
    }

    async fn record_sample(&self, _: &Ctx, req: NodeSample) -> Result<Empty, Status> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO ops_samples
                   (slot_ms, node, online, messages_sent, messages_delivered)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                req.slot_ms,
                req.node,
                req.online,
                req.messages_sent,
                req.messages_delivered
            ])?;
            Ok(Empty {})
        })
        .await
    }

    async fn mark_active(&self, _: &Ctx, req: ActiveUsers) -> Result<Empty, Status> {
        self.write(move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO ops_active (period_start_ms, user_id) VALUES (?1, ?2)",
            )?;
            for user_id in req.user_ids {
                insert.execute(params![req.period_start_ms, user_id])?;
            }
            Ok(Empty {})
        })
        .await
    }

    async fn close_period(
        &self,
        _: &Ctx,
        req: ClosePeriodRequest,
    ) -> Result<ClosePeriodResponse, Status> {
        // One writer transaction: of two nodes closing the same period, the second finds the
        // first one's row.
        self.write(move |conn| {
            if let Some(stats) = period(conn, req.start_ms)? {
                return Ok(ClosePeriodResponse { stats: Some(stats), closed_here: false });
            }
            let stats = compute(conn, &req)?;
            conn.prepare_cached(concat!(
                "INSERT INTO ops_periods (",
                period_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                stats.start_ms,
                stats.period_s,
                stats.registered_users,
                stats.new_registrations,
                stats.online_peak,
                stats.online_average,
                stats.samples,
                stats.messages_sent,
                stats.messages_delivered,
                stats.active_users
            ])?;
            let end = req.start_ms + i64::from(req.period_s) * 1000;
            conn.prepare_cached("DELETE FROM ops_samples WHERE slot_ms < ?1")?.execute([end])?;
            conn.prepare_cached("DELETE FROM ops_active WHERE period_start_ms <= ?1")?
                .execute([req.start_ms])?;
            Ok(ClosePeriodResponse { stats: Some(stats), closed_here: true })
        })
        .await
    }

    async fn list_periods(&self, _: &Ctx, req: StatsRequest) -> Result<StatsResponse, Status> {
        self.read(move |conn| {
            let periods = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    period_columns!(),
                    " FROM ops_periods ORDER BY start_ms DESC LIMIT ?1"
                ))?
                .query_map([req.hours], period_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(StatsResponse { periods })
        })
        .await
    }

    async fn record(&self, _: &Ctx, req: AuditEntry) -> Result<Empty, Status> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO ops_audit (at_ms, actor, address, action, target, detail, code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                req.at_ms,
                req.actor,
                req.address,
                req.action,
                req.target,
                req.detail,
                req.code
            ])?;
            Ok(Empty {})
        })
        .await
    }

    async fn audit(&self, _: &Ctx, req: AuditRequest) -> Result<AuditResponse, Status> {
        let before = match req.before {
            0 => i64::MAX,
            before => i64::try_from(before).unwrap_or(i64::MAX),
        };
        self.read(move |conn| {
            let entries = conn
                .prepare_cached(
                    "SELECT id, at_ms, actor, address, action, target, detail, code
                     FROM ops_audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![before, req.limit], |row| {
                    Ok(AuditEntry {
                        id: row.get(0)?,
                        at_ms: row.get(1)?,
                        actor: row.get(2)?,
                        address: row.get(3)?,
                        action: row.get(4)?,
                        target: row.get(5)?,
                        detail: row.get(6)?,
                        code: row.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(AuditResponse { entries })
        })
        .await
    }
}
