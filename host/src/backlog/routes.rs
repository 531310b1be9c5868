//! The `/v1/backlog/...` routes (see `docs/http-api.md`): which action of `backlog_tool` each
//! calls and where its params come from, how the query string types a value, and what each
//! answers (for the OpenAPI document). The router serves this table with its one generic
//! handler (`http::rest`); the OpenAPI document (`http::openapi`) describes it.
//!
//! Must not: run anything. This is data about the backlog tool's face, read by generic code.

use serde_json::{Map, Value, json};

use crate::http::rest::{Method, ParamsFrom, RestRoute, RestTable};
use crate::params::QueryTypes;

/// The tool the `/v1/backlog/...` routes call.
pub const TOOL: &str = "backlog_tool";

/// How the backlog's query strings type a value: `overdue=true`, `limit=5`,
/// `status=open&status=blocked` (or `status=open,blocked`).
pub const QUERY_TYPES: QueryTypes = QueryTypes {
    booleans: &["overdue", "include_events", "dry_run"],
    integers: &["limit", "offset", "retention_days"],
    lists: &["status"],
};

/// `env` of the generation routes: in the body, or in the query string as the runbook's
/// `curl` trigger sends it.
const ENV_IN_QUERY: ParamsFrom = ParamsFrom::BodyAndQuery(&[(
    "env",
    "The environment; if the body names one too, they must be equal.",
)]);

/// The backlog routes.
pub const TABLE: RestTable = RestTable {
    tool: TOOL,
    query: QUERY_TYPES,
    schemas,
    routes: &[
        RestRoute {
            method: Method::Get,
            path: "/v1/backlog/dashboard",
            action: "dashboard",
            from: ParamsFrom::Query,
            answer: object,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/generate/weekly",
            action: "auto_generate_weekly",
            from: ENV_IN_QUERY,
            answer: object,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/generate/daily",
            action: "auto_generate_daily",
            from: ENV_IN_QUERY,
            answer: object,
            creates: None,
        },
        RestRoute {
            method: Method::Get,
            path: "/v1/backlog/items",
            action: "list",
            from: ParamsFrom::Query,
            answer: items,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/items",
            action: "create",
            from: ParamsFrom::Body,
            answer: item,
            creates: Some("id"),
        },
        RestRoute {
            method: Method::Get,
            path: "/v1/backlog/items/{id}",
            action: "get",
            from: ParamsFrom::Query,
            answer: item_with_events,
            creates: None,
        },
        RestRoute {
            method: Method::Get,
            path: "/v1/backlog/items/{id}/events",
            action: "events",
            from: ParamsFrom::Query,
            answer: events,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/items/{id}/status",
            action: "set_status",
            from: ParamsFrom::Body,
            answer: item,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/items/{id}/comments",
            action: "add_comment",
            from: ParamsFrom::Body,
            answer: event,
            creates: None,
        },
        RestRoute {
            method: Method::Post,
            path: "/v1/backlog/cleanup",
            action: "cleanup",
            from: ParamsFrom::Body,
            answer: object,
            creates: None,
        },
    ],
};

fn item() -> Value {
    json!({"$ref": "#/components/schemas/Item"})
}

fn item_with_events() -> Value {
    json!({"allOf": [
        {"$ref": "#/components/schemas/Item"},
        {"properties": {"events": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/Event"}}}},
    ]})
}

fn items() -> Value {
    json!({
        "type": "object",
        "required": ["items", "total", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "total": {"type": "integer", "minimum": 0},
            "next_offset": {"type": ["integer", "null"], "minimum": 0},
        },
    })
}

fn events() -> Value {
    json!({
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        },
    })
}

fn event() -> Value {
    json!({"$ref": "#/components/schemas/Event"})
}

fn object() -> Value {
    json!({"type": "object"})
}

/// The item and the event (`docs/data-model.md`), which the answers above refer to.
fn schemas() -> Map<String, Value> {
    let id =
        |prefix: &str| json!({"type": "string", "pattern": format!("^{prefix}_[0-9a-f]{{12}}$")});
    let date = json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
    let item = json!({
        "type": "object",
        "required": ["id", "created_at", "updated_at", "env", "service", "category",
                     "title", "description", "priority", "status", "owner", "due_date",
                     "source", "dedupe_key", "evidence_refs", "tags", "meta"],
        "properties": {
            "id": id("bl"),
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "env": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
            "service": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
            "category": {"type": "string"},
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": 10000},
            "priority": {"enum": ["P0", "P1", "P2", "P3"]},
            "status": {"enum": ["open", "in_progress", "blocked", "done", "canceled"]},
            "owner": {"type": "string", "minLength": 1, "maxLength": 64},
            "due_date": date,
            "source": {"enum": ["digest", "risk", "pressure", "manual"]},
            "dedupe_key": {"type": "string", "minLength": 1, "maxLength": 256},
            "evidence_refs": {"type": "object",
                              "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "tags": {"type": "array", "maxItems": 32, "items": {"type": "string"}},
            "meta": {"type": "object"},
        },
    });
    let event = json!({
        "type": "object",
        "required": ["id", "item_id", "ts", "type", "actor", "message", "meta"],
        "properties": {
            "id": id("ev"),
            "item_id": id("bl"),
            "ts": {"type": "string"},
            "type": {"enum": ["created", "updated", "owner_changed", "status_changed", "commented"]},
            "actor": {"type": "string", "minLength": 1, "maxLength": 64},
            "message": {"type": "string"},
            "meta": {"type": "object"},
        },
    });
    Map::from_iter([("Item".to_owned(), item), ("Event".to_owned(), event)])
}
