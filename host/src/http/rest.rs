//! REST routes onto tool actions, served from a tool's table ([`RestTable`]) by one generic
//! handler: each row names a method and path, the action it calls, and where its params come
//! from (the query string, the JSON body, or both; `{name}` segments of the path always).
//! The OpenAPI document (`super::openapi`) describes the same rows, so the two cannot drift.
//!
//! Each call: authenticate → authorize the row's action (404, 403) before the body is read,
//! so a caller without the entitlement learns nothing from its body and costs no more than its
//! headers (the rest of the body is discarded in the background) → params (413, 400) → the call.
//!
//! Must not: know any tool. The tables live with what the host knows of each tool
//! (`crate::backlog::routes`); `super::routes::REST` lists them.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts as _, Path, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Map, Value};

use super::App;
use super::front::RequestId;
use super::respond::{CallLog, call_response, call_tool, discard, read_body, unauthenticated};
use crate::error::ToolError;
use crate::params::{self, Origin, QueryTypes};

/// A route's HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    /// The method as the OpenAPI document spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// Where a route's params come from, besides the `{name}` segments of its path (merged
/// last; a key given twice must agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsFrom {
    /// The query string, typed by the table's [`QueryTypes`]; the body is not read.
    Query,
    /// The JSON body (empty: `{}`); the query string is ignored.
    Body,
    /// The JSON body, then the query string merged into it. The OpenAPI document lists the
    /// query keys named here, each with its description.
    BodyAndQuery(&'static [(&'static str, &'static str)]),
}

/// One REST route onto one action of the table's tool.
#[derive(Debug)]
pub struct RestRoute {
    pub method: Method,
    /// An axum path; `{name}` segments become the param `name`.
    pub path: &'static str,
    pub action: &'static str,
    pub from: ParamsFrom,
    /// The JSON Schema of the 200 answer (OpenAPI).
    pub answer: fn() -> Value,
    /// The answer's field naming what the route created: the OpenAPI document links it to
    /// the `{field}` of the table's other routes.
    pub creates: Option<&'static str>,
}

/// One tool's REST routes.
#[derive(Debug)]
pub struct RestTable {
    pub tool: &'static str,
    pub query: QueryTypes,
    pub routes: &'static [RestRoute],
    /// The OpenAPI `components/schemas` the answers refer to.
    pub schemas: fn() -> Map<String, Value>,
}

impl RestTable {
    /// What the table's paths share up to a `/` (`/v1/backlog/`), for messages.
    pub fn prefix(&self) -> &'static str {
        let Some(first) = self.routes.first() else {
            return "";
        };
        let mut len = first.path.len();
        for r in self.routes {
            len = first
                .path
                .bytes()
                .zip(r.path.bytes())
                .take(len)
                .take_while(|(a, b)| a == b)
                .count();
        }
        let shared = &first.path[..len];
        &shared[..shared.rfind('/').map_or(0, |i| i + 1)]
    }
}

/// The routes of `table`, each served by [`call_route`].
pub fn router(table: &'static RestTable) -> Router<Arc<App>> {
    let mut router = Router::new();
    for route in table.routes {
        let handler = move |State(app): State<Arc<App>>, req: Request| async move {
            call_route(&app, table, route, req).await
        };
        let method: MethodRouter<Arc<App>> = match route.method {
            Method::Get => get(handler),
            Method::Post => post(handler),
        };
        router = router.route(route.path, method);
    }
    router
}

/// One row's call: path params → authenticate → authorize (before the body is read) →
/// params from where the row says → the call.
async fn call_route(app: &App, table: &RestTable, route: &RestRoute, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = match path_params(route, &mut parts).await {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let body = match route.from {
        ParamsFrom::Query => None,
        ParamsFrom::Body | ParamsFrom::BodyAndQuery(_) => Some(body),
    };
    let agent = match app.authenticate(&parts.headers) {
        Ok(a) => a,
        Err(e) => return unauthenticated(e),
    };
    let log = CallLog {
        agent: Some(agent.clone()),
        tool: Some(table.tool.to_owned()),
        action: Some(route.action.to_owned()),
        outcome: "",
    };
    let call = match app.authorize(&agent, table.tool, route.action, &request_id) {
        Ok(call) => call,
        Err(e) => {
            discard(body);
            return call_response(Err(e), log);
        }
    };
    let params = match params(app, table, route, parts.uri.query(), body, path).await {
        Ok(p) => p,
        Err(e) => return call_response(Err(e), log),
    };
    let result = call_tool(app, call, params, &request_id).await;
    call_response(result, log)
}

/// The `{name}` segments of the request's path, decoded (axum's 400 when one is not UTF-8).
async fn path_params(
    route: &RestRoute,
    parts: &mut Parts,
) -> Result<Map<String, Value>, PathRejection> {
    if !route.path.contains('{') {
        return Ok(Map::new());
    }
    let Path(pairs) = Path::<Vec<(String, String)>>::from_request_parts(parts, &()).await?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

/// The call's params: the body and the query as the row says, then the path's.
async fn params(
    app: &App,
    table: &RestTable,
    route: &RestRoute,
    query: Option<&str>,
    body: Option<axum::body::Body>,
    path: Map<String, Value>,
) -> Result<Map<String, Value>, ToolError> {
    let body = match body {
        None => Map::new(),
        Some(body) => {
            let bytes = read_body(body, app.options.idle_timeout).await?;
            params::object(&bytes, Origin::Body)?
        }
    };
    let params = match route.from {
        ParamsFrom::Query => params::query(query, &table.query)?,
        ParamsFrom::Body => body,
        ParamsFrom::BodyAndQuery(_) => params::merge(body, params::query(query, &table.query)?)?,
    };
    params::merge(params, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backlog::routes::TABLE;

    fn object() -> Value {
        Value::Object(Map::new())
    }

    const fn route(path: &'static str) -> RestRoute {
        RestRoute {
            method: Method::Get,
            path,
            action: "a",
            from: ParamsFrom::Query,
            answer: object,
            creates: None,
        }
    }

    fn table(routes: &'static [RestRoute]) -> RestTable {
        RestTable {
            tool: "t",
            query: TABLE.query,
            routes,
            schemas: Map::new,
        }
    }

    #[test]
    fn a_table_is_named_by_the_prefix_its_paths_share() {
        assert_eq!(TABLE.prefix(), "/v1/backlog/");
        const ONE: &[RestRoute] = &[route("/v1/x/items")];
        const TWO: &[RestRoute] = &[route("/v1/abc/d"), route("/v1/abx/d")];
        assert_eq!(table(ONE).prefix(), "/v1/x/");
        assert_eq!(table(TWO).prefix(), "/v1/");
        assert_eq!(table(&[]).prefix(), "");
    }

    /// Each row is one (method, path); what a row creates is the `{field}` of another row.
    #[test]
    fn the_backlog_table_is_consistent() {
        for (i, r) in TABLE.routes.iter().enumerate() {
            let same = TABLE.routes[..i]
                .iter()
                .any(|o| o.method == r.method && o.path == r.path);
            assert!(!same, "{} {} twice", r.method.as_str(), r.path);
            if let Some(field) = r.creates {
                let segment = format!("{{{field}}}");
                assert!(TABLE.routes.iter().any(|o| o.path.contains(&segment)));
            }
            let reads_body = !matches!(r.from, ParamsFrom::Query);
            assert_eq!(reads_body, r.method == Method::Post, "{}", r.path);
        }
    }
}
