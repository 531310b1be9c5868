//! The storage contract the actions run against. Implementations live outside this crate
//! (`backlog-store`: JSONL, null; the host's Postgres; tests: [`crate::mem::MemStore`]); this
//! crate does no I/O.
//!
//! Rules every implementation shares are written here once as functions ([`is_expired`]) or
//! as default methods ([`BacklogStore::dashboard`]), so the stores cannot drift apart.

use chrono::{DateTime, Utc};

use crate::dashboard::{self, Dashboard};
use crate::error::Error;
use crate::list::{ItemKeys, ListQuery};
use crate::model::{Event, Item, Status};
use crate::policy::Policy;
use crate::time;

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

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::unavailable(m),
            StoreError::Forbidden(m) => Error::forbidden(m),
            StoreError::Internal(m) => Error::internal(m),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    pub total: usize,
}

/// The cleanup rule, shared by every store: an item goes when its status is terminal (`done`,
/// `canceled`) and its `updated_at` is strictly before `cutoff`.
///
/// Both sides are compared as parsed instants ([`time::parse_ts`]), never as raw text: stored
/// items may still carry the legacy naive form (`2026-03-02T06:20:01.5`, read as UTC) or
/// another offset, whose text does not sort like the fixed-width form. An `updated_at` that
/// does not parse is never expired (a store must not delete what it cannot date). A store that
/// compares in SQL (`updated_at < $cutoff` on a TIMESTAMPTZ column) implements the same rule.
pub fn is_expired(status: Status, updated_at: &str, cutoff: DateTime<Utc>) -> bool {
    status.is_terminal() && time::parse_ts(updated_at).is_some_and(|t| t < cutoff)
}

/// Parses a cleanup cutoff (a fixed-width timestamp from the `cleanup` action) for
/// [`is_expired`]; a store error if it is not a timestamp.
pub fn parse_cutoff(cutoff: &str) -> Result<DateTime<Utc>, StoreError> {
    time::parse_ts(cutoff).ok_or_else(|| {
        StoreError::Internal(format!(
            "cleanup cutoff {cutoff:?} is not a timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ"
        ))
    })
}

/// What every backlog store offers. Reads see the latest durable state; `write` and a
/// non-dry-run `cleanup` are durable (for JSONL: files fsync'd) before they return `Ok`.
pub trait BacklogStore {
    /// `jsonl`, `memory`, `null`, `postgres`.
    fn backend(&self) -> &'static str;
    /// The item `id`, if it exists.
    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError>;
    /// The item holding dedupe key `key`, if any.
    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError>;
    /// Items matching `query`, sorted by (priority, due_date, id), paged by its limit/offset;
    /// `total` counts every match. `today` is `YYYY-MM-DD` (UTC) for the overdue filter.
    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError>;
    /// The first `limit` events of an item, oldest first (in append order).
    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Persists a new version of `item` (if any) and `events`, atomically as far as the
    /// backend allows, durably before returning.
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError>;

    /// Called once at the start of each call (action). A store may check its backing files
    /// once per call instead of once per operation; the default does nothing.
    fn begin_call(&mut self) {}

    /// Called once at the end of each call that began with [`BacklogStore::begin_call`],
    /// whatever its outcome (a call cut short by a trap never gets here). A store may make
    /// the call's writes one unit here; an error fails the call. The default does nothing.
    fn end_call(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether this call is answered by a fallback that may not hold every item (the `auto`
    /// backend on JSONL while Postgres is down): `list` and `dashboard` say so. Default: no.
    fn degraded(&self) -> bool {
        false
    }

    /// Why item `id`, which [`get`](Self::get) did not find, cannot be called missing: `None`
    /// (the default) when the store holds every item, so `id` does not exist (`not_found`);
    /// the reason when this call runs on a fallback that may not hold it (`unavailable`).
    fn absent_reason(&self, id: &str) -> Option<String> {
        let _ = id;
        None
    }

    /// Whether `id`, just drawn at random for a new item, is free. The default looks it up.
    /// A store whose write of that item then fails with a conflict rather than replace
    /// another item (Postgres: a plain INSERT meets the primary key, and the host runs the
    /// call again, with a new id) may answer yes without a lookup.
    fn claim_new_id(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.get(id)?.is_none())
    }

    /// A hint: this call is about to look up these dedupe keys with
    /// [`find_by_dedupe_key`](Self::find_by_dedupe_key). A store with round trips may fetch
    /// them all at once (Postgres: one statement) and answer the lookups from memory; the
    /// default does nothing.
    fn prefetch_dedupe_keys(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }

    /// The [`ItemKeys`] of every live item (the latest version of each id; deleted items
    /// excluded), of environment `env` only when given. Order unspecified. The `null` store
    /// returns an empty list.
    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError>;

    /// Deletes every item for which [`is_expired`]`(status, updated_at, cutoff)` holds,
    /// together with all of its events; returns how many items were deleted (or, with
    /// `dry_run`, would be). `cutoff` is a timestamp in the stored fixed-width form
    /// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, see [`parse_cutoff`]).
    ///
    /// `dry_run` reads only: it changes nothing and writes no file. A real run is all or
    /// nothing as far as the backend allows and durable before it returns (JSONL: rewrite
    /// `items.jsonl`, then `events.jsonl`, each atomically). The `null` store returns
    /// `Unavailable` for a real run and `Ok(0)` for a dry run.
    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError>;

    /// The dashboard of `env` (`docs/actions.md`) on day `today` (`YYYY-MM-DD`, UTC) under `policy`'s
    /// limits and thresholds. Every field is filled except `generated_at`, which the
    /// `dashboard` action stamps from its context (stores have no clock; leave it empty).
    ///
    /// The default computes it from [`keys`](Self::keys) with [`dashboard::compute`] and
    /// fetches the listed overdue items with [`get`](Self::get) (an item gone in between is
    /// left out). A store with an index or SQL may override it; it must return exactly what
    /// the default would.
    fn dashboard(
        &mut self,
        env: &str,
        today: &str,
        policy: &Policy,
    ) -> Result<Dashboard, StoreError> {
        let keys = self.keys(Some(env))?;
        let counts = dashboard::compute(keys.iter().filter(|k| k.env == env), today, policy);
        finish_dashboard(self, env, counts, policy)
    }
}

/// The dashboard from its counts: fetches the listed overdue items (an item gone in between
/// is left out). Shared by the default [`BacklogStore::dashboard`] and stores that compute the
/// counts their own way.
pub fn finish_dashboard<S: BacklogStore + ?Sized>(
    store: &mut S,
    env: &str,
    counts: dashboard::DashboardCounts,
    policy: &Policy,
) -> Result<Dashboard, StoreError> {
    let mut overdue = Vec::with_capacity(counts.overdue.len());
    for k in &counts.overdue {
        if let Some(item) = store.get(&k.id)? {
            overdue.push(item);
        }
    }
    Ok(Dashboard::from_counts(
        env,
        store.backend(),
        counts,
        overdue,
        policy,
    ))
}
