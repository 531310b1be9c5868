//! The MCP face: every action an agent may call, as a Model Context Protocol tool, over stdio
//! (`backlog-bridge mcp`) and Streamable HTTP (`/mcp`, mounted by `serve`).
//!
//! - `catalog.rs` — the runtime manifest (`describe()` of each installed plugin, filtered by
//!   the RBAC matrix) as MCP tools: names, descriptions, input schemas, annotations, and the
//!   compiled schemas that check arguments.
//! - `handler.rs` — the rmcp `ServerHandler`: `tools/list` per caller, `tools/call` through
//!   the call pipeline (`crate::call`).
//! - `http.rs` — the axum router for `serve`: Origin/Host checks, authentication hook, session
//!   ownership and limits, message checks, OAuth discovery 404s.
//! - `sessions.rs` — the session manager of the HTTP face: owner per session, caps, lifetime.
//! - `stdio.rs` — the line transport of `backlog-bridge mcp`, which answers unreadable lines.
//! - `wire.rs` — reading one JSON-RPC message; the parse/invalid-request errors.
//!
//! Must not: authenticate on its own (stdio trusts whoever launched it, HTTP asks the
//! router's function), grant anything, or write to stdout outside the protocol (stdio mode:
//! stdout *is* the protocol; logs go to stderr).

pub mod catalog;
pub mod handler;
pub mod hints;
pub mod http;
pub mod sessions;
pub mod stdio;
pub mod wire;

use std::sync::Arc;

use rmcp::ServiceExt as _;

pub use handler::{Agent, CallFuture, CallRunner, CallSpec, McpHandler, RequestId};
pub use http::{Authenticate, HttpOptions, router as http_router};
pub use sessions::SessionLimits;

use crate::Bridge;

/// Why the stdio server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("mcp: the client did not complete the MCP handshake: {0}")]
    Handshake(Box<rmcp::service::ServerInitializeError>),
    #[error("mcp: the server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("mcp: cannot start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// [`serve_stdio`] on a runtime of its own (the `mcp` subcommand).
pub fn run_stdio(bridge: Bridge, agent: &str) -> Result<(), StdioError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mcp")
        .build()?
        .block_on(serve_stdio(Arc::new(bridge), agent))
}

/// Serves MCP on stdin/stdout as `agent` until the client closes stdin.
pub async fn serve_stdio(bridge: Arc<Bridge>, agent: &str) -> Result<(), StdioError> {
    let handler = McpHandler::for_agent(bridge, agent);
    let (transport, writer) = stdio::transport(tokio::io::stdin(), tokio::io::stdout());
    let result = match handler.serve(transport).await {
        Ok(running) => running.waiting().await.map(|reason| {
            tracing::debug!(?reason, "mcp: stdio session ended");
        }),
        Err(e) => {
            // The answers already queued (refusals of unreadable lines) still go out.
            writer.await?;
            return Err(StdioError::Handshake(Box::new(e)));
        }
    };
    // The transport is gone with the service: the writer drains what is queued, then ends.
    writer.await?;
    result.map_err(StdioError::from)
}
