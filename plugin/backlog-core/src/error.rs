//! The error type every action returns: a closed set of codes (`docs/actions.md`) with their HTTP
//! statuses, and a human message. Owns the `{"error": …, "code": …}` wire shape; it does not
//! decide which code a failure gets (the actions do).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Defines [`ErrorCode`] and its tables from one list: variant, wire name, HTTP status, exit
/// code of the CLI (`call`, `run-job`).
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $status:literal, $exit:literal; )*) => {
        /// The error codes (see `docs/actions.md`), serialized in snake_case (`invalid_input`,
        /// …). The one definition of code, wire name, HTTP status and exit code; the host and the
        /// guests use it, and [`map_error_code!`](crate::map_error_code) converts to and from
        /// the WIT `error-code` variant.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of `docs/actions.md`.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$variant, )*];

            /// The wire name, e.g. `invalid_input`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The HTTP status the router answers with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// The exit code of a CLI command that ends with this error.
            pub fn exit_code(self) -> u8 {
                match self { $( ErrorCode::$variant => $exit, )* }
            }
        }
    };
}

error_codes! {
    /// 400: params break a rule; malformed JSON.
    InvalidInput = "invalid_input", 400, 1;
    /// 401: no or unknown API key (HTTP only; `run-job` over HTTP exits 3).
    Unauthenticated = "unauthenticated", 401, 3;
    /// 403: the agent lacks an entitlement; the sandbox refused a capability.
    Forbidden = "forbidden", 403, 1;
    /// 404: unknown item, tool or action.
    NotFound = "not_found", 404, 1;
    /// 409: dedupe key taken, illegal transition, id/key mismatch.
    Conflict = "conflict", 409, 1;
    /// 412: no digest to generate from.
    PreconditionFailed = "precondition_failed", 412, 1;
    /// 413: params or body too large.
    PayloadTooLarge = "payload_too_large", 413, 1;
    /// 503: storage down with no fallback; the router at its limit.
    Unavailable = "unavailable", 503, 1;
    /// 504: the call ran past its time limit.
    Timeout = "timeout", 504, 1;
    /// 500: a fault in the tool or the host.
    Internal = "internal", 500, 1;
}

/// Converts between two enums that spell the error codes with the same variant names
/// ([`ErrorCode`], the WIT `error-code` of the host and guest bindings):
/// `map_error_code!(value, From => To)` with both types in scope by those names. The match is
/// exhaustive, so a code added to either side fails to compile until it is added here.
#[macro_export]
macro_rules! map_error_code {
    ($value:expr, $from:ident => $to:ident) => {
        match $value {
            $from::InvalidInput => $to::InvalidInput,
            $from::Unauthenticated => $to::Unauthenticated,
            $from::Forbidden => $to::Forbidden,
            $from::NotFound => $to::NotFound,
            $from::Conflict => $to::Conflict,
            $from::PreconditionFailed => $to::PreconditionFailed,
            $from::PayloadTooLarge => $to::PayloadTooLarge,
            $from::Unavailable => $to::Unavailable,
            $from::Timeout => $to::Timeout,
            $from::Internal => $to::Internal,
        }
    };
}

impl ErrorCode {
    /// The code with wire name `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The code whose HTTP status is `status`, if any.
    pub fn from_http_status(status: u16) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.http_status() == status)
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
        assert_eq!(ErrorCode::ALL.len(), 10);
        for &code in ErrorCode::ALL {
            check(code, code.as_str(), code.http_status());
            assert_eq!(ErrorCode::from_http_status(code.http_status()), Some(code));
            let same: ErrorCode = crate::map_error_code!(code, ErrorCode => ErrorCode);
            assert_eq!(same, code);
            let exit = if code == ErrorCode::Unauthenticated {
                3
            } else {
                1
            };
            assert_eq!(code.exit_code(), exit, "{code}");
        }
        assert_eq!(ErrorCode::from_http_status(200), None);
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
