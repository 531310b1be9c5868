//! (e) The router over loopback: the real `backlog-bridge serve` process, a Rust load
//! generator (threads, one keep-alive connection each), a JSONL store of
//! `BENCH_ROUTER_ITEMS` items (default 100k) and `BENCH_ROUTER_CLIENTS` connections (default
//! 32), as in issue #13's table; the router's RSS after the load.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{bare_append, call, generate, item_id, load_bridge, measure, pct, report};
use crate::kit::{self, Load, client, load, request, start};

fn print_load(name: &str, l: &Load, target_rps: f64, p99_target: Option<Duration>) {
    let rps = l.requests as f64 / l.wall.as_secs_f64();
    let (p50, p99) = (pct(&l.latencies, 0.5), pct(&l.latencies, 0.99));
    let mut verdict = format!(
        "target >= {target_rps:.0} req/s: {}",
        if rps >= target_rps { "met" } else { "MISSED" }
    );
    if let Some(t) = p99_target {
        verdict.push_str(&format!(
            "; p99 <= {t:?}: {}",
            if p99 <= t { "met" } else { "MISSED" }
        ));
    }
    println!(
        "{name:<48} {rps:>8.0} req/s  p50 {p50:>9.1?}  p99 {p99:>9.1?}  errors {}  ({verdict})",
        l.errors
    );
}

/// Runs (e) and prints its figures.
pub fn bench(tmp: &Path, iters: usize) {
    let secs = Duration::from_secs(
        std::env::var("BENCH_ROUTER_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let clients: usize = std::env::var("BENCH_ROUTER_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let items: usize = std::env::var("BENCH_ROUTER_ITEMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let root = tmp.join("router");
    generate(&root.join("backlog"), items);
    println!(
        "\n-- (e) router over loopback, {items} items, {clients} client threads, {secs:?} per figure"
    );
    let server = start(&root, &[("BACKLOG_BACKEND", "jsonl")]);
    let base = server.base.as_str();
    let http = client();
    // Warm the warm instances (and their indexes) of the read and write grant sets.
    for i in 0..8 {
        request(
            &http,
            base,
            "GET",
            &format!("/v1/backlog/items/{}", item_id(i)),
            None,
        );
    }
    for i in 0..4 {
        let body = json!({"tool":"backlog_tool","action":"upsert","dedupe_key":format!("bench:warm:{i}"),
            "env":"prod","service":"bench","category":"refactor","title":"warm"});
        request(
            &http,
            base,
            "POST",
            "/v1/tools/execute",
            Some(body.to_string()),
        );
    }

    // Router overhead: one client, sequential `get`, HTTP vs in-process on the same store.
    let ids: Vec<String> = (0..iters).map(|i| item_id((i * 7919) % items)).collect();
    let mut k = 0;
    let over_http = measure(iters * 5, || {
        k += 1;
        let status = request(
            &http,
            base,
            "GET",
            &format!("/v1/backlog/items/{}", ids[k % iters]),
            None,
        );
        assert_eq!(status, 200);
    });
    let bridge = load_bridge(&root);
    call(&bridge, "get", &json!({"id": item_id(1)}).to_string());
    let mut k = 0;
    let in_process = measure(iters * 5, || {
        k += 1;
        call(&bridge, "get", &json!({"id": ids[k % iters]}).to_string());
    });
    drop(bridge);
    report("get, one client over HTTP", &over_http, None);
    report("get, in-process Bridge::call", &in_process, None);
    let overhead = pct(&over_http, 0.5).saturating_sub(pct(&in_process, 0.5));
    println!(
        "{:<48} p50 {overhead:>10.1?}  (HTTP + auth + RBAC + worker hand-off, p50 difference)",
        "router overhead"
    );

    let get = load(base, clients, secs, |c, i| {
        let id = item_id((c * 7919 + i * 104_729) % items);
        ("GET", format!("/v1/backlog/items/{id}"), None)
    });
    print_load("get", &get, 3000.0, Some(Duration::from_millis(20)));
    let dash = load(base, clients, secs, |_, _| {
        ("GET", "/v1/backlog/dashboard?env=prod".to_owned(), None)
    });
    print_load("HTTP dashboard env=prod (JSONL)", &dash, 1000.0, None);
    println!(
        "{:<48} (issue #13 before: 46 req/s, p50 684 ms at 100k / 32 conns)",
        ""
    );
    let mixed = load(base, clients, secs, |c, i| {
        if i % 10 == 9 {
            let body = json!({"tool":"backlog_tool","action":"upsert","dedupe_key":format!("bench:mixed:{c}:{i}"),
                "env":"prod","service":"bench","category":"refactor","title":"mixed upsert"});
            (
                "POST",
                "/v1/tools/execute".to_owned(),
                Some(body.to_string()),
            )
        } else {
            let id = item_id((c * 7919 + i * 104_729) % items);
            ("GET", format!("/v1/backlog/items/{id}"), None)
        }
    });
    print_load(
        "mixed 90% get / 10% durable upsert (JSONL)",
        &mixed,
        1500.0,
        Some(Duration::from_millis(25)),
    );
    let append = bare_append(&root, iters);
    let p99 = pct(&mixed.latencies, 0.99);
    println!(
        "{:<48} p99 {p99:>9.1?} vs fdatasync'd append p50 {:>9.1?}: {:.0}x  (issue #13 before: p99 504 ms at 100k)",
        "mixed p99 / yardstick",
        pct(&append, 0.5),
        p99.as_secs_f64() / pct(&append, 0.5).as_secs_f64().max(1e-9)
    );
    kit::print_rss(&server, &format!("router RSS at {items} items (JSONL)"));
}
