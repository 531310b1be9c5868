//! A tool call's params object from the text each face receives: the CLI's `--params-json`,
//! the router's request bodies (`POST /v1/tools/execute`, the REST routes), query strings and
//! path values. One parser, so every face answers the same mistake with the same words.
//!
//! Owns the shapes (see `docs/http-api.md`): a JSON object (an empty request body is `{}`),
//! the execute body (`{"tool","action",…params}` flat, or `{"tool","action","params":{…}}`
//! nested, never both), query strings (typed by the caller's [`QueryTypes`]: booleans,
//! non-negative integers, lists given repeated or comma-separated), and merging path or query
//! values into body params.
//!
//! Must not: validate params beyond their JSON shape, or know any tool's keys. What a param
//! means and whether it is allowed is the component's business (it rejects unknown keys with
//! `invalid_input`); the REST table of a tool says how its query string types a value.
//! Percent- and `+`-decoding of query strings is `form_urlencoded`'s (the `url` crate's), which
//! yields the pairs in order, repeated keys included.

use serde_json::{Map, Value};

use crate::error::{Code, ToolError};

fn invalid(message: String) -> ToolError {
    ToolError::new(Code::InvalidInput, message)
}

/// Where a params object's text came from, as its error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An HTTP request body; an empty (or all-blank) body is `{}`.
    Body,
    /// A command-line flag such as `--params-json`; its text must be a JSON object.
    Flag(&'static str),
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Body => "the request body",
            Origin::Flag(flag) => flag,
        }
    }
}

/// Text that must be one JSON object.
pub fn object(text: &[u8], origin: Origin) -> Result<Map<String, Value>, ToolError> {
    if origin == Origin::Body && text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let name = origin.name();
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(format!(
            "{name} must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(invalid(format!("{name} is not valid JSON: {e}"))),
    }
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
    let mut map = object(body, Origin::Body)?;
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

/// How a query string types its values, by key; any other key is a string.
#[derive(Debug, Clone, Copy)]
pub struct QueryTypes {
    /// Keys whose value is `true` or `false`.
    pub booleans: &'static [&'static str],
    /// Keys whose value is a non-negative integer.
    pub integers: &'static [&'static str],
    /// Keys that take a list: repeated (`status=open&status=blocked`) or comma-separated
    /// (`status=open,blocked`), in the order given; one value stays a plain string.
    pub lists: &'static [&'static str],
}

/// Query string → params: typed by `types`; a key given twice (other than a list key) is an
/// error. List keys follow the other keys, in the order of their first appearance.
pub fn query(raw: Option<&str>, types: &QueryTypes) -> Result<Map<String, Value>, ToolError> {
    let mut map = Map::new();
    let mut lists = Map::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.into_owned();
        if types.lists.contains(&key.as_str()) {
            let values = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Value::String(v.to_owned()));
            if let Value::Array(list) = lists.entry(key).or_insert_with(|| Value::Array(vec![])) {
                list.extend(values);
            }
            continue;
        }
        let typed = if types.booleans.contains(&key.as_str()) {
            match value.as_ref() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                v => {
                    return Err(invalid(format!(
                        "query parameter `{key}` must be true or false, got {v:?}"
                    )));
                }
            }
        } else if types.integers.contains(&key.as_str()) {
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
    for (key, list) in lists {
        let value = match list {
            Value::Array(mut one) if one.len() == 1 => one.remove(0),
            list => list,
        };
        map.insert(key, value);
    }
    Ok(map)
}

/// `/v1/explain`'s query: `tool` and `action`, both or neither (`None`). Any other key, or a
/// key given twice, is an error.
pub fn explain_query(raw: Option<&str>) -> Result<Option<(String, String)>, ToolError> {
    let strings = QueryTypes {
        booleans: &[],
        integers: &[],
        lists: &[],
    };
    let mut map = query(raw, &strings)?;
    if let Some(other) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "tool" | "action"))
    {
        return Err(invalid(format!(
            "unknown query parameter `{other}`; allowed: tool, action"
        )));
    }
    match (map.remove("tool"), map.remove("action")) {
        (Some(Value::String(tool)), Some(Value::String(action))) => Ok(Some((tool, action))),
        (None, None) => Ok(None),
        _ => Err(invalid("give both `tool` and `action`, or neither".into())),
    }
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

