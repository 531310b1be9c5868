//! The `jsonl` backend (`docs/storage.md`): `items.jsonl` and `events.jsonl`, append-only, one compact
//! JSON object per line; reading keeps the last line per `id`.
//!
//! The store is meant to live across calls (in a warm component instance), keeping a warm
//! [`crate::index`] of offsets and keys. Every operation first refreshes: it stats each file it
//! needs and reads only what was appended since the last call, or re-indexes from scratch when
//! the file was rewritten (cleanup), replaced or removed ([`crate::file`]). A new store starts
//! from the index checkpoint beside the files when a valid one is there ([`checkpoint`]).
//! Appending lives in [`append`], `cleanup` in [`cleanup`].
//!
//! Must not: take locks (the host serializes write-capable calls across threads and processes
//! and holds the directory lock; WASI has none), create anything when read-only, keep parsed
//! items in memory, fail a read because of a corrupt line (it is skipped with a warning).

use std::fs;
use std::path::{Path, PathBuf};

use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};

use crate::error::JsonlError;
use crate::file::{FileState, Plan};
use crate::head::{self, EventHead, ItemHead};
use crate::index::{Index, Loc};

mod append;
mod checkpoint;
mod cleanup;
mod intent;
mod store;

pub use checkpoint::{CHECKPOINT_EVERY, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE};
pub use intent::INTENT_FILE;
use store::WARNED_MAX;
pub use store::{
    Access, CLEANUP_TMP_FILES, Durability, EVENTS_FILE, ITEMS_FILE, IndexStats, JsonlStore,
    PAGE_MAX_BYTES,
};

impl JsonlStore {
    /// The name the host logs on a backend switch (`backlog_store: using JsonlBacklogStore`).
    pub const LOG_NAME: &'static str = "JsonlBacklogStore";

    /// A store over `dir` (holding `items.jsonl` and `events.jsonl`). Does no I/O: the first
    /// operation indexes the files. Missing files or a missing directory read as empty.
    /// `warn` receives one line per problem the store skipped or repaired (corrupt line, torn
    /// tail cut), e.g. `jsonl: skipping corrupt line items.jsonl:17: expected value at line 1
    /// column 1`; the caller logs it (inside the component: stderr).
    pub fn open(dir: PathBuf, access: Access, warn: Box<dyn FnMut(&str)>) -> Self {
        JsonlStore {
            items: FileState::new(&dir, ITEMS_FILE),
            events: FileState::new(&dir, EVENTS_FILE),
            dir,
            access,
            durability: Durability::default(),
            warn,
            index: Index::default(),
            appenders: [None, None],
            scoped: false,
            swept: false,
            warned: Default::default(),
            ckpt_lines: None,
            ckpt_distrusted: false,
            intent_warned: None,
            intent_clean: false,
            call_intent: None,
        }
    }

    /// Sets who syncs appends (see [`Durability`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Starts one call (one action): the files are looked at once, on the first operation
    /// that needs them, and trusted for the rest of the call. Only right while nobody else
    /// writes the directory until the next `begin_call` — the host's per-directory lock for
    /// writers; a read-only call sees a snapshot taken at its first look.
    pub fn begin_call(&mut self) {
        self.items.begin_call();
        self.events.begin_call();
        self.appenders = [None, None];
        self.scoped = true;
        self.intent_clean = false;
        self.call_intent = None;
        self.sweep_stale_temp_files();
    }

