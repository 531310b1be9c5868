//! `cargo bench -p backlog-bridge --bench postgres` — the Postgres figures of issue #4, against
//! a throwaway local PostgreSQL 15 cluster (the e2e harness's, `tests/all/pg.rs`), with
//! `pgbench` on the same server as the yardstick:
//!
//! * a single `upsert` (new dedupe key: SELECT + item INSERT + event INSERT in one host-owned
//!   transaction) through the host vs pgbench's single-row `INSERT … ON CONFLICT`;
//! * `dashboard` of one env;
//! * weekly generation of 50 items (one call, a fresh env each time so every item is new);
//!
//! * through the router (`serve`, HTTP over loopback, `postgres/http.rs`): upsert at one
//!   connection (p50 vs pgbench's single-row latency), upsert at 32 connections (req/s vs
//!   pgbench's tps at 32 clients), the same on the `auto` backend (req/s vs `postgres`'s),
//!   dashboard at 32 connections (p50, req/s), the router's resident memory after the loads
//!   (now and its peak, target ≤ 600 MiB);
//!
//! and what each side spends per request (`common/cpu.rs`: the CPU the kernel counts for the
//! Postgres server's process tree, the `serve` process, the load generator and pgbench): at one
//! connection Postgres's CPU per upsert against its CPU per pgbench transaction, and the
//! client's backend's alone (without the server's background processes) against pgbench's
//! p50; at 32, the CPU per upsert of each side and the ceiling with a router that costs
//! nothing;
//!
//! each at every store size (default 10k and 100k items), so the scaling shows.
//! The cluster runs with `fsync=off` (as in the tests): both sides skip the disk flush, so the
//! ratio compares round trips and work, not the disk.
//!
//! Options (env): BENCH_PG_SIZES="10000,100000", BENCH_ITERS=200, BENCH_ROUTER_SECS=5 (per
//! load figure).

#[path = "common/cpu.rs"]
mod cpu;
#[path = "postgres/http.rs"]
mod http;
#[path = "common/router.rs"]
mod kit;
#[path = "../../tests/all/pg.rs"]
mod pg;
#[path = "common/store.rs"]
mod store;
use store::measure;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backlog_bridge::backlog::Backend;
use backlog_bridge::{Bridge, CallRequest, Settings};
use serde_json::{Value, json};

