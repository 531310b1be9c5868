//! The sandbox of every guest, for both worlds (tool plugins and the scheduler component):
//! [`link_all`], the one set of imports, and [`new_store`], the one store builder: a WASI
//! context with exactly the preopens of the call's [`Grants`], its Postgres grant, its
//! store directory lock on demand,
//! invoker (scheduler runs only), memory limits, an epoch deadline, and captured stderr.
//!
//! Default deny, stated once: no environment, no arguments, no stdin, stdout discarded, no
//! network, no preopens, no Postgres. Everything a guest can touch is added below from `Grants`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::backlog_bridge::tool::types;
use super::stderr::Capture;
use crate::caps::dir_lock::{self, DirLockGrant};
use crate::caps::invoker::{self, InvokerGrant};
use crate::caps::pg::{self, PgGrant, Postgres};
use crate::grants::Grants;

/// Guest path of the JSONL store directory.
pub const BACKLOG_DIR: &str = "/backlog";
/// Guest path of the reports directory.
pub const REPORTS_DIR: &str = "/reports";

/// What the host has to give: directories behind the guest paths and the Postgres pool. A
/// store gets only what its grants name.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub backlog: Option<PathBuf>,
    pub reports: Option<PathBuf>,
    /// The pool, when a Postgres backend is configured.
    pub postgres: Option<Arc<Postgres>>,
}

/// The data of one store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: Limits,
    pub stderr: Capture,
    /// Postgres access and the running call's transaction.
    pub pg: PgGrant,
    /// The scheduler component's way to its tools (none in tool stores).
    pub invoker: InvokerGrant,
    /// The store directory's lock, for a call that takes it on demand.
    pub dir_lock: DirLockGrant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// Links every interface a guest of either world may import: WASI p2, the tool types,
/// Postgres, the tool invoker. Each capability gets only its own part of the store's state.
/// What a call may actually use is decided per store by its grants ([`new_store`]).
pub fn link_all(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)
        .map_err(anyhow::Error::from)
        .context("linking WASI p2")?;
    types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        .map_err(anyhow::Error::from)
        .context("linking backlog-bridge:tool/types")?;
    pg::add_to_linker(linker, |s| &mut s.pg)
        .map_err(anyhow::Error::from)
        .context("linking backlog-bridge:pg/postgres")?;
    invoker::add_to_linker(linker, |s| &mut s.invoker)
        .map_err(anyhow::Error::from)
        .context("linking backlog-bridge:scheduler/invoker")?;
    dir_lock::add_to_linker(linker, |s| &mut s.dir_lock)
        .map_err(anyhow::Error::from)
        .context("linking backlog-bridge:store/dir-lock")?;
    Ok(())
}

/// Memory limit of one store; remembers a breach so the host can name it.
pub struct Limits {
    pub memory_bytes: usize,
    pub memory_exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exceeded = true;
            // Trap rather than fail the grow: a guest that ignores a failed grow would
            // otherwise keep running in an unknown state.
            wasmtime::bail!("guest memory limit of {} bytes exceeded", self.memory_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Builds a store carrying exactly `grants` over `resources`.
pub fn new_store(
    engine: &Engine,
    grants: Grants,
    resources: &Resources,
    memory_bytes: usize,
) -> anyhow::Result<Store<HostState>> {
    let stderr = Capture::default();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stderr(stderr.clone())
        .allow_blocking_current_thread(true);
    if let (Some(perms), Some(dir)) = (grants.backlog_dir.fs_perms(), &resources.backlog) {
        wasi.preopened_dir(dir, BACKLOG_DIR, perms)?;
    }
    if let (Some(perms), Some(dir)) = (grants.reports_dir.fs_perms(), &resources.reports) {
        wasi.preopened_dir(dir, REPORTS_DIR, perms)?;
    }
    let state = HostState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: Limits {
            memory_bytes,
            memory_exceeded: false,
        },
        stderr,
        pg: PgGrant::new(grants.postgres, resources.postgres.clone()),
        invoker: InvokerGrant::default(),
        dir_lock: DirLockGrant::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    Ok(store)
}
