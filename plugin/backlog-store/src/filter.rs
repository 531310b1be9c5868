//! Columnar filtering for `list`: the filter pass over 100k items must not chase a pointer
//! into a string per item and field (that was most of a listing's time).
//!
//! Every key field is stored per item as a small number: `env`, `service`, `owner`,
//! `category` and `due_date` interned, `priority` and `status` as their variant index. A query
//! is compiled once per call into per-value truth tables — and the tables are filled by
//! [`ListQuery::matches`] itself, on a query holding only that one filter, for each distinct
//! value. So `matches` stays the single definition of what a filter means; this module only
//! relies on it being a conjunction of per-filter tests (`overdue` reads `status` and
//! `due_date` together, so its table is per (due date, status) pair). `ListQuery` is
//! destructured exhaustively: a new filter field is a build error here, not a wrong result.

use std::collections::HashMap;

use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Priority, Status};

pub(crate) const PRIORITIES: [Priority; 4] =
    [Priority::P0, Priority::P1, Priority::P2, Priority::P3];
pub(crate) const STATUSES: [Status; 5] = [
    Status::Open,
    Status::InProgress,
    Status::Blocked,
    Status::Done,
    Status::Canceled,
];

/// Position in [`PRIORITIES`] (exhaustive: a new variant is a build error).
pub(crate) fn priority_ix(p: Priority) -> u8 {
    match p {
        Priority::P0 => 0,
        Priority::P1 => 1,
        Priority::P2 => 2,
        Priority::P3 => 3,
    }
}

/// Position in [`STATUSES`] (exhaustive: a new variant is a build error).
pub(crate) fn status_ix(s: Status) -> u8 {
    match s {
        Status::Open => 0,
        Status::InProgress => 1,
        Status::Blocked => 2,
        Status::Done => 3,
        Status::Canceled => 4,
    }
}

/// Distinct values of one field, numbered in order of appearance.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    fn id(&mut self, v: &str) -> u32 {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        // More distinct values than items is impossible; saturate rather than panic.
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(v.to_owned());
        self.ids.insert(v.to_owned(), id);
        id
    }
}

/// The key fields of one item as numbers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Row {
    env: u32,
    service: u32,
    owner: u32,
    category: u32,
    due: u32,
    priority: u8,
    status: u8,
}

/// The rows of all slots (placeholders keep a default row; callers skip them).
#[derive(Default)]
pub(crate) struct Columns {
    env: Interner,
    service: Interner,
    owner: Interner,
    category: Interner,
    due: Interner,
    rows: Vec<Row>,
}

impl Columns {
    /// A row for a new slot.
    pub fn push(&mut self) {
        self.rows.push(Row::default());
    }

    /// Sets slot `slot`'s row from its keys.
    pub fn set(&mut self, slot: usize, k: &ItemKeys) {
        let row = Row {
            env: self.env.id(&k.env),
            service: self.service.id(&k.service),
            owner: self.owner.id(&k.owner),
            category: self.category.id(&k.category),
            due: self.due.id(&k.due_date),
            priority: priority_ix(k.priority),
            status: status_ix(k.status),
        };
        if let Some(r) = self.rows.get_mut(slot) {
            *r = row;
        }
    }

    /// One row per slot, in slot order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

/// A compiled query: per-value truth tables (`None`: that filter is absent).
pub(crate) struct Filter {
    env: Option<Vec<bool>>,
    service: Option<Vec<bool>>,
    owner: Option<Vec<bool>>,
    category: Option<Vec<bool>>,
    due_before: Option<Vec<bool>>,
    priority: Option<[bool; 4]>,
    status: Option<[bool; 5]>,
    /// Per due date, per status.
    overdue: Option<Vec<[bool; 5]>>,
}

/// Empty keys: they pass a query holding one filter once that filter's field is set; also
/// the buffer a listing from a checkpoint fills in place (`index/lazy.rs`).
pub(crate) fn template() -> ItemKeys {
    ItemKeys {
        id: String::new(),
        env: String::new(),
        service: String::new(),
        owner: String::new(),
        category: String::new(),
        priority: Priority::P0,
        status: Status::Open,
        due_date: String::new(),
    }
}

/// The truth table of a string filter over every distinct value of its field.
fn table(
    on: bool,
    values: &Interner,
    sub: &ListQuery,
    today: &str,
    field: fn(&mut ItemKeys) -> &mut String,
) -> Option<Vec<bool>> {
    if !on {
        return None;
    }
    let mut t = template();
    Some(
        values
            .values
            .iter()
            .map(|v| {
                let f = field(&mut t);
                f.clear();
                f.push_str(v);
                sub.matches(&t, today)
            })
            .collect(),
    )
}

impl Filter {
    /// Compiles `query` against the values in `cols`; `None` if it has no filter at all.
    pub fn compile(query: &ListQuery, cols: &Columns, today: &str) -> Option<Filter> {
        let ListQuery {
            env,
            status,
            priority,
            service,
            owner,
            category,
            due_before,
            overdue,
            limit: _,
            offset: _,
        } = query;
        if env.is_none()
            && status.is_empty()
            && priority.is_none()
            && service.is_none()
            && owner.is_none()
            && category.is_none()
            && due_before.is_none()
            && overdue.is_none()
        {
            return None;
        }
        let only = |set: &dyn Fn(&mut ListQuery)| {
            let mut q = ListQuery::default();
            set(&mut q);
            q
        };
        let env_t = table(
            env.is_some(),
            &cols.env,
            &only(&|q| q.env.clone_from(env)),
            today,
            |t| &mut t.env,
        );
        let service_t = table(
            service.is_some(),
            &cols.service,
            &only(&|q| q.service.clone_from(service)),
            today,
            |t| &mut t.service,
        );
        let owner_t = table(
            owner.is_some(),
            &cols.owner,
            &only(&|q| q.owner.clone_from(owner)),
            today,
            |t| &mut t.owner,
        );
        let category_t = table(
            category.is_some(),
            &cols.category,
            &only(&|q| q.category.clone_from(category)),
            today,
            |t| &mut t.category,
        );
        let due_t = table(
            due_before.is_some(),
            &cols.due,
            &only(&|q| q.due_before.clone_from(due_before)),
            today,
            |t| &mut t.due_date,
        );
        let priority_t = priority.map(|_| {
            let sub = only(&|q| q.priority = *priority);
            let mut t = template();
            PRIORITIES.map(|p| {
                t.priority = p;
                sub.matches(&t, today)
            })
        });
        let status_t = (!status.is_empty()).then(|| {
            let sub = only(&|q| q.status.clone_from(status));
            let mut t = template();
            STATUSES.map(|s| {
                t.status = s;
                sub.matches(&t, today)
            })
        });
        let overdue_t = overdue.map(|_| {
            let sub = only(&|q| q.overdue = *overdue);
            let mut t = template();
            cols.due
                .values
                .iter()
                .map(|d| {
                    t.due_date.clear();
                    t.due_date.push_str(d);
                    STATUSES.map(|s| {
                        t.status = s;
                        sub.matches(&t, today)
                    })
                })
                .collect()
        });
        Some(Filter {
            env: env_t,
            service: service_t,
            owner: owner_t,
            category: category_t,
            due_before: due_t,
            priority: priority_t,
            status: status_t,
            overdue: overdue_t,
        })
    }

