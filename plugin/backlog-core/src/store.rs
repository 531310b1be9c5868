//! The storage contract the actions run against. Implementations live outside this crate
//! (`backlog-store`: JSONL, null; tests: [`crate::mem::MemStore`]); this crate does no I/O.

use crate::list::ListQuery;
use crate::model::{Event, Item};

/// A storage failure, as the actions report it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Storage cannot serve this call (null store writes, database down).
    #[error("{0}")]
    Unavailable(String),
    /// The sandbox refused an operation (for example a write under a read-only grant).
    #[error("{0}")]
    Forbidden(String),
    /// Anything else (I/O error, corrupt state that cannot be skipped).
    #[error("{0}")]
    Internal(String),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    pub total: usize,
}

/// What every backlog store offers. Reads see the latest durable state; `write` is durable
/// (for JSONL: both files fdatasync'd) before it returns `Ok`.
pub trait BacklogStore {
    /// `jsonl`, `memory`, `null`, `postgres`.
    fn backend(&self) -> &'static str;
    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError>;
    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError>;
    /// Items matching `query`, sorted by (priority, due_date, id), paged by its limit/offset;
    /// `total` counts every match. `today` is `YYYY-MM-DD` (UTC) for the overdue filter.
    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError>;
    /// The first `limit` events of an item, oldest first (in append order).
    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Persists a new version of `item` (if any) and `events`, atomically as far as the
    /// backend allows, durably before returning.
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError>;
}
