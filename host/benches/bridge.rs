//! `cargo bench -p backlog-bridge --bench bridge` — prints the figures of issue #2's benchmark:
//!
//! (a) fixed cost of one tool call through the host (RBAC, grants, instance, call) for `get`
//!     on a tiny store, warm instance and fresh instance;
//! (b) `get`/`list`/`upsert` natively (backlog-core + backlog-store) vs through the component,
//!     on the same JSONL data at 10k and 100k items, with the wasm/native ratio;
//! (c) at 100k items: `get`, `list limit 50`, durable `upsert` vs a bare fdatasync'd append,
//!     and a cold process answering `get`;
//! (d) cold start of `backlog-bridge call … get` (component cache warm), wall time.
//!
//! (e) the router (`backlog-bridge serve`) over loopback on a 10k-item store: `get` req/s and
//!     p50/p99, `dashboard` req/s, mixed 90/10 read/write req/s and errors, with a few client
//!     threads (keep-alive); and the router's own overhead (HTTP + auth + RBAC): one client's
//!     `get` p50 over HTTP minus the in-process call's p50 on the same store.
//!
//! Issue #13's JSONL figures, each with its yardstick and the issue's "before": cold process
//! `call get`/`list`/`upsert` at 100k (vs process start), dashboard through the host, cleanup
//! of 1M lines (time and peak RSS vs the files), and in (e) the HTTP dashboard and mixed p99
//! (vs an fdatasync'd append) at 32 connections and the router's RSS.
//!
//! (f) the audit trail's cost: HTTP `get` req/s and a cold `call upsert`, trail on vs off.
//!
//! Options (env): BENCH_SIZES="10000,100000", BENCH_ITERS=200; BENCH_ONLY=router runs (e)
//! alone, BENCH_ONLY=audit (f) alone (BENCH_AUDIT_ITEMS=10000), BENCH_ONLY=cold the cold
//! process figures of (c) alone, BENCH_ONLY=governance generation, dashboard and cleanup alone, BENCH_ONLY=reload the reload figure (`bridge/reload.rs`);
//! BENCH_ROUTER_SECS=3 (per load figure), BENCH_ROUTER_CLIENTS=32,
//! BENCH_ROUTER_ITEMS=100000; BENCH_CLEANUP_LINES=1000000.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backlog_bridge::backlog::Backend;
use backlog_bridge::{Bridge, CallRequest, Settings};
use backlog_core::actions::{Ctx, execute};
use backlog_core::ids::SeqEntropy;
use backlog_core::policy::Policy;
use backlog_store::{Access, JsonlStore};
use serde_json::{Value, json};

#[path = "bridge/audit.rs"]
mod audit;
#[path = "common/router.rs"]
mod kit;
#[path = "common/store.rs"]
mod store;
use store::{generate, generate_versions, item_id, measure, pct};

/// The product binary's allocator (`src/main.rs`), so in-process figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[path = "bridge/reload.rs"]
mod reload;
#[path = "bridge/router.rs"]
mod router;

