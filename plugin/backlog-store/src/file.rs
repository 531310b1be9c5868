//! One JSONL file as the index has seen it: how far it was indexed, whether it has changed
//! since (appended to, rewritten, replaced, removed), and reading its complete lines.
//!
//! This module owns change detection and never decides what a line means (the store does).
//! It only reads: appending, cutting torn tails and syncing belong to the store's write path.
//!
//! Change detection, cheapest first:
//! * inode differs (native only: `std::os::wasi::fs::MetadataExt` is unstable, so inside the
//!   component a replaced file is caught by the next checks) → rebuild;
//! * length below the indexed end → rebuild;
//! * length and mtime as last seen, and no torn tail pending → unchanged (one `open` +
//!   `fstat` per call);
//! * otherwise the last indexed line (up to [`CHECK_WINDOW`] bytes before the indexed end) must
//!   hash as it did and end in `\n`, else → rebuild; if it does → only the tail is read.
//!
//! What this cannot see: a file replaced inside the component (no inode there) by one of the
//! same length within the same mtime tick, or bytes edited in place before the last line.
//! Readers then meet a line that is not what the index says, and the store re-indexes and
//! retries (`JsonlError::Stale`).

use std::fs::{File, Metadata};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{JsonlError, read_err, refuse_symlink};
use crate::lstat::ino_of;
use crate::positioned::{read_at, read_full_at};

/// Longest line indexed; longer ones are skipped as corrupt without being buffered (an item is
/// at most a few hundred KiB: 64 KiB meta, 10k-char description, 32 tags).
pub const MAX_LINE: u64 = 8 << 20;
/// Read size when indexing.
const CHUNK: u64 = 1 << 20;
/// How much of the last indexed line is re-checked when a file changed length or mtime.
const CHECK_WINDOW: u64 = 64 << 10;

/// What [`FileState::plan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing to do.
    Unchanged,
    /// The indexed part is intact; lines may have been appended after it.
    Append,
    /// The file was rewritten, replaced or removed: drop its index and read it from byte 0.
    Rebuild,
}

/// The indexing state of one file.
pub(crate) struct FileState {
    /// `items.jsonl` or `events.jsonl`.
    pub name: &'static str,
    path: PathBuf,
    /// The handle opened by the last [`FileState::plan`]; reads of this call go through it.
    file: Option<File>,
    ino: Option<u64>,
    mtime: Option<SystemTime>,
    /// File length at the last look (a torn tail after `end` is included).
    seen_len: u64,
    /// End of the last complete line indexed.
    pub end: u64,
    /// Complete lines indexed (line numbers of warnings continue from here).
    pub lines: u64,
    /// Corrupt lines skipped.
    pub corrupt: u64,
    /// `(start, hash)` of the bytes `[start, end)`: the tail of the last indexed line.
    check: Option<(u64, u64)>,
    force: bool,
    /// Within one call (see [`FileState::begin_call`]): the file was already checked, so
    /// [`FileState::plan`] need not look again. The host serializes writers, so nothing but
    /// this store changes the file until the call ends.
    checked: Option<bool>,
    /// The offset of the torn last line (no `\n`) last warned about: warned once, not on
    /// every look while it stays.
    torn_warned: Option<u64>,
}

impl FileState {
    pub fn new(dir: &Path, name: &'static str) -> Self {
        FileState {
            name,
            path: dir.join(name),
            file: None,
            ino: None,
            mtime: None,
            seen_len: 0,
            end: 0,
            lines: 0,
            corrupt: 0,
            check: None,
            force: false,
            checked: None,
            torn_warned: None,
        }
    }

    /// Starts a call: the next [`FileState::plan`] looks at the file, later ones of the same
    /// call trust the index. Without calls (`begin_call` never used) every plan looks.
    pub fn begin_call(&mut self) {
        self.checked = Some(false);
    }

