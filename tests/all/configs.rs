//! "An accepted config can be used": generated RBAC matrices, plugin lists and policies are
//! either refused at load (exit 2, naming the key) or every action runs under them without a
//! crash (never exit 101, never `internal`). Over the real binary (`docs/testing.md`).
//!
//! Cases: `PROPTEST_CASES` (default 256 is too slow for process spawns; this suite uses 6
//! unless the variable is set).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::util::{Env, Run};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// Integers of every size a YAML file may hold for a non-negative setting.
fn any_count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1u64..200,
        200u64..100_000,
        Just(u64::from(u32::MAX)),
        (u64::from(u32::MAX))..=u64::MAX,
        Just(u64::MAX),
    ]
}

/// Calls every action a plain operator may call; none may crash.
fn exercise(env: &Env) -> Result<(), TestCaseError> {
    let calls: [(&str, Value); 8] = [
        (
            "create",
            json!({"env":"prod","service":"api","category":"refactor","title":"t","dedupe_key":"k"}),
        ),
        ("upsert", json!({"dedupe_key":"k","title":"t2"})),
        ("list", json!({})),
        ("get", json!({"id":"bl_00000000000000000000000000"})),
        ("dashboard", json!({"env":"prod"})),
        ("cleanup", json!({"dry_run": true})),
        ("cleanup", json!({})),
        ("auto_generate_weekly", json!({"env":"prod"})),
    ];
    for (action, params) in calls {
        let run = env.call("operator", "backlog_tool", action, &params);
        check_run(&run, action)?;
    }
    Ok(())
}

fn check_run(run: &Run, action: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        run.code == 0 || run.code == 1 || run.code == 2,
        "{action}: exit {} (a crash): {run:?}",
        run.code
    );
    if run.code == 2 {
        // A refused config names the file and the key; then every call is refused alike.
        prop_assert!(run.stderr.contains(".yml"), "{action}: {run:?}");
    }
    if run.code == 1 {
        let code = run.json()["code"].clone();
        prop_assert!(code != "internal", "{action}: {run:?}");
    }
    Ok(())
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The RBAC matrix's `timeout_s` on every backlog action.
fn with_timeouts(env: &Env, timeout: u64) {
    let path = env.config.join("rbac_tools_matrix.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        // `      list: { entitlements: [...] }` → `      list: { entitlements: [...], timeout_s: N }`
        let trimmed = line.trim_start();
        if trimmed.contains("entitlements: [")
            && trimmed.ends_with('}')
            && !trimmed.starts_with('#')
        {
            let without = match line.find(", timeout_s:") {
                Some(i) => format!("{} }}", &line[..i]),
                None => line.to_owned(),
            };
            out.push_str(&without.replacen(" }", &format!(", timeout_s: {timeout} }}"), 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

#[test]
fn any_accepted_rbac_timeout_can_be_used() {
    runner()
        .run(&any_count(), |timeout| {
            let env = Env::new();
            with_timeouts(&env, timeout);
            exercise(&env)
        })
        .unwrap();
}

/// Regression (found by the property above): `timeout_s: 18446744073709551615` was accepted,
/// and every call of the action panicked (`Instant + timeout` overflowed; exit 101, 500 over
/// HTTP). Now the matrix is refused at load, naming the key.
#[test]
fn a_huge_rbac_timeout_is_refused_at_load() {
    let env = Env::new();
    with_timeouts(&env, u64::MAX);
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("timeout_s") && run.stderr.contains("1..=86400"),
        "{run:?}"
    );
    with_timeouts(&env, 86_400);
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
}

/// Policy numbers of any size.
#[test]
fn any_accepted_policy_can_be_used() {
    let strategy = (
        any_count(),
        any_count(),
        any_count(),
        any_count(),
        any_count(),
        any_count(),
    );
    runner()
        .run(&strategy, |(retention, cap, overdue, top, threshold, due)| {
            let env = Env::new();
            let policy = format!(
                "defaults: {{ retention_days: {retention}, max_items_per_run: {cap} }}
dashboard: {{ overdue_limit: {overdue}, top_services: {top}, overdue_notify_threshold: {threshold} }}
categories:
  refactor: {{ priority: P2, due_days: {due}, when: [ {{ signal: regressions_30d, gte: 1 }} ] }}
"
            );
            std::fs::write(env.config.join("backlog_policy.yml"), policy).unwrap();
            exercise(&env)
        })
        .unwrap();
}

/// Plugin memory limits of any size.
#[test]
fn any_accepted_plugin_memory_limit_can_be_used() {
    runner()
        .run(&any_count(), |mib| {
            let env = Env::new();
            let path = env.config.join("plugins.yml");
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("memory_limit_mib: 128", &format!("memory_limit_mib: {mib}"));
            std::fs::write(&path, text).unwrap();
            exercise(&env)
        })
        .unwrap();
}
