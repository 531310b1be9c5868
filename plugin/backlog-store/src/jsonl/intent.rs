//! The write intent (`.write-intent`, `docs/storage.md`): makes one write's item line and event
//! lines appear together or not at all, although they go to two files.
//!
//! Before a write appends anything, the writer records where the write starts and ends in each
//! file and syncs that record. A crash can then leave a prefix of the appends, in either file,
//! in any order the disk chose; the record tells it apart from a whole write: a file that grew
//! past the write's start but not to its end means the write never finished, so it was never
//! acknowledged. Readers stop both files at the write's start; the next writer (or `cleanup`)
//! cuts both files back there, with a warning. A write that reached both ends is whole.
//!
//! The record only ever describes the last write: the next writer overwrites it, and `cleanup`
//! removes it before it replaces the files (the offsets describe the old ones). A file shorter
//! than the recorded start (replaced by someone else) is not the file the record describes:
//! the record is ignored. A missing, short or damaged record means no write is in doubt (a
//! record is synced before the appends it describes, so a torn record has none after it).

use std::fs::{self, OpenOptions};
use std::io;

use super::checkpoint::hash64;
use super::store::{Access, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use crate::error::{JsonlError, read_err, refuse_symlink, write_err};
use crate::positioned::{read_at, write_all_at};

/// The write intent's file name inside the JSONL directory.
pub const INTENT_FILE: &str = ".write-intent";

/// `BLWI` (bridge write intent) and a format version.
const MAGIC: &[u8; 8] = b"BLWI0001";
/// Magic, four offsets, checksum.
const LEN: usize = 8 + 4 * 8 + 8;

/// One write's byte ranges, `[start, end)` in `items.jsonl` and in `events.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Intent {
    pub items: (u64, u64),
    pub events: (u64, u64),
}

