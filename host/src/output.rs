//! What the CLI prints on stdout: `-o json|table|yaml`, and one writer that treats a closed
//! stdout (`| head -c1`) as the end of the job rather than an error.
//!
//! JSON is the default when stdout is not a terminal (scripts and pipes keep the exact bytes
//! they always got); a person at a terminal gets tables. Tables are made from the JSON the
//! command would print, so the two never disagree.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};

use clap::ValueEnum;
use serde_json::Value;

use crate::exit::Failure;

/// `-o/--output`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
    Yaml,
}

impl Format {
    /// The flag's value, else a table on a terminal and JSON elsewhere.
    pub fn resolve(flag: Option<Format>) -> Format {
        flag.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            }
        })
    }
}

/// Writes `text` to stdout. A closed stdout (EPIPE) is not an error: the reader has what it
/// wanted, so the command ends quietly with exit 0 (`Failure::Quiet(0)`).
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::Quiet(0)),
        Err(e) => Err(Failure::Exit(
            1,
            anyhow::anyhow!("cannot write to stdout: {e}"),
        )),
    }
}

/// [`emit`] plus a newline.
pub fn emit_line(text: &str) -> Result<(), Failure> {
    emit(&format!("{text}\n"))
}

/// What a document is, for its table.
#[derive(Copy, Clone, Debug)]
pub enum Kind<'a> {
    /// The result of `call TOOL ACTION`.
    Call(&'a str),
    /// `plugins list` / `plugins inspect`.
    Plugins,
    /// `scheduler status`.
    SchedulerStatus,
    /// Anything else: keys and values.
    Plain,
}

/// `doc` in `format`; `json` is what the command printed before formats existed (compact or
/// pretty, as given).
pub fn render(doc: &Value, kind: Kind<'_>, format: Format, pretty_json: bool) -> String {
    match format {
        Format::Json if pretty_json => {
            format!(
                "{}\n",
                serde_json::to_string_pretty(doc).unwrap_or_default()
            )
        }
        Format::Json => format!("{doc}\n"),
        Format::Yaml => serde_yaml_ng::to_string(doc).unwrap_or_default(),
        Format::Table => table_of(doc, kind),
    }
}

fn table_of(doc: &Value, kind: Kind<'_>) -> String {
    match kind {
        Kind::Call(action) => call_table(action, doc),
        Kind::Plugins => plugins_table(doc),
        Kind::SchedulerStatus => scheduler_table(doc),
        Kind::Plain => card(doc, &[]),
    }
}

fn call_table(action: &str, doc: &Value) -> String {
    if doc.get("error").is_some() && doc.get("code").is_some() {
        return format!("error ({}): {}\n", text(&doc["code"]), text(&doc["error"]));
    }
    if doc.get("status_counts").is_some() && doc.get("overdue").is_some() {
        return dashboard(doc);
    }
    if let Some(items) = doc.get("items").and_then(Value::as_array)
        && items
            .iter()
            .all(|i| i.get("id").is_some() && i.get("title").is_some())
    {
        return item_list(doc, items);
    }
    if action == "events"
        && let Some(events) = doc.get("events").and_then(Value::as_array)
    {
        return events_table(events);
    }
    if doc.get("id").is_some() && doc.get("title").is_some() {
        return item_card(doc);
    }
    if let Some(doomed) = doc.get("would_delete").and_then(Value::as_array) {
        let mut out = card(doc, &["would_delete"]);
        let keys = ["id", "env", "status", "updated_at", "title"];
        let rows: Vec<Vec<String>> = doomed.iter().map(|i| row(i, &keys, "title", 60)).collect();
        let _ = writeln!(out, "\nwould delete ({} shown):", rows.len());
        out.push_str(&table(&["ID", "ENV", "STATUS", "UPDATED", "TITLE"], &rows));
        return out;
    }
    card(doc, &[])
}

/// The list columns: id, priority, status, service, title, owner, due.
fn item_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|i| {
            let keys = [
                "id", "priority", "status", "service", "title", "owner", "due_date",
            ];
            row(i, &keys, "title", 60)
        })
        .collect()
}

const ITEM_HEADERS: [&str; 7] = [
    "ID", "PRIORITY", "STATUS", "SERVICE", "TITLE", "OWNER", "DUE",
];

fn item_list(doc: &Value, items: &[Value]) -> String {
    let mut out = table(&ITEM_HEADERS, &item_rows(items));
    let total = doc.get("total").and_then(Value::as_u64);
    let mut footer = match total {
        Some(t) => format!("{} of {t} items", items.len()),
        None => format!("{} items", items.len()),
    };
    if let Some(next) = doc.get("next_offset").and_then(Value::as_u64) {
        let _ = write!(footer, "; next page: offset {next}");
    }
    let _ = writeln!(out, "{footer}");
    out
}

