//! Cheap parsing of stored lines for indexing.
//!
//! Indexing 100k lines must not build 100k `Item`s: the structs here borrow the few key fields
//! straight from the line buffer and only *validate* the rest (type and shape, no allocation).
//! They accept exactly what `Item` / `Event` accept — same keys, `deny_unknown_fields`, same
//! value types — so a line the index accepts is a line `get` can parse, and a line `Item`
//! rejects is reported as corrupt when it is indexed, not when it is read. The test
//! `head_accepts_exactly_what_item_accepts` keeps the two in step with `backlog-core`'s model.

use std::borrow::Cow;
use std::fmt;

use backlog_core::model::{EventType, Priority, Source, Status};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The key fields of an item line; every other field is validated and dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "validation-only fields are never read")]
pub(crate) struct ItemHead<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    created_at: AnyStr,
    #[serde(borrow)]
    pub updated_at: Cow<'a, str>,
    #[serde(borrow)]
    pub env: Cow<'a, str>,
    #[serde(borrow)]
    pub service: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    title: AnyStr,
    description: AnyStr,
    pub priority: Priority,
    pub status: Status,
    #[serde(borrow)]
    pub owner: Cow<'a, str>,
    #[serde(borrow)]
    pub due_date: Cow<'a, str>,
    source: Source,
    #[serde(borrow)]
    pub dedupe_key: Cow<'a, str>,
    evidence_refs: StrListMap,
    tags: StrList,
    meta: AnyObject,
}

/// The key field of an event line (`item_id`); every other field is validated and dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "validation-only fields are never read")]
pub(crate) struct EventHead<'a> {
    id: AnyStr,
    #[serde(borrow)]
    pub item_id: Cow<'a, str>,
    ts: AnyStr,
    #[serde(rename = "type")]
    kind: EventType,
    actor: AnyStr,
    message: AnyStr,
    meta: AnyObject,
}

