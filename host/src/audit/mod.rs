//! The audit trail (`docs/change-control.md`): one JSON line per call on every face, and per
//! start and stop, appended to `<audit-dir>/audit-YYYY-MM-DD.jsonl` (UTC day).
//!
//! Each line carries `prev`, the SHA-256 hex of the previous line's bytes (64 zeros for the
//! first line of the first file; a new day's file chains to the previous file's last line), so
//! an edited, removed or reordered line breaks the chain ([`verify`]). Processes sharing the
//! directory take an exclusive `flock` on `.lock` for each append and read the chain's tail
//! from the file, so they keep one chain.
//!
//! A line is written (one `write` on an `O_APPEND` descriptor) before the call's answer goes
//! out, so `kill -9` loses none; `fsync` is grouped: a flusher thread syncs every
//! [`SYNC_EVERY`], so at most that much is at risk on power loss.
//!
//! Must not: write a key, a DSN or a params value (only ids, names, codes and grants).

pub mod show;
pub mod verify;

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{NaiveDate, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// How often appended lines are synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);

/// The `prev` of the chain's first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const LOCK_FILE: &str = ".lock";

/// The `--audit-dir` value that turns the trail off (benchmarks, throwaway runs).
pub const OFF: &str = "off";

/// Whether `dir` is [`OFF`]: no line is written.
pub fn is_off(dir: &Path) -> bool {
    dir == Path::new(OFF)
}

/// The face a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Face {
    #[default]
    Cli,
    Http,
    Mcp,
    Scheduler,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Cli => "cli",
            Face::Http => "http",
            Face::Mcp => "mcp",
            Face::Scheduler => "scheduler",
        }
    }
}

/// The file of one UTC day.
pub fn file_name(day: chrono::NaiveDate) -> String {
    format!("audit-{}.jsonl", day.format("%Y-%m-%d"))
}

/// The audit files under `dir`, oldest first.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// SHA-256 hex of one line (without its newline).
pub fn line_hash(line: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(line) {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 0xf)] as char);
    }
    hex
}

/// The chain's tail as this process last wrote it, to skip re-reading an unchanged file.
struct Tail {
    day: NaiveDate,
    len: u64,
    hash: String,
    seq: u64,
}

/// The day's file this process appends to, kept open between appends. It is reopened when
/// the day changes or when the path no longer names it (rotated, removed).
struct Current {
    day: NaiveDate,
    file: Arc<File>,
    id: (u64, u64),
}

/// The path of one day's file, built once a day rather than once an append.
struct DayPath {
    day: NaiveDate,
    path: PathBuf,
    c_path: CString,
}

impl DayPath {
    fn new(dir: &Path, day: NaiveDate) -> std::io::Result<DayPath> {
        let path = dir.join(file_name(day));
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("the audit dir's path holds a NUL byte"))?;
        Ok(DayPath { day, path, c_path })
    }
}

struct State {
    tail: Option<Tail>,
    /// `.lock`, kept open: each append takes its `flock` (one chain across processes).
    lock: Option<File>,
    current: Option<Current>,
    day: Option<DayPath>,
    /// Appended to since the last sync.
    dirty: bool,
}

/// Releases the `flock` of `.lock` when the append ends, however it ends.
struct Locked<'a>(&'a File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Device and inode of a file, to tell whether a path still names an open file.
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino())
}

/// Device and inode ([`file_id`]) and length of the file `path` names; `None` if it names
/// none.
///
/// Asks for no timestamp, on purpose: since Linux 6.13 a read of a file's mtime or ctime
/// makes its next write stamp it at fine grain, which dirties the inode (an ext4 journal
/// entry) on every append; unread, the stamp moves once a clock tick.
#[cfg(target_os = "linux")]
fn named_file(path: &CStr) -> Option<((u64, u64), u64)> {
    let mut sx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `path` is NUL-terminated; `sx` is a `statx` buffer the call fills.
    let found = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_INO | libc::STATX_SIZE,
            sx.as_mut_ptr(),
        )
    } == 0;
    if !found {
        return None;
    }
    // SAFETY: zero-initialized, then filled by a successful `statx`.
    let sx = unsafe { sx.assume_init() };
    let dev = libc::makedev(sx.stx_dev_major, sx.stx_dev_minor);
    Some(((dev, sx.stx_ino), sx.stx_size))
}

#[cfg(not(target_os = "linux"))]
fn named_file(path: &CStr) -> Option<((u64, u64), u64)> {
    let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    std::fs::metadata(path).ok().map(|m| (file_id(&m), m.len()))
}

/// An open audit directory.
pub struct AuditLog {
    dir: PathBuf,
    /// The `host` field's value, as JSON text.
    host_json: String,
    state: Mutex<State>,
}

