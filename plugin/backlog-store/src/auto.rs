//! The `auto` backend (`docs/storage.md`): [`AutoStore`], Postgres when it answers with the current
//! schema, otherwise the JSONL store — and nothing written during an outage is lost or hidden.
//!
//! Owns the choice of store for each call, the outage bookkeeping in the JSONL directory and
//! the replay. Four files sit next to `items.jsonl`:
//!
//! * [`DOWN_UNTIL_FILE`] — `YYYY-MM-DDTHH:MM:SS.ffffffZ` on the first line, the reason on the
//!   second. Written when Postgres is found unavailable (now + the retry interval); while it
//!   lies in the future, calls use JSONL without contacting Postgres, so short-lived processes
//!   do not each pay a connect timeout. Removed once Postgres answers again.
//! * [`JOURNAL_FILE`] — one JSON line per write made to JSONL during an outage:
//!   `{"item_id":"bl_…","events":["ev_…",…]}`. Appended (and synced) *before* the JSONL
//!   write, so a write that reached JSONL is always journaled.
//! * [`REPLAYED_FILE`] — the entries of the last replay, same format, kept until a later call
//!   sees every replayed event id in Postgres: the host commits a call's transaction only
//!   after the guest returns, so the replaying call cannot know its replay was committed.
//!   An unconfirmed replay is simply replayed again (replay is idempotent).
//! * [`FAILED_FILE`] — entries of items Postgres rejected on replay (bad data, a conflict no
//!   merge rule covers), set aside with an error in the log so they cannot block every later
//!   replay; the items stay in the JSONL store.
//!
//! Per call (decided at its first store operation): `down_until` in the future → JSONL. Else
//! one probe statement (schema version). Unavailable → JSONL, write `down_until`, log
//! `backlog_store: using JsonlBacklogStore` and a warning with the reason. Available → confirm
//! or redo the last replay, replay the journal (write-capable calls only: a read-only call
//! cannot write, so the host first runs a write-capable recovery call when
//! [`auto_recovery_due`] says so — and `serve` every retry interval), then Postgres — logging
//! `backlog_store: using PostgresBacklogStore` when this switches back from JSONL. A
//! Postgres failure in the middle of a call fails that call (its transaction is gone) and
//! sends the following calls to JSONL.
//!
//! Replay goes in batches of [`REPLAY_BATCH`] items per call (JSONL keeps answering until the
//! journal is empty). Rules: items by id, the newer `updated_at` wins; events by id (ones
//! already stored stay); an item whose `dedupe_key` Postgres holds under another id is merged
//! into that item (its fields if newer, its events re-pointed) and the merge is logged.
//! `cleanup` during an outage is refused with `unavailable`. On JSONL an id the fallback does
//! not hold is `unavailable` too, not `not_found` (it may exist in Postgres; see
//! [`BacklogStore::absent_reason`]), and `list`/`dashboard` answers say `"degraded": true`.
//!
//! Limitation: during an outage only what the JSONL directory holds is visible (items
//! written through JSONL before), as the fallback described in `docs/storage.md` implies; an item last written during
//! an earlier outage is seen there in that version, and an update made to it then wins over
//! Postgres on replay when it is newer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};
use backlog_core::time;
use serde::{Deserialize, Serialize};

use crate::jsonl::{Access, JsonlStore};
use crate::pg::{PostgresStore, Sql};

/// The outage journal, in the JSONL directory.
pub const JOURNAL_FILE: &str = "auto-journal.jsonl";
/// The entries of the last replay, until confirmed.
pub const REPLAYED_FILE: &str = "auto-journal.replayed.jsonl";
/// Until when Postgres counts as down (first line), and why (second line).
pub const DOWN_UNTIL_FILE: &str = "down_until";
/// Journal entries of items that could not be replayed (for the operator).
pub const FAILED_FILE: &str = "auto-journal.failed.jsonl";
/// `BACKLOG_PG_RETRY_SECONDS` default.
pub const DEFAULT_RETRY_SECONDS: u64 = 300;
/// Items replayed per call at most, so that a long outage's journal cannot make one call
/// exceed its time limit (and be rolled back, again and again); the rest follows with the
/// next calls, which answer from JSONL until the journal is empty.
pub const REPLAY_BATCH: usize = 200;
/// Retry intervals are capped at a year.
const MAX_RETRY_SECONDS: u64 = 366 * 24 * 3600;

