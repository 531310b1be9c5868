//! MCP over Streamable HTTP, as an axum [`Router`] the router (`serve`) mounts.
//!
//! `POST/GET/DELETE /mcp`: rmcp's `StreamableHttpService` serves both protocol generations
//! from the one handler — the `initialize` handshake with an `Mcp-Session-Id` session, and the
//! newer stateless requests that carry their protocol version per request. In front of it, in
//! this order, security reasons first:
//! 1. **The browser guard** ([`crate::http::browser`], the one every route of `serve` passes):
//!    Origin, `Sec-Fetch-Site`, Host (DNS rebinding) and `Content-Type`, with 403/415.
//! 2. **Authentication**: the [`Authenticate`] function the router passes in (bearer key →
//!    agent, or the router's explicit anonymous agent); its error object and status are
//!    returned as they are. The agent goes into the request for the handler.
//!
//! The OAuth discovery paths answer a fast JSON 404 before authentication, so a client that
//! speaks OAuth learns at once that this server takes a bearer key and does not start a login
//! flow.
//!
//! Must not: read keys or the RBAC matrix (the router owns authentication, the handler
//! authorization).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::handler::{Agent, McpHandler};
use crate::bridge::{Bridge, MAX_PARAMS_BYTES};
use crate::error::{Code, ToolError};
use crate::http::browser::BrowserPolicy;

/// Where the MCP endpoint lives.
pub const PATH: &str = "/mcp";

/// OAuth/OpenID discovery paths that answer 404 (with and without the `/mcp` suffix, and the
/// older form under the endpoint).
pub const WELL_KNOWN_PATHS: &[&str] = &[
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server/mcp",
    "/.well-known/openid-configuration",
    "/.well-known/openid-configuration/mcp",
    "/mcp/.well-known/oauth-protected-resource",
    "/mcp/.well-known/oauth-authorization-server",
    "/mcp/.well-known/openid-configuration",
];

/// Turns a request's headers into the calling agent, or the error object to answer with
/// (`unauthenticated` → 401). The router supplies it: bearer key lookup with constant-time
/// comparison, or its `--anonymous-agent` on loopback.
pub type Authenticate = Arc<dyn Fn(&HeaderMap) -> Result<String, ToolError> + Send + Sync>;

/// What the HTTP face accepts besides authenticated requests.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The browser guard of the listener (`serve`'s, shared with every other route).
    pub browser: Arc<BrowserPolicy>,
    /// Cancelled on shutdown: ends open SSE streams and sessions, so a graceful shutdown does
    /// not wait for clients that keep a stream open.
    pub shutdown: CancellationToken,
}

impl HttpOptions {
    /// Loopback only: loopback origins, and a loopback `Host`.
    pub fn loopback() -> HttpOptions {
        HttpOptions {
            browser: Arc::new(BrowserPolicy::new(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                false,
                Vec::new(),
                Vec::new(),
            )),
            shutdown: CancellationToken::new(),
        }
    }
}

#[derive(Clone)]
struct Guard {
    auth: Authenticate,
    options: Arc<HttpOptions>,
}

/// The MCP endpoint at [`PATH`] and the OAuth 404s, for `serve` to merge into its router.
pub fn router<S>(bridge: Arc<Bridge>, auth: Authenticate, options: HttpOptions) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let handler = McpHandler::per_request(bridge);
    let config = StreamableHttpServerConfig::default()
        // Host and Origin are checked in `guard`, with this module's rules and error objects.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        // Room for a params document just over the limit, so it gets the `payload_too_large`
        // tool result rather than a bare HTTP 413.
        .with_max_request_body_bytes(2 * MAX_PARAMS_BYTES)
        .with_json_response(true)
        .with_cancellation_token(options.shutdown.clone());
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let guard = Guard {
        auth,
        options: Arc::new(options),
    };
    let mut router = Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(guard, guard_layer));
    for path in WELL_KNOWN_PATHS {
        router = router.route(path, any(no_oauth));
    }
    router
}

async fn no_oauth() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &ToolError::new(
            Code::NotFound,
            "this server does not use OAuth: send `Authorization: Bearer <api key>` to /mcp",
        ),
    )
}

async fn guard_layer(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    if let Err(refusal) = guard
        .options
        .browser
        .check(request.method(), request.headers())
    {
        tracing::warn!(via = "mcp", "refused by the browser guard");
        return (
            refusal.status,
            [(header::CONTENT_TYPE, "application/json")],
            refusal.body.to_string(),
        )
            .into_response();
    }
    match (guard.auth)(request.headers()) {
        Ok(agent) => {
            request.extensions_mut().insert(Agent(agent.into()));
            next.run(request).await
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            error_response(status, &e)
        }
    }
}

fn error_response(status: StatusCode, error: &ToolError) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error.to_json().to_string(),
    )
        .into_response()
}
