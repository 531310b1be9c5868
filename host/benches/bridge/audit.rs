//! The audit trail's cost, on and off in one run: HTTP `get` req/s at
//! `BENCH_ROUTER_CLIENTS` connections (a `serve` process each way) and a cold process
//! `call upsert`, each with its on/off ratio (target: the trail costs ≤ 10 %).
//! Off is `BACKLOG_BRIDGE_AUDIT_DIR=off`; the modes alternate (three router runs each,
//! one process per `call` each) to spread drift.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::{BIN, generate, item_id, pct, report};
use crate::kit::{client, load, request, start};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs the audit figures and prints them.
pub fn bench(tmp: &Path, iters: usize) {
    let secs = Duration::from_secs(env_or("BENCH_ROUTER_SECS", 3));
    let clients: usize = env_or("BENCH_ROUTER_CLIENTS", 32);
    let items: usize = env_or("BENCH_AUDIT_ITEMS", 10_000);
    let root = tmp.join("audit-bench");
    generate(&root.join("backlog"), items);
    let trail = root.join("audit");
    let trail = trail.to_str().expect("utf-8 path");
    println!(
        "\n-- audit trail on vs off, {items} items, {clients} client threads, {secs:?} per figure"
    );
    let modes = [("off", "off"), ("on", trail)].repeat(3);
    let mut rps = [Vec::new(), Vec::new()];
    for (i, (name, dir)) in modes.iter().enumerate() {
        let server = start(
            &root,
            &[
                ("BACKLOG_BACKEND", "jsonl"),
                ("BACKLOG_BRIDGE_AUDIT_DIR", dir),
            ],
        );
        let base = server.base.as_str();
        let http = client();
        for k in 0..8 {
            let path = format!("/v1/backlog/items/{}", item_id(k));
            assert_eq!(request(&http, base, "GET", &path, None), 200);
        }
        let get = load(base, clients, secs, |c, n| {
            let id = item_id((c * 7919 + n * 104_729) % items);
            ("GET", format!("/v1/backlog/items/{id}"), None)
        });
        assert_eq!(get.errors, 0, "get errors with the trail {name}");
        println!(
            "{:<48} {:>8.0} req/s  p50 {:>9.1?}  p99 {:>9.1?}",
            format!("HTTP get, audit {name}"),
            get.rps(),
            pct(&get.latencies, 0.5),
            pct(&get.latencies, 0.99)
        );
        rps[i % 2].push(get.rps());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (off, on) = (mean(&rps[0]), mean(&rps[1]));
    let cost = 1.0 - on / off;
    println!(
        "{:<48} on/off {:.3}  cost {:>5.1} %  (target <= 10 %: {})",
        "HTTP get throughput, audit on vs off",
        on / off,
        cost * 100.0,
        if cost <= 0.10 { "met" } else { "MISSED" }
    );

    // Alternate each process so drift (page cache, other load) hits both modes alike; the
    // first pair warms the store's checkpoint and the component cache.
    let n = (iters / 4).max(20);
    let mut times = [Vec::new(), Vec::new()];
    for k in 0..=n {
        for (m, dir) in ["off", trail].into_iter().enumerate() {
            let params = json!({"dedupe_key": format!("bench:audit:{m}:{k}"), "env": "prod",
                "service": "bench", "category": "refactor", "title": "audit bench"});
            let t = std::time::Instant::now();
            cold_upsert(&root, dir, &params.to_string());
            if k > 0 {
                times[m].push(t.elapsed());
            }
        }
    }
    for t in &mut times {
        t.sort();
    }
    report("cold process `call upsert`, audit off", &times[0], None);
    report("cold process `call upsert`, audit on", &times[1], None);
    let (off, on) = (pct(&times[0], 0.5), pct(&times[1], 0.5));
    let cost = on.as_secs_f64() / off.as_secs_f64().max(1e-9) - 1.0;
    println!(
        "{:<48} on/off {:.3}  cost {:>5.1} %  (target <= 10 %: {})",
        "cold `call upsert` p50, audit on vs off",
        1.0 + cost,
        cost * 100.0,
        if cost <= 0.10 { "met" } else { "MISSED" }
    );
}

fn cold_upsert(root: &Path, audit_dir: &str, params: &str) {
    let out = Command::new(BIN)
        .args(["--config-dir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"))
        .arg("--ops-dir")
        .arg(root)
        .args(["call", "backlog_tool", "upsert", "--params-json", params])
        .env("RUST_LOG", "warn")
        .env("BACKLOG_BACKEND", "jsonl")
        .env("BACKLOG_BRIDGE_AUDIT_DIR", audit_dir)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
