//! Operations data. Samples, closed periods and the audit log live on the directory (the
//! first database); users' activity lives on each user's logical shard, and counts add up
//! over every database.

use crate::{Result, SqlError, SqlStore, db_id};
use missive_proto::admin::{
    AuditEntry, AuditRequest, AuditResponse, NodeSample, PeriodStats, StatsRequest, StatsResponse,
    TotalsResponse,
};
use missive_proto::internal::{
    ActiveUsers, ClosePeriodRequest, ClosePeriodResponse, Empty, OpsStore,
};
use missive_rpc::{Ctx, Status};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

fn period_row(row: &AnyRow) -> Result<PeriodStats> {
    Ok(PeriodStats {
        start_ms: row.try_get(0)?,
        period_s: row.try_get::<i64, _>(1)? as u32,
        registered_users: row.try_get::<i64, _>(2)? as u64,
        new_registrations: row.try_get::<i64, _>(3)? as u64,
        online_peak: row.try_get::<i64, _>(4)? as u64,
        online_average: row.try_get(5)?,
        samples: row.try_get::<i64, _>(6)? as u32,
        messages_sent: row.try_get::<i64, _>(7)? as u64,
        messages_delivered: row.try_get::<i64, _>(8)? as u64,
        active_users: row.try_get::<i64, _>(9)? as u64,
    })
}

impl SqlStore {
    /// Runs a `SELECT COUNT(*) ...` on every database and adds the answers.
    async fn count_all(&self, sql: &'static str, binds: &[i64]) -> Result<u64> {
        let mut total = 0;
        for db in self.routing().databases.values() {
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = query.bind(*bind);
            }
            total += query.fetch_one(&db.pool()).await?.try_get::<i64, _>(0)? as u64;
        }
        Ok(total)
    }

    async fn period(&self, start_ms: i64) -> Result<Option<PeriodStats>> {
        let row = sqlx::query(self.q().period_get)
            .bind(start_ms)
            .fetch_optional(&self.inner.directory.pool())
            .await?;
        row.as_ref().map(period_row).transpose()
    }

    async fn compute_period(&self, req: &ClosePeriodRequest) -> Result<PeriodStats> {
        let q = self.q();
        let start = req.start_ms;
        let end = start + i64::from(req.period_s) * 1000;
        let rows = sqlx::query(q.samples_within)
            .bind(start)
            .bind(end)
            .fetch_all(&self.inner.directory.pool())
            .await?;
        let mut online_by_slot: BTreeMap<i64, u64> = BTreeMap::new();
        let (mut messages_sent, mut messages_delivered) = (0u64, 0u64);
        for row in rows {
            let slot: i64 = row.try_get(0)?;
            *online_by_slot.entry(slot).or_default() += row.try_get::<i64, _>(1)? as u64;
            messages_sent += row.try_get::<i64, _>(2)? as u64;
            messages_delivered += row.try_get::<i64, _>(3)? as u64;
        }
        let samples = online_by_slot.len() as u32;
        let online_sum: u64 = online_by_slot.values().sum();
        Ok(PeriodStats {
            start_ms: start,
            period_s: req.period_s,
            registered_users: self.count_all(q.count_registered_before, &[end]).await?,
            new_registrations: self.count_all(q.count_registered_within, &[start, end]).await?,
            online_peak: online_by_slot.values().copied().max().unwrap_or(0),
            online_average: if samples == 0 { 0.0 } else { online_sum as f64 / f64::from(samples) },
            samples,
            messages_sent,
            messages_delivered,
            active_users: self.count_all(q.count_active, &[start]).await?,
        })
    }
}

#[async_trait::async_trait]
impl OpsStore for SqlStore {
    async fn totals(&self, _: &Ctx, _: Empty) -> Result<TotalsResponse, Status> {
        let q = self.q();
        Ok(TotalsResponse {
            registered_users: self.count_all(q.count_accounts, &[]).await?,
            groups: self.count_all(q.count_groups, &[]).await?,
            messages: self.count_all(q.count_messages, &[]).await?,
            inbox_entries: self.count_all(q.count_inbox, &[]).await?,
            ..TotalsResponse::default()
        })
    }