/// Which store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// [`PostgresStore`].
    Postgres,
    /// [`JsonlStore`] (Postgres down, or a replay is pending).
    Jsonl,
}

/// One journaled write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    item_id: String,
    #[serde(default)]
    events: Vec<String>,
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

/// The auto store. See the module docs.
pub struct AutoStore<S> {
    pg: PostgresStore<S>,
    jsonl: JsonlStore,
    dir: PathBuf,
    writable: bool,
    retry_seconds: u64,
    replay_batch: usize,
    /// The current call's time (fixed-width form).
    now: String,
    /// The store of this call, once decided.
    decided: Option<Active>,
    /// What this instance last announced in the log.
    announced: Option<Active>,
    log: Box<dyn FnMut(&str)>,
}

impl<S> std::fmt::Debug for AutoStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoStore")
            .field("decided", &self.decided)
            .field("retry_seconds", &self.retry_seconds)
            .finish_non_exhaustive()
    }
}

impl<S: Sql> AutoStore<S> {
    /// Auto over `pg` and `jsonl` (whose directory also holds the outage files), retrying a
    /// down Postgres after `retry_seconds`. `log` receives the switch lines and warnings
    /// (inside the component: stderr). Does no I/O.
    pub fn new(
        pg: PostgresStore<S>,
        jsonl: JsonlStore,
        retry_seconds: u64,
        log: Box<dyn FnMut(&str)>,
    ) -> Self {
        AutoStore {
            dir: jsonl.dir().to_path_buf(),
            writable: jsonl.access() == Access::ReadWrite,
            pg,
            jsonl,
            retry_seconds: retry_seconds.min(MAX_RETRY_SECONDS),
            replay_batch: REPLAY_BATCH,
            now: String::new(),
            decided: None,
            announced: None,
            log,
        }
    }

    /// Replays at most `items` items per call (default [`REPLAY_BATCH`]).
    pub fn with_replay_batch(mut self, items: usize) -> Self {
        self.replay_batch = items.max(1);
        self
    }

    /// Starts a call at `now` (any RFC 3339 form): the store is chosen again at the call's
    /// first operation.
    pub fn begin_call_at(&mut self, now: &str) {
        self.now = time::normalize_ts(now).unwrap_or_default();
        BacklogStore::begin_call(self);
    }

    /// The store that answered this call so far (`None` before its first operation).
    pub fn active(&self) -> Option<Active> {
        self.decided
    }

    /// The Postgres store (tests end its transaction through it).
    pub fn postgres_mut(&mut self) -> &mut PostgresStore<S> {
        &mut self.pg
    }

    fn choose(&mut self) -> Result<Active, StoreError> {
        if let Some(a) = self.decided {
            return Ok(a);
        }
        let a = self.decide()?;
        self.decided = Some(a);
        Ok(a)
    }

