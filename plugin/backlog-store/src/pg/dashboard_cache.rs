//! What a Postgres store keeps of its last dashboard (`dashboard.rs` reads and fills it).

use backlog_core::dashboard::DashboardCounts;
use backlog_core::model::Item;

/// A dashboard's counts and overdue page, with what they were computed for.
#[derive(Debug)]
pub(super) struct Cached {
    /// The snapshot read before computing them.
    pub(super) snapshot: String,
    /// Env, day, `top_services`, `overdue_limit`.
    pub(super) key: (String, String, u32, u32),
    pub(super) counts: DashboardCounts,
    pub(super) overdue: Vec<Item>,
}
