//! The routes (see `docs/http-api.md`) and what each turns into: a tool call, or a status
//! document.
//!
//! Every request first passes `super::front` (request id, access log, the checks that read
//! no body). Then each handler checks the action (404, 403) before reading the body (413,
//! 400), so a caller without the entitlement learns nothing from its body and costs no more
//! than its headers; a tool's REST routes (`/v1/backlog/...`) are rows of its table, served by
//! `super::rest`. Errors are the `{"error","code"}` object with the status (see
//! `docs/actions.md`); unknown routes (404) and wrong methods (405) answer JSON too.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::App;
pub(crate) use super::front::RequestId;
use super::front::{access_log, front};
use super::respond::{
    CallLog, call_response, call_tool, close_unread, error_response, json_response, read_body,
    unauthenticated,
};
use super::rest;
pub use super::tables::REST;
use crate::call::Answer;
use crate::error::{Code, ToolError};
use crate::params;

type AppState = State<Arc<App>>;

/// Every route (see `docs/http-api.md`) over `app`.
pub fn router(app: Arc<App>, mcp: Router<Arc<App>>) -> Router {
    let mut router = Router::new()
        // `/mcp` and the OAuth discovery 404s (`crate::mcp::http_router`): authenticated by
        // the same keys through `App::authenticate`, logged and counted like every route.
        .merge(mcp)
        // The backlog's read-only review page (`crate::backlog::ui`): static files, data
        // through the GET routes.
        .merge(crate::backlog::ui::routes())
        .route("/v1/tools/execute", post(execute))
        .route("/v1/tools", get(list_tools))
        .route("/v1/explain", get(explain))
        .route("/v1/admin/reload", post(super::admin::reload));
    for table in REST {
        router = router.merge(rest::router(table));
    }
    router
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

/// `POST /v1/tools/execute`: `{"tool","action",…params}` or `{"tool","action","params":{…}}`.
async fn execute(
    State(app): AppState,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let agent = match app.authenticate(&headers) {
        Ok(a) => a,
        Err(e) => return unauthenticated(e),
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
    let call = match app.authorize(&agent, &parsed.tool, &parsed.action, &rid) {
        Ok(call) => call,
        Err(e) => return call_response(Err(e), log),
    };
    let params = match parsed.params {
        Ok(p) => p,
        Err(e) => return call_response(Err(e), log),
    };
    let result = call_tool(&app, call, params, &rid).await;
    call_response(result, log)
}

/// `GET /v1/tools`: the tools and actions this caller may call, with their params schemas.
async fn list_tools(State(app): AppState, headers: HeaderMap) -> Response {
    let agent = match app.authenticate(&headers) {
        Ok(a) => a,
        Err(e) => return unauthenticated(e),
    };
    let mut resp = json_response(StatusCode::OK, &app.bridge().tools_for(Some(&agent)));
    resp.extensions_mut().insert(CallLog {
        agent: Some(agent),
        outcome: "ok",
        ..CallLog::default()
    });
    resp
}

/// `GET /v1/explain[?tool=T&action=A]`: what the calling agent may call and, for one call,
/// whether it would be allowed and why (`backlog-bridge explain`, same function).
async fn explain(State(app): AppState, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let agent = match app.authenticate(&headers) {
        Ok(a) => a,
        Err(e) => return unauthenticated(e),
    };
    let call = match crate::params::explain_query(q.as_deref()) {
        Ok(call) => call,
        Err(e) => return call_response(Err(e), CallLog::default()),
    };
    let call = call.as_ref().map(|(t, a)| (t.as_str(), a.as_str()));
    let result =
        crate::explain::explain(&app.bridge(), &agent, call).map(|x| Answer::from(&x.to_json()));
    call_response(
        result,
        CallLog {
            agent: Some(agent),
            ..CallLog::default()
        },
    )
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
        Ok(gauges) => {
            let mut text = app.metrics.render(app.calls_in_flight(), &gauges);
            super::metrics::render_reload(&mut text, app.reloader.status());
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                text,
            )
                .into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /openapi.json`: the API description (`super::openapi`), no key.
async fn openapi(State(app): AppState) -> Response {
    json_response(StatusCode::OK, &super::openapi::document(&app.bridge()))
}

async fn not_found(method: Method, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let tables: String = REST.iter().map(|t| format!(", {}…", t.prefix())).collect();
    let resp = error_response(&ToolError::new(
        Code::NotFound,
        format!(
            "no route {method} {} (routes: /v1/tools/execute, /v1/tools, /v1/explain{tables}, /healthz, /readyz, /metrics, /openapi.json, /ui)",
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
