//! Request bodies and query strings → a tool call's params object.
//!
//! Owns the shapes (see `docs/http-api.md`): the execute body (`{"tool","action",…params}` flat, or
//! `{"tool","action","params":{…}}` nested, never both), query strings (repeated or
//! comma-separated `status`, `overdue=true|false`, numbers for limits), and path ids.
//!
//! Must not: validate params beyond their JSON shape. What a param means and whether it is
//! allowed is the component's business (it rejects unknown keys with `invalid_input`), so this
//! module knows only how the query string types a value.

use serde_json::{Map, Value};

use crate::error::{Code, ToolError};

/// Query keys whose value is a boolean.
const BOOL_KEYS: &[&str] = &["overdue", "include_events", "dry_run"];
/// Query keys whose value is a non-negative integer.
const INT_KEYS: &[&str] = &["limit", "offset", "retention_days"];
/// Query keys that take a list (repeated, or comma-separated).
const LIST_KEYS: &[&str] = &["status"];

fn invalid(message: String) -> ToolError {
    ToolError::new(Code::InvalidInput, message)
}

/// The parsed body of `POST /v1/tools/execute`.
#[derive(Debug, Clone, PartialEq)]
pub struct Execute {
    pub tool: String,
    pub action: String,
    /// The params object, or why the body's params are malformed (reported after the 404
    /// and 403 checks, as `docs/actions.md` orders them).
    pub params: Result<Map<String, Value>, ToolError>,
}

/// Parses an execute body: JSON object with string `tool` and `action`.
pub fn execute_body(body: &[u8]) -> Result<Execute, ToolError> {
    let mut map = object_body(body)?;
    let mut take = |k: &str| match map.remove(k) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(format!(
            "`{k}` must be a string, got {}",
            kind(&other)
        ))),
        None => Err(invalid(format!(
            "the body needs `{k}`: {{\"tool\":\"…\",\"action\":\"…\", …params}}"
        ))),
    };
    let tool = take("tool")?;
    let action = take("action")?;
    let params = match map.remove("params") {
        None => Ok(map),
        Some(Value::Object(nested)) if map.is_empty() => Ok(nested),
        Some(Value::Object(_)) => {
            let flat: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
            Err(invalid(format!(
                "params given both nested (`params`) and flat ({}); use one form",
                flat.join(", ")
            )))
        }
        Some(other) => Err(invalid(format!(
            "`params` must be an object, got {}",
            kind(&other)
        ))),
    };
    Ok(Execute {
        tool,
        action,
        params,
    })
}

/// A body that must be a JSON object; an empty body is `{}`.
pub fn object_body(body: &[u8]) -> Result<Map<String, Value>, ToolError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(format!(
            "the request body must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

/// Query string → params: booleans and integers typed, `status` as a list when repeated or
/// comma-separated, anything else a string. A key given twice (other than `status`) is an
/// error.
pub fn query(raw: Option<&str>) -> Result<Map<String, Value>, ToolError> {
    let mut map = Map::new();
    let mut lists: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.into_owned();
        if LIST_KEYS.contains(&key.as_str()) {
            let values = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Value::String(v.to_owned()));
            match lists.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.extend(values),
                None => lists.push((key, values.collect())),
            }
            continue;
        }
        let typed = if BOOL_KEYS.contains(&key.as_str()) {
            match value.as_ref() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                v => {
                    return Err(invalid(format!(
                        "query parameter `{key}` must be true or false, got {v:?}"
                    )));
                }
            }
        } else if INT_KEYS.contains(&key.as_str()) {
            let n: u64 = value.parse().map_err(|_| {
                invalid(format!(
                    "query parameter `{key}` must be a non-negative integer, got {value:?}"
                ))
            })?;
            Value::from(n)
        } else {
            Value::String(value.into_owned())
        };
        if map.insert(key.clone(), typed).is_some() {
            return Err(invalid(format!("query parameter `{key}` is given twice")));
        }
    }
    for (key, mut list) in lists {
        let value = if list.len() == 1 {
            list.remove(0)
        } else {
            Value::Array(list)
        };
        map.insert(key, value);
    }
    Ok(map)
}

