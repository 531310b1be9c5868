//! The dashboard over a hand-computed dataset: every key checked.

use serde_json::{Map, Value, json};

use super::*;
use crate::actions::execute;
use crate::ctx::Ctx;
use crate::ids::SeqEntropy;
use crate::mem::MemStore;
use crate::policy::Policy;
use crate::store::BacklogStore;
use crate::time;

const NOW: &str = "2026-03-10T12:00:00.000000Z";

fn id(n: u32) -> String {
    format!("bl_{n:012x}")
}

fn item(n: u32, env: &str, service: &str, p: Priority, s: Status, due: &str) -> Item {
    Item {
        id: id(n),
        created_at: "2026-01-01T00:00:00.000000Z".into(),
        updated_at: "2026-01-01T00:00:00.000000Z".into(),
        env: env.into(),
        service: service.into(),
        category: "refactor".into(),
        title: format!("item {n}"),
        description: String::new(),
        priority: p,
        status: s,
        owner: "oncall".into(),
        due_date: due.into(),
        source: crate::model::Source::Manual,
        dedupe_key: format!("manual:{}", id(n)),
        evidence_refs: Default::default(),
        tags: vec![],
        meta: Map::new(),
    }
}

/// today = 2026-03-10. Overdue (non-terminal, due < today), in dashboard order:
/// 7, 11 (02-28, P2, by id), 1 (03-01 P0), 2 (03-01 P1), 9 (03-05), 3 (03-09).
fn dataset() -> MemStore {
    use Priority::*;
    use Status::*;
    let mut s = MemStore::new();
    for it in [
        item(1, "prod", "gw", P0, Open, "2026-03-01"),
        item(2, "prod", "gw", P1, InProgress, "2026-03-01"),
        item(3, "prod", "gw", P2, Blocked, "2026-03-09"),
        item(4, "prod", "db", P0, Done, "2026-01-01"),
        item(5, "prod", "db", P3, Open, "2026-03-10"), // due today: not overdue
        item(6, "prod", "db", P1, Canceled, "2026-02-01"),
        item(7, "prod", "auth", P2, Open, "2026-02-28"),
        item(8, "prod", "auth", P3, Open, "2026-03-20"),
        item(9, "prod", "api", P1, Open, "2026-03-05"),
        item(10, "staging", "gw", P0, Open, "2026-01-01"), // other env
        item(11, "prod", "auth", P2, Open, "2026-02-28"),
    ] {
        s.insert_raw(it);
    }
    s
}

fn run(store: &mut MemStore, policy: &Policy, params: Value) -> Value {
    let mut entropy = SeqEntropy::default();
    let now = time::parse_ts(NOW).unwrap_or_default();
    let mut ctx = Ctx::new("viewer", now, policy, &mut entropy);
    execute(store, "dashboard", &params, &mut ctx).unwrap_or_else(|e| panic!("{e}"))
}

fn full(store: &mut MemStore, ns: &[u32]) -> Value {
    Value::Array(
        ns.iter()
            .map(|n| {
                let it = store.get(&id(*n)).ok().flatten();
                serde_json::to_value(it).unwrap_or_default()
            })
            .collect(),
    )
}

#[track_caller]
fn check(policy: &Policy, params: Value, want: Value) {
    let mut store = dataset();
    let writes = store.writes();
    let got = run(&mut store, policy, params);
    assert_eq!(got, want);
    assert_eq!(store.writes(), writes, "the dashboard wrote");
}

#[test]
fn every_key_of_the_default_dashboard() {
    let mut store = dataset();
    let policy = Policy::default();
    let want = json!({
        "env": "prod",
        "backend": "memory",
        "generated_at": NOW,
        "total": 10,
        "status_counts": {"open": 6, "in_progress": 1, "blocked": 1, "done": 1, "canceled": 1},
        "priority_counts": {"P0": 2, "P1": 3, "P2": 3, "P3": 2},
        "overdue_count": 6,
        "overdue": full(&mut store, &[7, 11, 1, 2, 9, 3]),
        "top_services": [
            {"service": "auth", "count": 3}, {"service": "gw", "count": 3},
            {"service": "api", "count": 1}, {"service": "db", "count": 1}
        ],
        "alerts": [
            {"level": "notify", "target": "oncall", "reason": "6 overdue items, more than the threshold of 5", "overdue_count": 6},
            {"level": "page", "target": "cto", "reason": "1 P0 item is overdue", "items": [id(1)]}
        ]
    });
    check(&policy, json!({}), want.clone());
    check(&policy, json!({"env": "prod"}), want);
}

