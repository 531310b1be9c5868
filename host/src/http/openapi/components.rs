//! The document's shared components: the error responses by status and the schemas the
//! operations refer to.

use serde_json::{Map, Value, json};

use crate::http::tables::REST;

/// `E400` … `E504`: the error object with what each status means.
pub(super) fn error_responses() -> Value {
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

/// The shared schemas: the error object, the REST tables' own (`RestTable::schemas`), the
/// tools list and the readiness document.
pub(super) fn schemas() -> Value {
    let mut out = Map::new();
    out.insert(
        "Error".to_owned(),
        json!({
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string", "description": "What went wrong, for a person."},
                "code": {"type": "string", "enum": crate::error::Code::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .chain(["rate_limited", "unsupported_media_type", "method_not_allowed", "invalid_config"])
                    .collect::<Vec<_>>()},
            },
        }),
    );
    for table in REST {
        out.extend((table.schemas)());
    }
    out.insert(
        "Tools".to_owned(),
        json!({
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
        }),
    );
    out.insert(
        "Ready".to_owned(),
        json!({
            "type": "object",
            "required": ["backend", "degraded", "pending_replay"],
            "properties": {
                "backend": {"type": "string"},
                "degraded": {"type": "boolean"},
                "pending_replay": {"type": "integer", "minimum": 0},
                "reason": {"type": "string"},
            },
        }),
    );
    Value::Object(out)
}
