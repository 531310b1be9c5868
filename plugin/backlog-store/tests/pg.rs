//! `PostgresStore` against a real PostgreSQL 15 (a throwaway cluster, a database per test):
//! the behaviour checks of the JSONL store — round trips, last write wins, listing equal to
//! `MemStore`, events, cleanup, the dashboard equal to the default computation — plus SQL
//! injection, read-only grants, schema errors, and the whole action layer end to end.

mod pg_support;

use std::collections::BTreeMap;

use backlog_core::actions::{self, Ctx};
use backlog_core::dashboard::Dashboard;
use backlog_core::digest::Reports;
use backlog_core::ids::SeqEntropy;
use backlog_core::list::{ItemKeys, ListQuery};
use backlog_core::mem::MemStore;
use backlog_core::model::{Event, EventType, Item, Priority, Source, Status};
use backlog_core::policy::Policy;
use backlog_core::store::{BacklogStore, Page, StoreError};
use backlog_core::{Error, time};
use backlog_store::PostgresStore;
use pg_support::{PgConn, call, cluster, count};
use serde_json::{Value, json};

type Store = PostgresStore<PgConn>;

fn store(test: &str) -> Store {
    PostgresStore::new(cluster().conn(test))
}

/// A deterministic pseudo-random generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() as usize) % from.len()]
    }
}

fn item(n: u64) -> Item {
    let id = format!("bl_{n:012x}");
    Item {
        id: id.clone(),
        created_at: "2026-03-02T06:20:01.123456Z".into(),
        updated_at: "2026-03-02T06:20:01.123456Z".into(),
        env: "prod".into(),
        service: "api".into(),
        category: "refactor".into(),
        title: format!("item {n}"),
        description: "- signal one\n- signal two".into(),
        priority: Priority::P2,
        status: Status::Open,
        owner: "oncall".into(),
        due_date: "2026-03-09".into(),
        source: Source::Manual,
        dedupe_key: format!("manual:{id}"),
        evidence_refs: BTreeMap::from([("alerts".to_string(), vec!["al_1".to_string()])]),
        tags: vec!["t".into()],
        meta: serde_json::Map::new(),
    }
}

fn random_item(rng: &mut Lcg, n: u64) -> Item {
    let mut it = item(n);
    it.env = rng.pick(&["prod", "staging", "dev"]).into();
    // Names whose byte order differs from a linguistic collation's.
    it.service = rng
        .pick(&[
            "api", "web", "db", "queue", "auth", "api-x", "api.y", "apiz", "Api",
        ])
        .into();
    it.owner = rng.pick(&["oncall", "cto", "team-a", "team-b"]).into();
    it.category = rng
        .pick(&["arch_review", "refactor", "slo_hardening", "security"])
        .into();
    it.priority = Priority::ALL[(rng.next() % 4) as usize];
    it.status = Status::ALL[(rng.next() % 5) as usize];
    it.due_date = format!("2026-{:02}-{:02}", 1 + rng.next() % 12, 1 + rng.next() % 28);
    it.updated_at = format!(
        "2026-0{}-{:02}T{:02}:00:00.{:06}Z",
        1 + rng.next() % 4,
        1 + rng.next() % 28,
        rng.next() % 24,
        rng.next() % 1_000_000
    );
    it
}

fn event(n: u64, item_id: &str) -> Event {
    Event {
        id: format!("ev_{n:012x}"),
        item_id: item_id.into(),
        ts: format!("2026-03-02T06:20:{:02}.{:06}Z", n % 60, n % 999_999),
        kind: EventType::Commented,
        actor: "tester".into(),
        message: format!("event {n}"),
        meta: serde_json::Map::new(),
    }
}

#[track_caller]
fn ok<T>(r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("store error: {e:?}"))
}

fn write(s: &mut Store, item: Option<&Item>, events: &[Event]) {
    ok(call(s, |s| s.write(item, events)));
}

fn get(s: &mut Store, id: &str) -> Option<Item> {
    ok(call(s, |s| s.get(id)))
}

fn list(s: &mut Store, q: &ListQuery, today: &str) -> Page {
    ok(call(s, |s| s.list(q, today)))
}

/// Puts the same items (with one event each) into both stores.
fn fill(s: &mut Store, mem: &mut MemStore, rng: &mut Lcg, n: u64) -> Vec<Item> {
    let mut items = Vec::new();
    for i in 1..=n {
        let it = random_item(rng, i);
        let ev = event(1000 + i, &it.id);
        write(s, Some(&it), std::slice::from_ref(&ev));
        ok(mem.write(Some(&it), &[ev]));
        items.push(it);
    }
    items
}

