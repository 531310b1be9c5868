//! Reading one JSON-RPC message from the wire, for both transports: a line of stdio, the body
//! of an HTTP POST. What cannot be read gets the JSON-RPC answer the specification asks for,
//! never silence: `-32700` (parse error: not UTF-8, not JSON, nested too deep) or `-32600`
//! (invalid request: JSON, but not a JSON-RPC message), with the request's `id` when one
//! can be read.

use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};

/// JSON-RPC 2.0 parse error.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 invalid request.
pub const INVALID_REQUEST: i64 = -32600;

/// Why a message was refused, as the JSON-RPC error response to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    /// The request's id, when the text was JSON with a usable `id`.
    pub id: Value,
}

impl Refusal {
    pub fn new(code: i64, message: impl Into<String>, id: Value) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            id,
        }
    }

    /// The JSON-RPC error response.
    pub fn to_json(&self) -> Value {
        json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}})
    }

    /// `parse_error` or `invalid_request`, for logs.
    pub fn kind(&self) -> &'static str {
        if self.code == PARSE_ERROR {
            "parse_error"
        } else {
            "invalid_request"
        }
    }
}

/// The request id of a JSON value, if it has a valid one (string or number).
pub fn id_of(value: &Value) -> Value {
    match value.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    }
}

/// One message from raw bytes, or the refusal to answer with.
pub fn read(bytes: &[u8]) -> Result<(ClientJsonRpcMessage, Value), Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Refusal::new(
            PARSE_ERROR,
            format!("Parse error: the message is not UTF-8 ({e})"),
            Value::Null,
        )
    })?;
    // serde_json refuses nesting deeper than 128 levels: a parse error too.
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Refusal::new(
            PARSE_ERROR,
            format!("Parse error: the message is not JSON ({e})"),
            Value::Null,
        )
    })?;
    let id = id_of(&value);
    let message = serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).map_err(|e| {
        Refusal::new(
            INVALID_REQUEST,
            format!("Invalid Request: not a JSON-RPC 2.0 message this server accepts ({e})"),
            id,
        )
    })?;
    Ok((message, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        let code = |b: &[u8]| read(b).err().map(|r| r.code);
        assert_eq!(code(b"\xff\xfe"), Some(PARSE_ERROR));
        assert_eq!(code(b"{not json"), Some(PARSE_ERROR));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(code(deep.as_bytes()), Some(PARSE_ERROR));
        assert_eq!(code(b"[1,2]"), Some(INVALID_REQUEST));
        assert_eq!(
            code(br#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#),
            Some(INVALID_REQUEST)
        );
        let r = read(br#"{"id":7,"method":3}"#).unwrap_err();
        assert_eq!((r.code, r.id.clone()), (INVALID_REQUEST, json!(7)));
        assert_eq!(r.to_json()["error"]["code"], -32600);
        assert!(read(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).is_ok());
        assert!(read(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_ok());
    }
}
