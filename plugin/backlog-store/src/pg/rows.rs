//! Decoding result rows of the statements in [`super`] into the core model. Every column is
//! read by position from a SELECT list this module's caller owns; anything unexpected (wrong
//! arity, wrong type, a value outside the vocabulary, JSON that does not parse) is a
//! [`StoreError::Internal`] naming the table, the row's id when known, and the column — never
//! a panic.

use backlog_core::list::ItemKeys;
use backlog_core::model::{Event, Item};
use backlog_core::store::StoreError;
use backlog_core::time;
use serde::de::DeserializeOwned;

use super::sql::Value;

/// A cursor over one row's values.
pub(crate) struct Row<'a> {
    table: &'static str,
    values: &'a [Value],
    at: usize,
    /// The row's id once read, for messages.
    id: Option<&'a str>,
}

impl<'a> Row<'a> {
    /// A cursor over `values`, a row of `table` (for messages).
    pub(crate) fn new(table: &'static str, values: &'a [Value]) -> Self {
        Row {
            table,
            values,
            at: 0,
            id: None,
        }
    }

    fn bad(&self, column: &str, why: impl std::fmt::Display) -> StoreError {
        let at = match self.id {
            Some(id) => format!("{} row {id:?}", self.table),
            None => format!("a {} row", self.table),
        };
        StoreError::Internal(format!("postgres: {at}, column {column}: {why}"))
    }

    fn next(&mut self, column: &str) -> Result<&'a Value, StoreError> {
        let v = self
            .values
            .get(self.at)
            .ok_or_else(|| self.bad(column, "missing from the result"))?;
        self.at += 1;
        Ok(v)
    }

    /// The next column as text (any of the text-carrying variants).
    pub(crate) fn text(&mut self, column: &str) -> Result<&'a str, StoreError> {
        match self.next(column)? {
            Value::Text(s) | Value::Json(s) | Value::Timestamp(s) | Value::Date(s) => Ok(s),
            other => Err(self.bad(column, format!("expected text, got {other:?}"))),
        }
    }

    /// The next column as an owned string.
    pub(crate) fn string(&mut self, column: &str) -> Result<String, StoreError> {
        self.text(column).map(str::to_owned)
    }

    /// The next column, a timestamp (any RFC 3339 form), in the stored fixed-width form.
    pub(crate) fn timestamp(&mut self, column: &str) -> Result<String, StoreError> {
        let s = self.text(column)?;
        time::normalize_ts(s).ok_or_else(|| self.bad(column, format!("not a timestamp: {s:?}")))
    }

    /// The next column, a `YYYY-MM-DD` date.
    pub(crate) fn date(&mut self, column: &str) -> Result<String, StoreError> {
        let s = self.text(column)?;
        match time::parse_date(s) {
            Some(_) => Ok(s.to_owned()),
            None => Err(self.bad(column, format!("not a YYYY-MM-DD date: {s:?}"))),
        }
    }

    /// The next column as the row's id (remembered for later messages).
    pub(crate) fn id(&mut self, column: &str) -> Result<String, StoreError> {
        let id = self.text(column)?;
        self.id = Some(id);
        Ok(id.to_owned())
    }

    /// The next column as a non-negative count.
    pub(crate) fn count(&mut self, column: &str) -> Result<usize, StoreError> {
        match self.next(column)? {
            Value::Int(n) => usize::try_from(*n).map_err(|_| self.bad(column, "negative count")),
            other => Err(self.bad(column, format!("expected an integer, got {other:?}"))),
        }
    }

    /// The next column, a wire name (`P1`, `in_progress`, …), as its enum.
    pub(crate) fn word<T: DeserializeOwned>(&mut self, column: &str) -> Result<T, StoreError> {
        let s = self.text(column)?;
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| self.bad(column, format!("unknown value {s:?}")))
    }

    /// The next column, JSON text, parsed.
    pub(crate) fn json<T: DeserializeOwned>(&mut self, column: &str) -> Result<T, StoreError> {
        let s = self.text(column)?;
        serde_json::from_str(s).map_err(|e| self.bad(column, format!("bad JSON: {e}")))
    }

    /// The next column, an item's `meta` as JSON text; one nested deeper than the parser
    /// takes (stored by an older version) comes back as the truncation marker
    /// ([`crate::deep::fit_meta`]).
    pub(crate) fn meta(
        &mut self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let s = self.text("meta")?;
        match serde_json::from_str(s) {
            Ok(m) => Ok(m),
            Err(e) => {
                #[derive(serde::Deserialize)]
                struct Wrapped {
                    meta: serde_json::Map<String, serde_json::Value>,
                }
                crate::deep::fit_meta(format!("{{\"meta\":{s}}}").as_bytes())
                    .and_then(|fixed| serde_json::from_slice::<Wrapped>(&fixed).ok())
                    .map(|w| w.meta)
                    .ok_or_else(|| self.bad("meta", format!("bad JSON: {e}")))
            }
        }
    }
}

