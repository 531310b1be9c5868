//! A loaded tool plugin: its pre-instantiated component, its self-description, and its guest
//! entry.
//!
//! Instances (`docs/isolation.md`): a call runs in a store holding exactly its grants, either
//! fresh or a warm one from the runtime's pool (`pool.rs`) that served the same plugin with the
//! same grants — and, unless the plugin's `instances` is `shared`, the same caller — before
//! (so a guest may keep caches such as a JSONL index). `per-call` plugins never reuse an
//! instance. A store is discarded after any trap, timeout or limit breach.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::{Store, Trap};

use super::bindings::{ErrorCode, ToolHostPre, WitToolError};
use super::engine::{Runtime, ticks};
use super::pool::{Key, Reuse, Warm};
use super::sandbox::{HostState, Resources, new_store};
use crate::caps::pg::{CommitError, DeadlineExceeded, End, session};

/// How often one call runs when its Postgres transaction keeps losing races (it also stops at
/// its time limit).
const MAX_ATTEMPTS: u32 = 10;
use crate::error::{Code, ToolError};
use crate::grants::Grants;

/// The id of the next plugin loaded in this process: pool keys name plugins by it, so a
/// reloaded plugin of the same name never gets an instance of the old one.
static NEXT_PLUGIN_ID: AtomicU64 = AtomicU64::new(1);

/// One action as a plugin describes it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the params (parsed from the component's text).
    pub params_schema: serde_json::Value,
}

/// A plugin's self-description.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub actions: Vec<ActionInfo>,
}

impl ToolInfo {
    pub fn action(&self, name: &str) -> Option<&ActionInfo> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// What a finished call produced besides its result.
#[derive(Debug, Default)]
pub struct CallOutcome {
    /// Everything the guest wrote to stderr during the call.
    pub stderr: String,
    /// Whether a warm instance served the call.
    pub warm: bool,
    /// The store directory's lock, if the guest took it on demand (`caps/dir_lock.rs`): the
    /// caller makes the call's writes durable under it, then drops it.
    pub dir_lock: Option<crate::lock::DirLock>,
}

/// One call as the runtime sees it: what to run and with which capabilities.
#[derive(Clone, Copy)]
pub struct Invocation<'a> {
    /// Who the call is for (the authenticated agent; a scheduled job's agent): warm instances
    /// are reused only by the same caller unless the plugin is `shared`.
    pub caller: &'a str,
    pub grants: Grants,
    pub resources: &'a Resources,
    pub timeout: Duration,
    pub action: &'a str,
    /// The params object as JSON text.
    pub params: &'a str,
    pub context: Context<'a>,
    /// The directory the guest may lock on demand (the host did not lock it for the call).
    pub lock_on_demand: Option<&'a std::path::Path>,
    /// What the host makes ready before a new sandbox opens its preopens (the store
    /// directory, if missing); not run when a warm instance takes the call.
    pub before_fresh: &'a dyn Fn() -> Result<(), ToolError>,
}

/// A call's context, borrowed: an instance keeps its own copy ([`Warm::context`]) and the
/// call refills it in place.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub actor: &'a str,
    pub request_id: &'a str,
    pub now: &'a str,
    /// The guest config's text, shared by the calls of one grant set and caller.
    pub config: &'a Arc<str>,
}

impl Context<'_> {
    /// Writes this context into `warm`'s. The config's text goes to the guest only when
    /// the instance was sent another one before (or none): `none` otherwise, and the guest
    /// uses the text it kept (`call-context` in `wit/deps/tool/tool.wit`).
    fn fill(&self, warm: &mut Warm) {
        for (slot, value) in [
            (&mut warm.context.actor, self.actor),
            (&mut warm.context.request_id, self.request_id),
            (&mut warm.context.now, self.now),
        ] {
            slot.clear();
            slot.push_str(value);
        }
        if warm
            .config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, self.config))
        {
            warm.context.config = None;
        } else {
            warm.context.config = Some(self.config.to_string());
            warm.config = Some(self.config.clone());
        }
    }
}

/// A loaded plugin.
pub struct Plugin {
    pub name: String,
    pub info: ToolInfo,
    /// Process-unique: the pool's name for this plugin.
    id: u64,
    pre: ToolHostPre<HostState>,
    memory_bytes: usize,
    reuse: Reuse,
}

/// The version of `backlog-bridge:tool` (`wit/deps/tool/tool.wit`) this host speaks.
pub const TOOL_VERSION: &str = "0.2.0";

/// An interface of another version of `backlog-bridge:tool` that `component` imports or
/// exports, so that a plugin built against an older release is named as such at load, not
/// refused with a linker error.
fn other_tool_version(engine: &wasmtime::Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    ty.imports(engine)
        .map(|(n, _)| n)
        .chain(ty.exports(engine).map(|(n, _)| n))
        .find(|n| {
            n.strip_prefix("backlog-bridge:tool/")
                .and_then(|rest| rest.split_once('@'))
                .is_some_and(|(_, version)| version != TOOL_VERSION)
        })
        .map(str::to_owned)
}

