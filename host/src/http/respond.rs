//! Answers: JSON, the error object with its status, a call's result tagged for the access
//! log; and request bodies: read within the limit, or discarded in the background.
//!
//! Errors are the `{"error","code"}` object with the status (see `docs/actions.md`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

use super::{App, MAX_BODY_BYTES};
use crate::call::{Answer, Authorized};
use crate::error::{Code, ToolError};
use crate::registry::Bridge;

/// A body the answer does not need is discarded after the answer, up to this many bytes and
/// this long; then the connection closes.
const DRAIN_LIMIT: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What the access log says about the call a request made.
#[derive(Debug, Clone, Default)]
pub(super) struct CallLog {
    pub(super) agent: Option<String>,
    pub(super) tool: Option<String>,
    pub(super) action: Option<String>,
    pub(super) outcome: &'static str,
}

/// Marks `resp` to close the connection when the request announced a body that will not be
/// read (hyper discards what has already arrived, then closes).
pub(super) fn close_unread(mut resp: Response, headers: &HeaderMap) -> Response {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|l| l.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if announced {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A JSON response.
pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    text_response(status, body.to_string())
}

/// A JSON body that is text already (a guest's [`Answer`]).
fn text_response(status: StatusCode, json: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The error object with its status; 401 also says how to authenticate.
pub(super) fn error_response(e: &ToolError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, &e.to_json());
    if e.code == Code::Unauthenticated {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"backlog-bridge\""),
        );
    }
    if e.code == Code::PayloadTooLarge {
        // The rest of an over-limit body may be unread: the connection cannot be reused.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if e.code == Code::Unavailable {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// A call's result (200) or error, tagged for the access log.
pub(super) fn call_response(result: Result<Answer, ToolError>, mut log: CallLog) -> Response {
    let mut resp = match result {
        Ok(answer) => {
            log.outcome = "ok";
            text_response(StatusCode::OK, answer.into_text())
        }
        Err(e) => {
            log.outcome = e.code.as_str();
            error_response(&e)
        }
    };
    resp.extensions_mut().insert(log);
    resp
}

pub(super) fn too_large() -> ToolError {
    ToolError::new(
        Code::PayloadTooLarge,
        format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes (1 MiB)"),
    )
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`] (413 beyond, without reading the rest);
/// a body that stalls for `idle` is refused.
pub(super) async fn read_body(body: Body, idle: Duration) -> Result<Bytes, ToolError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                return Err(ToolError::new(
                    Code::InvalidInput,
                    format!(
                        "the request body stalled for {} s (--idle-timeout)",
                        idle.as_secs()
                    ),
                ));
            }
        };
        let chunk = chunk.map_err(|e| {
            ToolError::new(
                Code::InvalidInput,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Discards a body the answer does not need, in the background and without buffering it,
/// at most [`DRAIN_LIMIT`] bytes for at most [`DRAIN_TIME`]: a client that sends its whole
/// body before reading gets the answer rather than a reset, and one that holds its body
/// costs a few KiB of read buffer until the time is up (then the connection closes).
pub(super) fn discard(body: Option<Body>) {
    let Some(body) = body else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut seen = 0usize;
        let drained = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        });
        let _ = drained.await;
    });
}

/// The answer to a request whose key does not authenticate (unreachable past `front`, which
/// answers the same error first).
pub(super) fn unauthenticated(e: ToolError) -> Response {
    call_response(Err(e), CallLog::default())
}

/// Runs one authorized call: the one place the routes enter the call pipeline.
pub(super) async fn call_tool(
    app: &App,
    call: Authorized<Arc<Bridge>>,
    params: Map<String, Value>,
    request_id: &str,
) -> Result<Answer, ToolError> {
    app.call(call, params, request_id).await
}
