//! The `auto` store against a real PostgreSQL 15 that is stopped and started: the outage
//! drill (see `docs/storage.md`) — writes keep succeeding on JSONL while Postgres is down, the retry time
//! lives on disk (no Postgres contact before it), the journal is replayed (newer wins, events
//! by id, dedupe merge) before auto switches back, an unconfirmed replay is redone, and
//! nothing is lost or duplicated.

mod pg_support;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use backlog_core::actions::{self, Ctx};
use backlog_core::ids::SeqEntropy;
use backlog_core::policy::Policy;
use backlog_core::store::BacklogStore;
use backlog_core::time;
use backlog_store::{
    Access, Active, AutoStatus, AutoStore, DOWN_UNTIL_FILE, JOURNAL_FILE, JsonlStore,
    PostgresStore, REPLAYED_FILE, auto_status,
};
use pg_support::{Cluster, PgConn};
use serde_json::{Value, json};

type Log = Rc<RefCell<Vec<String>>>;

struct Drill {
    auto: AutoStore<PgConn>,
    log: Log,
    /// How many calls took the directory's lock (on demand, as the host runs auto).
    locks: Rc<std::cell::Cell<usize>>,
    entropy: SeqEntropy,
    policy: Policy,
}

impl Drill {
    fn new(conn: PgConn, dir: &Path, access: Access, entropy_start: u64) -> Drill {
        let log: Log = Rc::default();
        let l = log.clone();
        let jsonl = JsonlStore::open(dir.to_path_buf(), access, Box::new(|_| {}));
        let locks: Rc<std::cell::Cell<usize>> = Rc::default();
        let counted = locks.clone();
        let auto = AutoStore::new(
            PostgresStore::new(conn),
            jsonl,
            300,
            Box::new(move |m| l.borrow_mut().push(m.to_owned())),
        )
        .with_dir_lock(Box::new(move || {
            counted.set(counted.get() + 1);
            Ok(())
        }));
        Drill {
            auto,
            log,
            locks,
            entropy: SeqEntropy::new(entropy_start),
            policy: Policy::default(),
        }
    }

    /// One call at `now`: `Ok` JSON or `{"code": …}`; the transaction ends like the host's.
    fn call(&mut self, now: &str, action: &str, params: Value) -> Value {
        self.auto.begin_call_at(now);
        let t = time::parse_ts(now).unwrap_or_else(|| panic!("bad now {now}"));
        let mut ctx = Ctx::new("operator", t, &self.policy, &mut self.entropy);
        let r = actions::execute(&mut self.auto, action, &params, &mut ctx);
        let r = r.and_then(|v| {
            BacklogStore::end_call(&mut self.auto)
                .map(|()| v)
                .map_err(Into::into)
        });
        self.auto.postgres_mut().sql_mut().finish(r.is_ok());
        match r {
            Ok(v) => v,
            Err(e) => json!({"code": e.code.as_str(), "error": e.message}),
        }
    }

    /// This drill with at most `items` items replayed per call.
    fn batch(self, items: usize) -> Drill {
        Drill {
            auto: self.auto.with_replay_batch(items),
            ..self
        }
    }

    fn statements(&mut self) -> usize {
        self.auto.postgres_mut().sql_mut().log.len()
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.borrow_mut())
    }
}

