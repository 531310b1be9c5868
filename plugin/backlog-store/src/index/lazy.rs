//! An index opened from a checkpoint without decoding it: lookups by id and by dedupe key and
//! an item's events are answered by binary search in the snapshot's bytes (its lookup tables,
//! `snapshot.rs`), and the lines after the checkpoint go to a small overlay. Anything else
//! (a listing, the dashboard, cleanup, a new checkpoint) decodes the snapshot once and
//! replays the overlay (`Index::materialize`), which is what opening did before.
//!
//! Why: a new instance or a new process that answers one `get` or makes one `upsert` would
//! otherwise decode every slot (an allocation per string, two hash inserts per item), which
//! at 100k items is most of a cold call. The bytes are still read and hashed whole
//! (`checkpoint.rs` trusts nothing it has not hashed); only the decoding is skipped.
//!
//! Every read is bounds-checked and answers `None` on bytes that are not what the encoder
//! writes, never a panic or a loop: event chains must move forward, slot numbers must be in
//! range.

use std::cmp::Ordering;
use std::collections::HashMap;

use backlog_core::list::ItemKeys;

use super::model::{Lazy, Loc, NIL, Op};
use super::snapshot::{FOOTER, Reader};

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// `n` entries of `width` bytes from `at`, ending at or before `end`: the end.
fn table(at: usize, n: u32, width: usize, end: usize) -> Option<usize> {
    let stop = at.checked_add((n as usize).checked_mul(width)?)?;
    (stop <= end).then_some(stop)
}

impl Lazy {
    /// Opens the snapshot at `bytes[start..]` (already hashed by the caller): reads its
    /// footer and checks that the tables it locates fit exactly.
    pub(crate) fn open(bytes: Vec<u8>, start: usize) -> Option<Lazy> {
        let body = bytes.get(start..)?;
        let end = body.len().checked_sub(FOOTER)?;
        let events_at = usize::try_from(u64_at(body, end)?).ok()?;
        let tables_at = usize::try_from(u64_at(body, end + 8)?).ok()?;
        let items = usize::try_from(u64_at(body, end + 16)?).ok()?;
        let n_slots = u32_at(body, 0)?;
        let n_events = u32_at(body, events_at)?;
        table(events_at.checked_add(4)?, n_events, 16, tables_at)?;
        if u32_at(body, tables_at)? != n_slots || n_slots == NIL || n_events == NIL {
            return None;
        }
        let slot_at = tables_at.checked_add(4)?;
        let by_id_at = table(slot_at, n_slots, 8, end)?;
        let n_dedupe_pos = table(by_id_at, n_slots, 4, end)?;
        let n_dedupe = u32_at(body, n_dedupe_pos)?;
        let dedupe_at = n_dedupe_pos + 4;
        if table(dedupe_at, n_dedupe, 8, end)? != end || items > n_slots as usize {
            return None;
        }
        Some(Lazy {
            bytes,
            start,
            n_slots,
            n_events,
            n_dedupe,
            events_at,
            slot_at,
            by_id_at,
            dedupe_at,
            items,
            lines: HashMap::new(),
            dedupe: HashMap::new(),
            events: HashMap::new(),
            log: Vec::new(),
            new_items: 0,
            new_events: 0,
        })
    }

