//! The governance scheduler (`docs/scheduler.md`): the task registry loaded against the RBAC matrix, the
//! `scheduler` component runner, the run store, and the loop behind `backlog-bridge
//! scheduler` (and, once wired, `serve --scheduler`).
//!
//! Must not: run a job twice for one scheduled minute (every run is claimed first, see
//! `runs/`), or reach a tool other than through the invoker (`caps/invoker.rs`), whose
//! in-process transport ([`Local`]) is the call pipeline as the job's agent.

mod config;
pub mod counters;
pub mod local;
pub mod runner;
pub mod runs;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Duration as Minutes, Utc};
use scheduler_core::cron::minute_floor;
use scheduler_core::plan::{self, Action, GRACE};
use scheduler_core::{Catalog, Registry};
use serde_json::{Value, json};

use crate::backlog::Backend;
use crate::call::DEFAULT_TIMEOUT;
use crate::config::rbac::Matrix;
use crate::registry::{Bridge, Live};
use config::Config;
pub use config::{catalog, load_registry, registry_path};
pub use local::Local;
use runner::{Outcome, Runner, Source};
use runs::{JsonlRuns, PgRuns, RunRecord, Runs};

/// Extra time the runner component gets beyond its tool call's own limit.
const RUNNER_MARGIN: Duration = Duration::from_secs(30);

/// A claim's lease beyond the runner's own limit (recording, clock skew between replicas).
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// This process as a claim's owner: `host/pid`.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}

/// How long a claim of `job` holds: its call's limit + the runner's margin + [`LEASE_MARGIN`].
pub fn lease(matrix: &Matrix, job: &scheduler_core::Job) -> Minutes {
    let d = call_timeout(matrix, &job.tool, &job.action) + RUNNER_MARGIN + LEASE_MARGIN;
    Minutes::from_std(d).unwrap_or(Minutes::hours(1))
}

/// The time limit of one call of `tool.action` (the matrix's `timeout_s`, else 10 s).
pub fn call_timeout(matrix: &Matrix, tool: &str, action: &str) -> Duration {
    matrix
        .action(tool, action)
        .and_then(|r| r.timeout_s)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// The run store the bridge's backend implies: `scheduler_runs` with Postgres (required for
/// `postgres`; `auto` falls back to JSONL when Postgres does not answer), else JSONL.
pub fn open_runs(bridge: &Bridge) -> anyhow::Result<Runs> {
    let jsonl = || {
        Runs::Jsonl(JsonlRuns {
            dir: bridge.settings.ops_dir.join("scheduler"),
        })
    };
    let Some(pool) = bridge.postgres_pool() else {
        return Ok(jsonl());
    };
    match PgRuns::connect(pool) {
        Ok(pg) => Ok(Runs::Postgres(pg)),
        Err(e) if bridge.settings.backend == Backend::Postgres => {
            Err(e).context("the scheduler's run table")
        }
        Err(e) => {
            tracing::warn!(
                "scheduler: Postgres unavailable ({e}); recording runs in JSONL on this host only"
            );
            Ok(jsonl())
        }
    }
}

/// Which minutes the loop looks at.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Each minute of `[from, until]`, as fast as jobs finish (drills and tests).
    Span {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// The bridge's clock, once a minute, until stopped.
    Wall,
}

/// Counts of what one loop did (for its final log line and tests).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub ticks: u64,
    pub claimed: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    pub timeout: u64,
    pub missed: u64,
    /// Runs another process (or an earlier loop) had claimed.
    pub already_claimed: u64,
    /// Runs of a dead scheduler (lease expired while `running`) this loop recorded `failed`.
    pub died: u64,
    /// Of those, retried once here (retryable jobs).
    pub retried: u64,
    /// Claim-file day directories pruned.
    pub pruned: u64,
}

