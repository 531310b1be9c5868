//! An index opened from a checkpoint without decoding it: lookups by id and by dedupe key and
//! an item's events are answered by searching the snapshot's lookup tables in place
//! (`snapshot.rs`), and the lines after the checkpoint go to a small overlay. A listing is
//! answered from the snapshot's bytes in two passes; anything else (the dashboard, cleanup,
//! a new checkpoint, a ninth listing) decodes the snapshot once and replays the overlay
//! (`Index::materialize`), which is what opening did before.
//!
//! Why: a new instance or a new process that answers one `get` or makes one `upsert` would
//! otherwise decode every slot (an allocation per string, two hash inserts per item), which
//! at 100k items is most of a cold call. Nor does it read the snapshot whole: its bytes come
//! through [`Pages`] (`pages.rs`), a verified block at a time, so a lookup reads the few
//! blocks it touches; a listing or a decode reads the rest at once.
//!
//! Every read is bounds-checked and answers `None` on bytes that are not what the encoder
//! writes, never a panic or a loop: event chains must move forward, slot numbers must be in
//! range.

use std::collections::HashMap;

use backlog_core::list::{ItemKeys, ListQuery, compare};
use backlog_core::model::{Priority, Status};

use super::model::{Lazy, Loc, NIL, Op};
use super::pages::Pages;
use super::snapshot::{DEDUPE_ENTRY, FOOTER, ID_ENTRY, Reader, table_order};
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