    async fn record_sample(&self, _: &Ctx, req: NodeSample) -> Result<Empty, Status> {
        sqlx::query(self.q().sample_upsert)
            .bind(req.slot_ms)
            .bind(req.node)
            .bind(req.online as i64)
            .bind(req.messages_sent as i64)
            .bind(req.messages_delivered as i64)
            .execute(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        Ok(Empty {})
    }

    async fn mark_active(&self, _: &Ctx, req: ActiveUsers) -> Result<Empty, Status> {
        for &user_id in &req.user_ids {
            db_id(user_id, "account")?;
        }
        let period = req.period_start_ms;
        let statement = self.q().active_insert;
        self.write_each_user(req.user_ids, statement, move |user| vec![period, user]).await?;
        Ok(Empty {})
    }

    async fn close_period(
        &self,
        _: &Ctx,
        req: ClosePeriodRequest,
    ) -> Result<ClosePeriodResponse, Status> {
        if let Some(stats) = self.period(req.start_ms).await? {
            return Ok(ClosePeriodResponse { stats: Some(stats), closed_here: false });
        }
        let stats = self.compute_period(&req).await?;
        // Of two nodes closing one period, the row's primary key lets one insert; the other
        // reads what the first wrote.
        let inserted = sqlx::query(self.q().period_insert)
            .bind(stats.start_ms)
            .bind(i64::from(stats.period_s))
            .bind(stats.registered_users as i64)
            .bind(stats.new_registrations as i64)
            .bind(stats.online_peak as i64)
            .bind(stats.online_average)
            .bind(i64::from(stats.samples))
            .bind(stats.messages_sent as i64)
            .bind(stats.messages_delivered as i64)
            .bind(stats.active_users as i64)
            .execute(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        if inserted.rows_affected() == 0 {
            let stats = self.period(req.start_ms).await?.ok_or(SqlError::NotFound("period"))?;
            return Ok(ClosePeriodResponse { stats: Some(stats), closed_here: false });
        }
        let end = req.start_ms + i64::from(req.period_s) * 1000;
        sqlx::query(self.q().samples_delete)
            .bind(end)
            .execute(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        for db in self.routing().databases.values() {
            sqlx::query(self.q().active_delete)
                .bind(req.start_ms)
                .execute(&db.pool())
                .await
                .map_err(SqlError::from)?;
        }
        Ok(ClosePeriodResponse { stats: Some(stats), closed_here: true })
    }

    async fn list_periods(&self, _: &Ctx, req: StatsRequest) -> Result<StatsResponse, Status> {
        let rows = sqlx::query(self.q().periods_newest)
            .bind(i64::from(req.hours))
            .fetch_all(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        let periods = rows.iter().map(period_row).collect::<Result<_>>()?;
        Ok(StatsResponse { periods })
    }

    async fn record(&self, _: &Ctx, req: AuditEntry) -> Result<Empty, Status> {
        sqlx::query(self.q().audit_insert)
            .bind(req.at_ms)
            .bind(req.actor)
            .bind(req.address)
            .bind(req.action)
            .bind(req.target)
            .bind(req.detail)
            .bind(i64::from(req.code))
            .execute(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        Ok(Empty {})
    }

    async fn audit(&self, _: &Ctx, req: AuditRequest) -> Result<AuditResponse, Status> {
        let before = match req.before {
            0 => i64::MAX,
            before => i64::try_from(before).unwrap_or(i64::MAX),
        };
        let rows = sqlx::query(self.q().audit_before)
            .bind(before)
            .bind(i64::from(req.limit))
            .fetch_all(&self.inner.directory.pool())
            .await
            .map_err(SqlError::from)?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get::<i64, _>(0)? as u64,
                    at_ms: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    address: row.try_get(3)?,
                    action: row.try_get(4)?,
                    target: row.try_get(5)?,
                    detail: row.try_get(6)?,
                    code: row.try_get::<i64, _>(7)? as u32,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AuditResponse { entries })
    }
}