impl Intent {
    fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..8].copy_from_slice(MAGIC);
        let words = [self.items.0, self.items.1, self.events.0, self.events.1];
        for (i, w) in words.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let sum = hash64(&out[..LEN - 8]);
        out[LEN - 8..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Intent> {
        if bytes.len() != LEN || &bytes[..8] != MAGIC {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        if word(LEN - 8) != hash64(&bytes[..LEN - 8]) {
            return None;
        }
        let intent = Intent {
            items: (word(8), word(16)),
            events: (word(24), word(32)),
        };
        (intent.items.0 <= intent.items.1 && intent.events.0 <= intent.events.1).then_some(intent)
    }

    /// Where both files stop if this write did not finish, given the files' lengths; `None`
    /// when it is whole, never started, or the files are not the ones it was written to.
    pub fn interrupted(&self, items_len: u64, events_len: u64) -> Option<(u64, u64)> {
        let ours = items_len >= self.items.0 && events_len >= self.events.0;
        let started = items_len > self.items.0 || events_len > self.events.0;
        let whole = items_len >= self.items.1 && events_len >= self.events.1;
        (ours && started && !whole).then_some((self.items.0, self.events.0))
    }
}

impl JsonlStore {
    /// If the last write did not finish: where `items.jsonl` and `events.jsonl` stop (its
    /// start in each). Warns once per interrupted write. The files' lengths are taken before
    /// the record is read, so a write in progress elsewhere is either wholly after those
    /// lengths or described by the record.
    pub(super) fn interrupted_write(&mut self) -> Result<Option<(u64, u64)>, JsonlError> {
        let len = |name: &'static str| match fs::metadata(self.dir.join(name)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(read_err(name, "stat", e)),
        };
        let (items_len, events_len) = (len(ITEMS_FILE)?, len(EVENTS_FILE)?);
        let Some(intent) = self.read_intent()? else {
            return Ok(None);
        };
        let stop = intent.interrupted(items_len, events_len);
        if let Some((a, b)) = stop
            && self.intent_warned != stop
        {
            self.intent_warned = stop;
            (self.warn)(&format!(
                "jsonl: warning: ignoring an interrupted write ({ITEMS_FILE} after byte {a}, {EVENTS_FILE} \
                 after byte {b}): it was never acknowledged"
            ));
        }
        Ok(stop)
    }

    fn read_intent(&self) -> Result<Option<Intent>, JsonlError> {
        let path = self.dir.join(INTENT_FILE);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(INTENT_FILE, "open", e)),
        };
        refuse_symlink(&path, INTENT_FILE)?;
        match read_at(&file, 0, LEN) {
            Ok(bytes) => Ok(Intent::decode(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(read_err(INTENT_FILE, "read", e)),
        }
    }

    /// Cuts an interrupted write off both files (a writer's first step), so no later append
    /// can complete it or hide behind it. Runs once per call.
    pub(super) fn cut_interrupted_write(&mut self) -> Result<(), JsonlError> {
        if self.intent_clean || self.access != Access::ReadWrite {
            return Ok(());
        }
        if let Some((a, b)) = self.interrupted_write()? {
            // Handles kept for appending know the old lengths.
            self.appenders = [None, None];
            for (name, at) in [(ITEMS_FILE, a), (EVENTS_FILE, b)] {
                let path = self.dir.join(name);
                refuse_symlink(&path, name)?;
                let f = match OpenOptions::new().write(true).open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(write_err(name, "open", e)),
                };
                let len = f.metadata().map_err(|e| read_err(name, "stat", e))?.len();
                if len > at {
                    f.set_len(at)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| write_err(name, "truncate", e))?;
                    (self.warn)(&format!(
                        "jsonl: warning: cut an interrupted write off {name} ({} bytes after byte {at}; \
                         it was never acknowledged)",
                        len - at
                    ));
                }
            }
            self.intent_warned = None;
        }
        self.intent_clean = self.scoped;
        Ok(())
    }

    /// Records the next write and syncs the record, before any of its bytes are appended.
    pub(super) fn record_intent(&mut self, intent: Intent) -> Result<(), JsonlError> {
        let path = self.dir.join(INTENT_FILE);
        refuse_symlink(&path, INTENT_FILE)?;
        let created = fs::symlink_metadata(&path).is_err();
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| write_err(INTENT_FILE, "create", e))?;
        write_all_at(&f, &intent.encode(), 0)
            .and_then(|()| f.sync_data())
            .map_err(|e| write_err(INTENT_FILE, "write", e))?;
        if created {
            self.sync_dir();
        }
        Ok(())
    }

    /// Removes the record (`cleanup`, before it replaces the files it describes). Durable
    /// before the first file is replaced.
    pub(super) fn forget_intent(&mut self) -> Result<(), JsonlError> {
        match fs::remove_file(self.dir.join(INTENT_FILE)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(INTENT_FILE, "remove", e)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Intent = Intent {
        items: (100, 150),
        events: (40, 90),
    };

    #[test]
    fn a_record_round_trips_and_damage_reads_as_none() {
        let bytes = W.encode();
        assert_eq!(Intent::decode(&bytes), Some(W));
        for i in 0..LEN {
            let mut bad = bytes;
            bad[i] ^= 1;
            assert_eq!(Intent::decode(&bad), None, "byte {i}");
        }
        assert_eq!(Intent::decode(&bytes[..LEN - 1]), None);
    }

    #[test]
    fn only_a_write_that_grew_a_file_without_reaching_both_ends_is_interrupted() {
        // Not started, whole, or longer (appended to since by hand): not in doubt.
        assert_eq!(W.interrupted(100, 40), None);
        assert_eq!(W.interrupted(150, 90), None);
        assert_eq!(W.interrupted(170, 95), None);
        // Any prefix of either file's part.
        for (i, e) in [
            (120, 40),
            (150, 40),
            (100, 60),
            (150, 89),
            (149, 90),
            (100, 90),
        ] {
            assert_eq!(W.interrupted(i, e), Some((100, 40)), "{i} {e}");
        }
        // Shorter than the start: another file than the record describes.
        assert_eq!(W.interrupted(99, 60), None);
        assert_eq!(W.interrupted(120, 39), None);
    }
}
