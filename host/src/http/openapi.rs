//! The OpenAPI 3.1 document of the router (`GET /openapi.json`, `backlog-bridge openapi`).
//!
//! Built from two sources, so it cannot drift from what is served: the components' own
//! `describe()` schemas ([`Bridge::manifest`]: each action's params schema, used as the
//! query parameters or the request body of its route) and [`ROUTES`], the table of REST routes
//! of `routes.rs` with where each takes its params from. Response schemas follow
//! `docs/data-model.md` and `docs/actions.md`: the item and event shapes, and the error object
//! `{"error","code"}` with every status a route can answer. `/mcp` is left out (its JSON-RPC
//! has its own description, `docs/mcp.md`).
//!
//! Must not: depend on anything but the configuration and the components (the CLI and `serve`
//! print the same document; `ops/openapi.json` is checked against it).

use serde_json::{Map, Value, json};

use crate::registry::Bridge;

/// The tool of the `/v1/backlog/...` routes.
const BACKLOG_TOOL: &str = "backlog_tool";

/// Where a route's params come from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// The query string (GET).
    Query,
    /// The JSON body (POST).
    Body,
    /// The JSON body, and `env` in the query string too.
    BodyAndEnv,
}

/// What a route's 200 answers.
#[derive(Clone, Copy)]
enum Answer {
    Item,
    ItemWithEvents,
    Items,
    Events,
    Event,
    Object,
}

/// One `/v1/backlog/...` route: method, path template, action, params source, answer.
struct Route {
    method: &'static str,
    path: &'static str,
    action: &'static str,
    from: Source,
    answer: Answer,
}

/// The backlog routes of `routes.rs` (keep in step with `routes::router`).
const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/v1/backlog/dashboard",
        action: "dashboard",
        from: Source::Query,
        answer: Answer::Object,
    },
    Route {
        method: "post",
        path: "/v1/backlog/generate/weekly",
        action: "auto_generate_weekly",
        from: Source::BodyAndEnv,
        answer: Answer::Object,
    },
    Route {
        method: "post",
        path: "/v1/backlog/generate/daily",
        action: "auto_generate_daily",
        from: Source::BodyAndEnv,
        answer: Answer::Object,
    },
    Route {
        method: "get",
        path: "/v1/backlog/items",
        action: "list",
        from: Source::Query,
        answer: Answer::Items,
    },
    Route {
        method: "post",
        path: "/v1/backlog/items",
        action: "create",
        from: Source::Body,
        answer: Answer::Item,
    },
    Route {
        method: "get",
        path: "/v1/backlog/items/{id}",
        action: "get",
        from: Source::Query,
        answer: Answer::ItemWithEvents,
    },
    Route {
        method: "get",
        path: "/v1/backlog/items/{id}/events",
        action: "events",
        from: Source::Query,
        answer: Answer::Events,
    },
    Route {
        method: "post",
        path: "/v1/backlog/items/{id}/status",
        action: "set_status",
        from: Source::Body,
        answer: Answer::Item,
    },
    Route {
        method: "post",
        path: "/v1/backlog/items/{id}/comments",
        action: "add_comment",
        from: Source::Body,
        answer: Answer::Event,
    },
    Route {
        method: "post",
        path: "/v1/backlog/cleanup",
        action: "cleanup",
        from: Source::Body,
        answer: Answer::Object,
    },
];

/// Statuses every route can answer before its handler: two `Authorization` headers (400),
/// the browser guard (403), a declared body over the limit (413).
const FRONT: &[u16] = &[400, 403, 413];
/// Added for the authenticated routes (`/v1/...`).
const AUTHENTICATED: &[u16] = &[401, 429];
/// Added for a tool call: every code of `docs/actions.md`.
const CALL: &[u16] = &[404, 409, 412, 500, 503, 504];

