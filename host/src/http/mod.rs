//! The router: `backlog-bridge serve` (`docs/http-api.md`), the HTTP face of [`Bridge::call`].
//!
//! Call path of a request: access log + request id (`routes::access_log`) → bearer key →
//! agent (`auth`) → tool and action exist (404) → the agent's entitlements (403) → body and
//! params shape (413, 400) → admission (503 when `--max-in-flight` calls are running) → a
//! worker (`--workers` guest calls at once, on tokio's blocking pool) → [`Bridge::call_with_id`]
//! (grants, lock, sandboxed guest, store) → the result or the error object with the
//! status (see `docs/actions.md`).
//!
//! Owns: the tokio runtime, listening, admission and worker limits, graceful shutdown, the
//! metrics. Must not: run guest code on the async runtime's threads (a guest call blocks for
//! up to its time limit); decide anything about params (the component validates them); give
//! the guest anything the bridge would not give a CLI call of the same agent.

pub mod auth;
pub mod browser;
pub mod conn;
mod front;
pub mod metrics;
pub mod openapi;
mod respond;
pub mod rest;
pub mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::bridge::{Bridge, CallRequest, StoreStatus};
use crate::error::{Code, ToolError};
use auth::{FailureLimiter, Keys};
use browser::BrowserPolicy;
use metrics::{Metrics, OverdueCounts, StoreGauges};

/// Largest request body accepted (`docs/http-api.md`); larger → 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = crate::bridge::MAX_PARAMS_BYTES;

/// How long a shutdown waits for in-flight calls (the longest shipped `timeout_s` is 120 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(130);

/// How long the overdue gauges are reused between scrapes.
const OVERDUE_TTL: Duration = Duration::from_secs(10);

/// Validated `serve` settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`--listen`, default `127.0.0.1:8000`; port 0 picks a free one,
    /// logged as `router: listening on http://ADDR`).
    pub listen: SocketAddr,
    /// Calls admitted at once (running or waiting for a worker); beyond → 503.
    pub max_in_flight: usize,
    /// Guest calls running at once (blocking threads).
    pub workers: usize,
    /// The agent whose read-only `list` calls compute the overdue gauges of `/metrics`.
    pub metrics_agent: String,
    /// The envs the overdue gauges cover.
    pub metrics_envs: Vec<String>,
    /// `--scheduler`: also run the governance scheduler loop ([`crate::scheduler::run`]) on
    /// the same bridge, stopped after the router has finished its calls.
    pub scheduler: bool,
    /// `--anonymous-agent NAME`: requests without an `Authorization` header act as NAME (the
    /// MCP conformance runner sends none). Only on a loopback `listen` address.
    pub anonymous_agent: Option<String>,
    /// Connections open at once (`--max-connections`, clamped below the fd limit); beyond,
    /// new connections are closed at once.
    pub max_connections: usize,
    /// A request head must be complete within this time of the connection opening or of its
    /// previous response (`--header-timeout`); also ends idle kept-alive connections.
    pub header_timeout: Duration,
    /// A connection (or a request body) on which nothing moves for this long, with no call
    /// running for it, is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Failed logins allowed per client address and minute, as a burst (then 429).
    pub auth_failures_per_minute: u32,
    /// Browser origins allowed besides loopback ones (`--allowed-origin`).
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted besides loopback ones (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// `/mcp` session caps, idle timeout and lifetime (`--mcp-*`).
    pub mcp_sessions: crate::mcp::SessionLimits,
}

/// Why the router could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Keys(#[from] auth::KeyError),
    #[error("--{flag} must be at least 1")]
    Limit { flag: &'static str },
    #[error("--anonymous-agent: {0}")]
    Anonymous(String),
}

/// Everything a request handler needs.
pub struct App {
    pub bridge: Arc<Bridge>,
    pub keys: Keys,
    pub metrics: Metrics,
    pub options: ServeOptions,
    /// The browser guard every route passes.
    pub browser: BrowserPolicy,
    /// Failed logins per client address.
    pub auth_failures: FailureLimiter,
    /// Admission: one permit per call admitted (running or queued for a worker).
    in_flight: Arc<Semaphore>,
    /// One permit per guest call running.
    workers: Arc<Semaphore>,
    overdue: Mutex<Option<(Instant, OverdueCounts)>>,
}

