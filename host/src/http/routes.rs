//! The routes (see `docs/http-api.md`) and what each turns into: a tool call, or a status document.
//!
//! In front of every route, before any body byte is read ([`front`]): the browser guard
//! (403, 415), one `Authorization` header at most (400), a declared `Content-Length` within
//! the limit (413), and for the routes that act (`/v1/…`, `/mcp`) authentication (401, or 429
//! once the client's address has failed too often). Then each handler checks the action
//! (404, 403) before reading the body (413, 400), so a caller without the entitlement learns
//! nothing from its body and costs no more than its headers. An answer given without reading
//! the body: to a client without a valid key, the connection closes after it (what has
//! already arrived is dropped, nothing more is read); to a keyed client (403, 404 of an
//! action), a background task discards the rest, bounded in bytes and time and never
//! buffered, so a client that sends its whole body before reading still gets the answer.
//! Errors are the `{"error","code"}` object with the status (see `docs/actions.md`); unknown routes
//! (404) and wrong methods (405) answer JSON too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};

use super::conn::ClientAddr;
use super::{App, MAX_BODY_BYTES, params};
use crate::error::{Code, ToolError};

/// The tool the `/v1/backlog/...` routes call.
const BACKLOG_TOOL: &str = "backlog_tool";

/// A body the answer does not need is discarded after the answer, up to this many bytes and
/// this long; then the connection closes.
const DRAIN_LIMIT: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The request id of one request (`x-request-id` on the response; the guest's context).
pub(crate) use crate::call::RequestId;

/// What the access log says about the call a request made.
#[derive(Debug, Clone, Default)]
struct CallLog {
    agent: Option<String>,
    tool: Option<String>,
    action: Option<String>,
    outcome: &'static str,
}

type AppState = State<Arc<App>>;

/// Every route (see `docs/http-api.md`) over `app`.
pub fn router(app: Arc<App>, mcp: Router<Arc<App>>) -> Router {
    Router::new()
        // `/mcp` and the OAuth discovery 404s (`crate::mcp::http_router`): authenticated by
        // the same keys through `App::authenticate`, logged and counted like every route.
        .merge(mcp)
        // The read-only review page (`super::ui`): static files, data through the GET routes.
        .merge(super::ui::routes())
        .route("/v1/tools/execute", post(execute))
        .route("/v1/tools", get(list_tools))
        .route("/v1/explain", get(explain))
        .route("/v1/backlog/dashboard", get(dashboard))
        .route("/v1/backlog/generate/weekly", post(generate_weekly))
        .route("/v1/backlog/generate/daily", post(generate_daily))
        .route("/v1/backlog/items", get(list_items).post(create_item))
        .route("/v1/backlog/items/{id}", get(get_item))
        .route("/v1/backlog/items/{id}/events", get(item_events))
        .route("/v1/backlog/items/{id}/status", post(set_status))
        .route("/v1/backlog/items/{id}/comments", post(add_comment))
        .route("/v1/backlog/cleanup", post(cleanup))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), front))
        .layer(middleware::from_fn_with_state(app.clone(), access_log))
        .with_state(app)
}

