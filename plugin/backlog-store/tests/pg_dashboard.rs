//! The Postgres dashboard (counts kept by the schema's triggers, the overdue page from the
//! partial index) equals the default computation over the items (`BacklogStore::dashboard`'s
//! default, from `keys`) after random sequences of writes, status and group moves, cleanups and
//! truncations, for every env, day and policy tried — a property test against a real PostgreSQL
//! 15 (`pg_support`).

mod pg_support;

use std::collections::BTreeMap;

use backlog_core::dashboard::Dashboard;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::model::{Event, Item, Priority, Source, Status};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};
use backlog_store::PostgresStore;
use pg_support::{PgConn, call, cluster};
use proptest::prelude::*;

type Store = PostgresStore<PgConn>;

/// The default `BacklogStore::dashboard` over a store (its own override hidden).
struct DefaultDashboard<'a, S>(&'a mut S);

impl<S: BacklogStore> BacklogStore for DefaultDashboard<'_, S> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn get(&mut self, id: &str) -> Result<Option<Item>, StoreError> {
        self.0.get(id)
    }
    fn find_by_dedupe_key(&mut self, key: &str) -> Result<Option<Item>, StoreError> {
        self.0.find_by_dedupe_key(key)
    }
    fn list(&mut self, query: &ListQuery, today: &str) -> Result<Page, StoreError> {
        self.0.list(query, today)
    }
    fn events(&mut self, item_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.0.events(item_id, limit)
    }
    fn write(&mut self, item: Option<&Item>, events: &[Event]) -> Result<(), StoreError> {
        self.0.write(item, events)
    }
    fn keys(&mut self, env: Option<&str>) -> Result<Vec<ItemKeys>, StoreError> {
        self.0.keys(env)
    }
    fn cleanup(&mut self, cutoff: &str, dry_run: bool) -> Result<usize, StoreError> {
        self.0.cleanup(cutoff, dry_run)
    }
}

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const SERVICES: [&str; 4] = ["api", "db", "web", "tie"];
const STATUSES: [Status; 5] = [
    Status::Open,
    Status::InProgress,
    Status::Blocked,
    Status::Done,
    Status::Canceled,
];
const PRIORITIES: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

/// One step of a history.
#[derive(Debug, Clone)]
enum Op {
    /// Write item `n` (new, or moved to another env/service/status/priority/due date).
    Write {
        n: u8,
        env: usize,
        service: usize,
        status: usize,
        priority: usize,
        due: u8,
        month: u8,
    },
    /// `cleanup` with a cutoff at the start of `month` (2026).
    Cleanup { month: u8 },
    /// A write whose statement fails (an event of an item that does not exist): nothing of
    /// it stays, counts included.
    FailedWrite { n: u8 },
    /// `TRUNCATE backlog_items CASCADE` (an operator's reset).
    Truncate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..24, 0..3usize, 0..4usize, 0..5usize, 0..4usize, 0u8..60, 1u8..7).prop_map(
            |(n, env, service, status, priority, due, month)| Op::Write {
                n,
                env,
                service,
                status,
                priority,
                due,
                month
            }
        ),
        1 => (1u8..8).prop_map(|month| Op::Cleanup { month }),
        1 => (0u8..24).prop_map(|n| Op::FailedWrite { n }),
        1 => Just(Op::Truncate),
    ]
}

fn item(n: u8, env: &str, service: &str, status: Status, priority: Priority) -> Item {
    let id = format!("bl_{n:012x}");
    Item {
        id: id.clone(),
        created_at: "2026-01-02T06:20:01.123456Z".into(),
        updated_at: "2026-01-02T06:20:01.123456Z".into(),
        env: env.into(),
        service: service.into(),
        category: "refactor".into(),
        title: format!("item {n}"),
        description: String::new(),
        priority,
        status,
        owner: "oncall".into(),
        due_date: "2026-03-01".into(),
        source: Source::Manual,
        dedupe_key: format!("manual:{id}"),
        evidence_refs: BTreeMap::new(),
        tags: Vec::new(),
        meta: serde_json::Map::new(),
    }
}

fn policy(overdue_limit: u32, top_services: u32) -> Policy {
    let mut p = Policy::default();
    p.dashboard.overdue_limit = overdue_limit;
    p.dashboard.top_services = top_services;
    p.dashboard.overdue_notify_threshold = 2;
    p
}

