//! `cargo bench -p backlog-bridge --bench floor` — the floor under one tool call
//! (`docs/isolation.md`), in one run on one store of 10k items (JSONL):
//!
//! 1. **bare**: wasmtime embedded with nothing of the host — the host's engine configuration
//!    (`runtime::engine::config`), a linker with WASI p2 only (the Postgres import traps), an
//!    `InstancePre` — timing an instantiation (store + WASI context with the read-only
//!    preopen + instance), a warm `get` (one instance, called again and again, once it has
//!    looked every timed id up: the steady state of a long-lived instance) and a fresh `get`
//!    (a new store and instance per call), with the context the host would send; the fresh
//!    `get` once before any write (no index checkpoint: a full parse per instance), and
//!    after one write through the host (which leaves a checkpoint);
//! 2. **host**: the same `get` through `Bridge::call` (RBAC, grants, store preparation, the
//!    guest, the answer checked, the audit line), with `backlog_tool` as shipped
//!    (`per-caller`: warm) and set to `instances: per-call` (fresh), and warm again with the
//!    audit trail off (what the audit line costs);
//! 3. **native**: the same `get` with backlog-core + backlog-store called directly;
//!
//! the warm calls of 1–3 timed in turns (bare, host, native, bare, …; each turn starting with
//! the next path, as the first to read a turn's item pays for its cache misses), and so the
//! fresh ones, so a drift of the machine's speed and the caches they evict from each other
//! weigh on all;
//!
//! then the ratios: host / bare (warm and fresh), fresh / warm, wasm / native.
//!
//! Options (env): BENCH_ITEMS=10000, BENCH_ITERS=200, BENCH_FRESH_ITERS (fresh figures; a fifth
//! of the iterations, at least 20), BENCH_FULL_ITERS (the full-parse figure; as many as the
//! fresh ones: 1 keeps its 35 ms a call out of a `perf` profile of the fresh figures).
//! `--profile dev` gives a first figure quickly; the bench profile (release) is the real one.

use std::path::Path;
use std::time::Duration;

use backlog_bridge::backlog::Backend;
use backlog_bridge::runtime::engine::config;
use backlog_bridge::{Bridge, CallRequest, Settings};
use backlog_core::actions::{Ctx, execute_text};
use backlog_core::ids::SeqEntropy;
use backlog_core::policy::Policy;
use backlog_store::{Access, JsonlStore};
use serde_json::{Value, json};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[path = "common/store.rs"]
mod store;
use store::{generate, item_id, measure, measure_turns, pct};

mod bare {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "backlog-bridge:tool/plugin@0.2.0",
    });
}
use bare::backlog_bridge::tool::types::CallContext;
use bare::{Plugin, PluginPre};

/// The product binary's allocator (`src/main.rs`), so in-process figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: &str = "2026-11-27T10:00:00Z";
const COMPONENT: &[u8] = include_bytes!(env!("BACKLOG_TOOL_WASM"));

