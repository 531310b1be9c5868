//! Where scheduler runs are claimed and recorded (`docs/scheduler.md`): `scheduler_runs` in Postgres, or
//! `<ops-dir>/scheduler/runs.jsonl` with exclusive claim files.
//!
//! Exactly once per (job, scheduled minute): a run is *claimed* before it starts, and only the
//! claimer runs it. Postgres: `INSERT … ON CONFLICT DO NOTHING` on the table's primary key,
//! so any number of replicas can race and exactly one wins (no leader lock). JSONL:
//! `create_new` of `claims/<day>/<job>@<HHMM>`, exclusive on one host (not across hosts
//! sharing a network file system: use Postgres there).
//!
//! A claim is a *lease*: it records its owner (`host/pid`) and `lease_until` (claim time + the
//! job's time limit + margins, renewed when the run really starts). A `running` run whose lease
//! has expired belongs to a scheduler that died: whoever sees it first takes it over — again
//! exactly once, by a conditional `UPDATE … WHERE outcome = 'running' AND attempt = N` or the
//! `create_new` of `<job>@<HHMM>.<N+1>` — and records it `failed` ("scheduler died"), or, for a
//! job marked `retryable`, runs it again once as attempt 2. Claim files older than
//! [`CLAIM_RETENTION`] (never planned again) are pruned.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::caps::pg::Postgres;
use crate::lock::DirLock;

/// How long one run-table statement may take.
const WAIT: Duration = Duration::from_secs(30);

/// Claim files older than this are removed: past the look-back window no (job, minute) of
/// theirs is planned again, so nothing can claim it twice.
pub const CLAIM_RETENTION: chrono::Duration = chrono::Duration::days(8);

/// A lease without a recorded expiry (a run claimed by an older version): this long after
/// its start.
const LEGACY_LEASE: chrono::Duration = chrono::Duration::hours(1);

/// The error recorded for a run whose scheduler died.
pub fn died_message(r: &RunRecord) -> String {
    format!(
        "scheduler died: the claim of {} (attempt {}) expired at {} while running",
        r.owner.as_deref().unwrap_or("an unknown scheduler"),
        r.attempt,
        r.lease_until
            .or(r.started_at.map(|t| t + LEGACY_LEASE))
            .map(ts)
            .unwrap_or_else(|| "an unknown time".into())
    )
}

fn first_attempt() -> u32 {
    1
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub job: String,
    /// The minute the schedule fired (RFC 3339, seconds `00`).
    pub scheduled: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running` while claimed, then `ok|failed|skipped|timeout|missed`.
    pub outcome: String,
    pub error: Option<String>,
    /// While `running`: when the claim expires unless its owner finishes (or renews) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// The scheduler process holding (or that last held) the claim: `host/pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// 1, or 2 for the one retry of a retryable job whose scheduler died.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

impl RunRecord {
    /// Whether this is a `running` claim whose lease expired before `now`.
    pub fn lease_expired(&self, now: DateTime<Utc>) -> bool {
        self.outcome == "running"
            && self
                .lease_until
                .or(self.started_at.map(|t| t + LEGACY_LEASE))
                .is_some_and(|until| until < now)
    }
}

/// A new claim: who and until when.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub job: &'a str,
    pub minute: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub owner: &'a str,
}

/// A run store failure.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scheduler_runs: {0}")]
    Postgres(String),
}

/// The run store of one scheduler process.
pub enum Runs {
    Jsonl(JsonlRuns),
    Postgres(PgRuns),
}

impl Runs {
    /// `postgres` or `jsonl`.
    pub fn backend(&self) -> &'static str {
        match self {
            Runs::Jsonl(_) => "jsonl",
            Runs::Postgres(_) => "postgres",
        }
    }

    /// Claims (job, minute); `true` if this caller won and must run (or record) it.
    pub fn claim(&self, c: &Claim) -> Result<bool, RunsError> {
        match self {
            Runs::Jsonl(r) => r.claim(c),
            Runs::Postgres(r) => r.claim(c),
        }
    }

    /// Moves the lease of a run this process holds (when it really starts, after waiting).
    pub fn renew(&self, r: &RunRecord) -> Result<(), RunsError> {
        match self {
            Runs::Jsonl(j) => j.append(r),
            Runs::Postgres(p) => p.renew(r),
        }
    }

    /// Every `running` run whose lease expired before `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>, RunsError> {
        match self {
            Runs::Jsonl(r) => Ok(r
                .all()?
                .into_iter()
                .filter(|rec| rec.lease_expired(now))
                .collect()),
            Runs::Postgres(r) => r.expired(now),
        }
    }

    /// Takes over the dead run `dead` (as read by [`Runs::expired`]): exactly one caller wins.
    /// `next` is what the winner records: `failed` ("scheduler died"), or the retry's
    /// `running` attempt. `true` if this caller won.
    pub fn take_over(&self, dead: &RunRecord, next: &RunRecord) -> Result<bool, RunsError> {
        match self {
            Runs::Jsonl(r) => r.take_over(dead, next),
            Runs::Postgres(r) => r.take_over(dead, next),
        }
    }

    /// Removes claim files older than [`CLAIM_RETENTION`] before `now` (JSONL; Postgres keeps
    /// its rows). Returns how many day directories went.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, RunsError> {
        match self {
            Runs::Jsonl(r) => r.prune(now),
            Runs::Postgres(_) => Ok(0),
        }
    }

    /// Records how a claimed run ended.
    pub fn finish(&self, record: &RunRecord) -> Result<(), RunsError> {
        match self {
            Runs::Jsonl(r) => r.append(record),
            Runs::Postgres(r) => r.finish(record),
        }
    }

    /// The latest record of each job.
    pub fn latest(&self) -> Result<BTreeMap<String, RunRecord>, RunsError> {
        match self {
            Runs::Jsonl(r) => Ok(r.all()?.into_iter().fold(BTreeMap::new(), |mut m, rec| {
                match m.get(&rec.job) {
                    Some(old) if old.scheduled > rec.scheduled => {}
                    _ => {
                        m.insert(rec.job.clone(), rec);
                    }
                }
                m
            })),
            Runs::Postgres(r) => r.latest(),
        }
    }

    /// Whether any of `jobs` has a run scheduled in `[from, until]` still `running`.
    pub fn running(
        &self,
        jobs: &[String],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        match self {
            Runs::Jsonl(r) => Ok(r.all()?.iter().any(|rec| {
                jobs.contains(&rec.job)
                    && rec.scheduled >= from
                    && rec.scheduled <= until
                    && rec.outcome == "running"
            })),
            Runs::Postgres(r) => r.running(jobs, from, until),
        }
    }
}

