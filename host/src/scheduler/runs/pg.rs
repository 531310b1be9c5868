//! `scheduler_runs`: the run store in Postgres, claims by `INSERT … ON CONFLICT DO NOTHING`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::record::{Claim, RunRecord, RunsError, WAIT};
use crate::caps::pg::Postgres;

/// `scheduler_runs` (created by `backlog-bridge migrate`), through the pool's client runtime.
pub struct PgRuns {
    pool: Arc<Postgres>,
    /// Its own connection, made again when the server closed it (a Postgres restart): the
    /// loop goes on claiming through the new one by itself.
    client: std::sync::Mutex<Arc<Client>>,
}

impl PgRuns {
    /// Connects and checks that `scheduler_runs` exists.
    pub fn connect(pool: Arc<Postgres>) -> Result<PgRuns, RunsError> {
        let client = Arc::new(
            pool.connect()
                .map_err(|e| RunsError::Postgres(e.to_string()))?,
        );
        let runs = PgRuns {
            pool,
            client: std::sync::Mutex::new(client),
        };
        let c = runs.client()?;
        let exists = runs.wait(async move {
            c.query_one("SELECT to_regclass('scheduler_runs') IS NOT NULL", &[])
                .await
                .map(|r| r.get::<_, bool>(0))
        })?;
        if !exists {
            return Err(RunsError::Postgres(
                "the table does not exist: run `backlog-bridge migrate`".into(),
            ));
        }
        let c = runs.client()?;
        let leases = runs.wait(async move {
            c.query_one(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = \
                 'scheduler_runs' AND table_schema = current_schema() AND column_name IN \
                 ('lease_until', 'owner', 'attempt')",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
        })?;
        if leases != 3 {
            return Err(RunsError::Postgres(
                "the table has no lease columns (lease_until, owner, attempt): run \
                 `backlog-bridge migrate`"
                    .into(),
            ));
        }
        Ok(runs)
    }

    /// The connection, reconnected if the server closed it.
    pub(super) fn client(&self) -> Result<Arc<Client>, RunsError> {
        let mut guard = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_closed() {
            let fresh = self
                .pool
                .connect()
                .map_err(|e| RunsError::Postgres(e.to_string()))?;
            tracing::info!("scheduler: reconnected to Postgres for scheduler_runs");
            *guard = Arc::new(fresh);
        }
        Ok(guard.clone())
    }

    pub(super) fn wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T, RunsError> {
        match self.pool.run(WAIT, fut) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(RunsError::Postgres(match e.as_db_error() {
                Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })),
            None => Err(RunsError::Postgres(
                "the server did not answer in time".into(),
            )),
        }
    }

    pub(super) fn claim(&self, claim: &Claim) -> Result<bool, RunsError> {
        let c = self.client()?;
        let (job, minute, now, lease, owner) = (
            claim.job.to_owned(),
            claim.minute,
            claim.now,
            claim.lease_until,
            claim.owner.to_owned(),
        );
        let n = self.wait(async move {
            c.execute(
                "INSERT INTO scheduler_runs (job_id, scheduled_minute, started_at, outcome, \
                 lease_until, owner, attempt) VALUES ($1, $2, $3, 'running', $4, $5, 1) \
                 ON CONFLICT (job_id, scheduled_minute) DO NOTHING",
                &[&job, &minute, &now, &lease, &owner],
            )
            .await
        })?;
        Ok(n == 1)
    }

    pub(super) fn renew(&self, r: &RunRecord) -> Result<(), RunsError> {
        let c = self.client()?;
        let r = r.clone();
        let attempt = i32::try_from(r.attempt).unwrap_or(i32::MAX);
        self.wait(async move {
            c.execute(
                "UPDATE scheduler_runs SET lease_until = $3 WHERE job_id = $1 AND \
                 scheduled_minute = $2 AND attempt = $4 AND outcome = 'running'",
                &[&r.job, &r.scheduled, &r.lease_until, &attempt],
            )
            .await
        })
        .map(|_| ())
    }

