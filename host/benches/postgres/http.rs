//! The router figures of the Postgres backend: the real `backlog-bridge serve` process (default
//! `--workers 4`) over loopback, a Rust load generator (one thread and one keep-alive
//! connection per client), and pgbench on the same server as the yardstick.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::{cpu, measure, p50, p99, pg, pgbench_script, pgbench_tool, verdict};
use crate::kit::{self, Load, client};

/// One request: a POST with a body (the operator), a GET without (the viewer); its status.
fn request(http: &ureq::Agent, base: &str, path: &str, body: Option<String>) -> u16 {
    let method = if body.is_some() { "POST" } else { "GET" };
    kit::request(http, base, method, path, body)
}

/// An upsert of a new key, in one of the fill's 97 services (spread as pgbench's rows are).
fn upsert_body(key: String) -> String {
    let h = key.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let service = format!("svc-{}", h % 97);
    json!({"tool":"backlog_tool","action":"upsert","dedupe_key": key,
        "env":"prod","service": service,"category":"refactor","title":"bench upsert"})
    .to_string()
}

/// `clients` connections send requests from `next(client, i)` (path, body) for `secs`, from
/// one thread (`kit::lean_load`: a load generator about as cheap as pgbench's client).
fn load(
    base: &str,
    clients: usize,
    secs: Duration,
    next: impl Fn(usize, usize) -> (String, Option<String>) + Sync,
) -> Load {
    kit::lean_load(base, clients, secs, |c, i| {
        let (path, body) = next(c, i);
        (if body.is_some() { "POST" } else { "GET" }, path, body)
    })
}

/// pgbench's tps for the single-row upsert at `clients` clients for `secs`.
fn pgbench_tps(db: &pg::TestDb, root: &Path, clients: usize, secs: Duration) -> f64 {
    let script = pgbench_script(root);
    let out = Command::new(pgbench_tool())
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-T", &secs.as_secs().max(1).to_string()])
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
        .arg(&db.name)
        .current_dir(root)
        .output()
        .expect("pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {stdout}"))
}

