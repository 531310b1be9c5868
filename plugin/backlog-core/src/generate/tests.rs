//! Generation over crafted digests in an in-memory reports directory and a [`MemStore`].

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::actions::execute;
use crate::digest::tests::{MemReports, platform, risk};
use crate::error::ErrorCode;
use crate::ids::SeqEntropy;
use crate::mem::MemStore;
use crate::model::Status;

/// Monday 2026-11-23 (week 2026-48), 06:20 UTC.
const NOW: &str = "2026-11-23T06:20:00Z";

struct World {
    store: MemStore,
    policy: Policy,
    entropy: SeqEntropy,
    now: DateTime<Utc>,
    reports: MemReports,
    grant_reports: bool,
}

impl World {
    fn new() -> Self {
        World {
            store: MemStore::new(),
            policy: Policy::default(),
            entropy: SeqEntropy::default(),
            now: time::parse_ts(NOW).unwrap_or_default(),
            reports: MemReports::new(),
            grant_reports: true,
        }
    }

    fn at(&mut self, ts: &str) -> &mut Self {
        self.now = time::parse_ts(ts).unwrap_or_default();
        self
    }

    /// Puts a platform digest of `week` for `prod` at `platform/<week>.json`.
    fn digest(&mut self, week: &str, services: Value) -> &mut Self {
        self.reports.put(
            &format!("platform/{week}.json"),
            platform(week, "prod", services),
        );
        self
    }

    fn call(&mut self, action: &str, params: Value) -> Result<Value> {
        let mut ctx = Ctx::new("scheduler", self.now, &self.policy, &mut self.entropy);
        if self.grant_reports {
            ctx = ctx.with_reports(&mut self.reports);
        }
        execute(&mut self.store, action, &params, &mut ctx)
    }

    #[track_caller]
    fn ok(&mut self, action: &str, params: Value) -> Value {
        self.call(action, params.clone())
            .unwrap_or_else(|e| panic!("{action} {params}: {e:?}"))
    }

    #[track_caller]
    fn weekly(&mut self) -> Value {
        self.ok("auto_generate_weekly", json!({}))
    }

    #[track_caller]
    fn fails(&mut self, action: &str, code: ErrorCode, message: &str) {
        match self.call(action, json!({})) {
            Ok(v) => panic!("{action} succeeded: {v}"),
            Err(e) => {
                assert_eq!(e.code, code, "{e}");
                assert!(
                    e.message.contains(message),
                    "{:?} lacks {message:?}",
                    e.message
                );
            }
        }
    }

    fn item(&self, id: &str) -> Item {
        self.store
            .items()
            .find(|i| i.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no item {id}"))
    }

    fn by_key(&self, key: &str) -> Option<Item> {
        self.store.items().find(|i| i.dedupe_key == key).cloned()
    }

    /// The items a result lists, in its order.
    fn items_of(&self, result: &Value) -> Vec<Item> {
        ids(result).iter().map(|id| self.item(id)).collect()
    }
}

fn ids(result: &Value) -> Vec<String> {
    result["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn svc(name: &str, score: i64, band: &str, signals: Value) -> Value {
    json!({"service": name, "score": score, "band": band, "signals": signals})
}

/// (created, updated, unchanged, capped) of a run result.
fn counts(r: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
    (n("created"), n("updated"), n("unchanged"), n("capped"))
}

#[test]
fn spec_example_item_and_result_shape() {
    let mut w = World::new();
    w.reports.put(
        "platform/2026-48.json",
        r#"{ "week": "2026-48", "env": "prod", "generated_at": "2026-11-23T06:00:04Z",
  "services": [ { "service": "gateway", "score": 82, "band": "critical", "requires_arch_review": true,
                  "signals": { "recurrence_high_30d": 2, "recurrence_warn_30d": 1, "regressions_30d": 3,
                               "escalations_30d": 2, "followups_created_30d": 4, "followups_overdue": 2,
                               "drift_failures_30d": 0, "dependency_high_30d": 1 },
                  "evidence_refs": { "alerts": ["al_1"], "incidents": ["inc_9"], "release_checks": [] } } ] }"#,
    );
    let r = w.weekly();
    let keys: Vec<&str> = r
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut want_keys = [
        "week",
        "env",
        "digest",
        "created",
        "updated",
        "unchanged",
        "capped",
        "items",
        "stale",
        "warnings",
    ];
    want_keys.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, want_keys);
    assert_eq!(r["week"], "2026-48");
    assert_eq!(r["env"], "prod");
    assert_eq!(r["digest"], "ops/reports/platform/2026-48.json");
    assert_eq!(r["stale"], false);
    assert_eq!(counts(&r), (5, 0, 0, 0));