    fn decide(&mut self) -> Result<Active, StoreError> {
        let down = read_down_until(&self.dir).map_err(io_err(DOWN_UNTIL_FILE))?;
        if let Some(until) = &down
            && !self.now.is_empty()
            && self.now < *until
        {
            let why = format!("Postgres marked unavailable until {until}");
            self.announce(Active::Jsonl, Some(&why));
            return Ok(Active::Jsonl);
        }
        match self.pg.probe() {
            Ok(()) => {}
            Err(StoreError::Unavailable(why)) => {
                self.mark_down(&why)?;
                return Ok(Active::Jsonl);
            }
            Err(e) => return Err(e),
        }
        let mut pending = read_entries(&self.dir, JOURNAL_FILE).map_err(io_err(JOURNAL_FILE))?;
        let replayed = read_entries(&self.dir, REPLAYED_FILE).map_err(io_err(REPLAYED_FILE))?;
        if !replayed.is_empty() {
            let ids: Vec<String> = replayed.iter().flat_map(|e| e.events.clone()).collect();
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if self.pg.events_present(&distinct)? == distinct.len() {
                if self.writable {
                    remove(&self.dir, REPLAYED_FILE)?;
                }
            } else {
                // The replaying call was not committed: replay it again.
                pending.splice(0..0, replayed);
            }
        }
        let switching_back = down.is_some() || !pending.is_empty();
        if !pending.is_empty() {
            if !self.writable {
                let why = format!(
                    "{} journaled writes wait to be replayed into Postgres by a write call",
                    pending.len()
                );
                self.announce(Active::Jsonl, Some(&why));
                return Ok(Active::Jsonl);
            }
            let (batch, rest) = split_batch(pending, self.replay_batch);
            let done = match self.replay(&batch) {
                Ok(done) => done,
                Err((id, e)) => {
                    let all = batch.iter().cloned().chain(rest).collect();
                    return Err(self.quarantine(&id, all, e));
                }
            };
            write_entries(&self.dir, REPLAYED_FILE, &done).map_err(io_err(REPLAYED_FILE))?;
            write_entries(&self.dir, JOURNAL_FILE, &rest).map_err(io_err(JOURNAL_FILE))?;
            (self.log)(&format!(
                "backlog_store: replayed {} journaled writes ({} items, {} events) into Postgres{}",
                batch.len(),
                done.len(),
                done.iter().map(|e| e.events.len()).sum::<usize>(),
                match rest.len() {
                    0 => String::new(),
                    n => format!("; {n} more follow with the next calls"),
                }
            ));
            if !rest.is_empty() {
                // Not everything is in Postgres yet: this call still answers from JSONL.
                self.announce(Active::Jsonl, Some("replaying the outage journal"));
                return Ok(Active::Jsonl);
            }
        }
        if down.is_some() && self.writable {
            remove(&self.dir, DOWN_UNTIL_FILE)?;
        }
        if switching_back && self.announced.is_none() {
            // A fresh instance coming back from a recorded outage: that is a switch too.
            self.announced = Some(Active::Jsonl);
        }
        self.announce(Active::Postgres, None);
        Ok(Active::Postgres)
    }

    /// Logs `backlog_store: using …` when `to` differs from what this instance announced
    /// last (so also the first choice of a new instance), plus the reason for a fallback.
    fn announce(&mut self, to: Active, why: Option<&str>) {
        let switch = self.announced != Some(to);
        if switch {
            match to {
                Active::Postgres => (self.log)(&format!(
                    "backlog_store: using {}",
                    PostgresStore::<S>::LOG_NAME
                )),
                Active::Jsonl => {
                    (self.log)(&format!("backlog_store: using {}", JsonlStore::LOG_NAME));
                    (self.log)(&format!(
                        "backlog_store: warning: falling back to JSONL: {}",
                        why.unwrap_or("Postgres unavailable")
                    ));
                }
            }
        }
        self.announced = Some(to);
    }

