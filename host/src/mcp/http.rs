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
//! 3. **Session ownership** (`sessions.rs`): a request naming a session (`Mcp-Session-Id`:
//!    POST, GET and its `Last-Event-ID` resume, DELETE, a repeated `initialize`) that is not
//!    its creator's — another agent, or no key on a keyed session — gets the same 404 as an
//!    unknown session.
//! 4. **The message** (POST): read whole (limit: twice the params limit, else 413), checked to
//!    be one JSON-RPC message (`wire::read`: else a JSON-RPC `-32700`/`-32600` error with
//!    status 400, not rmcp's plain-text 415); an `initialize` larger than
//!    [`MAX_INITIALIZE_BYTES`] is refused (`-32600`). An `initialize` without a session
//!    reserves a session slot first (503 with the error object when the caller's or the
//!    server's limit is reached).
//!
//! Calls run through the [`CallRunner`] the router passes in (the pipeline's gate: admission,
//! workers, metrics, drain).
//!
//! **Shutdown** ([`HttpOptions::shutdown`] cancelled): new POSTs get 503 (not performed); the
//! POSTs already admitted keep their response streams until their results are written (a
//! call that ran is answered); then rmcp's own token ends the sessions and the open `GET`
//! streams, so the graceful shutdown does not wait for clients that keep a stream open.
//!
//! The OAuth discovery paths answer a fast JSON 404 before authentication, so a client that
//! speaks OAuth learns at once that this server takes a bearer key and does not start a login
//! flow.
//!
//! Must not: read keys or the RBAC matrix (the router owns authentication, the handler
//! authorization).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::handler::{Agent, CallRunner, McpHandler};
use super::sessions::{Access, Principal, RESERVATION, SessionLimits, Sessions};
use super::wire::{self, INVALID_REQUEST, Refusal};
use crate::call::MAX_PARAMS_BYTES;
use crate::error::{Code, ToolError};
use crate::http::browser::BrowserPolicy;
use crate::registry::Live;

/// The largest `initialize` request accepted: client name, version and capabilities fit in a
/// few hundred bytes; a session must not cost its creator's choice of memory.
pub const MAX_INITIALIZE_BYTES: usize = 8 * 1024;

/// The largest POST body: room for a params document just over the params limit, so it gets
/// the `payload_too_large` tool result rather than a bare HTTP 413.
const MAX_BODY_BYTES: usize = 2 * MAX_PARAMS_BYTES;

/// The session header of Streamable HTTP.
const SESSION_HEADER: &str = "mcp-session-id";

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
    /// Session caps, idle timeout and lifetime.
    pub limits: SessionLimits,
    /// Open sessions, kept current for the router's `/metrics`.
    pub open_sessions: Arc<AtomicUsize>,
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
            limits: SessionLimits::default(),
            open_sessions: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[derive(Clone)]
struct Guard {
    auth: Authenticate,
    options: Arc<HttpOptions>,
    sessions: Arc<Sessions>,
    handler: McpHandler,
    posts: Arc<Posts>,
}

