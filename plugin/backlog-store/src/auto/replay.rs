//! Replaying the outage journal into Postgres: newer `updated_at` wins, events by id, an item
//! whose `dedupe_key` Postgres holds under another id is merged into that item, and items
//! Postgres rejects are set aside.

use backlog_core::model::Item;
use backlog_core::store::{BacklogStore, StoreError};
use backlog_core::time;

use super::AutoStore;
use super::files::{Entry, append_entry, write_entries};
use super::files::{FAILED_FILE, JOURNAL_FILE, REPLAYED_FILE};
use crate::pg::Sql;

impl<S: Sql> AutoStore<S> {
    /// Writes every pending item (newer wins, dedupe merges) and its JSONL events into
    /// Postgres; returns, per item (by its JSONL id), the event ids written. On failure, the
    /// id of the item that failed.
    pub(super) fn replay(&mut self, pending: &[Entry]) -> Result<Vec<Entry>, (String, StoreError)> {
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
    pub(super) fn replay_item(&mut self, id: &str) -> Result<Vec<String>, StoreError> {
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
    pub(super) fn quarantine(
        &mut self,
        id: &str,
        pending: Vec<Entry>,
        e: StoreError,
    ) -> StoreError {
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
    pub(super) fn merge(&mut self, x: Item) -> Result<(String, Option<Item>), StoreError> {
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
