//! The Postgres capability over the real binary, the hostile test component and a real
//! PostgreSQL 15: grants, read-only that cannot be escaped, one transaction per call (commit on
//! ok, rollback on error, trap or timeout), warm instances that start clean, values, limits.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pg::{self, PASSWORD, TestDb};
use crate::util::Env;

/// A migrated database with one item and one event, and a bridge on it with the hostile
/// plugin (Postgres backend, DSN with a password the server checks).
fn setup() -> (Env, TestDb) {
    let db = pg::database();
    let env = Env::new().with_hostile().with_postgres(&db);
    let env = env.var("BACKLOG_POSTGRES_DSN", &db.password_dsn());
    let run = env.migrate(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    db.batch(
        "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, \
         priority, status, owner, due_date, source, dedupe_key) VALUES ('bl_000000000001', \
         '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', 'prod', 'svc', 'refactor', 'keep me', \
         'P1', 'open', 'alice', '2026-12-01', 'manual', 'k1');
         INSERT INTO backlog_events (id, item_id, ts, type, actor) VALUES \
         ('ev_000000000001', 'bl_000000000001', '2026-11-01T00:00:00Z', 'created', 'alice');
         CREATE TABLE scratch (k text PRIMARY KEY);
         GRANT ALL ON scratch TO bridge_pw;",
    );
    (env, db)
}

/// One statement: `(sql, params)`; params as `{"text": "x"}` etc.
fn st(sql: &str, params: Value) -> Value {
    json!({"sql": sql, "params": params})
}

/// A batch line calling `action` of the hostile plugin with `statements`.
fn line(action: &str, statements: Vec<Value>, then: &str) -> Value {
    json!({"tool":"hostile","action":action,"params":{"statements":statements,"then":then}})
}

/// The per-statement outcomes of a hostile pg call: its result, or (with `then: error`) the
/// error object whose message carries them.
#[track_caller]
fn results(out: &Value) -> Vec<Value> {
    let doc = match out["error"].as_str() {
        Some(message) if out["code"] == "conflict" => serde_json::from_str(message).unwrap(),
        _ => out.clone(),
    };
    doc["results"]
        .as_array()
        .unwrap_or_else(|| panic!("not a pg result: {out}"))
        .clone()
}

fn snapshot(db: &TestDb) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        db.rows("SELECT * FROM backlog_items ORDER BY id"),
        db.rows("SELECT * FROM backlog_events ORDER BY seq"),
        db.rows("SELECT * FROM scratch ORDER BY k"),
    )
}

const INSERT_ITEM: &str = "INSERT INTO backlog_items (id, created_at, updated_at, env, service, \
     category, title, priority, status, owner, due_date, source, dedupe_key) VALUES \
     ('bl_hacked00000', now(), now(), 'prod', 's', 'c', 'pwned', 'P0', 'open', 'x', \
     '2026-01-01', 'manual', 'hacked')";

