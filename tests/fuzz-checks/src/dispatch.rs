//! MCP messages past the transport: an MCP session over the stdio transport with the real
//! handler (`McpHandler`, rmcp's dispatch) on a loaded bridge (the shipped config, the real
//! guest components, a `memory` store), after a valid handshake. The fuzzer's bytes are the
//! lines that follow it; the first byte picks the agent (`operator` or `viewer`).
//!
//! Properties: the session ends without a panic; every request is answered; everything
//! written is JSON-RPC 2.0 — a response (an `id` the client sent, exactly one of `result` and
//! `error`) or a notification;
//! `tools/list` lists exactly the agent's tools; a `tools/call` of a tool the agent may not
//! call never succeeds (RBAC holds whatever the message looks like).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use backlog_bridge::backlog::Backend;
use backlog_bridge::mcp::{McpHandler, stdio};
use backlog_bridge::{Bridge, Settings};
use rmcp::ServiceExt as _;
use serde_json::Value;

use crate::mcp::Sink;

const AGENTS: [&str; 2] = ["operator", "viewer"];

const HANDSHAKE: &str = concat!(
    r#"{"jsonrpc":"2.0","id":"handshake","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n"
);

/// One bridge for the process: loading it compiles the components (once, then cached).
fn bridge() -> Arc<Bridge> {
    static BRIDGE: OnceLock<(Arc<Bridge>, tempfile::TempDir)> = OnceLock::new();
    BRIDGE
        .get_or_init(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
            let mut settings =
                Settings::from_env(config, tmp.path().join("ops")).expect("settings");
            settings.backend = Backend::Memory;
            settings.cache_dir = Some(tmp.path().join("cache"));
            settings.audit_dir = tmp.path().join("audit");
            settings.now = Some(crate::now());
            let bridge = Bridge::load(settings).expect("the shipped config loads");
            (Arc::new(bridge), tmp)
        })
        .0
        .clone()
}

/// Loads the bridge before the first input, so compiling the components (seconds on a busy
/// machine) does not count against libFuzzer's per-input timeout.
pub fn init_mcp_dispatch() {
    bridge();
}

/// The session over `data` (after the handshake) as `agent`: what it wrote to stdout.
fn session(handler: McpHandler, data: &[u8]) -> String {
    let mut input = HANDSHAKE.as_bytes().to_vec();
    input.extend_from_slice(data);
    let sink = Sink::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (transport, writer) = stdio::transport(std::io::Cursor::new(input), sink.clone());
        let running = handler.serve(transport).await.expect("the handshake");
        let _ = running.waiting().await;
        writer.await.expect("the writer task ends");
    });
    let written = sink.0.lock().expect("sink").clone();
    String::from_utf8(written).expect("stdout is UTF-8")
}

/// The request ids the lines carry (string or number), as printed JSON.
fn sent_ids(data: &[u8]) -> BTreeSet<String> {
    data.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .flat_map(|v| match v {
            Value::Array(batch) => batch,
            v => vec![v],
        })
        .filter_map(|v| v.get("id").cloned())
        .map(|id| id.to_string())
        .chain([r#""handshake""#.to_owned()])
        .collect()
}

/// See the module docs.
pub fn check_mcp_dispatch(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let agent = AGENTS[usize::from(pick) % AGENTS.len()];
    let bridge = bridge();
    let handler = McpHandler::for_agent(bridge, agent);
    let allowed: BTreeSet<String> = handler
        .tools_for(agent)
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    let written = session(handler, rest);
    let ids = sent_ids(rest);
    let calls = tool_calls(rest);
    let mut handshake = false;
    for line in written.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
        let Some(id) = v.get("id").filter(|id| !id.is_null()) else {
            // A notification, or an error answering a line whose id could not be read.
            assert!(
                v.get("method").is_some() || v.get("error").is_some(),
                "{line}"
            );
            continue;
        };
        assert!(ids.contains(&id.to_string()), "an id nobody sent: {line}");
        assert!(
            v.get("result").is_some() != v.get("error").is_some(),
            "a response has exactly one of result and error: {line}"
        );
        handshake |= id == "handshake" && v["result"]["serverInfo"].is_object();
        let result = &v["result"];
        if let Some(tools) = result.get("tools").and_then(Value::as_array) {
            let listed: BTreeSet<String> = tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(listed, allowed, "{agent}'s tools/list: {line}");
        }
        // The tools called with this id (ids may repeat): none allowed, so no success.
        let id_text = id.to_string();
        let names: Vec<&String> = calls
            .iter()
            .filter(|(i, _)| *i == id_text)
            .map(|(_, name)| name)
            .collect();
        if !names.is_empty() && names.iter().all(|n| !allowed.contains(*n)) {
            assert_ne!(
                result.get("isError"),
                Some(&Value::Bool(false)),
                "{agent} called {names:?} successfully: {line}"
            );
        }
    }
    assert!(handshake, "no answer to the handshake: {written}");
    // Every request the transport accepted is answered (the session's end waits for calls
    // in flight; a panic in a dispatch task would leave one unanswered).
    let answered: BTreeSet<String> = written
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("id").map(Value::to_string))
        .collect();
    for line in rest.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok((_, v)) = backlog_bridge::mcp::wire::read(line)
            && v.get("method").is_some()
            && let Some(id) = v.get("id")
        {
            assert!(
                answered.contains(&id.to_string()),
                "no answer to {}: {written}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

/// `(id, tool name)` of every `tools/call` line whose name is a string.
fn tool_calls(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(|v| v["method"] == "tools/call")
        .filter_map(|v| {
            Some((
                v.get("id")?.to_string(),
                v["params"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(agent: &str, lines: &str) -> Vec<Value> {
        let handler = McpHandler::for_agent(bridge(), agent);
        session(handler, lines.as_bytes())
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    }

    fn answer<'a>(all: &'a [Value], id: &str) -> &'a Value {
        all.iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {all:?}"))
    }

    /// The session really dispatches: calls are answered (a session's end waits for them),
    /// an allowed call succeeds, a forbidden one does not, `tools/list` is the agent's.
    #[test]
    fn a_session_answers_calls_and_rbac_holds() {
        let create = r#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"backlog_tool_create","arguments":{"env":"prod","service":"api","category":"refactor","title":"t"}}}"#;
        let list = r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#;
        let op = answers("operator", &format!("{create}\n{list}\n"));
        assert_eq!(answer(&op, "c")["result"]["isError"], false, "{op:?}");
        let viewer = answers("viewer", &format!("{create}\n{list}\n"));
        let refused = answer(&viewer, "c");
        assert!(
            refused.get("error").is_some() || refused["result"]["isError"] == true,
            "{refused}"
        );
        let tools = |all: &[Value]| answer(all, "l")["result"]["tools"].as_array().map(Vec::len);
        assert!(tools(&op) > tools(&viewer), "{op:?} {viewer:?}");
        for input in [
            format!("\x00{create}\n{list}\n"),
            format!("\x01{create}\n{list}\n"),
        ] {
            check_mcp_dispatch(input.as_bytes());
        }
    }
}
