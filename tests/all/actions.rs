//! Every backlog_tool action through the real component, and every error code reachable
//! without HTTP, on each backend (`jsonl`, `postgres`, `auto`: one suite, see
//! [`backend_suite!`](crate::backend_suite)). The rules themselves are table-tested natively
//! in backlog-core; here each rule is checked once more end to end.

use serde_json::{Value, json};

use crate::util::{Backend, Env};

crate::backend_suite!(
    create_applies_policy_defaults_and_returns_all_17_keys,
    get_list_events_set_status_add_comment_round_trip,
    upsert_created_updated_unchanged_and_owner_change,
    error_codes_end_to_end,
    the_actor_is_the_calling_agent_never_a_param,
    injection_in_every_string_filter_is_inert,
);

fn create(env: &Env, extra: Value) -> Value {
    let mut p =
        json!({"env":"prod","service":"gateway","category":"refactor","title":"Split the router"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    env.ok("create", p)
}

fn create_applies_policy_defaults_and_returns_all_17_keys(backend: Backend) {
    let env = Env::on(backend);
    let item = create(&env, json!({}));
    let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 17, "{keys:?}");
    let id = item["id"].as_str().unwrap();
    assert!(id.starts_with("bl_") && id.len() == 15, "{id}");
    assert_eq!(item["priority"], "P2");
    assert_eq!(item["due_date"], "2026-12-27"); // now (2026-11-27) + 30 days
    assert_eq!(item["owner"], "oncall");
    assert_eq!(item["status"], "open");
    assert_eq!(item["source"], "manual");
    assert_eq!(item["dedupe_key"], format!("manual:{id}"));
    assert_eq!(item["created_at"], "2026-11-27T10:00:00.000000Z");
    assert_eq!(item["updated_at"], item["created_at"]);
    assert_eq!(
        (item["description"].clone(), item["tags"].clone()),
        (json!(""), json!([]))
    );
    assert_eq!(
        (item["evidence_refs"].clone(), item["meta"].clone()),
        (json!({}), json!({}))
    );
    let arch = env.ok(
        "create",
        json!({"env":"prod","service":"gw","category":"arch_review","title":"t"}),
    );
    assert_eq!(
        (arch["owner"].clone(), arch["priority"].clone()),
        (json!("cto"), json!("P1"))
    );
}

fn get_list_events_set_status_add_comment_round_trip(backend: Backend) {
    let env = Env::on(backend);
    let item = create(&env, json!({"priority":"P1","dedupe_key":"k1"}));
    let id = item["id"].as_str().unwrap();
    assert_eq!(env.ok("get", json!({"id": id})), item);

    let moved = env.ok(
        "set_status",
        json!({"id": id, "status":"in_progress","comment":"on it"}),
    );
    assert_eq!(moved["status"], "in_progress");
    let same = env.ok("set_status", json!({"id": id, "status":"in_progress"}));
    assert_eq!(same["status"], "in_progress");
    let comment = env.ok("add_comment", json!({"id": id, "message":"looks bad"}));
    assert_eq!(
        (comment["type"].clone(), comment["actor"].clone()),
        (json!("commented"), json!("operator"))
    );

    let events = env.ok("events", json!({"id": id}))["events"].clone();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "status_changed", "commented"]);
    assert_eq!(events[1]["meta"], json!({"from":"open","to":"in_progress"}));
    assert_eq!(events[1]["message"], "on it");
    assert_eq!(
        env.ok("events", json!({"id": id, "limit": 1}))["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let with = env.ok("get", json!({"id": id, "include_events": true}));
    assert_eq!(with["events"], events);

    create(&env, json!({"service":"billing","priority":"P0"}));
    create(&env, json!({"env":"staging"}));
    let prod = env.ok("list", json!({"env":"prod"}));
    assert_eq!(prod["total"], 2);
    assert_eq!(prod["items"][0]["service"], "billing"); // P0 first
    let page = env.ok("list", json!({"limit":1}));
    assert_eq!(
        (page["total"].clone(), page["next_offset"].clone()),
        (json!(3), json!(1))
    );
    let st = env.ok("list", json!({"status":["in_progress","blocked"]}));
    assert_eq!(st["total"], 1);
    let st = env.ok("list", json!({"status":"open"}));
    assert_eq!(st["total"], 2);
}

fn upsert_created_updated_unchanged_and_owner_change(backend: Backend) {
    let env = Env::on(backend);
    let base =
        json!({"dedupe_key":"d1","env":"prod","service":"gw","category":"refactor","title":"a"});
    assert_eq!(env.ok("upsert", base.clone())["action"], "created");
    assert_eq!(env.ok("upsert", base.clone())["action"], "unchanged");
    let up = env.ok(
        "upsert",
        json!({"dedupe_key":"d1","title":"b","owner":"team-x"}),
    );
    assert_eq!(up["action"], "updated");
    assert_eq!(
        (up["item"]["title"].clone(), up["item"]["owner"].clone()),
        (json!("b"), json!("team-x"))
    );
    let id = up["item"]["id"].as_str().unwrap();
    let kinds: Vec<String> = env.ok("events", json!({"id": id}))["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"owner_changed".to_owned()) && kinds.contains(&"updated".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(
        env.ok("upsert", json!({"id": id, "title":"b"}))["action"],
        "unchanged"
    );
}

fn error_codes_end_to_end(backend: Backend) {
    let env = Env::on(backend);
    let item = create(&env, json!({"dedupe_key":"taken"}));
    let id = item["id"].as_str().unwrap();
    let other = create(&env, json!({"dedupe_key":"other"}));
    let ok = |p: Value| -> Value {
        let mut base = json!({"env":"prod","service":"gw","category":"refactor","title":"t"});
        for (k, v) in p.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    // One row per validation rule (see `docs/data-model.md`; and the params rules: see `docs/actions.md`).
    let invalid: Vec<(&str, Value)> = vec![
        ("create", ok(json!({"env":"Prod"}))),
        ("create", ok(json!({"env":"a".repeat(33)}))),
        ("create", ok(json!({"service":"-gw"}))),
        ("create", ok(json!({"category":"nope"}))),
        ("create", ok(json!({"title":""}))),
        ("create", ok(json!({"title":"é".repeat(201)}))),
        ("create", ok(json!({"description":"x".repeat(10001)}))),
        ("create", ok(json!({"priority":"P4"}))),
        ("create", ok(json!({"owner":""}))),
        ("create", ok(json!({"owner":"o".repeat(65)}))),
        ("create", ok(json!({"due_date":"2026-02-30"}))),
        ("create", ok(json!({"due_date":"26-01-01"}))),
        ("create", ok(json!({"source":"robot"}))),
        ("create", ok(json!({"dedupe_key":""}))),
        ("create", ok(json!({"dedupe_key":"k".repeat(257)}))),
        ("create", ok(json!({"evidence_refs":{"alerts":"al_1"}}))),
        ("create", ok(json!({"tags": vec!["x"; 33]}))),
        ("create", ok(json!({"tags":[""]}))),
        ("create", ok(json!({"meta":{"blob":"m".repeat(65 * 1024)}}))),
        ("create", ok(json!({"meta":[1]}))),
        ("create", ok(json!({"title":"nul\u{0}byte"}))),
        ("create", ok(json!({"status":"open"}))), // not a create param
        ("create", ok(json!({"surprise":1}))),    // unknown key
        ("create", json!({"env":"prod"})),        // missing required
        ("upsert", json!({"title":"no key"})),
        ("get", json!({})),
        ("get", json!({"id": id, "include_events":"yes"})),
        ("list", json!({"limit":1001})),
        ("list", json!({"overdue":"maybe"})),
        ("list", json!({"status":"cancelled"})),
        ("events", json!({"id": id, "limit":0})),
        ("set_status", json!({"id": id, "status":"cancelled"})),
        ("add_comment", json!({"id": id, "message":""})),
        ("add_comment", json!({"id": id, "message":"m".repeat(4001)})),
    ];
    let lines: Vec<Value> = invalid
        .iter()
        .map(|(a, p)| json!({"tool":"backlog_tool","action":a,"params":p}))
        .collect();
    for ((action, params), out) in invalid.iter().zip(env.batch(&lines)) {
        assert_eq!(out["code"], "invalid_input", "{action} {params} -> {out}");
    }

    env.err("get", json!({"id":"bl_000000000000"}), "not_found");
    env.err(
        "upsert",
        json!({"id":"bl_000000000000","title":"x"}),
        "not_found",
    );
    env.err(
        "set_status",
        json!({"id":"bl_000000000000","status":"done"}),
        "not_found",
    );
    env.err("create", ok(json!({"dedupe_key":"taken"})), "conflict");
    env.err(
        "upsert",
        json!({"id": id, "dedupe_key":"other"}),
        "conflict",
    );
    env.ok("set_status", json!({"id": other["id"], "status":"done"}));
    let c = env.err(
        "set_status",
        json!({"id": other["id"], "status":"blocked"}),
        "conflict",
    );
    let msg = c["error"].as_str().unwrap();
    assert!(msg.contains("done") && msg.contains("blocked"), "{msg}");
    assert_eq!(
        env.ok("set_status", json!({"id": other["id"], "status":"open"}))["status"],
        "open"
    );

    let viewer = env.call(
        "viewer",
        "backlog_tool",
        "add_comment",
        &json!({"id": id, "message":"x"}),
    );
    assert_eq!(viewer.json()["code"], "forbidden");

    // Over 1 MiB of params (through batch: argv cannot carry that much).
    let huge = json!({"tool":"backlog_tool","action":"add_comment","params":{"id": id, "message": "m".repeat(1 << 20)}});
    assert_eq!(env.batch(&[huge])[0]["code"], "payload_too_large");
}

#[test]
fn the_null_backend_reads_empty_and_refuses_writes() {
    let null = Env::new().var("BACKLOG_BACKEND", "null");
    null.err(
        "create",
        json!({"env":"prod","service":"gw","category":"refactor","title":"t"}),
        "unavailable",
    );
    assert_eq!(null.ok("list", json!({}))["total"], 0);
}

/// Quotes, comment markers, wildcards and statement separators in every string filter of
/// `list` (and in ids) are plain values: they match nothing and change nothing.
fn injection_in_every_string_filter_is_inert(backend: Backend) {
    let env = Env::on(backend);
    create(&env, json!({"dedupe_key":"k1"}));
    let before = env.state();
    let evil = [
        "x' OR '1'='1",
        "x\"; DROP TABLE backlog_items; --",
        "%",
        "_",
        "x'); DELETE FROM backlog_events; --",
        "$1",
    ];
    for e in evil {
        for key in [
            "env",
            "service",
            "owner",
            "category",
            "priority",
            "status",
            "due_before",
        ] {
            let run = env.call("operator", "backlog_tool", "list", &json!({ key: e }));
            let out = run.json();
            assert!(
                out["total"] == 0 || out["code"] == "invalid_input",
                "list {key}={e:?} -> {out}"
            );
        }
        for action in ["get", "events"] {
            let run = env.call("operator", "backlog_tool", action, &json!({"id": e}));
            let code = run.json()["code"].clone();
            assert!(
                code == "not_found" || code == "invalid_input",
                "{action} {e:?} -> {run:?}"
            );
        }
    }
    assert_eq!(env.state(), before);
    if let Some(db) = &env.db {
        assert_eq!(db.scalar("SELECT count(*) FROM backlog_items"), "1");
        assert_eq!(db.scalar("SELECT count(*) FROM backlog_events"), "1");
    }
}

fn the_actor_is_the_calling_agent_never_a_param(backend: Backend) {
    let env = Env::on(backend);
    let item = create(&env, json!({}));
    let run = env.call(
        "operator",
        "backlog_tool",
        "add_comment",
        &json!({"id": item["id"], "message":"hi", "actor":"mallory"}),
    );
    assert_eq!(run.json()["code"], "invalid_input");
    let ev = env.ok("add_comment", json!({"id": item["id"], "message":"hi"}));
    assert_eq!(ev["actor"], "operator");
}

#[test]
fn memory_backend_lives_as_long_as_the_process() {
    let env = Env::new().var("BACKLOG_BACKEND", "memory");
    let out = env.batch(&[
        json!({"tool":"backlog_tool","action":"create","params":{"env":"prod","service":"a","category":"refactor","title":"t"}}),
        json!({"tool":"backlog_tool","action":"list","params":{}}),
    ]);
    assert_eq!(out[1]["total"], 1, "{out:?}");
    assert!(!env.backlog_dir().join("items.jsonl").exists());
    let again = env.batch(&[json!({"tool":"backlog_tool","action":"list","params":{}})]);
    assert_eq!(again[0]["total"], 0, "a new process starts empty");
}
