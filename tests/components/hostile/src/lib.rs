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

use std::fs::{self, OpenOptions};
use std::io::Write as _;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "backlog-bridge:tool/plugin@0.1.0",
    generate_all,
});

use backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError};
use exports::backlog_bridge::tool::tool::{ActionInfo, Guest, ToolInfo};

struct Hostile;

export!(Hostile);

const ACTIONS: &[&str] = &["write_backlog", "spin", "alloc", "escape", "panic", "ok"];

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

    fn call(action: String, _params: String, _context: CallContext) -> Result<String, ToolError> {
        match action.as_str() {
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