/// The first of `n` sorted keys (`key(i)`) that is not below `want`. The tables are in hash
/// order and hashes are uniform, so the search starts where `want` would sit and gallops out
/// from there: a lookup touches one or two blocks of the table, not one per halving.
fn lower_bound(n: u32, want: u64, key: impl Fn(u32) -> Option<u64>) -> Option<u32> {
    if n == 0 {
        return Some(0);
    }
    let guess = ((u128::from(want) * u128::from(n)) >> 64) as u32;
    // Invariant: keys before `lo` are below `want`, keys from `hi` on are not.
    let (mut lo, mut hi);
    if key(guess)? < want {
        (lo, hi) = (guess + 1, n);
        let mut step = 1u32;
        while let Some(probe) = lo.checked_add(step - 1).filter(|&p| p < n) {
            if key(probe)? < want {
                lo = probe + 1;
                step = step.saturating_mul(2);
            } else {
                hi = probe;
                break;
            }
        }
    } else {
        (lo, hi) = (0, guess);
        let mut step = 1u32;
        while let Some(probe) = hi.checked_sub(step) {
            if key(probe)? < want {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step = step.saturating_mul(2);
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if key(mid)? < want {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// `n` entries of `width` bytes from `at`, ending at or before `end`: the end.
fn table(at: usize, n: u32, width: usize, end: usize) -> Option<usize> {
    let stop = at.checked_add((n as usize).checked_mul(width)?)?;
    (stop <= end).then_some(stop)
}

impl Lazy {
    /// Opens the snapshot in `pages`: reads its footer and checks that the tables it
    /// locates fit exactly (nothing else is read until a lookup needs it).
    pub(crate) fn open(pages: Pages) -> Option<Lazy> {
        let end = pages.len().checked_sub(FOOTER)?;
        let footer = pages.with(end, FOOTER, <[u8]>::to_vec)?;
        let at = |i: usize| usize::try_from(u64_at(&footer, i)?).ok();
        let (events_at, tables_at, items) = (at(0)?, at(8)?, at(16)?);
        let (n_slots, n_events, n_dedupe) = (
            u32_at(&footer, 24)?,
            u32_at(&footer, 28)?,
            u32_at(&footer, 32)?,
        );
        if n_slots == NIL || n_events == NIL || items > n_slots as usize {
            return None;
        }
        table(events_at.checked_add(4)?, n_events, 16, tables_at)?;
        let slot_at = tables_at.checked_add(4)?;
        let by_id_at = table(slot_at, n_slots, 8, end)?;
        let dedupe_at = table(by_id_at, n_slots, ID_ENTRY, end)?.checked_add(4)?;
        // The listing order: `items` slot numbers (and their count) just before the tables.
        let order_at = tables_at.checked_sub(4 * items)?;
        if table(dedupe_at, n_dedupe, DEDUPE_ENTRY, end)? != end || order_at < events_at + 4 {
            return None;
        }
        Some(Lazy {
            pages,
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
            new_events: 0,
            lists: 0,
        })
    }

    /// Whether a block of the snapshot failed its check (`pages.rs`): answers since may be
    /// wrong, and the store starts over from the files.
    pub(super) fn damaged(&self) -> bool {
        self.pages.damaged()
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.pages.with(at, 4, |b| u32_at(b, 0))?
    }

    fn u64(&self, at: usize) -> Option<u64> {
        self.pages.with(at, 8, |b| u64_at(b, 0))?
    }

    /// `f` of slot `s` read in place (its bytes run to the next slot's start).
    fn view<R>(&self, s: u32, f: impl FnOnce(SlotView<'_>) -> Option<R>) -> Option<R> {
        if s >= self.n_slots {
            return None;
        }
        let at = usize::try_from(self.u64(self.slot_at + 8 * s as usize)?).ok()?;
        let end = if s + 1 < self.n_slots {
            usize::try_from(self.u64(self.slot_at + 8 * (s as usize + 1))?).ok()?
        } else {
            self.events_at
        };
        self.pages.with(at, end.checked_sub(at)?, |b| {
            f(read_slot(&mut Reader { bytes: b })?)
        })?
    }

    /// Slot `s` of the snapshot: whether it has an item, its line, its first event.
    fn slot(&self, s: u32) -> Option<(bool, Loc, u32)> {
        self.view(s, |v| Some((v.keys.is_some(), v.line, v.head)))
    }

    /// The id of slot `s`.
    fn slot_id(&self, s: u32) -> Option<String> {
        self.view(s, |v| std::str::from_utf8(v.id).ok().map(str::to_owned))
    }

    /// The snapshot's slot of `id`: the entries of its hash in the table by id
    /// ([`table_order`]), found by [`lower_bound`].
    fn find(&self, id: &str) -> Option<u32> {
        let (hash, _) = table_order(id);
        let entry = |i: u32| self.by_id_at + ID_ENTRY * i as usize;
        let mut i = lower_bound(self.n_slots, hash, |i| self.u64(entry(i)))?;
        while i < self.n_slots && self.u64(entry(i))? == hash {
            let s = self.u32(entry(i) + 8)?;
            if self.view(s, |v| Some(v.id == id.as_bytes()))? {
                return Some(s);
            }
            i += 1;
        }
        None
    }

    /// The snapshot's slot last seen with `key`.
    fn find_dedupe(&self, key: &str) -> Option<u32> {
        let (hash, _) = table_order(key);
        let entry = |i: u32| self.dedupe_at + DEDUPE_ENTRY * i as usize;
        let mut i = lower_bound(self.n_dedupe, hash, |i| self.u64(entry(i)))?;
        while i < self.n_dedupe && self.u64(entry(i))? == hash {
            let at = usize::try_from(self.u64(entry(i) + 8)?).ok()?;
            let n = self.u32(at)? as usize;
            if self.pages.with(at + 4, n, |b| b == key.as_bytes())? {
                return self.u32(at + 4 + n);
            }
            i += 1;
        }
        None
    }

    /// The latest line of item `id`, if the item exists.
    pub(super) fn item(&self, id: &str) -> Option<Loc> {
        if let Some(&line) = self.lines.get(id) {
            return Some(line);
        }
        let (has_item, line, _) = self.slot(self.find(id)?)?;
        has_item.then_some(line)
    }

    /// The latest line of the item last seen with `key` (the caller checks the key).
    pub(super) fn by_dedupe(&self, key: &str) -> Option<Loc> {
        match self.dedupe.get(key) {
            Some(id) => self.item(id),
            None => {
                let id = self.slot_id(self.find_dedupe(key)?)?;
                self.item(&id)
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
        if let Some((_, _, head)) = self.find(id).and_then(|s| self.slot(s)) {
            let mut e = head;
            while e != NIL && e < self.n_events && out.len() < limit {
                let at = self.events_at + 4 + 16 * e as usize;
                let entry = self.pages.with(at, 16, |b| {
                    Some((u64_at(b, 0)?, u32_at(b, 8)?, u32_at(b, 12)?))
                });
                let Some(Some((off, len, next))) = entry else {
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
        self.pages
            .whole_with(|snap| self.list_in(snap, query, today))?
    }

    /// [`Lazy::list`] over the whole snapshot `snap`.
    fn list_in(
        &self,
        snap: &[u8],
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
            bytes: snap.get(4..)?,
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
            let s = u32_at(snap, self.order_at + 4 * p)?;
            let (w, b) = bit(s);
            let once = seen.get_mut(w)?;
            if *once & b != 0 {
                return None;
            }
            *once |= b;
            if hit[w] & b != 0 {
                let at = usize::try_from(u64_at(snap, self.slot_at + 8 * s as usize)?).ok()?;
                let v = read_slot(&mut Reader {
                    bytes: snap.get(at..)?,
                })?;
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

    /// An item line after the snapshot. Whether the item is new to the snapshot is not looked
    /// up here (a lookup per line read a few blocks each: 400 lines after a checkpoint cost a
    /// cold `list` 15 ms at 100k items) but when the count is asked for ([`Lazy::item_count`]).
    pub(super) fn put_item(&mut self, keys: ItemKeys, dedupe_key: &str, line: Loc) {
        self.lines.insert(keys.id.clone(), line);
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

    /// Items: the snapshot's, plus the overlay's that the snapshot has no item for.
    pub(super) fn item_count(&self) -> usize {
        let new = self.lines.keys().filter(|id| {
            !self
                .find(id)
                .and_then(|s| self.slot(s))
                .is_some_and(|(has_item, _, _)| has_item)
        });
        self.items + new.count()
    }

    pub(super) fn event_count(&self) -> usize {
        self.n_events as usize + self.new_events
    }

    pub(super) fn slot_count(&self) -> usize {
        self.n_slots as usize + self.lines.len() + self.events.len()
    }
}
