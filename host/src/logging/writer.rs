//! Where log lines go: straight to standard error ([`Stderr`]), or, for the long-running
//! commands, through [`Batched`]: callers append the formatted line to a buffer, and whoever
//! finds nobody writing writes everything gathered with one `write` (a combining writer).
//!
//! Why batched: under an HTTP load the router logs two lines a request (`http request`,
//! `tool call`), and each `write` on the pipe woke the log's reader; lines that arrive while
//! one thread is in its `write` go out together in the next. Why no thread of its own: a
//! writing thread was woken for most lines of a lightly loaded router (four context switches
//! a request, a tenth of a Postgres upsert's CPU in the router); the caller that finds the
//! writer free writes itself, and one that finds it busy leaves its line to the writer.
//!
//! Must not: strand a line (the writer looks at the buffer again after it lets go, so a line
//! appended while it wrote is written by it or by a later caller), or grow without bound when
//! standard error blocks (callers wait once [`MAX_PENDING`] bytes wait). A `kill -9` can lose
//! only a line in the middle of its `write`, never an audit line (`audit/`).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};

use tracing_subscriber::fmt::MakeWriter;

/// Bytes of formatted lines that may wait for the writer; callers wait beyond it.
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

/// The sink, held by whoever writes, with its spare buffer.
struct Writer {
    sink: Box<dyn Write + Send>,
    out: Vec<u8>,
}

struct Shared {
    /// Lines appended and not yet taken by a writer.
    pending: Mutex<Vec<u8>>,
    /// Signalled when a writer took the buffer.
    room: Condvar,
    writer: Mutex<Writer>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what is pending unless another caller is writing (it will write it). Looks at
    /// the buffer again after letting go of the writer: a line appended by a caller that
    /// found the writer busy is written here or by a later caller, never left behind.
    fn combine(&self) {
        loop {
            let mut writer = match self.writer.try_lock() {
                Ok(w) => w,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            let Writer { sink, out } = &mut *writer;
            let mut pending = self.lock();
            // Callers wait for room only behind a full buffer: no wake-up (a system call)
            // for every line otherwise.
            let full = pending.len() >= MAX_PENDING;
            std::mem::swap(&mut *pending, out);
            drop(pending);
            if full {
                self.room.notify_all();
            }
            if !out.is_empty() {
                // Nowhere to report a failure to write the log; the next line tries again.
                let _ = sink.write_all(out);
                out.clear();
            }
            drop(writer);
            if self.lock().is_empty() {
                return;
            }
        }
    }
}

/// The buffer callers append lines to (cloned into the subscriber).
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

/// Writes what is still pending when dropped. Held by `main` for the process's life.
pub struct Flush {
    shared: Arc<Shared>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        // A caller in the middle of its write finishes it; wait for it, then write the rest.
        drop(self.shared.writer.lock());
        self.shared.combine();
    }
}

/// A combining writer over `sink` and the guard that flushes it.
pub fn batched(sink: impl Write + Send + 'static) -> (Batched, Flush) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::new()),
        room: Condvar::new(),
        writer: Mutex::new(Writer {
            sink: Box::new(sink),
            out: Vec::new(),
        }),
    });
    (Batched(shared.clone()), Flush { shared })
}

impl Write for &Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut pending = shared.lock();
        while pending.len() >= MAX_PENDING {
            pending = shared.room.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        pending.extend_from_slice(buf);
        drop(pending);
        shared.combine();
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
        let (batch, flush) = batched(sink.clone());
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

    /// A line is written by the time its `write` returns when nobody else is writing: an
    /// idle router's log is never held back.
    #[test]
    fn a_line_is_out_when_nobody_else_writes() {
        let sink = Sink::default();
        let (batch, _flush) = batched(sink.clone());
        (&batch).write_all(b"one\n").unwrap();
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"one\n");
        // A writer busy elsewhere: the line waits for it, and it writes it when it is done.
        let busy = batch.0.writer.lock().unwrap();
        (&batch).write_all(b"two\n").unwrap();
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"one\n");
        drop(busy);
        batch.0.combine();
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"one\ntwo\n");
        assert!(batch.0.lock().is_empty());
    }

    /// Behind a full buffer a caller waits, and the writer that takes the buffer wakes it:
    /// its line arrives after the others.
    #[test]
    fn a_caller_behind_a_full_buffer_is_woken_when_the_writer_takes_it() {
        let sink = Sink::default();
        let (batch, _flush) = batched(sink.clone());
        let busy = batch.0.writer.lock().unwrap();
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        for _ in 0..MAX_PENDING / line.len() {
            (&batch).write_all(&line).unwrap();
        }
        assert!(batch.0.lock().len() >= MAX_PENDING);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| (&batch).write_all(b"last\n").unwrap());
            drop(busy);
            batch.0.combine();
            waiting.join().unwrap();
        });
        let out = sink.0.lock().unwrap().clone();
        assert_eq!(out.len(), MAX_PENDING + b"last\n".len());
        assert!(out.ends_with(b"last\n"));
    }
}
