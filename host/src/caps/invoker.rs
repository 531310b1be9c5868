//! The tool-invoker capability of the `scheduler` component (`docs/scheduler.md`): how a planned job
//! reaches its tool, and as whom.
//!
//! Two transports, one trait: [`Http`] posts the request to the router's
//! `/v1/tools/execute` with the job agent's bearer key (sent even when empty, so the router's
//! 401 is what the operator sees); `scheduler::Local` runs the call pipeline in-process as the
//! job's agent, so RBAC, grants and time limits apply exactly as for any other caller.
//!
//! A tool the RBAC matrix lists but no plugin provides answers the same on both transports:
//! `{"skipped": true, "reason": …}` (the component reports the run `skipped`), recognised by
//! the bridge's own `not_found` message ([`not_installed_message`]) — in-process, or in the
//! router's answer.
//!
//! Must not: give the component anything but the answer. No key, URL or host path crosses
//! into the guest; errors carry the runbook's texts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use wasmtime::component::{HasData, Linker};

use crate::error::{Code, ToolError};
use crate::runtime::bindings::backlog_bridge::tool::types as wit_types;
use crate::runtime::bindings::scheduler::backlog_bridge::scheduler::invoker as wit_invoker;

/// The path every tool call is posted to (`docs/http-api.md`).
pub const EXECUTE_PATH: &str = "/v1/tools/execute";

/// Why a tool call produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The tool (or the router's checks) answered with an error object.
    #[error("{0}")]
    Tool(ToolError),
    /// The router refused the credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The router could not be reached or answered outside the contract.
    #[error("{0}")]
    Transport(String),
}

/// Sends one `/v1/tools/execute` body and returns the tool's result.
pub trait Invoke: Send + Sync {
    fn invoke(&self, request: &Value) -> Result<Value, InvokeError>;
}

/// One store's invoker: the transport a scheduler run was given (none in a tool store, whose
/// world does not import the invoker).
#[derive(Default)]
pub struct InvokerGrant(Option<Arc<dyn Invoke>>);

impl InvokerGrant {
    pub fn new(invoker: Arc<dyn Invoke>) -> InvokerGrant {
        InvokerGrant(Some(invoker))
    }
}

/// The capability as the linker sees it: a store's state projects its [`InvokerGrant`] out.
pub struct Invoker;

impl HasData for Invoker {
    type Data<'a> = &'a mut InvokerGrant;
}

/// Links `backlog-bridge:scheduler/invoker` for stores whose state holds an [`InvokerGrant`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut InvokerGrant,
) -> wasmtime::Result<()> {
    wit_invoker::add_to_linker::<T, Invoker>(linker, project)
}

impl wit_invoker::Host for InvokerGrant {
    fn invoke(&mut self, request: String) -> Result<String, wit_invoker::InvokeError> {
        let Some(invoker) = &self.0 else {
            return Err(wit_invoker::InvokeError::Transport(
                "this store has no invoker".into(),
            ));
        };
        let parsed: Value = serde_json::from_str(&request).map_err(|e| {
            wit_invoker::InvokeError::Transport(format!("the planned request is not JSON: {e}"))
        })?;
        match invoker.invoke(&parsed) {
            Ok(v) => Ok(v.to_string()),
            Err(InvokeError::Tool(e)) => Err(wit_invoker::InvokeError::Tool(to_wit(&e))),
            Err(InvokeError::Unauthenticated(m)) => {
                Err(wit_invoker::InvokeError::Unauthenticated(m))
            }
            Err(InvokeError::Transport(m)) => Err(wit_invoker::InvokeError::Transport(m)),
        }
    }
}

fn to_wit(e: &ToolError) -> wit_types::ToolError {
    use wit_types::ErrorCode as W;
    let code = backlog_core::map_error_code!(e.code, Code => W);
    wit_types::ToolError {
        code,
        message: e.message.clone(),
    }
}

/// Splits a flat request body into tool, action and the params object.
pub fn split(request: &Value) -> Result<(String, String, Map<String, Value>), InvokeError> {
    let invalid = |m: &str| InvokeError::Tool(ToolError::new(Code::InvalidInput, m));
    let Some(obj) = request.as_object() else {
        return Err(invalid("the request body must be a JSON object"));
    };
    let mut params = obj.clone();
    let take = |params: &mut Map<String, Value>, k: &str| match params.remove(k) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(&format!("the request body needs a string `{k}`"))),
    };
    let tool = take(&mut params, "tool")?;
    let action = take(&mut params, "action")?;
    Ok((tool, action, params))
}

/// The `not_found` message of a call to a tool the RBAC matrix lists but no plugin provides.
/// The scheduler's invokers recognise it (also in a router's answer) and record the run
/// `skipped`, whatever the transport.
pub fn not_installed_message(tool: &str) -> String {
    format!("tool `{tool}` is not installed (listed in the RBAC matrix, but no plugin provides it)")
}

/// The answer of a run whose tool is not installed: `skipped` with the reason. Any other
/// error stays an error.
pub fn skipped_if_not_installed(tool: &str, e: InvokeError) -> Result<Value, InvokeError> {
    match &e {
        InvokeError::Tool(t)
            if t.code == Code::NotFound && t.message == not_installed_message(tool) =>
        {
            Ok(serde_json::json!({"skipped": true, "reason": t.message}))
        }
        _ => Err(e),
    }
}

