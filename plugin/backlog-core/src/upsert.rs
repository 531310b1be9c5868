//! Writing items: `create` (defaults from the policy, dedupe conflicts) and `upsert`
//! (matching by id, then dedupe key; change detection; what generation may not touch). Every
//! item change makes exactly one `store.write(Some(&item), &events)` call, and every event
//! bumps the item's `updated_at` to the event's `ts`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::ctx::{Ctx, obj, to_json};
use crate::error::Error;
use crate::ids;
use crate::model::{EventType, Item, Source, Status};
use crate::params::{CreateParams, Params, UpsertParams};
use crate::store::BacklogStore;
use crate::time;
use crate::validate;

type Result<T> = std::result::Result<T, Error>;

/// The item `id`, or `not_found` "item bl_… not found" — `unavailable` instead when the store
/// is a fallback that cannot know (see [`BacklogStore::absent_reason`]).
pub fn require_item(store: &mut dyn BacklogStore, id: &str) -> Result<Item> {
    match store.get(id)? {
        Some(item) => Ok(item),
        None => Err(missing_item(store, id)),
    }
}

/// The error for item `id` that the store did not find.
fn missing_item(store: &dyn BacklogStore, id: &str) -> Error {
    match store.absent_reason(id) {
        Some(why) => Error::unavailable(why),
        None => Error::not_found(format!("item {id} not found")),
    }
}

/// A fresh item id that no stored item uses (retries a few times on collision).
fn fresh_item_id(store: &mut dyn BacklogStore, ctx: &mut Ctx<'_>) -> Result<String> {
    for _ in 0..16 {
        let id = ids::new_item_id(ctx.entropy);
        if store.claim_new_id(&id)? {
            return Ok(id);
        }
    }
    Err(no_free_id())
}

fn no_free_id() -> Error {
    Error::internal("could not find a free item id: the entropy source keeps repeating")
}

/// The dedupe key of an item created without one.
fn manual_key(id: &str) -> String {
    format!("manual:{id}")
}

/// A fresh id and its manual dedupe key. A store that claims ids without a lookup may hand
/// out the id of an item created without a key; its key then shows the id is taken, and the
/// next id is drawn.
fn fresh_manual_id(store: &mut dyn BacklogStore, ctx: &mut Ctx<'_>) -> Result<(String, String)> {
    for _ in 0..16 {
        let id = fresh_item_id(store, ctx)?;
        let k = manual_key(&id);
        match store.find_by_dedupe_key(&k)? {
            None => return Ok((id, k)),
            Some(holder) if holder.id == id => continue,
            Some(holder) => return Err(dedupe_taken(&k, &holder.id)),
        }
    }
    Err(no_free_id())
}

/// `unavailable`: the fallback store of this call cannot tell whether `key` is taken.
fn unknown_key(key: &str) -> Error {
    Error::unavailable(format!(
        "Postgres is down and the JSONL fallback of the auto backend cannot tell whether dedupe_key {} names an item in Postgres: retry when Postgres is back",
        validate::shown(key)
    ))
}

fn dedupe_taken(key: &str, holder: &str) -> Error {
    Error::conflict(format!(
        "dedupe_key {} already names item {holder}; use upsert to update it",
        validate::shown(key)
    ))
}

/// `create`: a new item with the category's defaults, plus its `created` event.
pub fn create(store: &mut dyn BacklogStore, p: CreateParams, ctx: &mut Ctx<'_>) -> Result<Item> {
    p.validate(ctx.policy)?;
    if let Some(k) = &p.dedupe_key {
        ctx.check_key(k)?;
    }
    create_item(store, p, None, ctx)
}

