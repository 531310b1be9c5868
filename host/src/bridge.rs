//! The call path every entry point (CLI, HTTP, MCP, scheduler) shares:
//! tool and action exist (404) → entitlements (403) → grants → per-directory write lock →
//! sandboxed guest call → result or error object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::caps::pg::{self, Dsn, Postgres};
use crate::config::plugins::{self, ComponentSource, PluginEntry};
use crate::config::policy::{self, LoadedPolicy};
use crate::config::rbac::{ActionRule, Matrix};
use crate::error::{Code, ToolError};
use crate::grants::{Access, Grants, grants_for};
use crate::lock::DirLock;
use crate::runtime::cache::{self, Origin};
use crate::runtime::plugin::{ActionInfo, CallOutcome, Invocation};
use crate::runtime::sandbox::{BACKLOG_DIR, REPORTS_DIR, Resources};
use crate::runtime::{Plugin, Runtime};

/// Components built into the binary, by the name `component: builtin` resolves.
const BUILTINS: &[(&str, &[u8])] = &[("backlog_tool", include_bytes!(env!("BACKLOG_TOOL_WASM")))];

/// Largest params document accepted (`docs/http-api.md`).
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

/// Default wall-clock limit of a call whose action sets no `timeout_s` (`docs/configuration.md`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store backend (`BACKLOG_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Postgres,
    Jsonl,
    Memory,
    Null,
}

impl Backend {
    /// Parses `BACKLOG_BACKEND`.
    pub fn parse(s: &str) -> anyhow::Result<Backend> {
        Ok(match s {
            "" | "auto" => Backend::Auto,
            "jsonl" => Backend::Jsonl,
            "memory" => Backend::Memory,
            "null" => Backend::Null,
            "postgres" => Backend::Postgres,
            other => {
                bail!("BACKLOG_BACKEND={other:?}: expected auto, postgres, jsonl, memory or null")
            }
        })
    }

    /// The name guests are told and report as `backend`.
    fn guest_name(self) -> &'static str {
        match self {
            Backend::Auto | Backend::Jsonl => "jsonl",
            Backend::Postgres => "postgres",
            Backend::Memory => "memory",
            Backend::Null => "null",
        }
    }
}

/// Validated settings: flags merged with the environment, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub ops_dir: PathBuf,
    pub backend: Backend,
    /// `BACKLOG_JSONL_DIR`, else `<ops-dir>/backlog`.
    pub jsonl_dir: PathBuf,
    /// `<ops-dir>/reports`.
    pub reports_dir: PathBuf,
    /// Compiled-component cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// `BACKLOG_BRIDGE_NOW`: the clock guests see, pinned.
    pub now: Option<DateTime<Utc>>,
    /// `BACKLOG_BRIDGE_NOW_FILE`: a file whose first line (RFC 3339) is the clock, read at each
    /// look — a pinned clock that drills move forward for several processes at once. Wins
    /// over `now` while it holds a time.
    pub now_file: Option<PathBuf>,
    /// `BACKLOG_POSTGRES_DSN`, else `POSTGRES_DSN` (prints redacted).
    pub postgres_dsn: Option<Dsn>,
    /// `BACKLOG_PG_RETRY_SECONDS` (default 300): how long `auto` stays on JSONL after
    /// Postgres failed before it tries again.
    pub pg_retry_seconds: u64,
}

