//! `<ops-dir>/scheduler/`: the run store without Postgres — `runs.jsonl` and exclusive
//! `create_new` claim files.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::record::{CLAIM_RETENTION, Claim, RunRecord, RunsError};
use crate::lock::DirLock;

/// `<ops-dir>/scheduler/`: `runs.jsonl` (one line per change, last line per (job, minute)
/// wins) and `claims/`.
pub struct JsonlRuns {
    pub dir: PathBuf,
}

impl JsonlRuns {
    pub(super) fn io(&self, path: PathBuf) -> impl FnOnce(std::io::Error) -> RunsError {
        move |source| RunsError::Io { path, source }
    }

    /// `create_new` of the claim file of attempt `attempt` of (job, minute): `true` if this
    /// caller created it.
    pub(super) fn claim_file(
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

    pub(super) fn claim(&self, c: &Claim) -> Result<bool, RunsError> {
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
    pub(super) fn take_over(&self, dead: &RunRecord, next: &RunRecord) -> Result<bool, RunsError> {
        if !self.claim_file(&dead.job, dead.scheduled, dead.attempt + 1)? {
            return Ok(false);
        }
        self.append(next)?;
        Ok(true)
    }

    /// Removes `claims/<day>` directories older than [`CLAIM_RETENTION`].
    pub(super) fn prune(&self, now: DateTime<Utc>) -> Result<usize, RunsError> {
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

    pub(super) fn append(&self, record: &RunRecord) -> Result<(), RunsError> {
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
    pub(super) fn all(&self) -> Result<Vec<RunRecord>, RunsError> {
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