impl AuditLog {
    /// Opens (creating) `dir` and starts the flusher.
    pub fn open(dir: &Path) -> anyhow::Result<Arc<AuditLog>> {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the audit dir {}", dir.display()))?;
        let probe = dir.join(LOCK_FILE);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&probe)
            .with_context(|| format!("cannot write to the audit dir {}", dir.display()))?;
        let log = Arc::new(AuditLog {
            dir: dir.to_owned(),
            host_json: Value::String(hostname()).to_string(),
            state: Mutex::new(State {
                tail: None,
                lock: None,
                current: None,
                day: None,
                dirty: false,
            }),
        });
        let weak = Arc::downgrade(&log);
        std::thread::Builder::new()
            .name("audit-sync".into())
            .spawn(move || flusher(weak))
            .context("cannot start the audit flusher")?;
        Ok(log)
    }

    /// Appends one record (`ts`, `seq`, `host` and `prev` are added here).
    pub fn append(&self, record: serde_json::Map<String, Value>) -> std::io::Result<()> {
        self.append_body(&serde_json::to_vec(&Value::Object(record))?)
    }

    /// Appends the line of one call.
    pub fn append_call(&self, record: &CallRecord<'_>) -> std::io::Result<()> {
        self.append_body(&serde_json::to_vec(&record.line())?)
    }

    /// Appends `body` (a JSON object's text, serialized before the lock is taken) between
    /// the chain's fields: `{"ts","seq","host", …body's fields…, "prev"}`.
    fn append_body(&self, body: &[u8]) -> std::io::Result<()> {
        let fields = body
            .strip_prefix(b"{")
            .and_then(|b| b.strip_suffix(b"}"))
            .ok_or_else(|| std::io::Error::other("an audit record must be a JSON object"))?;
        let now = Utc::now();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if state.lock.is_none() {
            state.lock = Some(
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.dir.join(LOCK_FILE))?,
            );
        }
        let Some(lock) = state.lock.as_ref() else {
            return Err(std::io::Error::other("the audit lock file is not open"));
        };
        lock.lock()?;
        let _locked = Locked(lock);
        let day = now.date_naive();
        let day_path = match state.day.take() {
            Some(d) if d.day == day => d,
            _ => DayPath::new(&self.dir, day)?,
        };
        let day_path = state.day.insert(day_path);
        // Under the lock, the path's identity and length are the open file's when it names
        // it: its length is the chain's end (one `statx` an append, not two).
        let named = named_file(&day_path.c_path);
        let reuse = state
            .current
            .as_ref()
            .is_some_and(|c| c.day == day && named.map(|(id, _)| id) == Some(c.id));
        if !reuse {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&day_path.path)?;
            let id = file_id(&file.metadata()?);
            state.current = Some(Current {
                day,
                file: Arc::new(file),
                id,
            });
        }
        let Some(current) = state.current.as_ref() else {
            return Err(std::io::Error::other("the audit file is not open"));
        };
        let mut file: &File = &current.file;
        let len = match named {
            Some((_, len)) if reuse => len,
            _ => file.metadata()?.len(),
        };
        let (prev, seq) = match &state.tail {
            Some(t) if t.day == day && t.len == len => (t.hash.clone(), t.seq),
            _ if len > 0 => last_line_of(file, len)?,
            _ => self.previous_file_tail(&day_path.path)?,
        };
        let mut bytes = Vec::with_capacity(body.len() + 192);
        bytes.extend_from_slice(b"{\"ts\":\"");
        bytes.extend_from_slice(now.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        write!(bytes, "\",\"seq\":{},\"host\":", seq + 1)?;
        bytes.extend_from_slice(self.host_json.as_bytes());
        if !fields.is_empty() {
            bytes.push(b',');
            bytes.extend_from_slice(fields);
        }
        bytes.extend_from_slice(b",\"prev\":\"");
        bytes.extend_from_slice(prev.as_bytes());
        bytes.extend_from_slice(b"\"}");
        let hash = line_hash(&bytes);
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        state.tail = Some(Tail {
            day,
            len: len + bytes.len() as u64,
            hash,
            seq: seq + 1,
        });
        state.dirty = true;
        Ok(())
    }

    /// The last line of the newest file before `path`, else the genesis.
    fn previous_file_tail(&self, path: &Path) -> std::io::Result<(String, u64)> {
        let before = files(&self.dir)?.into_iter().rfind(|p| p.as_path() < path);
        match before {
            Some(p) => {
                let f = File::open(&p)?;
                let len = f.metadata()?.len();
                if len == 0 {
                    return Ok((GENESIS.to_owned(), 0));
                }
                last_line_of(&f, len)
            }
            None => Ok((GENESIS.to_owned(), 0)),
        }
    }

    /// Syncs what was appended since the last sync.
    pub fn sync(&self) {
        let dirty = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let dirty = std::mem::take(&mut state.dirty);
            state
                .current
                .as_ref()
                .filter(|_| dirty)
                .map(|c| c.file.clone())
        };
        // Outside the lock: appends go on while the disk syncs.
        if let Some(f) = dirty
            && let Err(e) = f.sync_data()
        {
            tracing::warn!("audit: cannot sync: {e}");
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.sync();
    }
}

