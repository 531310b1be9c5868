//! The actions (see `docs/actions.md`) over a [`BacklogStore`]: create, upsert, get, list, events,
//! set_status, add_comment, cleanup, and [`execute`], the JSON dispatcher in front of them
//! and of `dashboard` ([`crate::dashboard`]) and generation ([`crate::generate`]).
//!
//! Owns the rules: defaults on create, dedupe conflicts, upsert matching and change detection,
//! lifecycle transitions, and which events each change writes. Every item change makes
//! exactly one `store.write(Some(&item), &events)` call, and every event bumps the item's
//! `updated_at` to the event's `ts`.
//!
//! Time, randomness, the actor and access to the reports directory come only from [`Ctx`]: an
//! event's actor is never taken from params.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::dashboard;
use crate::digest::Reports;
use crate::error::Error;
use crate::generate;
use crate::ids::{self, Entropy};
use crate::list::{ListQuery, MAX_LIMIT};
use crate::model::{Event, EventType, Item, Source, Status};
use crate::params::{
    AddCommentParams, CleanupParams, CreateParams, DailyParams, DashboardParams, EventsParams,
    GetParams, Params, SetStatusParams, UpsertParams, WeeklyParams,
};
use crate::policy::Policy;
use crate::store::BacklogStore;
use crate::time;
use crate::validate;

type Result<T> = std::result::Result<T, Error>;

/// The actions [`execute`] knows, in `describe()` order.
pub const ACTIONS: &[&str] = &[
    "create",
    "upsert",
    "get",
    "list",
    "events",
    "set_status",
    "add_comment",
    "dashboard",
    "auto_generate_weekly",
    "auto_generate_daily",
    "cleanup",
];

/// Everything an action needs besides the store and its params.
pub struct Ctx<'a> {
    /// The authenticated agent id; becomes every event's `actor`.
    pub actor: &'a str,
    /// The current time (pinned in tests).
    pub now: DateTime<Utc>,
    /// The backlog policy in force.
    pub policy: &'a Policy,
    /// Source of item and event ids.
    pub entropy: &'a mut dyn Entropy,
    /// Read access to the reports directory, when this call was granted it (generation
    /// needs it; without it generation fails with `forbidden`).
    pub reports: Option<&'a mut dyn Reports>,
    /// Whether the caller may create items with a dedupe key in the generators' namespace
    /// ([`generate::is_reserved_key`]): it holds [`RESERVED_KEYS_ENTITLEMENT`]. Default false.
    pub reserved_keys: bool,
}

/// The entitlement that lets `create`/`upsert` use a dedupe key in the generators' namespace.
pub const RESERVED_KEYS_ENTITLEMENT: &str = "tools.backlog.admin";

impl<'a> Ctx<'a> {
    /// A context without access to the reports directory.
    pub fn new(
        actor: &'a str,
        now: DateTime<Utc>,
        policy: &'a Policy,
        entropy: &'a mut dyn Entropy,
    ) -> Self {
        Ctx {
            actor,
            now,
            policy,
            entropy,
            reports: None,
            reserved_keys: false,
        }
    }

    /// This context with the caller's right to use reserved dedupe keys set.
    pub fn with_reserved_keys(mut self, allowed: bool) -> Self {
        self.reserved_keys = allowed;
        self
    }

    /// `forbidden` unless this caller may give an item the dedupe key `key`.
    fn check_key(&self, key: &str) -> Result<()> {
        if self.reserved_keys || !generate::is_reserved_key(self.policy, key) {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "dedupe_key {} is in the namespace of generated items (`{}:…`); only callers holding {RESERVED_KEYS_ENTITLEMENT} may create items there",
            validate::shown(key),
            self.policy.dedupe.key_prefix
        )))
    }

    /// This context with read access to the reports directory through `reports`.
    pub fn with_reports(mut self, reports: &'a mut dyn Reports) -> Self {
        self.reports = Some(reports);
        self
    }

    /// `now` in the stored timestamp form.
    pub fn ts(&self) -> String {
        time::format_ts(self.now)
    }

    /// Today (UTC) as `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        time::today(self.now)
    }

    /// A new event of `kind` on `item_id` at `ts`, by this context's actor.
    pub fn event(
        &mut self,
        item_id: &str,
        ts: &str,
        kind: EventType,
        message: String,
        meta: Map<String, Value>,
    ) -> Result<Event> {
        // The actor comes from the host, not the caller: a bad one is a host bug.
        validate::actor(self.actor)
            .map_err(|e| Error::internal(format!("call context: {}", e.message)))?;
        Ok(Event {
            id: ids::new_event_id(self.entropy),
            item_id: item_id.to_owned(),
            ts: ts.to_owned(),
            kind,
            actor: self.actor.to_owned(),
            message,
            meta,
        })
    }
}