    /// Whether the item of `r` matches the query. Branch-free over the rows (`&`, not `&&`):
    /// with real data the outcome of each test is unpredictable, and mispredictions were
    /// most of the cost of the pass.
    #[inline(always)]
    pub fn test(&self, r: &Row) -> bool {
        #[inline(always)]
        fn hit(t: Option<&[bool]>, v: u32) -> bool {
            match t {
                None => true,
                Some(t) => t.get(v as usize).copied().unwrap_or(false),
            }
        }
        let overdue = match &self.overdue {
            None => true,
            Some(t) => t
                .get(r.due as usize)
                .and_then(|s| s.get(r.status as usize))
                .copied()
                .unwrap_or(false),
        };
        hit(self.env.as_deref(), r.env)
            & hit(self.service.as_deref(), r.service)
            & hit(self.owner.as_deref(), r.owner)
            & hit(self.category.as_deref(), r.category)
            & hit(self.due_before.as_deref(), r.due)
            & hit(
                self.priority.as_ref().map(|t| &t[..]),
                u32::from(r.priority),
            )
            & hit(self.status.as_ref().map(|t| &t[..]), u32::from(r.status))
            & overdue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled filter agrees with `ListQuery::matches` on every combination of a small
    /// value space and a spread of queries.
    #[test]
    fn compiled_filter_agrees_with_matches() {
        let mut cols = Columns::default();
        let mut all = Vec::new();
        for (i, env) in ["prod", "dev"].into_iter().enumerate() {
            for owner in ["a", "b"] {
                for due in ["2026-01-01", "2026-01-02", "2026-01-03"] {
                    for p in PRIORITIES {
                        for s in STATUSES {
                            let k = ItemKeys {
                                id: format!("bl_{}", all.len()),
                                env: env.into(),
                                service: format!("s{i}"),
                                owner: owner.into(),
                                category: "c".into(),
                                priority: p,
                                status: s,
                                due_date: due.into(),
                            };
                            cols.push();
                            cols.set(all.len(), &k);
                            all.push(k);
                        }
                    }
                }
            }
        }
        let today = "2026-01-02";
        let queries = [
            ListQuery {
                env: Some("prod".into()),
                ..ListQuery::default()
            },
            ListQuery {
                env: Some("nope".into()),
                ..ListQuery::default()
            },
            ListQuery {
                service: Some("s1".into()),
                owner: Some("b".into()),
                category: Some("c".into()),
                ..ListQuery::default()
            },
            ListQuery {
                status: vec![Status::Done, Status::Open],
                priority: Some(Priority::P2),
                ..ListQuery::default()
            },
            ListQuery {
                due_before: Some("2026-01-03".into()),
                ..ListQuery::default()
            },
            ListQuery {
                overdue: Some(true),
                ..ListQuery::default()
            },
            ListQuery {
                overdue: Some(false),
                env: Some("dev".into()),
                ..ListQuery::default()
            },
        ];
        for q in &queries {
            let f = Filter::compile(q, &cols, today).unwrap();
            for (k, r) in all.iter().zip(cols.rows()) {
                assert_eq!(f.test(r), q.matches(k, today), "{q:?} on {k:?}");
            }
        }
        assert!(Filter::compile(&ListQuery::default(), &cols, today).is_none());
    }
}