#[test]
fn round_trip_last_write_wins_and_dedupe_lookup() {
    let mut s = store("round_trip");
    assert_eq!(s.backend(), "postgres");
    assert_eq!(get(&mut s, "bl_000000000001"), None);

    let mut it = item(1);
    it.title = "Ünïcødé ✓ 日本語 \"quoted\" 'single' \\ back".into();
    it.meta = json!({"b": 1, "a": {"z": [1, 2.5, null, true], "y": "x"}, "big": 12345678901234i64})
        .as_object()
        .cloned()
        .unwrap_or_default();
    it.evidence_refs = BTreeMap::from([
        ("incidents".to_string(), vec![]),
        ("alerts".to_string(), vec!["al_1".into(), "al_2".into()]),
    ]);
    it.tags = vec!["z".into(), "a".into(), "week:2026-48".into()];
    let evs = [event(1, &it.id), event(2, &it.id)];
    write(&mut s, Some(&it), &evs);
    assert_eq!(get(&mut s, &it.id).as_ref(), Some(&it));
    let by_key = ok(call(&mut s, |s| s.find_by_dedupe_key(&it.dedupe_key)));
    assert_eq!(by_key.as_ref(), Some(&it));
    assert_eq!(ok(call(&mut s, |s| s.events(&it.id, 100))), evs.to_vec());

    // Same id again: the new version wins, the old dedupe key is free.
    let mut v2 = it.clone();
    v2.dedupe_key = "platform_backlog:2026-48:prod:api:refactor".into();
    v2.status = Status::Blocked;
    v2.updated_at = "2026-03-03T00:00:00.000001Z".into();
    v2.tags.clear();
    v2.meta.clear();
    write(&mut s, Some(&v2), &[event(3, &it.id)]);
    assert_eq!(get(&mut s, &it.id).as_ref(), Some(&v2));
    assert_eq!(
        ok(call(&mut s, |s| s.find_by_dedupe_key(&it.dedupe_key))),
        None
    );
    assert_eq!(
        ok(call(&mut s, |s| s.find_by_dedupe_key(&v2.dedupe_key))).as_ref(),
        Some(&v2)
    );
    assert_eq!(
        count(cluster(), &s.sql_mut().db.clone(), "backlog_items"),
        1
    );

    // Legacy naive timestamps are stored as instants and read back in the fixed-width form.
    let mut legacy = item(2);
    legacy.created_at = "2026-03-02T06:20:01.5".into();
    legacy.updated_at = "2026-03-02T08:20:01+02:00".into();
    write(&mut s, Some(&legacy), &[]);
    let back = get(&mut s, &legacy.id).unwrap_or_else(|| panic!("legacy item missing"));
    assert_eq!(back.created_at, "2026-03-02T06:20:01.500000Z");
    assert_eq!(back.updated_at, "2026-03-02T06:20:01.000000Z");

    // Year 0000 (1 BC in Postgres) both ways, and order across it.
    let mut ancient = item(3);
    ancient.created_at = "0000-01-01T00:00:00.000001Z".into();
    ancient.updated_at = "0000-12-31T23:59:59.999999Z".into();
    ancient.due_date = "0000-02-29".into();
    write(&mut s, Some(&ancient), &[]);
    assert_eq!(get(&mut s, &ancient.id).as_ref(), Some(&ancient));
    let q = ListQuery {
        due_before: Some("0001-01-01".into()),
        ..ListQuery::default()
    };
    assert_eq!(list(&mut s, &q, "2026-01-01").items, vec![ancient.clone()]);
    let q = ListQuery {
        due_before: Some("0000-02-29".into()),
        ..ListQuery::default()
    };
    assert_eq!(list(&mut s, &q, "2026-01-01").total, 0);
    assert_eq!(
        ok(call(&mut s, |s| s.cleanup(actions::MIN_CUTOFF, true))),
        0
    );

    // An event-only write and an empty write.
    write(&mut s, None, &[event(4, &legacy.id)]);
    write(&mut s, None, &[]);
    assert_eq!(ok(call(&mut s, |s| s.events(&legacy.id, 10))).len(), 1);
}