#[test]
fn a_read_grant_cannot_write_whatever_the_guest_tries() {
    let (env, db) = setup();
    let before = snapshot(&db);
    let attempts: Vec<Vec<&str>> = vec![
        vec![INSERT_ITEM],
        vec!["UPDATE backlog_items SET title = 'pwned'"],
        vec!["DELETE FROM backlog_items"],
        vec!["DELETE FROM backlog_events"],
        vec!["INSERT INTO scratch VALUES ('x')"],
        vec!["TRUNCATE backlog_events"],
        vec!["COMMIT", INSERT_ITEM],
        vec!["ROLLBACK", "BEGIN", INSERT_ITEM],
        vec!["END", "START TRANSACTION READ WRITE", INSERT_ITEM],
        vec!["ABORT", INSERT_ITEM],
        vec!["SET transaction_read_only = off", INSERT_ITEM],
        vec!["SET TRANSACTION READ WRITE", INSERT_ITEM],
        vec![
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            INSERT_ITEM,
        ],
        vec!["SET default_transaction_read_only = off", INSERT_ITEM],
        vec!["RESET ALL", INSERT_ITEM],
        vec![
            "SELECT set_config('transaction_read_only', 'off', false)",
            INSERT_ITEM,
        ],
        vec!["SELECT pg_catalog.set_config('transaction_read_only', 'off', true)"],
        vec!["UPDATE pg_settings SET setting = 'off' WHERE name = 'transaction_read_only'"],
        vec!["SELECT 1; INSERT INTO scratch VALUES ('multi')"],
        vec!["SELECT 1 /* ; */ ; UPDATE backlog_items SET title = 'x'"],
        vec!["BEGIN; INSERT INTO scratch VALUES ('tx'); COMMIT"],
        vec!["COMMIT; INSERT INTO scratch VALUES ('after')"],
        vec!["DO $$ BEGIN INSERT INTO scratch VALUES ('do'); END $$"],
        vec!["CALL some_procedure()"],
        vec!["COPY scratch FROM STDIN"],
        vec!["PREPARE TRANSACTION 'escape'"],
        vec![
            "PREPARE p AS INSERT INTO scratch VALUES ('prep')",
            "EXECUTE p",
        ],
        vec!["SAVEPOINT s", "RELEASE SAVEPOINT s", INSERT_ITEM],
        vec!["WITH d AS (DELETE FROM backlog_items RETURNING 1) SELECT count(*) FROM d"],
        vec!["SELECT * FROM backlog_items FOR UPDATE"],
        vec!["SELECT nextval('backlog_events_seq_seq')"],
        vec!["CREATE TABLE evil (x int)"],
        vec!["CREATE TEMP TABLE evil AS SELECT 1"],
        vec!["LOCK TABLE backlog_items IN ACCESS EXCLUSIVE MODE"],
        vec!["DISCARD ALL", INSERT_ITEM],
        vec![
            "  -- a comment first\n  /* and another */ commit",
            INSERT_ITEM,
        ],
    ];
    // `then: error`: a failed statement aborts the transaction, so the guest reports failure.
    let lines: Vec<Value> = attempts
        .iter()
        .map(|a| {
            line(
                "pg_read",
                a.iter().map(|s| st(s, json!([]))).collect(),
                "error",
            )
        })
        .collect();
    let outs = env.batch(&lines);
    for (attempt, out) in attempts.iter().zip(&outs) {
        for (sql, r) in attempt.iter().zip(results(out)) {
            let e = &r["error"];
            let blocked = e["kind"] == "refused" || e["sqlstate"] == "25006";
            assert!(
                blocked,
                "{sql:?} was not refused: {r} (attempt {attempt:?})"
            );
        }
    }
    assert_eq!(snapshot(&db), before, "rows changed under a read grant");
    // Still a read-only transaction, on every call, after all that.
    let outs = env.batch(&[line(
        "pg_read",
        vec![st(
            "SELECT current_setting('transaction_read_only') AS ro",
            json!([]),
        )],
        "ok",
    )]);
    assert_eq!(
        results(&outs[0])[0]["ok"]["rows"],
        json!([[{"text": "on"}]])
    );
}

#[test]
fn grants_decide_access_and_guests_never_see_the_dsn() {
    let (env, db) = setup();
    let select = || vec![st("SELECT count(*) AS n FROM backlog_items", json!([]))];
    let outs = env.batch(&[
        line("pg_none", select(), "ok"),
        line("pg_read", select(), "ok"),
        line("pg_write", select(), "ok"),
        json!({"tool":"hostile","action":"pg_read","params":{"database":"postgres","statements":select()}}),
    ]);
    let none = &results(&outs[0])[0]["error"];
    assert_eq!(none["kind"], "not_granted", "{none}");
    assert!(
        none["message"].as_str().unwrap().contains("plugins.yml"),
        "{none}"
    );
    assert_eq!(results(&outs[1])[0]["ok"]["rows"], json!([[{"int64": 1}]]));
    assert_eq!(results(&outs[2])[0]["ok"]["rows"], json!([[{"int64": 1}]]));
    let other_db = &results(&outs[3])[0]["error"];
    assert_eq!(other_db["kind"], "not_granted", "{other_db}");
    // What each guest was told: its access, never a DSN, host, port or password.
    let config =
        |i: usize| -> Value { serde_json::from_str(outs[i]["config"].as_str().unwrap()).unwrap() };
    assert_eq!(config(0).get("postgres"), None);
    assert_eq!(config(1)["postgres"], "read");
    assert_eq!(config(2)["postgres"], "read_write");
    assert_eq!(config(2)["backend"], "postgres");
    for out in &outs {
        let text = out.to_string();
        for secret in [PASSWORD, "127.0.0.1", &db.port.to_string(), "postgresql://"] {
            assert!(!text.contains(secret), "{secret} reached the guest: {text}");
        }
    }
    // Without a Postgres backend the grant gives nothing.
    let jsonl = env.var("BACKLOG_BACKEND", "jsonl");
    let outs = jsonl.batch(&[line("pg_write", select(), "ok")]);
    assert_eq!(results(&outs[0])[0]["error"]["kind"], "not_granted");
}

