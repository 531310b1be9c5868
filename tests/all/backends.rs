//! The backlog through the `postgres` and `auto` backends, end to end over the real binary and
//! a real PostgreSQL 15 (the harness in `pg.rs`). The JSONL backend is covered by `actions`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY};
use crate::util::Env;

/// A lifecycle round trip that must behave the same on every backend.
fn round_trip(env: &Env) -> Value {
    let item = env.ok(
        "create",
        json!({"env":"prod","service":"gateway","category":"refactor","title":"Split","dedupe_key":"k1"}),
    );
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(env.ok("get", json!({"id": id})), item);
    assert_eq!(
        env.ok("upsert", json!({"dedupe_key":"k1","title":"Split"}))["action"],
        "unchanged"
    );
    assert_eq!(
        env.ok("upsert", json!({"dedupe_key":"k1","owner":"team-x"}))["action"],
        "updated"
    );
    env.ok("set_status", json!({"id": id, "status":"done"}));
    env.err(
        "set_status",
        json!({"id": id, "status":"blocked"}),
        "conflict",
    );
    env.ok("add_comment", json!({"id": id, "message":"shipped"}));
    let kinds: Vec<String> = env.ok("events", json!({"id": id}))["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["created", "owner_changed", "status_changed", "commented"]
    );
    env.err("create", json!({"env":"prod","service":"gateway","category":"refactor","title":"x","dedupe_key":"k1"}), "conflict");
    let list = env.ok("list", json!({"env":"prod","status":["done"]}));
    assert_eq!(list["total"], 1);
    // Injection in a string filter is just a value that matches nothing.
    let evil = env.ok("list", json!({"owner":"team-x' OR '1'='1"}));
    assert_eq!(evil["total"], 0);
    env.ok("dashboard", json!({"env":"prod"}))
}

#[test]
fn postgres_backend_runs_the_lifecycle_in_the_database() {
    let db = crate::pg::database();
    let env = Env::new().with_postgres(&db);
    assert_eq!(env.migrate(&[]).code, 0);
    let dash = round_trip(&env);
    assert_eq!(dash["backend"], "postgres");
    assert_eq!(dash["status_counts"]["done"], 1);
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "1");
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_events"), "4");
    assert!(
        !env.backlog_dir().join("items.jsonl").exists(),
        "nothing written to JSONL"
    );
}

#[test]
fn auto_uses_postgres_when_it_answers_with_the_schema() {
    let db = crate::pg::database();
    // The store's switch lines are info (the CLI's default level is warn).
    let env = Env::new()
        .with_postgres(&db)
        .var("BACKLOG_BACKEND", "auto")
        .var("RUST_LOG", "info");
    assert_eq!(env.migrate(&[]).code, 0);
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert!(
        run.stderr
            .contains("backlog_store: using PostgresBacklogStore"),
        "{}",
        run.stderr
    );
    let dash = round_trip(&env);
    assert_eq!(dash["backend"], "postgres");
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "1");
}

/// Auto writers on Postgres do not queue behind the JSONL directory's writer lock: with
/// another process holding it, a write on Postgres completes; the call takes the lock only
/// when it turns to the directory (the `pg_auto` drill counts when).
#[test]
fn auto_writes_on_postgres_do_not_wait_for_the_directory_lock() {
    let db = crate::pg::database();
    let env = Env::new().with_postgres(&db).var("BACKLOG_BACKEND", "auto");
    assert_eq!(env.migrate(&[]).code, 0);
    std::fs::create_dir_all(env.backlog_dir()).unwrap();
    let held = std::fs::File::create(env.backlog_dir().join(".lock")).unwrap();
    held.lock().unwrap();
    let mut cmd = env.cmd();
    cmd.args(["call", "backlog_tool", "upsert", "--params-json"])
        .arg(r#"{"env":"prod","service":"api","category":"refactor","title":"t","dedupe_key":"k-lock"}"#)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    // A bound that only a wrong answer reaches (the call waiting for the lock): the lock is
    // then released so that the call, and the test, end.
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            held.unlock().unwrap();
            panic!("an auto write on Postgres waited for the directory lock");
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM backlog_items WHERE dedupe_key = 'k-lock'"),
        "1"
    );
    assert!(!env.backlog_dir().join("items.jsonl").exists());
}

