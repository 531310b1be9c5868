//! The index as bytes, for the checkpoint file (`crate::jsonl::checkpoint` owns the file, its
//! header and its validation against the JSONL files). Little-endian numbers, strings as
//! `u32` length + UTF-8. Decoding checks every length and every slot and event number, so
//! bytes that are not a snapshot give `None`, never a panic or an index that points outside
//! itself.
//!
//! Layout: slots (`id`, keys or none, line, first/last event), events (line, next event of
//! the same item — always a later one, so chains cannot loop), the dedupe map, and the
//! listing order if it was valid (so a cold instance need not sort), then the tables a lazy
//! open looks things up in without decoding the rest (`lazy.rs`: each slot's offset, the
//! slots and the dedupe entries' offsets with their keys' hashes, each sorted by
//! [`table_order`]) and a fixed-size footer locating the events and those tables. The filter columns are rebuilt from the keys; the
//! dashboard counts are built on the first dashboard.

use backlog_core::list::ItemKeys;

use super::model::{EvLoc, Index, Loc, NIL, Order, Slot};
use crate::filter::{PRIORITIES, STATUSES, priority_ix, status_ix};
use crate::hash::hash64;

/// The order of the lazy lookup tables: a string's [`hash64`], then the string (a total
/// order that compares two numbers, not two strings with a long common prefix, almost
/// always).
pub(super) fn table_order(s: &str) -> (u64, &str) {
    (hash64(s.as_bytes()), s)
}

/// The footer: where the events and the lookup tables start, the number of items, and the
/// numbers of slots, events and dedupe entries (so that a lazy open reads nothing else).
pub(super) const FOOTER: usize = 36;
/// An entry of the table by id: the id's [`hash64`], its slot.
pub(super) const ID_ENTRY: usize = 12;
/// An entry of the dedupe table: the key's [`hash64`], where its entry starts.
pub(super) const DEDUPE_ENTRY: usize = 16;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a snapshot front to back; every read fails (`None`) past the end.
pub(crate) struct Reader<'a> {
    pub bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A string's bytes, not checked as UTF-8.
    pub fn raw_str(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    pub fn loc(&mut self) -> Option<Loc> {
        Some(Loc {
            off: self.u64()?,
            len: self.u32()?,
        })
    }
}

