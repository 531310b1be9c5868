//! Reading a params object: the allowed keys and typed access to its fields.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::model::{Priority, Source};
use crate::validate as v;

type Result<T = ()> = std::result::Result<T, Error>;

/// The JSON type name of `v`, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The params object of `action`, with every key checked against `allowed`.
pub fn object<'a>(action: &str, params: &'a Value, allowed: &[&str]) -> Result<Fields<'a>> {
    let Value::Object(map) = params else {
        return Err(Error::invalid_input(format!(
            "params of `{action}` must be a JSON object, got {}",
            type_name(params)
        )));
    };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid_input(format!(
            "unknown parameter `{}` for `{action}`; allowed: {}",
            key.escape_debug(),
            allowed.join(", ")
        )));
    }
    Ok(Fields {
        action: action.to_owned(),
        map,
    })
}

/// Typed access to a params object; `null` reads as absent.
pub struct Fields<'a> {
    action: String,
    map: &'a Map<String, Value>,
}

pub(super) fn wrong(key: &str, expected: &str, got: &Value) -> Error {
    Error::invalid_input(format!(
        "`{key}` must be {expected}, got {}",
        type_name(got)
    ))
}

impl<'a> Fields<'a> {
    /// The value of `key`, `None` if absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn missing(&self, key: &str) -> Error {
        Error::invalid_input(format!(
            "missing required parameter `{key}` for `{}`",
            self.action
        ))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(key, "a string", other)),
        }
    }

    /// A required string.
    pub fn req_str(&self, key: &str) -> Result<String> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong(key, "a boolean", other)),
        }
    }

    /// An optional non-negative integer of at most `max` (the message names the limit).
    pub fn opt_bounded(&self, key: &str, min: u64, max: usize) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(n @ Value::Number(num)) => {
                let Some(u) = num.as_u64() else {
                    return Err(wrong(key, "a non-negative integer", n));
                };
                match usize::try_from(u) {
                    Ok(x) if u >= min && x <= max => Ok(Some(x)),
                    _ => Err(Error::invalid_input(format!(
                        "`{key}` must be between {min} and {max}, got {u}"
                    ))),
                }
            }
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// An optional non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(n @ Value::Number(num)) => num
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .map(Some)
                .ok_or_else(|| wrong(key, "a non-negative integer", n)),
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// An optional JSON object.
    pub fn opt_object(&self, key: &str) -> Result<Option<Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(wrong(key, "an object", other)),
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(&format!("{key}[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong(key, "a list of strings", other)),
        }
    }

    /// An optional object of kind → list of strings (`evidence_refs`).
    pub fn opt_refs(&self, key: &str) -> Result<Option<BTreeMap<String, Vec<String>>>> {
        let Some(obj) = self.opt_object(key)? else {
            return Ok(None);
        };
        let mut refs = BTreeMap::new();
        for (kind, list) in obj {
            let field = format!("{key}.{kind}");
            let Value::Array(a) = list else {
                return Err(wrong(&field, "a list of strings", &list));
            };
            let ids = a
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(&format!("{field}[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>>>()?;
            refs.insert(kind, ids);
        }
        Ok(Some(refs))
    }

    /// An optional priority name.
    pub fn opt_priority(&self, key: &str) -> Result<Option<Priority>> {
        self.opt_str(key)?.map(|s| v::priority(key, &s)).transpose()
    }

    /// An optional source name.
    pub fn opt_source(&self, key: &str) -> Result<Option<Source>> {
        self.opt_str(key)?.map(|s| v::source(key, &s)).transpose()
    }
}