impl Settings {
    /// Reads the environment variables (see `docs/storage.md`, `docs/configuration.md`, `docs/cli.md`) over the given directories.
    pub fn from_env(config_dir: PathBuf, ops_dir: PathBuf) -> anyhow::Result<Settings> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let backend = Backend::parse(var("BACKLOG_BACKEND").as_deref().unwrap_or("auto"))?;
        let jsonl_dir = var("BACKLOG_JSONL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| ops_dir.join("backlog"));
        let now = match var("BACKLOG_BRIDGE_NOW") {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("BACKLOG_BRIDGE_NOW={s:?} is not an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Settings {
            postgres_dsn: Dsn::resolve(None, var),
            pg_retry_seconds: match var("BACKLOG_PG_RETRY_SECONDS") {
                None => 300,
                Some(s) => s.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("BACKLOG_PG_RETRY_SECONDS={s:?} is not a positive number of seconds")
                })?,
            },
            reports_dir: ops_dir.join("reports"),
            config_dir,
            ops_dir,
            backend,
            jsonl_dir,
            cache_dir: cache::default_dir(),
            now,
            now_file: var("BACKLOG_BRIDGE_NOW_FILE").map(PathBuf::from),
        })
    }
}

/// For `serve` on the `auto` backend: a thread that runs [`Bridge::recover_store`] every
/// retry interval until `stop` (checked every second), so that a quiet router replays its
/// outage journal and returns to Postgres by itself. `None` on other backends.
pub fn spawn_store_recovery(
    bridge: Arc<Bridge>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if bridge.settings.backend != Backend::Auto || bridge.resources.postgres.is_none() {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("store-recovery".into())
        .spawn(move || {
            let interval = Duration::from_secs(bridge.settings.pg_retry_seconds.max(1));
            let mut next = Instant::now() + interval;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                if now >= next {
                    bridge.recover_store();
                    next = now + interval;
                }
                std::thread::sleep((next - now.min(next)).min(Duration::from_secs(1)));
            }
        })
        .map(Some)
}

/// The actor of the host's own store-recovery calls (see [`Bridge::recover_store`]).
pub const RECOVERY_AGENT: &str = "backlog-bridge";

/// Store-recovery calls in one go at most (each replays one batch of the journal).
const RECOVERY_CALLS: usize = 32;

/// The `not_found` message of a call to a tool the RBAC matrix lists but no plugin provides.
/// The scheduler's invokers recognise it (also in a router's answer) and record the run
/// `skipped`, whatever the transport.
pub fn not_installed_message(tool: &str) -> String {
    format!("tool `{tool}` is not installed (listed in the RBAC matrix, but no plugin provides it)")
}

/// The store as `/readyz` reports it (`docs/http-api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store that answers now: `postgres`, `jsonl`, `memory` or `null`.
    pub backend: &'static str,
    /// `auto` fell back to JSONL (Postgres down or without the current schema), or the
    /// `postgres` backend cannot reach its server.
    pub degraded: bool,
    /// Writes journaled during an outage, not yet replayed into Postgres.
    pub pending_replay: usize,
    /// Whether a write would be accepted (false: `null`, or `postgres` down).
    pub writable: bool,
    /// When the Postgres state above is the last known one rather than asked now (the pool
    /// found the server down moments ago and does not wait on it again): how old it is.
    pub postgres_age: Option<Duration>,
}

/// One tool call as an entry point received it, after authentication.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    /// The authenticated (or locally trusted) agent id.
    pub agent: &'a str,
    pub tool: &'a str,
    pub action: &'a str,
    /// The params object, as JSON text.
    pub params: &'a str,
}

struct Loaded {
    entry: PluginEntry,
    plugin: Plugin,
}

/// One action that an installed plugin provides and the RBAC matrix lists (so someone may
/// call it): what the MCP face turns into a tool.
#[derive(Debug, Clone, Copy)]
pub struct ManifestAction<'a> {
    /// The registered tool name (what [`CallRequest::tool`] takes).
    pub tool: &'a str,
    /// The tool's own description, from `describe()`.
    pub tool_description: &'a str,
    /// The action as `describe()` reports it: name, description, params schema.
    pub action: &'a ActionInfo,
    /// The grants every call of this action gets (they follow the action, not the caller).
    pub grants: Grants,
}

/// The host: configuration, the engine, and the loaded plugins.
pub struct Bridge {
    pub settings: Settings,
    pub matrix: Matrix,
    pub policy: LoadedPolicy,
    runtime: Runtime,
    plugins: BTreeMap<String, Loaded>,
    resources: Resources,
    /// Keeps the `memory` backend's directory alive as long as the process.
    _memory_dir: Option<tempfile::TempDir>,
}

