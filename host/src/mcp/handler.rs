//! The MCP request handler: `tools/list` filtered per caller, `tools/call` through the call
//! pipeline (`crate::call`). One handler serves both transports; only where the caller's
//! agent id comes from differs ([`Caller`]).
//!
//! A call runs the checks (see `docs/actions.md`) in order, all before the guest: the tool
//! exists (an unknown name is a JSON-RPC invalid-params error, not a tool result) → the
//! pipeline's [`authorize`] (`forbidden`) → [`Params`] (`payload_too_large`) → the action's
//! params schema (`invalid_input`) → the [`CallRunner`] with the pipeline's token. Every
//! failure after the name is a tool result with `isError` and the error object as text and
//! `structuredContent`.
//!
//! Must not: decide grants, or block the async runtime (guest calls run on the blocking pool).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, Peer, RequestContext, RoleServer};
use serde_json::{Map, Value};

use super::catalog::{Catalog, Entry};
use crate::call::{Answer, Authorized, Meta, Params, authorize_as, new_request_id};
use crate::error::{Code, ToolError};
use crate::logging::truncate;
use crate::registry::Bridge;

/// One checked call, for a [`CallRunner`]: the pipeline's token, the params, the request id.
pub struct CallSpec {
    pub call: Authorized<Arc<Bridge>>,
    pub params: Params,
    pub meta: Meta,
}

/// The future a [`CallRunner`] returns.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Answer, ToolError>> + Send>>;

/// Runs a call the handler has checked. stdio: [`McpHandler::plain_runner`] (the blocking
/// pool); HTTP: the pipeline's `Gate` of the router, so MCP calls share its admission limit,
/// workers, metrics and shutdown drain.
pub type CallRunner = Arc<dyn Fn(CallSpec) -> CallFuture + Send + Sync>;

/// The request id the router's access log gave an HTTP request, so the call's log line and
/// the access log line carry the same one.
pub use crate::call::RequestId;

/// Bytes of a client's name, title or version that the peer log line keeps.
const PEER_FIELD_LOG_BYTES: usize = 64;

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
    runner: CallRunner,
}

/// The MCP server over one [`Bridge`], or over the bridge in force of a `serve` that reloads
/// (the HTTP face: [`McpHandler::reloaded`]). Cheap to clone (the HTTP transport makes one
/// per session).
#[derive(Clone)]
pub struct McpHandler {
    state: Arc<State>,
    caller: Caller,
}

/// What every clone of a handler shares.
struct State {
    /// The catalog of the bridge in force, swapped whole by a reload.
    shared: RwLock<Arc<Shared>>,
    runner: CallRunner,
    /// The HTTP sessions' peers and their agents, told when their tool list changes.
    peers: Mutex<Vec<(Arc<str>, Peer<RoleServer>)>>,
}

impl State {
    fn new(shared: Shared) -> Arc<State> {
        Arc::new(State {
            runner: shared.runner.clone(),
            shared: RwLock::new(Arc::new(shared)),
            peers: Mutex::default(),
        })
    }
}

impl McpHandler {
    /// A handler that acts as `agent` for every request (the stdio server), running calls
    /// with [`McpHandler::plain_runner`].
    pub fn for_agent(bridge: Arc<Bridge>, agent: &str) -> McpHandler {
        let runner = Self::plain_runner();
        McpHandler {
            state: State::new(Shared::new(bridge, runner)),
            caller: Caller::Fixed(agent.into()),
        }
    }

    /// A handler that takes the agent from each HTTP request's [`Agent`] extension and runs
    /// calls with `runner`.
    pub fn per_request(bridge: Arc<Bridge>, runner: CallRunner) -> McpHandler {
        McpHandler {
            state: State::new(Shared::new(bridge, runner)),
            caller: Caller::PerRequest,
        }
    }