#[test]
fn auto_falls_back_to_jsonl_without_the_schema_and_says_so() {
    let db = crate::pg::database();
    // Not migrated: Postgres answers, but without the current schema it counts as unavailable.
    let env = Env::new()
        .with_postgres(&db)
        .var("BACKLOG_BACKEND", "auto")
        .var("RUST_LOG", "info");
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("backlog_store: using JsonlBacklogStore"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("migrate"),
        "the log tells the operator to migrate: {}",
        run.stderr
    );
    // A dedupe key the fallback does not hold may be held in Postgres (an older schema can
    // hold data): refused until Postgres is usable (docs/storage.md). Keyless writes go on.
    let keyed = json!({"env":"prod","service":"gateway","category":"refactor","title":"Split","dedupe_key":"k1"});
    env.err("create", keyed.clone(), "unavailable");
    env.err("upsert", keyed, "unavailable");
    let item = env.ok(
        "create",
        json!({"env":"prod","service":"gateway","category":"refactor","title":"Split"}),
    );
    env.ok("set_status", json!({"id": item["id"], "status":"done"}));
    let dash = env.ok("dashboard", json!({"env":"prod"}));
    assert_eq!(dash["backend"], "jsonl");
    assert_eq!(dash["status_counts"]["done"], 1);
    assert!(env.backlog_dir().join("items.jsonl").exists());
}

/// The runbook's outage, through the binary: live Postgres → write → Postgres stops → writes
/// keep succeeding on JSONL (and short-lived processes do not retry before the interval) →
/// Postgres starts → the first write call after the retry interval replays the journal:
/// every write is in Postgres exactly once and reads agree.
#[test]
fn outage_drill_loses_nothing_and_replays_exactly_once() {
    let cluster = crate::pg::PrivateCluster::start();
    let db = cluster.database();
    let mut env = Env::new()
        .with_postgres(&db)
        .var("BACKLOG_BACKEND", "auto")
        .var("RUST_LOG", "info");
    assert_eq!(env.migrate(&[]).code, 0);
    // The clock of each following call (the auto store's retry time runs on it).
    let at = |env: &mut Env, hms: &str| {
        for (k, v) in &mut env.vars {
            if k == "BACKLOG_BRIDGE_NOW" {
                *v = format!("2026-11-27T{hms}Z");
            }
        }
    };
    let item = |title: &str| json!({"env":"prod","service":"gateway","category":"refactor","title": title});

    at(&mut env, "10:00:00");
    let before = env.ok("create", item("before the outage"));

    cluster.pause();
    at(&mut env, "10:01:00");
    let run = env.call("operator", "backlog_tool", "create", &item("during 1"));
    assert_eq!(run.code, 0, "writes keep succeeding: {run:?}");
    assert!(
        run.stderr
            .contains("backlog_store: using JsonlBacklogStore"),
        "{}",
        run.stderr
    );
    let during1 = run.json();
    at(&mut env, "10:02:00");
    let during2 = env.ok("create", item("during 2"));
    at(&mut env, "10:03:00");
    env.ok(
        "add_comment",
        json!({"id": during1["id"], "message":"seen in the outage"}),
    );
    env.ok("upsert", json!({"id": during2["id"], "owner":"team-x"}));
    assert!(env.backlog_dir().join("auto-journal.jsonl").exists());

    cluster.resume();
    // Inside the retry interval (down since 10:01, 300 s): still JSONL, Postgres untouched.
    at(&mut env, "10:05:00");
    let early = env.ok("create", item("during 3"));
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "1");

    // After it: the first call of any kind — here a read — replays the journal (the host
    // runs a write-capable recovery call first) and answers from Postgres.
    at(&mut env, "10:07:00");
    let read = env.call(
        "viewer",
        "backlog_tool",
        "get",
        &json!({"id": before["id"]}),
    );
    assert_eq!(read.code, 0, "{read:?}");
    assert!(
        read.stderr
            .contains("backlog_store: using PostgresBacklogStore"),
        "{}",
        read.stderr
    );
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "4");
    let list = env.ok("list", json!({}));
    assert_eq!(list["total"], 4);
    assert!(list.get("degraded").is_none(), "{list}");
    let back = env.call("operator", "backlog_tool", "create", &item("after"));
    assert_eq!(back.code, 0, "{back:?}");
    let after = back.json();
    // A later call confirms the replay; nothing is replayed twice.
    at(&mut env, "10:08:00");
    let dash = env.ok("dashboard", json!({}));
    assert_eq!(dash["backend"], "postgres");
    assert_eq!(dash["total"], 5);

    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "5");
    assert_eq!(
        db.scalar("SELECT count(DISTINCT id) = count(*) FROM backlog_events"),
        "true"
    );
    // created ×5 + commented + owner_changed.
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_events"), "7");
    for written in [&before, &during1, &during2, &early, &after] {
        let got = env.ok("get", json!({"id": written["id"]}));
        assert_eq!(got["title"], written["title"]);
    }
    assert_eq!(
        env.ok("get", json!({"id": during2["id"]}))["owner"],
        "team-x"
    );
    let events = env.ok("events", json!({"id": during1["id"]}))["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert!(!env.backlog_dir().join("down_until").exists());
}

