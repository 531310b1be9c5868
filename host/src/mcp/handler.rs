//! The MCP request handler: `tools/list` filtered per caller, `tools/call` through
//! [`Bridge::call`]. One handler serves both transports; only where the caller's agent id
//! comes from differs ([`Caller`]).
//!
//! A call runs the checks of SPEC §3 in order, all before the guest: the tool exists (an
//! unknown name is a JSON-RPC invalid-params error, not a tool result) → the agent holds every
//! entitlement (`forbidden`) → size (`payload_too_large`) → the action's params schema
//! (`invalid_input`) → [`Bridge::call`], which checks existence and RBAC again and grants the
//! call its capabilities. Every failure after the name is a tool result with `isError` and the
//! spec's error object as text and `structuredContent`.
//!
//! Must not: decide grants, or block the async runtime (guest calls run on the blocking pool).

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, RequestContext, RoleServer};
use serde_json::Value;

use super::catalog::{Catalog, Entry};
use crate::bridge::{Bridge, CallRequest, MAX_PARAMS_BYTES};
use crate::error::{Code, ToolError};

/// The authenticated agent of one HTTP request. The HTTP layer puts it into the request's
/// extensions after checking the key; the handler reads it from there on every request, so a
/// session never outlives a key's authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent(pub Arc<str>);

/// Where the handler learns who is calling.
#[derive(Debug, Clone)]
enum Caller {
    /// stdio: one agent for the whole process, named by whoever launched it.
    Fixed(Arc<str>),
    /// HTTP: the [`Agent`] the auth layer attached to each request.
    PerRequest,
}

struct Shared {
    bridge: Arc<Bridge>,
    catalog: Catalog,
    instructions: String,
}

/// The MCP server over one [`Bridge`]. Cheap to clone (the HTTP transport makes one per
/// session).
#[derive(Clone)]
pub struct McpHandler {
    shared: Arc<Shared>,
    caller: Caller,
}

impl McpHandler {
    /// A handler that acts as `agent` for every request (the stdio server).
    pub fn for_agent(bridge: Arc<Bridge>, agent: &str) -> McpHandler {
        McpHandler {
            shared: Arc::new(Shared::new(bridge)),
            caller: Caller::Fixed(agent.into()),
        }
    }

    /// A handler that takes the agent from each HTTP request's [`Agent`] extension.
    pub fn per_request(bridge: Arc<Bridge>) -> McpHandler {
        McpHandler {
            shared: Arc::new(Shared::new(bridge)),
            caller: Caller::PerRequest,
        }
    }

    /// The tools `agent` may call, as `tools/list` shows them.
    pub fn tools_for(&self, agent: &str) -> Vec<Tool> {
        self.shared
            .permitted(agent)
            .map(|e| e.def.clone())
            .collect()
    }

