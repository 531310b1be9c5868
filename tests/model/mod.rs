//! The reference model of the backlog (`docs/testing.md`): what every backend must answer,
//! written to be read at a glance per action. Plain maps and vectors, no I/O, no speed tricks.
//!
//! Items live in a `BTreeMap` keyed by model id (`m0`, `m1`, … in creation order); the dedupe
//! key index is a scan. Each action returns `Ok(json)` in the product's wire shape restricted to
//! the fields the model knows ([`ITEM_FIELDS`]), or `Err(code)`. Policy: the shipped
//! `config/backlog_policy.yml` (categories, due days, owners, retention 180 days).

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// The item fields the model tracks and compares (the rest keep their create defaults and
/// are never changed by the generated actions).
pub const ITEM_FIELDS: &[&str] = &[
    "id",
    "env",
    "service",
    "category",
    "title",
    "priority",
    "status",
    "owner",
    "due_date",
    "dedupe_key",
    "created_at",
    "updated_at",
];

/// The event fields the model compares (`id` is random; `meta` is not modelled).
pub const EVENT_FIELDS: &[&str] = &["item_id", "ts", "type", "message"];

/// The shipped categories: (name, priority, due_days, owner).
pub const CATEGORIES: &[(&str, &str, i64, &str)] = &[
    ("arch_review", "P1", 14, "cto"),
    ("refactor", "P2", 30, "oncall"),
    ("slo_hardening", "P1", 14, "oncall"),
    ("cleanup_followups", "P2", 7, "oncall"),
    ("security", "P1", 7, "oncall"),
];
pub const RETENTION_DAYS: i64 = 180;
pub const STATUSES: &[&str] = &["open", "in_progress", "blocked", "done", "canceled"];

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub env: String,
    pub service: String,
    pub category: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    pub owner: String,
    pub due_date: String,
    pub dedupe_key: String,
    pub created_at: String,
    pub updated_at: String,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: String,
    pub kind: &'static str,
    pub message: String,
}

/// A create or upsert's fields (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub env: Option<String>,
    pub service: Option<String>,
    pub category: Option<String>,
    pub title: Option<String>,
    pub priority: Option<String>,
    pub owner: Option<String>,
    pub dedupe_key: Option<String>,
}

pub type Answer = Result<Value, &'static str>;

#[derive(Debug, Clone)]
pub struct Model {
    pub now: DateTime<Utc>,
    pub items: BTreeMap<usize, Item>,
    pub next_id: usize,
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn terminal(status: &str) -> bool {
    status == "done" || status == "canceled"
}

fn slug(s: &str, extra: &str, max: usize) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = s.chars();
    chars.next().is_some_and(alnum)
        && s.len() <= max
        && chars.all(|c| alnum(c) || extra.contains(c))
}

fn len_ok(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n) && !s.contains('\0')
}

/// Field checks shared by create and upsert (`invalid_input` when any fails).
fn fields_valid(f: &Fields) -> bool {
    f.env.as_deref().is_none_or(|e| slug(e, "_-", 32))
        && f.service.as_deref().is_none_or(|s| slug(s, "._-", 64))
        && f.category
            .as_deref()
            .is_none_or(|c| CATEGORIES.iter().any(|k| k.0 == c))
        && f.title.as_deref().is_none_or(|t| len_ok(t, 1, 200))
        && f.priority
            .as_deref()
            .is_none_or(|p| ["P0", "P1", "P2", "P3"].contains(&p))
        && f.owner.as_deref().is_none_or(|o| len_ok(o, 1, 64))
        && f.dedupe_key.as_deref().is_none_or(|k| len_ok(k, 1, 256))
}

pub fn item_json(i: &Item) -> Value {
    json!({
        "id": i.id, "env": i.env, "service": i.service, "category": i.category,
        "title": i.title, "priority": i.priority, "status": i.status, "owner": i.owner,
        "due_date": i.due_date, "dedupe_key": i.dedupe_key,
        "created_at": i.created_at, "updated_at": i.updated_at,
    })
}

fn event_json(item: &str, e: &Event) -> Value {
    json!({"item_id": item, "ts": e.ts, "type": e.kind, "message": e.message})
}