impl App {
    /// The router's state over a loaded bridge; keys come from the process environment.
    pub fn new(bridge: Bridge, options: ServeOptions) -> Result<App, ServeError> {
        if options.max_in_flight == 0 {
            return Err(ServeError::Limit {
                flag: "max-in-flight",
            });
        }
        for (flag, value) in [
            ("workers", options.workers),
            ("max-connections", options.max_connections),
            ("header-timeout", options.header_timeout.as_secs() as usize),
            ("idle-timeout", options.idle_timeout.as_secs() as usize),
            (
                "auth-failures-per-minute",
                options.auth_failures_per_minute as usize,
            ),
        ] {
            if value == 0 {
                return Err(ServeError::Limit { flag });
            }
        }
        if let Some(name) = &options.anonymous_agent {
            if !options.listen.ip().is_loopback() {
                return Err(ServeError::Anonymous(format!(
                    "refused on {}: unauthenticated requests may act as an agent only on a \
                     loopback address",
                    options.listen
                )));
            }
            if bridge.matrix.agent(name).is_none() {
                return Err(ServeError::Anonymous(format!(
                    "unknown agent `{name}` (agents are defined in {})",
                    bridge.matrix.path.display()
                )));
            }
            tracing::warn!(
                "router: requests without an Authorization header act as agent `{name}` \
                 (--anonymous-agent)"
            );
        }
        let keys = Keys::load(&bridge.matrix, |k| std::env::var(k).ok())?;
        let browser = BrowserPolicy::new(
            options.listen,
            options.anonymous_agent.is_some(),
            options.allowed_origins.clone(),
            options.allowed_hosts.clone(),
        );
        Ok(App {
            bridge: Arc::new(bridge),
            keys,
            metrics: Metrics::default(),
            browser,
            auth_failures: FailureLimiter::new(options.auth_failures_per_minute),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            workers: Arc::new(Semaphore::new(options.workers)),
            options,
            overdue: Mutex::new(None),
        })
    }