/// HTTP transport to the router.
pub struct Http {
    /// `http://host:port`, no trailing slash.
    pub base_url: String,
    /// The job agent's API key (may be empty: it is sent anyway).
    pub key: String,
    /// Wall-clock limit of the whole exchange.
    pub timeout: Duration,
}

impl Http {
    /// The request as `--dry-run` prints it: the key shown as `***`.
    pub fn describe(&self, body: &Value) -> Value {
        serde_json::json!({
            "method": "POST",
            "url": format!("{}{EXECUTE_PATH}", self.base_url),
            "headers": {
                "Authorization": "Bearer ***",
                "Content-Type": "application/json",
            },
            "body": body,
        })
    }
}

impl Invoke for Http {
    fn invoke(&self, request: &Value) -> Result<Value, InvokeError> {
        let tool = request
            .get("tool")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.post(request)
            .or_else(|e| skipped_if_not_installed(tool, e))
    }
}

impl Http {
    fn post(&self, request: &Value) -> Result<Value, InvokeError> {
        let url = format!("{}{EXECUTE_PATH}", self.base_url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let sent = agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", "application/json")
            .send(request.to_string());
        let mut response = sent.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        match (status, body) {
            (200, Some(v)) => Ok(v),
            (401, _) => Err(InvokeError::Unauthenticated(format!(
                "HTTP 401 from {EXECUTE_PATH}"
            ))),
            (_, Some(v)) if v.get("error").is_some_and(Value::is_string) => {
                let message = v["error"].as_str().unwrap_or_default().to_owned();
                let code = v
                    .get("code")
                    .and_then(Value::as_str)
                    .and_then(code_from_str);
                Err(InvokeError::Tool(ToolError::new(
                    code.unwrap_or_else(|| code_for_status(status)),
                    message,
                )))
            }
            (status, _) => Err(InvokeError::Transport(format!(
                "HTTP {status} from {EXECUTE_PATH}: {}",
                text.chars().take(200).collect::<String>()
            ))),
        }
    }
}

impl Http {
    fn transport_error(&self, e: ureq::Error) -> InvokeError {
        InvokeError::Transport(match e {
            ureq::Error::Timeout(_) => format!(
                "No answer from {}{EXECUTE_PATH} within {} s",
                self.base_url,
                self.timeout.as_secs()
            ),
            other => format!("Cannot reach {} ({other})", self.base_url),
        })
    }
}

/// The wire code (see `docs/actions.md`), parsed.
pub fn code_from_str(s: &str) -> Option<Code> {
    Code::parse(s)
}

fn code_for_status(status: u16) -> Code {
    Code::from_http_status(status).unwrap_or(Code::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_takes_tool_and_action_out_of_a_flat_body() {
        let (t, a, p) =
            split(&json!({"tool":"backlog_tool","action":"cleanup","dry_run":true})).unwrap();
        assert_eq!((t.as_str(), a.as_str()), ("backlog_tool", "cleanup"));
        assert_eq!(Value::Object(p), json!({"dry_run": true}));
        assert!(matches!(
            split(&json!({"tool": 1})),
            Err(InvokeError::Tool(_))
        ));
    }

    #[test]
    fn every_code_round_trips() {
        for code in [
            Code::InvalidInput,
            Code::Unauthenticated,
            Code::Forbidden,
            Code::NotFound,
            Code::Conflict,
            Code::PreconditionFailed,
            Code::PayloadTooLarge,
            Code::Unavailable,
            Code::Timeout,
            Code::Internal,
        ] {
            assert_eq!(code_from_str(code.as_str()), Some(code));
            if code != Code::Unauthenticated {
                assert_eq!(code_for_status(code.http_status()), code);
            }
        }
    }

    #[test]
    fn only_the_not_installed_answer_becomes_skipped() {
        let not_installed = InvokeError::Tool(ToolError::new(
            Code::NotFound,
            not_installed_message("risk_history_tool"),
        ));
        let skipped = skipped_if_not_installed("risk_history_tool", not_installed).unwrap();
        assert_eq!(skipped["skipped"], true);
        assert!(
            skipped["reason"]
                .as_str()
                .unwrap()
                .contains("not installed")
        );
        // Another tool's message, another code, another 404: errors.
        let other = InvokeError::Tool(ToolError::new(
            Code::NotFound,
            not_installed_message("other_tool"),
        ));
        assert!(skipped_if_not_installed("risk_history_tool", other).is_err());
        let missing = InvokeError::Tool(ToolError::new(Code::NotFound, "no such item"));
        assert!(skipped_if_not_installed("backlog_tool", missing).is_err());
        let forbidden = InvokeError::Tool(ToolError::new(
            Code::Forbidden,
            not_installed_message("backlog_tool"),
        ));
        assert!(skipped_if_not_installed("backlog_tool", forbidden).is_err());
    }

    #[test]
    fn dry_run_description_masks_the_key() {
        let http = Http {
            base_url: "http://localhost:8000".into(),
            key: "s3cret".into(),
            timeout: Duration::from_secs(1),
        };
        let d = http.describe(&json!({"tool":"t","action":"a"}));
        assert_eq!(d["headers"]["Authorization"], "Bearer ***");
        assert_eq!(d["url"], "http://localhost:8000/v1/tools/execute");
        assert!(!d.to_string().contains("s3cret"));
    }
}