#[test]
fn each_call_commits_on_ok_and_rolls_back_on_error_trap_or_failed_statement() {
    let (env, db) = setup();
    let insert = |k: &str| st("INSERT INTO scratch VALUES ($1)", json!([{"text": k}]));
    let outs = env.batch(&[
        line("pg_write", vec![insert("error")], "error"),
        line("pg_write", vec![insert("trap")], "trap"),
        line("pg_write", vec![insert("ok")], "ok"),
        // A failed statement aborts the transaction: the guest's success cannot commit it.
        line("pg_write", vec![insert("swallowed"), insert("ok")], "ok"),
        line("pg_write", vec![insert("after")], "ok"),
    ]);
    assert_eq!(outs[0]["code"], "conflict", "{}", outs[0]);
    assert_eq!(outs[1]["code"], "internal", "{}", outs[1]);
    assert_eq!(results(&outs[2])[0]["ok"]["rows_affected"], 1);
    assert_eq!(outs[3]["code"], "internal", "{}", outs[3]);
    assert!(
        outs[3]["error"].as_str().unwrap().contains("23505"),
        "{}",
        outs[3]
    );
    assert_eq!(results(&outs[4])[0]["ok"]["rows_affected"], 1);
    assert_eq!(
        db.rows("SELECT k FROM scratch ORDER BY k"),
        vec![r#"{"k": "after"}"#, r#"{"k": "ok"}"#]
    );
}

#[test]
fn warm_instances_and_pooled_connections_start_every_call_clean() {
    let (env, db) = setup();
    let q = |sql: &str| st(sql, json!([]));
    let probe = || {
        vec![
            q("SELECT pg_backend_pid() AS pid"),
            q("SELECT count(*) AS n FROM backlog_items"),
            // Advisory locks other than the host's writer lock (key 0x6261636b_6c6f6721,
            // which every write-capable call holds for its transaction).
            q(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
               AND NOT (classid = 1650549611 AND objid = 1819240225)",
            ),
            q("SELECT now()::text AS started"),
            q("SELECT current_setting('statement_timeout') AS t"),
            q(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
               AND classid = 1650549611 AND objid = 1819240225 AND granted",
            ),
        ]
    };
    let mut leave_mess = vec![
        // What a guest can leave in a session without SET: a temp table shadowing the real
        // one, a session-level advisory lock.
        q("CREATE TEMP TABLE backlog_items (id text)"),
        q("SELECT pg_advisory_lock(42)"),
    ];
    leave_mess.extend(probe());
    let outs = env.batch(&[
        line("pg_write", leave_mess, "ok"),
        line("pg_write", probe(), "ok"),
        line("pg_write", probe(), "ok"),
    ]);
    let row = |out: &Value, i: usize| results(out)[i]["ok"]["rows"][0][0].clone();
    // The first call saw its own mess …
    assert_eq!(row(&outs[0], 3), json!({"int64": 0}));
    assert_eq!(row(&outs[0], 4), json!({"int64": 1}));
    for out in &outs[1..] {
        // … the next calls, on the same pooled connection, see none of it.
        assert_eq!(
            row(out, 0),
            row(&outs[0], 2),
            "not the same connection: {out}"
        );
        assert_eq!(row(out, 1), json!({"int64": 1}), "{out}");
        assert_eq!(row(out, 2), json!({"int64": 0}), "{out}");
        assert_eq!(row(out, 4), json!({"text": "5s"}), "{out}");
        // The writer lock is held by this write call's transaction (and only by it).
        assert_eq!(row(out, 5), json!({"int64": 1}), "{out}");
    }
    // A new transaction per call.
    assert_ne!(row(&outs[1], 3), row(&outs[2], 3));
    assert_eq!(db.scalar("SELECT count(*) FROM scratch"), "0");
}

#[test]
fn values_convert_both_ways() {
    let (env, _db) = setup();
    let select = st(
        "SELECT $1::text AS t, $2 AS b, $3 AS i, $4 AS f, $5 AS j, $6 AS ts, $7 AS d, \
         $8::text AS n, 42::int4 AS i4, 7::int2 AS i2, 1.5::float4 AS f4, \
         '{\"a\": [1, 2]}'::json AS js, 'x'::varchar AS v",
        json!([
            {"text": "héllo ' \"quoted\""},
            {"boolean": true},
            {"int64": -9007199254740993i64},
            {"float64": 0.1},
            {"json": "{\"k\": [1, \"two\", null]}"},
            {"timestamp": "2026-03-02T08:20:01.5+02:00"},
            {"date": "2026-02-28"},
            {"null": null},
        ]),
    );
    let unsupported = st("SELECT 1.5::numeric AS total", json!([]));
    let bad_date = st("SELECT $1", json!([{"date": "2026-02-30"}]));
    let insert = st(
        "INSERT INTO scratch VALUES ($1), ($2) RETURNING k",
        json!([{"text": "a"}, {"text": "b"}]),
    );
    let empty = st(
        "SELECT k FROM scratch WHERE k = $1",
        json!([{"text": "zzz"}]),
    );
    let outs = env.batch(&[line("pg_write", vec![select, unsupported, bad_date], "ok")]);
    let r = results(&outs[0]);
    assert_eq!(
        r[0]["ok"]["columns"],
        json!([
            "t", "b", "i", "f", "j", "ts", "d", "n", "i4", "i2", "f4", "js", "v"
        ])
    );
    assert_eq!(
        r[0]["ok"]["rows"],
        json!([[
            {"text": "héllo ' \"quoted\""},
            {"boolean": true},
            {"int64": -9007199254740993i64},
            {"float64": 0.1},
            {"json": "{\"k\": [1, \"two\", null]}"},
            {"timestamp": "2026-03-02T06:20:01.500000Z"},
            {"date": "2026-02-28"},
            {"null": null},
            {"int64": 42},
            {"int64": 7},
            {"float64": 1.5},
            {"json": "{\"a\": [1, 2]}"},
            {"text": "x"},
        ]])
    );
    assert_eq!(r[0]["ok"]["rows_affected"], 0, "a SELECT changes no rows");
    let e = &r[1]["error"];
    assert_eq!(
        (&e["kind"], &e["sqlstate"]),
        (&json!("sql"), &json!("0A000")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("`total` has type numeric"),
        "{e}"
    );
    assert_eq!(r[2]["error"]["sqlstate"], "22007", "{}", r[2]);
    // Rows affected, and a result without rows.
    let outs = env.batch(&[line("pg_write", vec![insert, empty], "ok")]);
    let r = results(&outs[0]);
    assert_eq!(
        r[0]["ok"]["rows"],
        json!([[{"text": "a"}], [{"text": "b"}]])
    );
    assert_eq!(r[0]["ok"]["rows_affected"], 2);
    assert_eq!(r[1]["ok"]["rows"], json!([]));
}

#[test]
fn statement_time_and_row_caps_are_limits() {
    let (env, _db) = setup();
    let started = Instant::now();
    let outs = env.batch(&[
        line(
            "pg_read",
            vec![st("SELECT pg_sleep(8)", json!([]))],
            "error",
        ),
        line(
            "pg_read",
            vec![st("SELECT generate_series(1, 100001) AS n", json!([]))],
            "ok",
        ),
    ]);
    let r = results(&outs[0]);
    assert_eq!(r[0]["error"]["kind"], "limit", "{}", r[0]);
    assert!(
        r[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("5000 ms"),
        "{}",
        r[0]
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let capped = &results(&outs[1])[0]["error"];
    assert_eq!(capped["kind"], "limit", "{capped}");
    assert!(
        capped["message"].as_str().unwrap().contains("100000 rows"),
        "{capped}"
    );

    // The call's own time limit (1 s) stops waiting for the server and times the call out.
    let started = Instant::now();
    let run = env.call(
        "operator",
        "hostile",
        "pg_slow",
        &json!({"statements": [st("SELECT pg_sleep(4)", json!([]))]}),
    );
    assert_eq!(run.json()["code"], "timeout", "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_database_without_the_schema_is_unavailable_and_says_run_migrate() {
    let db = pg::database();
    let env = Env::new()
        .with_hostile()
        .with_postgres(&db)
        .var("BACKLOG_POSTGRES_DSN", &db.password_dsn());
    let run = env.call(
        "operator",
        "hostile",
        "pg_read",
        &json!({"statements": [st("SELECT 1", json!([]))]}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let e = &results(&run.json())[0]["error"];
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("run `backlog-bridge migrate`"),
        "{e}"
    );
    assert!(run.stderr.contains("backlog-bridge migrate"), "{run:?}");
    assert!(!run.stderr.contains(PASSWORD), "{run:?}");
}

#[test]
fn a_server_that_is_down_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new()
        .with_hostile()
        .var("BACKLOG_BACKEND", "postgres")
        .var(
            "BACKLOG_POSTGRES_DSN",
            &format!("postgresql://u:{PASSWORD}@127.0.0.1:{port}/backlog"),
        );
    let run = env.call(
        "operator",
        "hostile",
        "pg_write",
        &json!({"statements": [st("SELECT 1", json!([]))]}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let e = &results(&run.json())[0]["error"];
    assert_eq!(e["kind"], "unavailable", "{e}");
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{run:?}"
    );
    // A Postgres backend without a DSN is a configuration error.
    let env = Env::new().var("BACKLOG_BACKEND", "postgres");
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("BACKLOG_POSTGRES_DSN"), "{run:?}");
}

/// The capability without wasm: `PgGrant` as a store holds it, and the pool's status.
#[test]
fn the_capability_and_status_work_without_a_guest() {
    use std::sync::Arc;

    use backlog_bridge::caps::pg::{
        CommitError, DbValue, Dsn, End, Limits, PgError, PgGrant, PgStatus, Postgres,
    };
    use backlog_bridge::grants::Access;

    let db = pg::database();
    let pool = Arc::new(Postgres::new(Dsn::new(db.password_dsn()), Limits::default()).unwrap());
    let status = |reachable, schema_current| PgStatus {
        reachable,
        schema_current,
    };
    assert_eq!(pool.status(), status(true, false));
    let run = Env::new().migrate(&["--dsn", &db.password_dsn()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(pool.status(), status(true, true));
    let down = Postgres::new(Dsn::new("postgresql://u@127.0.0.1:1/x"), Limits::default()).unwrap();
    assert_eq!(down.status(), status(false, false));

    let insert = "INSERT INTO scratch VALUES ($1)";
    db.batch("CREATE TABLE scratch (k text PRIMARY KEY); GRANT ALL ON scratch TO bridge_pw;");
    let text = |s: &str| vec![DbValue::Text(s.into())];

    let mut none = PgGrant::new(Access::None, Some(pool.clone()));
    assert!(matches!(
        none.execute("backlog", "SELECT 1", vec![]),
        Err(PgError::NotGranted(_))
    ));

    let mut read = PgGrant::new(Access::Read, Some(pool.clone()));
    match read.execute("backlog", insert, text("r")) {
        Err(PgError::Sql(e)) => assert_eq!(e.sqlstate, "25006", "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        read.end_call(End::Commit),
        Err(CommitError::Aborted("25006".into()))
    );

    let mut write = PgGrant::new(Access::ReadWrite, Some(pool.clone()));
    write
        .execute("backlog", insert, text("rolled back"))
        .unwrap();
    write.end_call(End::Rollback).unwrap();
    let r = write.execute("backlog", insert, text("kept")).unwrap();
    assert_eq!(r.rows_affected, 1);
    write.end_call(End::Commit).unwrap();
    assert_eq!(db.scalar("SELECT string_agg(k, ',') FROM scratch"), "kept");
}