/// Creates an item from validated params, with `id` if given (upsert) or a fresh one.
fn create_item(
    store: &mut dyn BacklogStore,
    p: CreateParams,
    id: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Result<Item> {
    let category = ctx.policy.category(&p.category).ok_or_else(|| {
        // Unreachable after validate; kept as an error rather than a panic.
        Error::invalid_input(format!("unknown category {}", validate::shown(&p.category)))
    })?;
    if let Some(key) = &p.dedupe_key {
        if let Some(holder) = store.find_by_dedupe_key(key)? {
            return Err(dedupe_taken(key, &holder.id));
        }
        if store.degraded() {
            return Err(unknown_key(key));
        }
    }
    let (id, dedupe_key) = match (id, p.dedupe_key) {
        (Some(id), Some(k)) => (id, k),
        (None, Some(k)) => (fresh_item_id(store, ctx)?, k),
        (Some(id), None) => {
            let k = manual_key(&id);
            if let Some(holder) = store.find_by_dedupe_key(&k)? {
                return Err(dedupe_taken(&k, &holder.id));
            }
            (id, k)
        }
        (None, None) => fresh_manual_id(store, ctx)?,
    };
    let due_date = match p.due_date {
        Some(d) => d,
        None => {
            let today = ctx.now.date_naive();
            let due = time::add_days(today, i64::from(category.due_days))
                .ok_or_else(|| Error::internal("due date out of range"))?;
            time::format_date(due)
        }
    };
    let owner = p
        .owner
        .unwrap_or_else(|| ctx.policy.owner_for(&p.service, &p.category));
    let ts = ctx.ts();
    let item = Item {
        id,
        created_at: ts.clone(),
        updated_at: ts.clone(),
        env: p.env,
        service: p.service,
        priority: p.priority.unwrap_or(category.priority),
        category: p.category,
        title: p.title,
        description: p.description.unwrap_or_default(),
        status: Status::Open,
        owner,
        due_date,
        source: p.source.unwrap_or(Source::Manual),
        dedupe_key,
        evidence_refs: p.evidence_refs.unwrap_or_default(),
        tags: p.tags.unwrap_or_default(),
        meta: p.meta.unwrap_or_default(),
    };
    let ev = ctx.event(&item.id, &ts, EventType::Created, String::new(), Map::new())?;
    store.write(Some(&item), &[ev])?;
    Ok(item)
}

/// Who is upserting: a person/agent (every given field counts) or generation (human-owned
/// fields of an existing item are left alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertMode {
    /// The `upsert` action: overwrite the fields given.
    Manual,
    /// Generation: on an existing item keep `owner`, `status`, `priority`, `due_date`; refresh
    /// `title`, `description`, `evidence_refs`, `meta`; add new `tags` after the existing ones.
    Generation,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertAction {
    Created,
    Updated,
    Unchanged,
}

impl UpsertAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpsertAction::Created => "created",
            UpsertAction::Updated => "updated",
            UpsertAction::Unchanged => "unchanged",
        }
    }
}

/// Result of [`upsert`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertOutcome {
    pub action: UpsertAction,
    /// The item after the upsert.
    pub item: Item,
}

impl UpsertOutcome {
    /// `{"action": …, "item": …}`.
    pub fn to_json(&self) -> Result<Value> {
        Ok(json!({ "action": self.action.as_str(), "item": to_json(&self.item)? }))
    }
}

/// `upsert`: find by `id`, else by `dedupe_key`; update the match or create.
pub fn upsert(
    store: &mut dyn BacklogStore,
    p: UpsertParams,
    mode: UpsertMode,
    ctx: &mut Ctx<'_>,
) -> Result<UpsertOutcome> {
    p.validate(ctx.policy)?;
    let by_id = match &p.id {
        Some(id) => match store.get(id)? {
            Some(item) => Some(item),
            // A fallback that may not hold it must not create (or claim to miss) it.
            None if store.absent_reason(id).is_some() => return Err(missing_item(store, id)),
            None => None,
        },
        None => None,
    };
    let by_key = match &p.dedupe_key {
        Some(k) => store.find_by_dedupe_key(k)?,
        None => None,
    };
    // On a fallback that may not hold every item, a key it does not know may be held in
    // Postgres: creating under it, or moving an item onto it, could duplicate it.
    if let Some(k) = &p.dedupe_key
        && by_key.is_none()
        && store.degraded()
    {
        return Err(unknown_key(k));
    }
    let key_shown = || {
        p.dedupe_key
            .as_deref()
            .map(validate::shown)
            .unwrap_or_default()
    };
    let existing = match (&p.id, by_id, by_key) {
        (Some(id), Some(item), Some(other)) if other.id != item.id => {
            return Err(Error::conflict(format!(
                "`id` {id} and `dedupe_key` {} name two different items ({id} and {})",
                key_shown(),
                other.id
            )));
        }
        (Some(_), Some(item), _) => Some(item),
        (Some(id), None, Some(other)) => {
            return Err(Error::conflict(format!(
                "`id` {id} names no item, but `dedupe_key` {} names item {}",
                key_shown(),
                other.id
            )));
        }
        (Some(id), None, None) if p.dedupe_key.is_none() => {
            return Err(Error::not_found(format!("item {id} not found")));
        }
        (Some(_), None, None) => None,
        (None, _, by_key) => by_key,
    };
    // Generated keys are reserved: a manual upsert may not create an item under one or move
    // an item onto one (updating an item that already holds its key is fine).
    if mode == UpsertMode::Manual
        && let Some(k) = &p.dedupe_key
        && existing.as_ref().is_none_or(|old| &old.dedupe_key != k)
    {
        ctx.check_key(k)?;
    }
    match existing {
        None => {
            let c = p.to_create()?;
            let item = create_item(store, c, p.id, ctx)?;
            Ok(UpsertOutcome {
                action: UpsertAction::Created,
                item,
            })
        }
        Some(old) => update_item(store, old, p, mode, ctx),
    }
}

