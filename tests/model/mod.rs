//! The reference model of the backlog (`docs/testing.md`): what every backend must answer,
//! written to be read at a glance per action. Plain maps and vectors, no I/O, no speed tricks.
//!
//! Items live in a `BTreeMap` keyed by model id (`m0`, `m1`, … in creation order); the dedupe
//! key index is a scan. Each action returns `Ok(json)` in the product's wire shape restricted to
//! the fields the model knows ([`ITEM_FIELDS`]), or `Err(code)`. The policy is the one the
//! model tests install ([`POLICY_YAML`]): the shipped categories, owners and retention, with a
//! small generation cap and small dashboard limits so that capping, cutting and alerts happen
//! within a short sequence.
//!
//! One module per job: this file holds the items and the write actions, [`read`] the reads
//! (`get`, `events`, `list`, `dashboard`), [`generate`] the weekly and daily generation, and
//! [`access`] who may call what.

#![allow(dead_code)]

pub mod access;
pub mod generate;
pub mod read;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

/// The item fields the model tracks and compares (the rest keep their create defaults:
/// `evidence_refs` is `{}` on every item the sequences make).
pub const ITEM_FIELDS: &[&str] = &[
    "id",
    "env",
    "service",
    "category",
    "title",
    "description",
    "priority",
    "status",
    "owner",
    "due_date",
    "source",
    "dedupe_key",
    "tags",
    "meta",
    "created_at",
    "updated_at",
];

/// The event fields the model compares (`id` is random; `actor` is always the one agent of
/// the sequence; `meta` is not modelled).
pub const EVENT_FIELDS: &[&str] = &["item_id", "ts", "type", "message"];

/// The shipped categories, in policy order: (name, priority, due_days, owner).
pub const CATEGORIES: &[(&str, &str, i64, &str)] = &[
    ("arch_review", "P1", 14, "cto"),
    ("refactor", "P2", 30, "oncall"),
    ("slo_hardening", "P1", 14, "oncall"),
    ("cleanup_followups", "P2", 7, "oncall"),
    ("security", "P1", 7, "oncall"),
];
pub const RETENTION_DAYS: i64 = 180;
pub const STATUSES: &[&str] = &["open", "in_progress", "blocked", "done", "canceled"];
pub const PRIORITIES: &[&str] = &["P0", "P1", "P2", "P3"];
/// `dedupe.key_prefix`: keys `{prefix}:…` are reserved to generation.
pub const KEY_PREFIX: &str = "platform_backlog";
/// `defaults.max_items_per_run` of the model tests' policy.
pub const MAX_ITEMS_PER_RUN: usize = 3;
/// `dashboard.overdue_limit`, `dashboard.top_services`, `dashboard.overdue_notify_threshold`.
pub const OVERDUE_LIMIT: usize = 3;
pub const TOP_SERVICES: usize = 2;
pub const OVERDUE_NOTIFY_THRESHOLD: usize = 2;

/// The policy file the model tests install over the shipped one (deep-merged).
pub const POLICY_YAML: &str = "defaults:\n  max_items_per_run: 3\n\
generation:\n  daily_from_risk_digest: true\n\
dashboard:\n  overdue_limit: 3\n  top_services: 2\n  overdue_notify_threshold: 2\n";

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub env: String,
    pub service: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub priority: String,
    pub status: String,
    pub owner: String,
    pub due_date: String,
    pub source: String,
    pub dedupe_key: String,
    pub tags: Vec<String>,
    pub meta: Map<String, Value>,
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
    /// Platform digests in the reports directory, by week (all of env `prod`).
    pub platform: BTreeMap<String, generate::PlatformDigest>,
    /// Risk digests in the reports directory, by date (all of env `prod`).
    pub risk: BTreeMap<String, generate::RiskDigest>,
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// An RFC 3339 instant (test input: panics on a malformed one).
pub fn ts_parse(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

pub fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub fn terminal(status: &str) -> bool {
    status == "done" || status == "canceled"
}

pub fn slug(s: &str, extra: &str, max: usize) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = s.chars();
    chars.next().is_some_and(alnum)
        && s.len() <= max
        && chars.all(|c| alnum(c) || extra.contains(c))
}