    let items = w.items_of(&r);
    let cats: Vec<&str> = items.iter().map(|i| i.category.as_str()).collect();
    assert_eq!(
        cats,
        [
            "arch_review",
            "refactor",
            "slo_hardening",
            "cleanup_followups",
            "security"
        ]
    );
    let arch = &items[0];
    assert_eq!(
        arch.title,
        "[arch_review] gateway: architecture review (score 82, critical)"
    );
    assert_eq!(arch.description, "- requires_arch_review: true");
    assert_eq!(
        arch.dedupe_key,
        "platform_backlog:2026-48:prod:gateway:arch_review"
    );
    assert_eq!(arch.source, crate::model::Source::Digest);
    assert_eq!(arch.tags, ["auto", "week:2026-48"]);
    assert_eq!(arch.status, Status::Open);
    // P1 raised to P0 by the critical band; owner from the category; due today + 14.
    assert_eq!(
        (arch.priority, arch.owner.as_str(), arch.due_date.as_str()),
        (Priority::P0, "cto", "2026-12-07")
    );
    assert_eq!(
        serde_json::to_value(&arch.evidence_refs).unwrap_or_default(),
        json!({"alerts": ["al_1"], "incidents": ["inc_9"], "release_checks": []})
    );
    assert_eq!(
        Value::Object(arch.meta.clone()),
        json!({
            "score": 82, "band": "critical", "digest": "ops/reports/platform/2026-48.json",
            "signals": { "recurrence_high_30d": 2, "recurrence_warn_30d": 1, "regressions_30d": 3,
                         "escalations_30d": 2, "followups_created_30d": 4, "followups_overdue": 2,
                         "drift_failures_30d": 0, "dependency_high_30d": 1 }
        })
    );
    let refactor = &items[1];
    assert_eq!(
        refactor.title,
        "[refactor] gateway: refactor recurring regressions (score 82, critical)"
    );
    assert_eq!(
        refactor.description,
        "- regressions_30d: 3\n- recurrence_high_30d: 2"
    );
    assert_eq!(
        (
            refactor.priority,
            refactor.owner.as_str(),
            refactor.due_date.as_str()
        ),
        (Priority::P1, "oncall", "2026-12-23")
    );
    // Events are attributed to the calling agent.
    let evs = w.store.events(&arch.id, 10).unwrap_or_default();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].actor, "scheduler");
}

/// A single service with `signals`/`flags` produces items of exactly `want` categories.
#[track_caller]
fn check_rules(policy: &Policy, service: Value, want: &[&str]) {
    let mut w = World::new();
    w.policy = policy.clone();
    w.digest("2026-48", json!([service.clone()]));
    let r = w.weekly();
    let items = w.items_of(&r);
    let cats: Vec<&str> = items.iter().map(|i| i.category.as_str()).collect();
    assert_eq!(cats, want, "{service}");
}

