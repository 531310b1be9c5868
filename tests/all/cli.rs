//! Streams and exit codes (see `docs/cli.md`).

use serde_json::json;

use crate::util::{Env, HOSTILE_WASM};

#[test]
fn success_prints_result_json_on_stdout_and_exits_0() {
    let env = Env::new();
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json(), json!({"items":[],"total":0,"next_offset":null}));
    // Logs go to stderr: at -v the store in use (the default level is warn).
    let run: crate::util::Run = env
        .cmd()
        .args(["-v", "call", "backlog_tool", "list"])
        .output()
        .unwrap()
        .into();
    assert!(
        run.stderr
            .contains("backlog_store: using JsonlBacklogStore"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_params_json_is_a_tool_error_exit_1() {
    let env = Env::new();
    for bad in ["{", "[]", "42", "\"x\""] {
        let run = env
            .cmd()
            .args(["call", "backlog_tool", "list", "--params-json", bad])
            .output()
            .unwrap();
        let run: crate::util::Run = run.into();
        assert_eq!(run.code, 1, "{bad}: {run:?}");
        assert_eq!(run.json()["code"], "invalid_input", "{bad}");
    }
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let env = Env::new();
    let unknown_agent = env.call("ghost", "backlog_tool", "list", &json!({}));
    assert_eq!(unknown_agent.code, 2, "{unknown_agent:?}");
    assert!(unknown_agent.stderr.contains("unknown agent `ghost`"));
    let bad_flag: crate::util::Run = env.cmd().args(["call", "--nope"]).output().unwrap().into();
    assert_eq!(bad_flag.code, 2);
    let bad_backend: crate::util::Run = env
        .cmd()
        .env("BACKLOG_BACKEND", "sqlite")
        .args(["call", "backlog_tool", "list"])
        .output()
        .unwrap()
        .into();
    assert_eq!(bad_backend.code, 2, "{bad_backend:?}");
    assert!(
        bad_backend.stderr.contains("BACKLOG_BACKEND"),
        "{}",
        bad_backend.stderr
    );
    std::fs::write(
        env.config.join("rbac_tools_matrix.yml"),
        "tools: {}\nagents: {}\nbogus: 1\n",
    )
    .unwrap();
    let bad_config = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(bad_config.code, 2);
    assert!(
        bad_config.stderr.contains("rbac_tools_matrix.yml"),
        "{}",
        bad_config.stderr
    );
}

#[test]
fn unknown_tool_and_action_are_not_found_and_not_installed_tools_say_so() {
    let env = Env::new();
    let run = env.call(
        "scheduler",
        "architecture_pressure_tool",
        "digest",
        &json!({}),
    );
    assert_eq!(run.json()["code"], "not_found");
    assert!(run.stdout.contains("not installed"), "{run:?}");
    let run = env.call("operator", "nope_tool", "x", &json!({}));
    assert_eq!(run.json()["code"], "not_found");
    let run = env.call("operator", "backlog_tool", "explode", &json!({}));
    assert_eq!(run.json()["code"], "not_found");
    assert!(run.stdout.contains("explode"));
}

#[test]
fn plugins_list_and_inspect() {
    let env = Env::new();
    let run: crate::util::Run = env.cmd().args(["plugins", "list"]).output().unwrap().into();
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    let tool = &doc["tools"][0];
    assert_eq!(tool["name"], "backlog_tool");
    let actions: Vec<&str> = tool["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for a in [
        "create",
        "upsert",
        "get",
        "list",
        "events",
        "set_status",
        "add_comment",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let create = &tool["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "create")
        .unwrap();
    assert_eq!(create["entitlements"], json!(["tools.backlog.write"]));
    assert_eq!(create["params_schema"]["additionalProperties"], false);

    let run: crate::util::Run = env
        .cmd()
        .args(["plugins", "inspect", HOSTILE_WASM])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["tools"][0]["name"], "hostile");
    let run: crate::util::Run = env
        .cmd()
        .args(["plugins", "inspect", "/nonexistent.wasm"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2);
}

/// A component built against an older `backlog-bridge:tool` is named as such at load, with
/// what to do, rather than refused with a linker error.
#[test]
fn a_plugin_built_against_an_older_tool_interface_says_so() {
    let env = Env::new();
    let old = wat::parse_str(
        r#"(component
            (core module $m (func (export "describe")))
            (core instance $i (instantiate $m))
            (type $t (func))
            (func $describe (type $t) (canon lift (core func $i "describe")))
            (instance $tool (export "describe" (func $describe)))
            (export "backlog-bridge:tool/tool@0.1.0" (instance $tool))
        )"#,
    )
    .unwrap();
    let path = env.tmp.path().join("old-plugin.wasm");
    std::fs::write(&path, old).unwrap();
    let run: crate::util::Run = env
        .cmd()
        .args(["plugins", "inspect"])
        .arg(&path)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2, "{run:?}");
    for part in [
        "built against `backlog-bridge:tool/tool@0.1.0`",
        "backlog-bridge:tool@0.2.0",
        "rebuild it",
    ] {
        assert!(run.stderr.contains(part), "{part}: {run:?}");
    }
}