/// `line` without its trailing `\n` (and a `\r` before it, for hand-edited files).
pub(crate) fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one line (with or without its `\n`). `Ok(None)`: a blank line, skipped silently.
/// `Err`: the reason the line is corrupt, for the warning.
pub(crate) fn parse<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<Option<T>, String> {
    let text =
        std::str::from_utf8(trim_newline(line)).map_err(|e| format!("invalid UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// [`parse`] of an item or event line that also reads lines whose `meta` is nested too deep
/// for the parser (older versions stored them): such a line is parsed with its `meta`
/// replaced ([`crate::deep::fit_meta`]), the replacement kept in `buf`. On failure the reason
/// is the original line's.
pub(crate) fn parse_fitted<'a, T: Deserialize<'a>>(
    line: &'a [u8],
    buf: &'a mut Option<Vec<u8>>,
) -> Result<Option<T>, String> {
    match parse::<T>(line) {
        Err(reason) => match crate::deep::fit_meta(trim_newline(line)) {
            Some(fixed) => {
                let fixed: &'a [u8] = buf.insert(fixed);
                parse::<T>(fixed).map_err(|_| reason)
            }
            None => Err(reason),
        },
        ok => ok,
    }
}

/// Any JSON string, not kept.
struct AnyStr;

impl<'de> Deserialize<'de> for AnyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyStr, E> {
                Ok(AnyStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON array of strings (`Vec<String>`), not kept.
struct StrList;

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                while seq.next_element::<AnyStr>()?.is_some() {}
                Ok(StrList)
            }
        }
        d.deserialize_seq(V)
    }
}

/// A JSON object of string arrays (`BTreeMap<String, Vec<String>>`), not kept.
struct StrListMap;

impl<'de> Deserialize<'de> for StrListMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrListMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrListMap, A::Error> {
                while map.next_entry::<AnyStr, StrList>()?.is_some() {}
                Ok(StrListMap)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object with any values (`serde_json::Map<String, Value>`), not kept.
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<AnyStr, AnyValue>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value, not kept. Goes through `deserialize_any` like `serde_json::Value` does, so
/// the parser's nesting limit applies the same way (`IgnoredAny` would skip it).
struct AnyValue;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any valid JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
                AnyValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
                while seq.next_element::<AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                while map.next_entry::<AnyStr, AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backlog_core::model::{Event, Item};

    const ITEM: &str = r#"{"id":"bl_0123456789ab","created_at":"2026-03-02T06:20:01.123456Z","updated_at":"2026-03-02T06:20:01.123456Z","env":"prod","service":"api","category":"refactor","title":"t","description":"line\nwith escape","priority":"P1","status":"open","owner":"oncall","due_date":"2026-03-09","source":"manual","dedupe_key":"manual:bl_0123456789ab","evidence_refs":{"alerts":["al_1"],"incidents":[]},"tags":["a"],"meta":{"n":1,"x":[true,null,{"y":"z"}],"f":1.5}}"#;
    const EVENT: &str = r#"{"id":"ev_0123456789ab","item_id":"bl_0123456789ab","ts":"2026-03-02T06:20:01.123456Z","type":"status_changed","actor":"a","message":"","meta":{"from":"open","to":"done"}}"#;

    fn both_item(line: &str) -> (bool, bool) {
        let head = parse::<ItemHead>(line.as_bytes()).is_ok_and(|h| h.is_some());
        let full = serde_json::from_str::<Item>(line).is_ok();
        (head, full)
    }

    fn both_event(line: &str) -> (bool, bool) {
        let head = parse::<EventHead>(line.as_bytes()).is_ok_and(|h| h.is_some());
        let full = serde_json::from_str::<Event>(line).is_ok();
        (head, full)
    }

    #[test]
    fn head_keeps_the_keys() {
        let text = format!("{ITEM}\n");
        let h = parse::<ItemHead>(text.as_bytes()).unwrap().unwrap();
        assert_eq!(h.id, "bl_0123456789ab");
        assert!(matches!(h.id, Cow::Borrowed(_)));
        assert_eq!(h.env, "prod");
        assert_eq!(h.service, "api");
        assert_eq!(h.category, "refactor");
        assert_eq!(h.owner, "oncall");
        assert_eq!(h.due_date, "2026-03-09");
        assert_eq!(h.dedupe_key, "manual:bl_0123456789ab");
        assert_eq!(h.priority, Priority::P1);
        assert_eq!(h.status, Status::Open);
        let e = parse::<EventHead>(EVENT.as_bytes()).unwrap().unwrap();
        assert_eq!(e.item_id, "bl_0123456789ab");
    }

    #[test]
    fn blank_lines_are_skipped_not_corrupt() {
        assert!(parse::<ItemHead>(b"\n").unwrap().is_none());
        assert!(parse::<ItemHead>(b"  \r\n").unwrap().is_none());
        assert!(parse::<ItemHead>(b"{\n").is_err());
        assert!(parse::<ItemHead>(b"\xff\xfe\n").is_err_and(|e| e.contains("UTF-8")));
    }

    #[test]
    fn head_accepts_exactly_what_item_accepts() {
        let v: serde_json::Value = serde_json::from_str(ITEM).unwrap();
        let obj = v.as_object().unwrap();
        let mut cases = vec![ITEM.to_string()];
        // Each key missing, each key with a wrong type, an extra key.
        for k in obj.keys() {
            let mut o = obj.clone();
            o.remove(k);
            cases.push(serde_json::to_string(&o).unwrap());
            for bad in [
                serde_json::json!(null),
                serde_json::json!(1),
                serde_json::json!("s"),
                serde_json::json!([1]),
                serde_json::json!({"a": 1}),
                serde_json::json!({"a": ["x"]}),
                serde_json::json!(["x"]),
            ] {
                let mut o = obj.clone();
                o.insert(k.clone(), bad);
                cases.push(serde_json::to_string(&o).unwrap());
            }
        }
        let mut o = obj.clone();
        o.insert("extra".into(), serde_json::json!(1));
        cases.push(serde_json::to_string(&o).unwrap());
        // Deep nesting in meta: serde_json's recursion limit must apply to both.
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let mut o = obj.clone();
        o.insert("meta".into(), serde_json::json!({}));
        let s = serde_json::to_string(&o)
            .unwrap()
            .replace(r#""meta":{}"#, &format!(r#""meta":{{"d":{deep}}}"#));
        cases.push(s);
        cases.push(ITEM.replace(r#""P1""#, r#""P9""#));
        cases.push(ITEM.replace(r#""open""#, r#""cancelled""#));
        cases.push(format!("{ITEM} trailing"));
        cases.push(ITEM.replace(
            r#""id":"bl_0123456789ab""#,
            r#""id":"bl_0123456789ab","id":"x""#,
        ));
        for c in &cases {
            let (head, full) = both_item(c);
            assert_eq!(head, full, "item head and Item disagree on {c}");
        }

        let v: serde_json::Value = serde_json::from_str(EVENT).unwrap();
        let obj = v.as_object().unwrap();
        let mut cases = vec![EVENT.to_string()];
        for k in obj.keys() {
            let mut o = obj.clone();
            o.remove(k);
            cases.push(serde_json::to_string(&o).unwrap());
            for bad in [
                serde_json::json!(null),
                serde_json::json!(1),
                serde_json::json!([]),
            ] {
                let mut o = obj.clone();
                o.insert(k.clone(), bad);
                cases.push(serde_json::to_string(&o).unwrap());
            }
        }
        cases.push(EVENT.replace("status_changed", "exploded"));
        for c in &cases {
            let (head, full) = both_event(c);
            assert_eq!(head, full, "event head and Event disagree on {c}");
        }
    }
}