/// Adds `extra` (from the path or the query) to body params; a key in both must agree.
pub fn merge(
    mut params: Map<String, Value>,
    extra: Map<String, Value>,
) -> Result<Map<String, Value>, ToolError> {
    for (key, value) in extra {
        match params.get(&key) {
            Some(existing) if *existing != value => {
                return Err(invalid(format!(
                    "`{key}` is given twice with different values ({existing} and {value})"
                )));
            }
            _ => {
                params.insert(key, value);
            }
        }
    }
    Ok(params)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check_execute(body: &str, expect: Result<(&str, &str, Result<Value, &str>), &str>) {
        let got = execute_body(body.as_bytes());
        match (got, expect) {
            (Ok(e), Ok((tool, action, params))) => {
                assert_eq!((e.tool.as_str(), e.action.as_str()), (tool, action));
                match (e.params, params) {
                    (Ok(p), Ok(want)) => assert_eq!(Value::Object(p), want),
                    (Err(err), Err(fragment)) => {
                        assert_eq!(err.code, Code::InvalidInput);
                        assert!(err.message.contains(fragment), "{err}");
                    }
                    (got, want) => panic!("{body}: params {got:?}, want {want:?}"),
                }
            }
            (Err(e), Err(fragment)) => {
                assert_eq!(e.code, Code::InvalidInput);
                assert!(e.message.contains(fragment), "{e}");
            }
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn execute_bodies() {
        let ok = |p: Value| Ok(("backlog_tool", "get", Ok(p)));
        check_execute(
            r#"{"tool":"backlog_tool","action":"get","id":"bl_1"}"#,
            ok(json!({"id":"bl_1"})),
        );
        check_execute(
            r#"{"tool":"backlog_tool","action":"get","params":{"id":"bl_1"}}"#,
            ok(json!({"id":"bl_1"})),
        );
        check_execute(r#"{"tool":"backlog_tool","action":"get"}"#, ok(json!({})));
        check_execute(
            r#"{"tool":"backlog_tool","action":"get","params":{"id":"a"},"id":"b"}"#,
            Ok(("backlog_tool", "get", Err("both nested"))),
        );
        check_execute(
            r#"{"tool":"backlog_tool","action":"get","params":[1]}"#,
            Ok(("backlog_tool", "get", Err("`params` must be an object"))),
        );
        check_execute(r#"{"tool":"backlog_tool"}"#, Err("needs `action`"));
        check_execute(
            r#"{"tool":1,"action":"get"}"#,
            Err("`tool` must be a string"),
        );
        check_execute(r#"{"tool":"#, Err("not valid JSON: EOF while parsing"));
        check_execute("[1]", Err("must be a JSON object, got an array"));
        check_execute("", Err("needs `tool`"));
    }

    #[track_caller]
    fn check_query(raw: &str, expect: Result<Value, &str>) {
        match (query(Some(raw)), expect) {
            (Ok(m), Ok(want)) => assert_eq!(Value::Object(m), want, "{raw}"),
            (Err(e), Err(fragment)) => assert!(e.message.contains(fragment), "{raw}: {e}"),
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn query_strings() {
        check_query("env=prod", Ok(json!({"env":"prod"})));
        check_query("", Ok(json!({})));
        check_query("status=open", Ok(json!({"status":"open"})));
        check_query(
            "status=open&status=blocked",
            Ok(json!({"status":["open","blocked"]})),
        );
        check_query(
            "status=open,in_progress&status=blocked",
            Ok(json!({"status":["open","in_progress","blocked"]})),
        );
        check_query(
            "overdue=false&limit=5&offset=10",
            Ok(json!({"overdue":false,"limit":5,"offset":10})),
        );
        check_query(
            "service=a%20b&due_before=2026-12-01",
            Ok(json!({"service":"a b","due_before":"2026-12-01"})),
        );
        check_query("overdue=yes", Err("must be true or false"));
        check_query("limit=-1", Err("non-negative integer"));
        check_query("env=prod&env=dev", Err("given twice"));
    }

    #[test]
    fn merging_path_and_body() {
        let body = object_body(br#"{"status":"done"}"#).unwrap();
        let id = Map::from_iter([("id".to_owned(), json!("bl_1"))]);
        assert_eq!(
            Value::Object(merge(body, id.clone()).unwrap()),
            json!({"status":"done","id":"bl_1"})
        );
        let clash = object_body(br#"{"id":"bl_2"}"#).unwrap();
        assert!(
            merge(clash, id.clone())
                .unwrap_err()
                .message
                .contains("`id`")
        );
        let same = object_body(br#"{"id":"bl_1"}"#).unwrap();
        assert!(merge(same, id).is_ok());
    }
}
