//! `serve`: the tokio runtime, listening, the background threads (scheduler, store recovery),
//! and graceful shutdown — stop accepting, finish the requests in hand, then the pipeline's
//! drain of every admitted call.

use std::sync::Arc;
use std::time::Duration;

use super::app::{App, ServeError, ServeOptions};
use super::{conn, routes};
use crate::registry::Bridge;

/// How long a shutdown waits for in-flight calls (the longest shipped `timeout_s` is 120 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(130);

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
        let (live, stop) = (app.reloader.live().clone(), stop.clone());
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || {
                // The router reloads; the loop takes each reload's bridge at its next tick.
                if let Err(e) =
                    crate::scheduler::run(&live, crate::scheduler::Clock::Wall, &stop, &|| {})
                {
                    tracing::error!("scheduler: stopped: {e:#}");
                }
            })
    });
    let scheduler = scheduler.transpose().map_err(ServeError::Runtime)?;
    // `auto`: replays a due outage journal every retry interval, even when no call comes.
    let recovery = crate::backlog::spawn_store_recovery(app.reloader.live().clone(), stop.clone())
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
    // SIGHUP reloads (installed before the listening line, so a HUP never ends the process).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ServeError::Runtime)?;
    tokio::spawn(reload_on_hangup(app.clone(), hangups));
    if let Some(early) = &app.options.early_hangup
        && early.swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        let app = app.clone();
        tracing::info!("router: SIGHUP received while starting: reloading the config");
        tokio::task::spawn_blocking(move || app.reload(&crate::reload::Trigger::Signal));
    }
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
        // MCP calls take the same path as REST calls: the pipeline's gate (admission,
        // workers, metrics, drain).
        let runner_app = app.clone();
        let runner: crate::mcp::CallRunner = Arc::new(move |spec: crate::mcp::CallSpec| {
            let app = runner_app.clone();
            Box::pin(async move { app.gate.run(spec.call, Ok(spec.params), spec.meta).await })
        });
        crate::mcp::http_router(app.reloader.live().clone(), auth, runner, options)
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
    app.gate.drain(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Each SIGHUP reloads the config (`crate::reload`) on the blocking pool; calls go on meanwhile.
async fn reload_on_hangup(app: Arc<App>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("router: SIGHUP received: reloading the config");
        let app = app.clone();
        // The outcome is logged, audited and counted by the reload itself.
        let _ =
            tokio::task::spawn_blocking(move || app.reload(&crate::reload::Trigger::Signal)).await;
    }
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
