//! The JSONL store's dashboard comes from counts kept in its index as lines are applied; it
//! must answer exactly what the default computation (`dashboard::compute` over `keys` +
//! `finish_dashboard`) answers, after any sequence of writes, cleanups and reopenings, for
//! every env and day.

use std::collections::BTreeMap;
use std::path::Path;

use backlog_core::dashboard::{self, Dashboard};
use backlog_core::model::{Item, Priority, Source, Status};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, finish_dashboard};
use backlog_store::{Access, JsonlStore};
use proptest::prelude::*;

const ENVS: [&str; 4] = ["prod", "staging", "dev", "nowhere"];
const SERVICES: [&str; 4] = ["api", "web", "db", "queue"];
const STATUSES: [Status; 5] = [
    Status::Open,
    Status::InProgress,
    Status::Blocked,
    Status::Done,
    Status::Canceled,
];
const PRIORITIES: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

#[derive(Debug, Clone)]
enum Op {
    /// A new version of item `n` (a new item the first time).
    Write {
        n: u8,
        env: u8,
        service: u8,
        status: u8,
        priority: u8,
        due: u8,
        updated: u8,
    },
    /// `cleanup` with the cutoff on day `day` of March.
    Cleanup { day: u8 },
    /// A new store instance on the same directory (another process), or the same one again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..24, 0u8..3, 0u8..4, 0u8..5, 0u8..4, 1u8..8, 1u8..8).prop_map(
            |(n, env, service, status, priority, due, updated)| Op::Write {
                n,
                env,
                service,
                status,
                priority,
                due,
                updated
            }
        ),
        1 => (1u8..9).prop_map(|day| Op::Cleanup { day }),
        1 => Just(Op::Reopen),
    ]
}

fn item(op: &Op) -> Option<Item> {
    let Op::Write {
        n,
        env,
        service,
        status,
        priority,
        due,
        updated,
    } = *op
    else {
        return None;
    };
    let id = format!("bl_{n:012x}");
    let ts = format!("2026-03-{updated:02}T06:20:01.123456Z");
    Some(Item {
        id: id.clone(),
        created_at: ts.clone(),
        updated_at: ts,
        env: ENVS[env as usize].into(),
        service: SERVICES[service as usize].into(),
        category: "refactor".into(),
        title: format!("item {n}"),
        description: String::new(),
        priority: PRIORITIES[priority as usize],
        status: STATUSES[status as usize],
        owner: "oncall".into(),
        due_date: format!("2026-03-{due:02}"),
        source: Source::Manual,
        dedupe_key: format!("manual:{id}"),
        evidence_refs: BTreeMap::new(),
        tags: Vec::new(),
        meta: serde_json::Map::new(),
    })
}

fn open(dir: &Path) -> JsonlStore {
    JsonlStore::open(dir.to_path_buf(), Access::ReadWrite, Box::new(|_: &str| {}))
}

/// What `BacklogStore::dashboard`'s default answers: a full recomputation over `keys`.
fn recomputed(store: &mut JsonlStore, env: &str, today: &str, policy: &Policy) -> Dashboard {
    let keys = store.keys(Some(env)).expect("keys");
    let counts = dashboard::compute(keys.iter(), today, policy);
    finish_dashboard(store, env, counts, policy).expect("finish")
}

fn check(store: &mut JsonlStore, dir: &Path, policy: &Policy) -> Result<(), TestCaseError> {
    // The reference indexes a copy of the JSONL files from scratch (no index checkpoint).
    let copy = tempfile::tempdir().expect("tempdir");
    for name in [backlog_store::ITEMS_FILE, backlog_store::EVENTS_FILE] {
        if dir.join(name).exists() {
            std::fs::copy(dir.join(name), copy.path().join(name)).expect("copy");
        }
    }
    let mut fresh = open(copy.path());
    let mut warm_start = open(dir);
    for env in ENVS {
        for day in 1..=8 {
            let today = format!("2026-03-{day:02}");
            let want = recomputed(&mut fresh, env, &today, policy);
            let got = store.dashboard(env, &today, policy).expect("dashboard");
            prop_assert_eq!(&got, &want, "env {} on {}", env, today);
            let cold = fresh.dashboard(env, &today, policy).expect("dashboard");
            prop_assert_eq!(&cold, &want, "fresh instance, env {} on {}", env, today);
            let warm = warm_start
                .dashboard(env, &today, policy)
                .expect("dashboard");
            prop_assert_eq!(
                &warm,
                &want,
                "new instance (checkpoint), env {} on {}",
                env,
                today
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_dashboard_equals_recomputation(ops in proptest::collection::vec(op(), 1..60)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // Small limits so the cuts (overdue list, top services) are exercised.
        let policy = Policy::from_json_str(
            r#"{"dashboard":{"overdue_limit":3,"top_services":2,"overdue_notify_threshold":1}}"#,
        )
        .expect("policy");
        let mut store = open(dir);
        for (i, op) in ops.iter().enumerate() {
            store.begin_call();
            match op {
                Op::Write { .. } => {
                    let it = item(op).expect("item");
                    store.write(Some(&it), &[]).expect("write");
                }
                Op::Cleanup { day } => {
                    store
                        .cleanup(&format!("2026-03-{day:02}T00:00:00.000000Z"), false)
                        .expect("cleanup");
                }
                Op::Reopen => store = open(dir),
            }
            store.end_call().expect("end call");
            if i % 7 == 6 || i + 1 == ops.len() {
                store.begin_call();
                check(&mut store, dir, &policy)?;
            }
        }
    }
}
