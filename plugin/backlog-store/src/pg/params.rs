//! Values as statement parameters, and the small decoders every statement shares.

use backlog_core::model::{Event, Item};
use backlog_core::store::StoreError;
use backlog_core::time;

use super::{QueryResult, Value, rows};

pub(super) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// `n` as a bigint parameter (saturating: an absurd limit or offset is just large).
pub(super) fn int(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A stored timestamp (fixed width, or the legacy naive form) as a timestamptz parameter.
pub(super) fn timestamp(what: &str, s: &str) -> Result<Value, StoreError> {
    time::normalize_ts(s)
        .map(Value::Timestamp)
        .ok_or_else(|| StoreError::Internal(format!("{what} {s:?} is not a timestamp")))
}

pub(super) fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<Value, StoreError> {
    serde_json::to_string(v)
        .map(Value::Json)
        .map_err(|e| StoreError::Internal(format!("cannot serialize {what}: {e}")))
}

pub(super) fn item_params(item: &Item, out: &mut Vec<Value>) -> Result<(), StoreError> {
    let what = |col: &str| format!("item {} {col}", item.id);
    out.extend([
        text(&item.id),
        timestamp(&what("created_at"), &item.created_at)?,
        timestamp(&what("updated_at"), &item.updated_at)?,
        text(&item.env),
        text(&item.service),
        text(&item.category),
        text(&item.title),
        text(&item.description),
        text(item.priority.as_str()),
        text(item.status.as_str()),
        text(&item.owner),
        Value::Date(item.due_date.clone()),
        text(item.source.as_str()),
        text(&item.dedupe_key),
        json(&what("evidence_refs"), &item.evidence_refs)?,
        json(&what("tags"), &item.tags)?,
        json(&what("meta"), &item.meta)?,
    ]);
    Ok(())
}

pub(super) fn event_params(ev: &Event, out: &mut Vec<Value>) -> Result<(), StoreError> {
    out.extend([
        text(&ev.id),
        text(&ev.item_id),
        timestamp(&format!("event {} ts", ev.id), &ev.ts)?,
        text(ev.kind.as_str()),
        text(&ev.actor),
        text(&ev.message),
        json(&format!("event {} meta", ev.id), &ev.meta)?,
    ]);
    Ok(())
}

/// The single count of a `SELECT count(*)`.
pub(super) fn single_count(r: &QueryResult) -> Result<usize, StoreError> {
    let row = r
        .rows
        .first()
        .ok_or_else(|| StoreError::Internal("postgres: a count returned no row".into()))?;
    rows::Row::new("count", row).count("count")
}

/// A `YYYY-MM-DD` naming a real calendar date, as a date parameter.
pub(super) fn pg_date(s: &str) -> Option<Value> {
    time::parse_date(s).map(|_| Value::Date(s.to_owned()))
}