impl Bridge {
    /// Loads config and plugins (compiling or taking each component from the cache).
    pub fn load(settings: Settings) -> anyhow::Result<Bridge> {
        let matrix = Matrix::load(&settings.config_dir)?;
        let policy = policy::load(&settings.config_dir)?;
        let entries = plugins::load(&settings.config_dir)?;
        let runtime = Runtime::new()?;
        let mut plugins = BTreeMap::new();
        for (name, entry) in entries {
            let plugin = load_plugin(&runtime, &settings, &name, &entry)?;
            plugins.insert(name, Loaded { entry, plugin });
        }
        let (backlog, memory_dir) = match settings.backend {
            Backend::Null | Backend::Postgres => (None, None),
            Backend::Memory => {
                let dir = tempfile::Builder::new()
                    .prefix("backlog-memory-")
                    .tempdir()?;
                (Some(dir.path().to_owned()), Some(dir))
            }
            Backend::Auto | Backend::Jsonl => (Some(settings.jsonl_dir.clone()), None),
        };
        let postgres = match (settings.backend, &settings.postgres_dsn) {
            (Backend::Postgres | Backend::Auto, Some(dsn)) => {
                tracing::debug!(dsn = %dsn, "postgres: configured");
                Some(Arc::new(
                    Postgres::new(
                        dsn.clone(),
                        pg::Limits::from_env(|k| std::env::var(k).ok())
                            .map_err(anyhow::Error::msg)?,
                    )
                    .context("the Postgres backend")?,
                ))
            }
            (Backend::Postgres, None) => bail!(
                "BACKLOG_BACKEND=postgres needs a DSN: set BACKLOG_POSTGRES_DSN (or POSTGRES_DSN)"
            ),
            _ => None,
        };
        match settings.backend {
            Backend::Postgres => tracing::info!("backlog_store: using PostgresBacklogStore"),
            // With a DSN, the guest's auto store logs each switch itself (on the first call
            // and whenever Postgres goes away or comes back).
            Backend::Auto if postgres.is_some() => {}
            Backend::Auto => {
                tracing::info!("backlog_store: using JsonlBacklogStore");
                tracing::info!(
                    "backlog_store: auto without BACKLOG_POSTGRES_DSN or POSTGRES_DSN: JSONL only"
                );
            }
            Backend::Jsonl => tracing::info!("backlog_store: using JsonlBacklogStore"),
            Backend::Memory => tracing::info!("backlog_store: using MemoryBacklogStore"),
            Backend::Null => tracing::info!("backlog_store: using NullBacklogStore"),
        }
        let reports = Some(settings.reports_dir.clone());
        Ok(Bridge {
            settings,
            matrix,
            policy,
            runtime,
            plugins,
            resources: Resources {
                backlog,
                reports,
                postgres,
            },
            _memory_dir: memory_dir,
        })
    }

    /// The `/v1/tools` document for `agent`: only the actions it may call.
    pub fn tools_for(&self, agent: Option<&str>) -> Value {
        let tools: Vec<Value> = self
            .plugins
            .iter()
            .filter_map(|(name, l)| {
                let actions: Vec<Value> = l
                    .plugin
                    .info
                    .actions
                    .iter()
                    .filter_map(|a| {
                        let rule = self.matrix.action(name, &a.name);
                        if let Some(agent) = agent {
                            self.matrix.authorize(agent, name, &a.name).ok()?;
                        }
                        Some(json!({
                            "name": a.name,
                            "description": a.description,
                            "entitlements": rule.map(|r| r.entitlements.clone()).unwrap_or_default(),
                            "params_schema": a.params_schema,
                        }))
                    })
                    .collect();
                (!actions.is_empty() || agent.is_none()).then(|| {
                    json!({"name": name, "description": l.plugin.info.description, "actions": actions})
                })
            })
            .collect();
        json!({ "tools": tools })
    }