fn flusher(log: Weak<AuditLog>) {
    loop {
        std::thread::sleep(SYNC_EVERY); // the grouping interval itself, not a synchronization
        match log.upgrade() {
            Some(log) => log.sync(),
            None => return,
        }
    }
}

/// The hash and `seq` of the last line of `file` (of length `len`).
fn last_line_of(mut file: &File, len: u64) -> std::io::Result<(String, u64)> {
    let mut back = 4096u64;
    loop {
        let start = len.saturating_sub(back);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Some(i) = body.iter().rposition(|b| *b == b'\n') {
            return Ok(tail_of(&body[i + 1..]));
        }
        if start == 0 {
            return Ok(tail_of(body));
        }
        back *= 4;
    }
}

fn tail_of(line: &[u8]) -> (String, u64) {
    let seq = serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0);
    (line_hash(line), seq)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The audit line of a finished call (or a refused one: `grants` is `None`).
pub struct CallRecord<'a> {
    pub request_id: &'a str,
    pub face: Face,
    pub actor: &'a str,
    pub tool: &'a str,
    pub action: &'a str,
    /// `Some` when the call was authorized.
    pub grants: Option<crate::grants::Grants>,
    /// The refusal's reason (the missing entitlements' message) when denied.
    pub reason: Option<&'a str>,
    pub outcome: &'a str,
    pub duration_ms: u64,
    pub item_ids: Vec<String>,
}

impl<'a> CallRecord<'a> {
    /// The line of a call refused before its guest (404, 403): `decision: deny`, the reason.
    pub fn denied(
        face: Face,
        actor: &'a str,
        tool: &'a str,
        action: &'a str,
        e: &'a crate::error::ToolError,
    ) -> CallRecord<'a> {
        CallRecord {
            request_id: "",
            face,
            actor,
            tool,
            action,
            grants: None,
            reason: Some(&e.message),
            outcome: e.code.as_str(),
            duration_ms: 0,
            item_ids: Vec::new(),
        }
    }

    /// The line of an authorized call: `decision: allow`, its grants, its outcome and, for a
    /// write-capable call, the ids it answered with.
    pub fn allowed(
        face: Face,
        actor: &'a str,
        tool: &'a str,
        action: &'a str,
        grants: crate::grants::Grants,
        result: Result<&crate::call::Answer, &crate::error::ToolError>,
    ) -> CallRecord<'a> {
        use crate::grants::Access;
        let writes =
            grants.backlog_dir == Access::ReadWrite || grants.postgres == Access::ReadWrite;
        CallRecord {
            request_id: "",
            face,
            actor,
            tool,
            action,
            grants: Some(grants),
            reason: None,
            outcome: match result {
                Ok(_) => "ok",
                Err(e) => e.code.as_str(),
            },
            duration_ms: 0,
            item_ids: match result {
                Ok(v) if writes => item_ids(&v.to_value()),
                _ => Vec::new(),
            },
        }
    }

    /// Under `request_id`, timed from `started`.
    pub fn timed(self, request_id: &'a str, started: std::time::Instant) -> CallRecord<'a> {
        CallRecord {
            request_id,
            duration_ms: started.elapsed().as_millis() as u64,
            ..self
        }
    }

    /// The line's fields, in their order.
    pub fn line(&self) -> CallLine<'_> {
        CallLine {
            request_id: self.request_id,
            event: "call",
            face: self.face.as_str(),
            actor: self.actor,
            tool: self.tool,
            action: self.action,
            decision: if self.grants.is_some() {
                "allow"
            } else {
                "deny"
            },
            reason: self.reason,
            grants: self.grants,
            outcome: self.outcome,
            duration_ms: self.duration_ms,
            item_ids: &self.item_ids,
        }
    }
}

/// A call's audit fields as serialized (the chain adds `ts`, `seq`, `host` and `prev`).
#[derive(serde::Serialize)]
pub struct CallLine<'a> {
    request_id: &'a str,
    event: &'static str,
    face: &'static str,
    actor: &'a str,
    tool: &'a str,
    action: &'a str,
    decision: &'static str,
    reason: Option<&'a str>,
    grants: Option<crate::grants::Grants>,
    outcome: &'a str,
    duration_ms: u64,
    item_ids: &'a [String],
}

/// The ids a write answered with (`id`, `ids`, `items[].id`, `deleted`): never params.
pub fn item_ids(result: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(id) = result.get("id").and_then(Value::as_str) {
        ids.push(id.to_owned());
    }
    for key in ["ids", "deleted"] {
        for v in result
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = v.as_str().or_else(|| v.get("id").and_then(Value::as_str)) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests;