/// Gives each request an id, then logs and counts it when the response is ready.
async fn access_log(State(app): AppState, mut req: Request, next: Next) -> Response {
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
async fn front(State(app): AppState, req: Request, next: Next) -> Response {
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
            _ => Code::Forbidden.as_str(),
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

/// Marks `resp` to close the connection when the request announced a body that will not be
/// read (hyper discards what has already arrived, then closes).
fn close_unread(mut resp: Response, headers: &HeaderMap) -> Response {
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
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The error object with its status; 401 also says how to authenticate.
fn error_response(e: &ToolError) -> Response {
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
fn call_response(result: Result<Value, ToolError>, mut log: CallLog) -> Response {
    let mut resp = match &result {
        Ok(v) => {
            log.outcome = "ok";
            json_response(StatusCode::OK, v)
        }
        Err(e) => {
            log.outcome = e.code.as_str();
            error_response(e)
        }
    };
    resp.extensions_mut().insert(log);
    resp
}

/// The authenticated agent, or the 401 error.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<String, ToolError> {
    app.authenticate(headers)
}

fn too_large() -> ToolError {
    ToolError::new(
        Code::PayloadTooLarge,
        format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes (1 MiB)"),
    )
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`] (413 beyond, without reading the rest);
/// a body that stalls for `idle` is refused.
async fn read_body(body: Body, idle: Duration) -> Result<Bytes, ToolError> {
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
fn discard(body: Option<Body>) {
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

/// One `/v1/backlog/...` route's call: authenticate → authorize (before the body is read) →
/// params from `build(body)` → the call.
async fn backlog_call(
    app: &App,
    headers: &HeaderMap,
    request_id: &str,
    action: &str,
    body: Option<Body>,
    build: impl FnOnce(Map<String, Value>) -> Result<Map<String, Value>, ToolError>,
) -> Response {
    let agent = match authenticate(app, headers) {
        Ok(a) => a,
        // Unreachable past `front`, which answers the same error first.
        Err(e) => return call_response(Err(e), CallLog::default()),
    };
    let log = CallLog {
        agent: Some(agent.clone()),
        tool: Some(BACKLOG_TOOL.to_owned()),
        action: Some(action.to_owned()),
        outcome: "",
    };
    let call = match app.authorize(&agent, BACKLOG_TOOL, action) {
        Ok(call) => call,
        Err(e) => {
            discard(body);
            return call_response(Err(e), log);
        }
    };
    let body = match body {
        None => Map::new(),
        Some(body) => match read_body(body, app.options.idle_timeout)
            .await
            .and_then(|b| params::object_body(&b))
        {
            Ok(map) => map,
            Err(e) => return call_response(Err(e), log),
        },
    };
    let params = match build(body) {
        Ok(p) => p,
        Err(e) => return call_response(Err(e), log),
    };
    let result = app.call(call, params, request_id).await;
    call_response(result, log)
}

fn id_param(id: String) -> Map<String, Value> {
    Map::from_iter([("id".to_owned(), Value::String(id))])
}

/// `POST /v1/tools/execute`: `{"tool","action",…params}` or `{"tool","action","params":{…}}`.
async fn execute(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let agent = match authenticate(&app, &headers) {
        Ok(a) => a,
        // Unreachable past `front`, which answers the same error first.
        Err(e) => return call_response(Err(e), CallLog::default()),
    };
    let mut log = CallLog {
        agent: Some(agent.clone()),
        ..CallLog::default()
    };
    let parsed = match read_body(body, app.options.idle_timeout)
        .await
        .and_then(|b| params::execute_body(&b))
    {
        Ok(p) => p,
        Err(e) => return call_response(Err(e), log),
    };
    log.tool = Some(parsed.tool.clone());
    log.action = Some(parsed.action.clone());
    let call = match app.authorize(&agent, &parsed.tool, &parsed.action) {
        Ok(call) => call,
        Err(e) => return call_response(Err(e), log),
    };
    let params = match parsed.params {
        Ok(p) => p,
        Err(e) => return call_response(Err(e), log),
    };
    let result = app.call(call, params, &rid).await;
    call_response(result, log)
}

/// `GET /v1/tools`: the tools and actions this caller may call, with their params schemas.
async fn list_tools(State(app): AppState, headers: HeaderMap) -> Response {
    match authenticate(&app, &headers) {
        Ok(agent) => {
            let mut resp = json_response(StatusCode::OK, &app.bridge.tools_for(Some(&agent)));
            resp.extensions_mut().insert(CallLog {
                agent: Some(agent),
                outcome: "ok",
                ..CallLog::default()
            });
            resp
        }
        Err(e) => call_response(Err(e), CallLog::default()),
    }
}

/// `GET /v1/explain[?tool=T&action=A]`: what the calling agent may call and, for one call,
/// whether it would be allowed and why (`backlog-bridge explain`, same function).
async fn explain(State(app): AppState, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let agent = match authenticate(&app, &headers) {
        Ok(agent) => agent,
        Err(e) => return call_response(Err(e), CallLog::default()),
    };
    let (mut tool, mut action) = (None, None);
    for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "tool" => tool = Some(v.into_owned()),
            "action" => action = Some(v.into_owned()),
            other => {
                let e = ToolError::new(
                    Code::InvalidInput,
                    format!("unknown query parameter `{other}`; allowed: tool, action"),
                );
                return call_response(Err(e), CallLog::default());
            }
        }
    }
    let call = match (&tool, &action) {
        (Some(t), Some(a)) => Some((t.as_str(), a.as_str())),
        (None, None) => None,
        _ => {
            let e = ToolError::new(
                Code::InvalidInput,
                "give both `tool` and `action`, or neither",
            );
            return call_response(Err(e), CallLog::default());
        }
    };
    let result = crate::explain::explain(&app.bridge, &agent, call).map(|x| x.to_json());
    call_response(
        result,
        CallLog {
            agent: Some(agent),
            ..CallLog::default()
        },
    )
}

async fn dashboard(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    backlog_call(&app, &headers, &rid, "dashboard", None, |_| {
        params::query(q.as_deref())
    })
    .await
}

async fn generate_weekly(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    backlog_call(
        &app,
        &headers,
        &rid,
        "auto_generate_weekly",
        Some(body),
        |b| params::merge(b, params::query(q.as_deref())?),
    )
    .await
}

async fn generate_daily(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    backlog_call(
        &app,
        &headers,
        &rid,
        "auto_generate_daily",
        Some(body),
        |b| params::merge(b, params::query(q.as_deref())?),
    )
    .await
}

async fn list_items(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    backlog_call(&app, &headers, &rid, "list", None, |_| {
        params::query(q.as_deref())
    })
    .await
}

async fn create_item(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    backlog_call(&app, &headers, &rid, "create", Some(body), Ok).await
}

async fn get_item(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    backlog_call(&app, &headers, &rid, "get", None, |_| {
        params::merge(params::query(q.as_deref())?, id_param(id))
    })
    .await
}

async fn item_events(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    backlog_call(&app, &headers, &rid, "events", None, |_| {
        params::merge(params::query(q.as_deref())?, id_param(id))
    })
    .await
}

async fn set_status(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    backlog_call(&app, &headers, &rid, "set_status", Some(body), |b| {
        params::merge(b, id_param(id))
    })
    .await
}

async fn add_comment(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    backlog_call(&app, &headers, &rid, "add_comment", Some(body), |b| {
        params::merge(b, id_param(id))
    })
    .await
}

async fn cleanup(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    backlog_call(&app, &headers, &rid, "cleanup", Some(body), Ok).await
}

/// `GET /healthz`: the process serves.
async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`: `{"backend","degraded","pending_replay"}`; 503 when writes would fail
/// (with `reason` when the JSONL directory refuses them), and `postgres_checked_ms_ago` when
/// the Postgres state is the last known one (the server was found down moments ago).
async fn readyz(State(app): AppState) -> Response {
    let probed = app
        .blocking(|bridge| {
            let status = bridge.store_status();
            let refused = (status.writable && status.backend == "jsonl")
                .then(|| super::jsonl_writable(&bridge.settings.jsonl_dir).err())
                .flatten();
            (status, refused)
        })
        .await;
    match probed {
        Ok((s, refused)) => {
            let status = if s.writable && refused.is_none() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = json!({"backend": s.backend, "degraded": s.degraded, "pending_replay": s.pending_replay});
            // The last known Postgres state, not asked again while the server is marked down.
            if let Some(age) = s.postgres_age {
                body["postgres_checked_ms_ago"] = json!(age.as_millis() as u64);
            }
            if let Some(reason) = refused {
                tracing::warn!("router: not ready: {reason}");
                body["reason"] = Value::String(reason);
            }
            json_response(status, &body)
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): AppState) -> Response {
    match app.store_gauges().await {
        Ok(gauges) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            app.metrics.render(app.calls_in_flight(), &gauges),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

/// `GET /openapi.json`: the API description (`super::openapi`), no key.
async fn openapi(State(app): AppState) -> Response {
    json_response(StatusCode::OK, &super::openapi::document(&app.bridge))
}

async fn not_found(method: Method, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let resp = error_response(&ToolError::new(
        Code::NotFound,
        format!(
            "no route {method} {} (routes: /v1/tools/execute, /v1/tools, /v1/explain, /v1/backlog/…, /healthz, /readyz, /metrics, /openapi.json, /ui)",
            uri.path()
        ),
    ));
    close_unread(resp, &headers)
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let resp = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({
            "error": format!("method {method} is not allowed on {}", uri.path()),
            "code": "method_not_allowed",
        }),
    );
    close_unread(resp, &headers)
}