    /// Removes what a killed `cleanup` left behind ([`CLEANUP_TMP_FILES`]), once per store, on
    /// the first call with write access. Safe because write access means the caller holds the
    /// directory's writer lock (the host takes it for every write-capable call, and `cleanup`
    /// is one): no cleanup can be running, so no temp file is in use. Read-only stores never
    /// delete anything. Best effort: a failure only leaves the file for the next cleanup.
    fn sweep_stale_temp_files(&mut self) {
        if self.swept || self.access != Access::ReadWrite {
            return;
        }
        self.swept = true;
        for name in CLEANUP_TMP_FILES.into_iter().chain([CHECKPOINT_TMP_FILE]) {
            let path = self.dir.join(name);
            if crate::lstat::lstat(&path).is_ok() {
                match fs::remove_file(&path) {
                    Ok(()) => (self.warn)(&format!(
                        "jsonl: warning: removed {name}, left behind by a cleanup that did not finish"
                    )),
                    Err(e) => (self.warn)(&format!(
                        "jsonl: warning: cannot remove {name} left behind by an unfinished cleanup: {e}"
                    )),
                }
            }
        }
    }

    /// The JSONL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The access this store was opened with.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Brings the index up to date with both files (every operation does this for the files
    /// it needs; call it to pay the indexing cost up front).
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        self.refresh_items()?;
        self.refresh_events()?;
        Ok(())
    }

    /// What the index holds now (no I/O; see [`JsonlStore::refresh`]).
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            items: self.index.item_count(),
            events: self.index.event_count(),
            lines: self.items.lines + self.events.lines,
            corrupt: self.items.corrupt + self.events.corrupt,
            lazy: self.index.is_lazy(),
        }
    }

    fn refresh_items(&mut self) -> Result<(), JsonlError> {
        match self.items.plan()? {
            Plan::Unchanged => return Ok(()),
            Plan::Append => {}
            Plan::Rebuild => {
                // Event chains hang off item slots: they go too.
                self.index.clear();
                self.events.force_rebuild();
            }
        }
        let stop = self.interrupted_write()?;
        if self.items.end == 0 {
            // Nothing indexed yet: start from the checkpoint if a valid one covers a prefix
            // (not past an unfinished write).
            self.load_checkpoint(stop);
        }
        if let Some((at, _)) = stop {
            self.items.stop_at(at);
        }
        let Self {
            items, index, warn, ..
        } = self;
        let file = items.name;
        items.scan(warn.as_mut(), |line, off, len| {
            let mut buf = None;
            let h = match head::parse_fitted::<ItemHead>(line, &mut buf) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(Ok(())),
                Err(reason) => return Ok(Err(reason)),
            };
            let dedupe_key = h.dedupe_key.clone();
            let keys = item_keys(h);
            index
                .put_item(keys, &dedupe_key, Loc { off, len })
                .map_err(|_| JsonlError::TooLarge { file })?;
            Ok(Ok(()))
        })
    }

    fn refresh_events(&mut self) -> Result<(), JsonlError> {
        match self.events.plan()? {
            Plan::Unchanged => return Ok(()),
            Plan::Append => {}
            Plan::Rebuild => {
                self.full_index()?;
                self.index.clear_events();
            }
        }
        if let Some((_, at)) = self.interrupted_write()? {
            self.events.stop_at(at);
        }
        let Self {
            events,
            index,
            warn,
            ..
        } = self;
        let file = events.name;
        events.scan(warn.as_mut(), |line, off, len| {
            let mut buf = None;
            let h = match head::parse_fitted::<EventHead>(line, &mut buf) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(Ok(())),
                Err(reason) => return Ok(Err(reason)),
            };
            index
                .put_event(&h.item_id, Loc { off, len })
                .map_err(|_| JsonlError::TooLarge { file })?;
            Ok(Ok(()))
        })
    }

    /// Makes the index whole if it is a lazily opened checkpoint (`Index::materialize`). A
    /// snapshot that does not decode is ignored with a warning and the files are indexed
    /// from the start.
    pub(super) fn full_index(&mut self) -> Result<(), JsonlError> {
        if self.index.materialize() {
            return Ok(());
        }
        self.distrust_checkpoint();
        self.refresh_items()?;
        self.refresh_events()
    }

    /// The checkpoint this index was opened from turned out damaged (a block that fails its
    /// hash, or an index that does not decode): warns, and makes the next look at each file
    /// index it from the start, without a checkpoint.
    fn distrust_checkpoint(&mut self) {
        (self.warn)(&format!(
            "jsonl: warning: ignoring {CHECKPOINT_FILE} (its index is damaged or does not decode); indexing the files from the start"
        ));
        self.ckpt_distrusted = true;
        self.ckpt_lines = None;
        self.items.force_rebuild();
        self.events.force_rebuild();
    }

    /// Runs `op`; if it met a line that is not what the index says (the file changed in a way
    /// change detection missed), re-indexes that file and runs `op` once more. If it met a
    /// checkpoint block that fails its check (`index/pages.rs`), its answer is dropped
    /// whatever it was: the files are indexed from the start and `op` runs once more.
    fn retry<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, JsonlError>,
    ) -> Result<T, StoreError> {
        let first = op(self);
        if self.index.damaged() {
            self.distrust_checkpoint();
            return op(self).map_err(StoreError::from);
        }
        match first {
            Err(JsonlError::Stale { file, .. }) => {
                self.ckpt_distrusted = true;
                if file == ITEMS_FILE {
                    self.items.force_rebuild();
                } else {
                    self.events.force_rebuild();
                }
                op(self).map_err(StoreError::from)
            }
            r => r.map_err(StoreError::from),
        }
    }

    fn get_now(&mut self, id: &str) -> Result<Option<Item>, JsonlError> {
        self.refresh_items()?;
        match self.index.item(id) {
            Some(loc) => self.read_item(loc, Some(id)).map(Some),
            None => Ok(None),
        }
    }

    fn find_now(&mut self, key: &str) -> Result<Option<Item>, JsonlError> {
        self.refresh_items()?;
        let Some(loc) = self.index.by_dedupe(key) else {
            return Ok(None);
        };
        let item = self.read_item(loc, None)?;
        // The item may have moved to another key since it was indexed under this one.
        Ok((item.dedupe_key == key).then_some(item))
    }

    fn list_now(&mut self, query: &ListQuery, today: &str) -> Result<Page, JsonlError> {
        self.refresh_items()?;
        // A cold instance lists from its checkpoint without decoding it when it can.
        let (page, total) = match self.index.list_lazy(query, today) {
            Some(answer) => answer,
            None => {
                self.full_index()?;
                let (page, total) = self.index.list(query, today);
                let page = page.into_iter().map(|(id, l)| (id.to_owned(), l));
                (page.collect(), total)
            }
        };
        let mut bytes = 0u64;
        let mut locs = Vec::with_capacity(page.len());
        for (id, loc) in page {
            bytes += u64::from(loc.len);
            if !locs.is_empty() && bytes > PAGE_MAX_BYTES {
                break;
            }
            locs.push((id, loc));
        }
        let items = locs
            .into_iter()
            .map(|(id, loc)| self.read_item(loc, Some(&id)))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, total })
    }

    /// Reads the item line at `loc` ([`read_item`]); a repair is reported once per line.
    fn read_item(&mut self, loc: Loc, id: Option<&str>) -> Result<Item, JsonlError> {
        let (item, repairs) = read_item(&self.items, loc, id)?;
        if !repairs.is_empty() && self.warned.len() < WARNED_MAX && self.warned.insert(loc.off) {
            (self.warn)(&format!(
                "jsonl: warning: item {} ({ITEMS_FILE} at byte {}) is over the item limits, returned truncated: {}",
                item.id,
                loc.off,
                repairs.join("; ")
            ));
        }
        Ok(item)
    }

    fn events_now(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, JsonlError> {
        self.refresh_items()?;
        self.refresh_events()?;
        let locs = self.index.events_of(item_id, limit);
        let mut out = Vec::with_capacity(locs.len());
        for loc in locs {
            let bytes = self.events.read_line(loc.off, loc.len)?;
            let stale = || JsonlError::Stale {
                file: EVENTS_FILE,
                offset: loc.off,
            };
            let line = head::trim_newline(&bytes);
            // An event whose `meta` an older version let nest too deep for the parser is
            // answered with the truncation marker in its place, like an item.
            let ev: Event = match serde_json::from_slice(line) {
                Ok(ev) => ev,
                Err(_) => {
                    let fixed = crate::deep::fit_meta(line).ok_or_else(stale)?;
                    let ev: Event = serde_json::from_slice(&fixed).map_err(|_| stale())?;
                    (self.warn)(&format!(
                        "jsonl: warning: event {} of item {item_id} has a `meta` nested too deep; answered truncated",
                        ev.id
                    ));
                    ev
                }
            };
            if ev.item_id != item_id {
                return Err(stale());
            }
            out.push(ev);
        }
        Ok(out)
    }
}