/// A bare store's data: WASI and nothing else.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn main() {
    let n: usize = env_or("BENCH_ITEMS", 10_000);
    let iters: usize = env_or("BENCH_ITERS", 200);
    let fresh_iters = env_or("BENCH_FRESH_ITERS", (iters / 5).max(20));
    let full_iters = env_or("BENCH_FULL_ITERS", fresh_iters);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // SAFETY: single-threaded at this point; the variables configure the bridges below.
    unsafe {
        std::env::set_var("BACKLOG_BRIDGE_CACHE_DIR", root.join("cache"));
        std::env::set_var("BACKLOG_BRIDGE_NOW", NOW);
        std::env::set_var("BACKLOG_BACKEND", "jsonl");
    }
    let backlog = root.join("backlog");
    generate(&backlog, n);
    println!(
        "floor bench: `get` at {n} items (JSONL); {iters} iterations (fresh: {fresh_iters}); p50 / p99"
    );
    let ids: Vec<String> = (0..iters).map(|i| item_id((i * 7919) % n)).collect();
    let params = |k: usize| json!({"id": ids[k % ids.len()]}).to_string();

    // 1. Bare wasmtime.
    let warm_bridge = load_bridge(root, &backlog, None, true);
    let fresh_bridge = load_bridge(root, &backlog, Some("per-call"), true);
    // The same warm path without the audit trail: what the audit line costs.
    let unaudited_bridge = load_bridge(root, &backlog, None, false);
    let config_text = guest_config(&warm_bridge);
    let context = CallContext {
        actor: "operator".into(),
        request_id: "req_floor".into(),
        now: NOW.into(),
        config: Some(config_text.clone()),
    };
    // What the host sends a warm instance after its first call: the config only when it
    // changed (`none`: the text the instance kept).
    let warm_context = CallContext {
        config: None,
        ..context.clone()
    };
    let engine = Engine::new(&config(true)).expect("engine");
    let component = Component::new(&engine, COMPONENT).expect("compile");
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    // The component imports the host's Postgres interface and the directory lock on demand;
    // a `get` on JSONL calls neither.
    for (instance, funcs) in [
        (
            "backlog-bridge:pg/postgres@0.1.0",
            &["execute", "queue"][..],
        ),
        ("backlog-bridge:store/dir-lock@0.1.0", &["acquire"][..]),
    ] {
        let mut instance = linker.instance(instance).expect("instance");
        for func in funcs {
            instance
                .func_new(func, |_, _, _, _| {
                    wasmtime::bail!("not in the bare embedding")
                })
                .expect("func");
        }
    }
    let pre = PluginPre::new(linker.instantiate_pre(&component).expect("pre")).expect("pre");
    let new_instance = || {
        let mut store = bare_store(&engine, &backlog);
        let plugin = pre.instantiate(&mut store).expect("instantiate");
        (store, plugin)
    };
    let bare_get =
        |store: &mut Store<Bare>, plugin: &Plugin, params: &str, context: &CallContext| {
            let out = plugin
                .backlog_bridge_tool_tool()
                .call_call(store, "get", params, context)
                .expect("no trap");
            let json = out.unwrap_or_else(|e| panic!("get: {}", e.message));
            assert!(json.starts_with('{'), "{json}");
        };
    // Generated files carry no index checkpoint: each new instance parses them whole.
    let mut k = 0;
    let bare_fresh_full = measure(full_iters, || {
        k += 1;
        let (mut store, plugin) = new_instance();
        bare_get(&mut store, &plugin, &params(k), &context);
    });
    // One write through the host: the store writes its checkpoint (`checkpoint.rs`), which
    // every new instance below loads instead of parsing the files.
    let upsert = json!({"dedupe_key": "floor:1", "env": "prod", "service": "bench",
        "category": "refactor", "title": "floor bench"});
    warm_bridge
        .call(&CallRequest {
            agent: "operator",
            tool: "backlog_tool",
            action: "upsert",
            params: &upsert.to_string(),
        })
        .expect("upsert");
    if 2 * n as u64 >= backlog_store::CHECKPOINT_EVERY {
        assert!(backlog.join(backlog_store::CHECKPOINT_FILE).exists());
    }
    let instantiate = measure(iters, || drop(new_instance()));
    // A fresh instance's first call without any index: the null store (`get` answers
    // not_found), the same policy: what a new instance costs besides loading the index.
    let mut null_context = context.clone();
    let mut null_config: Value = serde_json::from_str(&config_text).expect("config");
    null_config["backend"] = json!("null");
    null_context.config = Some(null_config.to_string());
    let bare_fresh_null = measure(fresh_iters, || {
        let (mut store, plugin) = new_instance();
        let out = plugin
            .backlog_bridge_tool_tool()
            .call_call(&mut store, "get", &params(0), &null_context)
            .expect("no trap");
        assert!(out.is_err(), "the null store holds nothing");
    });
    // 2. The host and 3. native, in turns with the bare calls of the same items
    // (`measure_turns`).
    let mut native = JsonlStore::open(backlog.clone(), Access::ReadOnly, Box::new(|_: &str| {}));
    let policy = Policy::default();
    let mut entropy = SeqEntropy::new(1 << 40);
    let now = backlog_core::time::parse_ts(NOW).expect("now");
    let native_get = |store: &mut JsonlStore, entropy: &mut SeqEntropy, k: usize| {
        store.begin_call();
        let mut ctx = Ctx::new("operator", now, &policy, entropy);
        let p: Value = serde_json::from_str(&params(k)).expect("params");
        // Its answer as text, as the guest returns it.
        execute_text(store, "get", &p, &mut ctx).expect("native get");
    };
    let (mut store, plugin) = new_instance();
    bare_get(&mut store, &plugin, &params(0), &context);
    // Warm means the steady state of a long-lived instance: each path has looked every timed
    // id up once, so its index holds the checkpoint blocks those lookups read (a block is
    // read and checked on first touch: `index/pages.rs`), as a router's instance does after
    // a while; otherwise a first touch, a 4 KiB read and its hash, sat in many timed calls.
    for k in 0..ids.len() {
        bare_get(&mut store, &plugin, &params(k), &warm_context);
        host_call(&warm_bridge, &params(k));
        native_get(&mut native, &mut entropy, k);
        host_call(&unaudited_bridge, &params(k));
    }
    let [bare_warm, host_warm, native_warm, unaudited_warm] = measure_turns(
        iters,
        [
            &mut |k| bare_get(&mut store, &plugin, &params(k), &warm_context),
            &mut |k| host_call(&warm_bridge, &params(k)),
            &mut |k| native_get(&mut native, &mut entropy, k),
            &mut |k| host_call(&unaudited_bridge, &params(k)),
        ],
    );
    let [bare_fresh, host_fresh, native_fresh] = measure_turns(
        fresh_iters,
        [
            &mut |k| {
                let (mut store, plugin) = new_instance();
                bare_get(&mut store, &plugin, &params(k), &context);
            },
            &mut |k| host_call(&fresh_bridge, &params(k)),
            &mut |k| {
                let mut store =
                    JsonlStore::open(backlog.clone(), Access::ReadOnly, Box::new(|_: &str| {}));
                native_get(&mut store, &mut entropy, k);
            },
        ],
    );

    println!();
    report("bare: instantiate (store + WASI + instance)", &instantiate);
    report("bare: warm `get`", &bare_warm);
    report(
        "bare: fresh `get`, no checkpoint (full parse)",
        &bare_fresh_full,
    );
    report("bare: fresh `get` (new instance, checkpoint)", &bare_fresh);
    report("bare: fresh `get`, null store (no index)", &bare_fresh_null);
    report("host: warm `get` (per-caller)", &host_warm);
    report("host: warm `get`, audit trail off", &unaudited_warm);
    report("host: fresh `get` (per-call)", &host_fresh);
    report("native: `get`", &native_warm);
    report("native: fresh `get` (new store, checkpoint)", &native_fresh);
    println!();
    ratio("host warm / bare warm", &host_warm, &bare_warm, Some(1.2));
    ratio(
        "host warm, audit trail off / bare warm",
        &unaudited_warm,
        &bare_warm,
        None,
    );
    ratio(
        "host fresh / bare fresh",
        &host_fresh,
        &bare_fresh,
        Some(1.2),
    );
    ratio("bare fresh / bare warm", &bare_fresh, &bare_warm, None);
    ratio(
        "bare fresh without / with checkpoint",
        &bare_fresh_full,
        &bare_fresh,
        None,
    );
    ratio("host fresh / host warm", &host_fresh, &host_warm, Some(2.0));
    ratio(
        "wasm / native (bare warm / native)",
        &bare_warm,
        &native_warm,
        Some(2.0),
    );
    ratio("host warm / native", &host_warm, &native_warm, None);
    ratio(
        "wasm / native, fresh (bare fresh / native fresh)",
        &bare_fresh,
        &native_fresh,
        None,
    );
    budgets(&Budgets {
        bare_warm: &bare_warm,
        bare_fresh_null: &bare_fresh_null,
        host_warm: &host_warm,
        unaudited_warm: &unaudited_warm,
        native_warm: &native_warm,
        native_fresh: &native_fresh,
    });
}