/// Stored quirks through the binary: a legacy naive timestamp comes back in the fixed-width
/// UTC form, and a torn last line of `items.jsonl` is skipped with a warning naming file and
/// line (the guest's stderr, logged by the host).
#[test]
fn legacy_timestamps_come_back_fixed_width_and_a_torn_line_is_warned() {
    let env = Env::new();
    let item = env.ok(
        "create",
        json!({"env":"prod","service":"api","category":"refactor","title":"legacy"}),
    );
    let id = item["id"].as_str().unwrap();
    let path = env.backlog_dir().join("items.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let created = item["created_at"].as_str().unwrap();
    let legacy = text.replace(created, "2026-03-02T06:20:01.123456");
    assert_ne!(legacy, text);
    std::fs::write(&path, format!("{legacy}{{\"id\":\"bl_torn")).unwrap();

    let run = env.call("operator", "backlog_tool", "get", &json!({"id": id}));
    assert_eq!(run.code, 0, "{run:?}");
    let got = run.json();
    assert_eq!(got["created_at"], "2026-03-02T06:20:01.123456Z", "{got}");
    assert_eq!(got["updated_at"], "2026-03-02T06:20:01.123456Z", "{got}");
    assert!(
        run.stderr
            .contains("jsonl: skipping torn last line items.jsonl:2"),
        "{}",
        run.stderr
    );
    let listed = env.ok("list", json!({}));
    assert_eq!(
        listed["items"][0]["created_at"],
        "2026-03-02T06:20:01.123456Z"
    );
}

/// Sets the clock file every process of a test reads (`BACKLOG_BRIDGE_NOW_FILE`).
pub(crate) fn set_clock(path: &std::path::Path, t: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{t}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `base` (RFC 3339) plus `elapsed`: a pinned clock that moves with real time while a test
/// waits, as the wall clock would (a probe that failed just as Postgres came back is retried a
/// retry interval later, not never).
pub(crate) fn moved(base: &str, elapsed: Duration) -> String {
    let base = chrono::DateTime::parse_from_rfc3339(base).unwrap();
    let t = base + chrono::TimeDelta::from_std(elapsed).unwrap();
    t.with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Polls `f` until it returns `Some` or `limit` passes.
#[track_caller]
pub(crate) fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // retry interval of a bounded poll
    }
}

/// The outage through `serve`: during it, an item only Postgres holds answers 503 (not 404)
/// and `list`/`dashboard` say `degraded`; `/readyz` says JSONL and degraded until the
/// journal is replayed; after the retry interval a quiet router replays by itself (its
/// background task) and `/readyz` returns to Postgres.
#[test]
fn a_quiet_router_replays_by_itself_and_readyz_tells_what_calls_use() {
    let cluster = crate::pg::PrivateCluster::start();
    let db = cluster.database();
    let env = crate::http::env();
    let clock = env.tmp.path().join("clock");
    set_clock(&clock, "2026-11-27T10:00:00Z");
    let env = env
        .with_postgres(&db)
        .var("BACKLOG_BACKEND", "auto")
        .var("BACKLOG_PG_RETRY_SECONDS", "2")
        .var("BACKLOG_BRIDGE_NOW_FILE", clock.to_str().unwrap());
    assert_eq!(env.migrate(&[]).code, 0);
    let server = Server::start(&env, &[]);
    let item =
        |title: &str| json!({"env":"prod","service":"api","category":"refactor","title": title});
    let in_pg = server
        .execute(OPERATOR_KEY, "create", &item("in postgres"))
        .ok();
    let ready = server.get("/readyz", None).ok();
    assert_eq!(
        (ready["backend"].clone(), ready["degraded"].clone()),
        (json!("postgres"), json!(false))
    );

    cluster.pause();
    let during = server.execute(OPERATOR_KEY, "create", &item("during")).ok();
    let gone = server.execute(VIEWER_KEY, "get", &json!({"id": in_pg["id"]}));
    let msg = gone.error(503, "unavailable");
    assert!(msg.contains("Postgres is down"), "{msg}");
    let comment = server.execute(
        OPERATOR_KEY,
        "add_comment",
        &json!({"id": in_pg["id"], "message": "x"}),
    );
    comment.error(503, "unavailable");
    let list = server.execute(VIEWER_KEY, "list", &json!({})).ok();
    assert_eq!(
        (list["backend"].clone(), list["degraded"].clone()),
        (json!("jsonl"), json!(true)),
        "{list}"
    );
    let dash = server.execute(VIEWER_KEY, "dashboard", &json!({})).ok();
    assert_eq!(
        (dash["backend"].clone(), dash["degraded"].clone()),
        (json!("jsonl"), json!(true)),
        "{dash}"
    );
    let ready = server.get("/readyz", None).ok();
    assert_eq!(
        ready,
        json!({"backend":"jsonl","degraded":true,"pending_replay":1})
    );

    // Postgres is back; within the retry time nothing changes.
    cluster.resume();
    let ready = server.get("/readyz", None).ok();
    assert_eq!(ready["degraded"], true, "{ready}");
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "1");

    // After it, no call at all: the background task replays and /readyz follows. The clock
    // runs from 10:10 with real time (the pool keeps a server it found hung down for a few
    // seconds, so the first probe may still fail; the next one, a retry interval later, not).
    let from = Instant::now();
    let ready = poll(Duration::from_secs(30), "/readyz back on postgres", || {
        set_clock(&clock, &moved("2026-11-27T10:10:00Z", from.elapsed()));
        let r = server.get("/readyz", None).ok();
        (r["backend"] == "postgres").then_some(r)
    });
    assert_eq!(
        ready,
        json!({"backend":"postgres","degraded":false,"pending_replay":0})
    );
    assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "2");
    let got = server
        .execute(VIEWER_KEY, "get", &json!({"id": during["id"]}))
        .ok();
    assert_eq!(got["title"], "during");
    let list = server.execute(VIEWER_KEY, "list", &json!({})).ok();
    assert_eq!(list["total"], 2);
    assert!(list.get("degraded").is_none(), "{list}");
    assert!(
        server.log().contains("replayed 1 journaled writes"),
        "{}",
        server.log()
    );
}

