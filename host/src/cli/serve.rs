//! `serve`: the router (`http::serve`) with the options of [`ServeArgs`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use backlog_bridge::{Settings, http, mcp};

use super::args::ServeArgs;
use super::audit;
use super::load::load;
use crate::exit::Failure;

/// Loads the bridge (the metrics agent must exist) and serves until SIGTERM/SIGINT.
pub(super) fn run(settings: Settings, a: ServeArgs) -> Result<(), Failure> {
    // SIGHUP reloads: handled from now on, so a HUP while the config loads never ends us.
    let early_hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, early_hangup.clone())
        .map_err(|e| Failure::Config(anyhow::anyhow!("cannot handle signal SIGHUP: {e}")))?;
    let bridge = load(settings, &a.metrics_agent)?;
    let audit_dir = bridge.settings.audit_dir.clone();
    audit::lifecycle(&bridge, "start");
    let mcp_sessions = mcp::SessionLimits {
        per_agent: a.mcp_max_sessions_per_agent,
        total: a.mcp_max_sessions,
        idle: Duration::from_secs(a.mcp_session_idle_s),
        lifetime: Duration::from_secs(a.mcp_session_lifetime_s),
    };
    let options = http::ServeOptions {
        listen: a.listen,
        max_in_flight: a.max_in_flight,
        workers: a.workers,
        metrics_agent: a.metrics_agent,
        metrics_envs: a.metrics_envs,
        scheduler: a.scheduler,
        anonymous_agent: a.anonymous_agent,
        max_connections: a.max_connections,
        header_timeout: Duration::from_secs(a.header_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout),
        auth_failures_per_minute: a.auth_failures_per_minute,
        allowed_origins: a.allowed_origin,
        allowed_hosts: a.allowed_host,
        mcp_sessions,
        early_hangup: Some(early_hangup),
    };
    let served = http::serve(bridge, options).map_err(|e| Failure::Config(e.into()));
    audit::stopped(&audit_dir, served.is_ok());
    served
}