fn create(title: &str, dedupe_key: Option<&str>) -> Value {
    let mut p = json!({"env": "prod", "service": "api", "category": "refactor", "title": title});
    if let Some(k) = dedupe_key {
        p["dedupe_key"] = json!(k);
    }
    p
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

fn rows(c: &Cluster, db: &str, sql: &str) -> Vec<(String, String)> {
    let mut client = c.client(db);
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

#[test]
fn outage_drill_loses_nothing_and_switches_back_after_replay() {
    let cluster = Cluster::start();
    let db = cluster.database("auto", true);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path();
    let mut d = Drill::new(
        PgConn::connect(&cluster, &db, false),
        dir,
        Access::ReadWrite,
        1,
    );

    // 1. Postgres up: plain Postgres, announced once, nothing in the directory.
    let t0 = "2026-11-23T06:00:00.000000Z";
    let a = id_of(&d.call(t0, "create", create("A", None)));
    let shared = id_of(&d.call(t0, "create", create("D (Postgres)", Some("k-shared"))));
    assert_eq!(d.auto.active(), Some(Active::Postgres));
    assert_eq!(
        d.take_log(),
        vec!["backlog_store: using PostgresBacklogStore".to_owned()]
    );
    assert_eq!(d.call(t0, "dashboard", json!({}))["backend"], "postgres");
    assert!(d.take_log().is_empty(), "no switch, no line");
    assert!(!dir.join(DOWN_UNTIL_FILE).exists() && !dir.join(JOURNAL_FILE).exists());
    assert_eq!(
        d.locks.get(),
        0,
        "writes on Postgres never take the directory's lock"
    );

    // 2. Postgres stops: the next call falls back, logs exactly the switch and a reason, and
    //    records the retry time.
    cluster.pg_stop().unwrap_or_else(|e| panic!("{e}"));
    let t1 = "2026-11-23T07:00:00.000000Z";
    let b = id_of(&d.call(t1, "create", create("B (outage)", None)));
    assert_eq!(d.auto.active(), Some(Active::Jsonl));
    assert_eq!(
        d.locks.get(),
        1,
        "the call that turned to the directory locked it"
    );
    let log = d.take_log();
    assert_eq!(log[0], "backlog_store: using JsonlBacklogStore", "{log:?}");
    assert!(log[1].starts_with("backlog_store: warning: "), "{log:?}");
    assert_eq!(log.len(), 2, "{log:?}");
    let down = std::fs::read_to_string(dir.join(DOWN_UNTIL_FILE)).unwrap_or_default();
    assert!(
        down.starts_with("2026-11-23T07:05:00.000000Z\n"),
        "{down:?}"
    );
    assert_eq!(
        auto_status(dir, t1),
        AutoStatus {
            degraded: true,
            pending_replay: 1
        }
    );

    // 3. Within the retry interval: JSONL without touching Postgres; writes keep succeeding.
    let before = d.statements();
    let t2 = "2026-11-23T07:01:00.000000Z";
    let r = d.call(
        t2,
        "add_comment",
        json!({"id": b, "message": "during the outage"}),
    );
    assert_eq!(r["type"], "commented", "{r}");
    // A key only Postgres may hold: the fallback cannot tell `created` from `conflict`, so it
    // refuses rather than answer for an item it may not know.
    let keyed = d.call(
        t2,
        "create",
        create("C (outage, same key)", Some("k-shared")),
    );
    assert_eq!(keyed["code"], "unavailable", "{keyed}");
    assert!(
        keyed["error"]
            .as_str()
            .is_some_and(|m| m.contains("k-shared")),
        "{keyed}"
    );
    let r = d.call(t2, "set_status", json!({"id": b, "status": "in_progress"}));
    assert_eq!(r["status"], "in_progress", "{r}");
    // An item only Postgres holds: the fallback cannot know it, so not `not_found` but
    // `unavailable`, saying why; the same for writes by its id.
    let gone = d.call(t2, "get", json!({"id": a}));
    assert_eq!(gone["code"], "unavailable", "{gone}");
    let msg = gone["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("Postgres is down") && msg.contains(&a),
        "{msg}"
    );
    for (action, params) in [
        ("set_status", json!({"id": a, "status": "done"})),
        ("add_comment", json!({"id": a, "message": "x"})),
        ("upsert", json!({"id": a, "owner": "x"})),
        (
            "upsert",
            json!({"id": a, "dedupe_key": "k-new", "title": "t"}),
        ),
    ] {
        assert_eq!(
            d.call(t2, action, params.clone())["code"],
            "unavailable",
            "{action} {params}"
        );
    }
    let dash = d.call(t2, "dashboard", json!({}));
    assert_eq!(
        (dash["backend"].clone(), dash["degraded"].clone()),
        (json!("jsonl"), json!(true)),
        "{dash}"
    );
    let list = d.call(t2, "list", json!({}));
    assert_eq!(
        (list["backend"].clone(), list["degraded"].clone()),
        (json!("jsonl"), json!(true)),
        "{list}"
    );
    assert_eq!(
        d.call(t2, "cleanup", json!({"dry_run": true}))["code"],
        "unavailable"
    );
    assert_eq!(
        d.statements(),
        before,
        "no statement while Postgres is marked down"
    );
    assert!(d.take_log().is_empty());
    assert_eq!(auto_status(dir, t2).pending_replay, 3);

    // 4. Postgres is back, but the retry time has not come: still JSONL, still no contact.
    cluster.pg_start().unwrap_or_else(|e| panic!("{e}"));
    let t3 = "2026-11-23T07:03:00.000000Z";
    assert_eq!(d.call(t3, "get", json!({"id": b}))["status"], "in_progress");
    assert_eq!(d.statements(), before);

    // 5. After it, a read-only call sees Postgres up but cannot replay: it keeps serving JSONL.
    let t4 = "2026-11-23T07:06:00.000000Z";
    let mut ro = Drill::new(
        PgConn::connect(&cluster, &db, true),
        dir,
        Access::ReadOnly,
        1000,
    );
    assert_eq!(
        ro.call(t4, "get", json!({"id": b}))["status"],
        "in_progress"
    );
    assert_eq!(ro.auto.active(), Some(Active::Jsonl));
    assert!(dir.join(JOURNAL_FILE).exists());

    // 6. A write-capable call replays the journal, then answers from Postgres.
    let got = d.call(t4, "get", json!({"id": b, "include_events": true}));
    assert_eq!(d.auto.active(), Some(Active::Postgres));
    assert_eq!(got["status"], "in_progress", "{got}");
    let types: Vec<&str> = got["events"]
        .as_array()
        .map(|evs| evs.iter().filter_map(|e| e["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(types, ["created", "commented", "status_changed"]);
    let log = d.take_log();
    assert_eq!(
        log.last().map(String::as_str),
        Some("backlog_store: using PostgresBacklogStore")
    );
    assert!(!dir.join(JOURNAL_FILE).exists() && !dir.join(DOWN_UNTIL_FILE).exists());
    assert!(
        dir.join(REPLAYED_FILE).exists(),
        "kept until the replay is confirmed"
    );

    // Exactly once each; the Postgres item of the shared key is as it was.
    let items = rows(
        &cluster,
        &db,
        "SELECT id, title FROM backlog_items ORDER BY id",
    );
    let want = {
        let mut w = vec![
            (a.clone(), "A".to_owned()),
            (shared.clone(), "D (Postgres)".to_owned()),
            (b.clone(), "B (outage)".to_owned()),
        ];
        w.sort();
        w
    };
    assert_eq!(items, want);
    let evs = rows(
        &cluster,
        &db,
        "SELECT item_id, type FROM backlog_events ORDER BY seq",
    );
    assert_eq!(evs.len(), 1 + 3 + 1, "{evs:?}");
    assert_eq!(
        evs.iter().filter(|(i, _)| *i == shared).count(),
        1,
        "{evs:?}"
    );

    // 7. The next call confirms the replay and forgets it; reads agree.
    let t5 = "2026-11-23T07:07:00.000000Z";
    let listed = d.call(t5, "list", json!({}));
    assert_eq!(listed["total"], 3, "{listed}");
    assert!(!dir.join(REPLAYED_FILE).exists());
    assert_eq!(auto_status(dir, t5), AutoStatus::default());
    assert!(d.take_log().is_empty());
    // Nothing on record any more: writes run on Postgres without the directory's lock again.
    let locked = d.locks.get();
    id_of(&d.call(t5, "create", create("F (back on Postgres)", None)));
    assert_eq!(d.auto.active(), Some(Active::Postgres));
    assert_eq!(d.locks.get(), locked);

    // 8. A replay whose call is rolled back is redone by the next call.
    cluster.pg_stop().unwrap_or_else(|e| panic!("{e}"));
    let t6 = "2026-11-23T08:00:00.000000Z";
    let e = id_of(&d.call(t6, "create", create("E (second outage)", None)));
    cluster.pg_start().unwrap_or_else(|e| panic!("{e}"));
    let t7 = "2026-11-23T08:10:00.000000Z";
    // The replaying call fails (unknown id): the host rolls its transaction back.
    assert_eq!(
        d.call(t7, "get", json!({"id": "bl_00000000beef"}))["code"],
        "not_found"
    );
    assert!(dir.join(REPLAYED_FILE).exists());
    let t8 = "2026-11-23T08:11:00.000000Z";
    assert_eq!(
        d.call(t8, "get", json!({"id": e}))["title"],
        "E (second outage)"
    );
    let t9 = "2026-11-23T08:12:00.000000Z";
    assert_eq!(d.call(t9, "list", json!({}))["total"], 5);
    assert!(!dir.join(REPLAYED_FILE).exists());
    let ids = rows(&cluster, &db, "SELECT id, id FROM backlog_events");
    let mut distinct: Vec<_> = ids.iter().map(|(i, _)| i.clone()).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len());
    assert_eq!(ids.len(), 5 + 1 + 1);

    // Cleanup works again once Postgres is active.
    assert_eq!(
        d.call(t9, "cleanup", json!({"dry_run": true}))["deleted"],
        0
    );
}

#[test]
fn a_database_without_the_schema_counts_as_down() {
    let cluster = Cluster::start();
    let db = cluster.database("auto_noschema", false);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut d = Drill::new(
        PgConn::connect(&cluster, &db, false),
        tmp.path(),
        Access::ReadWrite,
        1,
    );
    let t = "2026-11-23T06:00:00.000000Z";
    let r = d.call(t, "create", create("x", None));
    assert!(r["id"].is_string(), "{r}");
    assert_eq!(d.auto.active(), Some(Active::Jsonl));
    let log = d.take_log();
    assert_eq!(log[0], "backlog_store: using JsonlBacklogStore");
    assert!(log[1].contains("backlog-bridge migrate"), "{log:?}");
}

#[test]
fn a_long_journal_is_replayed_in_batches_before_switching_back() {
    let cluster = Cluster::start();
    let db = cluster.database("auto_batches", true);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path();
    let mut d = Drill::new(
        PgConn::connect(&cluster, &db, false),
        dir,
        Access::ReadWrite,
        1,
    )
    .batch(2);
    cluster.pg_stop().unwrap_or_else(|e| panic!("{e}"));
    let t = "2026-11-23T07:00:00.000000Z";
    let ids: Vec<String> = (0..5)
        .map(|n| id_of(&d.call(t, "create", create(&format!("outage {n}"), None))))
        .collect();
    d.call(t, "add_comment", json!({"id": ids[0], "message": "again"}));
    assert_eq!(auto_status(dir, t).pending_replay, 6);
    cluster.pg_start().unwrap_or_else(|e| panic!("{e}"));
    let in_pg = |c: &Cluster| rows(c, &db, "SELECT id, title FROM backlog_items").len();
    // After the retry time: two items per call; JSONL answers until the journal is empty.
    for (call, (want_in_pg, active)) in [
        (2, Active::Jsonl),
        (4, Active::Jsonl),
        (5, Active::Postgres),
    ]
    .into_iter()
    .enumerate()
    {
        let now = format!("2026-11-23T07:1{call}:00.000000Z");
        assert_eq!(d.call(&now, "list", json!({}))["total"], 5);
        assert_eq!(d.auto.active(), Some(active), "call {call}");
        assert_eq!(in_pg(&cluster), want_in_pg, "call {call}");
    }
    let log = d.take_log();
    assert_eq!(
        log.last().map(String::as_str),
        Some("backlog_store: using PostgresBacklogStore"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("more follow")), "{log:?}");
    let evs = rows(&cluster, &db, "SELECT id, item_id FROM backlog_events");
    assert_eq!(evs.len(), 6);
    assert!(!dir.join(JOURNAL_FILE).exists());
}

#[test]
fn rejected_items_are_set_aside_and_the_rest_is_replayed() {
    let cluster = Cluster::start();
    let db = cluster.database("auto_poison", true);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path();
    let mut d = Drill::new(
        PgConn::connect(&cluster, &db, false),
        dir,
        Access::ReadWrite,
        1,
    );
    let t0 = "2026-11-23T06:00:00.000000Z";
    let held = id_of(&d.call(t0, "create", create("held in Postgres", Some("k"))));
    cluster.pg_stop().unwrap_or_else(|e| panic!("{e}"));
    let t1 = "2026-11-23T07:00:00.000000Z";
    let kept = id_of(&d.call(t1, "create", create("kept, outage", None)));
    let poison = id_of(&d.call(t1, "create", create("poison", None)));
    cluster.pg_start().unwrap_or_else(|e| panic!("{e}"));
    // A constraint the rules know nothing of: Postgres rejects that item on replay.
    cluster
        .client(&db)
        .batch_execute(
            "ALTER TABLE backlog_items ADD CONSTRAINT test_no_poison CHECK (title <> 'poison')",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    d.take_log();

    // The replay meets the poisoned item: the call fails, the item is set aside.
    let t2 = "2026-11-23T07:10:00.000000Z";
    let r = d.call(t2, "list", json!({}));
    assert_eq!(r["code"], "internal", "{r}");
    let log = d.take_log();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("cannot replay item {poison}"))),
        "{log:?}"
    );
    let failed = std::fs::read_to_string(dir.join(backlog_store::FAILED_FILE)).unwrap_or_default();
    assert!(
        failed.contains(&poison) && !failed.contains(&kept),
        "{failed}"
    );

    // The rest is replayed by the next call, which answers from Postgres.
    let t3 = "2026-11-23T07:11:00.000000Z";
    let got = d.call(t3, "get", json!({"id": kept, "include_events": true}));
    assert_eq!(got["title"], "kept, outage", "{got}");
    assert_eq!(d.auto.active(), Some(Active::Postgres));
    let t4 = "2026-11-23T07:12:00.000000Z";
    assert_eq!(d.call(t4, "list", json!({}))["total"], 2);
    assert!(!dir.join(REPLAYED_FILE).exists() && !dir.join(JOURNAL_FILE).exists());
    assert_eq!(
        rows(&cluster, &db, "SELECT id, title FROM backlog_items").len(),
        2
    );
    let t5 = "2026-11-23T07:13:00.000000Z";
    assert_eq!(
        d.call(t5, "get", json!({"id": held}))["title"],
        "held in Postgres"
    );
}
