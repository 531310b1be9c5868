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

/// An event of the seeded item, its id in `$1`.
/// Advisory locks held in this test's database (the tests share one cluster).
const ADVISORY_LOCKS: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
const INSERT_EVENT: &str = "INSERT INTO backlog_events (id, item_id, ts, type, actor) VALUES \
     ($1, 'bl_000000000001', now(), 'commented', 'hostile')";

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
    // Queued writes of a guest that then reports success: the commit fails, `forbidden`.
    let queued = [
        INSERT_ITEM,
        "UPDATE backlog_items SET title = 'pwned'",
        "DELETE FROM backlog_events",
    ];
    let lines: Vec<Value> = queued
        .iter()
        .map(|sql| {
            json!({"tool": "hostile", "action": "pg_read", "params": {
                "statements": [{"sql": sql, "params": [], "queue": true}], "then": "ok"}})
        })
        .collect();
    for (sql, out) in queued.iter().zip(env.batch(&lines)) {
        assert_eq!(out["code"], "forbidden", "{sql:?}: {out}");
        assert!(
            out["error"].as_str().unwrap_or_default().contains("25006"),
            "{sql:?}: {out}"
        );
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
    let insert = |k: &str| st(INSERT_EVENT, json!([{"text": k}]));
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
        db.rows("SELECT id FROM backlog_events WHERE actor = 'hostile' ORDER BY id"),
        vec![r#"{"id": "after"}"#, r#"{"id": "ok"}"#]
    );
}

#[test]
fn warm_instances_and_pooled_connections_start_every_call_clean() {
    let (env, _db) = setup();
    let q = |sql: &str| st(sql, json!([]));
    let probe = || {
        vec![
            q("SELECT pg_backend_pid() AS pid"),
            q("SELECT count(*) AS n FROM backlog_events"),
            q("SELECT now()::text AS started"),
            q("SELECT current_setting('statement_timeout') AS t"),
            q("SELECT current_user = session_user AS same, current_setting('role') AS r"),
        ]
    };
    let mut first = vec![st(INSERT_EVENT, json!([{"text": "ev_warm"}]))];
    first.extend(probe());
    let outs = env.batch(&[
        line("pg_write", first, "ok"),
        line("pg_write", probe(), "ok"),
        line("pg_read", probe(), "ok"),
    ]);
    let row = |out: &Value, i: usize| results(out)[i]["ok"]["rows"][0].clone();
    assert_eq!(row(&outs[0], 2), json!([{"int64": 2}]), "{}", outs[0]);
    for out in &outs[1..] {
        // The same pooled connection, a new transaction, the host's settings, the login role.
        assert_eq!(
            row(out, 0),
            row(&outs[0], 1),
            "not the same connection: {out}"
        );
        assert_eq!(row(out, 1), json!([{"int64": 2}]), "{out}");
        assert_eq!(row(out, 3), json!([{"text": "5s"}]), "{out}");
        assert_eq!(
            row(out, 4),
            json!([{"boolean": true}, {"text": "none"}]),
            "{out}"
        );
    }
    assert_ne!(row(&outs[1], 2), row(&outs[2], 2));
}

