//! The router's state: `serve`'s validated options, the keys, the browser guard, the
//! pipeline's [`Gate`] and the metrics registry, and the calls handlers make through them.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};

use super::auth::{self, FailureLimiter, Keys};
use super::browser::BrowserPolicy;
use super::metrics::{Metrics, StoreGauges};
use crate::backlog::StoreStatus;
use crate::backlog::gauges::OverdueGauges;
use crate::call::{Answer, Authorized, Gate, Meta, Params};
use crate::error::ToolError;
use crate::registry::{Bridge, Live};
use crate::reload::{ReloadError, Reloaded, Reloader, Trigger};

/// Largest request body accepted (`docs/http-api.md`); larger → 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = crate::call::MAX_PARAMS_BYTES;

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
    /// Set by a SIGHUP that came while the process started (its handler is installed before
    /// the config is read, so a HUP never ends it): the router reloads once it serves.
    pub early_hangup: Option<Arc<std::sync::atomic::AtomicBool>>,
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
    /// The config in force and its reloads (`crate::reload`): a request takes the bridge
    /// once ([`App::bridge`]) and holds it to its end.
    pub reloader: Reloader,
    /// The agents' keys, swapped with the bridge by a reload.
    keys: RwLock<Arc<Keys>>,
    pub metrics: Arc<Metrics>,
    pub options: ServeOptions,
    /// The browser guard every route passes.
    pub browser: BrowserPolicy,
    /// Failed logins per client address.
    pub auth_failures: FailureLimiter,
    /// The pipeline's limits: admission, workers, call metrics, the drain.
    pub gate: Gate,
    overdue: OverdueGauges,
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
        let live = Arc::new(Live::new(Arc::new(bridge)));
        let browser = BrowserPolicy::new(
            options.listen,
            options.anonymous_agent.is_some(),
            options.allowed_origins.clone(),
            options.allowed_hosts.clone(),
        );
        let metrics = Arc::new(Metrics::default());
        Ok(App {
            reloader: Reloader::new(live),
            keys: RwLock::new(Arc::new(keys)),
            gate: Gate::new(options.max_in_flight, options.workers, metrics.clone()),
            metrics,
            browser,
            auth_failures: FailureLimiter::new(options.auth_failures_per_minute),
            overdue: OverdueGauges::new(
                options.metrics_agent.clone(),
                options.metrics_envs.clone(),
            ),
            options,
        })
    }

    /// The bridge in force: a request or call takes it once and keeps it to its end.
    pub fn bridge(&self) -> Arc<Bridge> {
        self.reloader.live().current()
    }

    /// Reloads the config dir and the agents' keys (`crate::reload`): on success the new
    /// bridge and keys are swapped in together; on any error both stay as they were.
    pub fn reload(&self, trigger: &Trigger) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(
            trigger,
            |bridge| {
                let mut errors = Vec::new();
                for (flag, agent) in [
                    ("--anonymous-agent", self.options.anonymous_agent.as_deref()),
                    ("--metrics-agent", Some(self.options.metrics_agent.as_str())),
                ] {
                    if let Some(agent) = agent
                        && bridge.matrix.agent(agent).is_none()
                    {
                        errors.push(anyhow::anyhow!(
                            "{}: agent `{agent}` (named by {flag}) is missing",
                            bridge.matrix.path.display()
                        ));
                    }
                }
                let keys = Keys::load(&bridge.matrix, |k| std::env::var(k).ok())
                    .map_err(|e| errors.push(e.into()))
                    .ok();
                match keys {
                    Some(keys) if errors.is_empty() => Ok(keys),
                    _ => Err(errors),
                }
            },
            |keys| *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys),
        )
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The agent a request acts as: its bearer key's, or (no `Authorization` header at all)
    /// the `--anonymous-agent`; else the 401 error.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<String, ToolError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(axum::http::HeaderValue::as_bytes);
        match (value, &self.options.anonymous_agent) {
            (None, Some(anonymous)) => Ok(anonymous.clone()),
            (value, _) => self.keys().authenticate(value).map(str::to_owned),
        }
    }

    /// Calls admitted and not finished.
    pub fn calls_in_flight(&self) -> usize {
        self.gate.in_flight()
    }

    /// The pipeline's token for one call of `agent` (404, 403), before the body is read.
    pub fn authorize(
        &self,
        agent: &str,
        tool: &str,
        action: &str,
        request_id: &str,
    ) -> Result<Authorized<Arc<Bridge>>, ToolError> {
        let meta = Meta {
            face: crate::audit::Face::Http,
            ..Meta::with_id(request_id.to_owned())
        };
        crate::call::authorize_as(self.bridge(), agent, tool, action, &meta)
    }

    /// Runs one authorized call through the pipeline's gate under the router's request id.
    pub async fn call(
        &self,
        call: Authorized<Arc<Bridge>>,
        params: Map<String, Value>,
        request_id: &str,
    ) -> Result<Answer, ToolError> {
        self.gate
            .run(
                call,
                Params::from_map(params),
                Meta {
                    face: crate::audit::Face::Http,
                    ..Meta::with_id(request_id.to_owned())
                },
            )
            .await
    }

    /// Runs the router's own blocking work (status probes, gauges) beside the workers
    /// ([`Gate::aside`]), so `/readyz` and `/metrics` answer while every worker is busy.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Bridge) -> T + Send + 'static,
    ) -> Result<T, ToolError> {
        self.gate.aside(&self.bridge(), f).await
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
                overdue: app.overdue.counts(bridge),
                instances_pooled: bridge.instances_pooled(),
            }
        })
        .await
    }
}
