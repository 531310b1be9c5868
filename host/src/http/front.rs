//! What every request passes before its handler, none of which reads the body: the request
//! id and the access log ([`access_log`]), then [`front`]: the browser guard (403, 415), one
//! `Authorization` header at most (400), a declared `Content-Length` within the limit (413),
//! and for the routes that act (`/v1/…`, `/mcp`) authentication (401, or 429 once the
//! client's address has failed too often).
//!
//! An answer given without reading the body: to a client without a valid key, the connection
//! closes after it (what has already arrived is dropped, nothing more is read); to a keyed
//! client, a background task discards the rest (`respond::discard`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::conn::ClientAddr;
use super::respond::{CallLog, close_unread, discard, error_response, json_response, too_large};
use super::{App, MAX_BODY_BYTES};
use crate::error::{Code, ToolError};

/// The request id of one request (`x-request-id` on the response; the guest's context).
pub(crate) use crate::call::RequestId;

type AppState = State<Arc<App>>;

/// Gives each request an id, then logs and counts it when the response is ready.
pub(super) async fn access_log(State(app): AppState, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = crate::call::new_request_id();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    // Methods outside the standard set share one label, so a client cannot grow the series.
    let method_label = match method {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::HEAD
        | Method::PATCH
        | Method::OPTIONS => method.as_str(),
        _ => "other",
    };
    app.metrics.record_request(method_label, &route, status);
    let call = resp
        .extensions()
        .get::<CallLog>()
        .cloned()
        .or_else(|| {
            // `/mcp`: what the MCP guard learnt (the outcome is on the call's own line).
            let m = resp.extensions().get::<crate::mcp::http::McpCallLog>()?;
            Some(CallLog {
                agent: Some(m.agent.clone()),
                tool: m.tool.clone(),
                action: m.action.clone(),
                outcome: "",
            })
        })
        .unwrap_or_default();
    let duration_us = started.elapsed().as_micros() as u64;
    let quiet = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") && status < 500;
    macro_rules! log {
        ($level:ident) => {
            tracing::$level!(
                request_id,
                method = %method,
                path,
                status,
                agent = call.agent.as_deref().unwrap_or(""),
                tool = call.tool.as_deref().unwrap_or(""),
                action = call.action.as_deref().unwrap_or(""),
                outcome = call.outcome,
                duration_us,
                "http request"
            )
        };
    }
    if quiet {
        log!(debug);
    } else {
        log!(info);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The checks every request passes before its handler, none of which reads the body (see
/// the module documentation).
pub(super) async fn front(State(app): AppState, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Err(refusal) = app.browser.check(req.method(), headers) {
        tracing::warn!(
            origin = header_text(headers, header::ORIGIN.as_str()),
            host = header_text(headers, header::HOST.as_str()),
            sec_fetch_site = header_text(headers, "sec-fetch-site"),
            "router: refused by the browser guard"
        );
        let outcome = match refusal.status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "forbidden",
        };
        let resp = json_response(refusal.status, &refusal.body);
        return answered_early(resp, req, outcome);
    }
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        let e = ToolError::new(
            Code::InvalidInput,
            "more than one Authorization header: send exactly one",
        );
        return answered_early(error_response(&e), req, e.code.as_str());
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let is_mcp = route.as_deref() == Some(crate::mcp::http::PATH);
    // rmcp answers an over-limit tool call with a tool result: room for just over the limit.
    let limit = if is_mcp {
        2 * MAX_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let acts = route
        .as_deref()
        .is_some_and(|r| r.starts_with("/v1/") || r == crate::mcp::http::PATH);
    let mut keyed = false;
    if acts {
        match app.authenticate(headers) {
            Ok(_) => keyed = headers.contains_key(header::AUTHORIZATION),
            Err(e) => return refuse_login(&app, req, &e),
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let e = too_large();
        if keyed {
            // A keyed client that sends its whole body before reading gets the answer.
            let mut resp = error_response(&e);
            resp.extensions_mut().insert(CallLog {
                outcome: e.code.as_str(),
                ..CallLog::default()
            });
            discard(Some(req.into_body()));
            return resp;
        }
        return answered_early(error_response(&e), req, e.code.as_str());
    }
    next.run(req).await
}

/// A failed login: 401, or 429 once the client's address has failed too often; counted.
fn refuse_login(app: &App, req: Request, e: &ToolError) -> Response {
    let ip = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let throttled = ip.and_then(|ip| app.auth_failures.fail(ip).err());
    app.metrics.auth_failed(throttled.is_some());
    let (resp, outcome) = match throttled {
        None => (error_response(e), e.code.as_str()),
        Some(retry_after) => {
            let mut resp = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "error": format!(
                        "too many failed logins from this address; retry in {retry_after} s"
                    ),
                    "code": "rate_limited",
                }),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            (resp, "rate_limited")
        }
    };
    answered_early(resp, req, outcome)
}

/// A header's value for a log field: at most 100 characters, control characters escaped.
fn header_text(headers: &HeaderMap, name: &str) -> String {
    let value = headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    value
        .unwrap_or_default()
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}

/// `resp`, answered to a client that has shown no key, without reading `req`'s body: an
/// announced body is never read; the connection closes after the answer.
/// The access log shows `outcome`.
fn answered_early(resp: Response, req: Request, outcome: &'static str) -> Response {
    let mut resp = close_unread(resp, req.headers());
    resp.extensions_mut().insert(CallLog {
        outcome,
        ..CallLog::default()
    });
    resp
}