    /// The agent a request acts as: its bearer key's, or (no `Authorization` header at all)
    /// the `--anonymous-agent`; else the 401 error.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<String, ToolError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(axum::http::HeaderValue::as_bytes);
        match (value, &self.options.anonymous_agent) {
            (None, Some(anonymous)) => Ok(anonymous.clone()),
            (value, _) => self.keys.authenticate(value).map(str::to_owned),
        }
    }

    /// Calls admitted and not finished.
    pub fn calls_in_flight(&self) -> usize {
        self.options.max_in_flight - self.in_flight.available_permits()
    }

    /// Runs one authorized call off the async runtime: admission (503 when saturated), a
    /// worker, the bridge. Records the call's metrics.
    pub async fn call(
        &self,
        agent: &str,
        tool: &str,
        action: &str,
        params: Map<String, Value>,
        request_id: &str,
    ) -> Result<Value, ToolError> {
        let started = Instant::now();
        let Ok(admitted) = self.in_flight.clone().try_acquire_owned() else {
            let err = ToolError::new(
                Code::Unavailable,
                format!(
                    "the router is at its limit of {} calls in flight (--max-in-flight); retry shortly",
                    self.options.max_in_flight
                ),
            );
            self.metrics
                .record_call(tool, action, err.code.as_str(), started.elapsed());
            return Err(err);
        };
        let result = self
            .blocking({
                let (agent, tool, action) = (agent.to_owned(), tool.to_owned(), action.to_owned());
                let request_id = request_id.to_owned();
                let params = Value::Object(params).to_string();
                move |bridge: &Bridge| {
                    // Held until the guest returns, even if the client went away: shutdown
                    // waits for every admitted call through these permits.
                    let _admitted = admitted;
                    bridge.call_with_id(
                        &CallRequest {
                            agent: &agent,
                            tool: &tool,
                            action: &action,
                            params: &params,
                        },
                        &request_id,
                    )
                }
            })
            .await
            .and_then(|r| r);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.metrics
            .record_call(tool, action, outcome, started.elapsed());
        result
    }

    /// Runs `f` on a worker (blocking pool, at most `--workers` at once).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Bridge) -> T + Send + 'static,
    ) -> Result<T, ToolError> {
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ToolError::new(Code::Unavailable, "the router is shutting down"))?;
        let bridge = self.bridge.clone();
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            f(&bridge)
        })
        .await
        .map_err(|e| ToolError::new(Code::Internal, format!("the call's worker failed: {e}")))
    }

    /// The store's status (may probe Postgres: runs on a worker).
    pub async fn store_status(&self) -> Result<StoreStatus, ToolError> {
        self.blocking(Bridge::store_status).await
    }

    /// Store gauges for `/metrics`: status plus overdue counts per env (cached briefly).
    pub async fn store_gauges(self: &Arc<Self>) -> Result<StoreGauges, ToolError> {
        let app = self.clone();
        self.blocking(move |bridge| {
            let status = bridge.store_status();
            StoreGauges {
                backend: status.backend,
                degraded: status.degraded,
                pending_replay: status.pending_replay,
                overdue: app.overdue_counts(bridge),
            }
        })
        .await
    }

    /// Overdue and overdue-P0 item counts per configured env, from read-only `list` calls
    /// as `--metrics-agent` (the host reads only their `total`).
    fn overdue_counts(&self, bridge: &Bridge) -> OverdueCounts {
        if let Ok(cache) = self.overdue.lock()
            && let Some((at, counts)) = cache.as_ref()
            && at.elapsed() < OVERDUE_TTL
        {
            return counts.clone();
        }
        let total = |params: Value| -> Result<u64, ToolError> {
            let result = bridge.call_internal(&CallRequest {
                agent: &self.options.metrics_agent,
                tool: "backlog_tool",
                action: "list",
                params: &params.to_string(),
            })?;
            result["total"]
                .as_u64()
                .ok_or_else(|| ToolError::new(Code::Internal, "list returned no numeric `total`"))
        };
        let mut counts = BTreeMap::new();
        for env in &self.options.metrics_envs {
            let all = total(json!({"env": env, "overdue": true, "limit": 1}));
            let p0 = total(json!({"env": env, "overdue": true, "priority": "P0", "limit": 1}));
            match (all, p0) {
                (Ok(all), Ok(p0)) => {
                    counts.insert(env.clone(), (all, p0));
                }
                (Err(e), _) | (_, Err(e)) => tracing::warn!(
                    env,
                    agent = self.options.metrics_agent,
                    "router: overdue gauges unavailable for env `{env}`: {e}"
                ),
            }
        }
        if let Ok(mut cache) = self.overdue.lock() {
            *cache = Some((Instant::now(), counts.clone()));
        }
        counts
    }
}

