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
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

mod jsonl;
mod pg;

pub use jsonl::JsonlRuns;
pub use pg::PgRuns;

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

/// RFC 3339 with seconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
