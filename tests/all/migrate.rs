//! `backlog-bridge migrate` against a real PostgreSQL 15 (`docs/storage.md`).

use serde_json::{Value, json};

use crate::pg::{self, PASSWORD, TestDb};
use crate::util::{Env, Run};

/// The last stdout line as JSON (the summary).
#[track_caller]
fn summary(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    // A dry run's stdout is the SQL alone; its summary goes to stderr.
    let out = if run.stdout.starts_with("BEGIN;") {
        &run.stderr
    } else {
        &run.stdout
    };
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {run:?}"))
}

#[track_caller]
fn no_password(run: &Run) {
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "the password leaked: {run:?}"
    );
}

fn migrated() -> (Env, TestDb) {
    let db = pg::database();
    let env = Env::new();
    let run = env.migrate(&["--dsn", &db.dsn]);
    assert_eq!(summary(&run)["applied"], true, "{run:?}");
    (env, db)
}

fn public_tables(db: &TestDb) -> String {
    db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
}

#[test]
fn without_a_dsn_migrate_is_a_usage_error() {
    let run = Env::new().migrate(&[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("BACKLOG_POSTGRES_DSN"), "{run:?}");
    let run = Env::new().migrate(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn dry_run_prints_the_sql_changes_nothing_and_hides_the_password() {
    let db = pg::database();
    let env = Env::new();
    let run = env.migrate(&["--dry-run", "--dsn", &db.password_dsn()]);
    let s = summary(&run);
    no_password(&run);
    assert!(
        run.stdout
            .contains("CREATE TABLE IF NOT EXISTS backlog_items"),
        "{run:?}"
    );
    assert!(run.stdout.starts_with("BEGIN;"), "{run:?}");
    assert_eq!(s["applied"], false);
    assert_eq!(s["dry_run"], true);
    assert_eq!(s["schema_version"], 4);
    assert_eq!(
        s["dsn"],
        format!(
            "postgresql://{}@127.0.0.1:{}/{}",
            pg::PASSWORD_USER,
            db.port,
            db.name
        )
    );
    assert_eq!(public_tables(&db), "0", "dry run created tables");
}

#[test]
fn migrating_twice_is_fine_and_output_shows_only_the_redacted_dsn() {
    let db = pg::database();
    // The DSN from the environment, with a password the server checks (scram-sha-256).
    let env = Env::new().var("BACKLOG_POSTGRES_DSN", &db.password_dsn());
    let first = env.migrate(&["-v"]);
    let s = summary(&first);
    no_password(&first);
    assert_eq!(s["applied"], true);
    assert_eq!(s["dry_run"], false);
    let shown = format!(
        "postgresql://{}@127.0.0.1:{}/{}",
        pg::PASSWORD_USER,
        db.port,
        db.name
    );
    assert_eq!(s["dsn"], shown, "{s}");
    assert!(
        first.stderr.contains(&shown),
        "the log names the DSN without its password: {first:?}"
    );
    let second = env.migrate(&[]);
    no_password(&second);
    assert_eq!(summary(&second)["applied"], false);
    assert_eq!(
        db.scalar(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM backlog_schema_version"
        ),
        "1,2,3,4"
    );
    // POSTGRES_DSN is the fallback.
    let env = Env::new().var("POSTGRES_DSN", &db.dsn);
    assert_eq!(summary(&env.migrate(&[]))["applied"], false);
}

#[test]
fn an_unreachable_server_is_a_transport_failure_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dsn = format!("postgresql://u:{PASSWORD}@127.0.0.1:{port}/backlog");
    let run = Env::new().migrate(&["--dsn", &dsn]);
    assert_eq!(run.code, 3, "{run:?}");
    no_password(&run);
    assert!(
        run.stderr.contains(&format!("u@127.0.0.1:{port}")),
        "{run:?}"
    );
    let run = Env::new().migrate(&["--dsn", "host=127.0.0.1 port=notaport password=x"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn tables_columns_constraints_and_the_seven_indexes_exist() {
    let (_env, db) = migrated();
    for table in [
        "backlog_items",
        "backlog_events",
        "backlog_schema_version",
        "scheduler_runs",
    ] {
        assert_eq!(
            db.scalar(&format!("SELECT to_regclass('{table}') IS NOT NULL")),
            "true",
            "{table}"
        );
    }
    let types = db.rows(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'backlog_items' AND column_name IN \
         ('created_at', 'updated_at', 'due_date', 'evidence_refs', 'tags', 'meta') ORDER BY 1",
    );
    let types: Vec<Value> = types
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            json!({"column_name":"created_at","data_type":"timestamp with time zone"}),
            json!({"column_name":"due_date","data_type":"date"}),
            json!({"column_name":"evidence_refs","data_type":"jsonb"}),
            json!({"column_name":"meta","data_type":"jsonb"}),
            json!({"column_name":"tags","data_type":"jsonb"}),
            json!({"column_name":"updated_at","data_type":"timestamp with time zone"}),
        ]
    );
    // Every index as `table(col,col…)`, from the catalog: checked by columns, not names.
    let indexes: Vec<String> = db
        .rows(
            "SELECT t.relname || '(' || string_agg(a.attname, ',' ORDER BY k.ord) || ')' AS ix, \
                    i.indisunique AS uniq \
               FROM pg_index i \
               JOIN pg_class t ON t.oid = i.indrelid \
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
              WHERE t.relname IN ('backlog_items', 'backlog_events') \
              GROUP BY i.indexrelid, t.relname, i.indisunique",
        )
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            format!(
                "{}{}",
                v["ix"].as_str().unwrap(),
                if v["uniq"] == true { " unique" } else { "" }
            )
        })
        .collect();
    let has = |prefix: &str| {
        indexes
            .iter()
            .any(|ix| ix.starts_with(prefix.trim_end_matches(')')))
    };
    for want in [
        "backlog_items(env,status)",
        "backlog_items(service)",
        "backlog_items(due_date)",
        "backlog_items(owner)",
        "backlog_items(category)",
        "backlog_events(item_id",
        "backlog_events(ts)",
    ] {
        assert!(has(want), "no index leading with {want}: {indexes:?}");
    }
    assert!(
        indexes.contains(&"backlog_items(dedupe_key) unique".to_owned()),
        "{indexes:?}"
    );
    // CHECKs on status and priority, UNIQUE dedupe_key.
    let mut client = db.client();
    let insert = |id: &str, status: &str, priority: &str, key: &str| {
        format!(
            "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, \
             title, priority, status, owner, due_date, source, dedupe_key) VALUES ('{id}', now(), \
             now(), 'prod', 's', 'c', 't', '{priority}', '{status}', 'o', '2026-01-01', 'manual', \
             '{key}')"
        )
    };
    client
        .batch_execute(&insert("bl_1", "open", "P1", "k1"))
        .unwrap();
    let code = |sql: String| {
        db.client()
            .batch_execute(&sql)
            .unwrap_err()
            .code()
            .map(|c| c.code().to_owned())
    };
    assert_eq!(
        code(insert("bl_2", "wontfix", "P1", "k2")).as_deref(),
        Some("23514")
    );
    assert_eq!(
        code(insert("bl_2", "open", "P9", "k2")).as_deref(),
        Some("23514")
    );
    assert_eq!(
        code(insert("bl_2", "open", "P1", "k1")).as_deref(),
        Some("23505")
    );
}

#[test]
fn deleting_an_item_cascades_its_events() {
    let (_env, db) = migrated();
    db.batch(
        "INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title, \
         priority, status, owner, due_date, source, dedupe_key) VALUES \
         ('bl_a', now(), now(), 'prod', 's', 'c', 't', 'P1', 'done', 'o', '2026-01-01', 'manual', 'ka'), \
         ('bl_b', now(), now(), 'prod', 's', 'c', 't', 'P1', 'open', 'o', '2026-01-01', 'manual', 'kb');
         INSERT INTO backlog_events (id, item_id, ts, type, actor) VALUES \
         ('ev_1', 'bl_a', now(), 'created', 'x'), ('ev_2', 'bl_a', now(), 'commented', 'x'), \
         ('ev_3', 'bl_b', now(), 'created', 'x');
         DELETE FROM backlog_items WHERE id = 'bl_a';",
    );
    assert_eq!(
        db.scalar("SELECT string_agg(id, ',' ORDER BY id) FROM backlog_events"),
        "ev_3"
    );
}

/// Items in Postgres as comparable JSON (id, status, title, timestamps as UTC text).
fn pg_items(db: &TestDb) -> Vec<String> {
    db.rows(
        "SELECT id, status, title, dedupe_key, \
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS updated_at \
           FROM backlog_items ORDER BY id",
    )
}

fn jsonl_items(env: &Env) -> Vec<Value> {
    let list = env.ok("list", json!({"limit": 500}));
    let mut items: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            json!({
                "id": i["id"], "status": i["status"], "title": i["title"],
                "dedupe_key": i["dedupe_key"], "updated_at": i["updated_at"],
            })
        })
        .collect();
    items.sort_by_key(|i| i["id"].to_string());
    items
}