    /// Postgres failed with `why`: JSONL until now + the retry interval (recorded on disk
    /// when this call may write the directory).
    fn mark_down(&mut self, why: &str) -> Result<(), StoreError> {
        let why = format!("{why}; retrying in {}s", self.retry_seconds);
        self.announce(Active::Jsonl, Some(&why));
        self.decided = Some(Active::Jsonl);
        if self.writable && !self.now.is_empty() {
            let until = time::parse_ts(&self.now)
                .map(|t| t + std::time::Duration::from_secs(self.retry_seconds))
                .map(time::format_ts)
                .filter(|s| s.len() == self.now.len())
                .unwrap_or_else(|| "9999-12-31T23:59:59.999999Z".to_owned());
            let reason = why.replace(['\n', '\r'], " ");
            atomic_write(
                &self.dir,
                DOWN_UNTIL_FILE,
                format!("{until}\n{reason}\n").as_bytes(),
            )
            .map_err(io_err(DOWN_UNTIL_FILE))?;
        }
        Ok(())
    }

    /// Writes every pending item (newer wins, dedupe merges) and its JSONL events into
    /// Postgres; returns, per item (by its JSONL id), the event ids written. On failure, the
    /// id of the item that failed.
    fn replay(&mut self, pending: &[Entry]) -> Result<Vec<Entry>, (String, StoreError)> {
        let mut ids: Vec<&str> = Vec::new();
        for e in pending {
            if !ids.contains(&e.item_id.as_str()) {
                ids.push(&e.item_id);
            }
        }
        let mut done = Vec::new();
        for id in ids {
            let events = self.replay_item(id).map_err(|e| (id.to_owned(), e))?;
            done.push(Entry {
                item_id: id.to_owned(),
                events,
            });
        }
        Ok(done)
    }

    /// Replays the JSONL item `id` and all its events; returns the event ids written.
    fn replay_item(&mut self, id: &str) -> Result<Vec<String>, StoreError> {
        let Some(item) = self.jsonl.get(id)? else {
            (self.log)(&format!(
                "backlog_store: warning: journaled item {id} is not in the JSONL store; nothing to replay"
            ));
            return Ok(Vec::new());
        };
        let (target, write) = self.merge(item)?;
        let mut events = self.jsonl.events(id, usize::MAX)?;
        for ev in &mut events {
            ev.item_id = target.clone();
        }
        self.pg.write(write.as_ref(), &events)?;
        Ok(events.into_iter().map(|e| e.id).collect())
    }

    /// Item `id` could not be replayed (`e`). Unless Postgres is just unavailable, its
    /// entries move to [`FAILED_FILE`] for the operator, so that they cannot block every
    /// later replay; the rest of `pending` stays journaled. Returns `e` (this call fails: its
    /// transaction is aborted).
    fn quarantine(&mut self, id: &str, pending: Vec<Entry>, e: StoreError) -> StoreError {
        if crate::pg::lost_race(&e) {
            // A concurrent writer won a race (another replica replaying the same new key):
            // the entries stay journaled for the host's re-run of this call.
            return e;
        }
        if let StoreError::Unavailable(why) = &e {
            let why = why.clone();
            return match self.mark_down(&why) {
                Ok(()) => e,
                Err(io) => io,
            };
        }
        let (failed, keep): (Vec<Entry>, Vec<Entry>) =
            pending.into_iter().partition(|x| x.item_id == id);
        let moved = failed
            .iter()
            .try_for_each(|f| append_entry(&self.dir, FAILED_FILE, f))
            .and_then(|()| write_entries(&self.dir, JOURNAL_FILE, &keep))
            .and_then(|()| write_entries(&self.dir, REPLAYED_FILE, &[]));
        match moved {
            Ok(()) => (self.log)(&format!(
                "backlog_store: error: cannot replay item {id} into Postgres ({e}); its journal \
                 entries moved to {FAILED_FILE} (the item stays in the JSONL store)"
            )),
            Err(io) => (self.log)(&format!(
                "backlog_store: error: cannot replay item {id} into Postgres ({e}), nor set it \
                 aside: {io}"
            )),
        }
        e
    }

