//! Which runs are due when the scheduler looks at the clock (`docs/scheduler.md`).
//!
//! The loop looks once per minute (`tick`). Each look covers the minutes since the previous
//! one (`window_start..=tick`); after downtime the window reaches back to the job's last
//! recorded run. In that window, for each enabled job, the latest firing minute no older than
//! [`GRACE`] runs once; every other firing minute is recorded `missed`. Jobs come in `after`
//! order, so within one look a job runs after the jobs it waits for.

use chrono::{DateTime, Duration, Utc};

use crate::cron::minute_floor;
use crate::registry::Registry;

/// A missed run younger than this still runs (once) when the scheduler comes back.
pub const GRACE: Duration = Duration::minutes(15);

/// How far back a scheduler coming back from downtime looks for missed runs.
pub const LOOKBACK: Duration = Duration::days(7);

/// What to do about one (job, scheduled minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Claim and run it.
    Run,
    /// Claim and record it `missed` with this reason.
    Missed(String),
}

/// One due (job, minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Index into `Registry::jobs`.
    pub job: usize,
    pub minute: DateTime<Utc>,
    pub action: Action,
}

/// Where a look at `tick` starts: just after the previous look of this loop; on a loop's first
/// look, just after the job's last recorded run (if that is older than `tick` and within
/// [`LOOKBACK`]), else `tick` itself.
pub fn window_start(
    previous_tick: Option<DateTime<Utc>>,
    last_recorded: Option<DateTime<Utc>>,
    tick: DateTime<Utc>,
) -> DateTime<Utc> {
    let tick = minute_floor(tick);
    let next = |t: DateTime<Utc>| minute_floor(t) + Duration::minutes(1);
    match (previous_tick, last_recorded) {
        (Some(p), _) => next(p).min(tick),
        (None, Some(r)) if minute_floor(r) < tick => next(r).max(tick - LOOKBACK),
        _ => tick,
    }
}

/// The due runs of one job in `[start, tick]`.
pub fn due_for_job(
    registry: &Registry,
    job: usize,
    start: DateTime<Utc>,
    tick: DateTime<Utc>,
) -> Vec<Due> {
    let Some(j) = registry.jobs.get(job) else {
        return Vec::new();
    };
    if !j.enabled {
        return Vec::new();
    }
    let tick = minute_floor(tick);
    let minutes = j.schedule.fires_between(start, tick);
    let runnable = minutes.iter().rposition(|m| tick - *m <= GRACE);
    minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let action = if runnable == Some(i) {
                Action::Run
            } else if tick - *m > GRACE {
                Action::Missed(format!(
                    "the scheduler was not running within {} minutes of {}",
                    GRACE.num_minutes(),
                    m.format("%Y-%m-%dT%H:%MZ")
                ))
            } else {
                let ran = runnable.map(|r| minutes[r]).unwrap_or(*m);
                Action::Missed(format!(
                    "superseded: the scheduler was down; the run of {} ran instead",
                    ran.format("%Y-%m-%dT%H:%MZ")
                ))
            };
            Due {
                job,
                minute: *m,
                action,
            }
        })
        .collect()
}

/// Whether `a` and `b` fall on the same UTC day (for `after`).
pub fn same_day(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    a.date_naive() == b.date_naive()
}

#[cfg(test)]
mod tests;
