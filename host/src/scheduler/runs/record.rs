//! What both run stores share: the record of one run, a claim, the store's error, and the
//! timing constants (a leaf: `jsonl.rs` and `pg.rs` build on it, `mod.rs` picks a store).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// How long one run-table statement may take.
pub(super) const WAIT: Duration = Duration::from_secs(30);

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

/// RFC 3339 with seconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