#[test]
fn a_write_is_all_or_nothing() {
    let mut s = store("atomic");
    let a = item(1);
    write(&mut s, Some(&a), &[event(1, &a.id)]);
    // Item 2 is fine, but one of its events names an item that does not exist.
    let b = item(2);
    let r = call(&mut s, |s| {
        s.write(Some(&b), &[event(2, &b.id), event(3, "bl_00000000dead")])
    });
    match r {
        Err(StoreError::Internal(m)) => assert!(m.contains("does not exist"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&mut s, &b.id), None);
    assert!(ok(call(&mut s, |s| s.events(&b.id, 10))).is_empty());

    // A dedupe key held by another item: only possible under a race (core checks first).
    let mut c = item(3);
    c.dedupe_key = a.dedupe_key.clone();
    match call(&mut s, |s| s.write(Some(&c), &[event(4, &c.id)])) {
        Err(StoreError::Internal(m)) => {
            assert!(m.contains(&format!("{:?}", a.dedupe_key)), "{m}");
            assert!(m.contains("23505"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&mut s, &c.id), None);
    assert_eq!(get(&mut s, &a.id), Some(a));
}

#[test]
fn events_oldest_first_with_limit() {
    let mut s = store("events");
    let it = item(7);
    write(&mut s, Some(&it), &[]);
    let mut all = Vec::new();
    for batch in 0..10u64 {
        let evs: Vec<Event> = (0..3).map(|k| event(100 - batch * 3 - k, &it.id)).collect();
        write(&mut s, Some(&it), &evs);
        all.extend(evs);
    }
    assert_eq!(ok(call(&mut s, |s| s.events(&it.id, 1000))), all);
    assert_eq!(ok(call(&mut s, |s| s.events(&it.id, 7))), all[..7].to_vec());
    assert!(ok(call(&mut s, |s| s.events(&it.id, 0))).is_empty());
    assert!(ok(call(&mut s, |s| s.events("bl_000000000999", 10))).is_empty());
    // Writing an event id again keeps the first one (replays are idempotent).
    write(&mut s, None, &[all[0].clone()]);
    assert_eq!(
        ok(call(&mut s, |s| s.events(&it.id, 1000))).len(),
        all.len()
    );
}

fn queries() -> Vec<ListQuery> {
    let base = ListQuery::default();
    let mut qs = vec![
        base.clone(),
        ListQuery {
            limit: 1000,
            ..base.clone()
        },
        ListQuery {
            limit: 0,
            ..base.clone()
        },
        ListQuery {
            limit: 1,
            ..base.clone()
        },
        ListQuery {
            limit: 10,
            offset: 7,
            ..base.clone()
        },
        ListQuery {
            limit: 10,
            offset: 295,
            ..base.clone()
        },
        ListQuery {
            limit: 10,
            offset: 300,
            ..base.clone()
        },
        ListQuery {
            offset: 5000,
            ..base.clone()
        },
        ListQuery {
            limit: usize::MAX,
            offset: usize::MAX,
            ..base.clone()
        },
        ListQuery {
            env: Some("prod".into()),
            ..base.clone()
        },
        ListQuery {
            env: Some("nope".into()),
            ..base.clone()
        },
        ListQuery {
            status: vec![Status::Open],
            ..base.clone()
        },
        ListQuery {
            status: vec![Status::Done, Status::Canceled, Status::Done],
            ..base.clone()
        },
        ListQuery {
            status: Status::ALL.to_vec(),
            limit: 1000,
            ..base.clone()
        },
        ListQuery {
            priority: Some(Priority::P0),
            ..base.clone()
        },
        ListQuery {
            service: Some("api".into()),
            ..base.clone()
        },
        ListQuery {
            service: Some("api.y".into()),
            ..base.clone()
        },
        ListQuery {
            owner: Some("cto".into()),
            ..base.clone()
        },
        ListQuery {
            category: Some("security".into()),
            ..base.clone()
        },
        ListQuery {
            due_before: Some("2026-06-15".into()),
            ..base.clone()
        },
        ListQuery {
            due_before: Some("2026-01-01".into()),
            ..base.clone()
        },
        ListQuery {
            overdue: Some(true),
            limit: 1000,
            ..base.clone()
        },
        ListQuery {
            overdue: Some(false),
            limit: 1000,
            ..base.clone()
        },
        ListQuery {
            env: Some("prod".into()),
            status: vec![Status::Open, Status::Blocked],
            owner: Some("team-a".into()),
            overdue: Some(true),
            ..base.clone()
        },
        ListQuery {
            env: Some("staging".into()),
            priority: Some(Priority::P1),
            service: Some("db".into()),
            category: Some("refactor".into()),
            due_before: Some("2026-09-30".into()),
            overdue: Some(false),
            limit: 3,
            offset: 1,
            ..base.clone()
        },
    ];
    // Not a date: compared as text, like the other stores.
    for d in [
        "2026-13-45",
        "2026",
        "9",
        "",
        "\\",
        "日本",
        "0000-01-01",
        "2026-06\0x",
    ] {
        qs.push(ListQuery {
            due_before: Some(d.into()),
            limit: 1000,
            ..base.clone()
        });
    }
    qs
}

#[test]
fn list_equals_mem_store() {
    let mut s = store("list");
    let mut mem = MemStore::new();
    let mut rng = Lcg(42);
    fill(&mut s, &mut mem, &mut rng, 300);
    for today in ["2026-06-15", "2026-01-01", "2027-01-01"] {
        for q in queries() {
            let got = list(&mut s, &q, today);
            let want = ok(mem.list(&q, today));
            assert_eq!(got.total, want.total, "{q:?} on {today}");
            let ids = |p: &Page| p.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "{q:?} on {today}");
            assert_eq!(got, want, "{q:?} on {today}");
        }
    }
    // Paging through everything visits every item once, in order.
    let mut seen = Vec::new();
    let mut q = ListQuery {
        limit: 37,
        ..ListQuery::default()
    };
    loop {
        let p = list(&mut s, &q, "2026-06-15");
        seen.extend(p.items.iter().map(|i| i.id.clone()));
        match q.next_offset(p.items.len(), p.total) {
            Some(o) => q.offset = o,
            None => break,
        }
    }
    let all = ok(mem.list(
        &ListQuery {
            limit: 1000,
            ..ListQuery::default()
        },
        "2026-06-15",
    ));
    assert_eq!(
        seen,
        all.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn keys_and_cleanup_agree_with_mem_store() {
    let mut s = store("cleanup");
    let db = s.sql_mut().db.clone();
    let mut mem = MemStore::new();
    let mut rng = Lcg(5);
    let items = fill(&mut s, &mut mem, &mut rng, 200);
    for it in items.iter().step_by(3) {
        let ev = event(5000 + rng.next() % 100_000, &it.id);
        write(&mut s, None, std::slice::from_ref(&ev));
        ok(mem.write(None, &[ev]));
    }
    let sorted = |mut v: Vec<ItemKeys>| {
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    assert_eq!(
        sorted(ok(call(&mut s, |s| s.keys(None)))),
        sorted(ok(mem.keys(None)))
    );
    assert_eq!(
        sorted(ok(call(&mut s, |s| s.keys(Some("prod"))))),
        sorted(ok(mem.keys(Some("prod"))))
    );
    assert!(ok(call(&mut s, |s| s.keys(Some("nope")))).is_empty());

    // A cutoff before year 1 deletes nothing; a bad cutoff is internal.
    assert_eq!(
        ok(call(&mut s, |s| s.cleanup(actions::MIN_CUTOFF, false))),
        0
    );
    assert!(matches!(
        call(&mut s, |s| s.cleanup("yesterday", true)),
        Err(StoreError::Internal(_))
    ));

    for cutoff in [
        "2026-02-01T00:00:00.000000Z",
        "2026-03-15T12:00:00.000000Z",
        "2026-04-01T00:00:00.000000Z",
        "2026-06-01T00:00:00.000000Z",
    ] {
        let items_before = count(cluster(), &db, "backlog_items");
        let events_before = count(cluster(), &db, "backlog_events");
        let dry = ok(call(&mut s, |s| s.cleanup(cutoff, true)));
        assert_eq!(dry, ok(mem.cleanup(cutoff, true)), "{cutoff}");
        assert_eq!(count(cluster(), &db, "backlog_items"), items_before);
        assert_eq!(count(cluster(), &db, "backlog_events"), events_before);
        let deleted = ok(call(&mut s, |s| s.cleanup(cutoff, false)));
        assert_eq!(deleted, ok(mem.cleanup(cutoff, false)), "{cutoff}");
        assert_eq!(deleted, dry);
        assert_eq!(count(cluster(), &db, "backlog_items") as usize, mem.len());
        // Events cascaded with their items.
        assert_eq!(
            count(cluster(), &db, "backlog_events") as usize,
            mem.total_events()
        );
        assert_eq!(
            sorted(ok(call(&mut s, |s| s.keys(None)))),
            sorted(ok(mem.keys(None)))
        );
    }
    assert!(mem.len() < 200);
}

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

fn policy(overdue_limit: u32, top_services: u32, threshold: u32) -> Policy {
    let mut p = Policy::default();
    p.dashboard.overdue_limit = overdue_limit;
    p.dashboard.top_services = top_services;
    p.dashboard.overdue_notify_threshold = threshold;
    p
}

#[test]
fn dashboard_equals_the_default_computation() {
    let mut s = store("dashboard");
    let mut mem = MemStore::new();
    let mut rng = Lcg(9);
    let mut items = fill(&mut s, &mut mem, &mut rng, 400);
    // Ties in top_services and overdue P0s across services.
    for (n, svc) in [
        (901, "tie-b"),
        (902, "tie-a"),
        (903, "tie-b"),
        (904, "tie-a"),
    ] {
        let mut it = item(n);
        it.service = svc.into();
        it.priority = Priority::P0;
        it.due_date = "2026-01-02".into();
        write(&mut s, Some(&it), &[]);
        ok(mem.write(Some(&it), &[]));
        items.push(it);
    }
    let policies = [
        Policy::default(),
        policy(3, 2, 0),
        policy(0, 0, 1000),
        policy(1000, 1000, 5),
    ];
    for env in ["prod", "staging", "nope", "' OR 1=1 --"] {
        for today in ["2026-06-15", "2026-01-01", "2027-01-01"] {
            for p in &policies {
                let got: Dashboard = ok(call(&mut s, |s| s.dashboard(env, today, p)));
                let want = ok(call(&mut s, |s| {
                    DefaultDashboard(s).dashboard(env, today, p)
                }));
                assert_eq!(got, want, "{env} {today} {:?}", p.dashboard);
                let mut from_mem = ok(mem.dashboard(env, today, p));
                from_mem.backend = "postgres".into();
                assert_eq!(got, from_mem, "{env} {today} {:?}", p.dashboard);
            }
        }
    }
    let d = ok(call(&mut s, |s| {
        s.dashboard("prod", "2026-06-15", &policy(3, 2, 0))
    }));
    assert!(d.overdue_count > 3 && d.overdue.len() == 3 && d.top_services.len() == 2);
    assert_eq!(d.alerts.len(), 2, "{:?}", d.alerts);

    // Statements: the counts, the overdue page when something is overdue, and the P0 ids
    // only when the page does not hold them all (besides the snapshot read first; each run
    // below asks what was not asked before, so none is answered from the last one).
    let mut run = |p: &Policy, today: &str| {
        let before = s.sql_mut().log.len();
        let d = ok(call(&mut s, |s| s.dashboard("prod", today, p)));
        let sent = &s.sql_mut().log[before..];
        assert_eq!(sent[0], "SELECT pg_current_snapshot()::text");
        (d, sent.len() - 1)
    };
    let (_, n) = run(&policy(3, 2, 0), "2026-06-16");
    assert_eq!(n, 3, "P0 ids beyond a page of 3");
    let (d, n) = run(&policy(1000, 10, 5), "2026-06-15");
    assert_eq!(d.overdue.len(), d.overdue_count);
    assert!(d.alerts.iter().any(|a| a.target == "cto"));
    assert_eq!(n, 2, "every overdue item fits the page");
    let (d, n) = run(&Policy::default(), "2020-01-01");
    assert_eq!((d.overdue_count, n), (0, 1), "nothing overdue");
}

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "'; DROP TABLE backlog_items; --",
    "'); DELETE FROM backlog_events; --",
    "\\",
    "\\'; SELECT pg_sleep(5); --",
    "\" OR \"\"=\"",
    "$1",
    "%",
    "_",
    "日本語 ✓ Ünïcødé",
    "prod\0' OR 1=1",
    "bl_000000000001' OR '1'='1",
];

#[test]
fn sql_injection_in_every_string_is_inert() {
    let mut s = store("injection");
    let db = s.sql_mut().db.clone();
    let mut mem = MemStore::new();
    let mut rng = Lcg(77);
    fill(&mut s, &mut mem, &mut rng, 60);
    let (items, events) = (
        count(cluster(), &db, "backlog_items"),
        count(cluster(), &db, "backlog_events"),
    );
    let base = ListQuery {
        limit: 1000,
        ..ListQuery::default()
    };
    for inj in INJECTIONS {
        let x = Some(inj.to_string());
        for q in [
            ListQuery {
                env: x.clone(),
                ..base.clone()
            },
            ListQuery {
                service: x.clone(),
                ..base.clone()
            },
            ListQuery {
                owner: x.clone(),
                ..base.clone()
            },
            ListQuery {
                category: x.clone(),
                ..base.clone()
            },
        ] {
            let got = list(&mut s, &q, "2026-06-15");
            assert_eq!(got.total, 0, "{q:?}");
            assert!(got.items.is_empty(), "{q:?}");
        }
        // `due_before` compares as text, exactly like the other stores.
        let q = ListQuery {
            due_before: x.clone(),
            ..base.clone()
        };
        assert_eq!(
            list(&mut s, &q, "2026-06-15"),
            ok(mem.list(&q, "2026-06-15")),
            "{q:?}"
        );
        assert_eq!(get(&mut s, inj), None);
        assert_eq!(ok(call(&mut s, |s| s.find_by_dedupe_key(inj))), None);
        assert!(ok(call(&mut s, |s| s.events(inj, 10))).is_empty());
        assert!(ok(call(&mut s, |s| s.keys(Some(inj)))).is_empty());
        let d = ok(call(&mut s, |s| {
            s.dashboard(inj, "2026-06-15", &Policy::default())
        }));
        assert_eq!((d.total, d.overdue_count), (0, 0));
    }
    assert_eq!(count(cluster(), &db, "backlog_items"), items);
    assert_eq!(count(cluster(), &db, "backlog_events"), events);

    // Stored verbatim, read back verbatim, matched only by itself.
    for (n, inj) in INJECTIONS.iter().filter(|i| !i.contains('\0')).enumerate() {
        let mut it = item(10_000 + n as u64);
        it.title = inj.to_string();
        it.owner = inj.to_string();
        it.service = inj.to_string();
        it.dedupe_key = inj.to_string();
        it.meta = json!({ *inj: inj })
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut ev = event(10_000 + n as u64, &it.id);
        ev.message = inj.to_string();
        write(&mut s, Some(&it), std::slice::from_ref(&ev));
        assert_eq!(get(&mut s, &it.id).as_ref(), Some(&it));
        assert_eq!(
            ok(call(&mut s, |s| s.find_by_dedupe_key(inj))).as_ref(),
            Some(&it)
        );
        assert_eq!(ok(call(&mut s, |s| s.events(&it.id, 10))), vec![ev]);
        let q = ListQuery {
            owner: Some(inj.to_string()),
            ..base.clone()
        };
        assert_eq!(list(&mut s, &q, "2026-06-15").items, vec![it]);
    }
    assert_eq!(
        count(cluster(), &db, "backlog_items"),
        items + INJECTIONS.iter().filter(|i| !i.contains('\0')).count() as i64
    );
}

#[test]
fn read_only_grant_cannot_write() {
    let mut s = store("read_only");
    let db = s.sql_mut().db.clone();
    let a = item(1);
    write(&mut s, Some(&a), &[event(1, &a.id)]);
    let mut ro = PostgresStore::new(s.sql_mut().read_only_twin());
    assert_eq!(ok(call(&mut ro, |s| s.get(&a.id))).as_ref(), Some(&a));
    let mut changed = a.clone();
    changed.title = "changed".into();
    for r in [
        call(&mut ro, |s| s.write(Some(&changed), &[])),
        call(&mut ro, |s| s.write(None, &[event(2, &a.id)])),
        call(&mut ro, |s| {
            s.cleanup("2030-01-01T00:00:00.000000Z", false).map(drop)
        }),
    ] {
        match r {
            Err(StoreError::Forbidden(m)) => assert!(m.contains("25006"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A dry run only reads.
    assert_eq!(
        ok(call(&mut ro, |s| s.cleanup("2030-01-01T00:00:00.000000Z", true))),
        0
    );
    assert_eq!(get(&mut s, &a.id), Some(a));
    assert_eq!(count(cluster(), &db, "backlog_events"), 1);
}

#[test]
fn missing_schema_is_unavailable_and_names_migrate() {
    let db = cluster().database("no_schema", false);
    let mut s = PostgresStore::new(PgConn::connect(cluster(), &db, false));
    for r in [
        call(&mut s, |s| s.probe()),
        call(&mut s, |s| s.get("bl_000000000001").map(drop)),
        call(&mut s, |s| s.write(Some(&item(1)), &[])),
    ] {
        match r {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("backlog-bridge migrate"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let mut good = store("probe_ok");
    ok(call(&mut good, |s| s.probe()));
}

#[test]
fn the_store_sends_only_single_data_statements() {
    let mut s = store("statements");
    let mut mem = MemStore::new();
    fill(&mut s, &mut mem, &mut Lcg(3), 20);
    list(
        &mut s,
        &ListQuery {
            offset: 100,
            ..ListQuery::default()
        },
        "2026-06-15",
    );
    ok(call(&mut s, |s| {
        s.dashboard("prod", "2026-06-15", &Policy::default())
    }));
    ok(call(&mut s, |s| {
        s.cleanup("2026-03-01T00:00:00.000000Z", false)
    }));
    for st in &s.sql_mut().log {
        let first = st.split_whitespace().next().unwrap_or_default();
        assert!(
            ["SELECT", "INSERT", "DELETE", "WITH"].contains(&first),
            "unexpected statement {st}"
        );
        assert!(!st.contains(';'), "{st}");
    }
}

#[test]
fn lookups_are_remembered_within_a_call_only() {
    let mut s = store("seen");
    let a = item(1);
    write(&mut s, Some(&a), &[event(1, &a.id)]);
    let statements = |s: &mut Store| s.sql_mut().log.len();
    let before = statements(&mut s);
    let r = call(&mut s, |s| {
        // A hit, a miss, each twice; then a write and the lookups it answers.
        assert_eq!(s.find_by_dedupe_key(&a.dedupe_key)?.as_ref(), Some(&a));
        assert_eq!(s.get(&a.id)?.as_ref(), Some(&a));
        assert_eq!(s.find_by_dedupe_key("k-new")?, None);
        assert_eq!(s.find_by_dedupe_key("k-new")?, None);
        let mut b = item(2);
        b.dedupe_key = "k-new".into();
        b.updated_at = "2026-03-02T06:20:01.5".into();
        assert_eq!(s.get(&b.id)?, None);
        s.write(Some(&b), &[event(2, &b.id)])?;
        let back = s.find_by_dedupe_key("k-new")?;
        assert_eq!(
            back.map(|i| i.updated_at),
            Some("2026-03-02T06:20:01.500000Z".into())
        );
        // Moving `a` to another key frees its old one.
        let mut a2 = a.clone();
        a2.dedupe_key = "k-moved".into();
        s.write(Some(&a2), &[])?;
        assert_eq!(s.find_by_dedupe_key(&a.dedupe_key)?, None);
        assert_eq!(s.get(&a.id)?, Some(a2));
        Ok::<_, StoreError>(())
    });
    ok(r);
    // find a, find k-new, get b, write b, write a2, find old key of a.
    assert_eq!(statements(&mut s) - before, 6);
    // The next call reads again.
    let before = statements(&mut s);
    assert!(get(&mut s, &a.id).is_some());
    assert_eq!(statements(&mut s) - before, 1);
}

#[test]
fn prefetched_keys_answer_lookups_in_one_statement() {
    let mut s = store("prefetch");
    let (a, b) = (item(1), item(2));
    write(&mut s, Some(&a), &[event(1, &a.id)]);
    write(&mut s, Some(&b), &[event(2, &b.id)]);
    let statements = |s: &mut Store| s.sql_mut().log.len();
    let before = statements(&mut s);
    let keys = vec![
        a.dedupe_key.clone(),
        "k-missing".to_owned(),
        b.dedupe_key.clone(),
        a.dedupe_key.clone(),
        "nul\0key".to_owned(),
    ];
    let r = call(&mut s, |s| {
        s.prefetch_dedupe_keys(&keys)?;
        assert_eq!(s.find_by_dedupe_key(&a.dedupe_key)?.as_ref(), Some(&a));
        assert_eq!(s.find_by_dedupe_key(&b.dedupe_key)?.as_ref(), Some(&b));
        assert_eq!(s.find_by_dedupe_key("k-missing")?, None);
        assert_eq!(s.find_by_dedupe_key("nul\0key")?, None);
        assert_eq!(s.get(&b.id)?.as_ref(), Some(&b));
        // Known keys are not fetched again.
        s.prefetch_dedupe_keys(&keys)?;
        Ok::<_, StoreError>(())
    });
    ok(r);
    assert_eq!(
        statements(&mut s) - before,
        1,
        "one statement for every lookup"
    );
}

/// Reports held in memory (digests for generation).
#[derive(Default)]
struct MemReports(BTreeMap<String, String>);

impl Reports for MemReports {
    fn list(&mut self, dir: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{dir}/");
        Ok(self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }
    fn read(&mut self, path: &str) -> Result<String, Error> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| Error::invalid_input(format!("ops/reports/{path}: no such file")))
    }
}

/// One world per backend: same clock, same ids, same digests.
struct World<S> {
    store: S,
    entropy: SeqEntropy,
    reports: MemReports,
    policy: Policy,
    now: String,
}

impl<S: BacklogStore> World<S> {
    fn new(store: S) -> Self {
        let mut reports = MemReports::default();
        reports.0.insert(
            "platform/2026-48.json".into(),
            json!({"week": "2026-48", "env": "prod", "generated_at": "2026-11-23T06:00:04Z",
                   "services": [
                       {"service": "gateway", "score": 82, "band": "critical", "requires_arch_review": true,
                        "signals": {"regressions_30d": 3, "escalations_30d": 2, "followups_overdue": 2,
                                    "dependency_high_30d": 1},
                        "evidence_refs": {"alerts": ["al_1"], "incidents": ["inc_9"]}},
                       {"service": "billing", "score": 40, "band": "medium",
                        "signals": {"regressions_30d": 2}}]})
            .to_string(),
        );
        World {
            store,
            entropy: SeqEntropy::default(),
            reports,
            policy: Policy::default(),
            now: "2026-11-23T06:20:00.000000Z".into(),
        }
    }

    fn exec(&mut self, action: &str, params: &Value, end: &mut dyn FnMut(&mut S, bool)) -> Value {
        let now = time::parse_ts(&self.now).unwrap_or_else(|| panic!("bad now {}", self.now));
        let mut ctx = Ctx::new("operator", now, &self.policy, &mut self.entropy)
            .with_reports(&mut self.reports);
        self.store.begin_call();
        let r = actions::execute(&mut self.store, action, params, &mut ctx);
        self.store.end_call().expect("end call");
        end(&mut self.store, r.is_ok());
        match r {
            Ok(v) => v,
            Err(e) => json!({"error": e.message, "code": e.code.as_str()}),
        }
    }
}

#[test]
fn the_action_layer_runs_unchanged_on_postgres() {
    let mut pg = World::new(store("actions"));
    let mut mem = World::new(MemStore::new());
    let mut end_pg = |s: &mut Store, ok: bool| s.sql_mut().finish(ok);
    let mut end_mem = |_: &mut MemStore, _: bool| {};
    let steps: Vec<(&str, &str, Value)> = vec![
        (
            "2026-11-23T06:20:00.000000Z",
            "create",
            json!({"env": "prod", "service": "api", "category": "refactor", "title": "Split the monolith", "meta": {"b": 1, "a": [1, {"y": 2, "x": 1}]}}),
        ),
        (
            "2026-11-23T06:21:00.000000Z",
            "create",
            json!({"env": "prod", "service": "web", "category": "security", "title": "Bump TLS", "priority": "P0", "due_date": "2026-11-01", "dedupe_key": "k1"}),
        ),
        (
            "2026-11-23T06:21:30.000000Z",
            "create",
            json!({"env": "prod", "service": "web", "category": "security", "title": "dup", "dedupe_key": "k1"}),
        ),
        (
            "2026-11-23T06:22:00.000000Z",
            "upsert",
            json!({"dedupe_key": "k1", "title": "Bump TLS to 1.3", "owner": "sec-team"}),
        ),
        (
            "2026-11-23T06:22:30.000000Z",
            "upsert",
            json!({"dedupe_key": "k1", "title": "Bump TLS to 1.3"}),
        ),
        (
            "2026-11-23T06:23:00.000000Z",
            "upsert",
            json!({"dedupe_key": "k2", "env": "staging", "service": "db", "category": "cleanup_followups", "title": "Vacuum"}),
        ),
        (
            "2026-11-23T06:23:30.000000Z",
            "upsert",
            json!({"id": "bl_00000000beef", "title": "missing"}),
        ),
        (
            "2026-11-23T06:24:00.000000Z",
            "get",
            json!({"id": "bl_000000000001", "include_events": true}),
        ),
        (
            "2026-11-23T06:25:00.000000Z",
            "set_status",
            json!({"id": "bl_000000000001", "status": "in_progress", "comment": "on it"}),
        ),
        (
            "2026-11-23T06:25:30.000000Z",
            "set_status",
            json!({"id": "bl_000000000001", "status": "in_progress", "comment": "still"}),
        ),
        (
            "2026-11-23T06:26:00.000000Z",
            "add_comment",
            json!({"id": "bl_000000000001", "message": "' OR 1=1 -- 日本"}),
        ),
        (
            "2026-11-23T06:27:00.000000Z",
            "list",
            json!({"env": "prod"}),
        ),
        (
            "2026-11-23T06:27:00.000000Z",
            "list",
            json!({"status": ["open", "in_progress"], "overdue": true}),
        ),
        (
            "2026-11-23T06:27:00.000000Z",
            "list",
            json!({"owner": "'; DROP TABLE backlog_items; --"}),
        ),
        (
            "2026-11-23T06:28:00.000000Z",
            "events",
            json!({"id": "bl_000000000001", "limit": 2}),
        ),
        ("2026-11-23T06:29:00.000000Z", "dashboard", json!({})),
        (
            "2026-11-23T06:30:00.000000Z",
            "auto_generate_weekly",
            json!({}),
        ),
        (
            "2026-11-23T06:31:00.000000Z",
            "auto_generate_weekly",
            json!({}),
        ),
        (
            "2026-11-23T06:32:00.000000Z",
            "list",
            json!({"limit": 1000}),
        ),
        (
            "2026-11-23T06:33:00.000000Z",
            "set_status",
            json!({"id": "bl_000000000001", "status": "done"}),
        ),
        (
            "2026-11-23T06:33:30.000000Z",
            "set_status",
            json!({"id": "bl_000000000001", "status": "blocked"}),
        ),
        (
            "2026-11-23T06:34:00.000000Z",
            "dashboard",
            json!({"env": "prod"}),
        ),
        (
            "2027-12-01T00:00:00.000000Z",
            "cleanup",
            json!({"dry_run": true}),
        ),
        ("2027-12-01T00:00:00.000000Z", "cleanup", json!({})),
        (
            "2027-12-01T00:00:01.000000Z",
            "get",
            json!({"id": "bl_000000000001"}),
        ),
        (
            "2027-12-01T00:00:02.000000Z",
            "list",
            json!({"limit": 1000}),
        ),
        (
            "2027-12-01T00:00:03.000000Z",
            "cleanup",
            json!({"retention_days": 4294967295u64}),
        ),
    ];
    for (now, action, params) in steps {
        pg.now = now.into();
        mem.now = now.into();
        let mut got = pg.exec(action, &params, &mut end_pg);
        let want = mem.exec(action, &params, &mut end_mem);
        if action == "dashboard" {
            assert_eq!(got["backend"], "postgres");
            got["backend"] = json!("memory");
        }
        assert_eq!(got, want, "{action} {params}");
    }
    let db = pg.store.sql_mut().db.clone();
    assert!(count(cluster(), &db, "backlog_items") >= 3);
}

/// A new item's id is claimed without a lookup: when the random id is taken after all, the
/// write fails with a unique violation (which the host answers by running the call again)
/// and the item holding the id is left as it was.
#[test]
fn a_taken_random_id_fails_the_create_and_replaces_nothing() {
    let mut pg = World::new(store("taken_id"));
    let mut end_pg = |s: &mut Store, ok: bool| s.sql_mut().finish(ok);
    // SeqEntropy draws bl_000000000001 first: make it taken, by an item with a key of its own.
    let mut holder = item(1);
    holder.dedupe_key = "holder".into();
    pg.store.begin_call();
    write(&mut pg.store, Some(&holder), &[event(1, &holder.id)]);
    pg.store.sql_mut().finish(true);
    let create = json!({"env": "prod", "service": "web", "category": "refactor", "title": "new"});
    let failed = pg.exec("create", &create, &mut end_pg);
    assert_eq!(failed["code"], "internal", "{failed}");
    let message = failed["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("SQLSTATE 23505") && message.contains("bl_000000000001 is taken"),
        "{message}"
    );
    assert_eq!(get(&mut pg.store, &holder.id), Some(holder.clone()));
    pg.store.sql_mut().finish(true);
    // Run again (as the host does), with the next random id: created, the holder untouched.
    let created = pg.exec("create", &create, &mut end_pg);
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("bl_") && id != holder.id, "{created}");
    assert_eq!(get(&mut pg.store, &holder.id), Some(holder));
    assert_eq!(get(&mut pg.store, &id).map(|i| i.title), Some("new".into()));
    pg.store.sql_mut().finish(true);
    // An id taken by an item created without a key shows in its manual key: the next id is
    // drawn in the same call.
    let mut again = World::new(store("taken_id_manual"));
    let first = again.exec("create", &create, &mut end_pg);
    again.entropy = SeqEntropy::default();
    let second = again.exec("create", &create, &mut end_pg);
    assert_eq!(first["id"], "bl_000000000001", "{first}");
    assert_eq!(second["id"], "bl_000000000002", "{second}");
}

/// A page stops at the byte budget, as on JSONL: 25 items of ~0.95 MB of evidence (as an older
/// version stored them) come back a few at a time, each page under the budget, every item once.
#[test]
fn list_pages_stay_within_the_byte_budget() {
    let mut s = store("list_budget");
    for n in 1..=25 {
        let mut it = item(n);
        it.evidence_refs = BTreeMap::from([(
            "alerts".to_string(),
            (0..79_000).map(|i| format!("a{i:08}")).collect(),
        )]);
        write(&mut s, Some(&it), &[]);
    }
    let item_bytes =
        serde_json::to_string(&item(1).evidence_refs).unwrap().len() as u64 + 79_000 * 12;
    let mut q = ListQuery::default();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = list(&mut s, &q, "2026-03-02");
        pages += 1;
        assert_eq!(page.total, 25);
        assert!(!page.items.is_empty());
        assert!(
            page.items.len() as u64 * item_bytes <= backlog_store::PAGE_MAX_BYTES + item_bytes,
            "{} items of ~{item_bytes} bytes",
            page.items.len()
        );
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match q.next_offset(page.items.len(), page.total) {
            Some(next) => q.offset = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 25);
    assert!(
        pages >= 3,
        "25 items of ~0.95 MB take at least 3 pages of 8 MiB: {pages}"
    );
}

/// A write call's store locks what it reads by id or dedupe key (`FOR UPDATE`), so a
/// concurrent write of the same item waits for it; a read call's store does not (a read-only
/// transaction refuses row locks).
#[test]
fn write_calls_lock_the_rows_they_read() {
    let conn = cluster().conn("row_locks");
    let reader = conn.read_only_twin();
    let mut s = PostgresStore::new(conn).with_row_locks(true);
    let it = item(7);
    write(&mut s, Some(&it), &[]);
    let before = s.sql_mut().log.len();
    ok(call(&mut s, |s| {
        s.get(&it.id)?;
        s.find_by_dedupe_key("manual:other")?;
        s.prefetch_dedupe_keys(&["k1".into(), "k2".into()])
    }));
    let sent: Vec<String> = s.sql_mut().log[before..].to_vec();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|q| q.ends_with(" FOR UPDATE")), "{sent:?}");
    let mut r = PostgresStore::new(reader);
    assert_eq!(
        ok(call(&mut r, |s| s.get(&it.id))),
        Some(get(&mut s, &it.id).unwrap())
    );
    assert!(r.sql_mut().log.iter().all(|q| !q.contains("FOR UPDATE")));
}
