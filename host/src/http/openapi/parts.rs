//! The pieces every operation of the document is made of: status sets, one operation, JSON
//! answers, query parameters, names (a leaf: `mod.rs` and `rest.rs` build on it).

use serde_json::{Map, Value, json};

/// Statuses every route can answer before its handler: two `Authorization` headers (400),
/// the browser guard (403), a declared body over the limit (413).
pub(super) const FRONT: &[u16] = &[400, 403, 413];
/// Added for the authenticated routes (`/v1/...`).
pub(super) const AUTHENTICATED: &[u16] = &[401, 429];
/// Added for a tool call: every code of `docs/actions.md`.
pub(super) const CALL: &[u16] = &[404, 409, 412, 500, 503, 504];

/// One operation; `errors` are added to [`FRONT`] (and 415 for a POST with a body).
#[allow(clippy::too_many_arguments)]
pub(super) fn operation(
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

pub(super) fn ok_json(schema: Value) -> Value {
    json!({"description": "OK.", "content": {"application/json": {"schema": schema}}})
}

pub(super) fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

/// A component schema embedded in the document: without `$schema` (the document's dialect
/// is 2020-12 already, as the components').
pub(super) fn clean(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(m) = &mut s {
        m.remove("$schema");
    }
    s
}

pub(super) fn camel(action: &str) -> String {
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
