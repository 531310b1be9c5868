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

use backlog_core::list::{ItemKeys, ListQuery, compare};
use backlog_core::model::{Priority, Status};

use super::model::{Lazy, Loc, NIL, Op};
use super::snapshot::{FOOTER, Reader, table_order};
use crate::filter::{PRIORITIES, STATUSES, template as blank_keys};

/// One snapshot slot, read in place (its id not checked as UTF-8 yet).
struct SlotView<'a> {
    id: &'a [u8],
    keys: Option<KeysView<'a>>,
    line: Loc,
    head: u32,
}

/// An item's keys, read in place; the strings not checked as UTF-8 yet (a listing checks
/// only those its filters read).
struct KeysView<'a> {
    env: &'a [u8],
    service: &'a [u8],
    owner: &'a [u8],
    category: &'a [u8],
    due_date: &'a [u8],
    priority: Priority,
    status: Status,
}

/// Which key strings a query's filters read (the rest are never looked at by
/// [`ListQuery::matches`]: an absent filter passes without reading its field).
/// Destructured exhaustively: a new filter field is a build error here.
#[derive(Clone, Copy)]
struct Reads {
    env: bool,
    service: bool,
    owner: bool,
    category: bool,
    due_date: bool,
}

impl Reads {
    fn of(query: &ListQuery) -> Reads {
        let ListQuery {
            env,
            status: _,
            priority: _,
            service,
            owner,
            category,
            due_before,
            overdue,
            limit: _,
            offset: _,
        } = query;
        Reads {
            env: env.is_some(),
            service: service.is_some(),
            owner: owner.is_some(),
            category: category.is_some(),
            due_date: due_before.is_some() || overdue.is_some(),
        }
    }
}

impl KeysView<'_> {
    /// Copies into `k` the fields `reads` names, plus priority and status, reusing its
    /// strings' buffers; `None` if one of them is not UTF-8.
    fn fill(&self, reads: Reads, k: &mut ItemKeys) -> Option<()> {
        for (on, to, from) in [
            (reads.env, &mut k.env, self.env),
            (reads.service, &mut k.service, self.service),
            (reads.owner, &mut k.owner, self.owner),
            (reads.category, &mut k.category, self.category),
            (reads.due_date, &mut k.due_date, self.due_date),
        ] {
            if on {
                to.clear();
                to.push_str(std::str::from_utf8(from).ok()?);
            }
        }
        k.priority = self.priority;
        k.status = self.status;
        Some(())
    }

    /// All the keys, owned.
    fn to_keys(&self, id: &[u8]) -> Option<ItemKeys> {
        let s = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        Some(ItemKeys {
            id: s(id)?,
            env: s(self.env)?,
            service: s(self.service)?,
            owner: s(self.owner)?,
            category: s(self.category)?,
            due_date: s(self.due_date)?,
            priority: self.priority,
            status: self.status,
        })
    }
}

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