/// The p50s the two missed targets are read against.
struct Budgets<'a> {
    bare_warm: &'a [Duration],
    bare_fresh_null: &'a [Duration],
    host_warm: &'a [Duration],
    unaudited_warm: &'a [Duration],
    native_warm: &'a [Duration],
    native_fresh: &'a [Duration],
}

/// What each missed target leaves for the part that misses it, next to what that part costs:
/// the audit line against the 1.2x warm target, the store's opening against the 2x fresh one
/// (a fresh instance that opens no store at all is the floor under any fresh call).
fn budgets(b: &Budgets) {
    let p50 = |v: &[Duration]| pct(v, 0.5);
    println!();
    println!("-- what the missed targets leave (p50)");
    let audit = p50(b.host_warm).saturating_sub(p50(b.unaudited_warm));
    let budget = p50(b.bare_warm).mul_f64(1.2);
    let room = if budget > p50(b.unaudited_warm) {
        format!(
            "1.2x bare warm leaves {:.1?} over the host without it",
            budget - p50(b.unaudited_warm)
        )
    } else {
        "the host without it is past 1.2x bare warm already".to_owned()
    };
    println!(
        "{:<48} {audit:>10.1?}  ({room})",
        "the audit line in a warm call (host − audit off)",
    );
    let open = p50(b.native_fresh).saturating_sub(p50(b.native_warm));
    let open_room = (p50(b.host_warm) * 2).saturating_sub(p50(b.bare_fresh_null));
    println!(
        "{:<48} {:>10.1?}  = {:.2}x host warm (no store opened: the fresh floor)",
        "fresh instance, null store",
        p50(b.bare_fresh_null),
        p50(b.bare_fresh_null).as_secs_f64() / p50(b.host_warm).as_secs_f64(),
    );
    println!(
        "{:<48} {open:>10.1?}  (2x host warm leaves {open_room:.1?} over the fresh floor)",
        "opening the store from the checkpoint, native",
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A bare store: WASI with the store directory preopened read-only, as a `get` is granted.
fn bare_store(engine: &Engine, backlog: &Path) -> Store<Bare> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_blocking_current_thread(true)
        .preopened_dir(backlog, "/backlog", FsPerms::ReadOnly)
        .expect("preopen");
    let mut store = Store::new(
        engine,
        Bare {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

/// The `config` the host hands a `get` of `operator` on JSONL (`backlog/guest_config.rs`).
fn guest_config(bridge: &Bridge) -> String {
    let entitlements = bridge
        .matrix
        .agent("operator")
        .map(|a| a.entitlements.clone())
        .unwrap_or_default();
    json!({
        "backend": "jsonl",
        "backlog_dir": "/backlog",
        "backlog_access": "read",
        "policy": bridge.policy.json,
        "entitlements": entitlements,
    })
    .to_string()
}

/// A bridge on the shipped config (with `backlog_tool`'s `instances` set when given; the
/// audit trail off unless `audit`).
fn load_bridge(root: &Path, backlog: &Path, instances: Option<&str>, audit: bool) -> Bridge {
    let config = root.join(format!(
        "config-{}{}",
        instances.unwrap_or("default"),
        if audit { "" } else { "-unaudited" }
    ));
    std::fs::create_dir_all(&config).expect("mkdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for f in ["rbac_tools_matrix.yml", "plugins.yml", "backlog_policy.yml"] {
        std::fs::copy(shipped.join(f), config.join(f)).expect("copy config");
    }
    if let Some(instances) = instances {
        let path = config.join("plugins.yml");
        let text = std::fs::read_to_string(&path).expect("plugins.yml");
        let text = text.replace(
            "    component: builtin\n",
            &format!("    component: builtin\n    instances: {instances}\n"),
        );
        std::fs::write(path, text).expect("plugins.yml");
    }
    let mut settings = Settings::from_env(config, root.to_owned()).expect("settings");
    settings.backend = Backend::Jsonl;
    settings.jsonl_dir = backlog.to_owned();
    if !audit {
        settings.audit_dir = backlog_bridge::audit::OFF.into();
    }
    Bridge::load(settings).expect("bridge")
}

fn host_call(bridge: &Bridge, params: &str) {
    let req = CallRequest {
        agent: "operator",
        tool: "backlog_tool",
        action: "get",
        params,
    };
    if let Err(e) = bridge.call(&req) {
        panic!("get {params}: {e}");
    }
}

fn report(name: &str, v: &[Duration]) {
    println!(
        "{name:<48} p50 {:>10.1?}  p99 {:>10.1?}",
        pct(v, 0.5),
        pct(v, 0.99)
    );
}

fn ratio(name: &str, a: &[Duration], b: &[Duration], target: Option<f64>) {
    let r = pct(a, 0.5).as_secs_f64() / pct(b, 0.5).as_secs_f64().max(1e-9);
    let verdict = match target {
        Some(t) if r <= t => format!("  (target <= {t}x: met)"),
        Some(t) => format!("  (target <= {t}x: MISSED)"),
        None => String::new(),
    };
    println!("{name:<48} {r:>6.2}x (p50){verdict}");
}
