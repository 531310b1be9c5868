//! HTTP query strings as the router's REST routes decode them (`params::query` with the
//! backlog's [`QUERY_TYPES`], then `params::merge` with the path's values).

use backlog_bridge::backlog::routes::QUERY_TYPES;
use backlog_bridge::params;
use backlog_core::list::ListQuery;
use backlog_core::params::{DashboardParams, EventsParams, GetParams, Params, WeeklyParams};
use backlog_core::policy::Policy;
use serde_json::{Map, Value};

/// The query string that decodes to `map`: lists as repeated keys, an empty list as `key=`.
fn encode(map: &Map<String, Value>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in map {
        let values = match value {
            Value::Array(list) if list.is_empty() => vec![Value::String(String::new())],
            Value::Array(list) => list.clone(),
            other => vec![other.clone()],
        };
        for v in values {
            match v {
                Value::String(s) => out.append_pair(key, &s),
                other => out.append_pair(key, &other.to_string()),
            };
        }
    }
    out.finish()
}

/// Decodes `raw` for a route of `T` whose path gives `path` (merged as the router does).
fn decode<T: Params>(
    raw: &str,
    path: &Map<String, Value>,
    policy: &Policy,
) -> Option<(Map<String, Value>, Result<T, backlog_core::Error>)> {
    let query = params::query(Some(raw), &QUERY_TYPES).ok()?;
    let merged = params::merge(query.clone(), path.clone()).ok()?;
    let validated = T::from_json(&Value::Object(merged), policy);
    Some((query, validated))
}

fn round_trip<T: Params + PartialEq + std::fmt::Debug>(raw: &str, path: &Map<String, Value>) {
    let policy = Policy::default();
    let Some((query, Ok(first))) = decode::<T>(raw, path, &policy) else {
        return;
    };
    let again = encode(&query);
    let Some((query2, second)) = decode::<T>(&again, path, &policy) else {
        panic!("{raw:?} → {query:?} → {again:?}: no longer decodes");
    };
    assert_eq!(query2, query, "{raw:?} → {again:?}");
    match second {
        Ok(second) => assert_eq!(second, first, "{raw:?} → {again:?}"),
        Err(e) => panic!("{raw:?} → {again:?}: {e:?}"),
    }
}

/// A query string (the first byte picks the route, `/v1/explain` included): decoding never
/// panics; decoded params that validate print back to a query string that decodes to the
/// same params, which validate to the same value.
pub fn check_query(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let mut path = Map::new();
    match pick % 6 {
        0 => round_trip::<ListQuery>(raw, &path),
        1 => round_trip::<DashboardParams>(raw, &path),
        2 => round_trip::<WeeklyParams>(raw, &path),
        3 => {
            path.insert("id".into(), Value::String("bl_0123456789abcdef".into()));
            round_trip::<EventsParams>(raw, &path)
        }
        4 => {
            path.insert("id".into(), Value::String("bl_0123456789abcdef".into()));
            round_trip::<GetParams>(raw, &path)
        }
        _ => explain(raw),
    }
}

/// `/v1/explain`'s query: accepted exactly when its keys are `tool` and `action`, each once,
/// or none (counted here with the URL decoder alone); what it accepts prints back to a query
/// that decodes to the same call.
fn explain(raw: &str) {
    let decoded = params::explain_query(Some(raw));
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (key, _) in form_urlencoded::parse(raw.as_bytes()) {
        *counts.entry(key.into_owned()).or_default() += 1;
    }
    let once = |k: &str| counts.get(k) == Some(&1);
    let valid = counts.is_empty() || (counts.len() == 2 && once("tool") && once("action"));
    assert_eq!(
        decoded.is_ok(),
        valid,
        "{raw:?}: {decoded:?} (keys {counts:?})"
    );
    match decoded {
        Ok(None) => assert!(counts.is_empty(), "{raw:?}"),
        Ok(Some((tool, action))) => {
            let again = form_urlencoded::Serializer::new(String::new())
                .append_pair("tool", &tool)
                .append_pair("action", &action)
                .finish();
            let back = params::explain_query(Some(&again));
            assert_eq!(back.ok(), Some(Some((tool, action))), "{raw:?} → {again:?}");
        }
        Err(e) => assert!(!e.message.is_empty(), "{raw:?}"),
    }
}