const BIN: &str = env!("CARGO_BIN_EXE_backlog-bridge");
const NOW: &str = "2026-11-27T10:00:00Z";

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    // SAFETY: single-threaded at this point; the variables configure the bridge below.
    unsafe {
        std::env::set_var("BACKLOG_BRIDGE_CACHE_DIR", &cache);
        std::env::set_var("BACKLOG_BRIDGE_NOW", NOW);
        std::env::set_var("BACKLOG_BACKEND", "jsonl");
    }
    println!("backlog-bridge benchmark ({iters} iterations per figure; p50 / p99)");
    if std::env::var("BENCH_ONLY").as_deref() == Ok("router") {
        router::bench(tmp.path(), iters);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("audit") {
        audit::bench(tmp.path(), iters);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("governance") {
        governance(tmp.path(), iters);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("cold") {
        cold_only(tmp.path());
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("reload") {
        reload::bench(tmp.path(), iters);
        return;
    }

    // (a) fixed cost on a tiny store.
    let tiny = tmp.path().join("tiny");
    generate(&tiny.join("backlog"), 10);
    let tiny_bridge = load_bridge(&tiny);
    let id = item_id(3);
    let get = json!({"id": id}).to_string();
    let warm = measure(iters * 5, || call(&tiny_bridge, "get", &get));
    report(
        "(a) host call `get`, tiny store, warm instance",
        &warm,
        Some(Duration::from_micros(100)),
    );

    // (b) + (c)
    for &n in &sizes {
        let dir = tmp.path().join(format!("n{n}"));
        let started = Instant::now();
        generate(&dir.join("backlog"), n);
        println!("\n-- {n} items (generated in {:.2?})", started.elapsed());
        let bridge = load_bridge(&dir);
        let mut native = JsonlStore::open(
            dir.join("backlog"),
            Access::ReadWrite,
            Box::new(|_: &str| {}),
        );
        let policy = Policy::default();
        let mut entropy = SeqEntropy::new(1 << 40);
        let now = backlog_core::time::parse_ts(NOW).expect("now");
        let mut native_call = |action: &str, params: &Value| {
            native.begin_call();
            let mut ctx = Ctx::new("operator", now, &policy, &mut entropy);
            let out = execute(&mut native, action, params, &mut ctx).expect("native call");
            native.end_call().expect("end call");
            out
        };
        // Warm both indexes once (the first call builds it).
        let t = Instant::now();
        native_call("get", &json!({"id": item_id(1)}));
        let native_index = t.elapsed();
        let t = Instant::now();
        call(&bridge, "get", &json!({"id": item_id(1)}).to_string());
        let wasm_index = t.elapsed();
        println!(
            "index build on first call: native {native_index:.2?}, component {wasm_index:.2?}"
        );

        let ids: Vec<String> = (0..iters).map(|i| item_id((i * 7919) % n)).collect();
        let mut k = 0;
        let ng = measure(iters, || {
            k += 1;
            native_call("get", &json!({"id": ids[k % iters]}));
        });
        let mut k = 0;
        let wg = measure(iters, || {
            k += 1;
            call(&bridge, "get", &json!({"id": ids[k % iters]}).to_string());
        });
        let list = json!({"env":"prod","status":["open","in_progress"],"limit":50});
        let nl = measure(iters, || {
            native_call("list", &list);
        });
        let wl = measure(iters, || call(&bridge, "list", &list.to_string()));
        let mut k = 0;
        let nu = measure(iters, || {
            k += 1;
            native_call("upsert", &upsert(&format!("bench:native:{k}")));
        });
        let mut k = 0;
        let wu = measure(iters, || {
            k += 1;
            call(
                &bridge,
                "upsert",
                &upsert(&format!("bench:wasm:{k}")).to_string(),
            );
        });
        let target = (n >= 100_000).then_some(Duration::from_millis(5));
        report("get, native", &ng, None);
        report("get, component", &wg, target);
        ratio("get wasm/native", &wg, &ng);
        report("list limit 50, native", &nl, None);
        report("list limit 50, component", &wl, target);
        ratio("list wasm/native", &wl, &nl);
        report("durable upsert, native", &nu, None);
        report("durable upsert, component", &wu, None);
        ratio("upsert wasm/native", &wu, &nu);
        if n >= 100_000 {
            let append = bare_append(&dir, iters);
            report("bare fdatasync'd append", &append, None);
            ratio("durable upsert (component) / bare append", &wu, &append);
            cold_figures(&dir, n);
        }
    }

    // Issue #3: generation, dashboard, cleanup.
    governance(tmp.path(), iters);

    // (e) the router over loopback.
    router::bench(tmp.path(), iters);

    // (f) the audit trail's cost.
    audit::bench(tmp.path(), iters);

    // (d) cold start with the component cache warm.
    let get = json!({"id": item_id(3)}).to_string();
    let cold = measure(20, || cold_call(&tiny, "get", &get));
    report(
        "\n(d) cold start `backlog-bridge call … get`, tiny store",
        &cold,
        Some(Duration::from_millis(50)),
    );
}

/// Issue #13: a new process must not parse the whole store (the index checkpoint). Cold
/// `call get`/`list`/`upsert` on the store at `dir` (`n` items), against process start.
fn cold_figures(dir: &Path, n: usize) {
    let start = measure(20, || {
        let out = Command::new(BIN).arg("--help").output().expect("spawn");
        assert!(out.status.success());
    });
    report("process start (`backlog-bridge --help`)", &start, None);
    let get = json!({"id": item_id(n / 2)}).to_string();
    let list = json!({"env":"prod","status":["open"],"limit":50}).to_string();
    let mut k = 0;
    for (action, target, before) in [
        ("get", 60, "455 ms"),
        ("list", 60, "514 ms"),
        ("upsert", 80, "668 ms"),
    ] {
        let cold = measure(5, || {
            k += 1;
            let params = match action {
                "get" => get.clone(),
                "list" => list.clone(),
                _ => upsert(&format!("bench:cold:{k}")).to_string(),
            };
            cold_call(dir, action, &params)
        });
        report(
            &format!("(c) cold process `call {action}` at this size"),
            &cold,
            Some(Duration::from_millis(target)),
        );
        println!(
            "{:<48} {:.0}x process start  (issue #13 before: {before} at 100k)",
            "",
            pct(&cold, 0.5).as_secs_f64() / pct(&start, 0.5).as_secs_f64().max(1e-9)
        );
    }
}

/// `BENCH_ONLY=cold`: the cold-process figures alone, on a 100k store that one writer has
/// checkpointed and then appended 400 upserts to (as in (c)).
fn cold_only(tmp: &Path) {
    let n = 100_000;
    let dir = tmp.join("cold");
    generate(&dir.join("backlog"), n);
    let bridge = load_bridge(&dir);
    for k in 0..400 {
        call(
            &bridge,
            "upsert",
            &upsert(&format!("bench:warm:{k}")).to_string(),
        );
    }
    println!("-- {n} items, checkpointed, 400 upserts after it");
    cold_figures(&dir, n);
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// Weekly generation (500 services, cap lifted) into 100k items; dashboard at 100k warm;
/// cleanup of a 1M-line store (time and the process's peak RSS).
fn governance(tmp: &Path, iters: usize) {
    let n = 100_000;
    let root = tmp.join("gov");
    generate(&root.join("backlog"), n);
    let config = root.join("config");
    std::fs::create_dir_all(&config).expect("mkdir");
    for f in ["rbac_tools_matrix.yml", "plugins.yml"] {
        std::fs::copy(repo_config().join(f), config.join(f)).expect("copy");
    }
    std::fs::write(
        config.join("backlog_policy.yml"),
        "defaults:\n  max_items_per_run: 100000\n",
    )
    .expect("policy");
    let services: Vec<Value> = (0..500)
        .map(|i| json!({"service": format!("gen-{i}"), "score": 100 - i % 100, "band": BANDS[i % 4],
            "requires_arch_review": i % 10 == 0,
            "signals": {"regressions_30d": i % 4, "escalations_30d": i % 3, "followups_overdue": i % 2, "dependency_high_30d": i % 5 / 4},
            "evidence_refs": {"alerts": [format!("al_{i}")]}}))
        .collect();
    let digest = json!({"week":"2026-48","env":"prod","generated_at":"2026-11-23T06:00:04Z","services": services});
    let reports = root.join("reports/platform");
    std::fs::create_dir_all(&reports).expect("mkdir");
    std::fs::write(reports.join("2026-48.json"), digest.to_string()).expect("digest");
    // The same generation natively (logic + store crates, same files' shape) for the ratio.
    let native_dir = tmp.join("gov-native");
    generate(&native_dir.join("backlog"), n);
    let native_gen = {
        let mut store = JsonlStore::open(
            native_dir.join("backlog"),
            Access::ReadWrite,
            Box::new(|_: &str| {}),
        )
        .with_durability(backlog_store::Durability::Deferred);
        let policy =
            Policy::from_json_str(r#"{"defaults":{"max_items_per_run":100000}}"#).expect("policy");
        let mut entropy = SeqEntropy::new(1 << 41);
        let mut reports = DirReports(root.join("reports"));
        let now = backlog_core::time::parse_ts(NOW).expect("now");
        store.refresh().expect("index");
        let t = Instant::now();
        store.begin_call();
        let mut ctx = Ctx::new("scheduler", now, &policy, &mut entropy).with_reports(&mut reports);
        execute(&mut store, "auto_generate_weekly", &json!({}), &mut ctx)
            .expect("native generation");
        store.end_call().expect("end call");
        t.elapsed()
    };
    let mut settings = Settings::from_env(config, root.clone()).expect("settings");
    settings.backend = Backend::Jsonl;
    settings.jsonl_dir = root.join("backlog");
    let bridge = Bridge::load(settings).expect("bridge");
    // Warm the index of the admin-grant instance (each grant set has its own warm instance,
    // and so its own index): a dry-run cleanup reads everything and writes nothing.
    bridge
        .call(&CallRequest {
            agent: "scheduler",
            tool: "backlog_tool",
            action: "cleanup",
            params: r#"{"dry_run":true}"#,
        })
        .expect("warm-up");
    call(&bridge, "get", &json!({"id": item_id(1)}).to_string()); // and the read instance's
    let t = Instant::now();
    let out = bridge
        .call(&CallRequest {
            agent: "scheduler",
            tool: "backlog_tool",
            action: "auto_generate_weekly",
            params: "{}",
        })
        .expect("generate");
    let first = t.elapsed();
    let t = Instant::now();
    bridge
        .call(&CallRequest {
            agent: "scheduler",
            tool: "backlog_tool",
            action: "auto_generate_weekly",
            params: "{}",
        })
        .expect("generate again");
    let again = t.elapsed();
    println!("\n-- governance at {n} items");
    println!(
        "{:<48} {first:>10.1?}  (created {}, target <= 200ms: {})",
        "weekly generation, 500 services, first run",
        out.to_value()["created"],
        if first <= Duration::from_millis(200) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "{:<48} {again:>10.1?}  (nothing to change)",
        "weekly generation, re-run"
    );
    println!(
        "{:<48} {native_gen:>10.1?}",
        "weekly generation, natively (no sync)"
    );
    let dash = measure(iters.min(100), || {
        call(&bridge, "dashboard", r#"{"env":"prod"}"#)
    });
    report(
        "dashboard at 100k items, warm (through the host)",
        &dash,
        Some(Duration::from_millis(5)),
    );

    let lines: usize = std::env::var("BENCH_CLEANUP_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let croot = tmp.join("cleanup");
    // An append-only store that grew until cleanup: every item was written 10 times.
    generate_versions(&croot.join("backlog"), lines / 10, 10);
    let size = std::fs::metadata(croot.join("backlog/items.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(croot.join("backlog/events.jsonl"))
            .map(|m| m.len())
            .unwrap_or(0);
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--config-dir")
        .arg(repo_config())
        .arg("--ops-dir")
        .arg(&croot)
        .args([
            "call",
            "backlog_tool",
            "cleanup",
            "--params-json",
            r#"{"retention_days":1}"#,
        ])
        .env("RUST_LOG", "warn")
        .env("BACKLOG_BRIDGE_NOW", "2027-06-01T00:00:00Z")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut peak_kib = 0u64;
    while child.try_wait().expect("wait").is_none() {
        peak_kib = peak_kib.max(kit::vm_kib(child.id(), "VmHWM:").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5)); // sampling interval, not synchronization
    }
    let took = t.elapsed();
    let out = child.wait_with_output().expect("output");
    println!(
        "{:<48} {took:>10.1?}  (target <= 10s: {}; issue #13 before: 12.9 s); {}",
        format!("cleanup, {lines}-line store ({} MiB)", size >> 20),
        if took <= Duration::from_secs(10) {
            "met"
        } else {
            "MISSED"
        },
        String::from_utf8_lossy(&out.stdout).trim()
    );
    println!(
        "{:<48} {:>7} MiB  ({:.2}x the files; target <= 0.5x: {})",
        "cleanup peak RSS of the process",
        peak_kib >> 10,
        (peak_kib << 10) as f64 / size.max(1) as f64,
        if (peak_kib << 10) * 2 <= size {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// Digests read natively from a directory (the component does the same through `/reports`).
struct DirReports(PathBuf);

impl backlog_core::digest::Reports for DirReports {
    fn list(&mut self, dir: &str) -> Result<Vec<String>, backlog_core::Error> {
        Ok(std::fs::read_dir(self.0.join(dir))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default())
    }
    fn read(&mut self, path: &str) -> Result<String, backlog_core::Error> {
        std::fs::read_to_string(self.0.join(path))
            .map_err(|e| backlog_core::Error::internal(e.to_string()))
    }
}

const BANDS: [&str; 4] = ["low", "medium", "high", "critical"];

fn load_bridge(root: &Path) -> Bridge {
    let config = repo_config();
    let mut settings = Settings::from_env(config, root.to_owned()).expect("settings");
    settings.backend = Backend::Jsonl;
    settings.jsonl_dir = root.join("backlog");
    Bridge::load(settings).expect("bridge")
}

fn call(bridge: &Bridge, action: &str, params: &str) {
    let req = CallRequest {
        agent: "operator",
        tool: "backlog_tool",
        action,
        params,
    };
    if let Err(e) = bridge.call(&req) {
        panic!("{action} {params}: {e}");
    }
}

fn upsert(key: &str) -> Value {
    json!({"dedupe_key": key, "env":"prod","service":"bench","category":"refactor","title":"bench upsert"})
}

fn bare_append(dir: &Path, iters: usize) -> Vec<Duration> {
    let path: PathBuf = dir.join("bare-append.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open");
    let line = format!("{}\n", upsert("bare"));
    measure(iters, || {
        f.write_all(line.as_bytes()).expect("write");
        f.sync_data().expect("fdatasync");
    })
}

/// `backlog-bridge call backlog_tool <action>` in a new process (component cache warm).
fn cold_call(root: &Path, action: &str, params: &str) {
    let out = Command::new(BIN)
        .args(["--config-dir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"))
        .arg("--ops-dir")
        .arg(root)
        .args(["call", "backlog_tool", action, "--params-json", params])
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(name: &str, v: &[Duration], target: Option<Duration>) {
    let (p50, p99) = (pct(v, 0.50), pct(v, 0.99));
    let verdict = match target {
        Some(t) if p50 <= t => format!("  (target p50 <= {t:?}: met)"),
        Some(t) => format!("  (target p50 <= {t:?}: MISSED)"),
        None => String::new(),
    };
    println!("{name:<48} p50 {:>10.1?}  p99 {:>10.1?}{verdict}", p50, p99);
}

fn ratio(name: &str, a: &[Duration], b: &[Duration]) {
    let r = pct(a, 0.5).as_secs_f64() / pct(b, 0.5).as_secs_f64().max(1e-9);
    println!("{name:<48} {r:.2}x (p50 ratio)");
}
