//! The OpenAPI 3.1 document of the router (`GET /openapi.json`, `backlog-bridge openapi`).
//!
//! Built from two sources, so it cannot drift from what is served: the components' own
//! `describe()` schemas ([`Bridge::manifest`]: each action's params schema, used as the
//! query parameters or the request body of its route) and the REST tables the router serves
//! (`super::rest`, [`REST`]) with where each route takes its params from and what it answers.
//! The error object `{"error","code"}` comes with every status a route can answer
//! (`docs/actions.md`). `/mcp` is left out (its JSON-RPC
//! has its own description, `docs/mcp.md`).
//!
//! Must not: depend on anything but the configuration and the components (the CLI and `serve`
//! print the same document; `ops/openapi.json` is checked against it).

use serde_json::{Map, Value, json};

mod components;
mod parts;
mod rest;

use self::parts::{AUTHENTICATED, CALL, clean, ok_json, operation, query_param};
use super::tables::REST;
use crate::registry::Bridge;

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
    add(
        "/v1/admin/reload",
        "post",
        operation(
            "reload",
            "Reloads the config dir (RBAC matrix, plugins, policy, task registry, key files) \
             without a restart; needs the entitlement `bridge.reload`. Any error keeps the old \
             config whole and answers 400 with code `invalid_config` and `errors` (one per \
             problem, each naming its file and key). The body is ignored.",
            true,
            &[],
            Vec::new(),
            None,
            ok_json(json!({
                "type": "object", "required": ["reloaded", "changed", "ms"],
                "properties": {
                    "reloaded": {"const": true},
                    "changed": {"type": "array", "items": {"type": "string"},
                                "description": "Files whose bytes changed since the last load."},
                    "ms": {"type": "number", "description": "How long the reload took."},
                },
            })),
            &[AUTHENTICATED, &[500]],
        ),
    );

    for table in REST {
        for (path, method, op) in rest::table_operations(bridge, table) {
            add(path, method, op);
        }
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
            "responses": components::error_responses(),
            "schemas": components::schemas(),
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
