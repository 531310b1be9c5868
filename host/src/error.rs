//! The error object every call path returns (`docs/actions.md`): a code and a human message.

use serde_json::{Value, json};

/// The error codes, in one place for the host; each has one HTTP status and exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    Unavailable,
    Timeout,
    Internal,
}

impl Code {
    /// The wire name, e.g. `invalid_input`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidInput => "invalid_input",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::PreconditionFailed => "precondition_failed",
            Code::PayloadTooLarge => "payload_too_large",
            Code::Unavailable => "unavailable",
            Code::Timeout => "timeout",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status (see `docs/actions.md`).
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidInput => 400,
            Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::PreconditionFailed => 412,
            Code::PayloadTooLarge => 413,
            Code::Unavailable => 503,
            Code::Timeout => 504,
            Code::Internal => 500,
        }
    }
}

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
