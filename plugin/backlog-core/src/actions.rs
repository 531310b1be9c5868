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
use serde_json::{Map, Value, json};

pub use crate::ctx::{Ctx, RESERVED_KEYS_ENTITLEMENT};
use crate::ctx::{obj, to_json, to_text};
use crate::dashboard::Dashboard;
use crate::error::Error;
use crate::generate;
use crate::list::{ListQuery, MAX_LIMIT};
use crate::model::{Event, EventType, Item, Status};
use crate::params::{
    AddCommentParams, CleanupParams, CreateParams, DailyParams, DashboardParams, EventsParams,
    GetParams, Params, SetStatusParams, UpsertParams, WeeklyParams,
};
use crate::store::BacklogStore;
use crate::time;
use crate::upsert::require_item;
pub use crate::upsert::{UpsertAction, UpsertMode, UpsertOutcome, create, upsert, would_change};
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
            let d = dashboard(store, DashboardParams::from_json(params, policy)?, ctx)?;
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

/// [`execute`]'s answer as JSON text, the same text `execute(…)?.to_string()` gives. `get`,
/// the most frequent call, is serialized straight to text (building its tree and then
/// writing it was a quarter of a warm `get` inside the guest); every other action goes
/// through its `Value`.
pub fn execute_text(
    store: &mut dyn BacklogStore,
    action: &str,
    params: &Value,
    ctx: &mut Ctx<'_>,
) -> Result<String> {
    if action == "get" {
        return get(store, GetParams::from_json(params, ctx.policy)?, ctx)?.to_text();
    }
    Ok(execute(store, action, params, ctx)?.to_string())
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

/// `dashboard`: the store's dashboard of `p.env`, stamped with the context's time.
pub fn dashboard(
    store: &mut dyn BacklogStore,
    p: DashboardParams,
    ctx: &Ctx<'_>,
) -> Result<Dashboard> {
    p.validate(ctx.policy)?;
    let mut d = store.dashboard(&p.env, &ctx.today(), ctx.policy)?;
    d.generated_at = ctx.ts();
    Ok(d)
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

    /// [`GetResult::to_json`] as text, without the tree: the item's fields in their order,
    /// then `events` when requested.
    pub fn to_text(&self) -> Result<String> {
        #[derive(serde::Serialize)]
        struct Text<'a> {
            #[serde(flatten)]
            item: &'a Item,
            #[serde(skip_serializing_if = "Option::is_none")]
            events: Option<&'a Vec<Event>>,
        }
        to_text(&Text {
            item: &self.item,
            events: self.events.as_ref(),
        })
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
