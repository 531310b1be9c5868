//! Where log lines go: straight to standard error ([`Stderr`]), or, for the long-running
//! commands, through [`Batched`]: callers append the formatted line to a buffer and one thread
//! writes whatever has gathered with one `write`.
//!
//! Why batched: under an HTTP load the router logs two lines a request (`http request`,
//! `tool call`), and each `write` on the pipe woke the log's reader; with the writes done by
//! one thread, the lines that arrive while it writes go out together. An idle router still
//! writes each line at once (the thread is woken by the first line of an empty buffer).
//!
//! Must not: lose lines on an orderly exit ([`Flush`] writes the rest and joins), or grow
//! without bound when standard error blocks (callers wait once [`MAX_PENDING`] bytes wait).
//! A `kill -9` can lose the lines of its last moment, never an audit line (`audit/`).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes of formatted lines that may wait for the writing thread; callers wait beyond it.
pub const MAX_PENDING: usize = 1 << 20;

/// Standard error, written without std's lock. tracing-subscriber formats an event into one
/// buffer and hands it over in one `write_all`, so the lock only made the router's threads
/// queue behind each other's `write` system calls. A line up to a pipe's atomic size (4 KiB)
/// is never interleaved with another; a longer one (rare: a trap's message with its guest's
/// stderr) may be, when two threads log at the same instant.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes; descriptor 2 is not closed by this
        // process.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Pending {
    bytes: Vec<u8>,
    /// [`Flush`] ran: the thread writes what is left and ends; later lines go straight out.
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the buffer gets its first bytes, and on close.
    ready: Condvar,
    /// Signalled when the thread took the buffer.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The buffer callers append lines to (cloned into the subscriber).
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

/// Ends the batching: the lines still waiting are written, the thread is joined. Held by
/// `main` for the process's life.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A batching writer over `sink` and the guard that flushes it; `None` if the thread cannot
/// start (the caller writes directly then).
pub fn batched(sink: impl Write + Send + 'static) -> Option<(Batched, Flush)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            bytes: Vec::new(),
            closed: false,
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || drain(&shared, sink)
        })
        .ok()?;
    Some((
        Batched(shared.clone()),
        Flush {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writing thread: takes the whole buffer, writes it with one `write_all`, until closed.
fn drain(shared: &Shared, mut sink: impl Write) {
    let mut out = Vec::new();
    loop {
        let closed = {
            let mut pending = shared.lock();
            while pending.bytes.is_empty() && !pending.closed {
                pending = shared
                    .ready
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
            std::mem::swap(&mut pending.bytes, &mut out);
            pending.closed
        };
        shared.room.notify_all();
        if !out.is_empty() {
            // Nowhere to report a failure to write the log; the next batch tries again.
            let _ = sink.write_all(&out);
            out.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Write for &Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut pending = shared.lock();
        while pending.bytes.len() >= MAX_PENDING && !pending.closed {
            pending = shared.room.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        if pending.closed {
            drop(pending);
            return Stderr.write(buf);
        }
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(buf);
        drop(pending);
        if first {
            shared.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The subscriber's writer: standard error directly, or the batch.
#[derive(Clone)]
pub enum LogWriter {
    Direct,
    Batched(Batched),
}

/// One event's writer.
pub enum EventWriter<'a> {
    Direct(Stderr),
    Batched(&'a Batched),
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            EventWriter::Direct(w) => w.write(buf),
            EventWriter::Batched(b) => b.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> EventWriter<'a> {
        match self {
            LogWriter::Direct => EventWriter::Direct(Stderr),
            LogWriter::Batched(b) => EventWriter::Batched(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Eight threads' lines all arrive, whole, each thread's in its order, once the guard
    /// is dropped.
    #[test]
    fn every_line_arrives_whole_and_in_order() {
        let sink = Sink::default();
        let (batch, flush) = batched(sink.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let batch = batch.clone();
                s.spawn(move || {
                    for i in 0..2000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 97));
                        (&batch).write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(flush);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 8];
        for line in out.lines() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("thread"), "{line}");
            let t: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("line"), "{line}");
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t} out of order");
            assert_eq!(words.next().unwrap().len(), i % 97, "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 8]);
    }

    /// A line written after the flush goes straight out rather than into a buffer nobody
    /// drains.
    #[test]
    fn lines_after_the_flush_are_not_held() {
        let (batch, flush) = batched(Sink::default()).unwrap();
        drop(flush);
        assert!(batch.0.lock().closed);
        assert_eq!((&batch).write(b"").unwrap(), 0);
        assert!(batch.0.lock().bytes.is_empty());
    }
}