/// The scheduler loop: at each minute, claims and runs (or records `missed`) every due job,
/// in `after` order, until the span ends or `stop` is set. `between` runs between ticks (at
/// least once a second: the `scheduler` command's SIGHUP reload); a new bridge in `live` is
/// taken, with its task registry, at the next tick.
pub fn run(
    live: &Live,
    clock: Clock,
    stop: &AtomicBool,
    between: &dyn Fn(),
) -> anyhow::Result<Summary> {
    let mut config = Config::load(live.current())?;
    let runs = open_runs(&config.bridge)?;
    let runtime = config.bridge.runtime();
    let runner = Runner::new(runtime, config.bridge.settings.cache_dir.as_deref())?;
    tracing::info!(
        jobs = config.registry.jobs.len(),
        runs = runs.backend(),
        "scheduler: started"
    );
    let owner = owner();
    let mut summary = Summary::default();
    let mut previous: Option<DateTime<Utc>> = None;
    let mut pruned_day = None;
    let mut seen = config.bridge.clone();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        between();
        let current = live.current();
        if !Arc::ptr_eq(&current, &seen) {
            seen = current.clone();
            match Config::load(current) {
                Ok(new) => {
                    tracing::info!(jobs = new.registry.jobs.len(), "scheduler: config reloaded");
                    config = new;
                }
                Err(e) => tracing::error!("scheduler: the reloaded config is not taken: {e:#}"),
            }
        }
        let (bridge, registry) = (&config.bridge, &config.registry);
        let ctx = Loop {
            bridge,
            registry,
            text: &config.text,
            catalog: &config.catalog,
            runs: &runs,
            runner: &runner,
            stop,
            drill: matches!(clock, Clock::Span { .. }),
            owner: &owner,
        };
        let tick = match clock {
            Clock::Span { from, until } => {
                let t = previous.map_or(minute_floor(from), |p| p + Minutes::minutes(1));
                if t > until {
                    break;
                }
                t
            }
            Clock::Wall => {
                let t = minute_floor(bridge.clock());
                if previous.is_some_and(|p| t <= p) {
                    sleep_to_next_minute(bridge);
                    continue;
                }
                t
            }
        };
        summary.ticks += 1;
        // Claim files past the retention, once a day (of the bridge's clock).
        let today = bridge.clock().date_naive();
        if pruned_day != Some(today) {
            pruned_day = Some(today);
            match runs.prune(bridge.clock()) {
                Ok(0) => {}
                Ok(n) => {
                    summary.pruned += n as u64;
                    tracing::info!(days = n, "scheduler: pruned old claim files");
                }
                Err(e) => tracing::warn!("scheduler: cannot prune old claim files: {e}"),
            }
        }
        ctx.take_over_dead(&mut summary);
        let latest = if previous.is_none() {
            runs.latest()?
        } else {
            Default::default()
        };
        // A job without a record of its own looks back as far as the scheduler's latest
        // record of any job: it was up then, so every firing since is due (or missed).
        let any_last = latest.values().map(|r| r.scheduled).max();
        for &i in &config.order {
            let job = &registry.jobs[i];
            let last = latest.get(&job.id).map(|r| r.scheduled).or(any_last);
            let start = plan::window_start(previous, last, tick);
            for due in plan::due_for_job(registry, i, start, tick) {
                ctx.handle(&due, tick, &mut summary);
            }
        }
        previous = Some(tick);
    }
    tracing::info!(?summary, "scheduler: stopped");
    Ok(summary)
}

struct Loop<'a> {
    bridge: &'a Arc<Bridge>,
    registry: &'a Registry,
    text: &'a str,
    catalog: &'a Catalog,
    runs: &'a Runs,
    runner: &'a Runner,
    stop: &'a AtomicBool,
    /// Stepping through a span: records and tools see the scheduled minute as "now".
    drill: bool,
    /// This process as a claim's owner.
    owner: &'a str,
}

