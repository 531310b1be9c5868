//! The call pipeline: the one way from an entry point into a guest.
//!
//! Every face is a thin translator into this file: REST and MCP over HTTP (through [`Gate`]),
//! MCP over stdio, the CLI's `call` and `batch`, `run-job --local` and the scheduler (through
//! [`authorize`] and [`Authorized::run`]). A call goes:
//!
//! 1. [`authorize`]: the tool and action exist (404), the agent holds every entitlement the
//!    action requires (403). The answer is an [`Authorized`] token, the only value that can
//!    enter a guest; it carries the call's grants and time limit.
//! 2. [`Params`]: the params document, at most [`MAX_PARAMS_BYTES`] (413). Checked here only.
//! 3. [`Gate::run`] (`serve`): admission (503 beyond `--max-in-flight`), a worker
//!    (`--workers` guest calls at once, on the blocking pool), the call's metrics, and the
//!    in-flight count the shutdown drain waits for.
//! 4. [`Authorized::run`]: the store's preparation (directories, write lock), the guest in a
//!    sandbox holding exactly the grants, durability of a write before the answer, and one
//!    `tool call` log line carrying the request id of [`Meta`].
//!
//! Must not: let anything but an [`Authorized`] token reach [`Plugin::enter`]
//! (`crate::runtime::Plugin`); decide grants anywhere else than from the RBAC rule and the
//! plugin's entry; run guest code on an async runtime's threads.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::audit::Face;
use crate::backlog::store::{DirLocking, StoreCall};
use crate::error::{Code, ToolError};
use crate::grants::{Access, Grants, grants_for};
use crate::http::metrics::Metrics;
use crate::registry::{Bridge, Loaded};
use crate::runtime::plugin::{Context, Invocation};

/// Largest params document accepted (`docs/http-api.md`).
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

/// Default wall-clock limit of a call whose action sets no `timeout_s` (`docs/configuration.md`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One tool call as a local entry point received it (for [`Bridge::call`]).
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    /// The authenticated (or locally trusted) agent id.
    pub agent: &'a str,
    pub tool: &'a str,
    pub action: &'a str,
    /// The params object, as JSON text.
    pub params: &'a str,
}

/// A params document within [`MAX_PARAMS_BYTES`], as JSON text: the only way params reach
/// [`Authorized::run`], so the size is checked in one place.
#[derive(Debug, Clone)]
pub struct Params(String);

impl Params {
    /// JSON text as an entry point received it (the guest validates its shape).
    pub fn new(text: String) -> Result<Params, ToolError> {
        if text.len() > MAX_PARAMS_BYTES {
            return Err(ToolError::new(
                Code::PayloadTooLarge,
                format!(
                    "params are {} bytes; the limit is {MAX_PARAMS_BYTES}",
                    text.len()
                ),
            ));
        }
        Ok(Params(text))
    }

    /// A params object.
    pub fn from_map(params: Map<String, Value>) -> Result<Params, ToolError> {
        Params::new(Value::Object(params).to_string())
    }

