//! Captures a guest's stderr into a bounded buffer the host drains after each call, logs, and
//! attaches to `internal` errors. Writes past the bound are dropped, never refused: a chatty
//! guest must not trap because of its logging.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of stderr kept per call (`docs/configuration.md`).
pub const CAPACITY: usize = 64 * 1024;

/// A cheap handle to one store's stderr buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Takes everything written since the last take.
    pub fn take(&self) -> String {
        let bytes = match self.0.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Ok(mut b) = self.0.lock() {
            let room = CAPACITY.saturating_sub(b.len());
            b.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
