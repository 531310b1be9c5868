//! The sandbox holds even against a guest that attacks it, and the host keeps serving.

use serde_json::json;

use crate::util::{Env, snapshot};

fn seeded() -> Env {
    let env = Env::new().with_hostile();
    for i in 0..3 {
        env.ok(
            "create",
            json!({"env":"prod","service":format!("svc{i}"),"category":"refactor","title":"t"}),
        );
    }
    env
}

#[test]
fn read_only_grant_refuses_every_write_and_files_stay_byte_identical() {
    let env = seeded();
    let before = snapshot(&env.backlog_dir());
    assert!(
        before
            .iter()
            .any(|(n, b)| n == "items.jsonl" && !b.is_empty())
    );
    // An admin calling an action whose entitlement is read gets a read-only preopen.
    let run = env.call("operator", "hostile", "write_backlog", &json!({}));
    let err = run.json();
    assert_eq!(err["code"], "forbidden", "{run:?}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("refused every write"),
        "{err}"
    );
    assert_eq!(snapshot(&env.backlog_dir()), before);
}

#[test]
fn builtin_read_actions_run_read_only_whoever_calls() {
    // The viewer can read; the admin's `get` runs with the same read-only grant (the hostile
    // plugin above proves what such a grant refuses). A viewer cannot write at all.
    let env = seeded();
    let list = env.call("viewer", "backlog_tool", "list", &json!({}));
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.json()["total"], 3);
    let denied = env.call(
        "viewer",
        "backlog_tool",
        "create",
        &json!({"env":"prod","service":"a","category":"refactor","title":"t"}),
    );
    assert_eq!(denied.json()["code"], "forbidden");
    assert!(denied.stdout.contains("tools.backlog.write"), "{denied:?}");
}

#[test]
fn escapes_fail_and_no_environment_leaks() {
    let env = seeded().var("SECRET_TOKEN", "hunter2");
    let run = env.call("operator", "hostile", "escape", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.json();
    assert_eq!(out["opened"], json!([]), "{out}");
    assert_eq!(out["env"], json!([]), "{out}");
}

#[test]
fn limits_become_errors_and_the_host_keeps_serving() {
    let env = Env::new().with_hostile();
    let call = |action: &str| json!({"tool":"hostile","action":action,"params":{}});
    let out = env.batch(&[
        call("spin"),
        call("ok"),
        call("alloc"),
        call("ok"),
        call("panic"),
        call("ok"),
    ]);
    assert_eq!(out[0]["code"], "timeout", "{}", out[0]);
    assert!(
        out[0]["error"].as_str().unwrap().contains("1000 ms"),
        "{}",
        out[0]
    );
    assert_eq!(out[1], json!({"ok":true}));
    assert_eq!(out[2]["code"], "internal", "{}", out[2]);
    assert!(
        out[2]["error"]
            .as_str()
            .unwrap()
            .contains("memory limit of 32 MiB"),
        "{}",
        out[2]
    );
    assert_eq!(out[3], json!({"ok":true}));
    assert_eq!(out[4]["code"], "internal", "{}", out[4]);
    let msg = out[4]["error"].as_str().unwrap();
    assert!(
        msg.contains("hostile: about to panic"),
        "stderr attached: {msg}"
    );
    assert_eq!(out[5], json!({"ok":true}));
}