#[test]
fn each_rule_at_its_threshold_and_one_below() {
    let p = Policy::default();
    let s = |signals: Value| svc("gw", 50, "medium", signals);
    let rows: Vec<(Value, &[&str])> = vec![
        (s(json!({})), &[]),
        (s(json!({"regressions_30d": 2})), &["refactor"]),
        (s(json!({"regressions_30d": 1})), &[]),
        (s(json!({"recurrence_high_30d": 1})), &["refactor"]),
        (s(json!({"recurrence_high_30d": 0})), &[]),
        (s(json!({"escalations_30d": 2})), &["slo_hardening"]),
        (s(json!({"escalations_30d": 1})), &[]),
        (s(json!({"followups_overdue": 1})), &["cleanup_followups"]),
        (s(json!({"followups_overdue": 0})), &[]),
        (s(json!({"dependency_high_30d": 1})), &["security"]),
        (s(json!({"dependency_high_30d": 0})), &[]),
        // Unknown signals are ignored; other signals do not count for a rule.
        (
            s(json!({"regressions_7d": 9, "recurrence_warn_30d": 5})),
            &[],
        ),
        (
            json!({"service": "gw", "score": 50, "band": "medium", "requires_arch_review": true}),
            &["arch_review"],
        ),
        (
            json!({"service": "gw", "score": 50, "band": "medium", "requires_arch_review": false}),
            &[],
        ),
        (
            s(json!({"regressions_30d": 5, "dependency_high_30d": 3})),
            &["refactor", "security"],
        ),
    ];
    for (service, want) in rows {
        check_rules(&p, service, want);
    }

    // band_at_least, and policy order decides item order.
    let p = Policy::from_json_str(
        r#"{"categories": {
            "hot": {"priority": "P2", "due_days": 3, "when": [{"band_at_least": "high"}]},
            "any": {"priority": "P3", "due_days": 3, "when": [{"band_at_least": "low"}]}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    check_rules(&p, svc("gw", 1, "critical", json!({})), &["hot", "any"]);
    check_rules(&p, svc("gw", 1, "high", json!({})), &["hot", "any"]);
    check_rules(&p, svc("gw", 1, "medium", json!({})), &["any"]);
    check_rules(&p, svc("gw", 1, "low", json!({})), &["any"]);
    let mut w = World::new();
    w.policy = p;
    w.digest("2026-48", json!([svc("gw", 1, "high", json!({}))]));
    let r = w.weekly();
    let hot = &w.items_of(&r)[0];
    assert_eq!(hot.description, "- band: high");
    assert_eq!(hot.title, "[hot] gw: hot (score 1, high)");
}

#[test]
fn critical_band_escalation() {
    // (category priority, band, escalate flag, want)
    let rows = [
        ("P2", "critical", true, Priority::P1),
        ("P1", "critical", true, Priority::P0),
        ("P0", "critical", true, Priority::P0),
        ("P3", "critical", true, Priority::P2),
        ("P2", "high", true, Priority::P2),
        ("P2", "critical", false, Priority::P2),
    ];
    for (prio, band, escalate, want) in rows {
        let p = Policy::from_json_str(&format!(
            r#"{{"categories": {{"c": {{"priority": "{prio}", "due_days": 1, "when": [{{"band_at_least": "low"}}]}}}},
                "generation": {{"escalate_on_critical_band": {escalate}}}}}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut w = World::new();
        w.policy = p;
        w.digest("2026-48", json!([svc("gw", 1, band, json!({}))]));
        let r = w.weekly();
        let got = w.items_of(&r)[0].priority;
        assert_eq!(got, want, "{prio} {band} escalate={escalate}");
    }
}

#[test]
fn ownership_precedence() {
    let mut w = World::new();
    w.policy
        .ownership
        .overrides
        .insert("gateway".into(), "team-gw".into());
    let flags = json!({"regressions_30d": 2});
    w.digest(
        "2026-48",
        json!([
            {"service": "gateway", "score": 90, "band": "low", "requires_arch_review": true, "signals": flags},
            {"service": "billing", "score": 80, "band": "low", "requires_arch_review": true, "signals": flags},
        ]),
    );
    let r = w.weekly();
    let got: Vec<(String, String, String)> = w
        .items_of(&r)
        .into_iter()
        .map(|i| (i.service, i.category, i.owner))
        .collect();
    let want: Vec<(String, String, String)> = [
        ("gateway", "arch_review", "team-gw"), // override > category owner
        ("gateway", "refactor", "team-gw"),    // override > default
        ("billing", "arch_review", "cto"),     // category owner > default
        ("billing", "refactor", "oncall"),     // default
    ]
    .iter()
    .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn services_by_score_then_name() {
    let mut w = World::new();
    let sig = json!({"dependency_high_30d": 1});
    w.reports.put(
        "platform/2026-48.json",
        platform(
            "2026-48",
            "prod",
            json!([
                {"service": "b", "score": 10, "band": "low", "signals": sig},
                {"service": "c", "score": 99.5, "band": "low", "signals": sig},
                {"service": "a", "score": 10, "band": "low", "signals": sig},
                {"service": "d", "score": -1, "band": "low", "signals": sig},
            ]),
        ),
    );
    let r = w.weekly();
    let order: Vec<String> = w.items_of(&r).into_iter().map(|i| i.service).collect();
    assert_eq!(order, ["c", "a", "b", "d"]);
    assert_eq!(
        w.by_key("platform_backlog:2026-48:prod:c:security")
            .map(|i| i.title),
        Some("[security] c: fix high-severity dependencies (score 99.5, low)".into())
    );
}

#[test]
fn cap_then_the_next_runs_pick_up_the_rest() {
    let mut w = World::new();
    w.policy.defaults.max_items_per_run = 2;
    let sig = json!({"dependency_high_30d": 1});
    let services: Vec<Value> = (1..=5)
        .map(|n| svc(&format!("s{n}"), 100 - n, "low", sig.clone()))
        .collect();
    w.digest("2026-48", Value::Array(services));

    let r1 = w.weekly();
    assert_eq!(counts(&r1), (2, 0, 0, 3));
    assert_eq!(w.store.len(), 2);
    let r2 = w.weekly();
    // Unchanged items do not use up the cap.
    assert_eq!(counts(&r2), (2, 0, 2, 1));
    let r3 = w.weekly();
    assert_eq!(counts(&r3), (1, 0, 4, 0));
    let writes = w.store.writes();
    let r4 = w.weekly();
    assert_eq!(counts(&r4), (0, 0, 5, 0));
    assert_eq!(ids(&r4), Vec::<String>::new());
    assert_eq!(w.store.writes(), writes, "an uncapped re-run wrote");
    let services: Vec<String> = [ids(&r1), ids(&r2), ids(&r3)]
        .concat()
        .iter()
        .map(|id| w.item(id).service)
        .collect();
    assert_eq!(services, ["s1", "s2", "s3", "s4", "s5"]);

    // A changed digest: updates count against the cap too.
    w.digest(
        "2026-48",
        Value::Array(
            (1..=5)
                .map(|n| svc(&format!("s{n}"), 100 - n, "high", sig.clone()))
                .collect(),
        ),
    );
    assert_eq!(counts(&w.weekly()), (0, 2, 0, 3));
    assert_eq!(counts(&w.weekly()), (0, 2, 2, 1));
    assert_eq!(counts(&w.weekly()), (0, 1, 4, 0));
    assert_eq!(counts(&w.weekly()), (0, 0, 5, 0));
}

#[test]
fn human_changes_survive_regeneration() {
    let mut w = World::new();
    let gw = |score: i64, regressions: u64| {
        json!([{"service": "gateway", "score": score, "band": "high",
                "signals": {"regressions_30d": regressions}, "evidence_refs": {"alerts": ["al_1"]}}])
    };
    w.digest("2026-48", gw(60, 2));
    let r = w.weekly();
    let id = ids(&r)[0].clone();
    // A person takes over.
    w.ok(
        "upsert",
        json!({"id": id, "owner": "alice", "priority": "P0", "due_date": "2026-11-30", "tags": ["auto", "week:2026-48", "mine"]}),
    );
    w.ok("set_status", json!({"id": id, "status": "in_progress"}));

    w.digest("2026-48", gw(75, 4));
    let r = w.weekly();
    assert_eq!(counts(&r), (0, 1, 0, 0));
    assert_eq!(ids(&r), std::slice::from_ref(&id));
    let it = w.item(&id);
    assert_eq!(
        (
            it.owner.as_str(),
            it.status,
            it.priority,
            it.due_date.as_str()
        ),
        ("alice", Status::InProgress, Priority::P0, "2026-11-30")
    );
    assert_eq!(
        it.title,
        "[refactor] gateway: refactor recurring regressions (score 75, high)"
    );
    assert_eq!(it.description, "- regressions_30d: 4");
    assert_eq!(it.meta["score"], 75);
    assert_eq!(it.tags, ["auto", "week:2026-48", "mine"]);
    // A terminal item is refreshed too, but stays terminal.
    w.ok("set_status", json!({"id": id, "status": "done"}));
    w.digest("2026-48", gw(80, 4));
    assert_eq!(counts(&w.weekly()), (0, 1, 0, 0));
    assert_eq!(w.item(&id).status, Status::Done);
    assert_eq!(counts(&w.weekly()), (0, 0, 1, 0));
}

#[test]
fn iso_weeks_at_year_boundaries() {
    let sig = json!({"dependency_high_30d": 1});
    // (now, digest week, want stale)
    let rows = [
        ("2026-12-31T10:00:00Z", "2026-53", false),
        ("2027-01-01T10:00:00Z", "2026-53", false),
        ("2027-01-03T23:59:59Z", "2026-53", false),
        ("2027-01-04T00:00:00Z", "2026-53", true),
        ("2027-01-04T00:00:00Z", "2027-01", false),
        ("2026-12-31T10:00:00Z", "2026-52", true),
    ];
    for (now, week, stale) in rows {
        let mut w = World::new();
        w.at(now)
            .digest(week, json!([svc("gw", 1, "low", sig.clone())]));
        let r = w.weekly();
        assert_eq!(
            (r["week"].as_str(), r["stale"].as_bool()),
            (Some(week), Some(stale)),
            "{now}"
        );
        let key = format!("platform_backlog:{week}:prod:gw:security");
        assert!(w.by_key(&key).is_some(), "{now}: no item {key}");
    }

    // Daily generation uses the week of the clock: 2027-01-01 is still 2026-53.
    let mut w = World::new();
    w.policy.generation.daily_from_risk_digest = true;
    w.at("2027-01-01T09:00:00Z");
    w.reports.put(
        "risk/2027-01-01.json",
        risk(
            "2027-01-01",
            "prod",
            json!([{"service": "gw", "score": 9, "band": "critical"}]),
        ),
    );
    w.ok("auto_generate_daily", json!({}));
    assert!(
        w.by_key("platform_backlog:2026-53:prod:gw:slo_hardening")
            .is_some()
    );
}

#[test]
fn previous_week_link() {
    let sig = json!({"dependency_high_30d": 1});
    let services = json!([svc("gw", 1, "low", sig.clone()), svc("db", 1, "low", sig)]);
    let mut w = World::new();
    w.at("2026-12-28T06:20:00Z")
        .digest("2026-53", services.clone());
    let r53 = w.weekly();
    let prev: Vec<Item> = w.items_of(&r53);
    assert!(
        prev.iter()
            .all(|i| !i.meta.contains_key("previous_item_id"))
    );
    // db's week-53 item gets closed: only gw's is linked.
    let db53 = prev
        .iter()
        .find(|i| i.service == "db")
        .map(|i| i.id.clone());
    w.ok("set_status", json!({"id": db53, "status": "done"}));
    let gw53 = prev
        .iter()
        .find(|i| i.service == "gw")
        .map(|i| i.id.clone());

    // 2027-01's previous week is 2026-53 (a 53-week year).
    w.at("2027-01-04T06:20:00Z").digest("2027-01", services);
    let r = w.weekly();
    assert_eq!(counts(&r), (2, 0, 0, 0));
    let gw = w.by_key("platform_backlog:2027-01:prod:gw:security");
    let db = w.by_key("platform_backlog:2027-01:prod:db:security");
    assert_eq!(
        gw.map(|i| i.meta.get("previous_item_id").cloned()),
        Some(gw53.map(Value::String))
    );
    assert_eq!(
        db.map(|i| i.meta.get("previous_item_id").cloned()),
        Some(None)
    );
    assert_eq!(time::previous_week("2026-01").as_deref(), Some("2025-52"));
}

#[test]
fn lookup_through_generation() {
    let sig = json!({"dependency_high_30d": 1});
    let mut w = World::new();
    // Env subdirectory first; the top level's later week and other envs are not used.
    w.reports
        .put(
            "platform/prod/2026-47.json",
            platform(
                "2026-47",
                "prod",
                json!([svc("sub", 1, "low", sig.clone())]),
            ),
        )
        .put(
            "platform/2026-48.json",
            platform(
                "2026-48",
                "prod",
                json!([svc("top", 1, "low", sig.clone())]),
            ),
        );
    let r = w.weekly();
    assert_eq!(r["digest"], "ops/reports/platform/prod/2026-47.json");
    assert_eq!(r["stale"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "warning: stale digest: generated from week 2026-47 (ops/reports/platform/prod/2026-47.json), expected week 2026-48"
        ])
    );
    assert_eq!(w.items_of(&r)[0].service, "sub");

    // Env mismatch is skipped (and logged) to the next-latest.
    let mut w = World::new();
    w.reports
        .put(
            "platform/2026-48.json",
            platform(
                "2026-48",
                "staging",
                json!([svc("stg", 1, "low", sig.clone())]),
            ),
        )
        .put(
            "platform/2026-47.json",
            platform(
                "2026-47",
                "prod",
                json!([svc("prd", 1, "low", sig.clone())]),
            ),
        )
        .put("platform/2026-49.md", "# later, but not a digest");
    let r = w.weekly();
    assert_eq!(r["week"], "2026-47");
    assert_eq!(w.items_of(&r)[0].service, "prd");
    // The skipped staging digest, then the stale week used.
    assert_eq!(w.reports.logs.len(), 2, "{:?}", w.reports.logs);
    assert!(w.reports.logs[1].starts_with("warning: stale digest: generated from week 2026-47"));
    // The staging digest is found for staging.
    let r = w.ok("auto_generate_weekly", json!({"env": "staging"}));
    assert_eq!(r["week"], "2026-48");
    assert_eq!(r["env"], "staging");
    assert!(
        w.by_key("platform_backlog:2026-48:staging:stg:security")
            .is_some()
    );
}

#[test]
fn no_usable_digest() {
    let mut w = World::new();
    w.fails(
        "auto_generate_weekly",
        ErrorCode::PreconditionFailed,
        NO_PLATFORM_DIGEST,
    );
    w.reports.put(
        "platform/2026-48.json",
        platform("2026-48", "staging", json!([])),
    );
    match w.call("auto_generate_weekly", json!({})) {
        Err(e) => assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::PreconditionFailed,
                "No platform digest found. Run architecture_pressure_tool.digest first."
            )
        ),
        Ok(v) => panic!("{v}"),
    }
    assert_eq!(w.store.writes(), 0);
    assert!(w.reports.logs[0].contains("its env is \"staging\""));
    w.policy.generation.daily_from_risk_digest = true;
    match w.call("auto_generate_daily", json!({})) {
        Err(e) => assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::PreconditionFailed,
                "No risk digest found. Run risk_history_tool.digest first."
            )
        ),
        Ok(v) => panic!("{v}"),
    }
}