/// Writers on Postgres take no global lock (row locks and the UNIQUE constraint, the host
/// running a call again when its transaction lost a race): 32 concurrent writers over 8
/// dedupe keys, spread over two `serve` processes, each upserting its own owner, starting with
/// the race that needed the lock (every key is new: four calls create it at once). Every
/// write is answered 200; per key there is one item, one `created` answer and one `created`
/// event, one event per acknowledged write (none lost, none doubled by a re-run), and the
/// events form one chain — each owner change starts from the owner the previous write left —
/// ending in the item's owner: the final state is a sequential replay of the writes in event
/// order, and no write was based on a version another was replacing.
#[test]
fn concurrent_writers_on_two_processes_end_as_a_sequential_replay() {
    const WRITERS: usize = 32;
    const KEYS: usize = 8;
    const WRITES: usize = 4;
    let db = crate::pg::database();
    let env = crate::http::env()
        .with_postgres(&db)
        .var("BACKLOG_BACKEND", "postgres");
    assert_eq!(env.migrate(&[]).code, 0);
    let servers = [Server::start(&env, &[]), Server::start(&env, &[])];
    let start = std::sync::Barrier::new(WRITERS);
    // (key, action, owner) of every acknowledged write.
    let acked: Vec<(String, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (server, start) = (&servers[w % 2], &start);
                s.spawn(move || {
                    start.wait();
                    (0..WRITES)
                        .map(|i| {
                            let key = format!("race:{}", w % KEYS);
                            let owner = format!("writer-{w}-{i}");
                            let r = server.execute(
                                OPERATOR_KEY,
                                "upsert",
                                &json!({"dedupe_key": key, "env": "prod", "service": "race",
                                    "category": "refactor", "title": "race", "owner": owner}),
                            );
                            assert_eq!(r.status, 200, "{key} {owner}: {}", r.body);
                            let v = r.json();
                            let action = v["action"].as_str().unwrap().to_owned();
                            assert!(action == "created" || action == "updated", "{v}");
                            assert_eq!(v["item"]["owner"], owner.as_str(), "{v}");
                            (key, action, owner)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), WRITERS * WRITES);
    for k in 0..KEYS {
        let key = format!("race:{k}");
        let mine: Vec<&(String, String, String)> = acked.iter().filter(|a| a.0 == key).collect();
        let created: Vec<&&(String, String, String)> =
            mine.iter().filter(|a| a.1 == "created").collect();
        assert_eq!(created.len(), 1, "{key}: one call created it: {mine:?}");
        let items: Vec<Value> = db
            .rows(&format!(
                "SELECT id, owner FROM backlog_items WHERE dedupe_key = '{key}'"
            ))
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(items.len(), 1, "{key}: {items:?}");
        let id = items[0]["id"].as_str().unwrap();
        let events: Vec<Value> = db
            .rows(&format!(
                "SELECT type, meta->>'from' AS from, meta->>'to' AS to FROM backlog_events \
                 WHERE item_id = '{id}' ORDER BY seq"
            ))
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(events.len(), mine.len(), "{key}: {events:?}");
        assert_eq!(events[0]["type"], "created", "{key}: {events:?}");
        // The chain: created with the creator's owner, then each change from the last owner.
        let mut owner = created[0].2.clone();
        let mut seen = vec![owner.clone()];
        for e in &events[1..] {
            assert_eq!(e["type"], "owner_changed", "{key}: {events:?}");
            assert_eq!(
                e["from"],
                owner.as_str(),
                "{key}: a lost update: {events:?}"
            );
            owner = e["to"].as_str().unwrap().to_owned();
            seen.push(owner.clone());
        }
        assert_eq!(items[0]["owner"], owner.as_str(), "{key}: {events:?}");
        let mut want: Vec<String> = mine.iter().map(|a| a.2.clone()).collect();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "{key}: every acknowledged write, once");
    }
}
