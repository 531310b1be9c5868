//! The JSONL store's state and names (a leaf: `jsonl.rs` answers reads, `append.rs` writes,
//! `checkpoint.rs` saves and loads the index, `cleanup.rs` rewrites).

use std::fs::File;
use std::path::PathBuf;

use crate::file::FileState;
use crate::index::Index;

/// File name of the items file inside the JSONL directory.
pub const ITEMS_FILE: &str = "items.jsonl";
/// File name of the events file inside the JSONL directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The temporary files `cleanup` rewrites `items.jsonl` and `events.jsonl` into.
pub const CLEANUP_TMP_FILES: [&str; 2] = [".items.jsonl.cleanup.tmp", ".events.jsonl.cleanup.tmp"];
/// Byte budget of one `list` page, counted in stored line bytes: a page stops before the item
/// that would take it over (it always holds at least one) and answers `next_offset`. With
/// items of at most a few hundred KiB this keeps a page, parsed and serialized, far below the
/// guest's memory limit whatever `limit` asks for.
pub const PAGE_MAX_BYTES: u64 = 8 << 20;
/// How many repaired items' warnings are remembered (so a repaired item warns once, not on
/// every read).
pub(super) const WARNED_MAX: usize = 1024;

/// What the call was granted on the JSONL directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only; `write` answers `Forbidden` and nothing is ever created.
    ReadOnly,
    /// Reads and appends; the files are created on the first write.
    ReadWrite,
}

/// What the index currently holds (for tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    /// Distinct items (latest line per id).
    pub items: usize,
    /// Event lines, including those of items that no longer exist.
    pub events: usize,
    /// Complete lines indexed in both files (items, superseded versions, events, blank and
    /// corrupt lines).
    pub lines: u64,
    /// Corrupt lines skipped in both files since each was last indexed from scratch.
    pub corrupt: u64,
    /// The index is a checkpoint opened lazily, not decoded yet (only lookups by id and
    /// dedupe key, events and writes ran since it was opened).
    pub lazy: bool,
}

/// Who makes an append durable before the call is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `write` fdatasyncs both files before it returns (the default).
    #[default]
    SyncEachWrite,
    /// `write` only appends (the write intent of a call's first write is still synced: it
    /// must reach the disk before any append); the caller syncs `items.jsonl`,
    /// `events.jsonl` and [`INTENT_FILE`](super::INTENT_FILE) before it acknowledges the call. The host uses this to sync both files in parallel after the
    /// guest returns, holding the directory lock throughout. Also right for a store whose
    /// directory does not outlive the process (the `memory` backend).
    Deferred,
}

/// The JSONL store. See the module docs.
pub struct JsonlStore {
    pub(super) dir: PathBuf,
    pub(super) access: Access,
    pub(super) durability: Durability,
    pub(super) warn: Box<dyn FnMut(&str)>,
    pub(super) items: FileState,
    pub(super) events: FileState,
    pub(super) index: Index,
    /// Handles for appending, with the files' lengths, kept for the rest of a call (see
    /// [`JsonlStore::begin_call`]): `[items, events]`.
    pub(super) appenders: [Option<Appender>; 2],
    /// Whether calls are scoped with `begin_call` (else nothing is kept between writes).
    pub(super) scoped: bool,
    /// Stale cleanup temp files were looked for (once per store, on the first write-capable
    /// call).
    pub(super) swept: bool,
    /// Item lines (by offset) already reported as repaired on read.
    pub(super) warned: std::collections::BTreeSet<u64>,
    /// Lines (both files) covered by the last index checkpoint read or written
    /// ([`checkpoint`]); `None`: none known.
    pub(super) ckpt_lines: Option<u64>,
    /// A read met a line that is not what the index said: re-index from the files only, not
    /// from a checkpoint that may describe the same outdated bytes.
    pub(super) ckpt_distrusted: bool,
    /// The interrupted write last warned about ([`intent`](super::intent)): warned once.
    pub(super) intent_warned: Option<(u64, u64)>,
    /// This call already made sure no interrupted write is left (writers check once per call).
    pub(super) intent_clean: bool,
    /// In a call that writes: where its writes start and (so far) end in each file. Its write
    /// intent on disk says "in progress" until [`JsonlStore::end_call`] records the ends.
    pub(super) call_intent: Option<Intent>,
}

/// A call's (or one write's) byte ranges, `[start, end)` in `items.jsonl` and in
/// `events.jsonl` (`jsonl/intent.rs` records it); the end `IN_PROGRESS` while the call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Intent {
    pub items: (u64, u64),
    pub events: (u64, u64),
}

/// An open file this store appends to, and its length.
pub(super) struct Appender {
    pub(super) file: File,
    pub(super) len: u64,
}

impl std::fmt::Debug for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlStore")
            .field("access", &self.access)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