    /// The handle the last [`FileState::plan`] opened, if the file was there.
    pub fn handle(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Makes the next [`FileState::plan`] look at the file again, even within a call.
    pub fn uncheck(&mut self) {
        if let Some(c) = self.checked.as_mut() {
            *c = false;
        }
    }

    /// The index is up to date with the file again (after this store's own append), so the
    /// rest of the call need not look (undoes [`FileState::uncheck`]).
    pub fn recheck_done(&mut self) {
        if let Some(c) = self.checked.as_mut() {
            *c = true;
        }
    }

    /// Makes the next [`FileState::plan`] answer [`Plan::Rebuild`].
    pub fn force_rebuild(&mut self) {
        self.force = true;
        self.uncheck();
    }

    /// Forgets everything indexed.
    fn reset(&mut self) {
        self.end = 0;
        self.lines = 0;
        self.corrupt = 0;
        self.check = None;
        self.force = false;
    }

    /// Opens the file, compares it with what was indexed and says what to do. On
    /// [`Plan::Rebuild`] the state is already reset; the caller drops its index and scans.
    pub fn plan(&mut self) -> Result<Plan, JsonlError> {
        if self.checked == Some(true) && !self.force {
            return Ok(Plan::Unchanged);
        }
        if let Some(c) = self.checked.as_mut() {
            *c = true;
        }
        if !self.force && self.file.is_some() && self.still_named_and_indexed() {
            return Ok(Plan::Unchanged);
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link (or one the sandbox will not resolve) is not "no file".
                refuse_symlink(&self.path, self.name)?;
                let had = self.force || self.ino.is_some() || self.seen_len > 0 || self.end > 0;
                self.file = None;
                self.ino = None;
                self.mtime = None;
                self.seen_len = 0;
                self.reset();
                return Ok(if had { Plan::Rebuild } else { Plan::Unchanged });
            }
            Err(e) => {
                refuse_symlink(&self.path, self.name)?;
                return Err(read_err(self.name, "open", e));
            }
        };
        refuse_symlink(&self.path, self.name)?;
        let meta = file
            .metadata()
            .map_err(|e| read_err(self.name, "stat", e))?;
        let (len, ino, mtime) = (meta.len(), ino_of(&meta), meta.modified().ok());
        let plan = if self.force
            || (self.ino.is_some() && ino.is_some() && ino != self.ino)
            || len < self.end
        {
            Plan::Rebuild
        } else if len == self.seen_len && self.end == len && mtime.is_some() && mtime == self.mtime
        {
            // (With a torn tail after `end`, look again every time: a writer may have cut it
            // and appended a line of the same length within one mtime tick.)
            Plan::Unchanged
        } else if self.indexed_tail_intact(&file)? {
            Plan::Append
        } else {
            Plan::Rebuild
        };
        self.file = Some(file);
        self.ino = ino;
        self.mtime = mtime;
        self.seen_len = len;
        if plan == Plan::Rebuild {
            self.reset();
        }
        Ok(plan)
    }

    /// Whether the path still names the file this state holds open, fully indexed: one
    /// `lstat` of the path (a regular file, not a link) with the identity, length and mtime
    /// seen at the last open. A warm call's look costs that instead of an open, a check for a
    /// link, an `fstat` and a close (six host calls in a guest; one here, `lstat.rs`).
    /// Anything else (changed, replaced, a link, an error) goes the long way, which decides.
    fn still_named_and_indexed(&self) -> bool {
        let Ok(meta) = crate::lstat::lstat(&self.path) else {
            return false;
        };
        let mtime = meta.modified;
        meta.is_file
            && meta.ino == self.ino
            && meta.len == self.seen_len
            && self.end == self.seen_len
            && mtime.is_some()
            && mtime == self.mtime
    }

    /// Makes this look's scan stop at `end`: the bytes after it belong to a write that did not
    /// finish (`jsonl/intent.rs`). Ignored if already indexed past `end` (then the bytes were
    /// seen whole by an earlier look: the record is not about them).
    pub fn stop_at(&mut self, end: u64) {
        if end >= self.end {
            self.seen_len = self.seen_len.min(end);
        }
    }

    /// Whether the bytes before the indexed end are still the ones indexed.
    fn indexed_tail_intact(&self, file: &File) -> Result<bool, JsonlError> {
        let Some((start, hash)) = self.check else {
            return Ok(self.end == 0);
        };
        let len = usize::try_from(self.end - start).unwrap_or(usize::MAX);
        match read_at(file, start, len) {
            Ok(bytes) => Ok(bytes.last() == Some(&b'\n') && hash_of(&bytes) == hash),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(read_err(self.name, "read", e)),
        }
    }

