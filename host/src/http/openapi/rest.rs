//! The operations of one REST table (`crate::http::rest`): per row, its path params, its query
//! parameters or request body from the action's params schema, its answer, its entitlements.

use serde_json::{Map, Value, json};

use super::parts::{AUTHENTICATED, CALL, camel, clean, ok_json, operation, query_param};
use crate::http::rest::{ParamsFrom, RestRoute, RestTable};
use crate::registry::Bridge;

/// `(path, method, operation)` of each row whose action `bridge` has installed.
pub(super) fn table_operations(
    bridge: &Bridge,
    table: &RestTable,
) -> Vec<(&'static str, &'static str, Value)> {
    let manifest: Vec<_> = bridge.manifest().filter(|m| m.tool == table.tool).collect();
    let mut out = Vec::new();
    for r in table.routes {
        let Some(m) = manifest.iter().find(|m| m.action.name == r.action) else {
            continue;
        };
        let entitlements = bridge
            .matrix
            .action(table.tool, r.action)
            .map(|rule| rule.entitlements.clone())
            .unwrap_or_default();
        let schema = clean(&m.action.params_schema);
        let (params, body) = inputs(r, &schema);
        let description = format!(
            "`{}.{}`: {} Entitlement: {}.",
            table.tool,
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
            ok_json((r.answer)()),
            &[AUTHENTICATED, CALL],
        );
        op["x-entitlements"] = json!(entitlements);
        if let Some(field) = r.creates {
            op["responses"]["200"]["links"] = links(table, field);
        }
        out.push((r.path, r.method.as_str(), op));
    }
    out
}

/// A row's parameters (path, then query) and request body, from its action's params schema.
fn inputs(r: &RestRoute, schema: &Value) -> (Vec<Value>, Option<Value>) {
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
        ParamsFrom::Query => {
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
        ParamsFrom::Body | ParamsFrom::BodyAndQuery(_) => {
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
            if let ParamsFrom::BodyAndQuery(keys) = r.from {
                for (key, description) in keys {
                    if let Some(s) = props.get(*key) {
                        params.push(query_param(key, s.clone(), description));
                    }
                }
            }
        }
    }
    (params, body)
}

/// From what a row created to the table's rows with that `{field}` in their path (clients and
/// test generators follow them).
fn links(table: &RestTable, field: &str) -> Value {
    let segment = format!("{{{field}}}");
    let mut links = Map::new();
    for r in table.routes.iter().filter(|r| r.path.contains(&segment)) {
        links.insert(
            camel(r.action),
            json!({
                "operationId": camel(r.action),
                "parameters": {field: format!("$response.body#/{field}")},
                "description": format!("`{}` of the created item.", r.action),
            }),
        );
    }
    Value::Object(links)
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
