//! Governance through the host: weekly generation from the example digest, triage surviving
//! re-generation, the dashboard, cleanup (and its crash safety), policy and digest errors.
//! The rule tables themselves are unit-tested in backlog-core (generate, dashboard, digest).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use serde_json::{Value, json};

use crate::util::{Backend, Env, Run};

crate::backend_suite!(
    weekly_generation_triage_regeneration_and_dashboard,
    missing_or_foreign_digest_is_precondition_failed_and_writes_nothing,
    malformed_digest_names_file_and_field_and_writes_nothing,
    policy_overrides_and_policy_errors,
    cleanup_removes_only_old_terminal_items_and_their_events,
    daily_generation_merges_into_the_weekly_key_when_enabled,
);

const NO_DIGEST: &str = "No platform digest found. Run architecture_pressure_tool.digest first.";

fn example_digest() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reports/platform/2026-48.json"),
    )
    .unwrap()
}

fn with_digest(env: &Env, rel: &str, text: &str) {
    let path = env.ops.join("reports").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn admin(env: &Env, action: &str, params: Value) -> Run {
    env.call("scheduler", "backlog_tool", action, &params)
}

fn weekly_generation_triage_regeneration_and_dashboard(backend: Backend) {
    let env = Env::on(backend);
    with_digest(&env, "platform/2026-48.json", &example_digest());
    let run = admin(&env, "auto_generate_weekly", json!({"env":"prod"}));
    assert_eq!(run.code, 0, "{run:?}");
    let first = run.json();
    assert_eq!(first["week"], "2026-48");
    assert_eq!(first["digest"], "ops/reports/platform/2026-48.json");
    // gateway matches all five categories, billing refactor, search slo + followups.
    assert_eq!(
        (first["created"].clone(), first["updated"].clone()),
        (json!(8), json!(0))
    );
    assert_eq!(
        (first["capped"].clone(), first["stale"].clone()),
        (json!(0), json!(false))
    );

    let items = env.ok("list", json!({"service":"gateway","limit":10}))["items"].clone();
    let by_cat = |c: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["category"] == c)
            .unwrap()
            .clone()
    };
    let arch = by_cat("arch_review");
    assert_eq!(
        arch["dedupe_key"],
        "platform_backlog:2026-48:prod:gateway:arch_review"
    );
    assert_eq!(
        (arch["priority"].clone(), arch["owner"].clone()),
        (json!("P0"), json!("cto"))
    ); // P1 escalated
    assert_eq!(by_cat("refactor")["priority"], "P1"); // P2 escalated
    assert_eq!(arch["source"], "digest");
    assert_eq!(arch["tags"], json!(["auto", "week:2026-48"]));
    assert!(
        arch["title"].as_str().unwrap().contains("gateway"),
        "{arch}"
    );

    // Triage: a person moves the item, sets an owner and a priority.
    let id = arch["id"].as_str().unwrap();
    env.ok(
        "set_status",
        json!({"id": id, "status":"in_progress","comment":"taking it"}),
    );
    env.ok(
        "upsert",
        json!({"id": id, "owner":"platform-team","priority":"P1"}),
    );

    // Re-generation on the same digest: nothing created or updated, triage kept.
    let again = admin(&env, "auto_generate_weekly", json!({"env":"prod"})).json();
    assert_eq!(
        (again["created"].clone(), again["updated"].clone()),
        (json!(0), json!(0)),
        "{again}"
    );
    let kept = env.ok("get", json!({"id": id}));
    assert_eq!(
        (
            kept["owner"].clone(),
            kept["status"].clone(),
            kept["priority"].clone()
        ),
        (json!("platform-team"), json!("in_progress"), json!("P1"))
    );

    let dash = env
        .call(
            "viewer",
            "backlog_tool",
            "dashboard",
            &json!({"env":"prod"}),
        )
        .json();
    assert_eq!(dash["backend"], backend.store_name());
    assert_eq!(dash["total"], 8);
    assert_eq!(
        dash["status_counts"],
        json!({"open":7,"in_progress":1,"blocked":0,"done":0,"canceled":0})
    );
    assert_eq!(dash["overdue_count"], 0);
    assert_eq!(
        dash["top_services"][0],
        json!({"service":"gateway","count":5})
    );
    assert_eq!(dash["alerts"], json!([]));
}

fn missing_or_foreign_digest_is_precondition_failed_and_writes_nothing(backend: Backend) {
    let env = Env::on(backend);
    let run = admin(&env, "auto_generate_weekly", json!({}));
    assert_eq!(
        (run.code, run.json()["code"].clone()),
        (1, json!("precondition_failed"))
    );
    assert_eq!(run.json()["error"], NO_DIGEST);
    with_digest(
        &env,
        "platform/2026-48.json",
        &example_digest().replace("\"prod\"", "\"staging\""),
    );
    let run = admin(&env, "auto_generate_weekly", json!({"env":"prod"}));
    assert_eq!(run.json()["error"], NO_DIGEST, "{run:?}");
    assert_eq!(env.state(), Vec::<Value>::new());
}

