//! The one [`Engine`] of the process: epoch interruption for wall-clock limits, the pooling
//! allocator (falling back to on-demand allocation where the pool cannot be reserved), and the
//! epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::pool::{Pool, TOTAL_MAX, Warm};
use super::sandbox::{HostState, link_all};

/// One epoch tick. Deadlines are whole ticks, so limits are accurate to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The epoch deadline of a call limited to `timeout` (whole ticks, at least one).
pub fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// The largest guest memory any plugin may be configured with (MiB).
pub const MAX_MEMORY_MIB: u64 = 4096;

/// The engine, the linker shared by every plugin, and the ticker that drives epochs.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    /// `pooling` or `on-demand`: which allocator the engine got.
    pub allocator: &'static str,
    /// Warm instances of every plugin loaded on this engine (`pool.rs`).
    pub(crate) pool: Pool<Warm>,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine (pooling allocator if possible) and the linker with every interface a
    /// guest of either world may import (`sandbox::link_all`). What a call may actually use
    /// is decided per store by its grants (`sandbox.rs`).
    pub fn new() -> anyhow::Result<Self> {
        let (engine, allocator) = match Engine::new(&config(true)) {
            Ok(engine) => (engine, "pooling"),
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
                (Engine::new(&config(false))?, "on-demand")
            }
        };
        let mut linker = Linker::new(&engine);
        link_all(&mut linker)?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), stop.clone());
        Ok(Runtime {
            engine,
            linker,
            allocator,
            pool: Pool::new(TOTAL_MAX),
            stop,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine's configuration (`pooling`: with the pooling allocator). Public so that the floor
/// bench (`benches/floor.rs`) embeds wasmtime with exactly this configuration.
pub fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    // For `perf`: JIT code named in `/tmp/perf-<pid>.map` (README, "Benchmark").
    if std::env::var_os("BACKLOG_BRIDGE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(64)
            .total_core_instances(256)
            .total_memories(128)
            .total_tables(256)
            .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
            // A freed slot keeps its first 4 MiB resident (zeroed with `memset`, not
            // `madvise`d away): a `per-call` instance's heap is then not page-faulted in
            // again 4 KiB at a time (a fresh `get` at 10k items: 2.0 -> 1.1 ms), for at
            // most 4 MiB of resident memory per slot ever used (docs/isolation.md).
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(1 << 20)
            // Where the kernel has `PAGEMAP_SCAN` (Linux 6.7+), a freed slot resets only the
            // pages the instance dirtied, not its whole resident prefix.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    // A weak tie would be nicer; the engine is process-wide, so the thread lives as long.
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .ok();
}