fn dashboard(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "env {}  backend {}  at {}",
        text(&doc["env"]),
        text(&doc["backend"]),
        text(&doc["generated_at"])
    );
    let _ = writeln!(out, "total {}", text(&doc["total"]));
    for key in ["status_counts", "priority_counts"] {
        if let Some(counts) = doc.get(key).and_then(Value::as_object) {
            let parts: Vec<String> = counts
                .iter()
                .map(|(k, v)| format!("{k} {}", text(v)))
                .collect();
            let label = key.trim_end_matches("_counts");
            let _ = writeln!(out, "{label:<9}{}", parts.join("  "));
        }
    }
    let overdue = doc
        .get("overdue")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let _ = writeln!(out, "\noverdue: {}", text(&doc["overdue_count"]));
    if !overdue.is_empty() {
        out.push_str(&table(&ITEM_HEADERS, &item_rows(overdue)));
    }
    if let Some(top) = doc.get("top_services").and_then(Value::as_array)
        && !top.is_empty()
    {
        let rows: Vec<Vec<String>> = top
            .iter()
            .map(|s| vec![text(&s["service"]), text(&s["count"])])
            .collect();
        let _ = writeln!(out, "\ntop services:");
        out.push_str(&table(&["SERVICE", "OPEN"], &rows));
    }
    if let Some(alerts) = doc.get("alerts").and_then(Value::as_array)
        && !alerts.is_empty()
    {
        let _ = writeln!(out, "\nalerts:");
        for a in alerts {
            let _ = writeln!(out, "  {}", compact(a));
        }
    }
    out
}

fn item_card(doc: &Value) -> String {
    let mut out = card(doc, &["events"]);
    if let Some(events) = doc.get("events").and_then(Value::as_array) {
        let _ = writeln!(out, "\nevents ({}):", events.len());
        out.push_str(&events_table(events));
    }
    out
}

/// A table row of `v`: the text of each of `keys`, `clipped` cut to `width` characters.
fn row(v: &Value, keys: &[&str], clipped: &str, width: usize) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let cell = text(&v[*k]);
            if *k == clipped {
                clip(&cell, width)
            } else {
                cell
            }
        })
        .collect()
}

fn events_table(events: &[Value]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| row(e, &["ts", "type", "actor", "message"], "message", 80))
        .collect();
    table(&["TS", "TYPE", "ACTOR", "MESSAGE"], &rows)
}

fn plugins_table(doc: &Value) -> String {
    let mut rows = Vec::new();
    for tool in doc
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for action in tool
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let entitlements = action
                .get("entitlements")
                .and_then(Value::as_array)
                .map(|es| es.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            rows.push(vec![
                text(&tool["name"]),
                text(&action["name"]),
                entitlements,
                clip(&text(&action["description"]), 70),
            ]);
        }
    }
    let mut out = table(&["TOOL", "ACTION", "ENTITLEMENTS", "DESCRIPTION"], &rows);
    for tool in doc
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(digest) = tool.get("digest").and_then(Value::as_str) {
            out.push_str(&format!("{}: {digest}\n", text(&tool["name"])));
        }
    }
    out
}

fn scheduler_table(doc: &Value) -> String {
    let mut out = format!("runs: {}  now: {}\n", text(&doc["runs"]), text(&doc["now"]));
    let rows: Vec<Vec<String>> = doc
        .get("jobs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|j| {
            let last = &j["last_run"];
            vec![
                text(&j["id"]),
                text(&j["schedule"]),
                format!("{}.{}", text(&j["tool"]), text(&j["action"])),
                text(&j["enabled"]),
                text(&j["installed"]),
                text(&last["scheduled"]),
                text(&j["outcome"]),
                text(&j["next_due"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "JOB",
            "SCHEDULE",
            "CALL",
            "ENABLED",
            "INSTALLED",
            "LAST RUN",
            "OUTCOME",
            "NEXT DUE",
        ],
        &rows,
    ));
    out
}

/// `key: value` lines (nested values compact JSON), skipping `skip`.
fn card(doc: &Value, skip: &[&str]) -> String {
    let Some(map) = doc.as_object() else {
        return format!("{}\n", text(doc));
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in map.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        let _ = writeln!(out, "{k:<width$}  {}", text(v));
    }
    out
}

/// A column-aligned table; an empty one says so.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// A scalar as text (strings unquoted, null empty), anything else compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.replace(['\n', '\r', '\t'], " "),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(_) | Value::Object(_) => compact(v),
    }
}

fn compact(v: &Value) -> String {
    v.to_string()
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_table_has_the_columns_in_order() {
        let doc = json!({"items": [{"id": "bl_1", "title": "Fix it", "priority": "P1",
            "status": "open", "service": "gw", "owner": "oncall", "due_date": "2026-12-01"}],
            "total": 3, "next_offset": 1});
        let t = render(&doc, Kind::Call("list"), Format::Table, false);
        let mut lines = t.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ITEM_HEADERS
        );
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            [
                "bl_1",
                "P1",
                "open",
                "gw",
                "Fix",
                "it",
                "oncall",
                "2026-12-01"
            ]
        );
        assert_eq!(lines.next().unwrap(), "1 of 3 items; next page: offset 1");
    }

    #[test]
    fn json_is_unchanged_and_yaml_parses_back() {
        let doc = json!({"id": "bl_1", "a": [1, 2]});
        assert_eq!(
            render(&doc, Kind::Plain, Format::Json, false),
            "{\"id\":\"bl_1\",\"a\":[1,2]}\n"
        );
        let yaml = render(&doc, Kind::Plain, Format::Yaml, false);
        let back: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn clip_counts_chars() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
