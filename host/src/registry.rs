//! The registry of the host: configuration (RBAC matrix, policy, plugin entries), the engine,
//! the loaded plugins with their self-descriptions, and what the store gives calls. Answers
//! "which tools and actions exist, and may this agent call this one" (404/403); running a
//! call is `call.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::backlog::Settings;
use crate::caps::invoker::not_installed_message;
use crate::caps::pg::Postgres;
use crate::config::plugins::{self, ComponentSource, PluginEntry};
use crate::config::policy::{self, LoadedPolicy};
use crate::config::rbac::{ActionRule, Matrix};
use crate::error::{Code, ToolError};
use crate::grants::{Grants, grants_for};
use crate::runtime::cache::{self, Origin};
use crate::runtime::plugin::ActionInfo;
use crate::runtime::sandbox::Resources;
use crate::runtime::{Plugin, Runtime};

/// A plugin and its registry entry.
pub(crate) struct Loaded {
    pub(crate) entry: PluginEntry,
    pub(crate) plugin: Plugin,
    /// The SHA-256 hex of the component's bytes (checked against the entry's pin).
    pub(crate) digest: String,
}

/// One action that an installed plugin provides and the RBAC matrix lists (so someone may
/// call it): what the MCP face turns into a tool.
#[derive(Debug, Clone, Copy)]
pub struct ManifestAction<'a> {
    /// The registered tool name (what [`crate::call::CallRequest::tool`] takes).
    pub tool: &'a str,
    /// The tool's own description, from `describe()`.
    pub tool_description: &'a str,
    /// The action as `describe()` reports it: name, description, params schema.
    pub action: &'a ActionInfo,
    /// The grants every call of this action gets (they follow the action, not the caller).
    pub grants: Grants,
}

/// What the config dir gives a start (and `config check`): the matrix, the policy, and every
/// plugin loaded (digest checked, component compiled) — before any store is opened.
pub struct ConfigParts {
    pub matrix: Matrix,
    pub policy: LoadedPolicy,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) plugins: BTreeMap<String, Arc<Loaded>>,
}

impl ConfigParts {
    /// Reads and validates every file, going on after an error so that all of them are
    /// reported (each names its file and key).
    pub fn load(settings: &Settings) -> Result<ConfigParts, Vec<anyhow::Error>> {
        ConfigParts::load_over(settings, None)
    }