fn malformed_digest_names_file_and_field_and_writes_nothing(backend: Backend) {
    let env = Env::on(backend);
    env.ok(
        "create",
        json!({"env":"prod","service":"a","category":"refactor","title":"t"}),
    );
    let before = env.state();
    with_digest(
        &env,
        "platform/2026-48.json",
        &example_digest().replace("\"high\"", "\"severe\""),
    );
    let run = admin(&env, "auto_generate_weekly", json!({"env":"prod"}));
    let err = run.json();
    assert_eq!(err["code"], "invalid_input", "{run:?}");
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains("ops/reports/platform/2026-48.json") && msg.contains("services[1].band"),
        "{msg}"
    );
    assert_eq!(env.state(), before);
}

fn policy_overrides_and_policy_errors(backend: Backend) {
    let env = Env::on(backend);
    with_digest(&env, "platform/2026-48.json", &example_digest());
    std::fs::write(
        env.config.join("backlog_policy.yml"),
        "ownership:\n  overrides:\n    gateway: gateway-team\ndefaults:\n  max_items_per_run: 3\n",
    )
    .unwrap();
    let run = admin(&env, "auto_generate_weekly", json!({})).json();
    assert_eq!(
        (run["created"].clone(), run["capped"].clone()),
        (json!(3), json!(5)),
        "{run}"
    );
    let rest = admin(&env, "auto_generate_weekly", json!({})).json();
    assert_eq!(
        (rest["created"].clone(), rest["capped"].clone()),
        (json!(3), json!(2)),
        "{rest}"
    );
    let items = env.ok("list", json!({"service":"gateway"}));
    for item in items["items"].as_array().unwrap() {
        assert_eq!(
            item["owner"], "gateway-team",
            "override beats category owner: {item}"
        );
    }
    std::fs::write(
        env.config.join("backlog_policy.yml"),
        "defaults:\n  retention_days: -3\n",
    )
    .unwrap();
    let bad = admin(&env, "dashboard", json!({}));
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("backlog_policy.yml") && bad.stderr.contains("defaults.retention_days"),
        "{}",
        bad.stderr
    );
    std::fs::write(
        env.config.join("backlog_policy.yml"),
        "generation:\n  weekly_from_pressure_digest: false\n",
    )
    .unwrap();
    let skipped = admin(&env, "auto_generate_weekly", json!({}));
    assert_eq!(skipped.code, 0);
    assert_eq!(
        skipped.json(),
        json!({"skipped":true,"reason":"disabled by policy"})
    );
}

#[test]
fn generation_needs_admin_and_reads_reports_only_then() {
    let env = Env::new();
    with_digest(&env, "platform/2026-48.json", &example_digest());
    let viewer = env.call("viewer", "backlog_tool", "auto_generate_weekly", &json!({}));
    assert_eq!(viewer.json()["code"], "forbidden");
    assert!(viewer.stdout.contains("tools.backlog.admin"));
}

/// Writes a store of `live` open items and `old` done items last touched in 2026-01.
fn old_store(dir: &Path, live: usize, old: usize) -> (HashSet<String>, HashSet<String>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut items =
        std::io::BufWriter::new(std::fs::File::create(dir.join("items.jsonl")).unwrap());
    let mut events =
        std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl")).unwrap());
    let (mut keep, mut gone) = (HashSet::new(), HashSet::new());
    for i in 0..live + old {
        let id = format!("bl_{i:012x}");
        let (status, ts) = if i < live {
            ("open", "2026-11-01T00:00:00.000000Z")
        } else {
            ("done", "2026-01-02T00:00:00.000000Z")
        };
        let item = json!({"id": id, "created_at": ts, "updated_at": ts, "env":"prod", "service": format!("s{}", i % 13),
            "category":"refactor","title": format!("item {i}"),"description":"","priority":"P2","status": status,
            "owner":"oncall","due_date":"2026-12-01","source":"manual","dedupe_key": format!("manual:{id}"),
            "evidence_refs":{},"tags":[],"meta":{}});
        // Two versions per item: cleanup also drops superseded lines.
        writeln!(items, "{item}").unwrap();
        writeln!(items, "{item}").unwrap();
        writeln!(events, "{}", json!({"id": format!("ev_{i:012x}"), "item_id": id, "ts": ts, "type":"created","actor":"operator","message":"","meta":{}})).unwrap();
        if i < live {
            keep.insert(id)
        } else {
            gone.insert(id)
        };
    }
    (keep, gone)
}

fn ids_in_store(env: &Env) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut offset = 0;
    loop {
        let page = env.ok("list", json!({"limit": 1000, "offset": offset}));
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => return ids,
        }
    }
}