    /// One `tools/call` as `agent`: `Err` only for a tool name that does not exist.
    pub async fn call(
        &self,
        agent: &str,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let shared = &self.shared;
        let Some(entry) = shared.catalog.get(name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{name}`; tools/list names the tools you may call"),
                None,
            ));
        };
        let arguments = Value::Object(arguments.unwrap_or_default());
        Ok(match shared.call(agent, entry, arguments).await {
            Ok(value) => success(value),
            Err(e) => CallToolResult::structured_error(e.to_json()),
        })
    }

    fn agent(&self, context: &RequestContext<RoleServer>) -> Result<Arc<str>, ErrorData> {
        match &self.caller {
            Caller::Fixed(agent) => Ok(agent.clone()),
            Caller::PerRequest => context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Agent>())
                .map(|a| a.0.clone())
                // Unreachable when mounted through `http::router`, which authenticates first;
                // refusing is the safe answer if it is mounted without it.
                .ok_or_else(|| {
                    ErrorData::internal_error(
                        "request reached the MCP handler unauthenticated",
                        None,
                    )
                }),
        }
    }
}

/// A successful result: the JSON as text, and as `structuredContent` when it is an object
/// (what MCP allows there); tool results of this host always are.
fn success(value: Value) -> CallToolResult {
    if value.is_object() {
        CallToolResult::structured(value)
    } else {
        CallToolResult::success(vec![rmcp::model::ContentBlock::text(value.to_string())])
    }
}

impl Shared {
    fn new(bridge: Arc<Bridge>) -> Shared {
        let (catalog, _skipped) = Catalog::build(&bridge);
        let mut instructions = String::from(
            "Tools of the backlog-bridge host. Each tool is one action of a sandboxed tool \
             plugin; you see only the actions your agent may call. Errors come back as \
             {\"error\",\"code\"} objects with isError set.",
        );
        let mut seen = Vec::new();
        for a in bridge.manifest() {
            if !seen.contains(&a.tool) {
                seen.push(a.tool);
                instructions.push_str(&format!("\n\n{}: {}", a.tool, a.tool_description));
            }
        }
        Shared {
            bridge,
            catalog,
            instructions,
        }
    }

    fn permitted<'a>(&'a self, agent: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.catalog.entries().filter(move |e| {
            self.bridge
                .matrix
                .authorize(agent, &e.tool, &e.action)
                .is_ok()
        })
    }

    async fn call(&self, agent: &str, entry: &Entry, arguments: Value) -> Result<Value, ToolError> {
        let started = Instant::now();
        let checked = self.precheck(agent, entry, &arguments);
        let params = match checked {
            Ok(params) => params,
            Err(e) => {
                // Refused before `Bridge::call`, which would have logged it: log it here so
                // every refused call leaves the same trace.
                tracing::info!(
                    agent,
                    tool = entry.tool,
                    action = entry.action,
                    outcome = e.code.as_str(),
                    duration_us = started.elapsed().as_micros() as u64,
                    via = "mcp",
                    "tool call refused: {}",
                    e.message
                );
                return Err(e);
            }
        };
        let bridge = self.bridge.clone();
        let (agent, tool, action) = (agent.to_owned(), entry.tool.clone(), entry.action.clone());
        // Guest calls block (wasmtime sync bindings, file locks, fsync): keep them off the
        // async workers.
        tokio::task::spawn_blocking(move || {
            bridge.call(&CallRequest {
                agent: &agent,
                tool: &tool,
                action: &action,
                params: &params,
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(ToolError::new(
                Code::Internal,
                format!("the call did not finish: {e}"),
            ))
        })
    }

    /// The checks that run before the bridge: RBAC, size, schema. Returns the params text.
    fn precheck(&self, agent: &str, entry: &Entry, arguments: &Value) -> Result<String, ToolError> {
        self.bridge
            .matrix
            .authorize(agent, &entry.tool, &entry.action)
            .map_err(|d| ToolError::new(Code::Forbidden, d.to_string()))?;
        let params = arguments.to_string();
        if params.len() > MAX_PARAMS_BYTES {
            return Err(ToolError::new(
                Code::PayloadTooLarge,
                format!(
                    "arguments are {} bytes; the limit is {MAX_PARAMS_BYTES}",
                    params.len()
                ),
            ));
        }
        entry.check(arguments)?;
        Ok(params)
    }
}

impl rmcp::ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("backlog-bridge", env!("CARGO_PKG_VERSION"))
                    .with_title("Engineering Backlog Bridge"),
            )
            .with_instructions(self.shared.instructions.clone())
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + MaybeSendFuture + '_ {
        let result = self.agent(&context).map(|agent| {
            // The list depends on who asks: no shared caches.
            ListToolsResult::with_all_items(self.tools_for(&agent))
                .with_cache_scope(CacheScope::Private)
        });
        std::future::ready(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let agent = self.agent(&context)?;
        self.call(&agent, &request.name, request.arguments)
            .await
            .map(CallToolResponse::from)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.catalog.get(name).map(|e| e.def.clone())
    }
}