/// The Postgres rows: upsert at 1 connection (p50 vs pgbench's single-row latency),
/// upsert at 32 connections (req/s vs pgbench's tps at 32 clients), dashboard at 32
/// connections (p50 and req/s).
pub fn bench(
    db: &pg::TestDb,
    root: &Path,
    n: usize,
    iters: usize,
    (pgbench_p50, pgbench_server): (Duration, Duration),
) -> (Duration, f64, f64, Duration, f64) {
    let secs = Duration::from_secs(
        std::env::var("BENCH_ROUTER_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let clients = 32;
    let server = kit::start(
        root,
        &[
            ("BACKLOG_BACKEND", "postgres"),
            ("BACKLOG_POSTGRES_DSN", &db.dsn),
        ],
    );
    let base = server.base.as_str();
    let http = client();
    // Warm the instances of both grant sets (and connections) before the clock runs.
    for i in 0..8 {
        request(&http, base, "/v1/backlog/dashboard?env=prod", None);
        request(
            &http,
            base,
            "/v1/tools/execute",
            Some(upsert_body(format!("http:warm:{n}:{i}"))),
        );
    }
    // The dashboard first: the upsert loads below add items to env prod.
    let dash = load(base, clients, secs, |_, _| {
        ("/v1/backlog/dashboard?env=prod".to_owned(), None)
    });
    let big = n >= 100_000;
    let dash_p50 = p50(&dash.latencies);
    // The p50 target is the host's own (`dashboard env=prod` above); at 32 connections the
    // p50 is the queue's: 32 / throughput.
    let targets = if big {
        format!(
            "  (target >= 1000 req/s: {})",
            verdict(dash.rps() >= 1000.0)
        )
    } else {
        String::new()
    };
    println!(
        "{:<48} {:>8.0} req/s  p50 {:>9.1?}  errors {}{targets}",
        "HTTP dashboard env=prod, 32 connections",
        dash.rps(),
        dash_p50,
        dash.errors,
    );
    let postmaster = postmaster(db);
    let router = server.child.id().to_string();
    // This process first: the others' readings scan /proc, which is not the load's CPU.
    let spent = || {
        let load = cpu::of("self");
        let router = cpu::of(&router);
        let backends = cpu::backends(postmaster, &db.name);
        Reading {
            postgres: cpu::tree(postmaster),
            router,
            load,
            backends,
        }
    };
    let before = spent();
    let mut k = 0;
    // At least ~1,000 upserts: a second or more of CPU to count in 10 ms ticks.
    let one = measure(iters.max(1000), || {
        k += 1;
        let status = request(
            &http,
            base,
            "/v1/tools/execute",
            Some(upsert_body(format!("http:one:{n}:{k}"))),
        );
        assert_eq!(status, 200);
    });
    let ratio1 = p50(&one).as_secs_f64() / pgbench_p50.as_secs_f64();
    println!(
        "{:<48} {:>10.1?} / {:>10.1?}  pgbench p50 {:>8.1?}  ratio {ratio1:.2}x  (target <= 2x: {})",
        "HTTP upsert, 1 connection (p50 / p99)",
        p50(&one),
        p99(&one),
        pgbench_p50,
        verdict(ratio1 <= 2.0)
    );
    let after = spent();
    let alone = after.since(&before, one.len());
    // The router's connections are long-lived backends: what they spent is the server's
    // work on the requests themselves, without its background processes.
    let serving = alone.per(after.backends.saturating_sub(before.backends));
    alone.report("  CPU per upsert (1 connection)", "router", "client");
    // At one connection nothing overlaps: Postgres's own time per upsert is on the critical
    // path, whatever the router does, as pgbench's is on its latency.
    println!(
        "{:<48} {:>10.1?}  vs {:.1?} per pgbench transaction (1 client): {:.2}x",
        "  Postgres's CPU per upsert, 1 connection",
        alone.per(alone.postgres),
        pgbench_server,
        alone.per(alone.postgres).as_secs_f64() / pgbench_server.as_secs_f64(),
    );
    println!(
        "{:<48} {:>10.1?}  = {:.2}x pgbench's p50 (its backend alone, before any router time)",
        "  the client's backend's CPU per upsert",
        serving,
        serving.as_secs_f64() / pgbench_p50.as_secs_f64(),
    );

    let before = spent();
    let many = load(base, clients, secs, |c, i| {
        (
            "/v1/tools/execute".to_owned(),
            Some(upsert_body(format!("http:many:{n}:{c}:{i}"))),
        )
    });
    let ours = spent().since(&before, many.requests);
    let before = spent();
    let tps = pgbench_tps(db, root, clients, secs);
    let after = spent();
    // pgbench is this process's waited-for child: its CPU is the load generator's.
    let theirs = Spent {
        postgres: after.postgres.saturating_sub(before.postgres),
        client: Duration::ZERO,
        load: after.load.children.saturating_sub(before.load.children),
        requests: (tps * secs.as_secs().max(1) as f64) as usize,
    };
    let share = many.rps() / tps;
    println!(
        "{:<48} {:>8.0} req/s  p50 {:>9.1?}  errors {}  pgbench {tps:.0} tps  ratio {share:.3}  (target >= 0.40: {})",
        "HTTP upsert, 32 connections",
        many.rps(),
        p50(&many.latencies),
        many.errors,
        verdict(share >= 0.40)
    );
    ours.report(
        "  CPU per upsert (32 connections)",
        "router",
        "load generator",
    );
    theirs.report("  CPU per pgbench transaction (32 clients)", "", "pgbench");
    // The most the machine allows if the router cost nothing: its cores spent on Postgres's
    // share of an upsert and the load generator's only.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ceiling = cores / (ours.per(ours.postgres) + ours.per(ours.load)).as_secs_f64();
    println!(
        "{:<48} {ceiling:>8.0} req/s  = ratio {:.3} of pgbench ({cores} cores / (Postgres + load generator) per upsert)",
        "  ceiling with a router that costs nothing",
        ceiling / tps,
    );
    kit::print_rss(&server, &format!("router RSS at {n} items (Postgres)"));
    drop(server);

    // The same load on the `auto` backend (the default): Postgres with the JSONL directory as
    // fallback, whose lock a write on Postgres must not take.
    let server = kit::start(
        root,
        &[
            ("BACKLOG_BACKEND", "auto"),
            ("BACKLOG_POSTGRES_DSN", &db.dsn),
        ],
    );
    let base = server.base.as_str();
    for i in 0..8 {
        request(
            &http,
            base,
            "/v1/tools/execute",
            Some(upsert_body(format!("http:auto-warm:{n}:{i}"))),
        );
    }
    let auto = load(base, clients, secs, |c, i| {
        (
            "/v1/tools/execute".to_owned(),
            Some(upsert_body(format!("http:auto:{n}:{c}:{i}"))),
        )
    });
    println!(
        "{:<48} {:>8.0} req/s  p50 {:>9.1?}  errors {}  {:.2}x the postgres backend's",
        "HTTP upsert, 32 connections, auto backend",
        auto.rps(),
        p50(&auto.latencies),
        auto.errors,
        auto.rps() / many.rps(),
    );
    drop(server);
    (p50(&one), many.rps(), tps, dash_p50, dash.rps())
}

/// The CPU counters read around a load.
struct Reading {
    /// The Postgres server's whole process tree.
    postgres: Duration,
    router: cpu::Cpu,
    /// This process: the load generator (and pgbench, as its child).
    load: cpu::Cpu,
    /// The server's backends of the bench's database.
    backends: Duration,
}

impl Reading {
    /// What Postgres, the router and the load generator spent since `before`, on `requests`.
    fn since(&self, before: &Reading, requests: usize) -> Spent {
        Spent {
            postgres: self.postgres.saturating_sub(before.postgres),
            client: self.router.own.saturating_sub(before.router.own),
            load: self.load.own.saturating_sub(before.load.own),
            requests,
        }
    }
}

/// CPU spent during a load, and on how many requests.
struct Spent {
    postgres: Duration,
    /// The router (none for pgbench: its client is the load generator).
    client: Duration,
    load: Duration,
    requests: usize,
}

impl Spent {
    fn per(&self, total: Duration) -> Duration {
        total / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }

    fn report(&self, what: &str, client: &str, load: &str) {
        let client = if client.is_empty() {
            String::new()
        } else {
            format!(", {client} {:.1?}", self.per(self.client))
        };
        println!(
            "{what:<48} Postgres {:.1?}{client}, {load} {:.1?}",
            self.per(self.postgres),
            self.per(self.load),
        );
    }
}

/// The cluster's postmaster: the parent of a backend. The connection stays open while the
/// parent is read: its backend exits with it.
pub fn postmaster(db: &pg::TestDb) -> u32 {
    let mut client = db.client();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("pg_backend_pid")
        .get(0);
    let parent = u32::try_from(pid).ok().and_then(cpu::parent);
    drop(client);
    parent.expect("the backend's parent")
}