/// `old` with the update `p` applied under `mode`, and the sorted names of the fields that
/// changed (`owner` is not among them: it has its own event).
fn merge(old: &Item, p: UpsertParams, mode: UpsertMode) -> Result<(Item, Vec<&'static str>)> {
    let mut new = old.clone();
    let generation = mode == UpsertMode::Generation;
    if let Some(x) = p.env {
        new.env = x;
    }
    if let Some(x) = p.service {
        new.service = x;
    }
    if let Some(x) = p.category {
        new.category = x;
    }
    if let Some(x) = p.title {
        new.title = x;
    }
    if let Some(x) = p.description {
        new.description = x;
    }
    if let Some(x) = p.source {
        new.source = x;
    }
    if let Some(x) = p.dedupe_key {
        new.dedupe_key = x;
    }
    if let Some(x) = p.evidence_refs {
        new.evidence_refs = x;
    }
    if let Some(x) = p.meta {
        new.meta = x;
    }
    if let Some(tags) = p.tags {
        if generation {
            for t in tags {
                if !new.tags.contains(&t) {
                    new.tags.push(t);
                }
            }
            validate::tags(&new.tags)?;
        } else {
            new.tags = tags;
        }
    }
    if !generation {
        if let Some(x) = p.priority {
            new.priority = x;
        }
        if let Some(x) = p.due_date {
            new.due_date = x;
        }
        if let Some(x) = p.owner {
            new.owner = x;
        }
    }

    // Typed fields compare as parsed values; maps compare by content, not key order.
    let mut fields: Vec<&'static str> = [
        ("category", old.category != new.category),
        ("dedupe_key", old.dedupe_key != new.dedupe_key),
        ("description", old.description != new.description),
        ("due_date", old.due_date != new.due_date),
        ("env", old.env != new.env),
        ("evidence_refs", old.evidence_refs != new.evidence_refs),
        ("meta", old.meta != new.meta),
        ("priority", old.priority != new.priority),
        ("service", old.service != new.service),
        ("source", old.source != new.source),
        ("tags", old.tags != new.tags),
        ("title", old.title != new.title),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    fields.sort_unstable();
    Ok((new, fields))
}

/// Whether upserting `p` into the existing item `old` under `mode` would change it (what
/// [`upsert`] would answer `updated` for). Reads and writes nothing.
pub fn would_change(old: &Item, p: &UpsertParams, mode: UpsertMode) -> Result<bool> {
    let (new, fields) = merge(old, p.clone(), mode)?;
    Ok(!fields.is_empty() || new.owner != old.owner)
}

fn update_item(
    store: &mut dyn BacklogStore,
    old: Item,
    p: UpsertParams,
    mode: UpsertMode,
    ctx: &mut Ctx<'_>,
) -> Result<UpsertOutcome> {
    let (mut new, fields) = merge(&old, p, mode)?;
    let ts = ctx.ts();
    let mut evs = Vec::new();
    if !fields.is_empty() {
        let meta = obj(json!({ "fields": fields }));
        evs.push(ctx.event(&new.id, &ts, EventType::Updated, String::new(), meta)?);
    }
    if old.owner != new.owner {
        let meta = obj(json!({ "from": old.owner, "to": new.owner }));
        evs.push(ctx.event(&new.id, &ts, EventType::OwnerChanged, String::new(), meta)?);
    }
    if evs.is_empty() {
        return Ok(UpsertOutcome {
            action: UpsertAction::Unchanged,
            item: old,
        });
    }
    new.updated_at = ts;
    store.write(Some(&new), &evs)?;
    Ok(UpsertOutcome {
        action: UpsertAction::Updated,
        item: new,
    })
}