    /// Any JSON value (a params object, or what an MCP client sent as arguments).
    pub fn from_value(params: &Value) -> Result<Params, ToolError> {
        Params::new(params.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of one request, as an HTTP request's extension: the router's access log gives it,
/// the REST and MCP faces hand it to the pipeline in [`Meta`] (`x-request-id` on the response).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What an entry point tells the pipeline besides the call itself.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The id of the request: the router's (so its access log line, the `tool call` line and
    /// the guest's context carry the same one), else a fresh one.
    pub request_id: String,
    /// The clock the guest sees (the scheduler's drills pin each job to its minute); `None`:
    /// the bridge's clock.
    pub now: Option<DateTime<Utc>>,
    /// The host's own bookkeeping (the overdue gauges): its `tool call` line is debug.
    pub quiet: bool,
    /// The face the call came through (the audit line's `face`; no line when `quiet`).
    pub face: Face,
}

impl Meta {
    /// A fresh request id, the bridge's clock.
    pub fn new() -> Meta {
        Meta::with_id(new_request_id())
    }

    /// Under the request id the entry point chose.
    pub fn with_id(request_id: String) -> Meta {
        Meta {
            request_id,
            now: None,
            quiet: false,
            face: Face::Cli,
        }
    }

    /// For the host's own calls: logged at debug.
    pub fn quiet() -> Meta {
        Meta {
            quiet: true,
            ..Meta::new()
        }
    }
}

impl Default for Meta {
    fn default() -> Meta {
        Meta::new()
    }
}

/// A call that passed [`authorize`]: the only way into a guest ([`Authorized::run`]).
/// `B` is how the bridge is held: `&Bridge` for a call run in place, `Arc<Bridge>` for one
/// sent to a worker.
pub struct Authorized<B> {
    bridge: B,
    agent: String,
    tool: String,
    action: String,
    grants: Grants,
    timeout: Duration,
}

/// The checks that run before any params are looked at (`docs/actions.md`): the tool and
/// action exist (404), then `agent` holds every entitlement the action requires (403).
pub fn authorize<B: Deref<Target = Bridge>>(
    bridge: B,
    agent: &str,
    tool: &str,
    action: &str,
) -> Result<Authorized<B>, ToolError> {
    authorize_with(bridge, [agent, tool, action], None)
}

/// [`authorize`] for a face's call: a refusal leaves its audit line ([`record`]).
pub fn authorize_as<B: Deref<Target = Bridge>>(
    bridge: B,
    agent: &str,
    tool: &str,
    action: &str,
    meta: &Meta,
) -> Result<Authorized<B>, ToolError> {
    authorize_with(bridge, [agent, tool, action], Some(meta))
}

/// [`authorize`], with the deny line when `meta` says whose call it is: one resolution.
fn authorize_with<B: Deref<Target = Bridge>>(
    bridge: B,
    [agent, tool, action]: [&str; 3],
    meta: Option<&Meta>,
) -> Result<Authorized<B>, ToolError> {
    let (loaded, rule) = match bridge.resolve(agent, tool, action) {
        Ok(found) => found,
        Err(e) => {
            if let Some(m) = meta {
                let who = (m.quiet, m.face, m.request_id.as_str());
                record::denied(&bridge, who, [agent, tool, action], &e);
            }
            return Err(e);
        }
    };
    let grants = grants_for(
        loaded.entry.may_use,
        &loaded.entry.grants,
        &rule.entitlements,
    );
    let timeout = rule.timeout_s.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    Ok(Authorized {
        agent: agent.to_owned(),
        tool: tool.to_owned(),
        action: action.to_owned(),
        grants,
        timeout,
        bridge,
    })
}

impl Bridge {
    /// [`authorize`] for a call run in place.
    pub fn authorize(
        &self,
        agent: &str,
        tool: &str,
        action: &str,
    ) -> Result<Authorized<&Bridge>, ToolError> {
        authorize(self, agent, tool, action)
    }

    /// One whole call for a local entry point (CLI `call` and `batch`, benchmarks): [`call`]
    /// under a fresh request id.
    pub fn call(&self, req: &CallRequest) -> Result<Answer, ToolError> {
        call(
            self,
            req.agent,
            req.tool,
            req.action,
            req.params.to_owned(),
            Meta::new(),
        )
    }
}

/// One whole call for an in-process entry point: [`authorize`], [`Params`],
/// [`Authorized::run`]; a refusal is logged like any finished call.
pub fn call<B: Deref<Target = Bridge>>(
    bridge: B,
    agent: &str,
    tool: &str,
    action: &str,
    params: String,
    meta: Meta,
) -> Result<Answer, ToolError> {
    let started = Instant::now();
    let call = match authorize_as(bridge, agent, tool, action, &meta) {
        Ok(call) => call,
        Err(e) => {
            log_call(agent, tool, action, &meta, started, &Err(&e));
            return Err(e);
        }
    };
    match Params::new(params) {
        Ok(params) => call.run(params, meta),
        Err(e) => Err(call.refused(e, &meta, started)),
    }
}

impl<B: Deref<Target = Bridge>> Authorized<B> {
    /// The agent, tool and action this token is for.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    pub fn tool(&self) -> &str {
        &self.tool
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    /// The call's wall-clock limit (the action's `timeout_s`, else [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the call in its guest, blocking until it returns; logs the outcome. Call it off
    /// any async runtime (or through [`Gate::run`]).
    pub fn run(self, params: Params, meta: Meta) -> Result<Answer, ToolError> {
        let started = Instant::now();
        let bridge = &*self.bridge;
        let result = match bridge.plugins.get(&self.tool) {
            Some(loaded) => {
                if !(self.grants.backlog_dir == Access::ReadWrite
                    && self.grants.postgres == Access::ReadWrite)
                {
                    // A call that cannot replay an outage journal itself: the host does it
                    // first.
                    bridge.recover_store();
                }
                let guest = Guest {
                    loaded,
                    grants: self.grants,
                    timeout: self.timeout,
                    agent: &self.agent,
                    action: &self.action,
                };
                enter(bridge, guest, &params, &meta)
            }
            None => Err(ToolError::new(
                Code::Internal,
                format!("tool `{}` was unloaded", self.tool),
            )),
        };
        log_call(
            &self.agent,
            &self.tool,
            &self.action,
            &meta,
            started,
            &result.as_ref().map(|_| ()),
        );
        self.record(&meta, started, result.as_ref());
        result
    }

    fn record(&self, meta: &Meta, started: Instant, result: Result<&Answer, &ToolError>) {
        let (how, who) = (
            (meta.quiet, meta.face, meta.request_id.as_str()),
            self.who(),
        );
        record::allowed(&self.bridge, how, who, self.grants, started, result);
    }

    fn who(&self) -> [&str; 3] {
        [&self.agent, &self.tool, &self.action]
    }

    /// A call refused after authorization (before its guest, e.g. by its params schema):
    /// logged and audited like any other.
    pub fn refused(&self, e: ToolError, meta: &Meta, started: Instant) -> ToolError {
        log_call(
            &self.agent,
            &self.tool,
            &self.action,
            meta,
            started,
            &Err(&e),
        );
        self.record(meta, started, Err(&e));
        e
    }
}

/// The host's own maintenance call (the `auto` store's recovery): grants decided by the host,
/// no agent authorization, never logged as a `tool call`.
pub(crate) fn maintenance(
    bridge: &Bridge,
    loaded: &Loaded,
    grants: Grants,
    req: &CallRequest,
    request_id: &str,
) -> Result<Answer, ToolError> {
    let params = Params::new(req.params.to_owned())?;
    let meta = Meta::with_id(request_id.to_owned());
    let guest = Guest {
        loaded,
        grants,
        timeout: DEFAULT_TIMEOUT,
        agent: req.agent,
        action: req.action,
    };
    enter(bridge, guest, &params, &meta)
}

/// What enters a guest: the plugin, the call's grants and limit, the actor and the action.
struct Guest<'a> {
    loaded: &'a Loaded,
    grants: Grants,
    timeout: Duration,
    agent: &'a str,
    action: &'a str,
}

/// The guest entry: the store prepared for `grants`, the sandboxed call, the write made
/// durable, the answer checked to be JSON. Private to the pipeline.
fn enter(bridge: &Bridge, guest: Guest, params: &Params, meta: &Meta) -> Result<Answer, ToolError> {
    let Guest {
        loaded,
        mut grants,
        timeout,
        agent,
        action,
    } = guest;
    let store = StoreCall {
        settings: &bridge.settings,
        resources: &bridge.resources,
    };
    let locking = crate::backlog::store::prepare(store.settings, store.resources, &mut grants)?;
    let now = meta
        .now
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| bridge.now());
    let config = bridge.guest_config(grants, agent);
    let context = Context {
        actor: agent,
        request_id: &meta.request_id,
        now: &now,
        config: &config,
    };
    let invocation = Invocation {
        caller: agent,
        grants,
        resources: &bridge.resources,
        timeout,
        action,
        params: params.as_str(),
        context,
        lock_on_demand: match locking {
            DirLocking::OnDemand => bridge.resources.backlog.as_deref(),
            _ => None,
        },
        before_fresh: &|| crate::backlog::store::ensure_store_dir(&bridge.resources, grants),
    };
    let (result, mut outcome) = loaded.plugin.enter(&bridge.runtime, &invocation);
    log_stderr(&loaded.plugin.name, &meta.request_id, &outcome);
    let json = result.map_err(|e| store.name_store_dir(e, grants))?;
    // Held from before the guest ran, or taken by it on demand: either way the call wrote (or
    // may have written) the directory, and its writes are made durable under the lock.
    let lock = match locking {
        DirLocking::Held(lock) => Some(lock),
        _ => outcome.dir_lock.take(),
    };
    if lock.is_some() {
        store.durable()?;
    }
    Answer::from_text(json).map_err(|e| {
        ToolError::new(
            Code::Internal,
            format!("plugin `{}` returned invalid JSON: {e}", loaded.plugin.name),
        )
    })
}

