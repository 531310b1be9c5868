//! A test-only tool plugin that misbehaves on purpose, to prove the sandbox holds:
//!
//! - `write_backlog`: tries every way to change the granted `/backlog` directory (append to
//!   `items.jsonl`, create a file, truncate, rename, remove) and returns `forbidden` with the
//!   sandbox's refusal if all were refused — or `internal` naming what got through.
//! - `spin`: loops forever (the host must stop it at its time limit).
//! - `alloc`: allocates without bound (the host must stop it at its memory limit).
//! - `escape`: tries `..`, absolute host paths and `/backlog/../..`; returns which succeeded.
//! - `panic`: panics after writing to stderr.
//! - `ok`: returns `{"ok":true}` — the host must still answer normally after the others.
//! - `pg_read`, `pg_write`, `pg_none`, `pg_slow`, `pg_slow_write` (the grant and the time
//!   limit differ, the code is the same): runs
//!   the statements of `params.statements` (`[{"sql", "params": [{"text": "x"}, …]}]`) through
//!   the host's Postgres import on database `params.database` (default `backlog`), one after
//!   the other whatever fails, and returns every outcome (a statement with `"queue": true` goes
//!   through `queue` instead, answering `{"queued": true}`); `params.then` = `error` makes the
//!   call fail afterwards and `trap` makes it panic (the host must roll back either way).

use std::fs::{self, OpenOptions};
use std::io::Write as _;

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:hostile;

        world hostile {
            import backlog-bridge:pg/postgres@0.1.0;
            export backlog-bridge:tool/tool@0.2.0;
        }
    ",
    world: "test:hostile/hostile",
    generate_all,
});

use backlog_bridge::pg::postgres::{self, DbValue, PgError};
use backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError};
use exports::backlog_bridge::tool::tool::{ActionInfo, Guest, ToolInfo};

struct Hostile;

export!(Hostile);

const ACTIONS: &[&str] = &[
    "write_backlog",
    "spin",
    "alloc",
    "escape",
    "panic",
    "ok",
    "pg_read",
    "pg_write",
    "pg_none",
    "pg_slow",
    "pg_slow_write",
];

impl Guest for Hostile {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "hostile".into(),
            description: "Test plugin that attacks its sandbox.".into(),
            actions: ACTIONS
                .iter()
                .map(|a| ActionInfo {
                    name: (*a).into(),
                    description: format!("hostile {a}"),
                    params_schema: r#"{"type":"object"}"#.into(),
                })
                .collect(),
        }
    }

    fn call(action: String, params: String, context: CallContext) -> Result<String, ToolError> {
        match action.as_str() {
            "pg_read" | "pg_write" | "pg_none" | "pg_slow" | "pg_slow_write" => {
                pg(&params, &context)
            }
            "write_backlog" => write_backlog(),
            "spin" => spin(),
            "alloc" => alloc(),
            "escape" => escape(),
            "panic" => {
                eprintln!("hostile: about to panic");
                panic!("hostile guest panicked on purpose")
            }
            _ => Ok(r#"{"ok":true}"#.into()),
        }
    }
}

fn write_backlog() -> Result<String, ToolError> {
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        ("append items.jsonl", append("/backlog/items.jsonl")),
        ("write items.jsonl", overwrite("/backlog/items.jsonl")),
        ("truncate items.jsonl", truncate("/backlog/items.jsonl")),
        ("create a file", fs::write("/backlog/new.jsonl", b"x")),
        (
            "rename items.jsonl",
            fs::rename("/backlog/items.jsonl", "/backlog/moved.jsonl"),
        ),
        (
            "remove events.jsonl",
            fs::remove_file("/backlog/events.jsonl"),
        ),
        ("create a directory", fs::create_dir("/backlog/sub")),
    ];
    let got_through: Vec<&str> = attempts
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| *n)
        .collect();
    if !got_through.is_empty() {
        return Err(ToolError {
            code: ErrorCode::Internal,
            message: format!("sandbox let through: {}", got_through.join(", ")),
        });
    }
    let refusals: Vec<String> = attempts
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
        .collect();
    Err(ToolError {
        code: ErrorCode::Forbidden,
        message: format!("the sandbox refused every write: {}", refusals.join("; ")),
    })
}

fn append(path: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    f.write_all(b"{\"id\":\"bl_hacked\"}\n")?;
    f.sync_data()
}

fn overwrite(path: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(b"hacked")
}

