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

use super::store::{Access, CLEANUP_TMP_FILES, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use crate::error::{JsonlError, write_err};
use crate::head;
use crate::positioned::write_all_at;

/// Write buffer of a rewrite.
const WRITE_BUF: usize = 1 << 20;

impl JsonlStore {
    pub(super) fn cleanup_now(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        let cutoff = parse_cutoff(cutoff)?;
        if !dry_run && self.access == Access::ReadOnly {
            return Err(JsonlError::ReadOnly { file: ITEMS_FILE }.into());
        }
        if !dry_run {
            // An interrupted write is cut off first: the record that hides it goes below.
            self.cut_interrupted_write()?;
        }
        self.refresh_items()?;
        self.refresh_events()?;
        self.full_index()?;
        // The rewrite replaces both files: handles kept for appending would point at the old.
        self.appenders = [None, None];
        if !dry_run {
            // The rewrite makes the checkpoint stale: it goes first, a new one is written after.
            self.drop_checkpoint();
        }

        // Only the latest line of each item can survive: read just those (in file order),
        // not every superseded version.
        let mut latest = self.index.latest_lines();
        latest.sort_unstable_by_key(|(loc, _)| loc.off);
        let mut keep = vec![false; self.index.slot_count()];
        let mut deleted = 0;
        let mut out = match dry_run {
            true => None,
            false => Some(Rewrite::start(&self.dir, ITEMS_FILE)?),
        };
        let mut kept_items = 0u64;
        for (loc, slot) in latest {
            let line = self.items.read_line(loc.off, loc.len)?;
            let stale = || JsonlError::Stale {
                file: ITEMS_FILE,
                offset: loc.off,
            };
            // Lines with a too-deep `meta` (older versions) are indexed, so they are kept too.
            let mut buf = None;
            let Ok(Some(h)) = head::parse_fitted::<head::ItemHead>(&line, &mut buf) else {
                return Err(stale().into());
            };
            if self.index.id_of(slot) != Some(h.id.as_ref()) {
                return Err(stale().into());
            }
            if is_expired(h.status, &h.updated_at, cutoff) {
                deleted += 1;
                continue;
            }
            keep[slot as usize] = true;
            kept_items += 1;
            if let Some(out) = &mut out {
                out.line(&line)?;
            }
        }
        let Some(items_out) = out else {
            return Ok(deleted);
        };
        // The write intent describes offsets of the files about to be replaced.
        self.forget_intent()?;
        let items_rewritten = !(kept_items == self.items.lines && self.items.fully_indexed());
        if items_rewritten {
            items_out.commit()?;
        } else {
            items_out.abandon();
        }

        // Events: those of kept items, found by offset in the index (no parsing).
        let owner = self.index.events_of_slots(&keep);
        let mut events_out = Rewrite::start(&self.dir, EVENTS_FILE)?;
        let mut kept_events = 0u64;
        let (index, mut e) = (&self.index, 0usize);
        self.events.each_line(|line, off| {
            while index.event_line(e).is_some_and(|l| l.off < off) {
                e += 1;
            }
            if index.event_line(e).is_none_or(|l| l.off != off) {
                return Ok(()); // blank or corrupt
            }
            if owner[e] == u32::MAX {
                return Ok(()); // an event of a deleted (or never seen) item
            }
            kept_events += 1;
            events_out.line(line)
        })?;
        let events_rewritten = !(kept_events == self.events.lines && self.events.fully_indexed());
        if events_rewritten {
            events_out.commit()?;
        } else {
            events_out.abandon();
        }
        // Index the new files (the old index goes first: both at once would not fit the
        // guest's memory at a million lines) and checkpoint them, so no instance has to parse
        // them again.
        if items_rewritten || events_rewritten {
            self.index.clear();
            self.items.force_rebuild();
            self.events.force_rebuild();
            self.refresh_items()?;
            self.refresh_events()?;
        }
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