#[test]
fn limits_and_thresholds() {
    let mut store = dataset();
    let mut policy = Policy::default();
    policy.dashboard.overdue_limit = 2;
    policy.dashboard.top_services = 1;
    policy.dashboard.overdue_notify_threshold = 6; // 6 is not more than 6: no notify
    let got = run(&mut store, &policy, json!({}));
    assert_eq!(got["overdue_count"], 6);
    assert_eq!(got["overdue"], full(&mut store, &[7, 11]));
    assert_eq!(
        got["top_services"],
        json!([{"service": "auth", "count": 3}])
    );
    // The P0 item is beyond the overdue limit, yet the page lists it.
    assert_eq!(
        got["alerts"],
        json!([{"level": "page", "target": "cto", "reason": "1 P0 item is overdue", "items": [id(1)]}])
    );

    policy.dashboard.overdue_limit = 0;
    policy.dashboard.top_services = 0;
    let got = run(&mut store, &policy, json!({}));
    assert_eq!(
        (got["overdue"].clone(), got["top_services"].clone()),
        (json!([]), json!([]))
    );
}

#[test]
fn alerts_present_and_absent() {
    let p = |threshold: u32| {
        let mut p = Policy::default();
        p.dashboard.overdue_notify_threshold = threshold;
        p
    };
    let notify = |n: usize, t: u32| {
        json!({"level": "notify", "target": "oncall",
               "reason": format!("{n} overdue items, more than the threshold of {t}"), "overdue_count": n})
    };
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let rows: Vec<(usize, Vec<String>, u32, Value)> = vec![
        (0, vec![], 5, json!([])),
        (5, vec![], 5, json!([])),
        (6, vec![], 5, json!([notify(6, 5)])),
        (1, vec![], 0, json!([notify(1, 0)])),
        (
            2,
            ids(&["bl_a", "bl_b"]),
            5,
            json!([{"level": "page", "target": "cto", "reason": "2 P0 items are overdue", "items": ["bl_a", "bl_b"]}]),
        ),
    ];
    for (count, p0, threshold, want) in rows {
        let got = serde_json::to_value(alerts(count, &p0, &p(threshold))).unwrap_or_default();
        assert_eq!(got, want, "{count} overdue, threshold {threshold}");
    }

    // Through the store: closing the only overdue P0 item removes the page.
    let mut store = dataset();
    if let Some(mut it) = store.get(&id(1)).ok().flatten() {
        it.status = Status::Done;
        store.insert_raw(it);
    }
    let got = run(&mut store, &Policy::default(), json!({}));
    assert_eq!(got["overdue_count"], 5);
    assert_eq!(got["alerts"], json!([]));
    assert_eq!(got["status_counts"]["done"], 2);
}

#[test]
fn empty_and_other_envs() {
    let policy = Policy::default();
    check(
        &policy,
        json!({"env": "dev"}),
        json!({
            "env": "dev", "backend": "memory", "generated_at": NOW, "total": 0,
            "status_counts": {"open": 0, "in_progress": 0, "blocked": 0, "done": 0, "canceled": 0},
            "priority_counts": {"P0": 0, "P1": 0, "P2": 0, "P3": 0},
            "overdue_count": 0, "overdue": [], "top_services": [], "alerts": []
        }),
    );
    let mut store = dataset();
    let got = run(&mut store, &policy, json!({"env": "staging"}));
    assert_eq!(
        (got["total"].clone(), got["overdue_count"].clone()),
        (json!(1), json!(1))
    );
    let mut entropy = SeqEntropy::default();
    let mut ctx = Ctx::new("viewer", Default::default(), &policy, &mut entropy);
    let e = execute(&mut store, "dashboard", &json!({"env": "PROD"}), &mut ctx).unwrap_err();
    assert_eq!(e.code, crate::ErrorCode::InvalidInput);
}

#[test]
fn compute_is_pure_over_keys() {
    let store = dataset();
    let keys: Vec<ItemKeys> = store
        .items()
        .filter(|i| i.env == "prod")
        .map(ItemKeys::of)
        .collect();
    let c = compute(&keys, "2026-03-10", &Policy::default());
    assert_eq!(c.total, 10);
    assert_eq!(c.overdue_count, 6);
    assert_eq!(
        c.overdue.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        [id(7), id(11), id(1), id(2), id(9), id(3)]
    );
    assert_eq!(c.overdue_p0, [id(1)]);
    // A day later item 5 (due 03-10) is overdue too.
    let c = compute(&keys, "2026-03-11", &Policy::default());
    assert_eq!(c.overdue_count, 7);
}
