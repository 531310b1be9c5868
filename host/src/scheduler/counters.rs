//! Runs of this process's scheduler, by job and outcome: `backlog_bridge_scheduler_runs_total`
//! on `/metrics` of `serve --scheduler`. Process-wide (the scheduler and the router share the
//! process but not a handle), counted when a run's outcome is recorded.

use std::collections::BTreeMap;
use std::sync::Mutex;

static RUNS: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// Counts one finished run of `job`.
pub fn record(job: &str, outcome: &str) {
    let mut runs = RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *runs
        .entry((job.to_owned(), outcome.to_owned()))
        .or_default() += 1;
}

/// Every `(job, outcome, count)` so far, sorted.
pub fn snapshot() -> Vec<(String, String, u64)> {
    let runs = RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    runs.iter()
        .map(|((job, outcome), n)| (job.clone(), outcome.clone(), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_are_counted_by_job_and_outcome() {
        super::record("job_a", "ok");
        super::record("job_a", "ok");
        super::record("job_a", "failed");
        let runs = super::snapshot();
        assert!(runs.contains(&("job_a".into(), "ok".into(), 2)), "{runs:?}");
        assert!(
            runs.contains(&("job_a".into(), "failed".into(), 1)),
            "{runs:?}"
        );
    }
}