    pub(super) fn finish(&self, r: &RunRecord) -> Result<(), RunsError> {
        let c = self.client()?;
        let r = r.clone();
        let attempt = i32::try_from(r.attempt).unwrap_or(i32::MAX);
        self.wait(async move {
            c.execute(
                "UPDATE scheduler_runs SET started_at = coalesce(started_at, $3), finished_at = $4, \
                 outcome = $5, error = $6, lease_until = NULL WHERE job_id = $1 AND \
                 scheduled_minute = $2 AND attempt = $7",
                &[&r.job, &r.scheduled, &r.started_at, &r.finished_at, &r.outcome, &r.error, &attempt],
            )
            .await
        })
        .map(|_| ())
    }

    pub(super) fn take_over(&self, dead: &RunRecord, next: &RunRecord) -> Result<bool, RunsError> {
        let c = self.client()?;
        let (dead, next) = (dead.clone(), next.clone());
        let (was, to) = (
            i32::try_from(dead.attempt).unwrap_or(i32::MAX),
            i32::try_from(next.attempt).unwrap_or(i32::MAX),
        );
        let n = self.wait(async move {
            c.execute(
                "UPDATE scheduler_runs SET started_at = $4, finished_at = $5, outcome = $6, \
                 error = $7, lease_until = $8, owner = $9, attempt = $10 WHERE job_id = $1 AND \
                 scheduled_minute = $2 AND attempt = $3 AND outcome = 'running'",
                &[
                    &dead.job,
                    &dead.scheduled,
                    &was,
                    &next.started_at,
                    &next.finished_at,
                    &next.outcome,
                    &next.error,
                    &next.lease_until,
                    &next.owner,
                    &to,
                ],
            )
            .await
        })?;
        Ok(n == 1)
    }

    pub(super) fn rows(
        &self,
        sql: &'static str,
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<RunRecord>, RunsError> {
        let c = self.client()?;
        let rows = self.wait(async move {
            match now {
                Some(now) => c.query(sql, &[&now]).await,
                None => c.query(sql, &[]).await,
            }
        })?;
        Ok(rows
            .iter()
            .map(|row| RunRecord {
                job: row.get(0),
                scheduled: row.get(1),
                started_at: row.get(2),
                finished_at: row.get(3),
                outcome: row.get(4),
                error: row.get(5),
                lease_until: row.get(6),
                owner: row.get(7),
                attempt: u32::try_from(row.get::<_, i32>(8)).unwrap_or(1),
            })
            .collect())
    }

    pub(super) fn latest(&self) -> Result<BTreeMap<String, RunRecord>, RunsError> {
        Ok(self
            .rows(
                "SELECT DISTINCT ON (job_id) job_id, scheduled_minute, started_at, finished_at, \
                 outcome, error, lease_until, owner, attempt FROM scheduler_runs \
                 ORDER BY job_id, scheduled_minute DESC",
                None,
            )?
            .into_iter()
            .map(|r| (r.job.clone(), r))
            .collect())
    }

    pub(super) fn expired(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>, RunsError> {
        self.rows(
            "SELECT job_id, scheduled_minute, started_at, finished_at, outcome, error, \
             lease_until, owner, attempt FROM scheduler_runs WHERE outcome = 'running' AND \
             coalesce(lease_until, started_at + interval '1 hour') < $1 \
             ORDER BY scheduled_minute, job_id",
            Some(now),
        )
    }

    pub(super) fn running(
        &self,
        jobs: &[String],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        let c = self.client()?;
        let jobs = jobs.to_vec();
        self.wait(async move {
            c.query_one(
                "SELECT count(*) FROM scheduler_runs WHERE job_id = ANY($1) AND outcome = 'running' \
                 AND scheduled_minute BETWEEN $2 AND $3",
                &[&jobs, &from, &until],
            )
            .await
            .map(|r| r.get::<_, i64>(0) > 0)
        })
    }
}
