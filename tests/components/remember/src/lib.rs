//! A test-only tool plugin that remembers, to show whether instances are shared
//! (`tests/all/isolation.rs`, `docs/isolation.md`):
//!
//! - `remember`: keeps its params (as text) in a static of the instance; answers
//!   `{"remembered": true}`.
//! - `recall`: answers `{"recalled": <the params of the last remember in this instance, or
//!   null>}`. With `"as_error": true` something remembered is answered as a `conflict` error
//!   whose message carries it instead (so a scheduled job's run record shows it).
//! - `config`: answers `{"sent": <whether this call's context carried the config>,
//!   "calls": <calls this instance ran>}` (the host sends it on an instance's first call and
//!   when it changes, `none` otherwise).
//!
//! It needs no grants: whatever it shows came through the instance's memory.

use std::sync::Mutex;

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:remember;

        world remember {
            export backlog-bridge:tool/tool@0.2.0;
        }
    ",
    world: "test:remember/remember",
    generate_all,
});

use backlog_bridge::tool::types::{CallContext, ErrorCode, ToolError};
use exports::backlog_bridge::tool::tool::{ActionInfo, Guest, ToolInfo};

/// The params of the last `remember` this instance ran.
static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Calls this instance ran.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Remember;

export!(Remember);

impl Guest for Remember {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "remember".into(),
            description: "Test plugin that keeps the params of its last call.".into(),
            actions: ["remember", "recall", "config"]
                .iter()
                .map(|a| ActionInfo {
                    name: (*a).into(),
                    description: format!("remember {a}"),
                    params_schema: r#"{"type":"object"}"#.into(),
                })
                .collect(),
        }
    }

    fn call(action: String, params: String, context: CallContext) -> Result<String, ToolError> {
        let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        match action.as_str() {
            "config" => Ok(json!({"sent": context.config.is_some(), "calls": calls}).to_string()),
            "remember" => {
                *last = Some(params);
                Ok(json!({"remembered": true}).to_string())
            }
            "recall" => {
                let recalled: Value = match last.as_deref() {
                    Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                    None => Value::Null,
                };
                let as_error = serde_json::from_str::<Value>(&params)
                    .ok()
                    .and_then(|p| p.get("as_error").and_then(Value::as_bool))
                    .unwrap_or(false);
                if as_error && !recalled.is_null() {
                    return Err(ToolError {
                        code: ErrorCode::Conflict,
                        message: format!("recalled: {recalled}"),
                    });
                }
                Ok(json!({ "recalled": recalled }).to_string())
            }
            other => Err(ToolError {
                code: ErrorCode::NotFound,
                message: format!("no action {other}"),
            }),
        }
    }
}