/// The product binary's allocator (`src/main.rs`), so in-process figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_backlog-bridge");
const NOW: &str = "2026-11-27T10:00:00Z";

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_PG_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().expect("tempdir");
    // SAFETY: single-threaded at this point; the variables configure the bridge below.
    unsafe {
        std::env::set_var("BACKLOG_BRIDGE_CACHE_DIR", tmp.path().join("cache"));
        std::env::set_var("BACKLOG_BRIDGE_NOW", NOW);
    }
    let cluster = pg::PrivateCluster::start();
    println!(
        "backlog-bridge Postgres benchmark ({iters} iterations per figure; p50 / p99; local PostgreSQL 15, fsync=off)"
    );
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &n in &sizes {
        let db = cluster.database();
        let root = tmp.path().join(format!("pg{n}"));
        std::fs::create_dir_all(&root).expect("mkdir");
        let migrate = Command::new(BIN)
            .args(["--config-dir"])
            .arg(repo_config())
            .args(["--ops-dir"])
            .arg(&root)
            .args(["migrate", "--dsn", &db.dsn])
            .env("RUST_LOG", "warn")
            .output()
            .expect("migrate");
        assert!(migrate.status.success(), "{migrate:?}");
        let t = Instant::now();
        fill(&db, n);
        println!(
            "\n-- {n} items (loaded and vacuumed in {:.2?})",
            t.elapsed()
        );

        let bridge = load_bridge(&root, &db.dsn);
        call(&bridge, "operator", "get", r#"{"id":"bl_000000000001"}"#);

        // Postgres's CPU per pgbench transaction: what the server alone spends on the yardstick
        // (at least a second of it: the kernel counts CPU in 10 ms ticks).
        let postmaster = http::postmaster(&db);
        let before = cpu::tree(postmaster);
        let pgbench = pgbench(&db, &root, (iters * 5).max(5000));
        let pgbench_server = cpu::tree(postmaster).saturating_sub(before)
            / u32::try_from(pgbench.len().max(1)).unwrap_or(u32::MAX);
        let mut k = 0;
        let upsert = measure(iters, || {
            k += 1;
            let p = json!({"dedupe_key": format!("bench:{n}:{k}"), "env":"prod","service":"bench",
                "category":"refactor","title":"bench upsert"});
            call(&bridge, "operator", "upsert", &p.to_string());
        });
        let dashboard = measure(iters.min(100), || {
            call(&bridge, "operator", "dashboard", r#"{"env":"prod"}"#);
        });
        let generation = weekly_generation(&bridge, &root, iters.min(40));

        report("pgbench single-row INSERT … ON CONFLICT", &pgbench, None);
        report("upsert through the host (new key)", &upsert, None);
        let ratio = p50(&upsert).as_secs_f64() / p50(&pgbench).as_secs_f64();
        println!(
            "{:<48} {ratio:>9.2}x  (target <= 2x: {})",
            "upsert / pgbench (p50)",
            verdict(ratio <= 2.0)
        );
        report(
            &format!("dashboard env=prod at {n}"),
            &dashboard,
            (n >= 100_000).then_some(Duration::from_millis(5)),
        );
        report(
            "weekly generation, 50 new items",
            &generation,
            Some(Duration::from_millis(30)),
        );
        let (one, rps, tps, dash_p50, dash_rps) =
            http::bench(&db, &root, n, iters, (p50(&pgbench), pgbench_server));
        rows.push((n, p50(&upsert), p50(&dashboard), p50(&generation)));
        summary.push((n, one, p50(&pgbench), rps, tps, dash_p50, dash_rps));
    }
    println!("\n-- the issue's Postgres figures (figure, yardstick, ratio)");
    for (n, one, pgb, rps, tps, dash_p50, dash_rps) in summary {
        println!(
            "{n:>7} items: upsert 1 conn p50 {one:.1?} vs pgbench {pgb:.1?} = {:.2}x | upsert 32 conn \
             {rps:.0} req/s vs pgbench {tps:.0} tps = {:.3} | dashboard 32 conn p50 {dash_p50:.1?}, \
             {dash_rps:.0} req/s",
            one.as_secs_f64() / pgb.as_secs_f64(),
            rps / tps
        );
    }
    if rows.len() > 1 {
        let (first, last) = (rows[0], rows[rows.len() - 1]);
        println!(
            "\n-- scaling {} -> {} items (p50): upsert {:.2}x, dashboard {:.2}x, generation {:.2}x",
            first.0,
            last.0,
            last.1.as_secs_f64() / first.1.as_secs_f64(),
            last.2.as_secs_f64() / first.2.as_secs_f64(),
            last.3.as_secs_f64() / first.3.as_secs_f64(),
        );
    }
}

/// `n` items across three envs, 97 services, every status and priority, due dates from
/// four weeks before to four weeks after now (so the dashboard has an overdue page and
/// overdue P0s to find), one `created` event each; then `VACUUM ANALYZE`, as autovacuum
/// would leave a live table.
fn fill(db: &pg::TestDb, n: usize) {
    db.batch(&format!(
        "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title,
                description, priority, status, owner, due_date, source, dedupe_key,
                evidence_refs, tags, meta)
         SELECT 'bl_' || lpad(to_hex(i), 12, '0'), ts, ts,
                (ARRAY['prod','staging','dev'])[i % 3 + 1], 'svc-' || (i % 97), 'refactor',
                'Refactor hot path #' || i, '- regressions_30d: 3', 'P' || (i % 4),
                (ARRAY['open','in_progress','blocked','done','canceled'])[i % 5 + 1], 'oncall',
                date '2026-10-30' + (i % 58), 'digest',
                'platform_backlog:2026-48:prod:svc-' || i || ':refactor',
                jsonb_build_object('alerts', jsonb_build_array('al_' || i)),
                '[\"auto\",\"week:2026-48\"]'::jsonb, jsonb_build_object('score', i % 100)
           FROM generate_series(0, {last}) i, (SELECT timestamptz '2026-11-01 06:20:00+00' AS ts) t;
         INSERT INTO backlog_events (id, item_id, ts, type, actor, message, meta)
         SELECT 'ev_' || lpad(to_hex(i), 12, '0'), 'bl_' || lpad(to_hex(i), 12, '0'),
                timestamptz '2026-11-01 06:20:00+00', 'created', 'scheduler', '', '{{}}'::jsonb
           FROM generate_series(0, {last}) i;",
        last = n - 1
    ));
    // VACUUM cannot run in a multi-statement string.
    db.batch("VACUUM ANALYZE backlog_items");
    db.batch("VACUUM ANALYZE backlog_events");
}