#[test]
fn malformed_digest_writes_nothing() {
    let mut w = World::new();
    let sig = json!({"dependency_high_30d": 1});
    w.digest(
        "2026-48",
        json!([
            svc("a", 9, "low", sig.clone()),
            svc("b", 8, "low", sig.clone()),
            svc("c", 7, "low", sig.clone()),
            {"service": "d", "score": 6, "band": "severe", "signals": sig},
        ]),
    );
    w.fails(
        "auto_generate_weekly",
        ErrorCode::InvalidInput,
        "ops/reports/platform/2026-48.json: services[3].band: expected one of low, medium, high, critical",
    );
    assert_eq!((w.store.len(), w.store.writes()), (0, 0));

    // An item that would break a field rule (meta over 64 KiB) also fails before any write.
    let mut w = World::new();
    let huge: serde_json::Map<String, Value> = (0..4000)
        .map(|i| (format!("signal_with_a_long_name_{i:05}"), json!(1)))
        .collect();
    let mut sig_b = huge;
    sig_b.insert("dependency_high_30d".into(), json!(1));
    w.digest(
        "2026-48",
        json!([
            svc("a", 9, "low", sig.clone()),
            svc("b", 1, "low", Value::Object(sig_b))
        ]),
    );
    w.fails(
        "auto_generate_weekly",
        ErrorCode::InvalidInput,
        "ops/reports/platform/2026-48.json: service b: the generated item would be invalid: `meta` must be at most",
    );
    assert_eq!((w.store.len(), w.store.writes()), (0, 0));
}