fn truncate(path: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map(drop)
}

fn spin() -> Result<String, ToolError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn alloc() -> Result<String, ToolError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 4 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn escape() -> Result<String, ToolError> {
    let tries = [
        "../etc/passwd",
        "/etc/passwd",
        "/backlog/../../etc/passwd",
        "/backlog/../",
        "..",
        "/",
        "/proc/self/environ",
    ];
    let opened: Vec<&str> = tries
        .iter()
        .filter(|p| fs::read(p).is_ok() || fs::read_dir(p).is_ok())
        .copied()
        .collect();
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    Ok(format!(
        r#"{{"opened":{},"env":{}}}"#,
        json_list(&opened),
        json_list(&env.iter().map(String::as_str).collect::<Vec<_>>())
    ))
}

fn json_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}

thread_local! {
    /// The config text this instance was last sent (the host sends `none` when unchanged).
    static CONFIG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The call's config text: the one sent now, else the one kept from an earlier call.
fn config_text(context: &CallContext) -> String {
    CONFIG.with(|kept| {
        if let Some(text) = &context.config {
            *kept.borrow_mut() = text.clone();
        }
        kept.borrow().clone()
    })
}

fn pg(params: &str, context: &CallContext) -> Result<String, ToolError> {
    let params: Value = serde_json::from_str(params).map_err(|e| ToolError {
        code: ErrorCode::InvalidInput,
        message: e.to_string(),
    })?;
    let database = params["database"].as_str().unwrap_or("backlog");
    let mut results = Vec::new();
    for st in params["statements"].as_array().into_iter().flatten() {
        let sql = st["sql"].as_str().unwrap_or_default();
        let args: Vec<DbValue> = st["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(db_value)
            .collect();
        if st["queue"] == true {
            results.push(match postgres::queue(database, sql, &args) {
                Ok(()) => json!({"queued": true}),
                Err(e) => json!({"error": pg_error(&e)}),
            });
            continue;
        }
        results.push(match postgres::execute(database, sql, &args) {
            Ok(r) => json!({"ok": {
                "columns": r.columns,
                "rows": r.rows.iter().map(|row| row.iter().map(to_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
                "rows_affected": r.rows_affected,
            }}),
            Err(e) => json!({"error": pg_error(&e)}),
        });
    }
    let out = json!({"results": results, "config": config_text(context)}).to_string();
    match params["then"].as_str() {
        Some("error") => Err(ToolError {
            code: ErrorCode::Conflict,
            message: out,
        }),
        Some("trap") => panic!("hostile guest traps after its statements"),
        _ => Ok(out),
    }
}

/// `{"text": "x"}`, `{"int64": 1}`, `{"null": null}`, …: the WIT variant case by name.
fn db_value(v: &Value) -> DbValue {
    let (case, inner) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or(("null", &Value::Null));
    let s = || inner.as_str().unwrap_or_default().to_owned();
    match case {
        "boolean" => DbValue::Boolean(inner.as_bool().unwrap_or_default()),
        "int64" => DbValue::Int64(inner.as_i64().unwrap_or_default()),
        "float64" => DbValue::Float64(inner.as_f64().unwrap_or_default()),
        "text" => DbValue::Text(s()),
        "json" => DbValue::Json(s()),
        "timestamp" => DbValue::Timestamp(s()),
        "date" => DbValue::Date(s()),
        _ => DbValue::Null,
    }
}

fn to_json(v: &DbValue) -> Value {
    match v {
        DbValue::Null => json!({"null": null}),
        DbValue::Boolean(b) => json!({"boolean": b}),
        DbValue::Int64(i) => json!({"int64": i}),
        DbValue::Float64(f) => json!({"float64": f}),
        DbValue::Text(s) => json!({"text": s}),
        DbValue::Json(s) => json!({"json": s}),
        DbValue::Timestamp(s) => json!({"timestamp": s}),
        DbValue::Date(s) => json!({"date": s}),
    }
}

fn pg_error(e: &PgError) -> Value {
    match e {
        PgError::NotGranted(m) => json!({"kind": "not_granted", "message": m}),
        PgError::Refused(m) => json!({"kind": "refused", "message": m}),
        PgError::Unavailable(m) => json!({"kind": "unavailable", "message": m}),
        PgError::Sql(s) => json!({"kind": "sql", "sqlstate": s.sqlstate, "message": s.message}),
        PgError::Limit(m) => json!({"kind": "limit", "message": m}),
    }
}
