//! Runs the `scheduler` component: one store per job run, holding nothing but the invoker
//! (no preopens, no Postgres, no environment; stderr captured into the log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::caps::invoker::{Invoke, InvokeError};
use crate::error::ToolError;
use crate::runtime::cache;
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::stderr::Capture;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backlog-bridge:scheduler/scheduler-runner@0.1.0",
    });
}

use bindings::backlog_bridge::scheduler::invoker as wit_invoker;
use bindings::backlog_bridge::tool::types as wit_types;
use bindings::exports::backlog_bridge::scheduler::runner as wit_runner;

/// The component, built into the binary.
const SCHEDULER_WASM: &[u8] = include_bytes!(env!("SCHEDULER_WASM"));

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

struct RunnerState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: Capture,
    limits: StoreLimits,
    invoker: Arc<dyn Invoke>,
}

impl WasiView for RunnerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for RunnerState {}

impl wit_invoker::Host for RunnerState {
    fn invoke(&mut self, request: String) -> Result<String, wit_invoker::InvokeError> {
        let parsed: Value = serde_json::from_str(&request).map_err(|e| {
            wit_invoker::InvokeError::Transport(format!("the planned request is not JSON: {e}"))
        })?;
        match self.invoker.invoke(&parsed) {
            Ok(v) => Ok(v.to_string()),
            Err(InvokeError::Tool(e)) => Err(wit_invoker::InvokeError::Tool(to_wit(&e))),
            Err(InvokeError::Unauthenticated(m)) => {
                Err(wit_invoker::InvokeError::Unauthenticated(m))
            }
            Err(InvokeError::Transport(m)) => Err(wit_invoker::InvokeError::Transport(m)),
        }
    }
}

/// The loaded component and its linker.
pub struct Runner {
    engine: Engine,
    pre: bindings::SchedulerRunnerPre<RunnerState>,
}

impl Runner {
    /// Loads the built-in component (through the compiled-component cache) on `engine`.
    pub fn new(engine: &Engine, cache_dir: Option<&std::path::Path>) -> anyhow::Result<Runner> {
        let (component, _) = cache::load(engine, SCHEDULER_WASM, cache_dir)
            .context("the scheduler component is not loadable")?;
        let mut linker: Linker<RunnerState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI p2 for the scheduler")?;
        bindings::SchedulerRunner::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the scheduler's invoker")?;
        let pre = bindings::SchedulerRunnerPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runner {
            engine: engine.clone(),
            pre,
        })
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
        let stderr = Capture::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        let state = RunnerState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            stderr,
            limits: StoreLimitsBuilder::new().memory_size(MEMORY_BYTES).build(),
            invoker,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline((limit.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1);
        let component = |e: wasmtime::Error| PlanError::Component(format!("{e:#}"));
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

fn to_wit(e: &ToolError) -> wit_types::ToolError {
    use crate::error::Code;
    use wit_types::ErrorCode as W;
    let code = backlog_core::map_error_code!(e.code, Code => W);
    wit_types::ToolError {
        code,
        message: e.message.clone(),
    }
}

fn from_wit(e: wit_types::ToolError) -> ToolError {
    use crate::error::Code;
    use wit_types::ErrorCode as W;
    let code = backlog_core::map_error_code!(e.code, W => Code);
    ToolError::new(code, e.message)
}
