//! The per-call sandbox: a [`Store`] holding a WASI context with exactly the preopens of the
//! call's [`Grants`], its Postgres grant, memory limits, and captured stderr.
//!
//! Default deny, stated once: no environment, no arguments, no stdin, stdout discarded, no
//! network, no preopens, no Postgres. Everything a guest can touch is added below from `Grants`.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::backlog_bridge::tool::types;
use super::stderr::Capture;
use crate::caps::pg::{PgGrant, Postgres};
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
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    Ok(store)
}