impl Index {
    /// Appends the snapshot of this index to `out` (sorting the listing order first if a
    /// change invalidated it).
    pub fn encode(&mut self, out: &mut Vec<u8>) {
        self.materialize();
        self.ensure_order();
        let base = out.len();
        let mut slot_at = Vec::with_capacity(self.slots.len());
        put_u32(out, self.slots.len() as u32);
        fn id_of(s: &Slot) -> Option<&str> {
            s.keys.as_ref().map(|k| k.id.as_str())
        }
        // Placeholders have no keys: their id comes from `by_id`.
        let mut placeholder_ids: Vec<Option<&str>> = vec![None; self.slots.len()];
        for (id, &s) in &self.by_id {
            if self.slots[s as usize].keys.is_none() {
                placeholder_ids[s as usize] = Some(id);
            }
        }
        let mut ids = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            slot_at.push((out.len() - base) as u64);
            let id = id_of(slot).or(placeholder_ids[i]).unwrap_or("");
            ids.push(id);
            put_str(out, id);
            match &slot.keys {
                None => out.push(0),
                Some(k) => {
                    out.push(1);
                    for s in [&k.env, &k.service, &k.owner, &k.category, &k.due_date] {
                        put_str(out, s);
                    }
                    out.push(priority_ix(k.priority));
                    out.push(status_ix(k.status));
                }
            }
            put_u64(out, slot.line.off);
            put_u32(out, slot.line.len);
            put_u32(out, slot.ev_head);
            put_u32(out, slot.ev_tail);
        }
        let events_at = (out.len() - base) as u64;
        put_u32(out, self.events.len() as u32);
        for ev in &self.events {
            put_u64(out, ev.line.off);
            put_u32(out, ev.line.len);
            put_u32(out, ev.next);
        }
        let mut dedupe_at = Vec::with_capacity(self.by_dedupe.len());
        put_u32(out, self.by_dedupe.len() as u32);
        for (key, &s) in &self.by_dedupe {
            dedupe_at.push((key.as_str(), (out.len() - base) as u64));
            put_str(out, key);
            put_u32(out, s);
        }
        put_u32(out, self.order.sorted.len() as u32);
        for &s in &self.order.sorted {
            put_u32(out, s);
        }
        // The lookup tables of a lazy open (`lazy.rs`): where each slot starts, the slots by
        // id, the dedupe entries by key; then the footer that locates them.
        let tables_at = (out.len() - base) as u64;
        put_u32(out, self.slots.len() as u32);
        for at in slot_at {
            put_u64(out, at);
        }
        // Both in hash order (`table_order`): sorting 100k strings that share long prefixes
        // was most of a checkpoint's time inside the guest, where `memcmp` is a byte loop.
        let mut by_id: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .map(|(s, id)| (hash64(id.as_bytes()), s as u32))
            .collect();
        by_id.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| ids[a.1 as usize].cmp(ids[b.1 as usize]))
        });
        for (hash, s) in by_id {
            put_u64(out, hash);
            put_u32(out, s);
        }
        let mut dedupe_at: Vec<(u64, &str, u64)> = dedupe_at
            .into_iter()
            .map(|(key, at)| (hash64(key.as_bytes()), key, at))
            .collect();
        dedupe_at.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        put_u32(out, dedupe_at.len() as u32);
        for (hash, _, at) in dedupe_at {
            put_u64(out, hash);
            put_u64(out, at);
        }
        put_u64(out, events_at);
        put_u64(out, tables_at);
        put_u64(out, self.items as u64);
        put_u32(out, self.slots.len() as u32);
        put_u32(out, self.events.len() as u32);
        put_u32(out, self.by_dedupe.len() as u32);
    }

    /// The index a snapshot holds, if `r` reads as a consistent one (see the module docs).
    pub fn decode(r: &mut Reader<'_>) -> Option<Index> {
        let mut ix = Index::default();
        let n_slots = r.u32()?;
        if n_slots == NIL {
            return None;
        }
        let cap = (n_slots as usize).min(r.bytes.len() / 20);
        ix.slots.reserve(cap);
        ix.by_id.reserve(cap);
        let mut heads = Vec::with_capacity(cap);
        for s in 0..n_slots {
            let id = r.string()?;
            let keys = match r.u8()? {
                0 => None,
                1 => {
                    let env = r.string()?;
                    let service = r.string()?;
                    let owner = r.string()?;
                    let category = r.string()?;
                    let due_date = r.string()?;
                    let priority = *PRIORITIES.get(r.u8()? as usize)?;
                    let status = *STATUSES.get(r.u8()? as usize)?;
                    Some(ItemKeys {
                        id: id.clone(),
                        env,
                        service,
                        owner,
                        category,
                        priority,
                        status,
                        due_date,
                    })
                }
                _ => return None,
            };
            let line = r.loc()?;
            let (ev_head, ev_tail) = (r.u32()?, r.u32()?);
            heads.push((ev_head, ev_tail));
            ix.cols.push();
            if let Some(k) = &keys {
                ix.cols.set(s as usize, k);
                ix.items += 1;
            }
            if ix.by_id.insert(id, s).is_some() {
                return None;
            }
            ix.slots.push(Slot {
                keys,
                line,
                ev_head,
                ev_tail,
            });
        }
        let n_events = r.u32()?;
        if n_events == NIL {
            return None;
        }
        ix.events
            .reserve((n_events as usize).min(r.bytes.len() / 16));
        for e in 0..n_events {
            let line = r.loc()?;
            let next = r.u32()?;
            if next != NIL && (next <= e || next >= n_events) {
                return None;
            }
            ix.events.push(EvLoc { line, next });
        }
        for (head, tail) in heads {
            let ok = |e: u32| e == NIL || e < n_events;
            if !ok(head) || !ok(tail) || (head == NIL) != (tail == NIL) {
                return None;
            }
        }
        let n_dedupe = r.u32()?;
        ix.by_dedupe
            .reserve((n_dedupe as usize).min(r.bytes.len() / 8));
        for _ in 0..n_dedupe {
            let key = r.string()?;
            let s = r.u32()?;
            if s >= n_slots {
                return None;
            }
            ix.by_dedupe.insert(key, s);
        }
        let n_sorted = r.u32()? as usize;
        if n_sorted != ix.items {
            return None;
        }
        let mut sorted = Vec::with_capacity(n_sorted);
        let mut rank = vec![NIL; ix.slots.len()];
        for p in 0..n_sorted {
            let s = r.u32()?;
            let slot = ix.slots.get(s as usize)?;
            if slot.keys.is_none() || rank[s as usize] != NIL {
                return None;
            }
            rank[s as usize] = p as u32;
            sorted.push(s);
        }
        ix.order = Order {
            sorted,
            rank,
            rank_dirty: false,
            valid: true,
            moves: 0,
        };
        // The lazy open's tables (checked where they are used) and the footer.
        if r.u32()? != n_slots {
            return None;
        }
        r.take(n_slots as usize * (8 + ID_ENTRY))?;
        let n_dedupe_at = r.u32()?;
        if n_dedupe_at != n_dedupe {
            return None;
        }
        r.take(n_dedupe as usize * DEDUPE_ENTRY)?;
        r.take(FOOTER)?;
        Some(ix)
    }
}
