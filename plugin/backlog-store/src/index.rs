//! The warm in-memory index over the two JSONL files: per item the location of its latest line
//! and its [`ItemKeys`], a `dedupe_key` map, and per item the locations of its event lines in
//! append order. It holds offsets and keys only — never a parsed `Item` or `Event` — so 100k
//! items stay in a few tens of MiB.
//!
//! Events may be indexed before their item (another process appended the item line after this
//! one looked at `items.jsonl`): they attach to a placeholder slot without keys, which the item
//! fills in when its line is seen. A placeholder that never gets an item holds events whose
//! item is gone (`docs/storage.md`: ignored on read).
//!
//! Listing: `list::select` filters and partially sorts the keys on every call, chasing
//! pointers into their strings (several ms at 100k items, more inside wasm). Instead the index
//! keeps the listing order ([`list::compare`]) of all items, maintained incrementally for small
//! changes and re-sorted lazily after big ones, plus the key fields as numbers
//! ([`crate::filter`]). A page is one sequential pass over those numbers with the compiled
//! query (whose meaning comes from [`ListQuery::matches`]) marking hits in a bitmap by rank,
//! then a walk of the bitmap. Same result as `list::select` (tested against it and against
//! `MemStore`), without a sort or a string comparison per item and call.

use std::cmp::Ordering;

use backlog_core::list::{self, ItemKeys, ListQuery};
use backlog_core::model::Priority;

mod lazy;
mod model;
pub(crate) mod pages;
mod snapshot;

use model::{EvLoc, NIL, Order, Slot};
pub(crate) use model::{Full, Index, Loc};

pub(crate) use snapshot::Reader;

use crate::counts::Counts;
use crate::filter::Filter;

/// Listings a lazily opened checkpoint answers before it is decoded. One costs a pass over
/// the snapshot (about 5 ms at 100k items, natively); decoding costs about 25 of them once,
/// after which a listing is a pass over numbers.
const LAZY_LISTS: u32 = 8;

/// Each incremental move shifts O(n) entries; a re-sort is O(n log n) compares.
const MAX_MOVES: usize = 2048;

