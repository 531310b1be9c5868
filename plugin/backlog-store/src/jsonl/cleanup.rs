//! `cleanup` for the JSONL store (`docs/storage.md`): delete expired items with their events and compact
//! both files, each rewritten atomically — `items.jsonl` first, then `events.jsonl`.
//!
//! A rewrite keeps, in file order, only the latest line of each item that is not expired
//! ([`backlog_core::store::is_expired`], the rule every store shares), and only the events of
//! kept items; superseded, corrupt, blank and orphaned lines go. Each file is written to a
//! temporary file in the same directory, synced, renamed over the original, and the directory
//! is synced, before the next file (and before the call is acknowledged). A crash between the
//! two leaves events of deleted items behind, which reads ignore and the next cleanup drops.
//! A file whose every line would be kept is not rewritten.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use backlog_core::store::{StoreError, is_expired, parse_cutoff};

use super::{Access, CLEANUP_TMP_FILES, EVENTS_FILE, ITEMS_FILE, JsonlStore, write_all_at};
use crate::error::{JsonlError, write_err};
use crate::head::{self, EventHead};

/// Write buffer of a rewrite.
const WRITE_BUF: usize = 1 << 20;

impl JsonlStore {
    pub(super) fn cleanup_now(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        let cutoff = parse_cutoff(cutoff)?;
        if !dry_run && self.access == Access::ReadOnly {
            return Err(JsonlError::ReadOnly { file: ITEMS_FILE }.into());
        }
        self.refresh_items()?;
        self.refresh_events()?;
        // The rewrite replaces both files: handles kept for appending would point at the old.
        self.appenders = [None, None];
        if !dry_run {
            // The rewrite makes the checkpoint stale: it goes first, a new one is written after.
            self.drop_checkpoint();
        }

        // Which items survive, by slot; how many go.
        let mut keep = vec![false; self.index.slot_count()];
        let mut deleted = 0;
        let mut kept_lines = 0u64;
        let index = &self.index;
        let mut out = match dry_run {
            true => None,
            false => Some(Rewrite::start(&self.dir, ITEMS_FILE)?),
        };
        self.items.each_line(|line, off| {
            // Lines with a too-deep `meta` (older versions) are indexed, so they are kept too.
            let mut buf = None;
            let Ok(Some(h)) = head::parse_fitted::<head::ItemHead>(line, &mut buf) else {
                return Ok(());
            };
            let Some(slot) = index.slot_if_latest(&h.id, off) else {
                return Ok(());
            };
            if is_expired(h.status, &h.updated_at, cutoff) {
                deleted += 1;
                return Ok(());
            }
            keep[slot as usize] = true;
            kept_lines += 1;
            match &mut out {
                Some(out) => out.line(line),
                None => Ok(()),
            }
        })?;
        let Some(items_out) = out else {
            return Ok(deleted);
        };
        if kept_lines == self.items.lines && self.items.fully_indexed() {
            items_out.abandon();
        } else {
            items_out.commit()?;
            self.items.force_rebuild();
        }

        let mut events_out = Rewrite::start(&self.dir, EVENTS_FILE)?;
        let mut kept_lines = 0u64;
        self.events.each_line(|line, _off| {
            let Ok(Some(h)) = head::parse::<EventHead>(line) else {
                return Ok(());
            };
            match index.slot(&h.item_id) {
                Some(slot) if keep.get(slot as usize).copied().unwrap_or(false) => {
                    kept_lines += 1;
                    events_out.line(line)
                }
                _ => Ok(()),
            }
        })?;
        if kept_lines == self.events.lines && self.events.fully_indexed() {
            events_out.abandon();
        } else {
            events_out.commit()?;
            self.events.force_rebuild();
        }
        // Index the new files and checkpoint them, so no instance has to parse them again.
        self.refresh_items()?;
        self.refresh_events()?;
        self.save_checkpoint();
        Ok(deleted)
    }
}

/// A file being rewritten through a temporary sibling. Errors while the temporary file is
/// written or synced name the temporary file (`.items.jsonl.cleanup.tmp`): that is what ran out
/// of space or was refused, not the store file.
struct Rewrite {
    name: &'static str,
    tmp_name: &'static str,
    tmp: std::path::PathBuf,
    dest: std::path::PathBuf,
    dir: std::path::PathBuf,
    file: File,
    /// Lines not yet written, and where they go. Positioned writes (`pwrite`): inside the
    /// component they report the host's errno (`ENOSPC`), where the stream path says `EIO`.
    buf: Vec<u8>,
    off: u64,
}

impl Rewrite {
    fn start(dir: &Path, name: &'static str) -> Result<Self, JsonlError> {
        let tmp_name = if name == ITEMS_FILE {
            CLEANUP_TMP_FILES[0]
        } else {
            CLEANUP_TMP_FILES[1]
        };
        let tmp = dir.join(tmp_name);
        // A leftover (or a symlink planted in its place) is removed, never written through:
        // `create_new` does not follow a symlink.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(tmp_name, "remove", e)),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| write_err(tmp_name, "create", e))?;
        Ok(Rewrite {
            name,
            tmp_name,
            dest: dir.join(name),
            dir: dir.to_path_buf(),
            tmp,
            file,
            buf: Vec::with_capacity(WRITE_BUF),
            off: 0,
        })
    }

    fn line(&mut self, line: &[u8]) -> Result<(), JsonlError> {
        self.buf.extend_from_slice(line);
        if self.buf.len() >= WRITE_BUF {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JsonlError> {
        write_all_at(&self.file, &self.buf, self.off)
            .map_err(|e| write_err(self.tmp_name, "write", e))?;
        self.off += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Syncs the temporary file, renames it over the original and syncs the directory.
    fn commit(mut self) -> Result<(), JsonlError> {
        let result = (|| {
            self.flush()?;
            let (name, tmp_name) = (self.name, self.tmp_name);
            self.file
                .sync_all()
                .map_err(|e| write_err(tmp_name, "sync", e))?;
            fs::rename(&self.tmp, &self.dest).map_err(|e| write_err(name, "replace", e))?;
            // The rename is durable only once the directory is.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| write_err(name, "sync the directory of", e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    /// Drops the temporary file (nothing to change).
    fn abandon(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.tmp);
    }
}
