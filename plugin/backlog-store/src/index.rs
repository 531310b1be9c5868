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

mod lazy;
mod model;
mod snapshot;

use model::{EvLoc, NIL, Order, Slot};
pub(crate) use model::{Full, Index, Loc};

pub(crate) use snapshot::Reader;

use crate::counts::Counts;
use crate::filter::Filter;

/// Each incremental move shifts O(n) entries; a re-sort is O(n log n) compares.
const MAX_MOVES: usize = 2048;

/// The sort key only: `(priority, due_date)` (the id never changes).
fn same_place(a: &ItemKeys, b: &ItemKeys) -> bool {
    a.priority == b.priority && a.due_date == b.due_date
}

impl Index {
    /// Drops everything (and releases the memory).
    pub fn clear(&mut self) {
        *self = Index::default();
    }

    /// The index of a checkpoint's snapshot (`bytes[start..]`, already hashed), opened lazily
    /// (`lazy.rs`); `None` if its tables do not fit.
    pub fn open_lazy(bytes: Vec<u8>, start: usize) -> Option<Index> {
        Some(Index {
            lazy: Some(Box::new(lazy::Lazy::open(bytes, start)?)),
            ..Index::default()
        })
    }

    /// Decodes a lazily opened snapshot and replays what came after it, so every operation
    /// can run. `false`: the snapshot did not decode (the index is then empty; the caller
    /// re-indexes the files).
    pub fn materialize(&mut self) -> bool {
        let Some(lazy) = self.lazy.take() else {
            return true;
        };
        let mut r = Reader {
            bytes: lazy.snapshot(),
        };
        let decoded = Index::decode(&mut r).filter(|_| r.bytes.is_empty());
        let Some(ix) = decoded else {
            *self = Index::default();
            return false;
        };
        *self = ix;
        for op in lazy.log {
            let put = match op {
                lazy::Op::Item {
                    keys,
                    dedupe_key,
                    line,
                } => self.put_item(keys, &dedupe_key, line),
                lazy::Op::Event { item_id, line } => self.put_event(&item_id, line),
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
        let mut sorted: Vec<u32> = (0..slots.len() as u32)
            .filter(|&s| slots[s as usize].keys.is_some())
            .collect();
        sorted.sort_unstable_by(|&a, &b| {
            match (&slots[a as usize].keys, &slots[b as usize].keys) {
                (Some(a), Some(b)) => list::compare(a, b),
                _ => Ordering::Equal,
            }
        });
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
mod tests {
    use super::*;
    use backlog_core::model::{Priority, Status};
    use std::collections::HashMap;

    fn keys(id: &str) -> ItemKeys {
        ItemKeys {
            id: id.into(),
            env: "prod".into(),
            service: "api".into(),
            owner: "o".into(),
            category: "c".into(),
            priority: Priority::P1,
            status: Status::Open,
            due_date: "2026-01-01".into(),
        }
    }

    /// Index::list must answer exactly what list::select answers, across incremental moves,
    /// invalidation (many moves) and re-sorts.
    #[test]
    fn list_matches_select_through_incremental_changes() {
        let mut x: u64 = 99;
        let mut r = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let mut ix = Index::default();
        let mut reference: HashMap<String, ItemKeys> = HashMap::new();
        let queries = [
            ListQuery::default(),
            ListQuery {
                limit: 5,
                offset: 7,
                ..ListQuery::default()
            },
            ListQuery {
                env: Some("e1".into()),
                limit: 3,
                ..ListQuery::default()
            },
            ListQuery {
                status: vec![Status::Done],
                limit: 1000,
                ..ListQuery::default()
            },
            ListQuery {
                limit: 0,
                ..ListQuery::default()
            },
            ListQuery {
                offset: 10_000,
                ..ListQuery::default()
            },
        ];
        for round in 0..40 {
            // Big rounds exceed MAX_MOVES and invalidate the order; small ones move in place.
            let changes = if round % 10 == 3 { 3000 } else { 1 + r(20) };
            for _ in 0..changes {
                let id = format!("bl_{:012x}", r(400));
                if r(7) == 0 {
                    ix.put_event(&format!("bl_{:012x}", 1000 + r(50)), loc(0))
                        .unwrap();
                }
                let k = ItemKeys {
                    id: id.clone(),
                    env: format!("e{}", r(3)),
                    service: "s".into(),
                    owner: "o".into(),
                    category: "c".into(),
                    priority: [Priority::P0, Priority::P1, Priority::P2, Priority::P3]
                        [r(4) as usize],
                    status: [Status::Open, Status::Done][r(2) as usize],
                    due_date: format!("2026-01-{:02}", 1 + r(5)),
                };
                ix.put_item(k.clone(), &id, loc(r(1000))).unwrap();
                reference.insert(id, k);
            }
            for q in &queries {
                let (want, want_total) = list::select(q, reference.values(), "2026-01-03");
                let want: Vec<&str> = want.iter().map(|k| k.id.as_str()).collect();
                let (got, total) = ix.list(q, "2026-01-03");
                let got: Vec<&str> = got.iter().map(|(id, _)| *id).collect();
                assert_eq!((got, total), (want, want_total), "round {round}, {q:?}");
            }
        }
    }

    fn loc(off: u64) -> Loc {
        Loc { off, len: 1 }
    }

    #[test]
    fn events_before_their_item_attach_when_it_arrives() {
        let mut ix = Index::default();
        ix.put_event("bl_a", loc(0)).unwrap();
        assert_eq!(ix.item("bl_a"), None);
        assert!(ix.events_of("bl_a", 10).is_empty());
        assert_eq!(ix.item_count(), 0);
        ix.put_item(keys("bl_a"), "k", loc(5)).unwrap();
        ix.put_event("bl_a", loc(1)).unwrap();
        ix.put_event("bl_b", loc(2)).unwrap();
        ix.put_event("bl_a", loc(3)).unwrap();
        assert_eq!(ix.events_of("bl_a", 10), vec![loc(0), loc(1), loc(3)]);
        assert_eq!(ix.events_of("bl_a", 2), vec![loc(0), loc(1)]);
        assert_eq!(ix.item_count(), 1);
        assert_eq!(ix.list(&ListQuery::default(), "2026-01-01").1, 1);
        assert_eq!(ix.event_count(), 4);
        ix.clear_events();
        assert!(ix.events_of("bl_a", 10).is_empty());
        assert_eq!(ix.item("bl_a"), Some(loc(5)));
        assert_eq!(ix.by_dedupe("k"), Some(loc(5)));
    }

    /// One random change: an item line (id, dedupe key, env) or an event line (item id).
    fn change() -> impl proptest::strategy::Strategy<Value = (bool, u8, u8, u8)> {
        use proptest::prelude::*;
        (any::<bool>(), 0u8..40, 0u8..12, 0u8..3)
    }

    fn apply(ix: &mut Index, (is_item, id, key, env): (bool, u8, u8, u8), off: u64) {
        let id_s = format!("bl_{id:02}");
        if is_item {
            let mut k = keys(&id_s);
            k.env = format!("e{env}");
            ix.put_item(k, &format!("k{key}"), loc(off)).unwrap();
        } else {
            ix.put_event(&id_s, loc(off)).unwrap();
        }
    }

    /// Everything a lazy index answers without decoding, for every id and key.
    fn lookups(ix: &Index) -> Vec<String> {
        let mut out = vec![format!("{} {}", ix.item_count(), ix.event_count())];
        for id in 0..42u8 {
            let id = format!("bl_{id:02}");
            out.push(format!(
                "{id} {:?} {:?} {:?}",
                ix.item(&id),
                ix.events_of(&id, 100),
                ix.events_of(&id, 2)
            ));
        }
        for key in 0..13 {
            out.push(format!("k{key} {:?}", ix.by_dedupe(&format!("k{key}"))));
        }
        out
    }

    proptest::proptest! {
        /// A snapshot opened lazily answers lookups like the index it was taken from, keeps
        /// answering like it as changes follow, and decodes (`materialize`) into the same
        /// index with the changes replayed — the same listing too.
        #[test]
        fn a_lazy_snapshot_answers_like_the_full_index(
            before in proptest::collection::vec(change(), 0..120),
            after in proptest::collection::vec(change(), 0..40),
        ) {
            let mut full = Index::default();
            for (i, c) in before.iter().enumerate() {
                apply(&mut full, *c, i as u64);
            }
            let mut bytes = b"HEAD".to_vec();
            full.encode(&mut bytes);
            let mut lazy = Index::open_lazy(bytes, 4).expect("opens");
            proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
            for (i, c) in after.iter().enumerate() {
                apply(&mut full, *c, 1000 + i as u64);
                apply(&mut lazy, *c, 1000 + i as u64);
            }
            proptest::prop_assert!(lazy.is_lazy());
            proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
            let q = ListQuery { limit: 1000, ..ListQuery::default() };
            let want: Vec<(String, Loc)> = full.list(&q, "2026-01-01").0.into_iter()
                .map(|(id, l)| (id.to_owned(), l)).collect();
            let got: Vec<(String, Loc)> = lazy.list(&q, "2026-01-01").0.into_iter()
                .map(|(id, l)| (id.to_owned(), l)).collect();
            proptest::prop_assert!(!lazy.is_lazy());
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
        }

        /// Damaged bytes (which the checkpoint's hash would normally refuse) never panic or
        /// loop: a lazy open, its lookups and its decode each answer or refuse.
        #[test]
        fn a_damaged_snapshot_never_panics(
            before in proptest::collection::vec(change(), 1..60),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let mut full = Index::default();
            for (i, c) in before.iter().enumerate() {
                apply(&mut full, *c, i as u64);
            }
            let mut bytes = Vec::new();
            full.encode(&mut bytes);
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] ^= b | 1;
            }
            if let Some(mut lazy) = Index::open_lazy(bytes, 0) {
                let _ = lookups(&lazy);
                let _ = lazy.materialize();
            }
        }
    }
}