    /// Every action of the installed plugins that the RBAC matrix lists, in tool then
    /// `describe()` order. Unlisted actions are left out: nobody may call them.
    pub fn manifest(&self) -> impl Iterator<Item = ManifestAction<'_>> {
        self.plugins.iter().flat_map(move |(name, l)| {
            l.plugin.info.actions.iter().filter_map(move |a| {
                let rule = self.matrix.action(name, &a.name)?;
                Some(ManifestAction {
                    tool: name,
                    tool_description: &l.plugin.info.description,
                    action: a,
                    grants: grants_for(l.entry.may_use, &l.entry.grants, &rule.entitlements),
                })
            })
        })
    }

    /// Runs one tool call through the whole path; logs the outcome.
    pub fn call(&self, req: &CallRequest) -> Result<Value, ToolError> {
        self.call_with(req, &new_request_id(), None)
    }

    /// [`Bridge::call`] for the host's own bookkeeping (the overdue gauges a `/metrics` scrape
    /// refreshes): its `tool call` line is debug, not info, so scrapes add no log noise.
    pub fn call_internal(&self, req: &CallRequest) -> Result<Value, ToolError> {
        let started = Instant::now();
        let request_id = new_request_id();
        let result = self.call_inner(req, &request_id, None);
        tracing::debug!(
            request_id,
            agent = req.agent,
            tool = req.tool,
            action = req.action,
            outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.code.as_str(),
            },
            duration_us = started.elapsed().as_micros() as u64,
            "tool call"
        );
        result
    }

    /// [`Bridge::call`] with the clock the guest sees pinned to `now` (the scheduler's drills
    /// run each job at its scheduled minute); `None`: the bridge's clock.
    pub fn call_at(
        &self,
        req: &CallRequest,
        now: Option<DateTime<Utc>>,
    ) -> Result<Value, ToolError> {
        self.call_with(req, &new_request_id(), now)
    }

    /// [`Bridge::call`] under a request id the entry point chose (the router's, so that its
    /// access log, this call's log line and the guest's context carry the same id).
    pub fn call_with_id(&self, req: &CallRequest, request_id: &str) -> Result<Value, ToolError> {
        self.call_with(req, request_id, None)
    }

    fn call_with(
        &self,
        req: &CallRequest,
        request_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> Result<Value, ToolError> {
        let started = Instant::now();
        let result = self.call_inner(req, request_id, now);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        tracing::info!(
            request_id,
            agent = req.agent,
            tool = req.tool,
            action = req.action,
            outcome,
            duration_us = started.elapsed().as_micros() as u64,
            "tool call"
        );
        result
    }

    /// The checks that run before any params are looked at, in the order (see `docs/actions.md`): the tool
    /// and action exist (404), then `agent` holds every entitlement the action requires (403).
    pub fn authorize(&self, agent: &str, tool: &str, action: &str) -> Result<(), ToolError> {
        self.authorized(agent, tool, action).map(|_| ())
    }

    fn authorized(
        &self,
        agent: &str,
        tool: &str,
        action: &str,
    ) -> Result<(&Loaded, &ActionRule), ToolError> {
        let loaded = self.plugins.get(tool).ok_or_else(|| {
            let message = if self.matrix.knows_tool(tool) {
                not_installed_message(tool)
            } else {
                format!("tool `{tool}` does not exist")
            };
            ToolError::new(Code::NotFound, message)
        })?;
        let info = &loaded.plugin.info;
        if info.action(action).is_none() {
            let known: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
            return Err(ToolError::new(
                Code::NotFound,
                format!(
                    "tool `{tool}` has no action `{action}` (actions: {})",
                    known.join(", ")
                ),
            ));
        }
        let rule = self
            .matrix
            .authorize(agent, tool, action)
            .map_err(|d| ToolError::new(Code::Forbidden, d.to_string()))?;
        Ok((loaded, rule))
    }

    fn call_inner(
        &self,
        req: &CallRequest,
        request_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> Result<Value, ToolError> {
        let (loaded, rule) = self.authorized(req.agent, req.tool, req.action)?;
        if req.params.len() > MAX_PARAMS_BYTES {
            return Err(ToolError::new(
                Code::PayloadTooLarge,
                format!(
                    "params are {} bytes; the limit is {MAX_PARAMS_BYTES}",
                    req.params.len()
                ),
            ));
        }
        let grants = grants_for(
            loaded.entry.may_use,
            &loaded.entry.grants,
            &rule.entitlements,
        );
        let timeout = rule
            .timeout_s
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        if !(grants.backlog_dir == Access::ReadWrite && grants.postgres == Access::ReadWrite) {
            // A call that cannot replay an outage journal itself: the host does it first.
            self.recover_store();
        }
        self.run_guest(loaded, grants, timeout, req, request_id, now)
    }

    /// Runs `req` in `loaded` with `grants` (already decided) and returns the result.
    fn run_guest(
        &self,
        loaded: &Loaded,
        mut grants: Grants,
        timeout: Duration,
        req: &CallRequest,
        request_id: &str,
        now: Option<DateTime<Utc>>,
    ) -> Result<Value, ToolError> {
        if self.resources.backlog.is_none() {
            grants.backlog_dir = Access::None;
        }
        if self.resources.postgres.is_none() {
            grants.postgres = Access::None;
        }
        let _lock = match (grants.backlog_dir, &self.resources.backlog) {
            (Access::None, _) | (_, None) => None,
            (access, Some(dir)) => {
                ensure_dir(dir)?;
                (access == Access::ReadWrite)
                    .then(|| DirLock::acquire(dir))
                    .transpose()
                    .map_err(|e| host_fs_error("cannot lock the store directory", &e))?
            }
        };
        if grants.reports_dir != Access::None
            && std::fs::create_dir_all(&self.settings.reports_dir).is_err()
        {
            grants.reports_dir = Access::None;
        }
        let context = crate::runtime::plugin::context(
            req.agent,
            request_id,
            &now.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                .unwrap_or_else(|| self.now()),
            &self.guest_config(grants, req.agent),
        );
        let invocation = Invocation {
            grants,
            resources: &self.resources,
            timeout,
            action: req.action,
            params: req.params,
            context: &context,
        };
        let (result, outcome) = loaded.plugin.call(&self.runtime, &invocation);
        log_stderr(&loaded.plugin.name, request_id, &outcome);
        let json = result.map_err(|e| self.name_store_dir(e, grants))?;
        if _lock.is_some() {
            self.durable()?;
        }
        serde_json::from_str(&json).map_err(|e| {
            ToolError::new(
                Code::Internal,
                format!("plugin `{}` returned invalid JSON: {e}", loaded.plugin.name),
            )
        })
    }

    /// The `auto` backend coming back from an outage: once the retry time has passed and the
    /// outage journal waits to be replayed (or the last replay to be confirmed), runs
    /// write-capable maintenance calls of the builtin `backlog_tool` (a one-item `list` with
    /// read-write grants, as agent [`RECOVERY_AGENT`]) whose store replays the journal in
    /// batches and switches back to Postgres. A read-only call cannot replay (its grants do
    /// not allow writing), so without this reads would answer from JSONL until some write
    /// came. Called before every call that cannot replay itself, and by `serve`'s background
    /// task every retry interval. Failures are logged, never returned: the caller's call goes
    /// on (and, Postgres still down, finds it marked down again).
    pub fn recover_store(&self) {
        let (Backend::Auto, Some(dir), Some(_)) = (
            self.settings.backend,
            &self.resources.backlog,
            &self.resources.postgres,
        ) else {
            return;
        };
        let Some(loaded) = self.plugins.get("backlog_tool") else {
            return;
        };
        let mut due = backlog_store::auto_recovery_due(dir, &self.now());
        // Each call replays at most one batch; a long journal takes several.
        for _ in 0..RECOVERY_CALLS {
            if !due {
                break;
            }
            // What a write call of the plugin gets at most: its `may_use`.
            let grants = Grants {
                backlog_dir: Access::ReadWrite.min(loaded.entry.may_use.backlog_dir),
                reports_dir: Access::None,
                postgres: Access::ReadWrite.min(loaded.entry.may_use.postgres),
            };
            let req = CallRequest {
                agent: RECOVERY_AGENT,
                tool: "backlog_tool",
                action: "list",
                params: r#"{"limit":1}"#,
            };
            let request_id = new_request_id();
            if let Err(e) = self.run_guest(loaded, grants, DEFAULT_TIMEOUT, &req, &request_id, None)
            {
                tracing::warn!(request_id, "backlog_store: recovery call failed: {e}");
                return;
            }
            // Still due: more batches. Postgres down again: not due until the next retry time.
            due = backlog_store::auto_recovery_due(dir, &self.now());
        }
    }

    /// Makes what a write-capable call appended durable before it is acknowledged: both
    /// files fdatasync'd in parallel, still under the directory lock. (Guests are told
    /// `"sync":"host"` and skip their own syncs; the `memory` backend needs none.)
    fn durable(&self) -> Result<(), ToolError> {
        let (Backend::Auto | Backend::Jsonl, Some(dir)) =
            (self.settings.backend, &self.resources.backlog)
        else {
            return Ok(());
        };
        let sync = |name: &str| match crate::lock::open_nofollow(
            std::fs::OpenOptions::new().read(true),
            &dir.join(name),
        ) {
            Ok(f) => f.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        let (items, events) = std::thread::scope(|s| {
            let events = s.spawn(|| sync("events.jsonl"));
            (sync("items.jsonl"), events.join())
        });
        let events = events.unwrap_or_else(|_| Err(std::io::Error::other("sync thread panicked")));
        items.and(events).map_err(|e| match host_fs_fix(&e) {
            Some(_) => host_fs_error("the write could not be made durable", &e),
            None => ToolError::new(
                Code::Internal,
                format!("the write could not be made durable: {e}"),
            ),
        })
    }

    /// A guest's host-filesystem failure (`unavailable`, "… in the store directory: …") with
    /// the directory's host path filled in: the guest knows only its guest path.
    fn name_store_dir(&self, mut e: ToolError, grants: Grants) -> ToolError {
        const PHRASE: &str = " in the store directory: ";
        if let (Code::Unavailable, Some(dir), false) = (
            e.code,
            &self.resources.backlog,
            grants.backlog_dir == Access::None,
        ) && e.message.contains(PHRASE)
        {
            e.message = e.message.replacen(
                PHRASE,
                &format!(" in the store directory {}: ", dir.display()),
                1,
            );
        }
        e
    }

    fn now(&self) -> String {
        self.clock().to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// The clock guests and the scheduler see: the time in `BACKLOG_BRIDGE_NOW_FILE`, else
    /// `BACKLOG_BRIDGE_NOW` when pinned, else the wall clock.
    pub fn clock(&self) -> DateTime<Utc> {
        let from_file = self.settings.now_file.as_ref().and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            DateTime::parse_from_rfc3339(text.lines().next()?.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc))
        });
        from_file.or(self.settings.now).unwrap_or_else(Utc::now)
    }

    /// Whether some loaded plugin provides `tool`.
    pub fn provides(&self, tool: &str) -> bool {
        self.plugins.contains_key(tool)
    }

    /// The engine and linker (the scheduler loads its runner component on the same engine).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The shared Postgres pool, when a Postgres backend is configured (the scheduler keeps
    /// its run table through it).
    pub fn postgres_pool(&self) -> Option<Arc<Postgres>> {
        self.resources.postgres.clone()
    }

    /// Which store answers and whether writes would succeed, for `/readyz` and `/metrics`.
    /// May talk to Postgres (one probe statement): call it off the async runtime.
    pub fn store_status(&self) -> StoreStatus {
        let jsonl = |degraded: bool, pending_replay: usize| StoreStatus {
            backend: "jsonl",
            degraded,
            pending_replay,
            writable: true,
            postgres_age: None,
        };
        // The age of a last known "down" (a fresh answer, or a known "up", has none).
        let age_of = |s: &crate::caps::pg::PgStatus| {
            let down = !(s.reachable && s.schema_current);
            (down && !s.age.is_zero()).then_some(s.age)
        };
        match (
            self.settings.backend,
            self.postgres(),
            &self.resources.backlog,
        ) {
            (Backend::Null, ..) => StoreStatus {
                backend: "null",
                degraded: false,
                pending_replay: 0,
                writable: false,
                postgres_age: None,
            },
            (Backend::Memory, ..) => StoreStatus {
                backend: "memory",
                ..jsonl(false, 0)
            },
            (Backend::Postgres, pg, _) => {
                let status = pg.map(Postgres::status);
                let up = status
                    .as_ref()
                    .is_some_and(|s| s.reachable && s.schema_current);
                StoreStatus {
                    backend: "postgres",
                    degraded: !up,
                    pending_replay: 0,
                    writable: up,
                    postgres_age: status.as_ref().and_then(age_of),
                }
            }
            (Backend::Auto, Some(pg), Some(dir)) => {
                let auto = backlog_store::auto_status(dir, &self.now());
                // Journaled writes not replayed yet: calls answer from JSONL (after the retry
                // time, only until the recovery call the next call or `serve`'s task runs).
                if auto.degraded || auto.pending_replay > 0 {
                    return jsonl(true, auto.pending_replay);
                }
                let s = pg.status();
                if s.reachable && s.schema_current {
                    StoreStatus {
                        backend: "postgres",
                        ..jsonl(false, auto.pending_replay)
                    }
                } else {
                    StoreStatus {
                        postgres_age: age_of(&s),
                        ..jsonl(true, auto.pending_replay)
                    }
                }
            }
            (Backend::Auto | Backend::Jsonl, ..) => jsonl(false, 0),
        }
    }

    /// The Postgres pool, when a Postgres backend is configured (for readiness checks:
    /// [`Postgres::status`]).
    pub fn postgres(&self) -> Option<&Postgres> {
        self.resources.postgres.as_deref()
    }

    /// Settings a guest may know: which store, the guest paths and the Postgres access it was
    /// granted (never the DSN), and the caller's entitlements (data the guest may use to
    /// narrow what it does, e.g. reserved dedupe keys; it can never widen the grants).
    fn guest_config(&self, grants: Grants, agent: &str) -> String {
        let backend = match self.settings.backend {
            Backend::Auto if self.resources.postgres.is_some() => "auto",
            b => b.guest_name(),
        };
        let mut config = json!({ "backend": backend });
        if backend == "auto" {
            config["pg_retry_seconds"] = json!(self.settings.pg_retry_seconds);
        }
        match grants.backlog_dir {
            Access::None => {}
            Access::Read => {
                config["backlog_dir"] = json!(BACKLOG_DIR);
                config["backlog_access"] = json!("read");
            }
            Access::ReadWrite => {
                config["backlog_dir"] = json!(BACKLOG_DIR);
                config["backlog_access"] = json!("read_write");
            }
        }
        if grants.reports_dir != Access::None {
            config["reports_dir"] = json!(REPORTS_DIR);
        }
        match grants.postgres {
            Access::None => {}
            Access::Read => config["postgres"] = json!("read"),
            Access::ReadWrite => config["postgres"] = json!("read_write"),
        }
        if grants.backlog_dir == Access::ReadWrite && self.settings.backend != Backend::Null {
            // The host syncs both files in parallel after the call (see `durable`).
            config["sync"] = json!("host");
        }
        config["policy"] = json!(self.policy.json);
        let entitlements = self
            .matrix
            .agent(agent)
            .map(|a| a.entitlements.clone())
            .unwrap_or_default();
        config["entitlements"] = json!(entitlements);
        config.to_string()
    }
}