impl Plugin {
    /// Pre-instantiates `component` and asks it to describe itself (in a store with no grants).
    pub fn load(
        runtime: &Runtime,
        name: &str,
        component: &Component,
        memory_mib: u64,
        reuse: Reuse,
    ) -> anyhow::Result<Self> {
        if let Some(other) = other_tool_version(&runtime.engine, component) {
            anyhow::bail!(
                "the component was built against `{other}`; this host speaks \
                 backlog-bridge:tool@{TOOL_VERSION} (since 0.2.0 the call context's `config` is \
                 an option<string>): rebuild it against this release's wit/"
            );
        }
        let pre = ToolHostPre::new(runtime.linker.instantiate_pre(component)?)?;
        let memory_bytes = (memory_mib as usize) << 20;
        let mut store = new_store(
            &runtime.engine,
            Grants::default(),
            &Resources::default(),
            memory_bytes,
        )?;
        store.set_epoch_deadline(ticks(Duration::from_secs(10)));
        let instance = pre.instantiate(&mut store)?;
        let raw = instance
            .backlog_bridge_tool_tool()
            .call_describe(&mut store)?;
        let mut actions = Vec::with_capacity(raw.actions.len());
        for a in raw.actions {
            let params_schema = serde_json::from_str(&a.params_schema).map_err(|e| {
                anyhow::anyhow!(
                    "plugin `{name}`: action `{}` has an invalid params schema: {e}",
                    a.name
                )
            })?;
            actions.push(ActionInfo {
                name: a.name,
                description: a.description,
                params_schema,
            });
        }
        Ok(Plugin {
            name: name.to_owned(),
            info: ToolInfo {
                name: raw.name,
                description: raw.description,
                actions,
            },
            id: NEXT_PLUGIN_ID.fetch_add(1, Ordering::Relaxed),
            pre,
            memory_bytes,
            reuse,
        })
    }

    /// Runs one call in a sandbox with its grants, stopping it at its time limit. The call's
    /// Postgres transaction (if it opened one) is committed when the guest returned `ok`, and
    /// rolled back on an error result, a trap or a timeout, before the instance is reused.
    ///
    /// The guest entry of a tool call: only the call pipeline (`crate::call`) calls it.
    pub(crate) fn enter(
        &self,
        runtime: &Runtime,
        call: &Invocation,
    ) -> (Result<String, ToolError>, CallOutcome) {
        let Invocation {
            caller,
            grants,
            resources,
            timeout,
            action,
            params,
            context,
            lock_on_demand,
            before_fresh,
        } = *call;
        let mut outcome = CallOutcome::default();
        let key = Key::for_call(self.reuse, self.id, caller, grants);
        let (mut warm, reused) = match key.as_ref().and_then(|k| runtime.pool.take(k)) {
            Some(w) => (w, true),
            None => match before_fresh().and_then(|()| self.start(runtime, grants, resources)) {
                Ok(w) => (w, false),
                Err(e) => return (Err(e), outcome),
            },
        };
        outcome.warm = reused;
        context.fill(&mut warm);
        warm.store.set_epoch_deadline(ticks(timeout));
        let deadline = Instant::now() + timeout;
        // A Postgres transaction that lost a race with a concurrent call (`PgGrant::lost_race`)
        // was rolled back: the call runs again from the start in a fresh transaction (the
        // guest is deterministic given the store), within the same time limit.
        let mut attempt = 1;
        warm.store
            .data_mut()
            .dir_lock
            .begin_call(lock_on_demand.map(ToOwned::to_owned));
        let (result, ended) = loop {
            warm.store.data_mut().pg.begin_call(deadline);
            let result = warm.instance.backlog_bridge_tool_tool().call_call(
                &mut warm.store,
                action,
                params,
                &warm.context,
            );
            outcome.stderr.push_str(&warm.store.data().stderr.take());
            let end = match result {
                Ok(Ok(_)) => End::Commit,
                _ => End::Rollback,
            };
            let ended = warm.store.data_mut().pg.end_call(end);
            let again = result.is_ok()
                && warm.store.data().pg.lost_race()
                && attempt < MAX_ATTEMPTS
                && Instant::now() < deadline;
            if !again {
                break (result, ended);
            }
            tracing::debug!(plugin = %self.name, attempt, "postgres: the call lost a race, running it again");
            attempt += 1;
        };
        outcome.dir_lock = warm.store.data_mut().dir_lock.take();
        match result {
            Ok(Ok(json)) => {
                self.put_back(runtime, key, warm);
                match ended {
                    Ok(()) => (Ok(json), outcome),
                    Err(e) => (Err(self.commit_error(&e)), outcome),
                }
            }
            Ok(Err(e)) => {
                self.put_back(runtime, key, warm);
                (Err(from_wit(e)), outcome)
            }
            Err(trap) => {
                // The store is dropped here: a trapped instance is never reused.
                let err = self.trap_error(&warm.store, &trap, timeout, &outcome.stderr);
                (Err(err), outcome)
            }
        }
    }