fn to_json<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| Error::internal(format!("cannot serialize result: {e}")))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Runs `action` with JSON `params`; returns the result JSON. Unknown action → `not_found`.
pub fn execute(
    store: &mut dyn BacklogStore,
    action: &str,
    params: &Value,
    ctx: &mut Ctx<'_>,
) -> Result<Value> {
    let policy = ctx.policy;
    match action {
        "create" => to_json(&create(
            store,
            CreateParams::from_json(params, policy)?,
            ctx,
        )?),
        "upsert" => {
            let p = UpsertParams::from_json(params, policy)?;
            upsert(store, p, UpsertMode::Manual, ctx)?.to_json()
        }
        "get" => get(store, GetParams::from_json(params, policy)?, ctx)?.to_json(),
        "list" => {
            let page = list(store, ListQuery::from_json(params, policy)?, ctx)?.to_json()?;
            Ok(mark_degraded(store, page))
        }
        "events" => {
            let evs = events(store, EventsParams::from_json(params, policy)?, ctx)?;
            Ok(json!({ "events": to_json(&evs)? }))
        }
        "set_status" => to_json(&set_status(
            store,
            SetStatusParams::from_json(params, policy)?,
            ctx,
        )?),
        "add_comment" => to_json(&add_comment(
            store,
            AddCommentParams::from_json(params, policy)?,
            ctx,
        )?),
        "dashboard" => {
            let d = dashboard::dashboard(store, DashboardParams::from_json(params, policy)?, ctx)?;
            Ok(mark_degraded(store, d.to_json()?))
        }
        "auto_generate_weekly" => Ok(generate::auto_generate_weekly(
            store,
            WeeklyParams::from_json(params, policy)?,
            ctx,
        )?
        .to_json()),
        "auto_generate_daily" => {
            Ok(
                generate::auto_generate_daily(store, DailyParams::from_json(params, policy)?, ctx)?
                    .to_json(),
            )
        }
        "cleanup" => Ok(cleanup(store, CleanupParams::from_json(params, policy)?, ctx)?.to_json()),
        _ => Err(Error::not_found(format!(
            "backlog_tool has no action {}; actions: {}",
            validate::shown(action),
            ACTIONS.join(", ")
        ))),
    }
}

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

/// `list` and `dashboard` answered by a fallback carry `"degraded": true` and its backend.
fn mark_degraded(store: &dyn BacklogStore, mut v: Value) -> Value {
    if store.degraded()
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("degraded".into(), Value::Bool(true));
        obj.insert("backend".into(), Value::String(store.backend().into()));
    }
    v
}

