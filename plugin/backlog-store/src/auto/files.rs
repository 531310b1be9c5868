//! The outage files next to `items.jsonl` (see the parent module): reading, writing
//! atomically, appending journal entries, and the status the host reads from them alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use backlog_core::store::StoreError;
use backlog_core::time;
use serde::{Deserialize, Serialize};

use crate::lstat::lstat;

/// The outage journal, in the JSONL directory.
pub const JOURNAL_FILE: &str = "auto-journal.jsonl";
/// The entries of the last replay, until confirmed.
pub const REPLAYED_FILE: &str = "auto-journal.replayed.jsonl";
/// Until when Postgres counts as down (first line), and why (second line).
pub const DOWN_UNTIL_FILE: &str = "down_until";
/// Journal entries of items that could not be replayed (for the operator).
pub const FAILED_FILE: &str = "auto-journal.failed.jsonl";

/// One journaled write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) item_id: String,
    #[serde(default)]
    pub(super) events: Vec<String>,
}

/// Whether an outage is on record in `dir`: a retry time, a journal or an unconfirmed replay
/// (any of them sends a call to the locked path, which reads them properly).
pub(super) fn outage_on_record(dir: &Path) -> bool {
    // A file that cannot be looked at counts as there: the locked path reports the error.
    [DOWN_UNTIL_FILE, JOURNAL_FILE, REPLAYED_FILE].iter().any(
        |name| !matches!(lstat(&dir.join(name)), Err(e) if e.kind() == io::ErrorKind::NotFound),
    )
}

/// What the host shows on `/readyz` for an auto store, read from the JSONL directory alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoStatus {
    /// Postgres was found down and the retry time has not come yet.
    pub degraded: bool,
    /// Journaled writes not yet replayed into Postgres (journal lines).
    pub pending_replay: usize,
}

/// The auto store's state as its files in `dir` say at `now` (fixed-width timestamp).
pub fn auto_status(dir: &Path, now: &str) -> AutoStatus {
    let degraded = read_down_until(dir)
        .ok()
        .flatten()
        .is_some_and(|until| now < until.as_str());
    AutoStatus {
        degraded,
        pending_replay: read_entries(dir, JOURNAL_FILE).map_or(0, |e| e.len()),
    }
}

/// Whether a write-capable call would have recovery work to do at `now`: the retry time has
/// come (or Postgres was never marked down) and the outage journal waits to be replayed, the
/// last replay to be confirmed, or an expired `down_until` to be cleared. The host runs such
/// a call before any call that could not do it itself (read-only ones), so that no call keeps
/// answering from JSONL after the retry interval.
pub fn auto_recovery_due(dir: &Path, now: &str) -> bool {
    let Some(now) = time::normalize_ts(now) else {
        return false;
    };
    let down = read_down_until(dir).ok().flatten();
    if down.as_ref().is_some_and(|until| now < *until) {
        return false;
    }
    let exists = |f: &str| dir.join(f).exists();
    down.is_some() || exists(JOURNAL_FILE) || exists(REPLAYED_FILE)
}

pub(super) fn io_err(file: &'static str) -> impl Fn(io::Error) -> StoreError {
    move |e| {
        let msg = format!("auto store: cannot use {file}: {e}");
        match crate::error::is_refusal(&e, true) {
            true => StoreError::Forbidden(msg),
            false => StoreError::Internal(msg),
        }
    }
}

pub(super) fn read_down_until(dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(dir.join(DOWN_UNTIL_FILE)) {
        Ok(text) => Ok(text.lines().next().and_then(time::normalize_ts)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of `file` (missing = none; lines that do not parse, such as a torn last line,
/// are skipped).
pub(super) fn read_entries(dir: &Path, file: &str) -> io::Result<Vec<Entry>> {
    match fs::read_to_string(dir.join(file)) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        // An Entry is two strings and a list of strings: serializing cannot fail.
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Replaces `file` with `entries` atomically (or removes it when there are none).
pub(super) fn write_entries(dir: &Path, file: &str, entries: &[Entry]) -> io::Result<()> {
    if entries.is_empty() {
        return match fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    atomic_write(dir, file, &encode(entries))
}

/// Temp file, sync, rename, directory sync (best effort).
pub(super) fn atomic_write(dir: &Path, file: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, dir.join(file))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(super) fn remove(dir: &Path, file: &'static str) -> Result<(), StoreError> {
    match fs::remove_file(dir.join(file)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(file)(e)),
        _ => Ok(()),
    }
}

/// Appends one entry to `file` and syncs it.
pub(super) fn append_entry(dir: &Path, file: &str, entry: &Entry) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))?;
    f.write_all(&encode(std::slice::from_ref(entry)))?;
    f.sync_data()
}

/// `pending` split after its first `max` distinct items: the entries of those items (in
/// journal order), and the rest.
pub(super) fn split_batch(pending: Vec<Entry>, max: usize) -> (Vec<Entry>, Vec<Entry>) {
    let mut ids: Vec<String> = Vec::new();
    for e in &pending {
        if ids.len() == max {
            break;
        }
        if !ids.contains(&e.item_id) {
            ids.push(e.item_id.clone());
        }
    }
    pending.into_iter().partition(|e| ids.contains(&e.item_id))
}