    /// Reads the complete lines between the indexed end and the length seen by the last
    /// [`FileState::plan`], calling `f(line, offset, len)` for each (the line includes its
    /// `\n`). `f` answers `Ok(Err(reason))` for a corrupt line: it is counted and reported
    /// through `warn` as `jsonl: skipping corrupt line <file>:<n>: <reason>`. A last line
    /// without `\n` is a torn write (or an append in progress): not indexed, read again next
    /// time, and reported once through `warn` as `jsonl: skipping torn last line <file>:<n>`.
    /// On any error the next call rebuilds the file's index.
    pub fn scan(
        &mut self,
        warn: &mut dyn FnMut(&str),
        mut f: impl FnMut(&[u8], u64, u32) -> Result<Result<(), String>, JsonlError>,
    ) -> Result<(), JsonlError> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let (name, start, stop) = (self.name, self.end, self.seen_len);
        if stop <= start {
            return Ok(());
        }
        let mut lines = self.lines;
        let mut corrupt = 0;
        let mut last_off = start;
        let mut on_line = |line: Option<&[u8]>, off: u64, len: u64| -> Result<(), JsonlError> {
            lines += 1;
            last_off = off;
            let outcome = match (line, u32::try_from(len)) {
                (Some(line), Ok(len32)) => f(line, off, len32)?,
                _ => Err(format!("line is longer than {MAX_LINE} bytes")),
            };
            if let Err(reason) = outcome {
                corrupt += 1;
                warn(&format!(
                    "jsonl: skipping corrupt line {name}:{lines}: {reason}"
                ));
            }
            Ok(())
        };
        let end = match scan_lines(file, start, stop, &mut on_line) {
            Ok(end) => end,
            Err(e) => {
                self.force = true;
                return Err(match e {
                    ScanError::Io(e) => read_err(name, "read", e),
                    ScanError::Line(e) => e,
                });
            }
        };
        self.end = end;
        self.lines = lines;
        self.corrupt += corrupt;
        if end < stop && self.torn_warned != Some(end) {
            self.torn_warned = Some(end);
            warn(&format!(
                "jsonl: skipping torn last line {name}:{}: {} bytes without a newline (a write \
                 that was interrupted, or is still in progress)",
                lines + 1,
                stop - end
            ));
        }
        if end > start {
            // Remember the tail of the last line for change detection.
            let from = last_off.max(end.saturating_sub(CHECK_WINDOW));
            let len = usize::try_from(end - from).unwrap_or(usize::MAX);
            match read_at(file, from, len) {
                Ok(bytes) => self.check = Some((from, hash_of(&bytes))),
                Err(e) => {
                    self.force = true;
                    return Err(read_err(name, "read", e));
                }
            }
        }
        Ok(())
    }

    /// Calls `f(line, offset)` for every complete line already indexed (`[0, end)`), in
    /// order, without changing the state (cleanup reads the file again to rewrite it). Lines
    /// longer than [`MAX_LINE`] are not passed (they were reported when indexed).
    pub fn each_line(
        &self,
        mut f: impl FnMut(&[u8], u64) -> Result<(), JsonlError>,
    ) -> Result<(), JsonlError> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let mut on_line = |line: Option<&[u8]>, off: u64, _len: u64| match line {
            Some(line) => f(line, off),
            None => Ok(()),
        };
        match scan_lines(file, 0, self.end, &mut on_line) {
            Ok(_) => Ok(()),
            Err(ScanError::Io(e)) => Err(read_err(self.name, "read", e)),
            Err(ScanError::Line(e)) => Err(e),
        }
    }

    /// Reads one indexed line (with its `\n`). A short read or a line not ending in `\n`
    /// means the file changed under the index: [`JsonlError::Stale`].
    pub fn read_line(&self, off: u64, len: u32) -> Result<Vec<u8>, JsonlError> {
        let stale = JsonlError::Stale {
            file: self.name,
            offset: off,
        };
        let Some(file) = self.file.as_ref() else {
            return Err(stale);
        };
        match read_at(file, off, len as usize) {
            Ok(bytes) if bytes.last() == Some(&b'\n') => Ok(bytes),
            Ok(_) => Err(stale),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(stale),
            Err(e) => Err(read_err(self.name, "read", e)),
        }
    }

    /// Records lines this process just appended at the indexed end (`appended` ends in `\n`,
    /// its last line is `last_len` bytes), so the next call does not read them back. `meta`
    /// is the file's metadata after the write, if available.
    pub fn appended(
        &mut self,
        meta: Option<&Metadata>,
        appended: &[u8],
        lines: u64,
        last_len: usize,
    ) {
        let n = appended.len() as u64;
        self.end += n;
        self.seen_len = self.end;
        self.lines += lines;
        let window = last_len.min(CHECK_WINDOW as usize).min(appended.len());
        let tail = &appended[appended.len() - window..];
        self.check = Some((self.end - window as u64, hash_of(tail)));
        match meta {
            Some(m) => {
                self.ino = ino_of(m);
                self.mtime = m.modified().ok();
            }
            None => self.mtime = None,
        }
    }

    /// What an index checkpoint records of this file: `(end, lines, corrupt, check)`.
    pub fn covered(&self) -> (u64, u64, u64, Option<(u64, u64)>) {
        (self.end, self.lines, self.corrupt, self.check)
    }

    /// Takes over what a validated checkpoint says was indexed (see
    /// [`FileState::covered`]); the next [`FileState::plan`] looks at the file again and the
    /// next scan reads from `end`.
    pub fn restore(&mut self, (end, lines, corrupt, check): (u64, u64, u64, Option<(u64, u64)>)) {
        self.end = end;
        self.lines = lines;
        self.corrupt = corrupt;
        self.check = check;
        self.force = false;
        self.seen_len = self.seen_len.max(end);
        self.ino = None;
        self.mtime = None;
        self.uncheck();
    }

    /// Whether the indexed end is the whole file as last seen (nothing unindexed after it).
    pub fn fully_indexed(&self) -> bool {
        self.end == self.seen_len
    }
}