fn cleanup_removes_only_old_terminal_items_and_their_events(backend: Backend) {
    let env = Env::on(backend);
    let seed = env.tmp.path().join("seed");
    let (keep, gone) = old_store(&seed, 30, 20);
    env.seed_jsonl(&seed);
    let mut dry = admin(&env, "cleanup", json!({"dry_run": true})).json();
    // A dry run names what would go.
    let shown: HashSet<String> = dry
        .as_object_mut()
        .unwrap()
        .remove("would_delete")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, gone);
    assert_eq!(
        dry,
        json!({"deleted": 20, "dry_run": true, "cutoff": "2026-05-31T10:00:00.000000Z"})
    );
    assert_eq!(ids_in_store(&env).len(), 50, "dry run changes nothing");
    let none = admin(&env, "cleanup", json!({"retention_days": 400})).json();
    assert_eq!(none["deleted"], 0);
    let done = admin(&env, "cleanup", json!({"retention_days": 180})).json();
    assert_eq!(done["deleted"], 20);
    assert_eq!(ids_in_store(&env), keep);
    if let Some(db) = &env.db {
        assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "30");
        assert_eq!(db.scalar("SELECT count(*) FROM backlog_events"), "30");
        return;
    }
    let items = std::fs::read_to_string(env.backlog_dir().join("items.jsonl")).unwrap();
    assert_eq!(
        items.lines().count(),
        30,
        "superseded lines dropped: one line per live item"
    );
    let events = std::fs::read_to_string(env.backlog_dir().join("events.jsonl")).unwrap();
    assert!(
        gone.iter().all(|id| !events.contains(id.as_str())),
        "events of deleted items go"
    );
    assert_eq!(events.lines().count(), 30);
}

#[test]
fn kill_9_during_cleanup_leaves_the_old_or_the_new_store() {
    let env = Env::new();
    let pristine = env.tmp.path().join("pristine");
    let (keep, gone) = old_store(&pristine, 3000, 3000);
    let all: HashSet<String> = keep.union(&gone).cloned().collect();
    let restore = || {
        let _ = std::fs::remove_dir_all(env.backlog_dir());
        std::fs::create_dir_all(env.backlog_dir()).unwrap();
        for f in ["items.jsonl", "events.jsonl"] {
            std::fs::copy(pristine.join(f), env.backlog_dir().join(f)).unwrap();
        }
    };
    let cleanup = || {
        env.cmd()
            .args(["call", "backlog_tool", "cleanup", "--agent", "scheduler"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long one whole cleanup process takes, to spread the kill points over it.
    restore();
    let t = Instant::now();
    assert!(cleanup().wait().unwrap().success());
    let whole = t.elapsed();
    assert_eq!(ids_in_store(&env), keep);
    let rounds = 24;
    let mut outcomes = (0, 0);
    for round in 0..rounds {
        restore();
        let mut child = cleanup();
        let at = whole.mul_f64(round as f64 / rounds as f64);
        let deadline = Instant::now() + at;
        // Not synchronization: the kill point itself is what varies from round to round.
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        child.wait().unwrap();
        let ids = ids_in_store(&env);
        if ids == all {
            outcomes.0 += 1;
        } else {
            assert_eq!(
                ids, keep,
                "round {round}: neither the old nor the new store"
            );
            outcomes.1 += 1;
        }
        for f in ["items.jsonl", "events.jsonl"] {
            let text = std::fs::read_to_string(env.backlog_dir().join(f)).unwrap();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "round {round}: {f} is complete"
            );
        }
    }
    assert!(
        outcomes.0 > 0,
        "some kills landed before the rewrite: {outcomes:?}"
    );
}

fn daily_generation_merges_into_the_weekly_key_when_enabled(backend: Backend) {
    let env = Env::on(backend);
    let risk = json!({"date":"2026-11-27","env":"prod","services":[
        {"service":"gateway","score":91,"band":"critical"},
        {"service":"billing","score":40,"band":"medium"}]});
    with_digest(&env, "risk/2026-11-27.json", &risk.to_string());
    let off = admin(&env, "auto_generate_daily", json!({})).json();
    assert_eq!(off, json!({"skipped":true,"reason":"disabled by policy"}));
    std::fs::write(
        env.config.join("backlog_policy.yml"),
        "generation:\n  daily_from_risk_digest: true\n",
    )
    .unwrap();
    let run = admin(&env, "auto_generate_daily", json!({})).json();
    assert_eq!(
        (run["date"].clone(), run["created"].clone()),
        (json!("2026-11-27"), json!(1)),
        "{run}"
    );
    let item = env.ok("get", json!({"id": run["items"][0]}));
    assert_eq!(
        item["dedupe_key"],
        "platform_backlog:2026-48:prod:gateway:slo_hardening"
    );
    assert_eq!(
        (item["source"].clone(), item["priority"].clone()),
        (json!("risk"), json!("P0"))
    );
    // The weekly run on the same week merges into that item instead of making another.
    with_digest(&env, "platform/2026-48.json", &example_digest());
    let weekly = admin(&env, "auto_generate_weekly", json!({})).json();
    assert_eq!(weekly["created"], 7, "{weekly}");
    assert_eq!(weekly["updated"], 1, "{weekly}");
}