/// The first 16 bytes of `s`, zero-padded, as a number that orders like `s` does wherever
/// two prefixes differ (where they are equal, the strings must be compared whole).
fn prefix(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// The sort key only: `(priority, due_date)` (the id never changes).
fn same_place(a: &ItemKeys, b: &ItemKeys) -> bool {
    a.priority == b.priority && a.due_date == b.due_date
}

impl Index {
    /// Drops everything (and releases the memory).
    pub fn clear(&mut self) {
        *self = Index::default();
    }

    /// The index of a checkpoint's snapshot, opened lazily (`lazy.rs`): nothing but its
    /// footer is read until a lookup needs more. `None` if its tables do not fit.
    pub fn open_lazy(pages: pages::Pages) -> Option<Index> {
        Some(Index {
            lazy: Some(Box::new(model::Lazy::open(pages)?)),
            ..Index::default()
        })
    }

    /// Whether the lazily opened snapshot met a block that failed its check (`pages.rs`):
    /// the answers since are not to be trusted and the store re-indexes the files.
    pub fn damaged(&self) -> bool {
        self.lazy.as_ref().is_some_and(|l| l.damaged())
    }

    /// Decodes a lazily opened snapshot and replays what came after it, so every operation
    /// can run. `false`: the snapshot did not decode (the index is then empty; the caller
    /// re-indexes the files).
    pub fn materialize(&mut self) -> bool {
        let Some(lazy) = self.lazy.take() else {
            return true;
        };
        let lazy = *lazy;
        let Some(bytes) = lazy.pages.into_bytes() else {
            *self = Index::default();
            return false;
        };
        let mut r = Reader { bytes: &bytes };
        let decoded = Index::decode(&mut r).filter(|_| r.bytes.is_empty());
        let Some(ix) = decoded else {
            *self = Index::default();
            return false;
        };
        *self = ix;
        for op in lazy.log {
            let put = match op {
                model::Op::Item {
                    keys,
                    dedupe_key,
                    line,
                } => self.put_item(keys, &dedupe_key, line),
                model::Op::Event { item_id, line } => self.put_event(&item_id, line),
            };
            if put.is_err() {
                *self = Index::default();
                return false;
            }
        }
        true
    }

    /// Whether the index is still a lazily opened checkpoint.
    pub fn is_lazy(&self) -> bool {
        self.lazy.is_some()
    }

    /// Drops every event location, keeping the items.
    pub fn clear_events(&mut self) {
        self.materialize();
        self.events = Vec::new();
        for s in &mut self.slots {
            s.ev_head = NIL;
            s.ev_tail = NIL;
        }
    }

    fn slot_of(&mut self, id: &str) -> Result<u32, Full> {
        if let Some(&s) = self.by_id.get(id) {
            return Ok(s);
        }
        let s = u32::try_from(self.slots.len()).map_err(|_| Full)?;
        if s == NIL {
            return Err(Full);
        }
        self.slots.push(Slot {
            keys: None,
            line: Loc { off: 0, len: 0 },
            ev_head: NIL,
            ev_tail: NIL,
        });
        self.cols.push();
        self.by_id.insert(id.to_owned(), s);
        Ok(s)
    }

    /// Records the latest line of an item (a later line for the same id replaces it).
    pub fn put_item(&mut self, keys: ItemKeys, dedupe_key: &str, line: Loc) -> Result<(), Full> {
        if let Some(lazy) = &mut self.lazy {
            lazy.put_item(keys, dedupe_key, line);
            return Ok(());
        }
        let s = self.slot_of(&keys.id)?;
        let slot = &mut self.slots[s as usize];
        let moved = match &slot.keys {
            None => {
                self.items += 1;
                true
            }
            Some(old) => !same_place(old, &keys),
        };
        self.cols.set(s as usize, &keys);
        if let Some(c) = &mut self.counts {
            c.replace(slot.keys.as_ref(), &keys);
        }
        slot.keys = Some(keys);
        slot.line = line;
        if moved {
            self.reorder(s);
        }
        match self.by_dedupe.get_mut(dedupe_key) {
            Some(v) => *v = s,
            None => {
                self.by_dedupe.insert(dedupe_key.to_owned(), s);
            }
        }
        Ok(())
    }

    /// Appends an event line to its item's history.
    pub fn put_event(&mut self, item_id: &str, line: Loc) -> Result<(), Full> {
        if let Some(lazy) = &mut self.lazy {
            lazy.put_event(item_id, line);
            return Ok(());
        }
        let s = self.slot_of(item_id)?;
        let e = u32::try_from(self.events.len()).map_err(|_| Full)?;
        if e == NIL {
            return Err(Full);
        }
        self.events.push(EvLoc { line, next: NIL });
        let slot = &mut self.slots[s as usize];
        if slot.ev_tail == NIL {
            slot.ev_head = e;
        } else {
            self.events[slot.ev_tail as usize].next = e;
        }
        slot.ev_tail = e;
        Ok(())
    }

    /// Moves slot `s` (new, or with a new sort key) to its place in the order, or gives up
    /// the order until the next listing when that is cheaper.
    fn reorder(&mut self, s: u32) {
        let order = &mut self.order;
        if !order.valid {
            return;
        }
        order.moves += 1;
        if order.moves > MAX_MOVES {
            order.valid = false;
            order.sorted = Vec::new();
            order.rank = Vec::new();
            return;
        }
        let slots = &self.slots;
        let key = |x: u32| slots[x as usize].keys.as_ref();
        if order.rank.len() < slots.len() {
            order.rank.resize(slots.len(), NIL);
        }
        // New slots have `NIL` even in a lagging rank (ranks only become `NIL` on a rebuild).
        if order.rank[s as usize] != NIL && order.rank_dirty {
            order.refresh_rank();
        }
        let old = order.rank[s as usize];
        let from = if old == NIL {
            order.sorted.len()
        } else {
            order.sorted.remove(old as usize);
            old as usize
        };
        let Some(new_keys) = key(s) else {
            // Not reached (callers set the keys first); stay correct anyway.
            order.valid = false;
            return;
        };
        let to = order.sorted.partition_point(|&x| {
            key(x).is_some_and(|k| list::compare(k, new_keys) == Ordering::Less)
        });
        order.sorted.insert(to, s);
        if old == NIL {
            // Every rank after `to` shifted by one: settle them when next read.
            order.rank[s as usize] = to as u32;
            order.rank_dirty = true;
            return;
        }
        for p in from.min(to)..order.sorted.len().min(from.max(to) + 1) {
            order.rank[order.sorted[p] as usize] = p as u32;
        }
    }

    /// (Re)builds the listing order if a change invalidated it.
    fn ensure_order(&mut self) {
        if self.order.valid {
            if self.order.rank_dirty {
                self.order.refresh_rank();
            }
            return;
        }
        let slots = &self.slots;
        // Sorted by a copy of each key's prefix, so comparisons do not chase two pointers per
        // item into the heap (a cache miss each: 58 ms for 100k items against 8 ms); equal
        // prefixes fall back to the full comparison.
        let mut keyed: Vec<(Priority, u128, u128, u32)> = slots
            .iter()
            .enumerate()
            .filter_map(|(s, slot)| {
                let k = slot.keys.as_ref()?;
                Some((k.priority, prefix(&k.due_date), prefix(&k.id), s as u32))
            })
            .collect();
        keyed.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
                match (&slots[a.3 as usize].keys, &slots[b.3 as usize].keys) {
                    (Some(a), Some(b)) => list::compare(a, b),
                    _ => Ordering::Equal,
                }
            })
        });
        let sorted: Vec<u32> = keyed.into_iter().map(|k| k.3).collect();
        let mut rank = vec![NIL; slots.len()];
        for (p, &s) in sorted.iter().enumerate() {
            rank[s as usize] = p as u32;
        }
        self.order = Order {
            sorted,
            rank,
            rank_dirty: false,
            valid: true,
            moves: 0,
        };
    }

    /// What [`Index::list`] answers, from a lazily opened checkpoint without decoding it
    /// (`lazy.rs`); `None` if the index is not lazy, already listed [`LAZY_LISTS`] times
    /// (an instance that keeps listing is better off decoding once), or its listing order
    /// does not read.
    pub fn list_lazy(
        &mut self,
        query: &ListQuery,
        today: &str,
    ) -> Option<(Vec<(String, Loc)>, usize)> {
        let lazy = self.lazy.as_mut()?;
        lazy.lists += 1;
        if lazy.lists > LAZY_LISTS {
            return None;
        }
        lazy.list(query, today)
    }

    /// The page of `query` (locations of the items' lines, in listing order) and the number
    /// of matches: what `list::select` answers, without sorting per call.
    pub fn list(&mut self, query: &ListQuery, today: &str) -> (Vec<(&str, Loc)>, usize) {
        self.materialize();
        self.ensure_order();
        let order = &self.order;
        let Some(filter) = Filter::compile(query, &self.cols, today) else {
            // No filter: the page is a slice of the order.
            let page = order
                .sorted
                .iter()
                .skip(query.offset)
                .take(query.limit)
                .filter_map(|&s| {
                    let slot = &self.slots[s as usize];
                    Some((slot.keys.as_ref()?.id.as_str(), slot.line))
                })
                .collect();
            return (page, order.sorted.len());
        };
        let mut hits = vec![0u64; order.sorted.len().div_ceil(64)];
        let mut total = 0;
        for (row, &rank) in self.cols.rows().iter().zip(&order.rank) {
            if rank != NIL {
                // Branch-free: whether a row matches is unpredictable.
                let hit = filter.test(row);
                total += usize::from(hit);
                hits[rank as usize / 64] |= u64::from(hit) << (rank % 64);
            }
        }
        let mut page = Vec::with_capacity(query.limit.min(total));
        let mut skip = query.offset;
        for (w, &word) in hits.iter().enumerate() {
            if page.len() >= query.limit {
                break;
            }
            let ones = word.count_ones() as usize;
            if skip >= ones {
                skip -= ones;
                continue;
            }
            let mut bits = word;
            while bits != 0 && page.len() < query.limit {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if let Some(slot) = order
                    .sorted
                    .get(w * 64 + b)
                    .map(|&s| &self.slots[s as usize])
                    && let Some(k) = &slot.keys
                {
                    page.push((k.id.as_str(), slot.line));
                }
            }
        }
        (page, total)
    }

    /// The dashboard counts of `env` on `today` ([`Counts::dashboard`]), without walking the
    /// items.
    pub fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &backlog_core::policy::Policy,
    ) -> backlog_core::dashboard::DashboardCounts {
        self.materialize();
        let slots = &self.slots;
        let counts = self.counts.get_or_insert_with(|| {
            let mut c = Counts::default();
            for k in slots.iter().filter_map(|s| s.keys.as_ref()) {
                c.replace(None, k);
            }
            c
        });
        counts.dashboard(env, today, policy, |id| {
            let s = *self.by_id.get(id)?;
            self.slots[s as usize].keys.as_ref()
        })
    }

    /// The keys of every item.
    pub fn keys(&mut self) -> impl Iterator<Item = &ItemKeys> {
        self.materialize();
        self.slots.iter().filter_map(|s| s.keys.as_ref())
    }

    /// Number of slots (items and placeholders): slot numbers are below it.
    pub fn slot_count(&self) -> usize {
        if let Some(lazy) = &self.lazy {
            return lazy.slot_count();
        }
        self.slots.len()
    }

    /// The latest line of item `id`, if the item exists.
    pub fn item(&self, id: &str) -> Option<Loc> {
        if let Some(lazy) = &self.lazy {
            return lazy.item(id);
        }
        let slot = &self.slots[*self.by_id.get(id)? as usize];
        slot.keys.as_ref().map(|_| slot.line)
    }

    /// The latest line of the item last seen with `dedupe_key` (it may have changed its key
    /// since: the caller checks).
    pub fn by_dedupe(&self, dedupe_key: &str) -> Option<Loc> {
        if let Some(lazy) = &self.lazy {
            return lazy.by_dedupe(dedupe_key);
        }
        let slot = &self.slots[*self.by_dedupe.get(dedupe_key)? as usize];
        slot.keys.as_ref().map(|_| slot.line)
    }

    /// The first `limit` event lines of item `id`, in append order; none if the item does
    /// not exist (events of a removed item are ignored).
    pub fn events_of(&self, id: &str, limit: usize) -> Vec<Loc> {
        if let Some(lazy) = &self.lazy {
            return lazy.events_of(id, limit);
        }
        let Some(&s) = self.by_id.get(id) else {
            return Vec::new();
        };
        let slot = &self.slots[s as usize];
        if slot.keys.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut e = slot.ev_head;
        while e != NIL && out.len() < limit {
            let ev = &self.events[e as usize];
            out.push(ev.line);
            e = ev.next;
        }
        out
    }

    /// The latest line of every item, with its slot (for `cleanup`), in slot order.
    pub fn latest_lines(&mut self) -> Vec<(Loc, u32)> {
        self.materialize();
        (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].keys.is_some())
            .map(|s| (self.slots[s as usize].line, s))
            .collect()
    }

    /// The id of the item in slot `s`.
    pub fn id_of(&self, s: u32) -> Option<&str> {
        Some(self.slots.get(s as usize)?.keys.as_ref()?.id.as_str())
    }

    /// Per event line (in append order, which is file order): whether it belongs to a slot
    /// `keep` marks, and which.
    pub fn events_of_slots(&mut self, keep: &[bool]) -> Vec<u32> {
        self.materialize();
        let mut owner = vec![NIL; self.events.len()];
        for (s, slot) in self.slots.iter().enumerate() {
            if !keep.get(s).copied().unwrap_or(false) {
                continue;
            }
            let mut e = slot.ev_head;
            while e != NIL {
                owner[e as usize] = s as u32;
                e = self.events[e as usize].next;
            }
        }
        owner
    }

    /// Where event line `e` (in append order) is.
    pub fn event_line(&self, e: usize) -> Option<Loc> {
        self.events.get(e).map(|ev| ev.line)
    }

    /// Items indexed (placeholders excluded).
    pub fn item_count(&self) -> usize {
        if let Some(lazy) = &self.lazy {
            return lazy.item_count();
        }
        self.items
    }

    /// Event lines indexed (including those of items that do not exist).
    pub fn event_count(&self) -> usize {
        if let Some(lazy) = &self.lazy {
            return lazy.event_count();
        }
        self.events.len()
    }
}

#[cfg(test)]
mod tests;