#[test]
fn disabled_and_ungranted() {
    let mut w = World::new();
    w.digest(
        "2026-48",
        json!([svc("gw", 1, "low", json!({"dependency_high_30d": 1}))]),
    );
    w.policy.generation.weekly_from_pressure_digest = false;
    assert_eq!(
        w.weekly(),
        json!({"skipped": true, "reason": "disabled by policy"})
    );
    // Daily is off by default.
    assert_eq!(
        w.ok("auto_generate_daily", json!({})),
        json!({"skipped": true, "reason": "disabled by policy"})
    );
    assert_eq!(w.store.writes(), 0);
    // Without the reports grant: skipped still skips; an enabled run is forbidden.
    w.grant_reports = false;
    assert_eq!(w.weekly()["skipped"], true);
    w.policy.generation.weekly_from_pressure_digest = true;
    w.fails(
        "auto_generate_weekly",
        ErrorCode::Forbidden,
        "this call was granted no access to the reports directory",
    );
    w.policy.generation.daily_from_risk_digest = true;
    w.fails(
        "auto_generate_daily",
        ErrorCode::Forbidden,
        NO_REPORTS_GRANT,
    );
    // Params are checked.
    match w.call("auto_generate_weekly", json!({"env": "PROD"})) {
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidInput),
        Ok(v) => panic!("{v}"),
    }
}