    /// The snapshot's bytes (for the full decode).
    pub(super) fn snapshot(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Slot `s` of the snapshot: its id, whether it has an item, its line, its first event.
    fn slot(&self, s: u32) -> Option<(&str, bool, Loc, u32)> {
        if s >= self.n_slots {
            return None;
        }
        let at = u64_at(self.snapshot(), self.slot_at + 8 * s as usize)?;
        let mut r = Reader {
            bytes: self.snapshot().get(usize::try_from(at).ok()?..)?,
        };
        let id = r.str()?;
        let has_item = match r.u8()? {
            0 => false,
            1 => {
                for _ in 0..5 {
                    r.str()?;
                }
                r.take(2)?;
                true
            }
            _ => return None,
        };
        let line = r.loc()?;
        let head = r.u32()?;
        Some((id, has_item, line, head))
    }

    /// The snapshot's slot of `id`, by binary search over the slots sorted by id.
    fn find(&self, id: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0u32, self.n_slots);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let s = u32_at(self.snapshot(), self.by_id_at + 4 * mid as usize)?;
            match self.slot(s)?.0.cmp(id) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(s),
            }
        }
        None
    }

    /// The snapshot's slot last seen with `key`.
    fn find_dedupe(&self, key: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0u32, self.n_dedupe);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = u64_at(self.snapshot(), self.dedupe_at + 8 * mid as usize)?;
            let mut r = Reader {
                bytes: self.snapshot().get(usize::try_from(at).ok()?..)?,
            };
            match r.str()?.cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return r.u32(),
            }
        }
        None
    }

    /// The latest line of item `id`, if the item exists.
    pub(super) fn item(&self, id: &str) -> Option<Loc> {
        if let Some(&line) = self.lines.get(id) {
            return Some(line);
        }
        let (_, has_item, line, _) = self.slot(self.find(id)?)?;
        has_item.then_some(line)
    }

    /// The latest line of the item last seen with `key` (the caller checks the key).
    pub(super) fn by_dedupe(&self, key: &str) -> Option<Loc> {
        match self.dedupe.get(key) {
            Some(id) => self.item(id),
            None => {
                let id = self.slot(self.find_dedupe(key)?)?.0;
                self.item(id)
            }
        }
    }

    /// The first `limit` event lines of item `id` in append order (the snapshot's, then the
    /// overlay's); none if the item does not exist.
    pub(super) fn events_of(&self, id: &str, limit: usize) -> Vec<Loc> {
        let mut out = Vec::new();
        if self.item(id).is_none() {
            return out;
        }
        if let Some((_, _, _, head)) = self.find(id).and_then(|s| self.slot(s)) {
            let mut e = head;
            while e != NIL && e < self.n_events && out.len() < limit {
                let at = self.events_at + 4 + 16 * e as usize;
                let (Some(off), Some(len), Some(next)) = (
                    u64_at(self.snapshot(), at),
                    u32_at(self.snapshot(), at + 8),
                    u32_at(self.snapshot(), at + 12),
                ) else {
                    break;
                };
                out.push(Loc { off, len });
                if next != NIL && next <= e {
                    break;
                }
                e = next;
            }
        }
        if let Some(more) = self.events.get(id) {
            out.extend(more.iter().take(limit.saturating_sub(out.len())));
        }
        out
    }

    pub(super) fn put_item(&mut self, keys: ItemKeys, dedupe_key: &str, line: Loc) {
        if self.lines.insert(keys.id.clone(), line).is_none()
            && !self
                .find(&keys.id)
                .and_then(|s| self.slot(s))
                .is_some_and(|(_, has_item, _, _)| has_item)
        {
            self.new_items += 1;
        }
        self.dedupe.insert(dedupe_key.to_owned(), keys.id.clone());
        self.log.push(Op::Item {
            keys,
            dedupe_key: dedupe_key.to_owned(),
            line,
        });
    }

    pub(super) fn put_event(&mut self, item_id: &str, line: Loc) {
        self.events
            .entry(item_id.to_owned())
            .or_default()
            .push(line);
        self.new_events += 1;
        self.log.push(Op::Event {
            item_id: item_id.to_owned(),
            line,
        });
    }

    pub(super) fn item_count(&self) -> usize {
        self.items + self.new_items
    }

    pub(super) fn event_count(&self) -> usize {
        self.n_events as usize + self.new_events
    }

    pub(super) fn slot_count(&self) -> usize {
        self.n_slots as usize + self.lines.len() + self.events.len()
    }
}