/// Whether a write to the JSONL store in `dir` would get past the file system: the store's
/// files open for appending (without following symlinks) and a new file can be created and
/// removed in the directory. The probe does what a write does rather than reading mode bits,
/// so it answers for this process's real privileges (root ignores mode bits but not a
/// read-only mount or an immutable file). A directory that does not exist yet is created by
/// the first write: its nearest existing ancestor is probed instead.
pub fn jsonl_writable(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut probe_dir = dir;
    while !probe_dir.exists() {
        match probe_dir.parent() {
            Some(parent) => probe_dir = parent,
            None => break,
        }
    }
    let fix = "make it writable for this process, or fix the mount";
    for name in ["items.jsonl", "events.jsonl", crate::lock::LOCK_FILE] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}; {fix}", path.display()))?;
    }
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = probe_dir.join(format!(".readyz-probe-{}-{n}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&probe)
        .map_err(|e| format!("cannot create files in {}: {e}; {fix}", probe_dir.display()))?;
    std::fs::remove_file(&probe)
        .map_err(|e| format!("cannot remove {}: {e}; {fix}", probe.display()))?;
    Ok(())
}

/// Serves until SIGTERM or SIGINT, then stops accepting, lets every admitted call finish
/// (each write is durable before its 2xx), and returns.
pub fn serve(bridge: Bridge, mut options: ServeOptions) -> Result<(), ServeError> {
    match conn::raise_fd_limit() {
        Ok(fds) => {
            let cap = conn::connection_cap(options.max_connections, fds);
            if cap < options.max_connections {
                tracing::warn!(
                    fd_limit = fds,
                    "router: --max-connections {} lowered to {cap}: the process may open {fds} \
                     files and keeps {} for itself",
                    options.max_connections,
                    conn::RESERVED_FDS
                );
                options.max_connections = cap;
            }
        }
        Err(e) => tracing::warn!("router: cannot read or raise the open-files limit: {e}"),
    }
    let app = Arc::new(App::new(bridge, options)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("router")
        .max_blocking_threads(app.options.workers + 4)
        .build()
        .map_err(ServeError::Runtime)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scheduler = app.options.scheduler.then(|| {
        let (bridge, stop) = (app.bridge.clone(), stop.clone());
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || {
                if let Err(e) = crate::scheduler::run(bridge, crate::scheduler::Clock::Wall, &stop)
                {
                    tracing::error!("scheduler: stopped: {e:#}");
                }
            })
    });
    let scheduler = scheduler.transpose().map_err(ServeError::Runtime)?;
    // `auto`: replays a due outage journal every retry interval, even when no call comes.
    let recovery = crate::bridge::spawn_store_recovery(app.bridge.clone(), stop.clone())
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(run(app.clone()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The job in hand finishes and is recorded; an idle loop notices within a second.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(handle) = scheduler {
        let _ = handle.join();
    }
    if let Some(handle) = recovery {
        let _ = handle.join();
    }
    result
}

async fn run(app: Arc<App>) -> Result<(), ServeError> {
    let addr = app.options.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(
        max_in_flight = app.options.max_in_flight,
        workers = app.options.workers,
        max_connections = app.options.max_connections,
        "router: listening on http://{local}"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    // Ends the MCP face's open streams and sessions on shutdown.
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let (stop, mcp_shutdown) = (stop.clone(), mcp_shutdown.clone());
        async move {
            let which = shutdown_signal().await;
            tracing::info!(
                "router: {which} received: not accepting new connections, finishing calls in flight"
            );
            mcp_shutdown.cancel();
            stop.cancel();
        }
    });
    let mcp = {
        let auth_app = app.clone();
        let auth: crate::mcp::Authenticate =
            Arc::new(move |headers| auth_app.authenticate(headers));
        let mut options = crate::mcp::HttpOptions::loopback();
        options.browser = Arc::new(app.browser.clone());
        options.shutdown = mcp_shutdown;
        options.limits = app.options.mcp_sessions.clone();
        options.open_sessions = app.metrics.mcp_sessions.clone();
        // MCP calls take the same path as REST calls: admission, workers, metrics, drain.
        let runner_app = app.clone();
        let runner: crate::mcp::CallRunner = Arc::new(move |spec: crate::mcp::CallSpec| {
            let app = runner_app.clone();
            Box::pin(async move {
                app.call(
                    &spec.agent,
                    &spec.tool,
                    &spec.action,
                    spec.params,
                    &spec.request_id,
                )
                .await
            })
        });
        crate::mcp::http_router(app.bridge.clone(), auth, runner, options)
    };
    let limits = conn::ConnLimits {
        max_connections: app.options.max_connections,
        header_timeout: app.options.header_timeout,
        idle_timeout: app.options.idle_timeout,
    };
    conn::serve_connections(
        listener,
        routes::router(app.clone(), mcp),
        limits,
        app.clone(),
        stop,
        SHUTDOWN_GRACE,
    )
    .await;
    // Connections are closed; calls whose client went away may still run: wait for them.
    let all = u32::try_from(app.options.max_in_flight).unwrap_or(u32::MAX);
    let in_flight = app.calls_in_flight();
    match tokio::time::timeout(SHUTDOWN_GRACE, app.in_flight.acquire_many(all)).await {
        Ok(_) => tracing::info!(waited_for = in_flight, "router: stopped"),
        Err(_) => tracing::warn!(
            still_running = app.calls_in_flight(),
            "router: calls still running after {SHUTDOWN_GRACE:?}; stopping anyway"
        ),
    }
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("router: cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
