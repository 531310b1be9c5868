//! The error type every action returns: a closed set of codes (`docs/actions.md`) with their HTTP
//! statuses, and a human message. Owns the `{"error": …, "code": …}` wire shape; it does not
//! decide which code a failure gets (the actions do).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The error codes (see `docs/actions.md`), serialized in snake_case (`invalid_input`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
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

impl ErrorCode {
    /// Every code, in the order (see `docs/actions.md`).
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::InvalidInput,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PreconditionFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

    /// The wire name, e.g. `invalid_input`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the router answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// The code with wire name `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the wire names of [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

/// A failed action: a code and a message for humans (and agents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// `invalid_input` (400): the params break a rule.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// `not_found` (404): item, tool or action.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `conflict` (409): dedupe key taken, illegal transition, id/key mismatch.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `forbidden` (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `unavailable` (503): storage down, no fallback.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `internal` (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `precondition_failed` (412), e.g. a missing digest.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PreconditionFailed, message)
    }

    /// `unauthenticated` (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// `payload_too_large` (413).
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    /// `timeout` (504).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Timeout, message)
    }

    /// The wire shape `{"error": message, "code": code}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": self.message, "code": self.code.as_str() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[track_caller]
    fn check(code: ErrorCode, name: &str, status: u16) {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(code.http_status(), status);
        assert_eq!(ErrorCode::parse(name), Some(code));
        assert_eq!(name.parse::<ErrorCode>(), Ok(code));
        assert_eq!(serde_json::to_value(code).ok(), Some(json!(name)));
        assert_eq!(
            serde_json::from_value::<ErrorCode>(json!(name)).ok(),
            Some(code)
        );
    }

    #[test]
    fn codes_and_statuses() {
        check(ErrorCode::InvalidInput, "invalid_input", 400);
        check(ErrorCode::Unauthenticated, "unauthenticated", 401);
        check(ErrorCode::Forbidden, "forbidden", 403);
        check(ErrorCode::NotFound, "not_found", 404);
        check(ErrorCode::Conflict, "conflict", 409);
        check(ErrorCode::PreconditionFailed, "precondition_failed", 412);
        check(ErrorCode::PayloadTooLarge, "payload_too_large", 413);
        check(ErrorCode::Unavailable, "unavailable", 503);
        check(ErrorCode::Timeout, "timeout", 504);
        check(ErrorCode::Internal, "internal", 500);
        assert_eq!(ErrorCode::parse("nope"), None);
        assert!("InvalidInput".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn wire_shape_and_store_mapping() {
        let e = Error::not_found("item bl_000000000001 not found");
        assert_eq!(e.to_string(), "item bl_000000000001 not found");
        assert_eq!(
            e.to_json(),
            json!({"error": "item bl_000000000001 not found", "code": "not_found"})
        );
        let m = |s: StoreError| Error::from(s).code;
        assert_eq!(
            m(StoreError::Unavailable("x".into())),
            ErrorCode::Unavailable
        );
        assert_eq!(m(StoreError::Forbidden("x".into())), ErrorCode::Forbidden);
        assert_eq!(m(StoreError::Internal("x".into())), ErrorCode::Internal);
    }
}