/// The rows as JSON values by id (compared as values: key order is not part of the data).
fn normalize(rows: Vec<String>) -> Vec<Value> {
    let mut rows: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap())
        .collect();
    rows.sort_by_key(|i| i["id"].to_string());
    rows
}

#[test]
fn import_jsonl_copies_a_store_by_id_idempotently() {
    let db = pg::database();
    // A JSONL store made through the binary.
    let env = Env::new()
        .var("BACKLOG_BACKEND", "jsonl")
        .var("BACKLOG_POSTGRES_DSN", &db.password_dsn());
    let mut ids = Vec::new();
    for i in 0..3 {
        let item = env.ok(
            "create",
            json!({"env":"prod","service":format!("svc{i}"),"category":"refactor","title":format!("t{i}")}),
        );
        ids.push(item["id"].as_str().unwrap().to_owned());
    }
    env.ok("set_status", json!({"id": ids[0], "status": "in_progress"}));
    env.ok(
        "add_comment",
        json!({"id": ids[1], "message": "looked at it"}),
    );
    let events_lines = |env: &Env| {
        std::fs::read_to_string(env.backlog_dir().join("events.jsonl"))
            .unwrap()
            .lines()
            .count() as u64
    };
    let events = events_lines(&env);
    // An event whose item does not exist is skipped.
    crate::util::append(
        &env.backlog_dir().join("events.jsonl"),
        "{\"id\":\"ev_orphan\",\"item_id\":\"bl_000000000000\",\"ts\":\"2026-11-27T10:00:00.000000Z\",\"type\":\"commented\",\"actor\":\"x\",\"message\":\"\",\"meta\":{}}\n",
    );
    let dir = env.backlog_dir();
    let dir = dir.to_str().unwrap();

    let dry = env.migrate(&["--dry-run", "--import-jsonl", dir]);
    let s = summary(&dry);
    no_password(&dry);
    assert_eq!(
        (s["imported_items"].as_u64(), s["dry_run"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(public_tables(&db), "0");

    let first = env.migrate(&["--import-jsonl", dir]);
    no_password(&first);
    let s = summary(&first);
    assert_eq!(s["applied"], true);
    assert_eq!(s["imported_items"], 3, "{s}");
    assert_eq!(s["imported_events"], events, "{s}");
    assert_eq!(normalize(pg_items(&db)), jsonl_items(&env));
    assert_eq!(
        db.scalar("SELECT count(*) FROM backlog_events WHERE id = 'ev_orphan'"),
        "0"
    );
    // Events keep their order per item.
    assert_eq!(
        db.scalar(&format!(
            "SELECT string_agg(type, ',' ORDER BY seq) FROM backlog_events WHERE item_id = '{}'",
            ids[0]
        )),
        "created,status_changed"
    );
    let snapshot = db.rows("SELECT * FROM backlog_items ORDER BY id");
    let events_snapshot = db.rows("SELECT * FROM backlog_events ORDER BY seq");

    // Twice: nothing changes.
    let second = summary(&env.migrate(&["--import-jsonl", dir]));
    assert_eq!(
        (
            &second["imported_items"],
            &second["imported_events"],
            &second["applied"]
        ),
        (&json!(0), &json!(0), &json!(false))
    );
    assert_eq!(db.rows("SELECT * FROM backlog_items ORDER BY id"), snapshot);
    assert_eq!(
        db.rows("SELECT * FROM backlog_events ORDER BY seq"),
        events_snapshot
    );

    // A newer version of an item replaces the copy; an older one would not.
    let env = env.var("BACKLOG_BRIDGE_NOW", "2026-11-28T10:00:00Z");
    env.ok("set_status", json!({"id": ids[2], "status": "blocked"}));
    let third = summary(&env.migrate(&["--import-jsonl", dir]));
    assert_eq!(
        (&third["imported_items"], &third["imported_events"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(normalize(pg_items(&db)), jsonl_items(&env));
}

#[test]
fn import_of_a_missing_directory_is_a_usage_error() {
    let db = pg::database();
    let env = Env::new();
    let run = env.migrate(&["--dsn", &db.dsn, "--import-jsonl", "/nonexistent/backlog"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("/nonexistent/backlog"), "{run:?}");
    assert_eq!(public_tables(&db), "0");
}

/// Every spelling of a DSN libpq accepts — a password holding `?` and `#` (percent-encoded,
/// and raw), a percent-encoded `password` key, a backslash-escaped key/value password, an
/// upper-case scheme — never shows its password: not in migrate's JSON, not in its log, not in
/// the connect-failure warning.
#[test]
fn no_spelling_of_a_dsn_shows_its_password() {
    let db = pg::database();
    let login = format!("leaky_{}", db.name);
    // Trust auth for this role: the DSN carries a password the server does not check.
    db.batch(&format!(
        "CREATE ROLE {login} LOGIN; ALTER DATABASE {} OWNER TO {login}",
        db.name
    ));
    let (p, d) = (db.port, &db.name);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("postgresql://{login}:Br%3Fdge-Pw%2342@127.0.0.1:{p}/{d}"),
            "dge-Pw",
        ),
        (
            format!("postgresql://{login}:Br?dge-Pw#42@127.0.0.1:{p}/{d}"),
            "dge-Pw",
        ),
        (
            format!("postgresql://127.0.0.1:{p}/{d}?user={login}&pass%77ord=Sekrit-%77ord-9"),
            "Sekrit-",
        ),
        (
            format!("host=127.0.0.1 port={p} dbname={d} user={login} password=pw\\ 1111-kv"),
            "1111-kv",
        ),
        (
            format!("host=127.0.0.1 port={p} dbname={d} user={login} password='q\\'uo ted-kv'"),
            "uo ted-kv",
        ),
        (
            format!("POSTGRESQL://{login}:Upper-Scheme-Pw@127.0.0.1:{p}/{d}"),
            "Upper-Scheme-Pw",
        ),
        (
            format!("postgresql://{login}:Closed-Port-Pw@127.0.0.1:{closed}/{d}"),
            "Closed-Port-Pw",
        ),
    ];
    for (dsn, secret) in &cases {
        for run in [
            Env::new().migrate(&["--dsn", dsn]),
            Env::new().var("BACKLOG_POSTGRES_DSN", dsn).migrate(&[]),
            Env::new().migrate(&["--dry-run", "--dsn", dsn]),
        ] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{dsn}: the password ({secret}) leaked: {run:?}"
            );
            assert!(
                run.code == 0 || run.code == 2 || run.code == 3,
                "{dsn}: {run:?}"
            );
        }
    }
    // The percent-encoded and key/value spellings work, and show the rebuilt DSN.
    let run = Env::new().migrate(&["--dsn", &cases[0].0]);
    assert_eq!(
        summary(&run)["dsn"],
        format!("postgresql://{login}@127.0.0.1:{p}/{d}")
    );
    let run = Env::new().migrate(&["--dsn", &cases[3].0]);
    assert_eq!(summary(&run)["applied"], false, "{run:?}");
}

/// A missing database, a missing role and a wrong password each say what the server said
/// (message and SQLSTATE) and the fix — from `migrate` (exit 3) and from a call.
#[test]
fn connect_errors_carry_the_servers_reason_and_the_fix() {
    let db = pg::database();
    let p = db.port;
    let cases = [
        (
            format!("postgresql://postgres@127.0.0.1:{p}/no_such_db_{}", db.name),
            ["3D000", "does not exist", "create the database"],
        ),
        (
            format!(
                "postgresql://no_such_role_{}@127.0.0.1:{p}/{}",
                db.name, db.name
            ),
            ["28000", "does not exist", "create the role"],
        ),
        (
            format!(
                "postgresql://{}:Wrong-Pw-{PASSWORD}x@127.0.0.1:{p}/{}",
                pg::PASSWORD_USER,
                db.name
            ),
            [
                "28P01",
                "password authentication failed",
                "check the role's password in BACKLOG_POSTGRES_DSN",
            ],
        ),
    ];
    for (dsn, wanted) in &cases {
        let run = Env::new().migrate(&["--dsn", dsn]);
        assert_eq!(run.code, 3, "{run:?}");
        no_password(&run);
        let env = Env::new()
            .var("BACKLOG_BACKEND", "postgres")
            .var("BACKLOG_POSTGRES_DSN", dsn);
        let call = env.call("operator", "backlog_tool", "list", &json!({}));
        assert_eq!(call.json()["code"], "unavailable", "{call:?}");
        no_password(&call);
        for w in wanted {
            assert!(run.stderr.contains(w), "migrate should say {w:?}: {run:?}");
            assert!(call.stdout.contains(w), "a call should say {w:?}: {call:?}");
        }
        assert!(!run.stderr.contains(": db error"), "{run:?}");
    }
}

/// `migrate` warns when the login role can become other roles (a member of one, or a
/// superuser): the guard is not the only boundary, the server's role model is.
#[test]
fn migrate_warns_when_the_login_role_can_switch_to_other_roles() {
    let db = pg::database();
    let (login, other) = (format!("member_{}", db.name), format!("owner_{}", db.name));
    db.batch(&format!(
        "CREATE ROLE {other} NOLOGIN; CREATE ROLE {login} LOGIN; GRANT {other} TO {login};
         ALTER DATABASE {} OWNER TO {login}",
        db.name
    ));
    let dsn = format!("postgresql://{login}@127.0.0.1:{}/{}", db.port, db.name);
    let run = Env::new().migrate(&["--dsn", &dsn]);
    assert_eq!(summary(&run)["applied"], true);
    assert!(
        run.stderr
            .contains(&format!("member of other roles ({other})")),
        "{run:?}"
    );
    db.batch(&format!("REVOKE {other} FROM {login}"));
    let run = Env::new().migrate(&["--dsn", &dsn]);
    assert!(!run.stderr.contains("member of other roles"), "{run:?}");
    let run = Env::new().migrate(&["--dsn", &db.dsn]);
    assert!(run.stderr.contains("is a superuser"), "{run:?}");
}

/// A database of schema version 1 with items in it (as an older build left it) is completed
/// to the current version by `migrate`: the counts and due counts tables are filled once from
/// the items already there, the triggers keep them from then on, and a second run changes
/// nothing.
#[test]
fn a_version_1_database_is_completed_with_counts_of_its_items() {
    let (env, db) = migrated();
    // Back to version 1: without the counts, their triggers and the dashboard's indexes.
    db.batch(
        "DROP TRIGGER backlog_counts_insert ON backlog_items;
         DROP TRIGGER backlog_counts_update ON backlog_items;
         DROP TRIGGER backlog_counts_delete ON backlog_items;
         DROP TRIGGER backlog_counts_truncate ON backlog_items;
         DROP FUNCTION backlog_counts_apply();
         DROP TABLE backlog_counts;
         DROP TABLE backlog_due_counts;
         DROP INDEX backlog_items_live_due_idx;
         DROP INDEX backlog_items_live_p0_idx;
         DELETE FROM backlog_schema_version WHERE version IN (2, 3, 4);
         INSERT INTO backlog_items (id, created_at, updated_at, env, service, category, title,
                priority, status, owner, due_date, source, dedupe_key)
         SELECT 'bl_' || i, now(), now(), (ARRAY['prod', 'dev'])[i % 2 + 1], 'svc-' || (i % 3),
                'refactor', 't', 'P' || (i % 4),
                (ARRAY['open', 'blocked', 'done'])[i % 3 + 1], 'oncall', date '2026-01-01',
                'manual', 'k' || i
           FROM generate_series(1, 50) i;",
    );
    let group = "SELECT env, service, status, priority, count(*)::int8 AS n FROM backlog_items \
                 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
    let counts = "SELECT env, service, status, priority, n FROM backlog_counts \
                  WHERE n <> 0 ORDER BY 1, 2, 3, 4";
    let due_group = "SELECT env, due_date::text, priority, count(*)::int8 AS n FROM backlog_items \
                     WHERE status NOT IN ('done', 'canceled') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let due_counts = "SELECT env, due_date::text, priority, n FROM backlog_due_counts \
                      WHERE n <> 0 ORDER BY 1, 2, 3";
    let run = env.migrate(&["--dsn", &db.dsn]);
    assert_eq!(summary(&run)["applied"], true, "{run:?}");
    assert_eq!(db.rows(counts), db.rows(group));
    assert_eq!(db.rows(due_counts), db.rows(due_group));
    assert!(!db.rows(due_group).is_empty());
    for index in ["backlog_items_live_due_idx", "backlog_items_live_p0_idx"] {
        assert_eq!(
            db.scalar(&format!("SELECT to_regclass('{index}') IS NOT NULL")),
            "true"
        );
    }
    // Kept by the triggers from now on; a second run neither applies nor counts twice.
    db.batch(
        "UPDATE backlog_items SET status = 'done' WHERE service = 'svc-1';
         DELETE FROM backlog_items WHERE env = 'dev' AND priority = 'P0';",
    );
    assert_eq!(db.rows(counts), db.rows(group));
    assert_eq!(db.rows(due_counts), db.rows(due_group));
    let again = env.migrate(&["--dsn", &db.dsn]);
    assert_eq!(summary(&again)["applied"], false, "{again:?}");
    assert_eq!(db.rows(counts), db.rows(group));
    assert_eq!(db.rows(due_counts), db.rows(due_group));
}
