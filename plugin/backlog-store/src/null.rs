//! The `null` backend (`docs/storage.md`): storage disabled. Reads answer empty, writes `unavailable`.

use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item};
use backlog_core::store::{BacklogStore, Page, StoreError};

/// The message every write fails with.
pub const NULL_WRITE_MESSAGE: &str = "backlog storage is disabled (BACKLOG_BACKEND=null)";

/// Storage disabled: `get`/`find_by_dedupe_key` → `None`, `list` → empty page, `events` and
/// `keys` → empty, `cleanup` dry run → 0; `write` and a real `cleanup` →
/// [`StoreError::Unavailable`] ([`NULL_WRITE_MESSAGE`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullStore;

impl NullStore {
    /// The name the host logs for this backend.
    pub const LOG_NAME: &'static str = "NullBacklogStore";
}

impl BacklogStore for NullStore {
    fn backend(&self) -> &'static str {
        crate::NULL_BACKEND
    }

    fn get(&mut self, _id: &str) -> Result<Option<Item>, StoreError> {
        Ok(None)
    }

    fn find_by_dedupe_key(&mut self, _key: &str) -> Result<Option<Item>, StoreError> {
        Ok(None)
    }

    fn list(&mut self, _query: &ListQuery, _today: &str) -> Result<Page, StoreError> {
        Ok(Page {
            items: Vec::new(),
            total: 0,
        })
    }

    fn events(&mut self, _item_id: &str, _limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(Vec::new())
    }

    fn write(&mut self, _item: Option<&Item>, _events: &[Event]) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(NULL_WRITE_MESSAGE.to_owned()))
    }

    fn keys(&mut self, _env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        Ok(Vec::new())
    }

    fn cleanup(&mut self, _cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        match dry_run {
            true => Ok(0),
            false => Err(StoreError::Unavailable(NULL_WRITE_MESSAGE.to_owned())),
        }
    }
}
