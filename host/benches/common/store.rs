//! What the benches share: a JSONL store generated without a store (`generate`), and the
//! timing helpers (`measure`, `measure_turns`, `pct`).
#![allow(dead_code)] // each bench uses its part

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

/// The id of generated item `i`.
pub fn item_id(i: usize) -> String {
    format!("bl_{i:012x}")
}

/// Writes `n` items (and one `created` event each) as the store would, without a store.
pub fn generate(dir: &Path, n: usize) {
    generate_versions(dir, n, 1)
}

/// Writes `n` items, each as `versions` successive lines, and one event per line.
pub fn generate_versions(dir: &Path, n: usize, versions: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut items =
        std::io::BufWriter::new(std::fs::File::create(dir.join("items.jsonl")).expect("items"));
    let mut events =
        std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl")).expect("events"));
    let statuses = ["open", "in_progress", "blocked", "done", "canceled"];
    let envs = ["prod", "staging", "dev"];
    for i in 0..n {
        let id = item_id(i);
        let ts = "2026-11-01T06:20:00.000000Z";
        let item = json!({
            "id": id, "created_at": ts, "updated_at": ts, "env": envs[i % 3],
            "service": format!("svc-{}", i % 97), "category": "refactor",
            "title": format!("Refactor hot path #{i}"),
            "description": "- regressions_30d: 3\n- recurrence_high_30d: 1",
            "priority": format!("P{}", i % 4), "status": statuses[i % 5], "owner": "oncall",
            "due_date": format!("2026-12-{:02}", 1 + i % 28), "source": "digest",
            "dedupe_key": format!("platform_backlog:2026-48:prod:svc-{i}:refactor"),
            "evidence_refs": {"alerts": [format!("al_{i}")], "incidents": []},
            "tags": ["auto", "week:2026-48"], "meta": {"score": i % 100, "band": "high"},
        });
        let event = json!({"id": format!("ev_{i:012x}"), "item_id": id, "ts": ts, "type": "created",
            "actor": "scheduler", "message": "", "meta": {}});
        for v in 0..versions {
            writeln!(items, "{item}").expect("write");
            let event = if v == 0 {
                event.clone()
            } else {
                let mut e = event.clone();
                e["id"] = json!(format!("ev_{:012x}", (v << 40) + i));
                e["type"] = json!("updated");
                e
            };
            writeln!(events, "{event}").expect("write");
        }
    }
    items.flush().expect("flush");
    events.flush().expect("flush");
}

/// Runs `f` `n` times; the durations, sorted.
pub fn measure(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

/// [`measure`] of several paths in turns (each path once, then again, `n` times), so a drift
/// of the machine's speed and the caches the paths evict from each other weigh on all alike,
/// and their ratios hold. Each path is handed the turn's number, from 1.
///
/// The paths of one turn work on the same input (the same item), and the first to touch it
/// pays for bringing it into the caches: each turn starts with the next path, so every path
/// goes first in as many turns as the others (in a fixed order the first path paid ~1 µs a
/// `get` more than the others at 10k items).
pub fn measure_turns<const N: usize>(
    n: usize,
    paths: [&mut dyn FnMut(usize); N],
) -> [Vec<Duration>; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(n));
    for turn in 1..=n {
        for i in 0..N {
            let at = (turn + i) % N;
            let t = Instant::now();
            paths[at](turn);
            times[at].push(t.elapsed());
        }
    }
    for v in &mut times {
        v.sort();
    }
    times
}

pub fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}
