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
//! Per call (decided at its first store operation): with on-demand locking
//! ([`AutoStore::with_dir_lock`], how the host runs it), a write-capable call that finds no
//! outage on record and Postgres answering runs on Postgres without the directory's lock; any
//! other takes the lock first and goes on as follows. `down_until` in the future → JSONL. Else
//! one probe statement (schema version). Unavailable → JSONL, write `down_until`, log
//! `backlog_store: using JsonlBacklogStore` and a warning with the reason. Available → confirm
//! or redo the last replay, replay the journal (write-capable calls only: a read-only call
//! cannot write, so the host first runs a write-capable recovery call when
//! [`auto_recovery_due`] says so — and `serve` every retry interval), then Postgres — logging
//! `backlog_store: using PostgresBacklogStore` when this switches back from JSONL. A Postgres
//! failure in the middle of a call fails that call (its transaction is gone) and sends the
//! following calls to JSONL; one that shows only at the COMMIT (where the store's queued write
//! travels) fails the call in the host, and the next call's probe finds the outage.
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

use std::path::PathBuf;

use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};
use backlog_core::time;

use crate::jsonl::{Access, JsonlStore};
use crate::pg::{PostgresStore, Sql};

mod files;
mod replay;

pub use files::{
    AutoStatus, DOWN_UNTIL_FILE, FAILED_FILE, JOURNAL_FILE, REPLAYED_FILE, auto_recovery_due,
    auto_status,
};
use files::{
    Entry, append_entry, atomic_write, io_err, outage_on_record, read_down_until, read_entries,
    remove, split_batch, write_entries,
};

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
    /// Takes the directory's writer lock (`None`: the caller holds it for every
    /// write-capable call).
    dir_lock: Option<DirLockFn>,
    /// This call turned to the directory (the JSONL store's call began, under the lock).
    dir_open: bool,
}

/// Takes the JSONL directory's writer lock for the rest of the call; `Err`: why it cannot.
pub type DirLockFn = Box<dyn FnMut() -> Result<(), String>>;

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
            dir_lock: None,
            dir_open: false,
        }
    }

    /// Write-capable calls take the directory's writer lock through `lock`, and only when
    /// they turn to the directory: Postgres is down, or an outage is on record (its journal,
    /// an unconfirmed replay, a retry time). A call that finds no outage on record and
    /// Postgres answering runs on Postgres without the lock, so writers on Postgres do not
    /// queue behind one another for a directory none of them touches.
    pub fn with_dir_lock(mut self, lock: DirLockFn) -> Self {
        self.dir_lock = Some(lock);
        self
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

    /// Begins this call on the directory: takes its lock first (on-demand locking, in a
    /// write-capable call), so everything the call reads there is read under it.
    fn open_dir(&mut self) -> Result<(), StoreError> {
        if self.dir_open {
            return Ok(());
        }
        if let (true, Some(lock)) = (self.writable, &mut self.dir_lock) {
            lock().map_err(StoreError::Unavailable)?;
        }
        self.jsonl.begin_call();
        self.dir_open = true;
        Ok(())
    }

    fn decide(&mut self) -> Result<Active, StoreError> {
        if self.writable && self.dir_lock.is_some() && !outage_on_record(&self.dir) {
            // The common case, without the directory's lock: Postgres, if it answers.
            return match self.pg.probe() {
                Ok(()) => {
                    self.announce(Active::Postgres, None);
                    Ok(Active::Postgres)
                }
                Err(StoreError::Unavailable(why)) => {
                    self.open_dir()?;
                    self.mark_down(&why)?;
                    Ok(Active::Jsonl)
                }
                Err(e) => Err(e),
            };
        }
        self.open_dir()?;
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
                    self.open_dir()?;
                    self.mark_down(&why)?;
                }
                r
            }
        }
    }
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

    /// The JSONL store's call begins only when this call turns to the directory.
    fn begin_call(&mut self) {
        self.decided = None;
        self.dir_open = false;
        self.pg.begin_call();
    }

    fn end_call(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.dir_open) {
            self.jsonl.end_call()?;
        }
        self.pg.end_call()
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

    fn claim_new_id(&mut self, id: &str) -> Result<bool, StoreError> {
        self.on(|s| s.claim_new_id(id))
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
mod tests;