#[test]
fn daily_merges_into_the_weekly_item() {
    let mut w = World::new();
    w.policy.generation.daily_from_risk_digest = true;
    // Weekly: gateway gets an slo_hardening item for the current week 2026-48.
    w.digest(
        "2026-48",
        json!([svc("gateway", 82, "high", json!({"escalations_30d": 2}))]),
    );
    let weekly = w.weekly();
    assert_eq!(counts(&weekly), (1, 0, 0, 0));
    let gw_key = "platform_backlog:2026-48:prod:gateway:slo_hardening";
    let before = w.by_key(gw_key).unwrap_or_else(|| panic!("no weekly item"));

    w.at("2026-11-25T09:00:00Z");
    w.reports.put(
        "risk/2026-11-25.json",
        risk(
            "2026-11-25",
            "prod",
            json!([
                {"service": "gateway", "score": 91, "band": "critical"},
                {"service": "billing", "score": 95, "band": "critical"},
                {"service": "auth", "score": 99, "band": "high"},
            ]),
        ),
    );
    let r = w.ok("auto_generate_daily", json!({}));
    let mut keys: Vec<&str> = r
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "capped",
            "created",
            "date",
            "digest",
            "env",
            "items",
            "stale",
            "unchanged",
            "updated",
            "warnings"
        ]
    );
    assert_eq!(r["date"], "2026-11-25");
    assert_eq!(r["digest"], "ops/reports/risk/2026-11-25.json");
    assert_eq!(r["stale"], false);
    // billing (95) first: created; gateway (91): merged into the weekly item; auth: not in bands.
    assert_eq!(counts(&r), (1, 1, 0, 0));
    let items = w.items_of(&r);
    assert_eq!(items[0].service, "billing");
    assert_eq!(items[1].id, before.id);

    let billing = &items[0];
    assert_eq!(
        billing.dedupe_key,
        "platform_backlog:2026-48:prod:billing:slo_hardening"
    );
    assert_eq!(billing.source, crate::model::Source::Risk);
    assert_eq!(billing.priority, Priority::P0); // P1 escalated by the critical band
    assert_eq!(billing.due_date, "2026-12-09");
    assert_eq!(
        billing.title,
        "[slo_hardening] billing: SLO hardening (risk score 95, critical)"
    );
    assert_eq!(billing.tags, ["auto", "week:2026-48", "risk"]);

    let gw = &items[1];
    assert_eq!(gw.source, crate::model::Source::Digest);
    assert_eq!(gw.title, before.title);
    assert_eq!(gw.description, before.description);
    assert_eq!(gw.priority, before.priority);
    assert_eq!(gw.meta["score"], 82);
    assert_eq!(
        gw.meta["risk"],
        json!({"date": "2026-11-25", "score": 91, "band": "critical", "digest": "ops/reports/risk/2026-11-25.json"})
    );
    assert_eq!(gw.tags, ["auto", "week:2026-48", "risk"]);

    // Re-runs of either generator change nothing: they do not undo each other.
    assert_eq!(
        counts(&w.ok("auto_generate_daily", json!({}))),
        (0, 0, 2, 0)
    );
    assert_eq!(counts(&w.weekly()), (0, 0, 1, 0));
    assert_eq!(w.item(&before.id).meta["risk"]["score"], 91);
    // A stale risk digest says so.
    w.at("2026-11-26T09:00:00Z");
    let r = w.ok("auto_generate_daily", json!({}));
    assert_eq!(r["stale"], true);
    assert_eq!(
        r["warnings"],
        json!([
            "warning: stale digest: generated from date 2026-11-25 (ops/reports/risk/2026-11-25.json), expected date 2026-11-26"
        ])
    );
}

