//! The dashboard (see `docs/actions.md`): counts, overdue items, top services and alerts of one env.
//!
//! Owns the arithmetic ([`compute`], a pure function over [`ItemKeys`]), the alert rules
//! ([`alerts`]) and the wire shape ([`Dashboard`]); the `dashboard` action is in
//! [`crate::actions`]. It does not read items itself: [`crate::store::BacklogStore::dashboard`]
//! does (by default through `keys` + `get`; a SQL store with aggregates).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::list::{ItemKeys, is_overdue};
use crate::model::{Item, Priority, Status};
use crate::policy::Policy;

/// Items per status; every status present, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCounts {
    /// Items `open`.
    pub open: usize,
    /// Items `in_progress`.
    pub in_progress: usize,
    /// Items `blocked`.
    pub blocked: usize,
    /// Items `done`.
    pub done: usize,
    /// Items `canceled`.
    pub canceled: usize,
}

impl StatusCounts {
    /// Counts one item of status `s`.
    pub fn add(&mut self, s: Status) {
        let n = match s {
            Status::Open => &mut self.open,
            Status::InProgress => &mut self.in_progress,
            Status::Blocked => &mut self.blocked,
            Status::Done => &mut self.done,
            Status::Canceled => &mut self.canceled,
        };
        *n += 1;
    }
}

/// Items per priority; every priority present, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityCounts {
    /// Items of priority `P0` (key `P0`).
    #[serde(rename = "P0")]
    pub p0: usize,
    /// Items of priority `P1`.
    #[serde(rename = "P1")]
    pub p1: usize,
    /// Items of priority `P2`.
    #[serde(rename = "P2")]
    pub p2: usize,
    /// Items of priority `P3`.
    #[serde(rename = "P3")]
    pub p3: usize,
}

impl PriorityCounts {
    /// Counts one item of priority `p`.
    pub fn add(&mut self, p: Priority) {
        let n = match p {
            Priority::P0 => &mut self.p0,
            Priority::P1 => &mut self.p1,
            Priority::P2 => &mut self.p2,
            Priority::P3 => &mut self.p3,
        };
        *n += 1;
    }
}

/// One entry of `top_services`: a service and its number of non-terminal items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCount {
    /// The service name.
    pub service: String,
    /// Its non-terminal items.
    pub count: usize,
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// Tell on-call.
    Notify,
    /// Page the CTO.
    Page,
}

/// One alert: `{"level":"notify","target":"oncall","reason":…,"overdue_count":N}` or
/// `{"level":"page","target":"cto","reason":…,"items":[ids]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// `notify` or `page`.
    pub level: AlertLevel,
    /// Who to tell: `oncall` or `cto` (runbook §6).
    pub target: String,
    /// One sentence for humans.
    pub reason: String,
    /// `notify` only: the number of overdue items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_count: Option<usize>,
    /// `page` only: ids of every overdue P0 item, in overdue order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
}

/// What [`compute`] derives from the keys of one env's items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardCounts {
    /// Every item.
    pub total: usize,
    /// Items per status.
    pub status_counts: StatusCounts,
    /// Items per priority.
    pub priority_counts: PriorityCounts,
    /// Every overdue item (non-terminal, due before today).
    pub overdue_count: usize,
    /// The first `dashboard.overdue_limit` overdue items in [`overdue_order`].
    pub overdue: Vec<ItemKeys>,
    /// Ids of every overdue P0 item (not cut by the limit), in [`overdue_order`].
    pub overdue_p0: Vec<String>,
    /// Services by number of non-terminal items, most first, then by name; at most
    /// `dashboard.top_services`; services without non-terminal items are left out.
    pub top_services: Vec<ServiceCount>,
}

/// Order of the overdue list: due_date, then priority, then id (for determinism).
pub fn overdue_order(a: &ItemKeys, b: &ItemKeys) -> Ordering {
    (&a.due_date, a.priority, &a.id).cmp(&(&b.due_date, b.priority, &b.id))
}