/// `<ops-dir>/scheduler/`: `runs.jsonl` (one line per change, last line per (job, minute)
/// wins) and `claims/`.
pub struct JsonlRuns {
    pub dir: PathBuf,
}

impl JsonlRuns {
    fn io(&self, path: PathBuf) -> impl FnOnce(std::io::Error) -> RunsError {
        move |source| RunsError::Io { path, source }
    }

    /// `create_new` of the claim file of attempt `attempt` of (job, minute): `true` if this
    /// caller created it.
    fn claim_file(
        &self,
        job: &str,
        minute: DateTime<Utc>,
        attempt: u32,
    ) -> Result<bool, RunsError> {
        let day = self
            .dir
            .join("claims")
            .join(minute.format("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&day).map_err(self.io(day.clone()))?;
        let name = match attempt {
            1 => format!("{job}@{}", minute.format("%H%M")),
            n => format!("{job}@{}.{n}", minute.format("%H%M")),
        };
        let path = day.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io(path)(e)),
        }
    }

    fn claim(&self, c: &Claim) -> Result<bool, RunsError> {
        if !self.claim_file(c.job, c.minute, 1)? {
            return Ok(false);
        }
        self.append(&RunRecord {
            job: c.job.into(),
            scheduled: c.minute,
            started_at: Some(c.now),
            finished_at: None,
            outcome: "running".into(),
            error: None,
            lease_until: Some(c.lease_until),
            owner: Some(c.owner.into()),
            attempt: 1,
        })?;
        Ok(true)
    }

    /// The take-over of attempt N is the claim file of attempt N + 1.
    fn take_over(&self, dead: &RunRecord, next: &RunRecord) -> Result<bool, RunsError> {
        if !self.claim_file(&dead.job, dead.scheduled, dead.attempt + 1)? {
            return Ok(false);
        }
        self.append(next)?;
        Ok(true)
    }

    /// Removes `claims/<day>` directories older than [`CLAIM_RETENTION`].
    fn prune(&self, now: DateTime<Utc>) -> Result<usize, RunsError> {
        let root = self.dir.join("claims");
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io(root)(e)),
        };
        let oldest = (now - CLAIM_RETENTION).date_naive();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(day) = name
                .to_str()
                .and_then(|n| chrono::NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
            else {
                continue;
            };
            if day < oldest {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(self.io(path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn append(&self, record: &RunRecord) -> Result<(), RunsError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(self.dir.clone()))?;
        let _lock = DirLock::acquire(&self.dir).map_err(self.io(self.dir.clone()))?;
        let path = self.dir.join("runs.jsonl");
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(self.io(path.clone()))?;
        f.write_all(line.as_bytes())
            .map_err(self.io(path.clone()))?;
        f.sync_data().map_err(self.io(path))
    }

    /// Every run, last line per (job, minute); unreadable lines are skipped with a warning.
    fn all(&self) -> Result<Vec<RunRecord>, RunsError> {
        let path = self.dir.join("runs.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(path)(e)),
        };
        let mut runs: BTreeMap<(String, DateTime<Utc>), RunRecord> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str::<RunRecord>(line) {
                Ok(r) => {
                    // Last line wins, except over a later attempt: a scheduler that outlived
                    // its lease must not overwrite the run that took it over.
                    let key = (r.job.clone(), r.scheduled);
                    if runs.get(&key).is_none_or(|old| old.attempt <= r.attempt) {
                        runs.insert(key, r);
                    }
                }
                Err(e) if !line.trim().is_empty() => {
                    tracing::warn!(
                        "{}:{}: skipping an unreadable run record: {e}",
                        path.display(),
                        i + 1
                    );
                }
                Err(_) => {}
            }
        }
        Ok(runs.into_values().collect())
    }
}

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
    fn client(&self) -> Result<Arc<Client>, RunsError> {
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

    fn wait<T: Send + 'static>(
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

    fn claim(&self, claim: &Claim) -> Result<bool, RunsError> {
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

    fn renew(&self, r: &RunRecord) -> Result<(), RunsError> {
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

    fn finish(&self, r: &RunRecord) -> Result<(), RunsError> {
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

    fn take_over(&self, dead: &RunRecord, next: &RunRecord) -> Result<bool, RunsError> {
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

    fn rows(
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

    fn latest(&self) -> Result<BTreeMap<String, RunRecord>, RunsError> {
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

    fn expired(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>, RunsError> {
        self.rows(
            "SELECT job_id, scheduled_minute, started_at, finished_at, outcome, error, \
             lease_until, owner, attempt FROM scheduler_runs WHERE outcome = 'running' AND \
             coalesce(lease_until, started_at + interval '1 hour') < $1 \
             ORDER BY scheduled_minute, job_id",
            Some(now),
        )
    }

    fn running(
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

/// RFC 3339 with seconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