/// A fresh item id that no stored item uses (retries a few times on collision).
fn fresh_item_id(store: &mut dyn BacklogStore, ctx: &mut Ctx<'_>) -> Result<String> {
    for _ in 0..16 {
        let id = ids::new_item_id(ctx.entropy);
        if store.get(&id)?.is_none() {
            return Ok(id);
        }
    }
    Err(Error::internal(
        "could not find a free item id: the entropy source keeps repeating",
    ))
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
    let id = match id {
        Some(id) => id,
        None => fresh_item_id(store, ctx)?,
    };
    let dedupe_key = match p.dedupe_key {
        Some(k) => k,
        None => {
            let k = format!("manual:{id}");
            if let Some(holder) = store.find_by_dedupe_key(&k)? {
                return Err(dedupe_taken(&k, &holder.id));
            }
            k
        }
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

/// Result of [`get`].
#[derive(Debug, Clone, PartialEq)]
pub struct GetResult {
    pub item: Item,
    /// Present when `include_events` was asked: oldest first, at most [`MAX_LIMIT`].
    pub events: Option<Vec<Event>>,
}

impl GetResult {
    /// The item object, plus key `events` when requested.
    pub fn to_json(&self) -> Result<Value> {
        let mut v = obj(to_json(&self.item)?);
        if let Some(evs) = &self.events {
            v.insert("events".into(), to_json(evs)?);
        }
        Ok(Value::Object(v))
    }
}

/// `get`: one item, optionally with its events.
pub fn get(store: &mut dyn BacklogStore, p: GetParams, ctx: &Ctx<'_>) -> Result<GetResult> {
    p.validate(ctx.policy)?;
    let item = require_item(store, &p.id)?;
    let events = if p.include_events {
        Some(store.events(&p.id, MAX_LIMIT)?)
    } else {
        None
    };
    Ok(GetResult { item, events })
}

/// Result of [`list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    pub items: Vec<Item>,
    /// Every match, not just this page.
    pub total: usize,
    /// Offset of the next page, `None` on the last page.
    pub next_offset: Option<usize>,
}

impl ListResult {
    /// `{"items":[…],"total":N,"next_offset":N|null}`.
    pub fn to_json(&self) -> Result<Value> {
        Ok(json!({
            "items": to_json(&self.items)?,
            "total": self.total,
            "next_offset": self.next_offset,
        }))
    }
}

/// `list`: filtered, sorted by (priority, due_date, id), paged.
pub fn list(store: &mut dyn BacklogStore, q: ListQuery, ctx: &Ctx<'_>) -> Result<ListResult> {
    q.validate(ctx.policy)?;
    let page = store.list(&q, &ctx.today())?;
    let next_offset = q.next_offset(page.items.len(), page.total);
    Ok(ListResult {
        items: page.items,
        total: page.total,
        next_offset,
    })
}

/// `events`: the first `limit` events of an existing item, oldest first.
pub fn events(store: &mut dyn BacklogStore, p: EventsParams, ctx: &Ctx<'_>) -> Result<Vec<Event>> {
    p.validate(ctx.policy)?;
    require_item(store, &p.id)?;
    Ok(store.events(&p.id, p.limit)?)
}

/// Whether the lifecycle allows `from` → `to` (a same-status "move" is always allowed).
pub fn transition_allowed(from: Status, to: Status) -> bool {
    from == to || !from.is_terminal() || to == Status::Open
}

/// `set_status`: moves the item along the lifecycle; returns the item.
pub fn set_status(
    store: &mut dyn BacklogStore,
    p: SetStatusParams,
    ctx: &mut Ctx<'_>,
) -> Result<Item> {
    p.validate(ctx.policy)?;
    let mut item = require_item(store, &p.id)?;
    let (from, to) = (item.status, p.status);
    let comment = p.comment.filter(|c| !c.is_empty());
    let ts = ctx.ts();
    let ev = if from == to {
        // Nothing to change; a comment is still worth recording.
        let Some(c) = comment else {
            return Ok(item);
        };
        ctx.event(&item.id, &ts, EventType::Commented, c, Map::new())?
    } else {
        if !transition_allowed(from, to) {
            return Err(Error::conflict(format!(
                "cannot move {} from {from} to {to}: a {from} item can only be reopened (status open)",
                item.id
            )));
        }
        item.status = to;
        let meta = obj(json!({ "from": from.as_str(), "to": to.as_str() }));
        let message = comment.unwrap_or_default();
        ctx.event(&item.id, &ts, EventType::StatusChanged, message, meta)?
    };
    item.updated_at = ts;
    store.write(Some(&item), &[ev])?;
    Ok(item)
}

/// `add_comment`: a `commented` event on an existing item; returns the event.
pub fn add_comment(
    store: &mut dyn BacklogStore,
    p: AddCommentParams,
    ctx: &mut Ctx<'_>,
) -> Result<Event> {
    p.validate(ctx.policy)?;
    let mut item = require_item(store, &p.id)?;
    let ts = ctx.ts();
    let ev = ctx.event(&item.id, &ts, EventType::Commented, p.message, Map::new())?;
    item.updated_at = ts;
    store.write(Some(&item), std::slice::from_ref(&ev))?;
    Ok(ev)
}

/// Result of [`cleanup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupResult {
    /// Items deleted (or, in a dry run, that would be).
    pub deleted: usize,
    /// Whether this was a dry run (nothing deleted).
    pub dry_run: bool,
    /// Terminal items last updated before this instant go (fixed-width timestamp).
    pub cutoff: String,
    /// Dry run only: the first [`DRY_RUN_SHOWN`] items that would go, each
    /// `{"id","title","env","status","updated_at"}` (`deleted` is the full count).
    pub would_delete: Option<Vec<Value>>,
}