fn apply(s: &mut Store, op: &Op) {
    let ok = |r: Result<(), StoreError>| r.unwrap_or_else(|e| panic!("{op:?}: {e}"));
    match *op {
        Op::Write {
            n,
            env,
            service,
            status,
            priority,
            due,
            month,
        } => {
            let mut it = item(
                n,
                ENVS[env],
                SERVICES[service],
                STATUSES[status],
                PRIORITIES[priority],
            );
            let day = chrono::NaiveDate::from_ymd_opt(2026, 2, 1)
                .and_then(|d| d.checked_add_days(chrono::Days::new(u64::from(due))))
                .expect("a date");
            it.due_date = day.format("%Y-%m-%d").to_string();
            it.updated_at = format!("2026-{month:02}-02T06:20:01.123456Z");
            ok(call(s, |s| s.write(Some(&it), &[])));
        }
        Op::Cleanup { month } => {
            let cutoff = format!("2026-{month:02}-01T00:00:00.000000Z");
            call(s, |s| s.cleanup(&cutoff, false)).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
        Op::FailedWrite { n } => {
            let it = item(n, "prod", "api", Status::Open, Priority::P0);
            let orphan = Event {
                id: format!("ev_orphan_{n}"),
                item_id: "bl_nobody".into(),
                ts: "2026-01-02T06:20:01.123456Z".into(),
                kind: backlog_core::model::EventType::Created,
                actor: "test".into(),
                message: String::new(),
                meta: serde_json::Map::new(),
            };
            // The item upsert and the orphan event are one statement: it fails whole, and the
            // transaction is rolled back.
            assert!(
                call(s, |s| s.write(Some(&it), &[orphan])).is_err(),
                "{op:?}"
            );
        }
        Op::Truncate => {
            let db = s.sql_mut().db.clone();
            cluster()
                .client(&db)
                .batch_execute("TRUNCATE backlog_items CASCADE")
                .unwrap_or_else(|e| panic!("truncate: {e}"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn counted_dashboard_equals_a_full_recomputation(ops in prop::collection::vec(op(), 1..40)) {
        let mut s = store();
        // Every case starts from an empty table (and empty counts, by the truncate trigger).
        apply(&mut s, &Op::Truncate);
        for op in &ops {
            apply(&mut s, op);
        }
        let policies = [Policy::default(), policy(2, 2), policy(0, 0), policy(1000, 1000)];
        for env in ["prod", "staging", "dev", "nope"] {
            for today in ["2026-01-15", "2026-03-01", "2026-03-20", "2027-01-01"] {
                for p in &policies {
                    let got: Dashboard = call(&mut s, |s| s.dashboard(env, today, p))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let want = call(&mut s, |s| DefaultDashboard(s).dashboard(env, today, p))
                        .unwrap_or_else(|e| panic!("{e}"));
                    prop_assert_eq!(got, want, "{} {} {:?}", env, today, p.dashboard);
                }
            }
        }
    }
}

/// One database for every case (created once; each case truncates it first).
fn store() -> Store {
    static DB: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let db = DB.get_or_init(|| cluster().database("dashboard_prop", true));
    PostgresStore::new(PgConn::connect(cluster(), db, false))
}

/// A read-only store answers a repeated dashboard from its last one (one snapshot statement)
/// while nothing commits, and computes it again once anything commits, on any connection.
#[test]
fn a_dashboard_is_answered_again_until_anything_commits() {
    // Its own database: the property test truncates and writes its own concurrently.
    let db = cluster().database("dashboard_cache", true);
    let mut writer = PostgresStore::new(PgConn::connect(cluster(), &db, false));
    apply(&mut writer, &Op::Truncate);
    let write = |w: &mut Store, n: u8, status: Status| {
        let mut it = item(n, "prod", "api", status, Priority::P0);
        it.due_date = "2026-02-01".into();
        call(w, |w| w.write(Some(&it), &[])).unwrap_or_else(|e| panic!("write: {e}"));
    };
    write(&mut writer, 1, Status::Open);
    let mut reader = PostgresStore::new(writer.sql_mut().read_only_twin());
    let p = Policy::default();
    let dashboard = |r: &mut Store| {
        let before = r.sql_mut().log.len();
        let got = call(r, |r| r.dashboard("prod", "2026-03-01", &p)).expect("dashboard");
        let want = call(r, |r| {
            DefaultDashboard(r).dashboard("prod", "2026-03-01", &p)
        })
        .expect("recomputed");
        assert_eq!(got, want);
        let sent = r.sql_mut().log[before..].to_vec();
        (got, sent)
    };
    let (first, _) = dashboard(&mut reader);
    assert_eq!(first.overdue_count, 1);
    // Nothing committed: the snapshot statement alone, the same answer. (The snapshot is the
    // cluster's: other tests' commits, in their own databases, make it compute again, never
    // answer wrong; so it is asked until one call finds the cluster quiet.)
    let snapshot_only = ["SELECT pg_current_snapshot()::text".to_owned()];
    let answered_again = (0..2000).any(|_| {
        let before = reader.sql_mut().log.len();
        let again = call(&mut reader, |r| r.dashboard("prod", "2026-03-01", &p)).expect("again");
        assert_eq!(again, first);
        reader.sql_mut().log[before..] == snapshot_only
    });
    assert!(
        answered_again,
        "the dashboard was never answered from the last one"
    );
    // Another key (day, env, policy) is computed.
    let before = reader.sql_mut().log.len();
    let other_day = call(&mut reader, |r| r.dashboard("prod", "2026-01-15", &p)).expect("day");
    assert_eq!(other_day.overdue_count, 0);
    assert!(reader.sql_mut().log.len() > before + 1);
    // A commit on another connection: computed again, and right.
    write(&mut writer, 2, Status::Blocked);
    let (after_write, sent) = dashboard(&mut reader);
    assert_eq!(after_write.overdue_count, 2);
    assert!(sent.len() > 1, "{sent:?}");
    // A statement outside any store (a TRUNCATE by hand) commits too.
    apply(&mut writer, &Op::Truncate);
    let (emptied, _) = dashboard(&mut reader);
    assert_eq!(emptied.overdue_count, 0);
}