    /// [`ConfigParts::load`] for a reload (`crate::reload`): the engine of `previous` is kept,
    /// and a plugin whose entry and component bytes are unchanged is taken over as it is (no
    /// compilation, no `describe()`), so its compiled code and warm instances survive.
    pub(crate) fn load_over(
        settings: &Settings,
        previous: Option<&Bridge>,
    ) -> Result<ConfigParts, Vec<anyhow::Error>> {
        let mut errors = Vec::new();
        let dir = &settings.config_dir;
        let matrix = Matrix::load(dir).map_err(|e| errors.push(e.into())).ok();
        let policy = policy::load(dir).map_err(|e| errors.push(e.into())).ok();
        let entries = plugins::load(dir).map_err(|e| errors.push(e.into())).ok();
        let runtime = match previous {
            Some(bridge) => Some(bridge.runtime.clone()),
            None => Runtime::new()
                .map(Arc::new)
                .map_err(|e| errors.push(e))
                .ok(),
        };
        // A guest may keep what its instance was given (the policy) beyond one call: a changed
        // policy gives every plugin fresh instances (from the cache, not compiled).
        let same_policy = policy.as_ref().map(|p| &p.json) == previous.map(|b| &b.policy.json);
        let previous = previous.filter(|_| same_policy);
        let mut plugins = BTreeMap::new();
        if let (Some(runtime), Some(entries)) = (&runtime, entries) {
            for (name, entry) in entries {
                let before = previous.and_then(|b| b.plugins.get(&name));
                match load_plugin(runtime, settings, &name, entry, before) {
                    Ok(loaded) => {
                        plugins.insert(name, loaded);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        match (matrix, policy, runtime) {
            (Some(matrix), Some(policy), Some(runtime)) if errors.is_empty() => Ok(ConfigParts {
                matrix,
                policy,
                runtime,
                plugins,
            }),
            _ => Err(errors),
        }
    }

    /// Whether some loaded plugin provides `tool`.
    pub fn provides(&self, tool: &str) -> bool {
        self.plugins.contains_key(tool)
    }

    /// Each loaded plugin's component digest (`sha256:<hex>`), by tool name.
    pub fn digests(&self) -> impl Iterator<Item = (&str, String)> {
        self.plugins
            .iter()
            .map(|(name, l)| (name.as_str(), format!("sha256:{}", l.digest)))
    }
}

/// Several errors as one: each on its own line.
pub fn join_errors(mut errors: Vec<anyhow::Error>) -> anyhow::Error {
    if errors.len() == 1
        && let Some(e) = errors.pop()
    {
        return e;
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}

/// The host: configuration, the engine, and the loaded plugins.
pub struct Bridge {
    pub settings: Settings,
    pub matrix: Matrix,
    pub policy: LoadedPolicy,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) plugins: BTreeMap<String, Arc<Loaded>>,
    pub(crate) resources: Resources,
    /// The audit trail, opened at the first line (shared with the bridges a reload makes).
    audit: Arc<std::sync::OnceLock<Option<Arc<crate::audit::AuditLog>>>>,
    /// Keeps the `memory` backend's directory alive as long as the process.
    _memory_dir: Option<Arc<tempfile::TempDir>>,
    /// Digest of each config file, taken as soon as this bridge was read (before anything
    /// observable happens): a reload names the files that differ from these.
    pub(crate) files: BTreeMap<String, String>,
    /// The guests' configuration documents built so far (`backlog/guest_config.rs`).
    pub(crate) guest_configs: crate::backlog::config_cache::GuestConfigs,
}

/// A plugin no later bridge took over (a reload loaded it anew) leaves the pool with the last
/// bridge that held it: its instances would never be handed out again.
impl Drop for Bridge {
    fn drop(&mut self) {
        for loaded in self.plugins.values() {
            if Arc::strong_count(loaded) == 1 {
                loaded.plugin.unpool(&self.runtime);
            }
        }
    }
}

impl Bridge {
    /// Loads config and plugins (compiling or taking each component from the cache), then
    /// opens the store. Every configuration error is reported, one per line.
    pub fn load(settings: Settings) -> anyhow::Result<Bridge> {
        let ConfigParts {
            matrix,
            policy,
            runtime,
            plugins,
        } = ConfigParts::load(&settings).map_err(join_errors)?;
        let (resources, memory_dir) = crate::backlog::store::open(&settings)?;
        let mut bridge = Bridge {
            settings,
            matrix,
            policy,
            runtime,
            plugins,
            resources,
            audit: Arc::default(),
            _memory_dir: memory_dir.map(Arc::new),
            files: BTreeMap::new(),
            guest_configs: Default::default(),
        };
        bridge.files = bridge.config_files();
        Ok(bridge)
    }

    /// The bridge a reload swaps in (`crate::reload`): the new config parts over what this
    /// one keeps for the life of the process — settings, the store and its Postgres pool, the
    /// engine, the audit trail, the `memory` backend's directory.
    pub(crate) fn successor(&self, parts: ConfigParts) -> Bridge {
        let mut bridge = Bridge {
            settings: self.settings.clone(),
            matrix: parts.matrix,
            policy: parts.policy,
            runtime: parts.runtime,
            plugins: parts.plugins,
            resources: self.resources.clone(),
            audit: self.audit.clone(),
            _memory_dir: self._memory_dir.clone(),
            files: BTreeMap::new(),
            guest_configs: Default::default(),
        };
        bridge.files = bridge.config_files();
        bridge
    }

    /// The digests of the files this bridge's config was read from (its components: of the
    /// bytes it loaded).
    fn config_files(&self) -> BTreeMap<String, String> {
        let loaded = self.plugins.values().map(|l| (&l.entry, l.digest.as_str()));
        let s = &self.settings;
        crate::config::files::digests(&s.config_dir, &s.ops_dir, &self.matrix, loaded, false)
    }

    /// Appends one audit line (see [`crate::audit`]); a trail that cannot be written is logged
    /// as an error on every line it loses.
    pub fn audit(&self, record: crate::audit::CallRecord<'_>) {
        self.with_audit(|log| log.append_call(&record));
    }

    /// Appends one audit line of any event (`start`, `stop`, `plugin_load`, a call).
    pub fn audit_event(&self, record: serde_json::Map<String, Value>) {
        self.with_audit(|log| log.append(record));
    }

    fn with_audit(&self, append: impl FnOnce(&crate::audit::AuditLog) -> std::io::Result<()>) {
        let dir = &self.settings.audit_dir;
        if crate::audit::is_off(dir) {
            return;
        }
        let log = self
            .audit
            .get_or_init(|| match crate::audit::AuditLog::open(dir) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::error!("audit trail disabled: {e:#}");
                    None
                }
            });
        match log {
            Some(log) => {
                if let Err(e) = append(log) {
                    tracing::error!(
                        dir = %self.settings.audit_dir.display(),
                        "audit line lost: {e}"
                    );
                }
            }
            None => tracing::error!(
                dir = %self.settings.audit_dir.display(),
                "audit line lost: the audit dir cannot be written"
            ),
        }
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

    /// The checks that run before any params are looked at, in the order of `docs/actions.md`:
    /// the tool and action exist (404), then `agent` holds every entitlement the action
    /// requires (403).
    pub(crate) fn resolve(
        &self,
        agent: &str,
        tool: &str,
        action: &str,
    ) -> Result<(&Loaded, &ActionRule), ToolError> {
        let loaded: &Loaded = self.plugins.get(tool).ok_or_else(|| {
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

    pub(crate) fn now(&self) -> String {
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

    /// Each loaded plugin's component digest (`sha256:<hex>`), by tool name.
    pub fn digests(&self) -> impl Iterator<Item = (&str, String)> {
        self.plugins
            .iter()
            .map(|(name, l)| (name.as_str(), format!("sha256:{}", l.digest)))
    }

    /// Whether some loaded plugin provides `tool`.
    pub fn provides(&self, tool: &str) -> bool {
        self.plugins.contains_key(tool)
    }

    /// The engine and linker (the scheduler loads its runner component on the same engine).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Warm instances pooled now, per plugin (`backlog_bridge_instances_pooled`).
    pub fn instances_pooled(&self) -> Vec<(String, usize)> {
        let count = |l: &Loaded| l.plugin.pooled(&self.runtime);
        self.plugins
            .iter()
            .map(|(n, l)| (n.clone(), count(l)))
            .collect()
    }

    /// The shared Postgres pool, when a Postgres backend is configured (the scheduler keeps
    /// its run table through it).
    pub fn postgres_pool(&self) -> Option<Arc<Postgres>> {
        self.resources.postgres.clone()
    }

    /// The Postgres pool, when a Postgres backend is configured (for readiness checks:
    /// [`Postgres::status`]).
    pub fn postgres(&self) -> Option<&Postgres> {
        self.resources.postgres.as_deref()
    }
}

/// Runs after a reload swapped the bridge, with the old and the new one (the MCP face tells
/// its sessions whose tool list changed).
pub type SwapHook = Box<dyn Fn(&Arc<Bridge>, &Arc<Bridge>) + Send + Sync>;

/// The bridge a long-running process serves with, swapped whole by a reload
/// (`crate::reload`). Each call takes [`Live::current`] once and holds that `Arc` to its end,
/// so a call in flight finishes under the config it started with and never sees a mix.
pub struct Live {
    current: std::sync::RwLock<Arc<Bridge>>,
    hooks: std::sync::Mutex<Vec<SwapHook>>,
}

impl Live {
    pub fn new(bridge: Arc<Bridge>) -> Live {
        Live {
            current: std::sync::RwLock::new(bridge),
            hooks: std::sync::Mutex::default(),
        }
    }

    /// The bridge now in force (a clone of the `Arc`: the lock is held for that clone only).
    pub fn current(&self) -> Arc<Bridge> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps `bridge` in (`then` runs under the same write lock, for state that must change
    /// with it), then runs the swap hooks; returns the bridge it replaced.
    pub(crate) fn swap(&self, bridge: Arc<Bridge>, then: impl FnOnce()) -> Arc<Bridge> {
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            then();
            std::mem::replace(&mut *current, bridge.clone())
        };
        for hook in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            hook(&old, &bridge);
        }
        old
    }

    /// Registers a hook run after every swap.
    pub fn on_swap(&self, hook: SwapHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }
}

fn load_plugin(
    runtime: &Runtime,
    settings: &Settings,
    name: &str,
    entry: PluginEntry,
    before: Option<&Arc<Loaded>>,
) -> anyhow::Result<Arc<Loaded>> {
    let (bytes, digest): (std::borrow::Cow<[u8]>, String) = match entry.source(&settings.config_dir)
    {
        ComponentSource::Builtin => {
            let (bytes, digest) = crate::builtins::tool(name).with_context(|| {
                format!(
                    "{}: plugin `{name}`: no builtin component of that name",
                    plugins::FILE
                )
            })?;
            (std::borrow::Cow::Borrowed(bytes), digest.to_owned())
        }
        ComponentSource::File(path) => {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("plugin `{name}`: cannot read {}", path.display()))?;
            plugins::check_pin(name, &entry, &path, &bytes)?;
            let digest = plugins::sha256_hex(&bytes);
            (bytes.into(), digest)
        }
    };
    // A reload takes over a plugin whose entry and bytes are the ones already loaded.
    if let Some(before) = before
        && before.entry == entry
        && before.digest == digest
    {
        return Ok(before.clone());
    }
    // The cache is keyed by the bytes' own SHA-256 (`cache::entry_path`), so a swapped file
    // never runs under an older compilation.
    let started = Instant::now();
    let (component, origin) = cache::load(
        &runtime.engine,
        &bytes,
        &digest,
        settings.cache_dir.as_deref(),
    )
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
    let plugin = Plugin::load(
        runtime,
        name,
        &component,
        entry.memory_limit_mib,
        entry.reuse(),
    )
    .with_context(|| format!("plugin `{name}`: cannot describe itself"))?;
    tracing::info!(plugin = name, sha256 = %digest, "plugin loaded");
    Ok(Arc::new(Loaded {
        entry,
        plugin,
        digest,
    }))
}

/// Loads a component file outside the registry (for `plugins inspect`).
pub fn inspect(settings: &Settings, path: &Path) -> anyhow::Result<crate::runtime::ToolInfo> {
    let runtime = Runtime::new()?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let digest = plugins::sha256_hex(&bytes);
    let (component, _) = cache::load(
        &runtime.engine,
        &bytes,
        &digest,
        settings.cache_dir.as_deref(),
    )
    .with_context(|| format!("{}: not a loadable component", path.display()))?;
    Ok(Plugin::load(&runtime, "inspect", &component, 128, Default::default())?.info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallRequest;

    fn list(bridge: &Bridge) {
        let req = CallRequest {
            agent: "viewer",
            tool: "backlog_tool",
            action: "list",
            params: "{}",
        };
        bridge.call(&req).expect("list");
    }

    #[test]
    fn a_replaced_plugin_leaves_the_pool_with_the_last_bridge_that_held_it() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        std::fs::create_dir(&config).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for f in ["rbac_tools_matrix.yml", "plugins.yml", "backlog_policy.yml"] {
            std::fs::copy(shipped.join(f), config.join(f)).unwrap();
        }
        let mut settings = Settings::from_env(config.clone(), tmp.path().join("ops")).unwrap();
        settings.backend = crate::backlog::Backend::Memory;
        settings.cache_dir = Some(tmp.path().join("cache"));
        settings.audit_dir = crate::audit::OFF.into();
        let first = Bridge::load(settings).unwrap();
        list(&first);
        let runtime = first.runtime.clone();
        assert_eq!(runtime.pool.len(), 1);
        // Taken over (nothing changed): the instance stays for the successor.
        let parts = ConfigParts::load_over(&first.settings, Some(&first)).unwrap();
        let second = first.successor(parts);
        drop(first);
        assert_eq!(runtime.pool.len(), 1);
        list(&second);
        assert_eq!(runtime.pool.len(), 1, "the successor reused it");
        // A changed policy loads the plugin anew: its old instance goes with the last holder.
        let policy = config.join("backlog_policy.yml");
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &policy,
            text.replace("retention_days: 180", "retention_days: 90"),
        )
        .unwrap();
        let parts = ConfigParts::load_over(&second.settings, Some(&second)).unwrap();
        let third = second.successor(parts);
        assert_eq!(
            runtime.pool.len(),
            1,
            "the old bridge still holds the old plugin"
        );
        drop(second);
        assert_eq!(runtime.pool.len(), 0);
        list(&third);
        assert_eq!(runtime.pool.len(), 1);
    }
}