/// An item from the columns of [`super::ITEM_COLUMNS`], in that order.
pub(crate) fn item(values: &[Value]) -> Result<Item, StoreError> {
    let mut r = Row::new("backlog_items", values);
    Ok(Item {
        id: r.id("id")?,
        created_at: r.timestamp("created_at")?,
        updated_at: r.timestamp("updated_at")?,
        env: r.string("env")?,
        service: r.string("service")?,
        category: r.string("category")?,
        title: r.string("title")?,
        description: r.string("description")?,
        priority: r.word("priority")?,
        status: r.word("status")?,
        owner: r.string("owner")?,
        due_date: r.date("due_date")?,
        source: r.word("source")?,
        dedupe_key: r.string("dedupe_key")?,
        evidence_refs: r.json("evidence_refs")?,
        tags: r.json("tags")?,
        meta: r.meta()?,
    })
    .map(|mut item| {
        // Over-limit items of older versions are answered within the limits, with a warning
        // naming the item (the host logs a guest's stderr; natively it goes to stderr).
        let repairs = backlog_core::validate::fit_stored(&mut item);
        if !repairs.is_empty() {
            eprintln!(
                "postgres: warning: item {} is over the stored limits, answered truncated: {}",
                item.id,
                repairs.join("; ")
            );
        }
        item
    })
}

/// An event from the columns of [`super::EVENT_COLUMNS`], in that order.
pub(crate) fn event(values: &[Value]) -> Result<Event, StoreError> {
    let mut r = Row::new("backlog_events", values);
    Ok(Event {
        id: r.id("id")?,
        item_id: r.string("item_id")?,
        ts: r.timestamp("ts")?,
        kind: r.word("type")?,
        actor: r.string("actor")?,
        message: r.string("message")?,
        meta: r.json("meta")?,
    })
}

/// Item keys from the columns of [`super::KEY_COLUMNS`], in that order.
pub(crate) fn keys(values: &[Value]) -> Result<ItemKeys, StoreError> {
    let mut r = Row::new("backlog_items", values);
    Ok(ItemKeys {
        id: r.id("id")?,
        env: r.string("env")?,
        service: r.string("service")?,
        owner: r.string("owner")?,
        category: r.string("category")?,
        priority: r.word("priority")?,
        status: r.word("status")?,
        due_date: r.date("due_date")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn bad_rows_are_internal_errors_naming_row_and_column() {
        let row = vec![
            t("bl_000000000001"),
            t("prod"),
            t("api"),
            t("oncall"),
            t("refactor"),
            t("P9"),
            t("open"),
            t("2026-03-09"),
        ];
        match keys(&row) {
            Err(StoreError::Internal(m)) => {
                assert!(m.contains("\"bl_000000000001\""), "{m}");
                assert!(m.contains("column priority"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match keys(&row[..3]) {
            Err(StoreError::Internal(m)) => assert!(m.contains("column owner"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut r = Row::new("backlog_items", &[Value::Int(-1)]);
        assert!(r.count("total").is_err());
        let mut r = Row::new("backlog_items", &[Value::Null]);
        assert!(r.text("title").is_err());
        let bad_json = [t("{")];
        let mut r = Row::new("backlog_items", &bad_json);
        assert!(r.json::<serde_json::Value>("meta").is_err());
    }
}