/// pgbench's latency for one single-row `INSERT … ON CONFLICT` (prepared, one client,
/// autocommit), from its per-transaction log.
fn pgbench(db: &pg::TestDb, root: &Path, transactions: usize) -> Vec<Duration> {
    let script = pgbench_script(root);
    let prefix = root.join("pgbench");
    let pgbench = pgbench_tool();
    let out = Command::new(&pgbench)
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            "1",
            "-t",
            &transactions.to_string(),
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &db.port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-f")
        .arg(&script)
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(&db.name)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pgbench.display()));
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One log file per pgbench process: `<prefix>.<pid>`; columns: client, transaction,
    // latency in µs, …
    let mut v: Vec<Duration> = std::fs::read_dir(root)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pgbench."))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
                .map(Duration::from_micros)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!v.is_empty(), "pgbench wrote no transaction log");
    v.sort();
    v
}

/// The pgbench script: one single-row `INSERT … ON CONFLICT` (written beside the store), new
/// keys spread over the fill's 97 services as the host's upserts are.
pub(crate) fn pgbench_script(root: &Path) -> PathBuf {
    let script = root.join("upsert.sql");
    std::fs::write(
        &script,
        "\\set k random(1, 1000000000)
INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, priority,
  status, owner, due_date, source, dedupe_key)
VALUES ('pgb_' || :k, now(), now(), 'prod', 'svc-' || (:k % 97), 'refactor', 'bench upsert', 'P2', 'open',
  'oncall', date '2026-12-27', 'manual', 'pgbench:' || :k)
ON CONFLICT (dedupe_key) DO UPDATE SET title = EXCLUDED.title, updated_at = EXCLUDED.updated_at;
",
    )
    .expect("script");
    script
}

/// The cluster's pgbench, else the one on PATH.
pub(crate) fn pgbench_tool() -> PathBuf {
    [pg::bin_dir().join("pgbench"), PathBuf::from("pgbench")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// Each run generates 50 new items: a digest of ten services that each match all five
/// categories, for an env no earlier run used (the digest file is written before the clock
/// starts).
fn weekly_generation(bridge: &Bridge, root: &Path, runs: usize) -> Vec<Duration> {
    let reports = root.join("reports/platform");
    std::fs::create_dir_all(&reports).expect("mkdir");
    let mut v = Vec::with_capacity(runs);
    for r in 0..runs {
        let env = format!("gen{r}");
        let services: Vec<Value> = (0..10)
            .map(|s| {
                json!({"service": format!("svc-{s}"), "score": 90, "band": "critical",
                "requires_arch_review": true,
                "signals": {"recurrence_high_30d": 2, "regressions_30d": 3, "escalations_30d": 2,
                    "followups_overdue": 2, "dependency_high_30d": 1},
                "evidence_refs": {"alerts": [format!("al_{s}")]}})
            })
            .collect();
        let digest = json!({"week":"2026-48","env": env,"generated_at":"2026-11-23T06:00:04Z","services": services});
        std::fs::write(reports.join("2026-48.json"), digest.to_string()).expect("digest");
        let params = json!({"env": env}).to_string();
        let t = Instant::now();
        let out = call(bridge, "scheduler", "auto_generate_weekly", &params);
        v.push(t.elapsed());
        assert_eq!(out["created"], 50, "{out}");
    }
    v.sort();
    v
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn load_bridge(root: &Path, dsn: &str) -> Bridge {
    // SAFETY: the bench is single-threaded; `Settings::from_env` reads the DSN variable.
    unsafe { std::env::set_var("BACKLOG_POSTGRES_DSN", dsn) };
    let mut settings = Settings::from_env(repo_config(), root.to_owned()).expect("settings");
    settings.backend = Backend::Postgres;
    Bridge::load(settings).expect("bridge")
}

fn call(bridge: &Bridge, agent: &str, action: &str, params: &str) -> Value {
    let req = CallRequest {
        agent,
        tool: "backlog_tool",
        action,
        params,
    };
    bridge
        .call(&req)
        .unwrap_or_else(|e| panic!("{action} {params}: {e}"))
        .to_value()
}

fn p50(v: &[Duration]) -> Duration {
    v[v.len() / 2]
}

fn p99(v: &[Duration]) -> Duration {
    v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn report(name: &str, v: &[Duration], target: Option<Duration>) {
    let t = target
        .map(|t| format!("  (target p50 <= {t:?}: {})", verdict(p50(v) <= t)))
        .unwrap_or_default();
    println!("{name:<48} {:>10.1?} / {:>10.1?}{t}", p50(v), p99(v));
}