    /// Where the JSONL version `x` goes in Postgres: the target id, and the version to write
    /// (`None` when Postgres already holds a version at least as new).
    fn merge(&mut self, x: Item) -> Result<(String, Option<Item>), StoreError> {
        if let Some(y) = self.pg.get(&x.id)? {
            if !newer(&x, &y) {
                return Ok((y.id, None));
            }
            let mut x = x;
            if x.dedupe_key != y.dedupe_key
                && let Some(z) = self.pg.find_by_dedupe_key(&x.dedupe_key)?
                && z.id != x.id
            {
                (self.log)(&format!(
                    "backlog_store: warning: replaying item {}: dedupe_key {:?} now names item {} in Postgres; keeping {:?}",
                    x.id, x.dedupe_key, z.id, y.dedupe_key
                ));
                x.dedupe_key = y.dedupe_key;
            }
            return Ok((x.id.clone(), Some(x)));
        }
        match self.pg.find_by_dedupe_key(&x.dedupe_key)? {
            Some(z) => {
                (self.log)(&format!(
                    "backlog_store: replay merged item {} into {} (dedupe_key {:?} is held by {} in Postgres)",
                    x.id, z.id, x.dedupe_key, z.id
                ));
                let write = newer(&x, &z).then(|| Item {
                    id: z.id.clone(),
                    created_at: z.created_at.clone(),
                    ..x
                });
                Ok((z.id, write))
            }
            None => Ok((x.id.clone(), Some(x))),
        }
    }