/// The one `tool call` line of a call.
fn log_call(
    agent: &str,
    tool: &str,
    action: &str,
    meta: &Meta,
    started: Instant,
    result: &Result<(), &ToolError>,
) {
    let outcome = match result {
        Ok(()) => "ok",
        Err(e) => e.code.as_str(),
    };
    let request_id = meta.request_id.as_str();
    let duration_us = started.elapsed().as_micros() as u64;
    if meta.quiet {
        tracing::debug!(
            request_id,
            agent,
            tool,
            action,
            outcome,
            duration_us,
            "tool call"
        );
    } else {
        tracing::info!(
            request_id,
            agent,
            tool,
            action,
            outcome,
            duration_us,
            "tool call"
        );
    }
}

/// The router's limits on calls (`serve`): admission, workers, metrics, the drain.
pub struct Gate {
    max_in_flight: usize,
    /// One permit per call admitted (running or queued for a worker).
    in_flight: Arc<Semaphore>,
    /// One permit per guest call running.
    workers: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// `max_in_flight` calls admitted at once, `workers` of them running.
    pub fn new(max_in_flight: usize, workers: usize, metrics: Arc<Metrics>) -> Gate {
        Gate {
            max_in_flight,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            workers: Arc::new(Semaphore::new(workers)),
            metrics,
        }
    }