/// The index keys of an item line's head.
fn item_keys(h: ItemHead<'_>) -> ItemKeys {
    ItemKeys {
        id: h.id.into_owned(),
        env: h.env.into_owned(),
        service: h.service.into_owned(),
        owner: h.owner.into_owned(),
        category: h.category.into_owned(),
        priority: h.priority,
        status: h.status,
        due_date: h.due_date.into_owned(),
    }
}

/// Reads and parses the item line at `loc`, which must be item `id` (if given), and brings it
/// within the item limits (an older version may have stored more: see
/// [`backlog_core::validate::fit_stored`] and [`crate::deep`]); returns what was repaired.
fn read_item(
    items: &FileState,
    loc: Loc,
    id: Option<&str>,
) -> Result<(Item, Vec<String>), JsonlError> {
    let bytes = items.read_line(loc.off, loc.len)?;
    let stale = || JsonlError::Stale {
        file: ITEMS_FILE,
        offset: loc.off,
    };
    let line = head::trim_newline(&bytes);
    let mut repairs = Vec::new();
    let mut item: Item = match serde_json::from_slice(line) {
        Ok(item) => item,
        Err(_) => {
            let fixed = crate::deep::fit_meta(line).ok_or_else(stale)?;
            let item: Item = serde_json::from_slice(&fixed).map_err(|_| stale())?;
            if let Some(why) = item
                .meta
                .get(backlog_core::validate::TRUNCATED_KEY)
                .and_then(|v| v.as_str())
            {
                repairs.push(why.to_owned());
            }
            item
        }
    };
    if id.is_some_and(|id| id != item.id) {
        return Err(stale());
    }
    repairs.extend(backlog_core::validate::fit_stored(&mut item));
    Ok((item, repairs))
}

impl BacklogStore for JsonlStore {
    fn backend(&self) -> &'static str {
        crate::JSONL_BACKEND
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        self.retry(|s| s.get_now(id))
    }

    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        self.retry(|s| s.find_now(key))
    }

    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        self.retry(|s| s.list_now(query, today))
    }

    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.retry(|s| s.events_now(item_id, limit))
    }

    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        self.write_now(item, events).map_err(StoreError::from)
    }

    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        self.refresh_items()?;
        self.full_index()?;
        Ok(self
            .index
            .keys()
            .filter(|k| env.is_none_or(|e| k.env == e))
            .cloned()
            .collect())
    }

    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        self.cleanup_now(cutoff, dry_run)
    }

    fn begin_call(&mut self) {
        JsonlStore::begin_call(self)
    }

    fn end_call(&mut self) -> Result<(), StoreError> {
        JsonlStore::end_call(self).map_err(StoreError::from)
    }

    /// From the counts the index keeps as lines are applied ([`crate::counts`]): no walk over
    /// the items; the same answer as the default computation.
    fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        self.refresh_items()?;
        self.full_index()?;
        let counts = self.index.dashboard(env, today, policy);
        backlog_core::store::finish_dashboard(self, env, counts, policy)
    }
}