    /// A call whose guest succeeded but whose Postgres transaction did not commit.
    fn commit_error(&self, e: &CommitError) -> ToolError {
        let code = match e {
            CommitError::Aborted(_) => Code::Internal,
            CommitError::Refused { sqlstate, .. }
                if sqlstate.starts_with("23") || sqlstate.starts_with("40") =>
            {
                Code::Conflict
            }
            // A queued write in a read-only transaction, or without the privilege.
            CommitError::Refused { sqlstate, .. } if session::beyond_grant(sqlstate) => {
                Code::Forbidden
            }
            CommitError::Refused { .. } => Code::Internal,
            CommitError::Unavailable(_) => Code::Unavailable,
            CommitError::TimedOut(_) => Code::Timeout,
        };
        ToolError::new(code, format!("plugin `{}`: {e}", self.name))
    }

    fn trap_error(
        &self,
        store: &Store<HostState>,
        trap: &wasmtime::Error,
        timeout: Duration,
        stderr: &str,
    ) -> ToolError {
        if trap.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
            || trap.downcast_ref::<DeadlineExceeded>().is_some()
        {
            return ToolError::new(
                Code::Timeout,
                format!(
                    "plugin `{}` exceeded its time limit of {} ms",
                    self.name,
                    timeout.as_millis()
                ),
            );
        }
        let mut message = if store.data().limits.memory_exceeded {
            format!(
                "plugin `{}` exceeded its memory limit of {} MiB",
                self.name,
                self.memory_bytes >> 20
            )
        } else {
            format!("plugin `{}` trapped: {trap:#}", self.name)
        };
        let tail = stderr.trim_end();
        if !tail.is_empty() {
            let start = tail.len().saturating_sub(2048);
            let start = (start..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            message.push_str("\nguest stderr:\n");
            message.push_str(&tail[start..]);
        }
        ToolError::new(Code::Internal, message)
    }

    /// A fresh instance for a call; a failure is the call's `internal` error.
    fn start(
        &self,
        runtime: &Runtime,
        grants: Grants,
        resources: &Resources,
    ) -> Result<Warm, ToolError> {
        self.fresh(runtime, grants, resources).map_err(|e| {
            ToolError::new(
                Code::Internal,
                format!("cannot start plugin `{}`: {e:#}", self.name),
            )
        })
    }

    /// A fresh instance. When the engine has no slot left for it, warm instances are dropped
    /// (the least recently used first) until one is free.
    fn fresh(
        &self,
        runtime: &Runtime,
        grants: Grants,
        resources: &Resources,
    ) -> anyhow::Result<Warm> {
        loop {
            let mut store = new_store(&runtime.engine, grants, resources, self.memory_bytes)?;
            store.set_epoch_deadline(ticks(Duration::from_secs(10)));
            match self.pre.instantiate(&mut store) {
                Ok(instance) => return Ok(Warm::new(store, instance)),
                Err(e) if runtime.pool.evict_lru() => {
                    tracing::debug!(plugin = %self.name, "instantiation failed ({e:#}); dropped a warm instance and retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Returns an instance that finished its call cleanly to the pool, if its key allows
    /// reuse; otherwise (`per-call`) it is dropped here.
    fn put_back(&self, runtime: &Runtime, key: Option<Key>, warm: Warm) {
        if let Some(key) = key {
            runtime.pool.put(key, warm, self.reuse.max_pooled);
        }
    }

    /// Drops this plugin's warm instances (it was replaced: a reload loaded it anew).
    pub(crate) fn unpool(&self, runtime: &Runtime) {
        runtime.pool.clear_plugin(self.id);
    }

    /// Warm instances of this plugin in the pool now.
    pub fn pooled(&self, runtime: &Runtime) -> usize {
        runtime.pool.pooled(self.id)
    }

    /// How this plugin's instances are reused.
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }
}

fn from_wit(e: WitToolError) -> ToolError {
    let code = backlog_core::map_error_code!(e.code, ErrorCode => Code);
    ToolError::new(code, e.message)
}

#[cfg(test)]
mod tests {
    /// [`super::TOOL_VERSION`] is the version `wit/` declares (the bindings name it as text).
    #[test]
    fn the_tool_version_is_the_wit_packages() {
        let wit = include_str!("../../../wit/deps/tool/tool.wit");
        let declared = format!("package backlog-bridge:tool@{};", super::TOOL_VERSION);
        assert!(wit.contains(&declared), "{declared}");
    }
}