pub fn len_ok(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n) && !s.contains('\0')
}

pub fn is_reserved_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|r| r.starts_with(':'))
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
            .is_none_or(|p| PRIORITIES.contains(&p))
        && f.owner.as_deref().is_none_or(|o| len_ok(o, 1, 64))
        && f.dedupe_key.as_deref().is_none_or(|k| len_ok(k, 1, 256))
}

fn complete(f: &Fields) -> bool {
    f.env.is_some() && f.service.is_some() && f.category.is_some() && f.title.is_some()
}

pub fn item_json(i: &Item) -> Value {
    json!({
        "id": i.id, "env": i.env, "service": i.service, "category": i.category,
        "title": i.title, "description": i.description, "priority": i.priority,
        "status": i.status, "owner": i.owner, "due_date": i.due_date, "source": i.source,
        "dedupe_key": i.dedupe_key, "tags": i.tags, "meta": i.meta,
        "created_at": i.created_at, "updated_at": i.updated_at,
    })
}

pub fn event_json(item: &str, e: &Event) -> Value {
    json!({"item_id": item, "ts": e.ts, "type": e.kind, "message": e.message})
}

/// A category's (priority, due_days, owner).
pub fn category(name: &str) -> Option<(&'static str, i64, &'static str)> {
    CATEGORIES
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1, c.2, c.3))
}

impl Model {
    pub fn new(now: DateTime<Utc>) -> Model {
        Model {
            now,
            items: BTreeMap::new(),
            next_id: 0,
            platform: BTreeMap::new(),
            risk: BTreeMap::new(),
        }
    }

    pub fn today(&self) -> String {
        date(self.now)
    }

    pub fn due_in(&self, days: i64) -> String {
        date(self.now + Duration::days(days))
    }

    pub fn by_key(&self, key: &str) -> Option<usize> {
        self.items
            .iter()
            .find(|(_, i)| i.dedupe_key == key)
            .map(|(n, _)| *n)
    }

    fn by_id(&self, id: &str) -> Option<usize> {
        self.items.iter().find(|(_, i)| i.id == id).map(|(n, _)| *n)
    }

    /// `create`: a new open item with its category's defaults and a `created` event. A
    /// reserved dedupe key needs the admin entitlement (`forbidden`), a taken one is a
    /// `conflict`.
    pub fn create(&mut self, f: Fields, admin: bool) -> Answer {
        if !complete(&f) || !fields_valid(&f) {
            return Err("invalid_input");
        }
        if let Some(k) = f.dedupe_key.as_deref() {
            if is_reserved_key(k) && !admin {
                return Err("forbidden");
            }
            if self.by_key(k).is_some() {
                return Err("conflict");
            }
        }
        let n = self.new_item(&f);
        Ok(item_json(&self.items[&n]))
    }

    /// A manual item from complete, valid fields.
    fn new_item(&mut self, f: &Fields) -> usize {
        let cat = f.category.clone().unwrap_or_default();
        let (priority, due_days, owner) = category(&cat).expect("validated");
        let mut item = self.blank(
            f.env.clone().unwrap_or_default(),
            f.service.clone().unwrap_or_default(),
            cat,
            f.title.clone().unwrap_or_default(),
        );
        item.priority = f.priority.clone().unwrap_or_else(|| priority.to_owned());
        item.owner = f.owner.clone().unwrap_or_else(|| owner.to_owned());
        item.due_date = self.due_in(due_days);
        if let Some(k) = &f.dedupe_key {
            item.dedupe_key = k.clone();
        }
        self.insert(item)
    }

