//! The dashboard's numbers kept up to date as item lines are indexed, so `dashboard` answers
//! without walking every item: per env the totals per status and priority, the non-terminal
//! items per service, and the non-terminal items ordered like the overdue list
//! ([`dashboard::overdue_order`]: due date, priority, id). Which of those are overdue depends
//! on `today`, so the overdue part is a range of that ordered set (everything due before
//! today), read up to the policy's limit; the P0 ones have a set of their own, so the page
//! alert's ids never need the whole range.
//!
//! Same answer as [`dashboard::compute`] over the same keys (a property test in
//! `tests/jsonl_dashboard.rs` compares them after random writes and cleanups).

use std::collections::{BTreeSet, HashMap};

use backlog_core::dashboard::{self, DashboardCounts, ServiceCount};
use backlog_core::list::ItemKeys;
use backlog_core::model::Priority;
use backlog_core::policy::Policy;

/// One entry of the overdue order: `(due_date, priority, id)`.
type OverdueKey = (Box<str>, Priority, Box<str>);

/// The numbers of one env.
#[derive(Default)]
struct EnvCounts {
    total: usize,
    status: dashboard::StatusCounts,
    priority: dashboard::PriorityCounts,
    /// Non-terminal items per service (entries at zero are removed).
    open_by_service: HashMap<Box<str>, usize>,
    /// Every non-terminal item, in overdue order.
    open: BTreeSet<OverdueKey>,
    /// The P0 ones of `open`.
    open_p0: BTreeSet<OverdueKey>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Counts {
    envs: HashMap<Box<str>, EnvCounts>,
}

fn overdue_key(k: &ItemKeys) -> OverdueKey {
    (k.due_date.as_str().into(), k.priority, k.id.as_str().into())
}

fn sub(n: &mut usize) {
    *n = n.saturating_sub(1);
}

impl Counts {
    /// An item's keys change from `old` (none: a new item) to `new`.
    pub fn replace(&mut self, old: Option<&ItemKeys>, new: &ItemKeys) {
        if let Some(old) = old {
            self.remove(old);
        }
        self.add(new);
    }

    fn add(&mut self, k: &ItemKeys) {
        let e = match self.envs.get_mut(k.env.as_str()) {
            Some(e) => e,
            None => self.envs.entry(k.env.as_str().into()).or_default(),
        };
        e.total += 1;
        e.status.add(k.status);
        e.priority.add(k.priority);
        if !k.status.is_terminal() {
            match e.open_by_service.get_mut(k.service.as_str()) {
                Some(n) => *n += 1,
                None => {
                    e.open_by_service.insert(k.service.as_str().into(), 1);
                }
            }
            if k.priority == Priority::P0 {
                e.open_p0.insert(overdue_key(k));
            }
            e.open.insert(overdue_key(k));
        }
    }

    fn remove(&mut self, k: &ItemKeys) {
        let Some(e) = self.envs.get_mut(k.env.as_str()) else {
            return;
        };
        sub(&mut e.total);
        let s = &mut e.status;
        sub(match k.status {
            backlog_core::model::Status::Open => &mut s.open,
            backlog_core::model::Status::InProgress => &mut s.in_progress,
            backlog_core::model::Status::Blocked => &mut s.blocked,
            backlog_core::model::Status::Done => &mut s.done,
            backlog_core::model::Status::Canceled => &mut s.canceled,
        });
        let p = &mut e.priority;
        sub(match k.priority {
            Priority::P0 => &mut p.p0,
            Priority::P1 => &mut p.p1,
            Priority::P2 => &mut p.p2,
            Priority::P3 => &mut p.p3,
        });
        if !k.status.is_terminal() {
            if let Some(n) = e.open_by_service.get_mut(k.service.as_str()) {
                sub(n);
                if *n == 0 {
                    e.open_by_service.remove(k.service.as_str());
                }
            }
            let key = overdue_key(k);
            e.open.remove(&key);
            e.open_p0.remove(&key);
        }
        if e.total == 0 {
            self.envs.remove(k.env.as_str());
        }
    }

    /// What [`dashboard::compute`] answers for `env` on `today`; `keys_of(id)` gives the keys
    /// of a listed overdue item.
    pub fn dashboard<'a>(
        &self,
        env: &str,
        today: &str,
        policy: &Policy,
        keys_of: impl Fn(&str) -> Option<&'a ItemKeys>,
    ) -> DashboardCounts {
        let Some(e) = self.envs.get(env) else {
            return DashboardCounts::default();
        };
        // Everything due strictly before `today`: the keys below `(today, P0, "")`.
        let bound: OverdueKey = (today.into(), Priority::P0, "".into());
        let overdue = || e.open.range(..&bound);
        let limit = usize::try_from(policy.dashboard.overdue_limit).unwrap_or(usize::MAX);
        let mut top: Vec<ServiceCount> = e
            .open_by_service
            .iter()
            .map(|(s, &count)| ServiceCount {
                service: s.to_string(),
                count,
            })
            .collect();
        top.sort_unstable_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.service.cmp(&b.service))
        });
        top.truncate(usize::try_from(policy.dashboard.top_services).unwrap_or(usize::MAX));
        DashboardCounts {
            total: e.total,
            status_counts: e.status,
            priority_counts: e.priority,
            overdue_count: overdue().count(),
            overdue: overdue()
                .take(limit)
                .filter_map(|(_, _, id)| keys_of(id).cloned())
                .collect(),
            overdue_p0: e
                .open_p0
                .range(..&bound)
                .map(|(_, _, id)| id.to_string())
                .collect(),
            top_services: top,
        }
    }
}
