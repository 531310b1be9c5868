//! The write intent (`.write-intent`, `docs/storage.md`): makes a call's writes appear
//! together or not at all, although each goes to two files (its item line to `items.jsonl`,
//! its event lines to `events.jsonl`).
//!
//! Before a call appends anything, the writer records where its writes start in each file,
//! marked "in progress", and syncs that record. When the call ends ([`JsonlStore::end_call`])
//! it records where they end; the host syncs that with the files before it acknowledges the
//! call. A crash can leave any prefix of the appends, in either file, in any order the disk
//! chose, and either record; so a file that grew past the recorded start but not to a recorded
//! end means the call never finished, and was never acknowledged: readers stop both files at
//! the start, and the next writer (or `cleanup`) cuts both files back there, with a warning.
//! A store used without calls (`begin_call`), or one that syncs each write itself
//! ([`Durability::SyncEachWrite`], the native default), records each write the same way,
//! start and end at once, synced: each write is its own unit.
//!
//! The record only ever describes the last call that wrote: the next one overwrites it, and
//! `cleanup` removes it before it replaces the files (the offsets describe the old ones). A
//! file shorter than the recorded start (replaced by someone else) is not the file the record
//! describes: the record is ignored. A missing, short or damaged record means nothing is in
//! doubt (a record is synced before the appends it describes, so a torn one has none after it).

use std::fs::{self, OpenOptions};
use std::io;

use super::store::{Access, Durability, EVENTS_FILE, ITEMS_FILE, Intent, JsonlStore};
use crate::error::{JsonlError, read_err, refuse_symlink, write_err};
use crate::hash::hash64;
use crate::lstat::lstat;
use crate::positioned::{read_at, write_all_at};

/// The write intent's file name inside the JSONL directory.
pub const INTENT_FILE: &str = ".write-intent";

/// `BLWI` (bridge write intent) and a format version.
const MAGIC: &[u8; 8] = b"BLWI0001";
/// Magic, four offsets, checksum.
const LEN: usize = 8 + 4 * 8 + 8;

/// The end of a call still in progress.
const IN_PROGRESS: u64 = u64::MAX;

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
    /// If the last call that wrote did not finish: where `items.jsonl` and `events.jsonl`
    /// stop (its start in each). Says so once per unfinished call, as a debug line: under
    /// load it is routine (a call in progress in another process), and after a crash the
    /// next writer warns when it cuts the call off. The files' lengths are taken before the
    /// record is read, so a call in progress elsewhere is either wholly after those lengths
    /// or described by the record. Never this store's own call in progress. (Each file's
    /// refresh asks again: a reader holds no lock, and a call may start between the two.)
    pub(super) fn interrupted_write(&mut self) -> Result<Option<(u64, u64)>, JsonlError> {
        if self.call_intent.is_some() {
            return Ok(None);
        }
        // Not following links (half the host calls inside a guest, where following one
        // means opening the path): a linked file is refused when it is opened anyway.
        let len = |name: &'static str| match lstat(&self.dir.join(name)) {
            Ok(m) => Ok(m.len),
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
                "jsonl: debug: reading up to an unfinished write ({ITEMS_FILE} after byte {a}, \
                 {EVENTS_FILE} after byte {b}: in progress, or interrupted by a crash)"
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

    /// Before a write's appends, with the files' lengths (`bases`) and where the write will
    /// end: a call's first write records the call as in progress from `bases`, synced; later
    /// writes of the call record nothing. Without calls, or when each write is synced on its
    /// own ([`Durability::SyncEachWrite`]: each is a unit), each write is recorded whole,
    /// synced.
    pub(super) fn announce_write(
        &mut self,
        bases: (u64, u64),
        ends: (u64, u64),
    ) -> Result<(), JsonlError> {
        if !self.scoped || self.durability == Durability::SyncEachWrite {
            let intent = Intent {
                items: (bases.0, ends.0),
                events: (bases.1, ends.1),
            };
            return self.record_intent(intent, true);
        }
        if self.call_intent.is_none() {
            let open = Intent {
                items: (bases.0, IN_PROGRESS),
                events: (bases.1, IN_PROGRESS),
            };
            self.record_intent(open, true)?;
            self.call_intent = Some(Intent {
                items: (bases.0, bases.0),
                events: (bases.1, bases.1),
            });
        }
        Ok(())
    }

    /// After a write's appends: the call's writes end at least at `ends`.
    pub(super) fn wrote(&mut self, ends: (u64, u64)) {
        if let Some(c) = &mut self.call_intent {
            c.items.1 = c.items.1.max(ends.0);
            c.events.1 = c.events.1.max(ends.1);
        }
    }

    /// Ends a call: records where its writes end, synced here unless the host syncs it with
    /// the files (before it acknowledges the call). An error fails the call: unrecorded, its
    /// writes would count as unfinished.
    pub fn end_call(&mut self) -> Result<(), JsonlError> {
        let Some(intent) = self.call_intent.take() else {
            return Ok(());
        };
        let sync = self.durability == Durability::SyncEachWrite;
        self.record_intent(intent, sync)?;
        self.maybe_checkpoint();
        Ok(())
    }

    /// Records `intent`; with `sync`, durably before this returns (before any byte it
    /// describes is appended). Without, the host syncs it with the files.
    pub(super) fn record_intent(&mut self, intent: Intent, sync: bool) -> Result<(), JsonlError> {
        let path = self.dir.join(INTENT_FILE);
        // One look both refuses a planted link and says whether the entry is new.
        let created = match lstat(&path) {
            Ok(m) if m.is_symlink => {
                return Err(JsonlError::Symlink { file: INTENT_FILE });
            }
            Ok(_) => false,
            Err(_) => true,
        };
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| write_err(INTENT_FILE, "create", e))?;
        write_all_at(&f, &intent.encode(), 0)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| write_err(INTENT_FILE, "write", e))?;
        if created {
            self.sync_dir();
        }
        Ok(())
    }

    /// Removes the record (`cleanup`, before it replaces the files it describes). Durable
    /// before the first file is replaced.
    pub(super) fn forget_intent(&mut self) -> Result<(), JsonlError> {
        // The rewrite holds this call's writes so far: nothing of it is in doubt any more.
        self.call_intent = None;
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

    #[test]
    fn a_call_in_progress_is_interrupted_by_any_growth() {
        let open = Intent {
            items: (100, IN_PROGRESS),
            events: (40, IN_PROGRESS),
        };
        assert_eq!(Intent::decode(&open.encode()), Some(open));
        assert_eq!(open.interrupted(100, 40), None);
        for (i, e) in [(101, 40), (100, 41), (1 << 40, 1 << 40)] {
            assert_eq!(open.interrupted(i, e), Some((100, 40)), "{i} {e}");
        }
    }
}