impl Loop<'_> {
    /// The time the loop records: the wall (or pinned) clock in production; in a drill of a
    /// span the tick, so records stay inside the span.
    fn now(&self, tick: DateTime<Utc>) -> DateTime<Utc> {
        if self.drill {
            tick
        } else {
            self.bridge.clock()
        }
    }

    /// Runs of dead schedulers (`running`, lease expired on the bridge's clock): each is
    /// taken over once across all replicas — recorded `failed` ("scheduler died"), or run
    /// again once when its job is `retryable` and this was its first attempt.
    fn take_over_dead(&self, summary: &mut Summary) {
        let now = self.bridge.clock();
        let dead = match self.runs.expired(now) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("scheduler: cannot look for runs of dead schedulers: {e}");
                return;
            }
        };
        for run in dead {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let died = runs::died_message(&run);
            let job = self.registry.job(&run.job);
            let retry = job.filter(|j| j.retryable && run.attempt == 1);
            let next = RunRecord {
                job: run.job.clone(),
                scheduled: run.scheduled,
                started_at: Some(now),
                finished_at: retry.is_none().then_some(now),
                outcome: if retry.is_some() { "running" } else { "failed" }.into(),
                error: Some(died.clone()),
                lease_until: retry.map(|j| now + lease(&self.bridge.matrix, j)),
                owner: Some(self.owner.to_owned()),
                // The retry is attempt 2; `failed` closes the dead attempt itself.
                attempt: if retry.is_some() {
                    run.attempt + 1
                } else {
                    run.attempt
                },
            };
            match self.runs.take_over(&run, &next) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(job = run.job, "scheduler: cannot take over a dead run: {e}");
                    continue;
                }
            }
            summary.died += 1;
            let minute = runs::ts(run.scheduled);
            let Some(job) = retry else {
                summary.failed += 1;
                tracing::error!(
                    job = run.job,
                    minute,
                    outcome = "failed",
                    error = died.as_str(),
                    "scheduler: run"
                );
                continue;
            };
            summary.retried += 1;
            tracing::warn!(
                job = job.id,
                minute,
                error = died.as_str(),
                "scheduler: retrying a run whose scheduler died (attempt 2)"
            );
            let (outcome, error) = match self.catalog.not_installed(job) {
                Some(reason) => ("skipped", Some(reason)),
                None => self.execute(job, run.scheduled),
            };
            self.count(outcome, summary);
            let error = Some(match error {
                Some(e) => format!("{e} (attempt 2, after: {died})"),
                None => format!("attempt 2, after: {died}"),
            });
            self.record(&RunRecord {
                finished_at: Some(self.bridge.clock()),
                outcome: outcome.into(),
                error,
                lease_until: None,
                ..next
            });
        }
    }

    fn count(&self, outcome: &str, summary: &mut Summary) {
        match outcome {
            "ok" => summary.ok += 1,
            "skipped" => summary.skipped += 1,
            "timeout" => summary.timeout += 1,
            "missed" => summary.missed += 1,
            _ => summary.failed += 1,
        }
    }

    fn record(&self, record: &RunRecord) {
        if let Err(e) = self.runs.finish(record) {
            tracing::error!(
                job = record.job,
                "scheduler: cannot record the run's outcome: {e}"
            );
        }
        let minute = runs::ts(record.scheduled);
        let outcome = record.outcome.as_str();
        counters::record(&record.job, outcome);
        match &record.error {
            None => tracing::info!(job = record.job, minute, outcome, "scheduler: run"),
            Some(e) => tracing::warn!(
                job = record.job,
                minute,
                outcome,
                error = e.as_str(),
                "scheduler: run"
            ),
        }
    }

    fn handle(&self, due: &plan::Due, tick: DateTime<Utc>, summary: &mut Summary) {
        let job = &self.registry.jobs[due.job];
        let claim = runs::Claim {
            job: &job.id,
            minute: due.minute,
            now: self.now(tick),
            lease_until: self.bridge.clock() + lease(&self.bridge.matrix, job),
            owner: self.owner,
        };
        let claimed = match self.runs.claim(&claim) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(job = job.id, minute = %runs::ts(due.minute), "scheduler: cannot claim the run, not running it: {e}");
                return;
            }
        };
        if !claimed {
            summary.already_claimed += 1;
            tracing::debug!(job = job.id, minute = %runs::ts(due.minute), "scheduler: already claimed");
            return;
        }
        summary.claimed += 1;
        let started = self.now(tick);
        let (outcome, error) = match &due.action {
            Action::Missed(reason) => ("missed", Some(reason.clone())),
            Action::Run => match self.catalog.not_installed(job) {
                Some(reason) => ("skipped", Some(reason)),
                None => {
                    if self.wait_for_after(job, due.minute) {
                        // The wait may have used up the lease: it starts now.
                        let renewed = RunRecord {
                            job: job.id.clone(),
                            scheduled: due.minute,
                            started_at: Some(started),
                            finished_at: None,
                            outcome: "running".into(),
                            error: None,
                            lease_until: Some(
                                self.bridge.clock() + lease(&self.bridge.matrix, job),
                            ),
                            owner: Some(self.owner.to_owned()),
                            attempt: 1,
                        };
                        if let Err(e) = self.runs.renew(&renewed) {
                            tracing::warn!(job = job.id, "scheduler: cannot renew the claim: {e}");
                        }
                    }
                    self.execute(job, due.minute)
                }
            },
        };
        self.count(outcome, summary);
        self.record(&RunRecord {
            job: job.id.clone(),
            scheduled: due.minute,
            started_at: Some(started),
            finished_at: Some(self.now(tick)),
            outcome: outcome.into(),
            error,
            lease_until: None,
            owner: Some(self.owner.to_owned()),
            attempt: 1,
        });
    }

    /// Runs one claimed job through the component; returns the outcome and error.
    fn execute(
        &self,
        job: &scheduler_core::Job,
        minute: DateTime<Utc>,
    ) -> (&'static str, Option<String>) {
        let timeout = call_timeout(&self.bridge.matrix, &job.tool, &job.action);
        let invoker = Arc::new(Local {
            bridge: self.bridge.clone(),
            agent: job.agent.clone(),
            now: self.drill.then_some(minute),
        });
        let source = Source::Registry {
            text: self.text.to_owned(),
            id: job.id.clone(),
        };
        match self
            .runner
            .run(&source, false, invoker, timeout + RUNNER_MARGIN)
        {
            Ok(report) => {
                let error = report.error.map(|e| e.to_string()).or(report.reason);
                let outcome = match report.outcome {
                    Outcome::Ok | Outcome::DryRun => "ok",
                    Outcome::Skipped => "skipped",
                    Outcome::Timeout => "timeout",
                    Outcome::Failed => "failed",
                };
                (outcome, error)
            }
            Err(e) => ("failed", Some(e.to_string())),
        }
    }

    /// `after`: waits (at most [`GRACE`]) while a run of the same UTC day of a job this one
    /// comes after is still running, possibly on another replica. Returns whether it waited.
    fn wait_for_after(&self, job: &scheduler_core::Job, minute: DateTime<Utc>) -> bool {
        if job.after.is_empty() {
            return false;
        }
        let day_start = minute
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(minute);
        let deadline = std::time::Instant::now() + GRACE.to_std().unwrap_or_default();
        let mut waited = false;
        loop {
            match self.runs.running(&job.after, day_start, minute) {
                Ok(false) => return waited,
                Ok(true)
                    if std::time::Instant::now() < deadline
                        && !self.stop.load(Ordering::Relaxed) =>
                {
                    tracing::info!(job = job.id, after = ?job.after, "scheduler: waiting for the jobs it comes after");
                    waited = true;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Ok(true) => {
                    tracing::warn!(job = job.id, after = ?job.after, "scheduler: stopped waiting for the jobs it comes after");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(
                        job = job.id,
                        "scheduler: cannot check the jobs it comes after: {e}"
                    );
                    return waited;
                }
            }
        }
    }
}