/// Failure of [`scan_lines`]: reading, or the line callback.
enum ScanError {
    Io(io::Error),
    Line(JsonlError),
}

/// Line callback of [`scan_lines`]: `(line with its \n, or None if too long; offset; length)`.
type OnLine<'a> = dyn FnMut(Option<&[u8]>, u64, u64) -> Result<(), JsonlError> + 'a;

/// Reads complete lines of `file` in `[start, stop)` in big chunks; returns the end of the last
/// complete line. `on_line(None, …)` reports a line longer than [`MAX_LINE`].
fn scan_lines(
    file: &File,
    start: u64,
    stop: u64,
    on_line: &mut OnLine<'_>,
) -> Result<u64, ScanError> {
    let cap = usize::try_from((stop - start).min(CHUNK)).unwrap_or(1 << 20);
    let at = ReadAt {
        file,
        pos: start,
        stop,
    };
    let mut reader = BufReader::with_capacity(cap, at);
    let mut pos = start;
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_len: u64 = 0;
    let mut overlong = false;
    loop {
        let buf = reader.fill_buf().map_err(ScanError::Io)?;
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let len = pending_len + i as u64 + 1;
                if pending_len == 0 {
                    on_line(Some(&buf[..=i]), pos, len).map_err(ScanError::Line)?;
                } else {
                    if !overlong && len <= MAX_LINE {
                        pending.extend_from_slice(&buf[..=i]);
                    } else {
                        overlong = true;
                    }
                    let line = (!overlong).then_some(pending.as_slice());
                    on_line(line, pos, len).map_err(ScanError::Line)?;
                    pending.clear();
                    if overlong {
                        pending = Vec::new();
                    }
                    pending_len = 0;
                    overlong = false;
                }
                pos += len;
                reader.consume(i + 1);
            }
            None => {
                let n = buf.len();
                if !overlong {
                    if pending_len + n as u64 > MAX_LINE {
                        overlong = true;
                        pending = Vec::new();
                    } else {
                        pending.extend_from_slice(buf);
                    }
                }
                pending_len += n as u64;
                reader.consume(n);
            }
        }
    }
    Ok(pos)
}

/// `Read` over `[pos, stop)` of a file by positioned reads ([`read_full_at`]).
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    stop: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.stop - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_full_at(self.file, &mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether the bytes `[start, end)` of `file` hash to `hash` and end in `\n` (the check
/// [`FileState::covered`] records).
pub(crate) fn tail_matches(file: &File, end: u64, (start, hash): (u64, u64)) -> io::Result<bool> {
    if start > end || end - start > CHECK_WINDOW {
        return Ok(false);
    }
    let len = usize::try_from(end - start).unwrap_or(usize::MAX);
    match read_at(file, start, len) {
        Ok(bytes) => Ok(bytes.last() == Some(&b'\n') && hash_of(&bytes) == hash),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}