/// Reads one whole slot at `r` (as `snapshot.rs` encodes it).
fn read_slot<'a>(r: &mut Reader<'a>) -> Option<SlotView<'a>> {
    let id = r.raw_str()?;
    let keys = match r.u8()? {
        0 => None,
        1 => Some(KeysView {
            env: r.raw_str()?,
            service: r.raw_str()?,
            owner: r.raw_str()?,
            category: r.raw_str()?,
            due_date: r.raw_str()?,
            priority: *PRIORITIES.get(r.u8()? as usize)?,
            status: *STATUSES.get(r.u8()? as usize)?,
        }),
        _ => return None,
    };
    let line = r.loc()?;
    let head = r.u32()?;
    r.u32()?; // the last event
    Some(SlotView {
        id,
        keys,
        line,
        head,
    })
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
        // The listing order: `items` slot numbers (and their count) just before the tables.
        let order_at = tables_at.checked_sub(4 * items)?;
        if u32_at(body, order_at.checked_sub(4)?)? as usize != items || order_at < events_at {
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
            order_at,
            items,
            lines: HashMap::new(),
            dedupe: HashMap::new(),
            events: HashMap::new(),
            log: Vec::new(),
            new_items: 0,
            new_events: 0,
            lists: 0,
        })
    }

    /// The snapshot's bytes (for the full decode).
    pub(super) fn snapshot(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Slot `s` of the snapshot: its id, whether it has an item, its line, its first event.
    fn slot(&self, s: u32) -> Option<(&str, bool, Loc, u32)> {
        let v = self.view(s)?;
        let id = std::str::from_utf8(v.id).ok()?;
        Some((id, v.keys.is_some(), v.line, v.head))
    }

    /// Slot `s` of the snapshot read in place, with its keys (`None`: a placeholder).
    fn view(&self, s: u32) -> Option<SlotView<'_>> {
        if s >= self.n_slots {
            return None;
        }
        let at = u64_at(self.snapshot(), self.slot_at + 8 * s as usize)?;
        read_slot(&mut Reader {
            bytes: self.snapshot().get(usize::try_from(at).ok()?..)?,
        })
    }

    /// The snapshot's slot of `id`, by binary search over the slots in [`table_order`].
    fn find(&self, id: &str) -> Option<u32> {
        let want = table_order(id);
        let (mut lo, mut hi) = (0u32, self.n_slots);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let s = u32_at(self.snapshot(), self.by_id_at + 4 * mid as usize)?;
            match table_order(self.slot(s)?.0).cmp(&want) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(s),
            }
        }
        None
    }

    /// The snapshot's slot last seen with `key`.
    fn find_dedupe(&self, key: &str) -> Option<u32> {
        let want = table_order(key);
        let (mut lo, mut hi) = (0u32, self.n_dedupe);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = u64_at(self.snapshot(), self.dedupe_at + 8 * mid as usize)?;
            let mut r = Reader {
                bytes: self.snapshot().get(usize::try_from(at).ok()?..)?,
            };
            match table_order(r.str()?).cmp(&want) {
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

    /// The page of `query` and the number of matches, as `Index::list` answers them, read
    /// from the snapshot without decoding it, merged with the overlay's items. Two
    /// sequential passes (random reads into a 19 MB snapshot in listing order cost a cache
    /// miss or two per item, 20 ms at 100k): the slots in file order, marking the hits the
    /// overlay does not supersede; then the listing order up to the page's end, keeping the
    /// marked slots. `None` if a slot does not read or the order names a slot twice.
    pub(super) fn list(
        &self,
        query: &ListQuery,
        today: &str,
    ) -> Option<(Vec<(String, Loc)>, usize)> {
        let end = query.offset.saturating_add(query.limit);
        // The overlay's items by their latest keys: they replace their snapshot slots.
        let mut latest: HashMap<&[u8], &ItemKeys> = HashMap::new();
        for op in &self.log {
            if let Op::Item { keys, .. } = op {
                latest.insert(keys.id.as_bytes(), keys);
            }
        }
        let mut fresh: Vec<(&ItemKeys, Loc)> = latest
            .values()
            .filter(|k| query.matches(k, today))
            .filter_map(|&k| Some((k, *self.lines.get(&k.id)?)))
            .collect();
        fresh.sort_unstable_by(|a, b| compare(a.0, b.0));
        let mut total = fresh.len();
        let words = (self.n_slots as usize).div_ceil(64);
        let bit = |s: u32| (s as usize / 64, 1u64 << (s % 64));
        // The slots in file order.
        let reads = Reads::of(query);
        let mut hit = vec![0u64; words];
        let mut k = blank_keys();
        let mut r = Reader {
            bytes: self.snapshot().get(4..)?,
        };
        for s in 0..self.n_slots {
            let v = read_slot(&mut r)?;
            let Some(keys) = &v.keys else { continue };
            keys.fill(reads, &mut k)?;
            if query.matches(&k, today) && !latest.contains_key(v.id) {
                total += 1;
                let (w, b) = bit(s);
                hit[w] |= b;
            }
        }
        // The listing order (sorted by the encoder, as `decode` trusts too), to the page's end.
        let mut hits: Vec<(ItemKeys, Loc)> = Vec::new();
        let mut seen = vec![0u64; words];
        for p in 0..self.items {
            if hits.len() >= end {
                break;
            }
            let s = u32_at(self.snapshot(), self.order_at + 4 * p)?;
            let (w, b) = bit(s);
            let once = seen.get_mut(w)?;
            if *once & b != 0 {
                return None;
            }
            *once |= b;
            if hit[w] & b != 0 {
                let v = self.view(s)?;
                hits.push((v.keys.as_ref()?.to_keys(v.id)?, v.line));
            }
        }
        // Merge the two ordered runs up to the page's end.
        let mut page = Vec::with_capacity(query.limit.min(total));
        let (mut a, mut b) = (hits.iter().peekable(), fresh.iter().peekable());
        for i in 0..end.min(total) {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => compare(&x.0, y.0).is_lt(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let (keys, line) = if take_a {
                a.next().map(|(k, l)| (k, *l))?
            } else {
                b.next().map(|(k, l)| (*k, *l))?
            };
            if i >= query.offset {
                page.push((keys.id.clone(), line));
            }
        }
        Some((page, total))
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