fn load_plugin(
    runtime: &Runtime,
    settings: &Settings,
    name: &str,
    entry: &PluginEntry,
) -> anyhow::Result<Plugin> {
    let bytes: std::borrow::Cow<[u8]> = match entry.source(&settings.config_dir) {
        ComponentSource::Builtin => BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| std::borrow::Cow::Borrowed(*b))
            .with_context(|| {
                format!(
                    "{}: plugin `{name}`: no builtin component of that name",
                    plugins::FILE
                )
            })?,
        ComponentSource::File(path) => std::fs::read(&path)
            .with_context(|| format!("plugin `{name}`: cannot read {}", path.display()))?
            .into(),
    };
    let started = Instant::now();
    let (component, origin) =
        cache::load(&runtime.engine, &bytes, settings.cache_dir.as_deref())
            .with_context(|| format!("plugin `{name}`: not a loadable component"))?;
    let how = match origin {
        Origin::Cached => "loaded cached component",
        Origin::Compiled => "compiled component",
    };
    tracing::debug!(
        plugin = name,
        ms = started.elapsed().as_millis() as u64,
        "{how}"
    );
    Plugin::load(runtime, name, &component, entry.memory_limit_mib)
        .with_context(|| format!("plugin `{name}`: cannot describe itself"))
}

