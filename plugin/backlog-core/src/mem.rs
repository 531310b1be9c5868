//! `MemStore`: a pure in-memory [`BacklogStore`], the reference behaviour for the real stores
//! and the store of unit tests (backend name `memory`).
//!
//! Owns nothing durable: it lives as long as the value. Like Postgres it enforces what the
//! schema would (unique `dedupe_key`, events need their item) and applies a write all or
//! nothing.

use std::collections::HashMap;

use crate::list::{ItemKeys, ListQuery, select};
use crate::model::{Event, Item};
use crate::store::{self, BacklogStore, Page, StoreError};

/// An in-memory store.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    items: HashMap<String, Item>,
    by_key: HashMap<String, String>,
    events: HashMap<String, Vec<Event>>,
    writes: usize,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of successful `write` calls plus non-dry `cleanup` runs that deleted
    /// something, so far (tests use it to prove "no write").
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the store holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every item, in no particular order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// Number of events stored for `item_id` (0 once the item is deleted).
    pub fn event_count(&self, item_id: &str) -> usize {
        self.events.get(item_id).map_or(0, Vec::len)
    }

    /// Total number of events stored.
    pub fn total_events(&self) -> usize {
        self.events.values().map(Vec::len).sum()
    }

    /// Puts `item` in as is, replacing any item with its id and keeping that item's events
    /// (writes no event, checks nothing). For tests that need states no action produces, such
    /// as legacy timestamps.
    pub fn insert_raw(&mut self, item: Item) {
        if let Some(old) = self.items.get(&item.id) {
            self.by_key.remove(&old.dedupe_key);
        }
        self.by_key.insert(item.dedupe_key.clone(), item.id.clone());
        self.items.insert(item.id.clone(), item);
    }

    /// Removes an item and its events; returns the item.
    pub fn remove(&mut self, id: &str) -> Option<Item> {
        let item = self.items.remove(id)?;
        self.by_key.remove(&item.dedupe_key);
        self.events.remove(id);
        Some(item)
    }
}

impl BacklogStore for MemStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        Ok(self.items.get(id).cloned())
    }

    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .by_key
            .get(key)
            .and_then(|id| self.items.get(id))
            .cloned())
    }

    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        let keys: Vec<ItemKeys> = self.items.values().map(ItemKeys::of).collect();
        let (page, total) = select(query, keys.iter(), today);
        let items = page
            .into_iter()
            .filter_map(|k| self.items.get(&k.id).cloned())
            .collect();
        Ok(Page { items, total })
    }

    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .events
            .get(item_id)
            .map(|ev| ev.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        Ok(self
            .items
            .values()
            .filter(|i| env.is_none_or(|e| i.env == e))
            .map(ItemKeys::of)
            .collect())
    }

    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        let cutoff = store::parse_cutoff(cutoff)?;
        let expired: Vec<String> = self
            .items
            .values()
            .filter(|i| store::is_expired(i.status, &i.updated_at, cutoff))
            .map(|i| i.id.clone())
            .collect();
        if !dry_run && !expired.is_empty() {
            for id in &expired {
                self.remove(id);
            }
            self.writes += 1;
        }
        Ok(expired.len())
    }

    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        // Check everything first: a write applies whole or not at all.
        if let Some(item) = item
            && let Some(holder) = self.by_key.get(&item.dedupe_key)
            && *holder != item.id
        {
            return Err(StoreError::Internal(format!(
                "dedupe_key {:?} already belongs to item {holder}",
                item.dedupe_key
            )));
        }
        for ev in events {
            let known =
                self.items.contains_key(&ev.item_id) || item.is_some_and(|i| i.id == ev.item_id);
            if !known {
                return Err(StoreError::Internal(format!(
                    "event {} refers to unknown item {}",
                    ev.id, ev.item_id
                )));
            }
        }
        if let Some(item) = item {
            if let Some(old) = self.items.get(&item.id)
                && old.dedupe_key != item.dedupe_key
            {
                self.by_key.remove(&old.dedupe_key);
            }
            self.by_key.insert(item.dedupe_key.clone(), item.id.clone());
            self.items.insert(item.id.clone(), item.clone());
        }
        for ev in events {
            self.events
                .entry(ev.item_id.clone())
                .or_default()
                .push(ev.clone());
        }
        self.writes += 1;
        Ok(())
    }
}
