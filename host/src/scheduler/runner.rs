//! Runs the `scheduler` component: one store per job run, holding nothing but the invoker
//! (no preopens, no Postgres, no environment; stderr captured into the log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::builtins;
use crate::caps::invoker::{Invoke, InvokeError, InvokerGrant};
use crate::error::ToolError;
use crate::grants::Grants;
use crate::runtime::bindings::backlog_bridge::tool::types as wit_types;
use crate::runtime::bindings::scheduler as bindings;
use crate::runtime::engine::ticks;
use crate::runtime::sandbox::{HostState, Resources, new_store};
use crate::runtime::{Runtime, cache};

use bindings::backlog_bridge::scheduler::invoker as wit_invoker;
use bindings::exports::backlog_bridge::scheduler::runner as wit_runner;

/// Guest memory of the runner (it holds one registry and one answer).
const MEMORY_BYTES: usize = 64 << 20;

/// Where a job comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The registry's text and a job id.
    Registry { text: String, id: String },
    /// `--tool/--action/--params-json`.
    Adhoc {
        tool: String,
        action: String,
        params: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Skipped,
    Failed,
    Timeout,
    DryRun,
}

impl Outcome {
    /// The name recorded in `scheduler_runs.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::DryRun => "dry_run",
        }
    }
}

/// What the component reported.
#[derive(Debug, Clone)]
pub struct Report {
    pub job_id: Option<String>,
    /// The `/v1/tools/execute` body.
    pub request: Value,
    pub outcome: Outcome,
    /// The tool's result.
    pub output: Option<Value>,
    pub reason: Option<String>,
    pub error: Option<InvokeError>,
}

/// Why a job could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Wrong registry or job id (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Malformed `--params-json` (exit 1).
    #[error("{0}")]
    InvalidParams(String),
    /// The component itself failed (trap, time limit).
    #[error("the scheduler component failed: {0}")]
    Component(String),
}

/// The loaded component, pre-linked on the shared linker.
pub struct Runner {
    engine: wasmtime::Engine,
    pre: bindings::SchedulerRunnerPre<HostState>,
    /// The runtime of a runner that has no bridge to share one with (`run-job` over HTTP).
    _own: Option<Runtime>,
}

impl Runner {
    /// Loads the built-in component (through the compiled-component cache) on the bridge's
    /// runtime: its engine and the linker both worlds share.
    pub fn new(runtime: &Runtime, cache_dir: Option<&std::path::Path>) -> anyhow::Result<Runner> {
        let (component, _) = cache::load(
            &runtime.engine,
            builtins::SCHEDULER_WASM,
            builtins::SCHEDULER_WASM_SHA256,
            cache_dir,
        )
        .context("the scheduler component is not loadable")?;
        let pre = bindings::SchedulerRunnerPre::new(runtime.linker.instantiate_pre(&component)?)?;
        Ok(Runner {
            engine: runtime.engine.clone(),
            pre,
            _own: None,
        })
    }

    /// [`Runner::new`] on a runtime of its own (no bridge loaded: `run-job` over HTTP).
    pub fn standalone(cache_dir: Option<&std::path::Path>) -> anyhow::Result<Runner> {
        let runtime = Runtime::new()?;
        let mut runner = Runner::new(&runtime, cache_dir)?;
        runner._own = Some(runtime);
        Ok(runner)
    }

    /// Plans and (unless `dry_run`) runs one job through `invoker`. `limit` bounds the whole
    /// run; the tool call inside has its own, shorter limit.
    pub fn run(
        &self,
        source: &Source,
        dry_run: bool,
        invoker: Arc<dyn Invoke>,
        limit: Duration,
    ) -> Result<Report, PlanError> {
        let component = |e: wasmtime::Error| PlanError::Component(format!("{e:#}"));
        // No grants: no preopens, no Postgres; only the invoker.
        let mut store = new_store(
            &self.engine,
            Grants::default(),
            &Resources::default(),
            MEMORY_BYTES,
        )
        .map_err(|e| PlanError::Component(format!("{e:#}")))?;
        store.data_mut().invoker = InvokerGrant::new(invoker);
        store.set_epoch_deadline(ticks(limit));
        let instance = self.pre.instantiate(&mut store).map_err(component)?;
        let wit_source = match source {
            Source::Registry { text, id } => {
                wit_runner::JobSource::Registry(wit_runner::RegistryJob {
                    registry: text.clone(),
                    id: id.clone(),
                })
            }
            Source::Adhoc {
                tool,
                action,
                params,
            } => wit_runner::JobSource::Adhoc(wit_runner::AdhocJob {
                tool: tool.clone(),
                action: action.clone(),
                params: params.clone(),
            }),
        };
        let result =
            instance
                .backlog_bridge_scheduler_runner()
                .call_run(&mut store, &wit_source, dry_run);
        for line in store.data().stderr.take().lines() {
            tracing::info!(target: "guest", plugin = "scheduler", "{line}");
        }
        let report = match result.map_err(component)? {
            Ok(r) => r,
            Err(wit_runner::PlanError::Usage(m)) => return Err(PlanError::Usage(m)),
            Err(wit_runner::PlanError::InvalidParams(m)) => {
                return Err(PlanError::InvalidParams(m));
            }
        };
        Ok(Report {
            job_id: report.job_id,
            request: serde_json::from_str(&report.request).unwrap_or(Value::Null),
            outcome: match report.outcome {
                wit_runner::Outcome::Ok => Outcome::Ok,
                wit_runner::Outcome::Skipped => Outcome::Skipped,
                wit_runner::Outcome::Failed => Outcome::Failed,
                wit_runner::Outcome::Timeout => Outcome::Timeout,
                wit_runner::Outcome::DryRun => Outcome::DryRun,
            },
            output: report.output.and_then(|o| serde_json::from_str(&o).ok()),
            reason: report.reason,
            error: report.error.map(|e| match e {
                wit_invoker::InvokeError::Tool(t) => InvokeError::Tool(from_wit(t)),
                wit_invoker::InvokeError::Unauthenticated(m) => InvokeError::Unauthenticated(m),
                wit_invoker::InvokeError::Transport(m) => InvokeError::Transport(m),
            }),
        })
    }
}

fn from_wit(e: wit_types::ToolError) -> ToolError {
    use crate::error::Code;
    use wit_types::ErrorCode as W;
    let code = backlog_core::map_error_code!(e.code, W => Code);
    ToolError::new(code, e.message)
}