/// The document, for the tools and actions `bridge` has installed.
pub fn document(bridge: &Bridge) -> Value {
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, op: Value| {
        let entry = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(method.to_owned(), op);
        }
    };

    add("/v1/tools/execute", "post", execute_operation(bridge));
    add(
        "/v1/tools",
        "get",
        operation(
            "listTools",
            "The tools and actions the caller may call, with their params schemas.",
            true,
            &[],
            Vec::new(),
            None,
            ok_json(json!({"$ref": "#/components/schemas/Tools"})),
            &[AUTHENTICATED],
        ),
    );
    add(
        "/v1/explain",
        "get",
        operation(
            "explain",
            "What the calling agent may call and, with `tool` and `action`, whether that call \
             would be allowed: entitlements held or missing (with the matrix file and line) and \
             the call's grants. Give both or neither.",
            true,
            &[],
            vec![
                query_param("tool", json!({"type": "string"}), "A tool name."),
                query_param("action", json!({"type": "string"}), "An action of `tool`."),
            ],
            None,
            ok_json(json!({"type": "object"})),
            &[AUTHENTICATED],
        ),
    );

    let manifest: Vec<_> = bridge
        .manifest()
        .filter(|m| m.tool == BACKLOG_TOOL)
        .collect();
    for r in ROUTES {
        let Some(m) = manifest.iter().find(|m| m.action.name == r.action) else {
            continue;
        };
        let entitlements = bridge
            .matrix
            .action(BACKLOG_TOOL, r.action)
            .map(|rule| rule.entitlements.clone())
            .unwrap_or_default();
        let schema = clean(&m.action.params_schema);
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let in_path = |k: &str| r.path.contains(&format!("{{{k}}}"));
        let mut params: Vec<Value> = props
            .iter()
            .filter(|(k, _)| in_path(k))
            .map(|(k, s)| {
                json!({"name": k, "in": "path", "required": true, "schema": s,
                       "description": s.get("description").cloned().unwrap_or(Value::Null)})
            })
            .collect();
        let mut body = None;
        match r.from {
            Source::Query => {
                for (k, s) in props.iter().filter(|(k, _)| !in_path(k)) {
                    let mut p = query_param(k, query_schema(s), "");
                    p["description"] = s.get("description").cloned().unwrap_or(json!(""));
                    if required.contains(&k.as_str()) {
                        p["required"] = json!(true);
                    }
                    if p["schema"]["type"] == "array" {
                        p["style"] = json!("form");
                        p["explode"] = json!(true);
                    }
                    params.push(p);
                }
            }
            Source::Body | Source::BodyAndEnv => {
                let mut s = schema.clone();
                if let Some(Value::Object(p)) = s.get_mut("properties") {
                    p.retain(|k, _| !in_path(k));
                }
                if let Some(Value::Array(req)) = s.get_mut("required") {
                    req.retain(|k| k.as_str().is_none_or(|k| !in_path(k)));
                }
                // An empty body counts as `{}`: required only when the action requires a key.
                let needed = s
                    .get("required")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                body = Some(json!({
                    "required": needed,
                    "content": {"application/json": {"schema": s}},
                }));
                if r.from == Source::BodyAndEnv
                    && let Some(env) = props.get("env")
                {
                    params.push(query_param(
                        "env",
                        env.clone(),
                        "The environment; if the body names one too, they must be equal.",
                    ));
                }
            }
        }
        let description = format!(
            "`{BACKLOG_TOOL}.{}`: {} Entitlement: {}.",
            r.action,
            m.action.description,
            entitlements.join(", ")
        );
        let mut op = operation(
            &camel(r.action),
            &description,
            true,
            &[],
            params,
            body,
            ok_json(answer_schema(r.answer)),
            &[AUTHENTICATED, CALL],
        );
        op["x-entitlements"] = json!(entitlements);
        if r.action == "create" {
            op["responses"]["200"]["links"] = item_links();
        }
        add(r.path, r.method, op);
    }

    add(
        "/healthz",
        "get",
        operation(
            "healthz",
            "`{\"status\":\"ok\"}` while the process serves.",
            false,
            &[],
            Vec::new(),
            None,
            ok_json(json!({
                "type": "object", "required": ["status"],
                "properties": {"status": {"const": "ok"}},
            })),
            &[],
        ),
    );
    let mut ready = operation(
        "readyz",
        "The store calls would use now; 503 when a write would fail.",
        false,
        &[],
        Vec::new(),
        None,
        ok_json(json!({"$ref": "#/components/schemas/Ready"})),
        &[&[500]],
    );
    ready["responses"]["503"] = json!({
        "description": "A write would fail now (or the router is shutting down).",
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Ready"},
            {"$ref": "#/components/schemas/Error"},
        ]}}},
    });
    add("/readyz", "get", ready);
    add(
        "/metrics",
        "get",
        operation(
            "metrics",
            "Prometheus text format (`backlog_bridge_*`); no key.",
            false,
            &[],
            Vec::new(),
            None,
            json!({"description": "The metrics.",
                   "content": {"text/plain": {"schema": {"type": "string"}}}}),
            &[&[500, 503, 504]],
        ),
    );
    add(
        "/openapi.json",
        "get",
        operation(
            "openapi",
            "This document.",
            false,
            &[],
            Vec::new(),
            None,
            ok_json(json!({"type": "object", "required": ["openapi", "paths"]})),
            &[],
        ),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "backlog-bridge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of `backlog-bridge serve` (docs/http-api.md). Params \
                schemas are the components' own (`describe()`); `/mcp` (JSON-RPC, docs/mcp.md) \
                is not described here.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An agent's API key (config/rbac_tools_matrix.yml, `api_key_env`).",
                },
            },
            "responses": error_responses(),
            "schemas": schemas(),
        },
    })
}

