//! The error object every call path returns (`docs/actions.md`): a code and a human message.

use serde_json::{Value, json};

/// The error codes: the one definition is `backlog_core::ErrorCode` (wire name, HTTP status,
/// exit code, `ALL`); WIT `error-code` values convert with `backlog_core::map_error_code!`.
pub use backlog_core::ErrorCode as Code;

/// A failed tool call as callers see it: `{"error": message, "code": code}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}", code = .code.as_str())]
pub struct ToolError {
    pub code: Code,
    pub message: String,
}

impl ToolError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ToolError {
            code,
            message: message.into(),
        }
    }

    /// The error object.
    pub fn to_json(&self) -> Value {
        json!({"error": self.message, "code": self.code.as_str()})
    }
}
