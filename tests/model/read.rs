//! The reads: `get`, `events`, `list` (every filter, paging) and `dashboard` (counts, overdue,
//! top services, alerts).
//!
//! Orders that end in "then id" take a `tie` function: the id a backend sorts by for a model
//! id (the real ids are random, so the model cannot know ties' order by itself; the driver
//! passes the real id, a reader of the model can pass the identity).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

/// `list`'s filters and paging (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub env: Option<String>,
    pub status: Vec<String>,
    pub priority: Option<String>,
    pub service: Option<String>,
    pub owner: Option<String>,
    pub category: Option<String>,
    pub due_before: Option<String>,
    pub overdue: Option<bool>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// Overdue: not terminal and due strictly before today.
pub fn overdue(i: &Item, today: &str) -> bool {
    !terminal(&i.status) && i.due_date.as_str() < today
}

/// The list order: priority, due date, id.
pub fn list_order(i: &Item, tie: &dyn Fn(&str) -> String) -> (String, String, String) {
    (i.priority.clone(), i.due_date.clone(), tie(&i.id))
}

/// The overdue order: due date, priority, id.
fn overdue_order(i: &Item, tie: &dyn Fn(&str) -> String) -> (String, String, String) {
    (i.due_date.clone(), i.priority.clone(), tie(&i.id))
}

fn valid_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

impl ListQuery {
    fn valid(&self) -> bool {
        self.env.as_deref().is_none_or(|e| slug(e, "_-", 32))
            && self.status.iter().all(|s| STATUSES.contains(&s.as_str()))
            && self
                .priority
                .as_deref()
                .is_none_or(|p| PRIORITIES.contains(&p))
            && self.service.as_deref().is_none_or(|s| slug(s, "._-", 64))
            && self.owner.as_deref().is_none_or(|o| len_ok(o, 1, 64))
            && self.category.as_deref().is_none_or(|c| slug(c, "._-", 64))
            && self.due_before.as_deref().is_none_or(valid_date)
            && self.limit.is_none_or(|l| (1..=1000).contains(&l))
            && self.offset.is_none_or(|o| o <= u32::MAX as usize)
    }

    fn matches(&self, i: &Item, today: &str) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.env, &i.env)
            && (self.status.is_empty() || self.status.contains(&i.status))
            && eq(&self.priority, &i.priority)
            && eq(&self.service, &i.service)
            && eq(&self.owner, &i.owner)
            && eq(&self.category, &i.category)
            && self
                .due_before
                .as_deref()
                .is_none_or(|d| i.due_date.as_str() < d)
            && self.overdue.is_none_or(|o| o == overdue(i, today))
    }
}

impl Model {
    pub fn get(&self, id: &str, include_events: bool) -> Answer {
        let i = &self.items[&self.find(id)?];
        let mut v = item_json(i);
        if include_events {
            v["events"] = self.events(id, None)?["events"].clone();
        }
        Ok(v)
    }

    /// `events`: the first `limit` (default 100, 1..=1000) events, oldest first.
    pub fn events(&self, id: &str, limit: Option<usize>) -> Answer {
        if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
            return Err("invalid_input");
        }
        let i = &self.items[&self.find(id)?];
        let evs: Vec<Value> = i
            .events
            .iter()
            .take(limit.unwrap_or(100))
            .map(|e| event_json(&i.id, e))
            .collect();
        Ok(json!({ "events": evs }))
    }

    /// `list`: `{"items": [a page in list order], "total", "next_offset"}`.
    pub fn list(&self, q: &ListQuery, tie: &dyn Fn(&str) -> String) -> Answer {
        if !q.valid() {
            return Err("invalid_input");
        }
        let today = self.today();
        let mut hits: Vec<&Item> = self
            .items
            .values()
            .filter(|i| q.matches(i, &today))
            .collect();
        hits.sort_by_key(|i| list_order(i, tie));
        let total = hits.len();
        let (limit, offset) = (q.limit.unwrap_or(100), q.offset.unwrap_or(0));
        let page: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(limit)
            .map(|i| item_json(i))
            .collect();
        let end = offset + page.len();
        let next = (!page.is_empty() && end < total).then_some(end);
        Ok(json!({"items": page, "total": total, "next_offset": next}))
    }

    /// `dashboard` of one env; `backend` is the name of the configured store (`memory`,
    /// `jsonl`, `postgres`).
    pub fn dashboard(
        &self,
        env: Option<&str>,
        backend: &str,
        tie: &dyn Fn(&str) -> String,
    ) -> Answer {
        let env = env.unwrap_or("prod");
        if !slug(env, "_-", 32) {
            return Err("invalid_input");
        }
        let today = self.today();
        let mine: Vec<&Item> = self.items.values().filter(|i| i.env == env).collect();
        let mut status_counts: BTreeMap<&str, usize> = STATUSES.iter().map(|s| (*s, 0)).collect();
        let mut priority_counts: BTreeMap<&str, usize> =
            PRIORITIES.iter().map(|p| (*p, 0)).collect();
        let mut open_by_service: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &mine {
            *status_counts.entry(i.status.as_str()).or_default() += 1;
            *priority_counts.entry(i.priority.as_str()).or_default() += 1;
            if !terminal(&i.status) {
                *open_by_service.entry(i.service.as_str()).or_default() += 1;
            }
        }
        let mut late: Vec<&Item> = mine
            .iter()
            .copied()
            .filter(|i| overdue(i, &today))
            .collect();
        late.sort_by_key(|i| overdue_order(i, tie));
        // Most non-terminal items first, then by name; at most TOP_SERVICES.
        let mut top: Vec<(&str, usize)> = open_by_service.into_iter().collect();
        top.sort_by_key(|(name, n)| (std::cmp::Reverse(*n), *name));
        let top: Vec<Value> = top
            .into_iter()
            .take(TOP_SERVICES)
            .map(|(s, n)| json!({"service": s, "count": n}))
            .collect();
        let mut alerts = Vec::new();
        if late.len() > OVERDUE_NOTIFY_THRESHOLD {
            alerts.push(json!({"level": "notify", "target": "oncall",
                "reason": format!("{} overdue items, more than the threshold of {OVERDUE_NOTIFY_THRESHOLD}", late.len()),
                "overdue_count": late.len()}));
        }
        let p0: Vec<&str> = late
            .iter()
            .filter(|i| i.priority == "P0")
            .map(|i| i.id.as_str())
            .collect();
        if !p0.is_empty() {
            let verb = if p0.len() == 1 { " is" } else { "s are" };
            alerts.push(json!({"level": "page", "target": "cto",
                "reason": format!("{} P0 item{verb} overdue", p0.len()), "items": p0}));
        }
        Ok(json!({
            "env": env,
            "backend": backend,
            "generated_at": ts(self.now),
            "total": mine.len(),
            "status_counts": status_counts,
            "priority_counts": priority_counts,
            "overdue_count": late.len(),
            "overdue": late.iter().take(OVERDUE_LIMIT).map(|i| item_json(i)).collect::<Vec<_>>(),
            "top_services": top,
            "alerts": alerts,
        }))
    }
}
