//! The typed per-action interfaces. Each converts its request record to the action's params
//! object and runs the same code as the generic `call`, then converts the JSON result back:
//! one implementation, two faces (a parity test proves they agree).

use serde_json::{Map, Value, json};

use crate::bindings::backlog_bridge::backlog::model::{
    Event, Evidence, Item, Priority, Source, Status,
};
use crate::bindings::backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError};
use crate::bindings::exports::backlog_bridge::backlog::{
    add_comment, cleanup, create_item, dashboard, generate, get_item, item_events, list_items,
    set_status, upsert_item,
};
use crate::component::{Component, run};

impl create_item::Guest for Component {
    fn create(r: create_item::CreateRequest, context: CallContext) -> Result<Item, ToolError> {
        let mut p = Params::default();
        p.put("env", r.env)
            .put("service", r.service)
            .put("category", r.category);
        p.put("title", r.title).opt("description", r.description);
        p.opt("priority", r.priority.map(priority))
            .opt("owner", r.owner);
        p.opt("due_date", r.due_date)
            .opt("dedupe_key", r.dedupe_key);
        p.evidence(r.evidence_refs)
            .opt("tags", r.tags)
            .meta(r.meta)?;
        p.opt("source", r.source.map(source));
        item(&run("create", &p.0, &context)?)
    }
}

impl upsert_item::Guest for Component {
    fn upsert(
        r: upsert_item::UpsertRequest,
        context: CallContext,
    ) -> Result<upsert_item::UpsertResponse, ToolError> {
        let mut p = Params::default();
        p.opt("id", r.id)
            .opt("env", r.env)
            .opt("service", r.service);
        p.opt("category", r.category).opt("title", r.title);
        p.opt("description", r.description)
            .opt("priority", r.priority.map(priority));
        p.opt("owner", r.owner)
            .opt("due_date", r.due_date)
            .opt("dedupe_key", r.dedupe_key);
        p.evidence(r.evidence_refs)
            .opt("tags", r.tags)
            .meta(r.meta)?;
        p.opt("source", r.source.map(source));
        let out = run("upsert", &p.0, &context)?;
        let action = match out.get("action").and_then(Value::as_str) {
            Some("created") => upsert_item::UpsertOutcome::Created,
            Some("updated") => upsert_item::UpsertOutcome::Updated,
            _ => upsert_item::UpsertOutcome::Unchanged,
        };
        Ok(upsert_item::UpsertResponse {
            action,
            item: item(field(&out, "item")?)?,
        })
    }
}

impl get_item::Guest for Component {
    fn get(
        r: get_item::GetRequest,
        context: CallContext,
    ) -> Result<get_item::GetResponse, ToolError> {
        let mut p = Params::default();
        p.put("id", r.id).put("include_events", r.include_events);
        let out = run("get", &p.0, &context)?;
        let events = match out.get("events") {
            Some(v) => Some(events(v)?),
            None => None,
        };
        Ok(get_item::GetResponse {
            item: item(&out)?,
            events,
        })
    }
}

impl list_items::Guest for Component {
    fn list(
        r: list_items::ListRequest,
        context: CallContext,
    ) -> Result<list_items::ListResponse, ToolError> {
        let mut p = Params::default();
        p.opt("env", r.env);
        if !r.status.is_empty() {
            p.put(
                "status",
                r.status.into_iter().map(status).collect::<Vec<_>>(),
            );
        }
        p.opt("priority", r.priority.map(priority))
            .opt("service", r.service);
        p.opt("owner", r.owner)
            .opt("category", r.category)
            .opt("due_before", r.due_before);
        p.opt("overdue", r.overdue)
            .opt("limit", r.limit)
            .opt("offset", r.offset);
        let out = run("list", &p.0, &context)?;
        Ok(list_items::ListResponse {
            items: field(&out, "items")?
                .as_array()
                .ok_or_else(|| shape("items"))?
                .iter()
                .map(item)
                .collect::<Result<_, _>>()?,
            total: field(&out, "total")?
                .as_u64()
                .ok_or_else(|| shape("total"))? as u32,
            next_offset: out
                .get("next_offset")
                .and_then(Value::as_u64)
                .map(|n| n as u32),
        })
    }
}

impl item_events::Guest for Component {
    fn events(
        r: item_events::EventsRequest,
        context: CallContext,
    ) -> Result<Vec<Event>, ToolError> {
        let mut p = Params::default();
        p.put("id", r.id).opt("limit", r.limit);
        events(field(&run("events", &p.0, &context)?, "events")?)
    }
}

impl set_status::Guest for Component {
    fn set_status(
        r: set_status::SetStatusRequest,
        context: CallContext,
    ) -> Result<Item, ToolError> {
        let mut p = Params::default();
        p.put("id", r.id)
            .put("status", status(r.status))
            .opt("comment", r.comment);
        item(&run("set_status", &p.0, &context)?)
    }
}