/// POST responses not yet finished (their calls may be running, their results unsent).
#[derive(Default)]
struct Posts {
    active: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts one POST response until its body is dropped (sent or abandoned).
struct PostGuard(Arc<Posts>);

impl PostGuard {
    fn new(posts: &Arc<Posts>) -> PostGuard {
        posts.active.fetch_add(1, Ordering::AcqRel);
        PostGuard(posts.clone())
    }
}

impl Drop for PostGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// How long a shutdown waits for MCP responses in flight (the longest shipped `timeout_s` is
/// 120 s, as the router's own drain).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(130);

/// After `stop`: waits for the POST responses in flight, then ends rmcp's sessions and streams.
async fn drain_then_cancel(posts: Arc<Posts>, stop: CancellationToken, rmcp: CancellationToken) {
    stop.cancelled().await;
    let drained = async {
        loop {
            let idle = posts.idle.notified();
            if posts.active.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!(
            active = posts.active.load(Ordering::Acquire),
            "mcp: responses still in flight after {SHUTDOWN_GRACE:?}; closing sessions anyway"
        );
    }
    rmcp.cancel();
}

/// What the router's access log says about an MCP request: the agent and, for `tools/call`,
/// the tool and action (the call's own log line carries the same request id and outcome).
#[derive(Debug, Clone, Default)]
pub struct McpCallLog {
    pub agent: String,
    pub tool: Option<String>,
    pub action: Option<String>,
}

/// The MCP endpoint at [`PATH`] and the OAuth 404s, for `serve` to merge into its router.
/// `runner` runs each checked tool call (the router's admission, workers and metrics).
/// A reload of `live` swaps the handler's catalog and tells sessions whose tool list changed.
pub fn router<S>(
    live: Arc<Live>,
    auth: Authenticate,
    runner: CallRunner,
    options: HttpOptions,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let handler = McpHandler::per_request(live.current(), runner);
    live.on_swap({
        let handler = handler.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        Box::new(move |_, new| handler.reloaded(new.clone(), runtime.as_ref()))
    });
    let posts = Arc::new(Posts::default());
    let mut rmcp_token = CancellationToken::new();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(drain_then_cancel(
            posts.clone(),
            options.shutdown.clone(),
            rmcp_token.clone(),
        ));
    } else {
        // No runtime to wait on: end sessions with the shutdown itself.
        rmcp_token = options.shutdown.clone();
    }
    let config = StreamableHttpServerConfig::default()
        // Host and Origin are checked in `guard`, with this module's rules and error objects.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_json_response(true)
        .with_cancellation_token(rmcp_token.clone());
    let sessions = Arc::new(Sessions::new(
        options.limits.clone(),
        options.open_sessions.clone(),
    ));
    let service = StreamableHttpService::new(
        {
            let handler = handler.clone();
            move || Ok(handler.clone())
        },
        sessions.clone(),
        config,
    );
    let guard = Guard {
        auth,
        options: Arc::new(options),
        sessions,
        handler,
        posts,
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
    let agent = match (guard.auth)(request.headers()) {
        Ok(agent) => agent,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return error_response(status, &e);
        }
    };
    let principal = Principal {
        agent: agent.into(),
        // The router acts as `--anonymous-agent` only for a request without the header.
        keyed: request.headers().contains_key(header::AUTHORIZATION),
    };
    request
        .extensions_mut()
        .insert(Agent(principal.agent.clone()));
    let mut log = McpCallLog {
        agent: principal.agent.to_string(),
        ..McpCallLog::default()
    };
    let session = match request.headers().get(SESSION_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(id) => Some(id.to_owned()),
            Err(_) => return with_log(session_not_found(), log),
        },
    };
    if let Some(id) = &session
        && guard.sessions.check(id, &principal).await == Access::NotFound
    {
        return with_log(session_not_found(), log);
    }
    if request.method() != axum::http::Method::POST {
        return with_log(next.run(request).await, log);
    }
    if guard.options.shutdown.is_cancelled() {
        let e = ToolError::new(
            Code::Unavailable,
            "the server is shutting down; retry elsewhere",
        );
        return with_log(error_response(StatusCode::SERVICE_UNAVAILABLE, &e), log);
    }
    let counted = PostGuard::new(&guard.posts);

    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let e = ToolError::new(
                Code::PayloadTooLarge,
                format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
            );
            let mut resp = error_response(StatusCode::PAYLOAD_TOO_LARGE, &e);
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return with_log(resp, log);
        }
    };
    let value = match wire::read(&bytes) {
        Ok((_, value)) => value,
        Err(refusal) => return with_log(refuse(&refusal), log),
    };
    let method = value.get("method").and_then(|m| m.as_str()).unwrap_or("");
    if method == "tools/call"
        && let Some(name) = value.pointer("/params/name").and_then(|n| n.as_str())
        && let Some((tool, action)) = guard.handler.tool_action(name)
    {
        log.tool = Some(tool);
        log.action = Some(action);
    }
    let initialize = method == "initialize";
    if initialize && bytes.len() > MAX_INITIALIZE_BYTES {
        let refusal = Refusal::new(
            INVALID_REQUEST,
            format!(
                "Invalid Request: initialize is {} bytes; the limit is {MAX_INITIALIZE_BYTES} (client info and capabilities)",
                bytes.len()
            ),
            wire::id_of(&value),
        );
        return with_log(refuse(&refusal), log);
    }
    // The access log's request id (a `RequestId` extension) rides along to the handler.
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    if !initialize || session.is_some() {
        return with_log(counting(next.run(request).await, counted), log);
    }
    let reservation = match guard.sessions.reserve(principal) {
        Ok(r) => r,
        Err(refused) => {
            tracing::warn!(
                via = "mcp",
                agent = log.agent,
                reason = %refused,
                "mcp: session refused: limit reached"
            );
            let mut resp = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &ToolError::new(Code::Unavailable, refused.to_string()),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return with_log(resp, log);
        }
    };
    let resp = RESERVATION.scope(reservation, next.run(request)).await;
    with_log(counting(resp, counted), log)
}

/// `resp` with its body holding `counted` until the body is sent or dropped.
fn counting(resp: Response, counted: PostGuard) -> Response {
    use futures_util::StreamExt as _;
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &counted;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

fn with_log(mut resp: Response, log: McpCallLog) -> Response {
    resp.extensions_mut().insert(log);
    resp
}

/// What an unknown session, someone else's and an expired one all get.
fn session_not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &ToolError::new(
            Code::NotFound,
            "no such MCP session: send `initialize` without Mcp-Session-Id to start one",
        ),
    )
}

/// A message that is not one JSON-RPC message: its JSON-RPC error, status 400.
fn refuse(refusal: &Refusal) -> Response {
    tracing::warn!(
        via = "mcp",
        code = refusal.code,
        kind = refusal.kind(),
        reason = %crate::logging::truncate(&refusal.message, 200),
        "mcp: refused an unreadable message"
    );
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        refusal.to_json().to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, error: &ToolError) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        error.to_json().to_string(),
    )
        .into_response()
}