    /// Runs `op` on the chosen store. A Postgres failure that says unavailable switches to
    /// JSONL for the following calls (this call still fails: its transaction is gone).
    fn on<T>(
        &mut self,
        op: impl FnOnce(&mut dyn BacklogStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.choose()? {
            Active::Jsonl => op(&mut self.jsonl),
            Active::Postgres => {
                let r = op(&mut self.pg);
                if let Err(StoreError::Unavailable(why)) = &r {
                    let why = why.clone();
                    self.mark_down(&why)?;
                }
                r
            }
        }
    }
}

/// `pending` split after its first `max` distinct items: the entries of those items (in
/// journal order), and the rest.
fn split_batch(pending: Vec<Entry>, max: usize) -> (Vec<Entry>, Vec<Entry>) {
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

/// Whether `x` was updated after `y` (as instants; an unparsable time loses).
fn newer(x: &Item, y: &Item) -> bool {
    match (
        time::normalize_ts(&x.updated_at),
        time::normalize_ts(&y.updated_at),
    ) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    }
}

fn io_err(file: &'static str) -> impl Fn(io::Error) -> StoreError {
    move |e| {
        let msg = format!("auto store: cannot use {file}: {e}");
        match crate::error::is_refusal(&e, true) {
            true => StoreError::Forbidden(msg),
            false => StoreError::Internal(msg),
        }
    }
}

fn read_down_until(dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(dir.join(DOWN_UNTIL_FILE)) {
        Ok(text) => Ok(text.lines().next().and_then(time::normalize_ts)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of `file` (missing = none; lines that do not parse, such as a torn last line,
/// are skipped).
fn read_entries(dir: &Path, file: &str) -> io::Result<Vec<Entry>> {
    match fs::read_to_string(dir.join(file)) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn encode(entries: &[Entry]) -> Vec<u8> {
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
fn write_entries(dir: &Path, file: &str, entries: &[Entry]) -> io::Result<()> {
    if entries.is_empty() {
        return match fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    atomic_write(dir, file, &encode(entries))
}

/// Temp file, sync, rename, directory sync (best effort).
fn atomic_write(dir: &Path, file: &str, bytes: &[u8]) -> io::Result<()> {
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

fn remove(dir: &Path, file: &'static str) -> Result<(), StoreError> {
    match fs::remove_file(dir.join(file)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(file)(e)),
        _ => Ok(()),
    }
}

/// Appends one entry to `file` and syncs it.
fn append_entry(dir: &Path, file: &str, entry: &Entry) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file))?;
    f.write_all(&encode(std::slice::from_ref(entry)))?;
    f.sync_data()
}

impl<S: Sql> BacklogStore for AutoStore<S> {
    /// The store that answered this call: `postgres` or `jsonl`.
    fn backend(&self) -> &'static str {
        match self.decided.or(self.announced) {
            Some(Active::Jsonl) => crate::JSONL_BACKEND,
            _ => crate::POSTGRES_BACKEND,
        }
    }

    /// While on JSONL: the fallback may not hold every item.
    fn degraded(&self) -> bool {
        self.decided == Some(Active::Jsonl)
    }

    /// While on JSONL, an item the fallback does not hold may well exist in Postgres: saying
    /// `not_found` would be a lie (and an upsert would create a second version of it).
    fn absent_reason(&self, id: &str) -> Option<String> {
        (self.decided == Some(Active::Jsonl)).then(|| {
            format!(
                "Postgres is down and the JSONL fallback of the auto backend does not hold item \
                 {id} (it may exist in Postgres): retry when Postgres is back"
            )
        })
    }

    fn begin_call(&mut self) {
        self.decided = None;
        self.jsonl.begin_call();
        self.pg.begin_call();
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        self.on(|s| s.get(id))
    }

    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        self.on(|s| s.find_by_dedupe_key(key))
    }

    fn prefetch_dedupe_keys(&mut self, keys: &[String]) -> Result<(), StoreError> {
        self.on(|s| s.prefetch_dedupe_keys(keys))
    }

    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        self.on(|s| s.list(query, today))
    }

    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.on(|s| s.events(item_id, limit))
    }

    /// On JSONL: journal first (synced), then the JSONL write.
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        if self.choose()? == Active::Jsonl && self.writable {
            let item_id = item
                .map(|i| i.id.clone())
                .or_else(|| events.first().map(|e| e.item_id.clone()));
            if let Some(item_id) = item_id {
                let entry = Entry {
                    item_id,
                    events: events.iter().map(|e| e.id.clone()).collect(),
                };
                append_entry(&self.dir, JOURNAL_FILE, &entry).map_err(io_err(JOURNAL_FILE))?;
            }
        }
        self.on(|s| s.write(item, events))
    }

    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        self.on(|s| s.keys(env))
    }

    /// Refused with `unavailable` while on JSONL.
    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        match self.choose()? {
            Active::Jsonl => Err(StoreError::Unavailable(
                "Postgres is unavailable (auto backend running on JSONL): cleanup waits until \
                 Postgres is back"
                    .to_owned(),
            )),
            Active::Postgres => self.on(|s| s.cleanup(cutoff, dry_run)),
        }
    }

    fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        self.on(|s| s.dashboard(env, today, policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_due_only_after_the_retry_time_and_with_something_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (before, after) = ("2026-11-27T10:04:00Z", "2026-11-27T10:06:00Z");
        // Nothing recorded: nothing to do.
        assert!(!auto_recovery_due(dir, after));
        fs::write(
            dir.join(DOWN_UNTIL_FILE),
            "2026-11-27T10:05:00.000000Z\nPostgres down\n",
        )
        .unwrap();
        append_entry(
            dir,
            JOURNAL_FILE,
            &Entry {
                item_id: "bl_000000000001".into(),
                events: vec!["ev_1".into()],
            },
        )
        .unwrap();
        assert!(!auto_recovery_due(dir, before), "still marked down");
        assert!(auto_recovery_due(dir, after));
        // A stale down_until alone, or an unconfirmed replay alone, is work too.
        fs::remove_file(dir.join(JOURNAL_FILE)).unwrap();
        assert!(auto_recovery_due(dir, after));
        fs::remove_file(dir.join(DOWN_UNTIL_FILE)).unwrap();
        assert!(!auto_recovery_due(dir, after));
        fs::write(dir.join(REPLAYED_FILE), "").unwrap();
        assert!(auto_recovery_due(dir, before));
        assert!(!auto_recovery_due(dir, "not a time"));
    }
}