/// The hostile plugin tries every known way to run a statement the guard would refuse — as
/// SQL text handed to a function that executes it, as a role switch, as the writers' lock —
/// under a read grant, on a login role that IS a member of a more privileged role (what the
/// README tells operators not to do, so that the server would let the switch through). Each
/// is refused, and the following call on the same pooled connection runs as the login role
/// with the host's settings.
#[test]
fn hostile_statements_cannot_switch_roles_run_sql_text_or_take_the_writers_lock() {
    let (env, db) = setup();
    let auditor = format!("auditor_{}", db.name);
    let login = format!("login_{}", db.name);
    let env = env.var(
        "BACKLOG_POSTGRES_DSN",
        &format!("postgresql://{login}@127.0.0.1:{}/{}", db.port, db.name),
    );
    db.batch(&format!(
        "CREATE ROLE {login} LOGIN; CREATE ROLE {auditor} NOLOGIN; GRANT {auditor} TO {login};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {login};
         CREATE TABLE auditor_only (s text); INSERT INTO auditor_only VALUES ('classified');
         REVOKE ALL ON auditor_only FROM PUBLIC; GRANT SELECT ON auditor_only TO {auditor};"
    ));
    // dblink, when the server has it, makes the loopback attempts below real threats; the
    // guard refuses them by name either way.
    if db.scalar("SELECT count(*) FROM pg_available_extensions WHERE name = 'dblink'") == "1" {
        db.batch("CREATE EXTENSION IF NOT EXISTS dblink");
    }
    let switch = format!("select set_config(''role'',''{auditor}'',false)");
    let loopback = format!(
        "host=127.0.0.1 port={} dbname={} user=postgres",
        db.port, db.name
    );
    let attempts: Vec<String> = vec![
        format!("SELECT query_to_xml('{switch}', true, true, '')"),
        format!("SELECT * FROM query_to_xml('{switch}', true, true, '') AS x"),
        format!("WITH x AS (SELECT query_to_xml('{switch}', true, true, '') AS v) SELECT 1 FROM x"),
        format!("SELECT 1 WHERE EXISTS (SELECT query_to_xmlschema('{switch}', true, true, ''))"),
        format!("SELECT ts_stat('{switch}')"),
        format!("SELECT * FROM ts_stat('{switch}')"),
        "SELECT cursor_to_xml('c', 1, false, true, '')".to_owned(),
        "SELECT database_to_xml(true, true, '')".to_owned(),
        "SELECT table_to_xml('auditor_only', true, true, '')".to_owned(),
        format!("SELECT dblink_exec('{loopback}', 'GRANT {auditor} TO PUBLIC')"),
        format!("SELECT * FROM dblink('{loopback}', 'SELECT s FROM auditor_only') AS t(s text)"),
        format!("SET ROLE {auditor}"),
        format!("SET SESSION AUTHORIZATION {auditor}"),
        format!("SELECT set_config('role', '{auditor}', false)"),
        format!("SELECT pg_catalog.set_config('role', '{auditor}', true)"),
        "RESET ROLE".to_owned(),
        "SELECT s FROM auditor_only".to_owned(),
        "SELECT s FROM public.auditor_only".to_owned(),
        "SELECT pg_advisory_lock(7089056601489762081)".to_owned(),
        "SELECT pg_try_advisory_lock(7089056601489762081)".to_owned(),
        "SELECT pg_advisory_lock_shared(1)".to_owned(),
        "SELECT count(*) FROM backlog_items WHERE pg_try_advisory_xact_lock(1)".to_owned(),
    ];
    let probe = || {
        st(
            "SELECT pg_backend_pid() AS pid, current_user::text AS who, \
             current_user = session_user AS same, current_setting('role') AS r, \
             current_setting('statement_timeout') AS t, current_setting('search_path') AS p",
            json!([]),
        )
    };
    let mut first = vec![probe()];
    first.extend(attempts.iter().map(|sql| st(sql, json!([]))));
    let outs = env.batch(&[
        line("pg_read", first, "ok"),
        line("pg_read", vec![probe()], "ok"),
    ]);
    let r = results(&outs[0]);
    for (sql, out) in attempts.iter().zip(&r[1..]) {
        assert_eq!(
            out["error"]["kind"], "refused",
            "{sql:?} was not refused: {out}"
        );
    }
    let before = &r[0]["ok"]["rows"][0];
    let after = &results(&outs[1])[0]["ok"]["rows"][0];
    assert_eq!(
        after[0], before[0],
        "not the same pooled connection: {after} vs {before}"
    );
    assert_eq!(
        after.as_array().unwrap()[1..],
        json!([
            {"text": login},
            {"boolean": true},
            {"text": "none"},
            {"text": "5s"},
            {"text": "\"$user\", public"}
        ])
        .as_array()
        .unwrap()[..],
        "{after}"
    );
    // Nothing reached the server: no grant was made by the loopback link.
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             WHERE r.rolname = '{auditor}'"
        )),
        "1"
    );
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
        "INSERT INTO backlog_events (id, item_id, ts, type, actor) VALUES \
         ($1, 'bl_000000000001', now(), 'commented', 'x'), \
         ($2, 'bl_000000000001', now(), 'commented', 'x') RETURNING id",
        json!([{"text": "a"}, {"text": "b"}]),
    );
    let empty = st(
        "SELECT id FROM backlog_events WHERE id = $1",
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
    let (env, db) = setup();
    // 400 events: a 4-way cross join runs far past any timeout (no function needed, nothing
    // stored); a 2-way one returns 160,000 rows.
    db.batch(
        "INSERT INTO backlog_events (id, item_id, ts, type, actor) SELECT 'ev_' || n, \
         'bl_000000000001', now(), 'commented', 'x' FROM generate_series(1, 399) n",
    );
    let slow = "SELECT count(*) FROM backlog_events a, backlog_events b, backlog_events c, \
                backlog_events d";
    let started = Instant::now();
    let outs = env.batch(&[
        line("pg_read", vec![st(slow, json!([]))], "error"),
        line(
            "pg_read",
            vec![st(
                "SELECT 1 AS n FROM backlog_events a, backlog_events b",
                json!([]),
            )],
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
        &json!({"statements": [st(slow, json!([]))]}),
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
        CommitError, DbValue, Dsn, End, Limits, PgError, PgGrant, Postgres,
    };
    use backlog_bridge::grants::Access;

    let db = pg::database();
    let pool = Arc::new(Postgres::new(Dsn::new(db.password_dsn()), Limits::default()).unwrap());
    let status = |pool: &Postgres| {
        let s = pool.status();
        (s.reachable, s.schema_current)
    };
    assert_eq!(status(&pool), (true, false));
    let run = Env::new().migrate(&["--dsn", &db.password_dsn()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(status(&pool), (true, true));
    let down = Postgres::new(Dsn::new("postgresql://u@127.0.0.1:1/x"), Limits::default()).unwrap();
    assert_eq!(status(&down), (false, false));
    db.batch(
        "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, \
         priority, status, owner, due_date, source, dedupe_key) VALUES ('bl_000000000001', \
         now(), now(), 'prod', 'svc', 'refactor', 't', 'P1', 'open', 'a', '2026-12-01', \
         'manual', 'k1')",
    );
    let text = |s: &str| vec![DbValue::Text(s.into())];

    let mut none = PgGrant::new(Access::None, Some(pool.clone()));
    assert!(matches!(
        none.execute("backlog", "SELECT 1", vec![]),
        Err(PgError::NotGranted(_))
    ));

    let mut read = PgGrant::new(Access::Read, Some(pool.clone()));
    match read.execute("backlog", INSERT_EVENT, text("ev_r")) {
        Err(PgError::Sql(e)) => assert_eq!(e.sqlstate, "25006", "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        read.end_call(End::Commit),
        Err(CommitError::Aborted("25006".into()))
    );

    // A read grant cannot take an advisory lock: refused before the
    // server sees it, so nothing is held while the call is still open.
    let mut read = PgGrant::new(Access::Read, Some(pool.clone()));
    read.execute("backlog", "SELECT 1", vec![]).unwrap();
    for sql in [
        "SELECT pg_advisory_lock(7089056601489762081)",
        "SELECT pg_try_advisory_lock(7089056601489762081)",
        "SELECT pg_advisory_lock_shared(1650549611, 1819240225)",
    ] {
        match read.execute("backlog", sql, vec![]) {
            Err(PgError::Refused(m)) => assert!(m.contains("advisory_lock"), "{m}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(db.scalar(ADVISORY_LOCKS), "0");
    read.end_call(End::Commit).unwrap();

    let mut write = PgGrant::new(Access::ReadWrite, Some(pool.clone()));
    write
        .execute("backlog", INSERT_EVENT, text("ev_rolled_back"))
        .unwrap();
    // Writers take no lock of their own (no global writers' lock): only the transaction,
    // open until the call ends.
    assert_eq!(db.scalar(ADVISORY_LOCKS), "0");
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'backlog-bridge' \
             AND state = 'idle in transaction'"
        ),
        "1"
    );
    write.end_call(End::Rollback).unwrap();
    assert_eq!(db.scalar(ADVISORY_LOCKS), "0");
    let r = write
        .execute("backlog", INSERT_EVENT, text("ev_kept"))
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    write.end_call(End::Commit).unwrap();
    assert_eq!(
        db.scalar("SELECT string_agg(id, ',') FROM backlog_events"),
        "ev_kept"
    );
}

/// `queue`: a statement the guest does not need the result of goes with the call's next
/// statement (before it, so that one sees it) or with the COMMIT, in one transaction with the
/// rest; its failure comes back from the next statement or fails the commit (a lost race is
/// reported as one); a rollback drops it unsent; the guard and the grant apply at once.
#[test]
fn queued_statements_go_with_the_next_statement_or_the_commit() {
    use std::sync::Arc;

    use backlog_bridge::caps::pg::{
        CommitError, DbValue, Dsn, End, Limits, PgError, PgGrant, Postgres,
    };
    use backlog_bridge::grants::Access;

    let (_env, db) = setup();
    let pool = Arc::new(Postgres::new(Dsn::new(db.password_dsn()), Limits::default()).unwrap());
    let text = |s: &str| vec![DbValue::Text(s.into())];
    let events = || db.scalar("SELECT string_agg(id, ',' ORDER BY id) FROM backlog_events");
    let open_transactions = || {
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'backlog-bridge' \
             AND state LIKE 'idle in transaction%'",
        )
    };
    let write = || PgGrant::new(Access::ReadWrite, Some(pool.clone()));

    // Only queued: nothing reaches the server before the end; then BEGIN, both, COMMIT.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q1")).unwrap();
    call.queue("backlog", INSERT_EVENT, text("ev_q2")).unwrap();
    assert_eq!(open_transactions(), "0");
    assert_eq!(events(), "ev_000000000001");
    call.end_call(End::Commit).unwrap();
    assert_eq!(events(), "ev_000000000001,ev_q1,ev_q2");

    // Before the next statement, in its transaction: it sees the queued row.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q3")).unwrap();
    let seen = call
        .execute(
            "backlog",
            "SELECT count(*) FROM backlog_events WHERE id = $1",
            text("ev_q3"),
        )
        .unwrap();
    assert!(
        matches!(seen.rows.as_slice(), [row] if matches!(row.as_slice(), [DbValue::Int64(1)])),
        "{seen:?}"
    );
    assert_eq!(open_transactions(), "1");
    call.end_call(End::Rollback).unwrap();
    assert!(!events().contains("ev_q3"), "{}", events());

    // A queued failure comes back from the next statement, named, and aborts the call.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q1")).unwrap();
    match call.execute("backlog", "SELECT 1", vec![]) {
        Err(PgError::Sql(e)) => {
            assert_eq!(e.sqlstate, "23505", "{e:?}");
            assert!(e.message.contains("a queued statement failed"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call.end_call(End::Commit),
        Err(CommitError::Aborted("23505".into()))
    );
    assert!(call.lost_race());

    // With nothing after it, it fails the commit: nothing of the call is kept.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q4")).unwrap();
    call.queue("backlog", INSERT_EVENT, text("ev_q1")).unwrap();
    match call.end_call(End::Commit) {
        Err(CommitError::Refused { sqlstate, message }) => {
            assert_eq!(sqlstate, "23505");
            assert!(message.contains("a queued statement failed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(call.lost_race());
    assert!(!events().contains("ev_q4"), "{}", events());

    // A statement the server cannot prepare fails the commit the same way.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q5")).unwrap();
    call.queue(
        "backlog",
        "INSERT INTO backlog_events (no_such_column) VALUES (1)",
        vec![],
    )
    .unwrap();
    match call.end_call(End::Commit) {
        Err(CommitError::Refused { sqlstate, .. }) => assert_eq!(sqlstate, "42703"),
        other => panic!("{other:?}"),
    }
    assert!(!events().contains("ev_q5"), "{}", events());

    // A rollback drops what is queued, unsent.
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q6")).unwrap();
    call.end_call(End::Rollback).unwrap();
    assert!(!events().contains("ev_q6"), "{}", events());

    // The guard and the grant answer at once.
    let mut call = write();
    assert!(matches!(
        call.queue("backlog", "COMMIT", vec![]),
        Err(PgError::Refused(_))
    ));
    let mut none = PgGrant::new(Access::None, Some(pool.clone()));
    assert!(matches!(
        none.queue("backlog", INSERT_EVENT, text("ev_q7")),
        Err(PgError::NotGranted(_))
    ));
    // A read grant may queue, but the write fails the commit: read-only stays read-only.
    let mut read = PgGrant::new(Access::Read, Some(pool.clone()));
    read.queue("backlog", INSERT_EVENT, text("ev_q8")).unwrap();
    match read.end_call(End::Commit) {
        Err(CommitError::Refused { sqlstate, .. }) => assert_eq!(sqlstate, "25006"),
        other => panic!("{other:?}"),
    }
    assert_eq!(events(), "ev_000000000001,ev_q1,ev_q2");
    assert_eq!(open_transactions(), "0");

    // A call that only queued, on a pooled connection the server has closed meanwhile: its
    // statements run on a new connection.
    db.batch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'backlog-bridge'",
    );
    let mut call = write();
    call.queue("backlog", INSERT_EVENT, text("ev_q9")).unwrap();
    call.end_call(End::Commit).unwrap();
    assert_eq!(events(), "ev_000000000001,ev_q1,ev_q2,ev_q9");
}

/// A queued write is the call's own work: it ends at the call's time limit (plus the COMMIT's
/// short grace), not at the statement timeout. Here it waits for a row lock another session
/// holds: the call answers `timeout` within about its 1 s limit (the statement timeout is 5 s),
/// the write is canceled and rolled back (it never lands, even once the lock is free), and the
/// connection goes back clean.
#[test]
fn a_queued_write_ends_at_the_calls_time_limit() {
    let (env, db) = setup();
    let title = || db.scalar("SELECT title FROM backlog_items WHERE id = 'bl_000000000001'");
    let mut holder = db.client();
    let mut held = holder.transaction().unwrap();
    held.batch_execute("SELECT 1 FROM backlog_items WHERE id = 'bl_000000000001' FOR UPDATE")
        .unwrap();

    let update = "UPDATE backlog_items SET title = 'queued' WHERE id = 'bl_000000000001'";
    let started = Instant::now();
    let run = env.call(
        "operator",
        "hostile",
        "pg_slow_write",
        &json!({"statements": [{"sql": update, "params": [], "queue": true}], "then": "ok"}),
    );
    let took = started.elapsed();
    let out = run.json();
    assert_eq!(out["code"], "timeout", "{run:?}");
    let message = out["error"].as_str().unwrap_or_default();
    assert!(message.contains("canceled and rolled back"), "{message}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    held.rollback().unwrap();
    assert_eq!(title(), "keep me");
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'backlog-bridge' \
             AND state <> 'idle'"
        ),
        "0"
    );
    // Without the lock the same call commits.
    let run = env.call(
        "operator",
        "hostile",
        "pg_slow_write",
        &json!({"statements": [{"sql": update, "params": [], "queue": true}], "then": "ok"}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(title(), "queued");
}

/// The rows of the last of `statements`, run as one call through the pool's session (below
/// the guard), each value as text.
fn session_rows(
    pool: &std::sync::Arc<backlog_bridge::caps::pg::Postgres>,
    statements: &[&str],
) -> Vec<Vec<String>> {
    use backlog_bridge::caps::pg::DbValue;
    use backlog_bridge::caps::pg::End;
    use backlog_bridge::caps::pg::session::Session;
    let mut session = Session::begin(pool, true).unwrap();
    let mut last = Vec::new();
    for sql in statements {
        let r = session
            .execute(sql, Vec::new(), false, None)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        last = r.rows;
    }
    session.end(End::Commit, None).unwrap();
    last.iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    DbValue::Text(s) => s.clone(),
                    DbValue::Int64(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

/// Below the guard: whatever a call leaves in its session (a role switch, settings, a temp
/// table, session advisory locks) is gone for the next call on the same pooled connection —
/// and a connection that does not come back to the login role after the reset is dropped,
/// never reused.
#[test]
fn a_pooled_connection_is_reset_and_verified_or_dropped_between_calls() {
    use std::sync::Arc;

    use backlog_bridge::caps::pg::{Dsn, Limits, Postgres};

    let db = pg::database();
    let run = Env::new().migrate(&["--dsn", &db.password_dsn()]);
    assert_eq!(run.code, 0, "{run:?}");
    let (login, other) = (format!("login_{}", db.name), format!("other_{}", db.name));
    db.batch(&format!(
        "CREATE ROLE {login} LOGIN; CREATE ROLE {other} NOLOGIN; GRANT {other} TO {login};
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {login}, {other};"
    ));
    let dsn = format!("postgresql://{login}@127.0.0.1:{}/{}", db.port, db.name);
    let pool = Arc::new(Postgres::new(Dsn::new(&dsn), Limits::default()).unwrap());
    let probe = "SELECT pg_backend_pid()::int8, current_user::text, \
                 current_setting('statement_timeout'), current_setting('work_mem'), \
                 (SELECT count(*) FROM pg_settings WHERE source = 'session')";
    let dirty = session_rows(
        &pool,
        &[
            &format!("SET ROLE {other}"),
            "SET work_mem = '7MB'",
            "SELECT set_config('statement_timeout', '1234', false)",
            "CREATE TEMP TABLE left_behind (x int)",
            "SELECT pg_advisory_lock(42)",
            probe,
        ],
    );
    // (`role` is not listed in pg_settings: two settings changed by the session.)
    assert_eq!(dirty[0][1..], [&other, "1234ms", "7MB", "2"], "{dirty:?}");
    let clean = session_rows(&pool, &[probe]);
    assert_eq!(
        clean[0][0], dirty[0][0],
        "the reset connection should be reused"
    );
    let work_mem = db.scalar("SELECT current_setting('work_mem')");
    assert_eq!(clean[0][1..], [&login, "5s", &work_mem, "0"], "{clean:?}");
    assert_eq!(db.scalar(ADVISORY_LOCKS), "0");
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_class WHERE relname = 'left_behind'"),
        "0"
    );
    // A statement prepared by SQL (a guest's, had the guard let `PREPARE` through) is not
    // the host's, which stay prepared: the check sees it, and the connection is not reused.
    let prepared = session_rows(&pool, &["PREPARE left_behind_plan AS SELECT 1", probe]);
    let next = session_rows(&pool, &[probe]);
    assert_eq!(prepared[0][0], clean[0][0], "{prepared:?}");
    assert_ne!(
        next[0][0], prepared[0][0],
        "a connection holding a statement prepared by SQL was reused"
    );

    // A login role whose sessions start as another role (ALTER ROLE … SET role): the reset
    // cannot bring the connection back to the login role, so every connection is dropped
    // after its call and the next call gets a new one.
    db.batch(&format!(
        "ALTER ROLE {login} IN DATABASE {} SET role = '{other}'",
        db.name
    ));
    let pool = Arc::new(Postgres::new(Dsn::new(&dsn), Limits::default()).unwrap());
    let first = session_rows(&pool, &[probe]);
    let second = session_rows(&pool, &[probe]);
    assert_eq!(first[0][1], other, "{first:?}");
    assert_ne!(
        first[0][0], second[0][0],
        "a connection that failed the check was reused"
    );
}

/// Below the guard, one thing at a time: each kind of state a session keeps past its
/// transaction is gone for the next call, and the connection is reused. Settings are reset
/// after every call (`RESET ALL`, in the COMMIT's round trip); advisory locks are released by
/// the session check; a cursor kept open, a channel listened to or a temporary table (one
/// shadowing a backlog table, here) makes the check send the session through the full reset.
#[test]
fn each_thing_a_session_keeps_is_gone_for_the_next_call() {
    use std::sync::Arc;

    use backlog_bridge::caps::pg::{Dsn, Limits, Postgres};

    let db = pg::database();
    let run = Env::new().migrate(&["--dsn", &db.password_dsn()]);
    assert_eq!(run.code, 0, "{run:?}");
    let pool = Arc::new(Postgres::new(Dsn::new(db.password_dsn()), Limits::default()).unwrap());
    let pid = |rows: &[Vec<String>]| rows[0][0].clone();
    let first = session_rows(&pool, &["SELECT pg_backend_pid()::int8"]);
    let work_mem = db.scalar("SELECT current_setting('work_mem')");
    let cases: [(&str, &str, &str); 5] = [
        (
            "SET work_mem = '7MB'",
            "SELECT current_setting('work_mem')",
            work_mem.as_str(),
        ),
        ("SELECT pg_advisory_lock(7)", ADVISORY_LOCKS, "0"),
        (
            "DECLARE kept CURSOR WITH HOLD FOR SELECT 1",
            "SELECT count(*) FROM pg_cursors WHERE name = 'kept'",
            "0",
        ),
        (
            "LISTEN left_listening",
            "SELECT count(*) FROM pg_listening_channels()",
            "0",
        ),
        (
            "CREATE TEMP TABLE backlog_items (id text)",
            "SELECT count(*) FROM pg_class WHERE relname = 'backlog_items' \
             AND relpersistence = 't'",
            "0",
        ),
    ];
    for (leave, probe, gone) in cases {
        let left = session_rows(&pool, &[leave, "SELECT pg_backend_pid()::int8"]);
        assert_eq!(pid(&left), pid(&first), "{leave}: another connection");
        let seen = session_rows(&pool, &[probe]);
        assert_eq!(seen[0][0], gone, "{leave}: still there for the next call");
        let reused = session_rows(&pool, &["SELECT pg_backend_pid()::int8"]);
        assert_eq!(
            pid(&reused),
            pid(&first),
            "{leave}: the connection was not reused"
        );
    }
}

/// A "server" that accepts TCP connections and never answers (a hung Postgres, a black-holed
/// proxy); it holds every connection for the rest of the test process.
fn hung_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

/// One timed request to a running `serve`: (status, body, seconds).
fn timed(
    server: &crate::http::Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, f64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.base))
        .header(
            "Authorization",
            format!("Bearer {}", crate::http::OPERATOR_KEY),
        )
        .header("Content-Type", "application/json");
    if body.is_none() {
        req = req.header("Accept", "*/*");
    }
    let started = Instant::now();
    let resp = match body {
        Some(b) => agent.run(req.body(b.to_string().into_bytes()).unwrap()),
        None => agent.run(req.body(()).unwrap()),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, text, started.elapsed().as_secs_f64())
}

/// Against a server that accepts TCP and never answers, nothing waits longer than one connect
/// timeout: calls fail `unavailable` (the server is then marked down, so the next calls do
/// not even try), `/readyz` and `/metrics` answer within about one connect timeout. The
/// connect timeout is set to 1 s; the bound asserted is twice that.
#[test]
fn a_hung_server_costs_at_most_one_connect_timeout() {
    let port = hung_server();
    let env = crate::http::env()
        .var("BACKLOG_BACKEND", "postgres")
        .var(
            "BACKLOG_POSTGRES_DSN",
            &format!("postgresql://bridge:{PASSWORD}@127.0.0.1:{port}/backlog"),
        )
        .var("BACKLOG_POSTGRES_CONNECT_TIMEOUT_MS", "1000");
    let server = crate::http::Server::start(&env, &[]);
    let bound = 2.0;
    let (status, body, secs) = timed(&server, "GET", "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(secs < bound, "/readyz took {secs:.2} s: {body}");
    for i in 0..3 {
        let (status, body, secs) = timed(
            &server,
            "POST",
            "/v1/tools/execute",
            Some(json!({"tool": "backlog_tool", "action": "list", "env": "prod"})),
        );
        assert_eq!(status, 503, "call {i}: {body}");
        assert!(body.contains("unavailable"), "call {i}: {body}");
        assert!(secs < bound, "call {i} took {secs:.2} s: {body}");
    }
    let (status, body, secs) = timed(&server, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(secs < bound, "/metrics took {secs:.2} s");
    let (_, body, secs) = timed(&server, "GET", "/readyz", None);
    assert!(secs < bound, "/readyz took {secs:.2} s: {body}");
    // The last known state, served with its age.
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["backend"], "postgres", "{body}");
    assert_eq!(ready["degraded"], true, "{body}");
    assert!(
        ready["postgres_checked_ms_ago"].as_u64().is_some(),
        "the age of the last known state: {body}"
    );
    // The log says why, once (bounded poll: the reader thread may lag behind the response).
    let mut log = server.log();
    for _ in 0..500 {
        if log.contains("did not answer within") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
        log = server.log();
    }
    assert!(log.contains("did not answer within 1000 ms"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");

    // One CLI call: `unavailable`, naming the timeout and its setting.
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.json()["code"], "unavailable", "{run:?}");
    assert!(
        run.stdout.contains("BACKLOG_POSTGRES_CONNECT_TIMEOUT_MS"),
        "{run:?}"
    );
    // `auto` falls back to JSONL after one connect timeout, reads included.
    let auto = env.var("BACKLOG_BACKEND", "auto");
    let run = auto.call(
        "operator",
        "backlog_tool",
        "dashboard",
        &json!({"env": "prod"}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["backend"], "jsonl", "{run:?}");
}