/// Counts `keys` (one env's items) for the dashboard on `today` (`YYYY-MM-DD`, UTC).
pub fn compute<'a>(
    keys: impl IntoIterator<Item = &'a ItemKeys>,
    today: &str,
    policy: &Policy,
) -> DashboardCounts {
    let mut c = DashboardCounts::default();
    let mut overdue: Vec<&ItemKeys> = Vec::new();
    let mut open_by_service: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        c.total += 1;
        c.status_counts.add(k.status);
        c.priority_counts.add(k.priority);
        if !k.status.is_terminal() {
            *open_by_service.entry(k.service.as_str()).or_default() += 1;
        }
        if is_overdue(k.status, &k.due_date, today) {
            overdue.push(k);
        }
    }
    overdue.sort_unstable_by(|a, b| overdue_order(a, b));
    c.overdue_count = overdue.len();
    c.overdue_p0 = overdue
        .iter()
        .filter(|k| k.priority == Priority::P0)
        .map(|k| k.id.clone())
        .collect();
    let limit = usize::try_from(policy.dashboard.overdue_limit).unwrap_or(usize::MAX);
    c.overdue = overdue.into_iter().take(limit).cloned().collect();

    let mut top: Vec<ServiceCount> = open_by_service
        .into_iter()
        .map(|(service, count)| ServiceCount {
            service: service.to_owned(),
            count,
        })
        .collect();
    // Stable sort over name-ordered entries: count desc, then name asc.
    top.sort_by_key(|s| std::cmp::Reverse(s.count));
    top.truncate(usize::try_from(policy.dashboard.top_services).unwrap_or(usize::MAX));
    c.top_services = top;
    c
}

/// The alerts of runbook §6: `notify oncall` when `overdue_count` is greater than
/// `dashboard.overdue_notify_threshold`; `page cto` when any P0 item is overdue
/// (`overdue_p0` holds their ids). Notify first.
pub fn alerts(overdue_count: usize, overdue_p0: &[String], policy: &Policy) -> Vec<Alert> {
    let mut out = Vec::new();
    let threshold = policy.dashboard.overdue_notify_threshold;
    if u64::try_from(overdue_count).unwrap_or(u64::MAX) > u64::from(threshold) {
        out.push(Alert {
            level: AlertLevel::Notify,
            target: "oncall".into(),
            reason: format!(
                "{overdue_count} overdue items, more than the threshold of {threshold}"
            ),
            overdue_count: Some(overdue_count),
            items: None,
        });
    }
    if !overdue_p0.is_empty() {
        let n = overdue_p0.len();
        out.push(Alert {
            level: AlertLevel::Page,
            target: "cto".into(),
            reason: format!(
                "{n} P0 item{} overdue",
                if n == 1 { " is" } else { "s are" }
            ),
            overdue_count: None,
            items: Some(overdue_p0.to_vec()),
        });
    }
    out
}

/// The dashboard exactly as `docs/actions.md` returns it (every key always present).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The environment shown.
    pub env: String,
    /// The store that answered: `postgres`, `jsonl`, `memory`, `null`.
    pub backend: String,
    /// When the action ran (stored timestamp form); stamped by the action, not the store.
    pub generated_at: String,
    /// Every item of the env.
    pub total: usize,
    /// Items per status (every status, zeros included).
    pub status_counts: StatusCounts,
    /// Items per priority (every priority, zeros included).
    pub priority_counts: PriorityCounts,
    /// Every overdue item (non-terminal, due before today UTC), not cut by the limit.
    pub overdue_count: usize,
    /// Full items, at most `dashboard.overdue_limit`, in [`overdue_order`].
    pub overdue: Vec<Item>,
    /// Services by non-terminal items, most first, then by name; at most `dashboard.top_services`.
    pub top_services: Vec<ServiceCount>,
    /// Alerts that fire, notify first (see [`alerts`]).
    pub alerts: Vec<Alert>,
}

impl Dashboard {
    /// Assembles the dashboard from [`compute`]'s counts and the full items of
    /// `counts.overdue` (same order), with the alerts of `policy`. `generated_at` is empty.
    pub fn from_counts(
        env: &str,
        backend: &str,
        counts: DashboardCounts,
        overdue: Vec<Item>,
        policy: &Policy,
    ) -> Dashboard {
        Dashboard {
            env: env.to_owned(),
            backend: backend.to_owned(),
            generated_at: String::new(),
            total: counts.total,
            status_counts: counts.status_counts,
            priority_counts: counts.priority_counts,
            overdue_count: counts.overdue_count,
            overdue,
            top_services: counts.top_services,
            alerts: alerts(counts.overdue_count, &counts.overdue_p0, policy),
        }
    }

    /// The JSON object (see `docs/actions.md`).
    pub fn to_json(&self) -> Result<Value, Error> {
        serde_json::to_value(self)
            .map_err(|e| Error::internal(format!("cannot serialize the dashboard: {e}")))
    }
}

#[cfg(test)]
mod tests;
