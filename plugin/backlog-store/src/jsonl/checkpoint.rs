//! The index checkpoint (`index.checkpoint`, `docs/storage.md`): the warm index written to a
//! file beside the JSONL files, so a new instance or a new process reads it and then only the
//! lines appended after it, instead of parsing the whole store.
//!
//! Written by `cleanup` (after its rewrite) and by a writer once enough lines were indexed
//! past the last checkpoint this store knows of ([`checkpoint_due`]); atomically (temporary file,
//! rename; not synced: see `write_checkpoint`), only by a store with write access, and never failing the
//! call (a failure is a warning). Read-only stores only read it.
//!
//! Layout: a fixed header (magic, body length, covered prefixes), the hash of each 4 KiB
//! block of the body (the table hashed in the header), the body (`index/snapshot.rs`). A new
//! instance reads the header and the table, then only the blocks its lookups reach, each
//! checked against its hash when read (`index/pages.rs`): a `get` costs a few small reads,
//! not the whole file (19 MB at 100k items).
//!
//! Never trusted: a checkpoint is used only if its block table hashes as its header says,
//! every block it uses hashes as the table says (a block that does not makes the store drop
//! the checkpoint and index the files from the start) and, for each file, the file is at
//! least as long as the covered prefix, the covered prefix's last line hashes as recorded and
//! ends in `\n`, and a fingerprint of the prefix (its length and first 4 KiB) matches — so a
//! checkpoint from before a cleanup, of another store, truncated or garbage is ignored with a
//! warning and the files are indexed from the start. What it cannot see is what the store's
//! own change detection cannot see either (bytes edited in place inside the prefix); reads
//! then meet a line that is not what the index says and re-index (`JsonlError::Stale`).

use std::fs::{self, File, OpenOptions};
use std::io;