    /// Calls admitted and not finished.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }

    /// Runs an authorized call: admission (503 when `--max-in-flight` calls are admitted), a
    /// worker, [`Authorized::run`]. Records the call's metrics.
    /// `params` is what the entry point made of its input: an error (413) is refused here, so
    /// that it is counted and logged like every call.
    pub async fn run(
        &self,
        call: Authorized<Arc<Bridge>>,
        params: Result<Params, ToolError>,
        meta: Meta,
    ) -> Result<Answer, ToolError> {
        let started = Instant::now();
        let (tool, action) = (call.tool.clone(), call.action.clone());
        let result = match (self.in_flight.clone().try_acquire_owned(), params) {
            (_, Err(e)) => Err(call.refused(e, &meta, started)),
            (Err(_), _) => {
                let err = ToolError::new(
                    Code::Unavailable,
                    format!(
                        "the router is at its limit of {} calls in flight (--max-in-flight); retry shortly",
                        self.max_in_flight
                    ),
                );
                Err(call.refused(err, &meta, started))
            }
            (Ok(admitted), Ok(params)) => {
                let bridge = call.bridge.clone();
                self.blocking(&bridge, move |_| {
                    // Held until the guest returns, even if the client went away: the drain
                    // waits for every admitted call through these permits.
                    let _admitted = admitted;
                    call.run(params, meta)
                })
                .await
                .and_then(|r| r)
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.metrics
            .record_call(&tool, &action, outcome, started.elapsed());
        result
    }

    /// Runs `f` on a worker (blocking pool, at most `--workers` at once).
    async fn blocking<T: Send + 'static>(
        &self,
        bridge: &Arc<Bridge>,
        f: impl FnOnce(&Bridge) -> T + Send + 'static,
    ) -> Result<T, ToolError> {
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ToolError::new(Code::Unavailable, "the router is shutting down"))?;
        let bridge = bridge.clone();
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            f(&bridge)
        })
        .await
        .map_err(|e| ToolError::new(Code::Internal, format!("the call's worker failed: {e}")))
    }

    /// Runs the host's own blocking work (the store's status, the overdue gauges) on the
    /// blocking pool beside the workers, not behind them: `/readyz` and `/metrics` answer
    /// while every worker runs a guest to its time limit. `serve` sizes the pool at
    /// `--workers` + 4 threads, so guest calls never take the threads this work needs.
    pub async fn aside<T: Send + 'static>(
        &self,
        bridge: &Arc<Bridge>,
        f: impl FnOnce(&Bridge) -> T + Send + 'static,
    ) -> Result<T, ToolError> {
        let bridge = bridge.clone();
        tokio::task::spawn_blocking(move || f(&bridge))
            .await
            .map_err(|e| ToolError::new(Code::Internal, format!("the host's task failed: {e}")))
    }

    /// Waits (at most `grace`) until no admitted call runs; admits nothing new meanwhile.
    pub async fn drain(&self, grace: Duration) {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let in_flight = self.in_flight();
        match tokio::time::timeout(grace, self.in_flight.acquire_many(all)).await {
            Ok(_) => tracing::info!(waited_for = in_flight, "router: stopped"),
            Err(_) => tracing::warn!(
                still_running = self.in_flight(),
                "router: calls still running after {grace:?}; stopping anyway"
            ),
        }
    }
}

mod answer;
mod record;
mod request_id;
pub use answer::Answer;
pub use record::log_refused;
use record::log_stderr;
pub use request_id::new_request_id;
#[cfg(test)]
mod tests;
