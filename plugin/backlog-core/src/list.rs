//! Listing: filters, the (priority, due_date, id) order, paging.

use std::cmp::Ordering;

use crate::model::{Item, Priority, Status};

/// Default and maximum page sizes of `list` and `events`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Largest `offset` of `list` (the same on every platform: 2^32 - 1).
pub const MAX_OFFSET: usize = u32::MAX as usize;

/// The sort-and-filter view of an item: small enough to keep for 100k items in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    pub id: String,
    pub env: String,
    pub service: String,
    pub owner: String,
    pub category: String,
    pub priority: Priority,
    pub status: Status,
    pub due_date: String,
}

impl ItemKeys {
    /// The keys of `item`.
    pub fn of(item: &Item) -> Self {
        ItemKeys {
            id: item.id.clone(),
            env: item.env.clone(),
            service: item.service.clone(),
            owner: item.owner.clone(),
            category: item.category.clone(),
            priority: item.priority,
            status: item.status,
            due_date: item.due_date.clone(),
        }
    }
}

/// A validated `list` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub env: Option<String>,
    /// Any of these; empty = all.
    pub status: Vec<Status>,
    pub priority: Option<Priority>,
    pub service: Option<String>,
    pub owner: Option<String>,
    pub category: Option<String>,
    /// Exclusive upper bound, `YYYY-MM-DD`.
    pub due_before: Option<String>,
    /// true: only overdue; false: only not overdue; None: no filter.
    pub overdue: Option<bool>,
    pub limit: usize,
    pub offset: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            env: None,
            status: Vec::new(),
            priority: None,
            service: None,
            owner: None,
            category: None,
            due_before: None,
            overdue: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// Overdue: not terminal and due strictly before `today` (`YYYY-MM-DD`, UTC).
pub fn is_overdue(status: Status, due_date: &str, today: &str) -> bool {
    !status.is_terminal() && due_date < today
}

impl ListQuery {
    /// Whether an item with these keys passes every filter. `today` is `YYYY-MM-DD` (UTC).
    pub fn matches(&self, k: &ItemKeys, today: &str) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        eq(&self.env, &k.env)
            && (self.status.is_empty() || self.status.contains(&k.status))
            && self.priority.is_none_or(|p| p == k.priority)
            && eq(&self.service, &k.service)
            && eq(&self.owner, &k.owner)
            && eq(&self.category, &k.category)
            && self
                .due_before
                .as_deref()
                .is_none_or(|d| k.due_date.as_str() < d)
            && self
                .overdue
                .is_none_or(|o| o == is_overdue(k.status, &k.due_date, today))
    }

    /// `next_offset` for a page of `returned` items out of `total` matches.
    pub fn next_offset(&self, returned: usize, total: usize) -> Option<usize> {
        let end = self.offset.saturating_add(returned);
        (returned > 0 && end < total).then_some(end)
    }
}

/// The listing order: priority, then due_date, then id.
pub fn compare(a: &ItemKeys, b: &ItemKeys) -> Ordering {
    (a.priority, &a.due_date, &a.id).cmp(&(b.priority, &b.due_date, &b.id))
}

/// Sorts, counts and pages `keys` by `query`; returns the page's keys and the total.
pub fn select<'a>(
    query: &ListQuery,
    keys: impl Iterator<Item = &'a ItemKeys>,
    today: &str,
) -> (Vec<&'a ItemKeys>, usize) {
    let mut hits: Vec<&ItemKeys> = keys.filter(|k| query.matches(k, today)).collect();
    let total = hits.len();
    // Saturating: offset and limit come from callers; an absurd offset is an empty page.
    let end = query.offset.saturating_add(query.limit).min(total);
    if query.offset >= total || end <= query.offset {
        return (Vec::new(), total);
    }
    if end < total {
        // Only the first `end` in order matter: partial selection, then sort that prefix.
        hits.select_nth_unstable_by(end - 1, |a, b| compare(a, b));
        hits.truncate(end);
    }
    hits.sort_unstable_by(|a, b| compare(a, b));
    (hits.split_off(query.offset), total)
}