/// A JSON value's kind, for error messages ("got an array").
pub fn kind(v: &Value) -> &'static str {
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
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::backlog::routes::QUERY_TYPES;

    fn object_body(body: &[u8]) -> Result<Map<String, Value>, ToolError> {
        object(body, Origin::Body)
    }

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
        match (query(Some(raw), &QUERY_TYPES), expect) {
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

    #[test]
    fn objects_name_their_origin() {
        let flag = Origin::Flag("--params-json");
        let err = |text: &str, origin| object(text.as_bytes(), origin).unwrap_err().message;
        assert_eq!(
            err("[1]", flag),
            "--params-json must be a JSON object, got an array"
        );
        assert_eq!(
            err("[1]", Origin::Body),
            "the request body must be a JSON object, got an array"
        );
        assert_eq!(
            err("", flag),
            "--params-json is not valid JSON: EOF while parsing a value at line 1 column 0"
        );
        assert!(object(b" ", Origin::Body).unwrap().is_empty());
        assert_eq!(
            err("{\"a\":", Origin::Body),
            "the request body is not valid JSON: EOF while parsing a value at line 1 column 5"
        );
        assert_eq!(
            Value::Object(object(br#"{"b":1,"a":2}"#, flag).unwrap()).to_string(),
            r#"{"b":1,"a":2}"#
        );
    }

    /// The query typing before it took its key types from the REST table: the oracle of
    /// [`query_typing_agrees_with_the_old_code`], not product code.
    fn old_query(raw: Option<&str>) -> Result<Map<String, Value>, ToolError> {
        const BOOL_KEYS: &[&str] = &["overdue", "include_events", "dry_run"];
        const INT_KEYS: &[&str] = &["limit", "offset", "retention_days"];
        const LIST_KEYS: &[&str] = &["status"];
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

    /// One `key=value` pair of a generated query string: keys of every type, values that
    /// parse and values that do not, percent escapes (also broken ones and non-UTF-8 bytes),
    /// `+`, commas, blanks and unicode.
    fn pair() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("status".to_owned()),
            Just("overdue".to_owned()),
            Just("limit".to_owned()),
            Just("offset".to_owned()),
            Just("dry_run".to_owned()),
            Just("env".to_owned()),
            Just("st%61tus".to_owned()),
            "[a-z_%+]{0,8}",
        ];
        let value = prop_oneof![
            Just("true".to_owned()),
            Just("false".to_owned()),
            "[0-9]{1,22}",
            "-[0-9]{1,3}",
            "(open|blocked|done|, ?|%2C|%20|\\+){0,6}",
            "[a-z0-9%+,= é✓]{0,12}",
            "%[0-9A-Fa-f]{0,2}%F[0-9A-F]",
        ];
        (key, value, any::<bool>()).prop_map(|(k, v, with_eq)| {
            if with_eq || !v.is_empty() {
                format!("{k}={v}")
            } else {
                k
            }
        })
    }

    proptest! {
        /// The query typing gives exactly what the old code gave (the same keys in the same
        /// order with the same values, or the same error) for every generated query string.
        #[test]
        fn query_typing_agrees_with_the_old_code(
            pairs in proptest::collection::vec(pair(), 0..8),
            sep in prop_oneof![Just("&"), Just("&&"), Just(";&")],
        ) {
            let raw = pairs.join(sep);
            let new = query(Some(&raw), &QUERY_TYPES).map(|m| Value::Object(m).to_string());
            let old = old_query(Some(&raw)).map(|m| Value::Object(m).to_string());
            prop_assert_eq!(new, old, "query {:?}", raw);
        }
    }
}