impl add_comment::Guest for Component {
    fn add_comment(
        r: add_comment::AddCommentRequest,
        context: CallContext,
    ) -> Result<Event, ToolError> {
        let mut p = Params::default();
        p.put("id", r.id).put("message", r.message);
        event(&run("add_comment", &p.0, &context)?)
    }
}

impl dashboard::Guest for Component {
    fn dashboard(
        r: dashboard::DashboardRequest,
        context: CallContext,
    ) -> Result<dashboard::DashboardResponse, ToolError> {
        let mut p = Params::default();
        p.opt("env", r.env);
        let out = run("dashboard", &p.0, &context)?;
        let count = |v: &Value, k: &str| -> Result<u32, ToolError> { number(field(v, k)?, k) };
        let sc = field(&out, "status_counts")?;
        let pc = field(&out, "priority_counts")?;
        Ok(dashboard::DashboardResponse {
            env: text(&out, "env")?,
            backend: text(&out, "backend")?,
            generated_at: text(&out, "generated_at")?,
            total: count(&out, "total")?,
            status_counts: dashboard::StatusCounts {
                open: count(sc, "open")?,
                in_progress: count(sc, "in_progress")?,
                blocked: count(sc, "blocked")?,
                done: count(sc, "done")?,
                canceled: count(sc, "canceled")?,
            },
            priority_counts: dashboard::PriorityCounts {
                p0: count(pc, "P0")?,
                p1: count(pc, "P1")?,
                p2: count(pc, "P2")?,
                p3: count(pc, "P3")?,
            },
            overdue_count: count(&out, "overdue_count")?,
            overdue: array(&out, "overdue")?
                .iter()
                .map(item)
                .collect::<Result<_, _>>()?,
            top_services: array(&out, "top_services")?
                .iter()
                .map(|s| {
                    Ok(dashboard::ServiceCount {
                        service: text(s, "service")?,
                        count: count(s, "count")?,
                    })
                })
                .collect::<Result<_, ToolError>>()?,
            alerts: array(&out, "alerts")?
                .iter()
                .map(|a| {
                    Ok(dashboard::Alert {
                        level: text(a, "level")?,
                        target: text(a, "target")?,
                        reason: text(a, "reason")?,
                        overdue_count: a
                            .get("overdue_count")
                            .and_then(Value::as_u64)
                            .map(|n| n as u32),
                        items: a.get("items").and_then(Value::as_array).map(|ids| {
                            ids.iter()
                                .filter_map(|i| i.as_str().map(str::to_owned))
                                .collect()
                        }),
                    })
                })
                .collect::<Result<_, ToolError>>()?,
        })
    }
}

impl generate::Guest for Component {
    fn auto_generate_weekly(
        r: generate::GenerateRequest,
        context: CallContext,
    ) -> Result<generate::GenerationOutcome, ToolError> {
        generation("auto_generate_weekly", r, &context)
    }

    fn auto_generate_daily(
        r: generate::GenerateRequest,
        context: CallContext,
    ) -> Result<generate::GenerationOutcome, ToolError> {
        generation("auto_generate_daily", r, &context)
    }
}

fn generation(
    action: &str,
    r: generate::GenerateRequest,
    context: &CallContext,
) -> Result<generate::GenerationOutcome, ToolError> {
    let mut p = Params::default();
    p.opt("env", r.env);
    let out = run(action, &p.0, context)?;
    if out.get("skipped").and_then(Value::as_bool) == Some(true) {
        return Ok(generate::GenerationOutcome::Skipped(text(&out, "reason")?));
    }
    let opt = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(generate::GenerationOutcome::Ran(
        generate::GenerationReport {
            week: opt("week"),
            date: opt("date"),
            env: text(&out, "env")?,
            digest: text(&out, "digest")?,
            created: number(field(&out, "created")?, "created")?,
            updated: number(field(&out, "updated")?, "updated")?,
            unchanged: number(field(&out, "unchanged")?, "unchanged")?,
            capped: number(field(&out, "capped")?, "capped")?,
            items: array(&out, "items")?
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            stale: field(&out, "stale")?
                .as_bool()
                .ok_or_else(|| shape("stale"))?,
        },
    ))
}

impl cleanup::Guest for Component {
    fn cleanup(
        r: cleanup::CleanupRequest,
        context: CallContext,
    ) -> Result<cleanup::CleanupResponse, ToolError> {
        let mut p = Params::default();
        p.opt("retention_days", r.retention_days)
            .opt("dry_run", r.dry_run);
        let out = run("cleanup", &p.0, &context)?;
        Ok(cleanup::CleanupResponse {
            deleted: number(field(&out, "deleted")?, "deleted")?,
            dry_run: field(&out, "dry_run")?
                .as_bool()
                .ok_or_else(|| shape("dry_run"))?,
            cutoff: text(&out, "cutoff")?,
        })
    }
}

