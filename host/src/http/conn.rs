//! Connections: the router's own accept loop over hyper's HTTP/1 connection, so that what
//! a client without a key can hold is bounded.
//!
//! - **Connection cap** (`--max-connections`, clamped below the process's file-descriptor
//!   limit): a connection beyond it is closed at once, never queued, and counted.
//! - **Header timeout** (`--header-timeout`): a connection must deliver a complete request
//!   head within this time of opening or of its previous response, else it is closed. This
//!   also ends idle kept-alive connections and connections that never send anything.
//! - **Idle timeout** (`--idle-timeout`): a connection on which no byte moves either way for
//!   this long while no request of it is being handled (a response nobody reads, a stalled
//!   stream) is closed; a request body that stalls this long is answered 408
//!   (`respond::read_body`).
//! - **Read buffer** of [`MAX_BUF_BYTES`] per connection, which also bounds a request head.
//! - The client's address goes into each request ([`ClientAddr`]) for the per-address limit
//!   on failed logins.
//! - TCP_NODELAY: a response written in pieces (headers, then body or SSE events) must not
//!   wait for the client's delayed ACK (~40 ms per exchange on loopback).
//!
//! On shutdown the loop stops accepting, every connection finishes its request in hand and
//! closes (hyper's graceful shutdown), and [`serve_connections`] returns when all have.
//!
//! Must not: read a request body (the routes decide whether to); queue connections.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::App;

/// File descriptors kept free for everything but client connections (store files, the
/// Postgres pool, wasmtime, logs, the blocking pool).
pub const RESERVED_FDS: u64 = 256;

/// Read buffer of a connection, and so the largest request head (431 beyond): bounds what
/// a connection holds however its client sends.
pub const MAX_BUF_BYTES: usize = 16 << 10;

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Connection limits of `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
    }
    Ok(limit.rlim_cur)
}

/// The connection cap for a requested cap and the process's fd limit: at most the limit
/// minus [`RESERVED_FDS`] (and at least 1).
pub fn connection_cap(requested: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(RESERVED_FDS).max(1);
    requested.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Accepts and serves connections until `stop`, then waits (at most `grace`) for the open
/// ones to finish their requests.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    app: Arc<App>,
    stop: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and the like: the pending connection stays in the backlog;
                // back off instead of spinning on the same error.
                tracing::warn!("router: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.metrics.connection_refused();
            if refused_logged.elapsed() >= Duration::from_secs(10) {
                refused_logged = Instant::now();
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "router: at the connection limit (--max-connections); closing new \
                     connections"
                );
            }
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("router: cannot set TCP_NODELAY: {e}");
        }
        let (router, stop) = (router.clone(), stop.clone());
        app.metrics.connection_opened();
        let seat = Seat {
            slot: Some(slot),
            app: app.clone(),
        };
        tokio::spawn(serve_connection(tcp, seat, peer, router, limits, stop));
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("router: connections still open after {grace:?}; stopping anyway");
    }
}

/// Bytes moved and requests in hand on one connection.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written.
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Counts a request as in hand until dropped.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A connection's place under `--max-connections`, given back the moment the router closes
/// the socket (before the client can see the close) or drops it, whichever comes first: a
/// client that saw its connection end never finds it still counted.
struct Seat {
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    app: Arc<App>,
}

impl Seat {
    fn release(&mut self) {
        if self.slot.take().is_some() {
            self.app.metrics.connection_closed();
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.release();
    }
}

async fn serve_connection(
    tcp: TcpStream,
    seat: Seat,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        last_ms: AtomicU64::new(0),
        handling: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        seat,
        inner: tcp,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            activity.handling.fetch_add(1, Ordering::Relaxed);
            let handling = Handling(activity.clone());
            let mut router = router.clone();
            async move {
                let _handling = handling;
                tower_service::Service::call(&mut router, req.map(Body::new)).await
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(client = %peer, "router: connection ended: {e}");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = idle(&activity, limits.idle_timeout) => {
                tracing::debug!(client = %peer, "router: closing a connection idle for {:?}", limits.idle_timeout);
                return;
            }
        }
    }
}

/// Resolves once nothing has moved on the connection for `timeout` with no request in hand.
async fn idle(activity: &Activity, timeout: Duration) {
    loop {
        let quiet = activity.quiet_for();
        if activity.handling.load(Ordering::Relaxed) == 0 && quiet >= timeout {
            return;
        }
        tokio::time::sleep(
            timeout
                .saturating_sub(quiet)
                .max(Duration::from_millis(100)),
        )
        .await;
    }
}

/// A TCP stream that records when bytes last moved and holds its connection's [`Seat`].
/// `seat` comes first: fields drop in order, so the seat is given back before the socket
/// closes when the connection is dropped rather than shut down.
struct Watched {
    seat: Seat,
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.seat.release();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_fd_limit() {
        assert_eq!(connection_cap(4096, 20_000), 4096);
        assert_eq!(connection_cap(4096, 1024), 768);
        assert_eq!(connection_cap(4096, 100), 1);
    }
}
