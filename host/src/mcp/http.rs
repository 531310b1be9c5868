//! MCP over Streamable HTTP, as an axum [`Router`] the router (`serve`) mounts.
//!
//! `POST/GET/DELETE /mcp`: rmcp's `StreamableHttpService` serves both protocol generations
//! from the one handler — the `initialize` handshake with an `Mcp-Session-Id` session, and the
//! newer stateless requests that carry their protocol version per request. In front of it, in
//! this order, security reasons first:
//! 1. **Origin** (DNS rebinding: a web page that rebinds its name to 127.0.0.1 must not drive
//!    the bridge from a browser): a request that carries an `Origin` is refused with 403 unless
//!    the origin's host is loopback or it is listed in [`HttpOptions::allowed_origins`].
//! 2. **Host**, when [`HttpOptions::allowed_hosts`] is set (the same attack seen from the
//!    `Host` header, for requests without `Origin`).
//! 3. **Authentication**: the [`Authenticate`] function the router passes in (bearer key →
//!    agent, or the router's explicit anonymous agent); its error object and status are
//!    returned as they are. The agent goes into the request for the handler.
//!
//! The OAuth discovery paths answer a fast JSON 404 before authentication, so a client that
//! speaks OAuth learns at once that this server takes a bearer key and does not start a login
//! flow.
//!
//! Must not: read keys or the RBAC matrix (the router owns authentication, the handler
//! authorization).

use std::net::IpAddr;
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
    /// Browser origins allowed besides loopback ones, exactly as browsers send them
    /// (`https://console.example.com`, `http://localhost:5173`). `null` is never allowed
    /// unless listed.
    pub allowed_origins: Vec<String>,
    /// `Host` header values accepted (with or without port); `None` accepts any host. Listen
    /// on loopback → [`HttpOptions::loopback`] keeps rebinding out; behind a proxy, list the
    /// names the proxy forwards.
    pub allowed_hosts: Option<Vec<String>>,
    /// Cancelled on shutdown: ends open SSE streams and sessions, so a graceful shutdown does
    /// not wait for clients that keep a stream open.
    pub shutdown: CancellationToken,
}

impl HttpOptions {
    /// Loopback only: loopback origins, and `Host` one of `localhost`, `127.0.0.1`, `[::1]`.
    pub fn loopback() -> HttpOptions {
        HttpOptions {
            allowed_origins: Vec::new(),
            allowed_hosts: Some(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
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
    if let Err(e) = check_origin(request.headers(), &guard.options) {
        tracing::warn!(via = "mcp", "refused: {}", e.message);
        return error_response(StatusCode::FORBIDDEN, &e);
    }
    if let Err(e) = check_host(request.headers(), &guard.options) {
        tracing::warn!(via = "mcp", "refused: {}", e.message);
        return error_response(StatusCode::FORBIDDEN, &e);
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

/// Origin check: absent → fine (not a browser); loopback host or listed → fine.
fn check_origin(headers: &HeaderMap, options: &HttpOptions) -> Result<(), ToolError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("<not text>");
    if options.allowed_origins.iter().any(|o| o == origin) || origin_is_loopback(origin) {
        return Ok(());
    }
    Err(ToolError::new(
        Code::Forbidden,
        format!(
            "Origin `{origin}` may not call /mcp: only loopback origins and the configured allowed origins may (DNS rebinding protection)"
        ),
    ))
}

/// Whether `scheme://host[:port]` names a loopback host.
pub fn origin_is_loopback(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") || rest.contains(['/', '@', '?', '#']) {
        return false;
    }
    host_is_loopback(rest)
}

/// Whether an authority (`host[:port]`, `[v6][:port]`) is loopback.
fn host_is_loopback(authority: &str) -> bool {
    let (host, _) = split_authority(authority);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` or `[v6][:port]` → host (without brackets) and port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

/// Host check: an allowed entry without port matches the host on any port; with a port,
/// only that port.
fn check_host(headers: &HeaderMap, options: &HttpOptions) -> Result<(), ToolError> {
    let Some(allowed) = &options.allowed_hosts else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let (name, port) = split_authority(host);
    let ok = allowed.iter().any(|a| {
        let (a_name, a_port) = split_authority(a);
        a_name.eq_ignore_ascii_case(name) && (a_port.is_none() || a_port == port)
    });
    if ok {
        Ok(())
    } else {
        Err(ToolError::new(
            Code::Forbidden,
            format!(
                "Host `{host}` is not served here (allowed: {}); DNS rebinding protection",
                allowed.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[track_caller]
    fn check_origin_row(origin: &str, allowed: &[&str], expect: bool) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("header"),
        );
        let options = HttpOptions {
            allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
            ..HttpOptions::loopback()
        };
        assert_eq!(check_origin(&headers, &options).is_ok(), expect, "{origin}");
    }

    #[test]
    fn origins() {
        check_origin_row("http://localhost", &[], true);
        check_origin_row("http://localhost:6274", &[], true);
        check_origin_row("https://127.0.0.1:8000", &[], true);
        check_origin_row("http://127.1.2.3", &[], true);
        check_origin_row("http://[::1]:8000", &[], true);
        check_origin_row("http://LOCALHOST:1", &[], true);
        check_origin_row("http://evil.example", &[], false);
        check_origin_row("http://localhost.evil.example", &[], false);
        check_origin_row("http://127.0.0.1.evil.example", &[], false);
        check_origin_row("http://user@localhost", &[], false);
        check_origin_row("null", &[], false);
        check_origin_row("file://", &[], false);
        check_origin_row("http://10.0.0.1", &[], false);
        check_origin_row(
            "https://console.example.com",
            &["https://console.example.com"],
            true,
        );
        check_origin_row(
            "https://console.example.com:444",
            &["https://console.example.com"],
            false,
        );
        check_origin_row("null", &["null"], true);
        // No Origin: not a browser request.
        assert!(check_origin(&HeaderMap::new(), &HttpOptions::loopback()).is_ok());
    }

    #[track_caller]
    fn check_host_row(host: &str, allowed: Option<&[&str]>, expect: bool) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        let options = HttpOptions {
            allowed_hosts: allowed.map(|a| a.iter().map(|s| s.to_string()).collect()),
            ..HttpOptions::loopback()
        };
        assert_eq!(check_host(&headers, &options).is_ok(), expect, "{host}");
    }

    #[test]
    fn hosts() {
        let loopback: &[&str] = &["localhost", "127.0.0.1", "[::1]"];
        check_host_row("127.0.0.1:8000", Some(loopback), true);
        check_host_row("localhost", Some(loopback), true);
        check_host_row("[::1]:8000", Some(loopback), true);
        check_host_row("evil.example:8000", Some(loopback), false);
        check_host_row("router", Some(&["router:443"]), false);
        check_host_row("router:443", Some(&["router:443"]), true);
        check_host_row("router:8443", Some(&["router"]), true);
        check_host_row("anything", None, true);
    }
}
