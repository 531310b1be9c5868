//! The index's data (a leaf: `index.rs` keeps it current, `snapshot.rs` saves and loads it).

use std::collections::HashMap;

use backlog_core::list::ItemKeys;

use crate::counts::Counts;
use crate::filter::Columns;

/// "No event" in the event chains.
pub(super) const NIL: u32 = u32::MAX;

/// Where a line is: byte offset and length (including its `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub off: u64,
    pub len: u32,
}

/// One item (or a placeholder holding events of an item not seen yet).
pub(super) struct Slot {
    /// `None` for a placeholder.
    pub(super) keys: Option<ItemKeys>,
    pub(super) line: Loc,
    /// First and last event of this item in `Index::events` (a singly linked chain).
    pub(super) ev_head: u32,
    pub(super) ev_tail: u32,
}

/// One event line, linked to the next event of the same item.
pub(super) struct EvLoc {
    pub(super) line: Loc,
    pub(super) next: u32,
}

/// The index is full (more than 2^32 - 2 items or events).
#[derive(Debug)]
pub(crate) struct Full;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Index {
    pub(super) slots: Vec<Slot>,
    pub(super) by_id: HashMap<String, u32>,
    /// `dedupe_key` → slot. Not cleaned when an item changes its key: a hit is confirmed
    /// against the item actually read (see `JsonlStore::find_by_dedupe_key`).
    pub(super) by_dedupe: HashMap<String, u32>,
    pub(super) events: Vec<EvLoc>,
    pub(super) items: usize,
    pub(super) order: Order,
    /// The key fields of every slot as numbers, for the filter pass.
    pub(super) cols: Columns,
    /// The dashboard's numbers, kept with every change of an item's keys once the first
    /// dashboard built them (`None` until then: a cold instance that only reads items does
    /// not pay for them).
    pub(super) counts: Option<Counts>,
    /// Opened from a checkpoint and not decoded yet (`lazy.rs`): while set, the fields above
    /// are empty and every change goes to its overlay.
    pub(super) lazy: Option<Box<Lazy>>,
}

/// The listing order of all items.
#[derive(Default)]
pub(super) struct Order {
    /// Slots with keys, sorted by [`list::compare`]. Meaningful only when `valid`.
    pub(super) sorted: Vec<u32>,
    /// Slot → its position in `sorted` (`NIL` for placeholders).
    pub(super) rank: Vec<u32>,
    /// `rank` lags `sorted` (new slots were inserted): rebuilt, O(n), before it is read.
    /// Inserting only marks it, so a run of creates (generation) costs one memmove each,
    /// not a rank pass each.
    pub(super) rank_dirty: bool,
    pub(super) valid: bool,
    /// Incremental moves since the last (re)build; past [`MAX_MOVES`] a re-sort is cheaper.
    pub(super) moves: usize,
}

impl Order {
    /// Makes `rank` agree with `sorted` again.
    pub(super) fn refresh_rank(&mut self) {
        for (p, &s) in self.sorted.iter().enumerate() {
            if let Some(r) = self.rank.get_mut(s as usize) {
                *r = p as u32;
            }
        }
        self.rank_dirty = false;
    }
}

/// A change seen after the checkpoint, in file order (replayed by `materialize`).
pub(crate) enum Op {
    Item {
        keys: ItemKeys,
        dedupe_key: String,
        line: Loc,
    },
    Event {
        item_id: String,
        line: Loc,
    },
}

/// A snapshot opened without decoding it, and what came after it (`lazy.rs`).
pub(crate) struct Lazy {
    /// The snapshot's bytes, read as lookups reach them (`pages.rs`).
    pub(super) pages: super::pages::Pages,
    pub(super) n_slots: u32,
    pub(super) n_events: u32,
    pub(super) n_dedupe: u32,
    /// Offsets (in the snapshot) of the event table, the slot offsets, the slots by id and
    /// the dedupe offsets.
    pub(super) events_at: usize,
    pub(super) slot_at: usize,
    pub(super) by_id_at: usize,
    pub(super) dedupe_at: usize,
    /// Offset of the listing order (`items` slot numbers).
    pub(super) order_at: usize,
    /// Items the snapshot holds.
    pub(super) items: usize,
    /// The overlay: latest line per id, id per dedupe key, events per id, and every change
    /// in order.
    pub(super) lines: HashMap<String, Loc>,
    pub(super) dedupe: HashMap<String, String>,
    pub(super) events: HashMap<String, Vec<Loc>>,
    pub(super) log: Vec<Op>,
    pub(super) new_events: usize,
    /// Listings answered from the snapshot so far.
    pub(super) lists: u32,
}
