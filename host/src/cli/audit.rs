//! `audit verify` and `audit show` (`docs/change-control.md`).

use std::path::Path;

use backlog_bridge::audit::{show, verify};
use serde_json::{Value, json};

use super::args::AuditCommand;
use crate::exit::Failure;
use crate::output::{Format, emit, emit_line};

pub(super) fn run(dir: &Path, command: AuditCommand, format: Format) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify => match verify::verify(dir).map_err(|e| {
            Failure::Config(e.context(format!("cannot read the audit dir {}", dir.display())))
        })? {
            Ok(intact) => emit_line(&format!(
                "audit chain intact: {} lines in {} files ({})",
                intact.lines,
                intact.files,
                dir.display()
            )),
            Err(broken) => Err(Failure::Exit(
                1,
                anyhow::anyhow!("audit chain broken at {broken}"),
            )),
        },
        AuditCommand::Show {
            since,
            actor,
            tool,
            action,
            decision,
        } => {
            let since = match since {
                None => None,
                Some(s) => Some(show::parse_since(&s).ok_or_else(|| {
                    Failure::Config(anyhow::anyhow!(
                        "--since {s:?} is neither an RFC 3339 time nor a YYYY-MM-DD day"
                    ))
                })?),
            };
            let filter = show::Filter {
                since,
                actor,
                tool,
                action,
                decision,
            };
            let lines = show::show(dir, &filter).map_err(|e| {
                Failure::Config(e.context(format!("cannot read the audit dir {}", dir.display())))
            })?;
            match format {
                Format::Table => emit(&show::table(&lines)),
                _ => {
                    let mut out = String::new();
                    for l in &lines {
                        out.push_str(&l.to_string());
                        out.push('\n');
                    }
                    emit(&out)
                }
            }
        }
    }
}

/// The lines of a long-running process's start: `start` and one `plugin_load` (with its
/// digest) per plugin.
pub(super) fn lifecycle(bridge: &backlog_bridge::Bridge, event: &str) {
    if backlog_bridge::audit::is_off(&bridge.settings.audit_dir) {
        tracing::warn!("audit trail off (--audit-dir off): calls leave no audit line");
        return;
    }
    bridge.audit_event(event_line(event, json!({"pid": std::process::id()})));
    for (plugin, digest) in bridge.digests() {
        bridge.audit_event(event_line(
            "plugin_load",
            json!({"plugin": plugin, "digest": digest}),
        ));
    }
}

/// The `stop` line (the bridge is gone by then: a fresh handle on the same chain).
pub(super) fn stopped(dir: &Path, clean: bool) {
    if backlog_bridge::audit::is_off(dir) {
        return;
    }
    match backlog_bridge::audit::AuditLog::open(dir) {
        Ok(log) => {
            let line = event_line(
                "stop",
                json!({"pid": std::process::id(), "outcome": if clean { "ok" } else { "error" }}),
            );
            if let Err(e) = log.append(line) {
                tracing::error!("audit line lost: {e}");
            }
        }
        Err(e) => tracing::error!("audit line lost: {e:#}"),
    }
}

fn event_line(event: &str, extra: Value) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("event".into(), json!(event));
    if let Value::Object(extra) = extra {
        m.extend(extra);
    }
    m
}