#[test]
fn generation_never_adopts_an_item_of_another_env_and_caps_digest_evidence() {
    let mut w = World::new();
    w.digest(
        "2026-48",
        json!([svc(
            "gateway",
            90,
            "critical",
            json!({"dependency_high_30d": 1})
        )]),
    );
    // An item of env `dev` under prod's generated key (only an admin could make it).
    let key = "platform_backlog:2026-48:prod:gateway:security";
    let params = json!({"env": "dev", "service": "gateway", "category": "security",
                            "title": "elsewhere", "dedupe_key": key});
    let mut ctx = Ctx::new("operator", w.now, &w.policy, &mut w.entropy).with_reserved_keys(true);
    let made = execute(&mut w.store, "create", &params, &mut ctx).unwrap_or_else(|e| panic!("{e}"));
    let before = w.store.writes();
    w.fails(
        "auto_generate_weekly",
        ErrorCode::Conflict,
        "is in env dev, not prod; generation does not adopt it",
    );
    assert_eq!(w.store.writes(), before, "nothing written");
    assert_eq!(w.item(made["id"].as_str().unwrap_or_default()).env, "dev");

    // Digest evidence over the item limits is refused, naming the digest.
    let mut w = World::new();
    let ids: Vec<String> = (0..1001).map(|i| format!("al_{i}")).collect();
    let mut s = svc("gateway", 90, "critical", json!({"dependency_high_30d": 1}));
    s["evidence_refs"] = json!({ "alerts": ids });
    w.digest("2026-48", json!([s]));
    w.fails(
        "auto_generate_weekly",
        ErrorCode::InvalidInput,
        "must hold at most 1000 ids, got 1001",
    );
}
