//! `POST /v1/admin/reload` (`docs/change-control.md`): reloads the config dir, for an agent
//! holding the entitlement [`RELOAD_ENTITLEMENT`] in the RBAC matrix (403 otherwise). 200
//! `{"reloaded": true, "changed": [...], "ms": N}`; 400 `{"error", "code": "invalid_config",
//! "errors": [...]}` when the new config has errors (the old one stays in force).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::App;
use super::front::RequestId;
use super::respond::{CallLog, call_response, close_unread, json_response, unauthenticated};
use crate::error::{Code, ToolError};
use crate::reload::Trigger;

/// The entitlement an agent needs to reload the config over HTTP.
pub const RELOAD_ENTITLEMENT: &str = "bridge.reload";

/// The code of the answer to a reload whose config has errors.
pub const INVALID_CONFIG: &str = "invalid_config";

pub(super) async fn reload(
    State(app): State<Arc<App>>,
    axum::Extension(RequestId(rid)): axum::Extension<RequestId>,
    headers: HeaderMap,
    _body: Body,
) -> Response {
    let agent = match app.authenticate(&headers) {
        Ok(a) => a,
        Err(e) => return unauthenticated(e),
    };
    let log = CallLog {
        agent: Some(agent.clone()),
        ..CallLog::default()
    };
    let bridge = app.bridge();
    let holds = bridge
        .matrix
        .agent(&agent)
        .is_some_and(|a| a.entitlements.iter().any(|e| e == RELOAD_ENTITLEMENT));
    if !holds {
        let mut line = serde_json::Map::new();
        line.insert("event".into(), json!("reload"));
        line.insert("trigger".into(), json!("http"));
        line.insert("actor".into(), json!(agent));
        line.insert("request_id".into(), json!(rid));
        line.insert("decision".into(), json!("deny"));
        line.insert("reason".into(), json!(RELOAD_ENTITLEMENT));
        bridge.audit_event(line);
        let e = ToolError::new(
            Code::Forbidden,
            format!(
                "agent `{agent}` lacks `{RELOAD_ENTITLEMENT}` for POST /v1/admin/reload ({})",
                bridge.matrix.path.display()
            ),
        );
        return close_unread(call_response(Err(e), log), &headers);
    }
    drop(bridge);
    let trigger = Trigger::Http {
        agent,
        request_id: rid,
    };
    let worker = app.clone();
    let result = tokio::task::spawn_blocking(move || worker.reload(&trigger)).await;
    let mut resp = match result {
        Ok(Ok(done)) => json_response(
            StatusCode::OK,
            &json!({"reloaded": true, "changed": done.changed, "ms": done.ms}),
        ),
        Ok(Err(e)) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("the config was not reloaded, the old one stays in force: {e}"),
                    "code": INVALID_CONFIG, "errors": e.errors}),
        ),
        Err(e) => {
            let e = ToolError::new(Code::Internal, format!("the reload did not finish: {e}"));
            return call_response(Err(e), log);
        }
    };
    let outcome = if resp.status() == StatusCode::OK {
        "ok"
    } else {
        INVALID_CONFIG
    };
    resp.extensions_mut().insert(CallLog { outcome, ..log });
    close_unread(resp, &headers)
}
