//! The pipeline's records that take plain values (so this depends on nothing of `call.rs`):
//! the audit lines ([`crate::audit`]) — the deny line of a face's refused call and the allow
//! line of an authorized one, written before the answer leaves — and the log lines of a
//! refused call and of a guest's stderr.

use std::time::Instant;

use crate::audit::{CallRecord, Face};
use crate::error::ToolError;
use crate::grants::Grants;
use crate::registry::Bridge;
use crate::runtime::plugin::CallOutcome;

/// The `decision: deny` line of a face's call that `authorize` refused (404/403).
pub(super) fn denied(
    bridge: &Bridge,
    (quiet, face, request_id): (bool, Face, &str),
    [agent, tool, action]: [&str; 3],
    e: &ToolError,
) {
    if !quiet {
        let record = CallRecord::denied(face, agent, tool, action, e);
        bridge.audit(record.timed(request_id, Instant::now()));
    }
}

/// The `decision: allow` line of an authorized call.
pub(super) fn allowed(
    bridge: &Bridge,
    (quiet, face, request_id): (bool, Face, &str),
    [agent, tool, action]: [&str; 3],
    grants: Grants,
    started: Instant,
    result: Result<&super::Answer, &ToolError>,
) {
    if !quiet {
        let record = CallRecord::allowed(face, agent, tool, action, grants, result);
        bridge.audit(record.timed(request_id, started));
    }
}

/// The line of a call a face refused before it reached [`authorize`]'s token or its guest
/// (the MCP face's schema check). The message may echo the caller's arguments (property
/// names, values): it stays out of the line.
pub fn log_refused(
    agent: &str,
    tool: &str,
    action: &str,
    request_id: &str,
    started: Instant,
    e: &ToolError,
    via: &str,
) {
    tracing::info!(
        request_id,
        agent,
        tool,
        action,
        outcome = e.code.as_str(),
        duration_us = started.elapsed().as_micros() as u64,
        via,
        "tool call refused"
    );
}

pub(super) fn log_stderr(plugin: &str, request_id: &str, outcome: &CallOutcome) {
    for line in outcome.stderr.lines().filter(|l| !l.trim().is_empty()) {
        // Guests write plain lines; the store's repairs and fallbacks say "warning",
        // "skipping" or "cut", what is routine under load says "debug:", everything else
        // (backend switches) is information.
        if ["warning", "skipping", "cut torn", "error"]
            .iter()
            .any(|w| line.contains(w))
        {
            tracing::warn!(target: "guest", plugin, request_id, "{line}");
        } else if line.contains(": debug: ") {
            tracing::debug!(target: "guest", plugin, request_id, "{line}");
        } else {
            tracing::info!(target: "guest", plugin, request_id, "{line}");
        }
    }
}
