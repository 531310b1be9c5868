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

use chrono::{DateTime, Utc};

mod jsonl;
mod pg;
mod record;

pub use jsonl::JsonlRuns;
pub use pg::PgRuns;
pub use record::*;

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