impl Model {
    pub fn new(now: DateTime<Utc>) -> Model {
        Model {
            now,
            items: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub fn today(&self) -> String {
        self.now.format("%Y-%m-%d").to_string()
    }

    fn by_key(&self, key: &str) -> Option<usize> {
        self.items
            .iter()
            .find(|(_, i)| i.dedupe_key == key)
            .map(|(n, _)| *n)
    }

    fn by_id(&self, id: &str) -> Option<usize> {
        self.items.iter().find(|(_, i)| i.id == id).map(|(n, _)| *n)
    }

    /// `create`: a new open item with its category's defaults and a `created` event.
    pub fn create(&mut self, f: Fields) -> Answer {
        let complete =
            f.env.is_some() && f.service.is_some() && f.category.is_some() && f.title.is_some();
        if !complete || !fields_valid(&f) {
            return Err("invalid_input");
        }
        if f.dedupe_key
            .as_deref()
            .is_some_and(|k| self.by_key(k).is_some())
        {
            return Err("conflict");
        }
        Ok(item_json(self.insert(f)))
    }

    fn insert(&mut self, f: Fields) -> &Item {
        let n = self.next_id;
        self.next_id += 1;
        let id = format!("m{n}");
        let category = f.category.unwrap_or_default();
        let (_, priority, due_days, owner) = *CATEGORIES
            .iter()
            .find(|c| c.0 == category)
            .expect("validated");
        let now = ts(self.now);
        let item = Item {
            dedupe_key: f.dedupe_key.unwrap_or_else(|| format!("manual:{id}")),
            id,
            env: f.env.unwrap_or_default(),
            service: f.service.unwrap_or_default(),
            category,
            title: f.title.unwrap_or_default(),
            priority: f.priority.unwrap_or_else(|| priority.to_owned()),
            status: "open".into(),
            owner: f.owner.unwrap_or_else(|| owner.to_owned()),
            due_date: (self.now.date_naive() + Duration::days(due_days))
                .format("%Y-%m-%d")
                .to_string(),
            created_at: now.clone(),
            updated_at: now.clone(),
            events: vec![Event {
                ts: now,
                kind: "created",
                message: String::new(),
            }],
        };
        self.items.insert(n, item);
        &self.items[&n]
    }

    /// `upsert` by `dedupe_key`: update the holder (last writer wins, field by field) or
    /// create. `{"action": created|updated|unchanged, "item": …}`.
    pub fn upsert(&mut self, f: Fields) -> Answer {
        if f.dedupe_key.is_none() || !fields_valid(&f) {
            return Err("invalid_input");
        }
        let Some(n) = self.by_key(f.dedupe_key.as_deref().unwrap_or_default()) else {
            let complete =
                f.env.is_some() && f.service.is_some() && f.category.is_some() && f.title.is_some();
            if !complete {
                return Err("invalid_input");
            }
            return Ok(json!({"action": "created", "item": item_json(self.insert(f))}));
        };
        let now = ts(self.now);
        let old = self.items[&n].clone();
        let mut new = old.clone();
        for (slot, value) in [
            (&mut new.env, f.env),
            (&mut new.service, f.service),
            (&mut new.category, f.category),
            (&mut new.title, f.title),
            (&mut new.priority, f.priority),
            (&mut new.owner, f.owner),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        let fields_changed = (
            &old.env,
            &old.service,
            &old.category,
            &old.title,
            &old.priority,
        ) != (
            &new.env,
            &new.service,
            &new.category,
            &new.title,
            &new.priority,
        );
        if fields_changed {
            new.events.push(Event {
                ts: now.clone(),
                kind: "updated",
                message: String::new(),
            });
        }
        if old.owner != new.owner {
            new.events.push(Event {
                ts: now.clone(),
                kind: "owner_changed",
                message: String::new(),
            });
        }
        if new.events.len() == old.events.len() {
            return Ok(json!({"action": "unchanged", "item": item_json(&old)}));
        }
        new.updated_at = now;
        self.items.insert(n, new);
        Ok(json!({"action": "updated", "item": item_json(&self.items[&n])}))
    }

    /// The item an id names: `invalid_input` for a malformed id, `not_found` for a free one.
    fn find(&self, id: &str) -> Result<usize, &'static str> {
        let well_formed = id.strip_prefix("bl_").is_some_and(|h| {
            h.len() == 12
                && h.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if !well_formed && !id.starts_with('m') {
            return Err("invalid_input");
        }
        self.by_id(id).ok_or("not_found")
    }

    pub fn get(&self, id: &str) -> Answer {
        Ok(item_json(&self.items[&self.find(id)?]))
    }

    pub fn events(&self, id: &str) -> Answer {
        let i = &self.items[&self.find(id)?];
        let evs: Vec<Value> = i.events.iter().map(|e| event_json(&i.id, e)).collect();
        Ok(json!({ "events": evs }))
    }

    /// `set_status`: a terminal item can only be reopened; same status plus a comment is a
    /// `commented` event; same status alone changes nothing.
    pub fn set_status(&mut self, id: &str, status: &str, comment: Option<&str>) -> Answer {
        if !STATUSES.contains(&status) || comment.is_some_and(|c| !len_ok(c, 0, 4000)) {
            return Err("invalid_input");
        }
        let n = self.find(id)?;
        let now = ts(self.now);
        let item = self.items.get_mut(&n).expect("found");
        let comment = comment
            .filter(|c| !c.is_empty())
            .unwrap_or_default()
            .to_owned();
        if item.status == status {
            if comment.is_empty() {
                return Ok(item_json(item));
            }
            item.events.push(Event {
                ts: now.clone(),
                kind: "commented",
                message: comment,
            });
        } else {
            if terminal(&item.status) && status != "open" {
                return Err("conflict");
            }
            item.status = status.to_owned();
            item.events.push(Event {
                ts: now.clone(),
                kind: "status_changed",
                message: comment,
            });
        }
        item.updated_at = now;
        Ok(item_json(item))
    }

    /// `add_comment`: a `commented` event; returns the event.
    pub fn add_comment(&mut self, id: &str, message: &str) -> Answer {
        if !len_ok(message, 1, 4000) {
            return Err("invalid_input");
        }
        let n = self.find(id)?;
        let now = ts(self.now);
        let item = self.items.get_mut(&n).expect("found");
        let ev = Event {
            ts: now.clone(),
            kind: "commented",
            message: message.to_owned(),
        };
        item.events.push(ev.clone());
        item.updated_at = now;
        Ok(event_json(&item.id, &ev))
    }

    /// `list` with optional env and status filters: `{"items": [sorted by model id], "total"}`.
    pub fn list(&self, env: Option<&str>, status: &[&str]) -> Answer {
        if env.is_some_and(|e| !slug(e, "_-", 32)) || status.iter().any(|s| !STATUSES.contains(s)) {
            return Err("invalid_input");
        }
        let items: Vec<Value> = self
            .items
            .values()
            .filter(|i| env.is_none_or(|e| i.env == e))
            .filter(|i| status.is_empty() || status.contains(&i.status.as_str()))
            .map(item_json)
            .collect();
        Ok(json!({"total": items.len(), "items": items}))
    }

    /// `dashboard`: totals by status and the overdue count (not terminal, due before today).
    pub fn dashboard(&self, env: &str) -> Answer {
        if !slug(env, "_-", 32) {
            return Err("invalid_input");
        }
        let mine: Vec<&Item> = self.items.values().filter(|i| i.env == env).collect();
        let mut counts: BTreeMap<&str, usize> = STATUSES.iter().map(|s| (*s, 0)).collect();
        for i in &mine {
            *counts.entry(i.status.as_str()).or_default() += 1;
        }
        let today = self.today();
        let overdue = mine
            .iter()
            .filter(|i| !terminal(&i.status) && i.due_date < today)
            .count();
        Ok(json!({"total": mine.len(), "status_counts": counts, "overdue_count": overdue}))
    }

    /// `cleanup`: deletes terminal items last updated before now minus the retention.
    pub fn cleanup(&mut self, retention_days: Option<i64>, dry_run: bool) -> Answer {
        let days = retention_days.unwrap_or(RETENTION_DAYS);
        let cutoff = ts(self.now - Duration::days(days));
        let doomed: Vec<usize> = self
            .items
            .iter()
            .filter(|(_, i)| terminal(&i.status) && i.updated_at < cutoff)
            .map(|(n, _)| *n)
            .collect();
        if !dry_run {
            for n in &doomed {
                self.items.remove(n);
            }
        }
        Ok(json!({"deleted": doomed.len(), "dry_run": dry_run, "cutoff": cutoff}))
    }
}