/// How many items a dry run of `cleanup` names.
pub const DRY_RUN_SHOWN: usize = 1000;

impl CleanupResult {
    /// `{"deleted":N,"dry_run":bool,"cutoff":"…"}`, plus `"would_delete":[…]` on a dry run.
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({ "deleted": self.deleted, "dry_run": self.dry_run, "cutoff": self.cutoff });
        if let (Some(list), Value::Object(m)) = (&self.would_delete, &mut v) {
            m.insert("would_delete".into(), Value::Array(list.clone()));
        }
        v
    }
}

/// The first [`DRY_RUN_SHOWN`] items a cleanup at `cutoff` would delete, by the store's
/// list order (terminal items, paged, filtered by the shared [`is_expired`] rule).
///
/// [`is_expired`]: crate::store::is_expired
fn doomed(store: &mut dyn BacklogStore, cutoff: &str, today: &str) -> Result<Vec<Value>> {
    let cut = crate::store::parse_cutoff(cutoff)?;
    let mut query = ListQuery {
        status: vec![Status::Done, Status::Canceled],
        limit: MAX_LIMIT,
        ..ListQuery::default()
    };
    let mut out = Vec::new();
    loop {
        let page = store.list(&query, today)?;
        for i in &page.items {
            if crate::store::is_expired(i.status, &i.updated_at, cut) {
                out.push(json!({
                    "id": i.id, "title": i.title, "env": i.env,
                    "status": i.status, "updated_at": i.updated_at,
                }));
                if out.len() == DRY_RUN_SHOWN {
                    return Ok(out);
                }
            }
        }
        query.offset += page.items.len();
        if page.items.is_empty() || query.offset >= page.total {
            return Ok(out);
        }
    }
}

/// The earliest timestamp [`cleanup_cutoff`] returns: a retention reaching further back
/// than year 0 keeps everything.
pub const MIN_CUTOFF: &str = "0000-01-01T00:00:00.000000Z";

/// `now` minus `retention_days` days, in the stored fixed-width form; [`MIN_CUTOFF`] if that
/// is before year 0.
pub fn cleanup_cutoff(now: DateTime<Utc>, retention_days: u32) -> String {
    chrono::TimeDelta::try_days(i64::from(retention_days))
        .and_then(|d| now.checked_sub_signed(d))
        .filter(|t| chrono::Datelike::year(t) >= 0)
        .map(time::format_ts)
        .unwrap_or_else(|| MIN_CUTOFF.to_owned())
}

/// `cleanup`: deletes `done`/`canceled` items (with their events) whose `updated_at` is
/// older than `retention_days` (default: the policy's) before now. Destructive unless
/// `dry_run`.
pub fn cleanup(
    store: &mut dyn BacklogStore,
    p: CleanupParams,
    ctx: &Ctx<'_>,
) -> Result<CleanupResult> {
    p.validate(ctx.policy)?;
    let days = p
        .retention_days
        .unwrap_or(ctx.policy.defaults.retention_days);
    let cutoff = cleanup_cutoff(ctx.now, days);
    let deleted = store.cleanup(&cutoff, p.dry_run)?;
    let would_delete = if p.dry_run {
        Some(doomed(store, &cutoff, &ctx.today())?)
    } else {
        None
    };
    Ok(CleanupResult {
        deleted,
        dry_run: p.dry_run,
        cutoff,
        would_delete,
    })
}

#[cfg(test)]
mod tests;