    /// A new item with the create defaults (no tags, no meta; [`Model::insert`] gives it its
    /// id and, when it has none, the key `manual:{id}`) and its `created` event.
    pub fn blank(&self, env: String, service: String, category: String, title: String) -> Item {
        let now = ts(self.now);
        Item {
            dedupe_key: String::new(),
            id: String::new(),
            env,
            service,
            category,
            title,
            description: String::new(),
            priority: String::new(),
            status: "open".into(),
            owner: String::new(),
            due_date: String::new(),
            source: "manual".into(),
            tags: Vec::new(),
            meta: Map::new(),
            created_at: now.clone(),
            updated_at: now.clone(),
            events: vec![Event {
                ts: now,
                kind: "created",
                message: String::new(),
            }],
        }
    }

    /// Stores a new item under the next model id (`m0`, `m1`, …).
    pub fn insert(&mut self, mut item: Item) -> usize {
        let n = self.next_id;
        self.next_id += 1;
        item.id = format!("m{n}");
        if item.dedupe_key.is_empty() {
            item.dedupe_key = format!("manual:{}", item.id);
        }
        self.items.insert(n, item);
        n
    }

    /// Records an update of item `n` to `new`: an `updated` event when a field other than the
    /// owner changed, an `owner_changed` event when the owner did. Returns whether anything
    /// changed (`updated_at` moves only then).
    pub fn update(&mut self, n: usize, mut new: Item) -> bool {
        let old = &self.items[&n];
        let now = ts(self.now);
        let mut others = new.clone();
        others.owner = old.owner.clone();
        others.events = old.events.clone();
        others.updated_at = old.updated_at.clone();
        if others != *old {
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
            return false;
        }
        new.updated_at = now;
        self.items.insert(n, new);
        true
    }

    /// `upsert` by `dedupe_key`: update the holder (last writer wins, field by field) or
    /// create. `{"action": created|updated|unchanged, "item": …}`. Creating under a reserved
    /// key needs the admin entitlement; updating the item that holds it does not.
    pub fn upsert(&mut self, f: Fields, admin: bool) -> Answer {
        if f.dedupe_key.is_none() || !fields_valid(&f) {
            return Err("invalid_input");
        }
        let key = f.dedupe_key.clone().unwrap_or_default();
        let Some(n) = self.by_key(&key) else {
            if is_reserved_key(&key) && !admin {
                return Err("forbidden");
            }
            if !complete(&f) {
                return Err("invalid_input");
            }
            let n = self.new_item(&f);
            return Ok(json!({"action": "created", "item": item_json(&self.items[&n])}));
        };
        let mut new = self.items[&n].clone();
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
        let action = if self.update(n, new) {
            "updated"
        } else {
            "unchanged"
        };
        Ok(json!({"action": action, "item": item_json(&self.items[&n])}))
    }

    /// The item an id names: `invalid_input` for a malformed id, `not_found` for a free one.
    pub fn find(&self, id: &str) -> Result<usize, &'static str> {
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

    /// `cleanup`: deletes terminal items last updated before now minus the retention. A dry
    /// run deletes nothing and names what would go, in list order (`tie` as in [`read`]).
    pub fn cleanup(
        &mut self,
        retention_days: Option<i64>,
        dry_run: bool,
        tie: &dyn Fn(&str) -> String,
    ) -> Answer {
        let days = retention_days.unwrap_or(RETENTION_DAYS);
        let cutoff = ts(self.now - Duration::days(days));
        let mut doomed: Vec<&Item> = self
            .items
            .values()
            .filter(|i| terminal(&i.status) && i.updated_at < cutoff)
            .collect();
        let deleted = doomed.len();
        if dry_run {
            doomed.sort_by_key(|i| read::list_order(i, tie));
            let would: Vec<Value> = doomed
                .iter()
                .map(|i| {
                    json!({"id": i.id, "title": i.title, "env": i.env, "status": i.status,
                    "updated_at": i.updated_at})
                })
                .collect();
            return Ok(
                json!({"deleted": deleted, "dry_run": true, "cutoff": cutoff, "would_delete": would}),
            );
        }
        self.items
            .retain(|_, i| !(terminal(&i.status) && i.updated_at < cutoff));
        Ok(json!({"deleted": deleted, "dry_run": false, "cutoff": cutoff}))
    }
}