use super::store::{Access, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use crate::file::tail_matches;
use crate::hash::{hash64, hash64_wide, mix};
use crate::index::pages::{BLOCK, Pages, ReadAt, block_hash};
use crate::index::{Index, Reader};
use crate::lstat::lstat;
use crate::positioned::{read_at, read_full_at, write_all_at};

/// Why a checkpoint whose files no longer start with what it covered is ignored.
const CHANGED: &str = "the files changed since it was written";

/// The checkpoint's file name inside the JSONL directory.
pub const CHECKPOINT_FILE: &str = "index.checkpoint";
/// The temporary file a checkpoint is written to before the rename.
pub const CHECKPOINT_TMP_FILE: &str = ".index.checkpoint.tmp";
/// A writer writes a new checkpoint once this many lines (both files) were indexed past the
/// last one, or a 32nd of the lines the last one covers if that is more
/// ([`checkpoint_due`]).
pub const CHECKPOINT_EVERY: u64 = 2048;

/// Whether a writer that indexed `lines` lines (both files) should write a new checkpoint, the
/// last one covering `covered` lines (`None`: there is none). A checkpoint write re-encodes
/// the whole index (19 MB at 100k items; 150–250 ms inside the guest before the tables were
/// sorted by hash, ~60 ms natively now), so a fixed interval made every
/// 2,048 appended lines pay it: a weekly generation at 100k spent ten times its own work on
/// the checkpoint. An interval proportional to the store keeps the cost per appended line
/// bounded (it falls as the store grows), while what a new process parses past the
/// checkpoint stays a small fraction of the store (a 32nd: ~6k lines at 100k items).
pub fn checkpoint_due(lines: u64, covered: Option<u64>) -> bool {
    let covered = covered.unwrap_or(0);
    lines >= covered + CHECKPOINT_EVERY.max(covered / 32)
}

/// `BLIXCP` and a version (05: a hash per block of the body, the lookup tables carrying
/// their keys' hashes, the footer every count).
const MAGIC: &[u8; 8] = b"BLIXCP05";
/// The header before the block table: magic, body length, the table's hash, and what the
/// checkpoint covers of each file (three numbers, a flag, the tail check, the fingerprint).
const HEAD_LEN: usize = 8 + 8 + 8 + 2 * (3 * 8 + 1 + 3 * 8);
/// Bytes of the prefix's start in the fingerprint.
const HEAD: u64 = 4096;

/// What a checkpoint records of one file: `(end, lines, corrupt, check)` as in
/// [`crate::file::FileState::covered`].
type Covered = (u64, u64, u64, Option<(u64, u64)>);

impl JsonlStore {
    /// Lines (both files) the last checkpoint this store read or wrote covers.
    pub fn checkpoint_lines(&self) -> Option<u64> {
        self.ckpt_lines
    }

    /// Loads the checkpoint if there is a valid one: the index and both files' states are
    /// replaced by it, so the next scans read only what follows. Called when nothing of
    /// `items.jsonl` is indexed (a new store, or after a rewrite). A missing file is silent;
    /// an invalid one is a warning and changes nothing.
    pub(super) fn load_checkpoint(&mut self, stop: Option<(u64, u64)>) {
        if self.ckpt_distrusted {
            return;
        }
        let path = self.dir.join(CHECKPOINT_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.ignore_checkpoint(&format!("cannot read it: {e}")),
        };
        // The look for a link also gives the length the path names now: the length of the
        // file opened but for a checkpoint renamed over it meanwhile (`parse_checkpoint`
        // then asks the handle). One host call instead of three in a guest.
        let named_len = match lstat(&path) {
            Ok(m) if m.is_symlink => return self.ignore_checkpoint("it is a symbolic link"),
            Ok(m) => Some(m.len),
            Err(_) => None,
        };
        match self.parse_checkpoint(file, named_len) {
            Ok((_, items, events)) if stop.is_some_and(|(a, b)| items.0 > a || events.0 > b) => {
                // Written by a call that then did not finish (its bytes are not durable yet,
                // or a crash came first).
                self.ignore_checkpoint("it covers a write that did not finish")
            }
            Ok((index, items, events)) => {
                self.index = index;
                self.items.restore(items);
                self.events.restore(events);
                self.ckpt_lines = Some(items.1 + events.1);
            }
            Err(why) => self.ignore_checkpoint(why),
        }
    }

    fn ignore_checkpoint(&mut self, why: &str) {
        (self.warn)(&format!(
            "jsonl: warning: ignoring {CHECKPOINT_FILE} ({why}); indexing the files from the start"
        ));
    }

    /// Checks a checkpoint's header and block table against the files and opens its index
    /// lazily (`Index::open_lazy`): the body is read a verified block at a time as lookups
    /// need it (`index/pages.rs`), so this reads the header, the table and the footer.
    fn parse_checkpoint(
        &self,
        file: File,
        named_len: Option<u64>,
    ) -> Result<(Index, Covered, Covered), &'static str> {
        const BAD: &str = "not a checkpoint or damaged";
        let head = read_at(&file, 0, HEAD_LEN).map_err(|_| BAD)?;
        let mut r = Reader { bytes: &head };
        match r.take(MAGIC.len()) {
            Some(m) if m == MAGIC => {}
            Some(m) if m.starts_with(&MAGIC[..6]) => {
                return Err("written by another version of the bridge");
            }
            _ => return Err(BAD),
        }
        let body_len = r.u64().ok_or(BAD)?;
        let table_hash = r.u64().ok_or(BAD)?;
        let mut covered = [(0, 0, 0, None); 2];
        let mut prints = [0u64; 2];
        for (c, p) in covered.iter_mut().zip(&mut prints) {
            let (end, lines, corrupt) = (r.u64().ok_or(BAD)?, r.u64().ok_or(BAD)?, r.u64());
            let has_check = r.u8().ok_or(BAD)?;
            let (start, hash) = (r.u64().ok_or(BAD)?, r.u64().ok_or(BAD)?);
            *p = r.u64().ok_or(BAD)?;
            let check = match has_check {
                0 => None,
                1 => Some((start, hash)),
                _ => return Err(BAD),
            };
            *c = (end, lines, corrupt.ok_or(BAD)?, check);
        }
        // The file is the header, one hash per block, the body: nothing more or less. The
        // path's length stands for the handle's when they agree; when they do not, the
        // handle's decides (another checkpoint may have been renamed over this one; should
        // that one have the very length expected, a short file still fails below, where
        // every block's read must fill it and its hash match).
        let blocks = body_len.div_ceil(BLOCK as u64);
        let body_at = (HEAD_LEN as u64)
            .checked_add(blocks.checked_mul(8).ok_or(BAD)?)
            .ok_or(BAD)?;
        let whole = body_at.checked_add(body_len).ok_or(BAD)?;
        if named_len != Some(whole) && file.metadata().map_err(|_| BAD)?.len() != whole {
            return Err(BAD);
        }
        let table = read_at(&file, HEAD_LEN as u64, (body_at - HEAD_LEN as u64) as usize)
            .map_err(|_| BAD)?;
        if hash64_wide(&table) != table_hash {
            return Err(BAD);
        }
        // `items.jsonl` is checked as the look that called this (`refresh_items`) found it:
        // the handle it opened, or none. The events' handle may be older than the file the
        // path names now, so that one is opened anew.
        let events = match File::open(self.dir.join(EVENTS_FILE)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(_) => return Err(CHANGED),
        };
        Self::covers(self.items.handle(), covered[0], prints[0])?;
        Self::covers(events.as_ref(), covered[1], prints[1])?;
        let hashes = table
            .chunks_exact(8)
            .map(|h| u64::from_le_bytes(h.try_into().unwrap_or_default()))
            .collect();
        // Blocks are read through this handle: a checkpoint renamed over this one later is
        // another file, so the bytes the table describes cannot change under it.
        let read: ReadAt = Box::new(move |at, buf| {
            body_at
                .checked_add(at)
                .and_then(|off| read_full_at(&file, buf, off).ok())
                == Some(buf.len())
        });
        let body_len = usize::try_from(body_len).map_err(|_| BAD)?;
        let pages = Pages::paged(body_len, BLOCK, hashes, read).ok_or(BAD)?;
        let index = Index::open_lazy(pages).ok_or(BAD)?;
        Ok((index, covered[0], covered[1]))
    }

    /// Whether `file` (`None`: there is none) still starts with the prefix a checkpoint
    /// covered.
    fn covers(file: Option<&File>, c: Covered, print: u64) -> Result<(), &'static str> {
        let (end, _, _, check) = c;
        let Some(file) = file else {
            return if end == 0 { Ok(()) } else { Err(CHANGED) };
        };
        // A file shorter than `end` fails the tail check: its read of `[start, end)` comes
        // up short (so no length is asked for).
        let tail_ok = match check {
            None => end == 0,
            Some(check) => tail_matches(file, end, check).unwrap_or(false),
        };
        if !tail_ok || fingerprint(file, end).ok() != Some(print) {
            return Err(CHANGED);
        }
        Ok(())
    }

    /// After a write outside a call, or at the end of a call: a new checkpoint if enough was
    /// indexed past the last one.
    pub(super) fn maybe_checkpoint(&mut self) {
        // Not in the middle of a call: a checkpoint must not cover writes that may yet turn
        // out unfinished. `end_call` tries again.
        if self.call_intent.is_some() {
            return;
        }
        if checkpoint_due(self.items.lines + self.events.lines, self.ckpt_lines) {
            self.save_checkpoint();
        }
    }

    /// Writes the checkpoint of the index as it is (both files fully indexed, write access;
    /// else nothing). Failures are warnings: the checkpoint is only an optimization.
    pub(super) fn save_checkpoint(&mut self) {
        if self.access != Access::ReadWrite
            || !self.items.fully_indexed()
            || !self.events.fully_indexed()
        {
            return;
        }
        if self.full_index().is_err() {
            return;
        }
        let covered = [self.items.covered(), self.events.covered()];
        let mut head = Vec::with_capacity(HEAD_LEN);
        let mut body = Vec::with_capacity(64 + 120 * self.index.slot_count());
        self.index.encode(&mut body);
        let table: Vec<u8> = body
            .chunks(BLOCK)
            .flat_map(|b| block_hash(b).to_le_bytes())
            .collect();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(body.len() as u64).to_le_bytes());
        head.extend_from_slice(&hash64_wide(&table).to_le_bytes());
        for (name, (end, lines, corrupt, check)) in
            [ITEMS_FILE, EVENTS_FILE].into_iter().zip(covered)
        {
            let print = match File::open(self.dir.join(name)) {
                Ok(f) => fingerprint(&f, end),
                Err(e) if e.kind() == io::ErrorKind::NotFound && end == 0 => Ok(hash64(&[])),
                Err(e) => Err(e),
            };
            let Ok(print) = print else {
                return;
            };
            let (start, hash) = check.unwrap_or((0, 0));
            for v in [end, lines, corrupt] {
                head.extend_from_slice(&v.to_le_bytes());
            }
            head.push(u8::from(check.is_some()));
            for v in [start, hash, print] {
                head.extend_from_slice(&v.to_le_bytes());
            }
        }
        debug_assert_eq!(head.len(), HEAD_LEN);
        head.extend_from_slice(&table);
        match self.write_checkpoint(&head, &body) {
            Ok(()) => self.ckpt_lines = Some(covered[0].1 + covered[1].1),
            Err(e) => (self.warn)(&format!(
                "jsonl: warning: cannot write {CHECKPOINT_FILE}: {e} (the next new instance indexes the files from the start)"
            )),
        }
    }

    /// Writes the checkpoint to a temporary file and renames it over the last one. Neither
    /// the file nor the directory is synced: a checkpoint is a cache that is never trusted
    /// (a torn or lost one after a power cut fails its checks, or is an older one that is
    /// still right about the prefix it covers, and costs one full index at most), while
    /// syncing 19 MB at 100k items took 30–40 ms inside a write call holding the
    /// directory's lock.
    fn write_checkpoint(&self, head: &[u8], body: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(CHECKPOINT_TMP_FILE);
        let result = (|| {
            // Never written through a link: removed, then created new.
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            write_all_at(&f, head, 0)?;
            write_all_at(&f, body, head.len() as u64)?;
            // Not synced: see `write_checkpoint`'s doc.
            fs::rename(&tmp, self.dir.join(CHECKPOINT_FILE))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the checkpoint (before a rewrite makes it stale). Best effort: a stale one is
    /// recognized and ignored anyway.
    pub(super) fn drop_checkpoint(&mut self) {
        let _ = fs::remove_file(self.dir.join(CHECKPOINT_FILE));
        self.ckpt_lines = None;
    }
}

/// A hash of the prefix's length and its first 4 KiB: with the tail check, a checkpoint
/// sees what the store's own change detection sees (a file rewritten, cut or replaced),
/// in two reads per file. (Samples spread over the prefix were eight more reads per file on
/// every new instance's first call, for edits in place that a running store does not see
/// either.)
fn fingerprint(file: &File, end: u64) -> io::Result<u64> {
    let h = hash64(&end.to_le_bytes());
    let head = read_at(file, 0, end.min(HEAD) as usize)?;
    Ok(mix(h, hash64_wide(&head)))
}

#[cfg(test)]
mod tests {
    use super::checkpoint_due;

    #[test]
    fn a_checkpoint_is_due_every_2048_lines_or_every_32nd_of_a_large_store() {
        assert!(!checkpoint_due(2047, None));
        assert!(checkpoint_due(2048, None));
        assert!(!checkpoint_due(10_000 + 2047, Some(10_000)));
        assert!(checkpoint_due(10_000 + 2048, Some(10_000)));
        // 100k items and their events: every 6,250 lines, not every 2,048.
        assert!(!checkpoint_due(200_000 + 6_249, Some(200_000)));
        assert!(checkpoint_due(200_000 + 6_250, Some(200_000)));
    }
}
