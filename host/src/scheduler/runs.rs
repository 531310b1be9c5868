//! Where scheduler runs are claimed and recorded (SPEC §11): `scheduler_runs` in Postgres, or
//! `<ops-dir>/scheduler/runs.jsonl` with exclusive claim files.
//!
//! Exactly once per (job, scheduled minute): a run is *claimed* before it starts, and only the
//! claimer runs it. Postgres: `INSERT … ON CONFLICT DO NOTHING` on the table's primary key,
//! so any number of replicas can race and exactly one wins, with nothing to lose or renew
//! (no leader lock). JSONL: `create_new` of `claims/<day>/<job>@<HHMM>`, exclusive on one host
//! (not across hosts sharing a network file system: use Postgres there).

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
    pub fn claim(
        &self,
        job: &str,
        minute: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        match self {
            Runs::Jsonl(r) => r.claim(job, minute, now),
            Runs::Postgres(r) => r.claim(job, minute, now),
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

    fn claim(
        &self,
        job: &str,
        minute: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        let day = self
            .dir
            .join("claims")
            .join(minute.format("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&day).map_err(self.io(day.clone()))?;
        let path = day.join(format!("{job}@{}", minute.format("%H%M")));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.io(path)(e)),
        }
        self.append(&RunRecord {
            job: job.into(),
            scheduled: minute,
            started_at: Some(now),
            finished_at: None,
            outcome: "running".into(),
            error: None,
        })?;
        Ok(true)
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
                    runs.insert((r.job.clone(), r.scheduled), r);
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
    client: Arc<Client>,
}

impl PgRuns {
    /// Connects and checks that `scheduler_runs` exists.
    pub fn connect(pool: Arc<Postgres>) -> Result<PgRuns, RunsError> {
        let client = Arc::new(
            pool.connect()
                .map_err(|e| RunsError::Postgres(e.to_string()))?,
        );
        let runs = PgRuns { pool, client };
        let c = runs.client.clone();
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
        Ok(runs)
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

    fn claim(
        &self,
        job: &str,
        minute: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        let c = self.client.clone();
        let job = job.to_owned();
        let n = self.wait(async move {
            c.execute(
                "INSERT INTO scheduler_runs (job_id, scheduled_minute, started_at, outcome) \
                 VALUES ($1, $2, $3, 'running') ON CONFLICT (job_id, scheduled_minute) DO NOTHING",
                &[&job, &minute, &now],
            )
            .await
        })?;
        Ok(n == 1)
    }

    fn finish(&self, r: &RunRecord) -> Result<(), RunsError> {
        let c = self.client.clone();
        let r = r.clone();
        self.wait(async move {
            c.execute(
                "UPDATE scheduler_runs SET started_at = coalesce(started_at, $3), finished_at = $4, \
                 outcome = $5, error = $6 WHERE job_id = $1 AND scheduled_minute = $2",
                &[&r.job, &r.scheduled, &r.started_at, &r.finished_at, &r.outcome, &r.error],
            )
            .await
        })
        .map(|_| ())
    }

    fn latest(&self) -> Result<BTreeMap<String, RunRecord>, RunsError> {
        let c = self.client.clone();
        let rows = self.wait(async move {
            c.query(
                "SELECT DISTINCT ON (job_id) job_id, scheduled_minute, started_at, finished_at, \
                 outcome, error FROM scheduler_runs ORDER BY job_id, scheduled_minute DESC",
                &[],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .map(|row| {
                let r = RunRecord {
                    job: row.get(0),
                    scheduled: row.get(1),
                    started_at: row.get(2),
                    finished_at: row.get(3),
                    outcome: row.get(4),
                    error: row.get(5),
                };
                (r.job.clone(), r)
            })
            .collect())
    }

    fn running(
        &self,
        jobs: &[String],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, RunsError> {
        let c = self.client.clone();
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