    fn shared(&self) -> Arc<Shared> {
        self.state
            .shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a reload swapped `bridge` in: serves its catalog from now on and sends
    /// `notifications/tools/list_changed` to each open session whose agent's tool list
    /// changed (on the session's standalone stream, `GET /mcp`). Closed sessions are dropped.
    /// The notifications are sent on `runtime` (none: not sent).
    pub fn reloaded(&self, bridge: Arc<Bridge>, runtime: Option<&tokio::runtime::Handle>) {
        let new = Arc::new(Shared::new(bridge, self.state.runner.clone()));
        let old = std::mem::replace(
            &mut *self.state.shared.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        let mut peers = self.state.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|(_, peer)| !peer.is_transport_closed());
        let Some(runtime) = runtime else {
            return;
        };
        let mut lists: std::collections::HashMap<Arc<str>, bool> = Default::default();
        for (agent, peer) in peers.iter() {
            let changed = *lists.entry(agent.clone()).or_insert_with(|| {
                let names = |s: &Shared| -> Vec<Value> {
                    s.permitted(agent)
                        .map(|e| serde_json::to_value(&e.def).unwrap_or_default())
                        .collect()
                };
                names(&old) != names(&new)
            });
            if changed {
                let peer = peer.clone();
                runtime.spawn(async move {
                    if let Err(e) = peer.notify_tool_list_changed().await {
                        tracing::debug!("mcp: cannot send tools/list_changed: {e}");
                    }
                });
            }
        }
    }

    /// Runs each call on tokio's blocking pool (guest calls block: wasmtime sync bindings,
    /// file locks, fsync).
    pub fn plain_runner() -> CallRunner {
        Arc::new(move |spec: CallSpec| {
            Box::pin(async move {
                tokio::task::spawn_blocking(move || spec.call.run(spec.params, spec.meta))
                    .await
                    .unwrap_or_else(|e| {
                        Err(ToolError::new(
                            Code::Internal,
                            format!("the call did not finish: {e}"),
                        ))
                    })
            })
        })
    }

    /// The catalog entry (tool, action) of an MCP tool name, for logs.
    pub fn tool_action(&self, name: &str) -> Option<(String, String)> {
        self.shared()
            .catalog
            .get(name)
            .map(|e| (e.tool.clone(), e.action.clone()))
    }

    /// The tools `agent` may call, as `tools/list` shows them.
    pub fn tools_for(&self, agent: &str) -> Vec<Tool> {
        self.shared()
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
        self.call_with_id(&agent.into(), name, arguments, new_request_id())
            .await
    }

    /// [`McpHandler::call`] under a given request id.
    pub async fn call_with_id(
        &self,
        agent: &Arc<str>,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
        request_id: String,
    ) -> Result<CallToolResult, ErrorData> {
        // One catalog, and the one bridge under it, for the whole call.
        let shared = self.shared();
        let Some(entry) = shared.catalog.get(name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{name}`; tools/list names the tools you may call"),
                None,
            ));
        };
        let arguments = arguments.unwrap_or_default();
        Ok(
            match shared.call(agent, entry, arguments, request_id).await {
                Ok(answer) => success(answer.to_value()),
                Err(e) => CallToolResult::structured_error(e.to_json()),
            },
        )
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
    fn new(bridge: Arc<Bridge>, runner: CallRunner) -> Shared {
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
            runner,
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

    async fn call(
        &self,
        agent: &Arc<str>,
        entry: &Entry,
        arguments: Map<String, Value>,
        request_id: String,
    ) -> Result<Answer, ToolError> {
        let started = Instant::now();
        let arguments = Value::Object(arguments);
        let meta = Meta {
            face: crate::audit::Face::Mcp,
            ..Meta::with_id(request_id.clone())
        };
        let call = match authorize_as(
            self.bridge.clone(),
            agent,
            &entry.tool,
            &entry.action,
            &meta,
        ) {
            Ok(call) => call,
            Err(e) => {
                // Refused before the guest: logged so every refused call leaves a trace.
                crate::call::log_refused(
                    agent,
                    &entry.tool,
                    &entry.action,
                    &request_id,
                    started,
                    &e,
                    "mcp",
                );
                return Err(e);
            }
        };
        // Authorized, then refused by its params schema: an audit line like any call.
        let checked = Params::from_value(&arguments).and_then(|params| {
            entry.check(&arguments)?;
            Ok(params)
        });
        let params = match checked {
            Ok(params) => params,
            Err(e) => return Err(call.refused(e, &meta, started)),
        };
        (self.runner)(CallSpec { call, params, meta }).await
    }
}

impl rmcp::ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("backlog-bridge", env!("CARGO_PKG_VERSION"))
                .with_title("Engineering Backlog Bridge"),
        )
        .with_instructions(self.shared().instructions.clone())
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
        let request_id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<RequestId>())
            .map_or_else(new_request_id, |r| r.0.clone());
        self.call_with_id(&agent, &request.name, request.arguments, request_id)
            .await
            .map(CallToolResponse::from)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        // rmcp would log the whole peer document; this is the bounded view of it.
        let info = &request.client_info;
        tracing::info!(
            agent = self.agent(&context).as_deref().unwrap_or(""),
            client = &*truncate(&info.name, PEER_FIELD_LOG_BYTES),
            client_version = &*truncate(&info.version, PEER_FIELD_LOG_BYTES),
            protocol = &*truncate(&request.protocol_version.to_string(), PEER_FIELD_LOG_BYTES),
            "mcp: client initialized"
        );
        context.peer.set_peer_info(request.clone());
        // An HTTP session learns of reloads that change its tool list.
        if let (Caller::PerRequest, Ok(agent)) = (&self.caller, self.agent(&context)) {
            let mut peers = self.state.peers.lock().unwrap_or_else(|p| p.into_inner());
            // Closed sessions leave here, so the list is bounded by the open ones.
            peers.retain(|(_, peer)| !peer.is_transport_closed());
            peers.push((agent, context.peer.clone()));
        }
        self.negotiate_initialize(&request)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared().catalog.get(name).map(|e| e.def.clone())
    }
}
