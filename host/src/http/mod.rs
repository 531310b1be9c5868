//! The router: `backlog-bridge serve` (SPEC §10), the HTTP face of [`Bridge::call`].
//!
//! Call path of a request: access log + request id (`routes::access_log`) → bearer key →
//! agent (`auth`) → tool and action exist (404) → the agent's entitlements (403) → body and
//! params shape (413, 400) → admission (503 when `--max-in-flight` calls are running) → a
//! worker (`--workers` guest calls at once, on tokio's blocking pool) → [`Bridge::call_with_id`]
//! (grants, lock, sandboxed guest, store) → the result or the spec's error object with the
//! status of SPEC §3.
//!
//! Owns: the tokio runtime, listening, admission and worker limits, graceful shutdown, the
//! metrics. Must not: run guest code on the async runtime's threads (a guest call blocks for
//! up to its time limit); decide anything about params (the component validates them); give
//! the guest anything the bridge would not give a CLI call of the same agent.

pub mod auth;
pub mod metrics;
pub mod params;
pub mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::bridge::{Bridge, CallRequest, StoreStatus};
use crate::error::{Code, ToolError};
use auth::Keys;
use metrics::{Metrics, OverdueCounts, StoreGauges};

/// Largest request body accepted (SPEC §10); larger → 413 `payload_too_large`.
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
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Keys(#[from] auth::SharedKey),
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
        if options.workers == 0 {
            return Err(ServeError::Limit { flag: "workers" });
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
        Ok(App {
            bridge: Arc::new(bridge),
            keys,
            metrics: Metrics::default(),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            workers: Arc::new(Semaphore::new(options.workers)),
            options,
            overdue: Mutex::new(None),
        })
    }

    /// The agent a request acts as: its bearer key's, or (no `Authorization` header at all)
    /// the `--anonymous-agent`; else the spec's 401 error.
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
    async fn blocking<T: Send + 'static>(
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

/// Serves until SIGTERM or SIGINT, then stops accepting, lets every admitted call finish
/// (each write is durable before its 2xx), and returns.
pub fn serve(bridge: Bridge, options: ServeOptions) -> Result<(), ServeError> {
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
    let result = runtime.block_on(run(app.clone()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The job in hand finishes and is recorded; an idle loop notices within a second.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(handle) = scheduler {
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
        "router: listening on http://{local}"
    );
    let stopping = Arc::new(tokio::sync::Notify::new());
    // Ends the MCP face's open streams and sessions on shutdown.
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    let signal = {
        let (stopping, mcp_shutdown) = (stopping.clone(), mcp_shutdown.clone());
        async move {
            let which = shutdown_signal().await;
            tracing::info!(
                "router: {which} received: not accepting new connections, finishing calls in flight"
            );
            mcp_shutdown.cancel();
            stopping.notify_one();
        }
    };
    let mcp = {
        let auth_app = app.clone();
        let auth: crate::mcp::Authenticate =
            Arc::new(move |headers| auth_app.authenticate(headers));
        let mut options = match local.ip().is_loopback() {
            true => crate::mcp::HttpOptions::loopback(),
            false => crate::mcp::HttpOptions {
                allowed_origins: Vec::new(),
                allowed_hosts: None,
                shutdown: mcp_shutdown.clone(),
            },
        };
        options.shutdown = mcp_shutdown;
        crate::mcp::http_router(app.bridge.clone(), auth, options)
    };
    // TCP_NODELAY: a response written in pieces (headers, then body or SSE events) must not
    // wait for the client's delayed ACK (~40 ms per exchange on loopback).
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("router: cannot set TCP_NODELAY: {e}");
        }
    });
    let server =
        axum::serve(listener, routes::router(app.clone(), mcp)).with_graceful_shutdown(signal);
    let grace = async {
        stopping.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(ServeError::Serve)?,
        () = grace => tracing::warn!(
            "router: connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"
        ),
    }
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