fn number(v: &Value, key: &str) -> Result<u32, ToolError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| shape(key))
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, ToolError> {
    field(v, key)?.as_array().ok_or_else(|| shape(key))
}

/// Builds a params object; absent options stay absent.
#[derive(Default)]
struct Params(Value);

impl Params {
    fn put(&mut self, key: &str, v: impl Into<Value>) -> &mut Self {
        if !self.0.is_object() {
            self.0 = Value::Object(Map::new());
        }
        if let Value::Object(m) = &mut self.0 {
            m.insert(key.to_owned(), v.into());
        }
        self
    }

    fn opt<V: Into<Value>>(&mut self, key: &str, v: Option<V>) -> &mut Self {
        match v {
            Some(v) => self.put(key, v),
            None => self.put_nothing(),
        }
    }

    fn put_nothing(&mut self) -> &mut Self {
        if !self.0.is_object() {
            self.0 = Value::Object(Map::new());
        }
        self
    }

    fn evidence(&mut self, refs: Option<Vec<Evidence>>) -> &mut Self {
        let refs = refs
            .map(|refs| Value::Object(refs.into_iter().map(|e| (e.kind, json!(e.ids))).collect()));
        self.opt("evidence_refs", refs)
    }

    fn meta(&mut self, meta: Option<String>) -> Result<&mut Self, ToolError> {
        let meta = match meta {
            None => None,
            Some(text) => Some(serde_json::from_str::<Value>(&text).map_err(|e| ToolError {
                code: ErrorCode::InvalidInput,
                message: format!("`meta` is not valid JSON: {e}"),
            })?),
        };
        Ok(self.opt("meta", meta))
    }
}

fn priority(p: Priority) -> &'static str {
    match p {
        Priority::P0 => "P0",
        Priority::P1 => "P1",
        Priority::P2 => "P2",
        Priority::P3 => "P3",
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::InProgress => "in_progress",
        Status::Blocked => "blocked",
        Status::Done => "done",
        Status::Canceled => "canceled",
    }
}

fn source(s: Source) -> &'static str {
    match s {
        Source::Digest => "digest",
        Source::Risk => "risk",
        Source::Pressure => "pressure",
        Source::Manual => "manual",
    }
}

fn shape(what: &str) -> ToolError {
    ToolError {
        code: ErrorCode::Internal,
        message: format!("result has no valid `{what}`"),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, ToolError> {
    v.get(key).ok_or_else(|| shape(key))
}

fn text(v: &Value, key: &str) -> Result<String, ToolError> {
    Ok(field(v, key)?
        .as_str()
        .ok_or_else(|| shape(key))?
        .to_owned())
}

fn item(v: &Value) -> Result<Item, ToolError> {
    let e = |k: &str| text(v, k);
    Ok(Item {
        id: e("id")?,
        created_at: e("created_at")?,
        updated_at: e("updated_at")?,
        env: e("env")?,
        service: e("service")?,
        category: e("category")?,
        title: e("title")?,
        description: e("description")?,
        priority: match e("priority")?.as_str() {
            "P0" => Priority::P0,
            "P1" => Priority::P1,
            "P2" => Priority::P2,
            "P3" => Priority::P3,
            _ => return Err(shape("priority")),
        },
        status: match e("status")?.as_str() {
            "open" => Status::Open,
            "in_progress" => Status::InProgress,
            "blocked" => Status::Blocked,
            "done" => Status::Done,
            "canceled" => Status::Canceled,
            _ => return Err(shape("status")),
        },
        owner: e("owner")?,
        due_date: e("due_date")?,
        source: match e("source")?.as_str() {
            "digest" => Source::Digest,
            "risk" => Source::Risk,
            "pressure" => Source::Pressure,
            "manual" => Source::Manual,
            _ => return Err(shape("source")),
        },
        dedupe_key: e("dedupe_key")?,
        evidence_refs: field(v, "evidence_refs")?
            .as_object()
            .ok_or_else(|| shape("evidence_refs"))?
            .iter()
            .map(|(kind, ids)| Evidence {
                kind: kind.clone(),
                ids: ids
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        tags: field(v, "tags")?
            .as_array()
            .ok_or_else(|| shape("tags"))?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        meta: field(v, "meta")?.to_string(),
    })
}

fn event(v: &Value) -> Result<Event, ToolError> {
    Ok(Event {
        id: text(v, "id")?,
        item_id: text(v, "item_id")?,
        ts: text(v, "ts")?,
        kind: text(v, "type")?,
        actor: text(v, "actor")?,
        message: text(v, "message")?,
        meta: field(v, "meta")?.to_string(),
    })
}

fn events(v: &Value) -> Result<Vec<Event>, ToolError> {
    v.as_array()
        .ok_or_else(|| shape("events"))?
        .iter()
        .map(event)
        .collect()
}
