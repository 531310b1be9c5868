//! `call` and `batch`: tool calls in-process, RBAC applied, as a trusted local agent.

use std::io::BufRead as _;

use anyhow::Context as _;
use backlog_bridge::params::{self, Origin};
use backlog_bridge::{Bridge, CallRequest, Settings, ToolError};
use serde_json::{Value, json};

use super::load::load;
use crate::exit::Failure;
use crate::output::{self, Format, Kind, emit, emit_line};

/// `call TOOL ACTION --params-json P --agent A`: prints the result.
pub(super) fn call(
    settings: Settings,
    agent: &str,
    tool: &str,
    action: &str,
    params_json: &str,
    format: Format,
) -> Result<(), Failure> {
    let bridge = load(settings, agent)?;
    let params = params::object(params_json.as_bytes(), Origin::Flag("--params-json"))
        .map_err(Failure::Tool)?;
    let result = bridge
        .call(&CallRequest {
            agent,
            tool,
            action,
            params: &Value::Object(params).to_string(),
        })
        .map_err(Failure::Tool)?;
    emit(&output::render(
        &result.to_value(),
        Kind::Call(action),
        format,
        false,
    ))
}

/// The agent of `batch` lines that name none, when the process was started without `--agent`.
const DEFAULT_BATCH_AGENT: &str = "operator";

/// `batch`: `fixed` is the `--agent` the process was started with. When given, every line acts
/// as that agent and a line naming another one is refused (the flag is a ceiling: whoever
/// chose it decided what this process may do). Without it, a line may name its agent.
pub(super) fn batch(settings: Settings, fixed: Option<&str>) -> Result<(), Failure> {
    let bridge = load(settings, fixed.unwrap_or(DEFAULT_BATCH_AGENT))?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin").map_err(Failure::Config)?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match batch_line(&bridge, fixed, &line) {
            Ok(v) | Err(v) => v,
        };
        emit_line(&out.to_string())?;
    }
    Ok(())
}

fn batch_line(bridge: &Bridge, fixed: Option<&str>, line: &str) -> Result<Value, Value> {
    let invalid = |m: String| ToolError::new(backlog_bridge::Code::InvalidInput, m).to_json();
    let req: Value = serde_json::from_str(line).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let field = |k: &str| req.get(k).and_then(Value::as_str);
    let (Some(tool), Some(action)) = (field("tool"), field("action")) else {
        return Err(invalid("each line needs string `tool` and `action`".into()));
    };
    let agent = match (fixed, req.get("agent")) {
        (_, Some(a)) if !a.is_string() && !a.is_null() => {
            return Err(invalid("`agent` must be a string".into()));
        }
        (Some(fixed), _) => match field("agent") {
            Some(named) if named != fixed => {
                return Err(ToolError::new(
                    backlog_bridge::Code::Forbidden,
                    format!(
                        "this batch was started with --agent {fixed}; a line may not act as \
                         another agent (it names `{}`)",
                        named.escape_debug()
                    ),
                )
                .to_json());
            }
            _ => fixed,
        },
        (None, _) => field("agent").unwrap_or(DEFAULT_BATCH_AGENT),
    };
    let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
    bridge
        .call(&CallRequest {
            agent,
            tool,
            action,
            params: &params.to_string(),
        })
        .map(|answer| answer.to_value())
        .map_err(|e| e.to_json())
}
