//! A guest's answer as it left the guest: JSON text checked once and passed through.
//!
//! The faces mostly write the answer straight back out (an HTTP body, an MCP text block, a
//! CLI line), so the host does not build a [`Value`] of it: a warm `get` spent a quarter of
//! the host's own time parsing the answer into one. Whoever needs to look inside (the audit
//! line of a write, the dashboard gauges, a scheduled job) asks for [`Answer::to_value`].

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One JSON value, checked well-formed, as text.
#[derive(Debug, Clone)]
pub struct Answer(Box<RawValue>);

impl Answer {
    /// Checks `text` is one JSON value (and nothing after it), without building it.
    pub fn from_text(text: String) -> Result<Answer, serde_json::Error> {
        RawValue::from_string(text).map(Answer)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, owned.
    pub fn into_text(self) -> String {
        Box::<str>::from(self.0).into_string()
    }

    /// The answer parsed.
    pub fn to_value(&self) -> Value {
        // Checked at construction, with the same parser and nesting limit.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl From<&Value> for Answer {
    fn from(v: &Value) -> Answer {
        // A `Value` always serializes and always reads back.
        Answer::from_text(v.to_string()).unwrap_or_else(|_| Answer(Box::default()))
    }
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_without_building_and_reads_back() {
        let a = Answer::from_text(r#"{"id":"BB-1","tags":["a"]}"#.into()).expect("valid");
        assert_eq!(a.as_str(), r#"{"id":"BB-1","tags":["a"]}"#);
        assert_eq!(a.to_value(), json!({"id": "BB-1", "tags": ["a"]}));
        // Serialized inside a larger document, it is written as it is.
        let wrapped = serde_json::to_string(&json!({"result": a})).expect("serializes");
        assert_eq!(wrapped, r#"{"result":{"id":"BB-1","tags":["a"]}}"#);
    }

    #[test]
    fn refuses_what_is_not_one_json_value() {
        for bad in ["", "{", r#"{"a":1} {"b":2}"#, "nul", r#"{"a":1,}"#] {
            assert!(Answer::from_text(bad.into()).is_err(), "{bad:?}");
        }
    }
}