/// Loads a component file outside the registry (for `plugins inspect`).
pub fn inspect(settings: &Settings, path: &Path) -> anyhow::Result<crate::runtime::ToolInfo> {
    let runtime = Runtime::new()?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (component, _) = cache::load(&runtime.engine, &bytes, settings.cache_dir.as_deref())
        .with_context(|| format!("{}: not a loadable component", path.display()))?;
    Ok(Plugin::load(&runtime, "inspect", &component, 128)?.info)
}

fn ensure_dir(dir: &Path) -> Result<(), ToolError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let e = std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        host_fs_error("cannot create the store directory", &e)
    })
}

/// What the operator should do about a host filesystem refusal or a full disk; `None` for
/// other errors.
fn host_fs_fix(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => Some(
            "the user the bridge runs as cannot access it: fix the owner or mode of the store directory and its files",
        ),
        ErrorKind::ReadOnlyFilesystem => Some(
            "the filesystem is read-only: remount it read-write or point BACKLOG_JSONL_DIR at a writable directory",
        ),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            Some("no space left: free space on its filesystem (or raise the quota), then retry")
        }
        _ => None,
    }
}

/// A host-side filesystem failure around the store: `unavailable` (the operator must act, the
/// caller may retry later), with the host path (in `e`) and, when known, the fix.
fn host_fs_error(what: &str, e: &std::io::Error) -> ToolError {
    let message = match host_fs_fix(e) {
        Some(fix) => format!("{what}: {e}; {fix}"),
        None => format!("{what}: {e}"),
    };
    ToolError::new(Code::Unavailable, message)
}

fn log_stderr(plugin: &str, request_id: &str, outcome: &CallOutcome) {
    for line in outcome.stderr.lines().filter(|l| !l.trim().is_empty()) {
        // Guests write plain lines; the store's repairs and fallbacks say "warning",
        // "skipping" or "cut", everything else (backend switches) is information.
        if ["warning", "skipping", "cut torn", "error"]
            .iter()
            .any(|w| line.contains(w))
        {
            tracing::warn!(target: "guest", plugin, request_id, "{line}");
        } else {
            tracing::info!(target: "guest", plugin, request_id, "{line}");
        }
    }
}

/// A fresh request id, `req_` and 16 hex digits.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return "req_unknown".into();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("req_{hex}")
}