/// Sleeps towards the next minute, at most a second (so `stop` is noticed).
fn sleep_to_next_minute(bridge: &Bridge) {
    let now = bridge.clock();
    let next = minute_floor(now) + Minutes::minutes(1);
    let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
    // Wake at least every second to notice `stop`.
    std::thread::sleep(wait.min(Duration::from_secs(1)));
}

/// `scheduler status`: per job its last run, outcome and next due time, as JSON.
pub fn status(bridge: &Bridge) -> anyhow::Result<Value> {
    let cat = catalog(&bridge.matrix, |t| bridge.provides(t));
    let (registry, _) = load_registry(&bridge.settings.ops_dir, &cat)?;
    let runs = open_runs(bridge)?;
    let latest = runs.latest()?;
    let now = bridge.clock();
    let jobs: Vec<Value> = registry
        .jobs
        .iter()
        .map(|j| {
            let last = latest.get(&j.id);
            json!({
                "id": j.id,
                "schedule": j.schedule.as_str(),
                "tool": j.tool,
                "action": j.action,
                "agent": j.agent,
                "enabled": j.enabled,
                "installed": cat.not_installed(j).is_none(),
                "retryable": j.retryable,
                "last_run": last.map(|r| json!({
                    "scheduled": runs::ts(r.scheduled),
                    "started_at": r.started_at.map(runs::ts),
                    "finished_at": r.finished_at.map(runs::ts),
                    "outcome": r.outcome,
                    "error": r.error,
                    "attempt": r.attempt,
                    "owner": r.owner,
                    "lease_until": r.lease_until.map(runs::ts),
                    "lease_expired": r.lease_expired(now),
                })),
                "outcome": last.map(|r| r.outcome.clone()),
                "next_due": j.enabled.then(|| j.schedule.next_after(now).map(runs::ts)).flatten(),
            })
        })
        .collect();
    Ok(json!({ "runs": runs.backend(), "now": runs::ts(now), "jobs": jobs }))
}