/// `POST /v1/tools/execute`: one variant per installed action, nested form.
fn execute_operation(bridge: &Bridge) -> Value {
    let variants: Vec<Value> = bridge
        .manifest()
        .map(|m| {
            json!({
                "type": "object",
                "required": ["tool", "action"],
                "properties": {
                    "tool": {"const": m.tool},
                    "action": {"const": m.action.name},
                    "params": clean(&m.action.params_schema),
                },
                "additionalProperties": false,
            })
        })
        .collect();
    operation(
        "execute",
        "Any installed action: `{\"tool\",\"action\",\"params\":{…}}`, or the params flat beside \
         `tool` and `action` (not both). The action's own entitlement applies. The variants \
         below are the nested form, one per action.",
        true,
        &[],
        Vec::new(),
        Some(json!({
            "required": true,
            "content": {"application/json": {"schema": {"oneOf": variants}}},
        })),
        ok_json(json!({"description": "The action's result (docs/actions.md).", "type": "object"})),
        &[AUTHENTICATED, CALL, &[415]],
    )
}

/// One operation; `errors` are added to [`FRONT`] (and 415 for a POST with a body).
#[allow(clippy::too_many_arguments)]
fn operation(
    id: &str,
    description: &str,
    authenticated: bool,
    tags: &[&str],
    parameters: Vec<Value>,
    body: Option<Value>,
    ok: Value,
    errors: &[&[u16]],
) -> Value {
    let mut codes: Vec<u16> = FRONT.to_vec();
    codes.extend(errors.iter().flat_map(|e| e.iter().copied()));
    if body.is_some() {
        codes.push(415);
    }
    codes.sort_unstable();
    codes.dedup();
    let mut responses = Map::new();
    responses.insert("200".to_owned(), ok);
    for c in codes {
        responses.insert(
            c.to_string(),
            json!({"$ref": format!("#/components/responses/E{c}")}),
        );
    }
    let mut op = json!({
        "operationId": id,
        "summary": description.split(". ").next().unwrap_or(description),
        "description": description,
        "security": if authenticated { json!([{"bearer": []}]) } else { json!([]) },
        "responses": responses,
    });
    if !tags.is_empty() {
        op["tags"] = json!(tags);
    }
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

/// From a created item to the routes of its id (clients and test generators follow them).
fn item_links() -> Value {
    let mut links = Map::new();
    for r in ROUTES.iter().filter(|r| r.path.contains("{id}")) {
        links.insert(
            camel(r.action),
            json!({
                "operationId": camel(r.action),
                "parameters": {"id": "$response.body#/id"},
                "description": format!("`{}` of the created item.", r.action),
            }),
        );
    }
    Value::Object(links)
}

fn ok_json(schema: Value) -> Value {
    json!({"description": "OK.", "content": {"application/json": {"schema": schema}}})
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

/// A params property as a query parameter: a `oneOf` with a list variant (`status`) becomes
/// that list (repeated or comma-separated in the query).
fn query_schema(s: &Value) -> Value {
    if let Some(variants) = s.get("oneOf").and_then(Value::as_array)
        && let Some(list) = variants.iter().find(|v| v["type"] == "array")
    {
        return list.clone();
    }
    let mut s = s.clone();
    if let Value::Object(m) = &mut s {
        m.remove("description");
    }
    s
}

/// A component schema embedded in the document: without `$schema` (the document's dialect
/// is 2020-12 already, as the components').
fn clean(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(m) = &mut s {
        m.remove("$schema");
    }
    s
}

fn camel(action: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in action.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn answer_schema(a: Answer) -> Value {
    match a {
        Answer::Item => json!({"$ref": "#/components/schemas/Item"}),
        Answer::ItemWithEvents => json!({"allOf": [
            {"$ref": "#/components/schemas/Item"},
            {"properties": {"events": {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Event"}}}},
        ]}),
        Answer::Items => json!({
            "type": "object",
            "required": ["items", "total", "next_offset"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                "total": {"type": "integer", "minimum": 0},
                "next_offset": {"type": ["integer", "null"], "minimum": 0},
            },
        }),
        Answer::Events => json!({
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            },
        }),
        Answer::Event => json!({"$ref": "#/components/schemas/Event"}),
        Answer::Object => json!({"type": "object"}),
    }
}

/// `E400` … `E504`: the error object with what each status means.
fn error_responses() -> Value {
    let mut out = Map::new();
    for (status, meaning) in [
        (
            400,
            "`invalid_input`: malformed body or query, params the action rejects, or two \
             `Authorization` headers.",
        ),
        (
            401,
            "`unauthenticated`: no key, another scheme or an unknown key \
             (`WWW-Authenticate: Bearer`).",
        ),
        (
            403,
            "`forbidden`: the agent lacks the action's entitlement, or the browser guard \
             refused the request.",
        ),
        (404, "`not_found`: unknown tool, action or item."),
        (
            409,
            "`conflict`: a duplicate `dedupe_key` or a transition the status rules refuse.",
        ),
        (
            412,
            "`precondition_failed`: the call's input (a digest, the store) is not there.",
        ),
        (
            413,
            "`payload_too_large`: the body (or its params) exceeds 1 MiB.",
        ),
        (
            415,
            "`unsupported_media_type`: a POST whose `Content-Type` is not `application/json`.",
        ),
        (
            429,
            "`rate_limited`: too many failed logins from this address (`Retry-After`).",
        ),
        (500, "`internal`: a bug or a failed component."),
        (
            503,
            "`unavailable`: too many calls in flight or the store is down (`Retry-After`).",
        ),
        (504, "`timeout`: the call ran past its time limit."),
    ] {
        out.insert(
            format!("E{status}"),
            json!({
                "description": meaning,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }),
        );
    }
    Value::Object(out)
}

/// The shared schemas: the error object, the item and event (`docs/data-model.md`), the
/// tools list and the readiness document.
fn schemas() -> Value {
    let id =
        |prefix: &str| json!({"type": "string", "pattern": format!("^{prefix}_[0-9a-f]{{12}}$")});
    let date = json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string", "description": "What went wrong, for a person."},
                "code": {"type": "string", "enum": crate::error::Code::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .chain(["rate_limited", "unsupported_media_type", "method_not_allowed"])
                    .collect::<Vec<_>>()},
            },
        },
        "Item": {
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
        },
        "Event": {
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
        },
        "Tools": {
            "type": "object",
            "required": ["tools"],
            "properties": {"tools": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "description", "actions"],
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "actions": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name", "description", "entitlements", "params_schema"],
                        "properties": {
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "entitlements": {"type": "array", "items": {"type": "string"}},
                            "params_schema": {"type": "object"},
                        },
                    }},
                },
            }}},
        },
        "Ready": {
            "type": "object",
            "required": ["backend", "degraded", "pending_replay"],
            "properties": {
                "backend": {"type": "string"},
                "degraded": {"type": "boolean"},
                "pending_replay": {"type": "integer", "minimum": 0},
                "reason": {"type": "string"},
            },
        },
    })
}
