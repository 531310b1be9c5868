//! The backlog through the `postgres` and `auto` backends, end to end over the real binary and
//! a real PostgreSQL 15 (the harness in `pg.rs`). The JSONL backend is covered by `actions`.

use serde_json::{Value, json};

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
    let env = Env::new().with_postgres(&db).var("BACKLOG_BACKEND", "auto");
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

#[test]
fn auto_falls_back_to_jsonl_without_the_schema_and_says_so() {
    let db = crate::pg::database();
    // Not migrated: Postgres answers, but without the current schema it counts as unavailable.
    let env = Env::new().with_postgres(&db).var("BACKLOG_BACKEND", "auto");
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
    let dash = round_trip(&env);
    assert_eq!(dash["backend"], "jsonl");
    assert!(env.backlog_dir().join("items.jsonl").exists());
}
