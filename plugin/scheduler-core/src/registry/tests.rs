use super::*;

const SHIPPED: &str = include_str!("../../../../ops/task_registry.yml");

fn catalog() -> Catalog {
    let pairs = [
        ("backlog_tool", "auto_generate_weekly"),
        ("backlog_tool", "cleanup"),
        ("risk_history_tool", "snapshot"),
        ("risk_history_tool", "digest"),
        ("risk_history_tool", "cleanup"),
        ("architecture_pressure_tool", "digest"),
    ];
    Catalog {
        actions: pairs
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_string()))
            .collect(),
        agents: ["scheduler", "operator"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        installed: ["backlog_tool".to_string()].into(),
    }
}

#[test]
fn shipped_registry_has_the_six_runbook_jobs() {
    let reg = Registry::parse(FILE, SHIPPED, Some(&catalog())).expect("shipped registry");
    let rows: Vec<(&str, &str, &str, &str)> = reg
        .jobs
        .iter()
        .map(|j| {
            (
                j.id.as_str(),
                j.schedule.as_str(),
                j.tool.as_str(),
                j.action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "hourly_risk_snapshot",
                "0 * * * *",
                "risk_history_tool",
                "snapshot"
            ),
            (
                "daily_risk_digest",
                "0 9 * * *",
                "risk_history_tool",
                "digest"
            ),
            (
                "risk_history_cleanup",
                "20 3 * * *",
                "risk_history_tool",
                "cleanup"
            ),
            (
                "weekly_platform_priority_digest",
                "0 6 * * 1",
                "architecture_pressure_tool",
                "digest"
            ),
            (
                "weekly_backlog_generate",
                "20 6 * * 1",
                "backlog_tool",
                "auto_generate_weekly"
            ),
            (
                "daily_backlog_cleanup",
                "40 3 * * *",
                "backlog_tool",
                "cleanup"
            ),
        ]
    );
    let generate = reg.job("weekly_backlog_generate").unwrap();
    assert_eq!(generate.after, ["weekly_platform_priority_digest"]);
    assert_eq!(generate.log, "backlog_generate.log");
    assert_eq!(
        reg.job("hourly_risk_snapshot").unwrap().log,
        "risk_snapshot.log"
    );
    assert!(reg.jobs.iter().all(|j| j.agent == "scheduler" && j.enabled));
    let c = catalog();
    assert!(c.not_installed(generate).is_none());
    let snapshot = reg.job("hourly_risk_snapshot").unwrap();
    assert!(
        c.not_installed(snapshot)
            .unwrap()
            .contains("`risk_history_tool` is not installed")
    );
    // `after` ordering: the digest comes before the generation.
    let order: Vec<&str> = reg
        .order()
        .unwrap()
        .iter()
        .map(|i| reg.jobs[*i].id.as_str())
        .collect();
    let pos = |id: &str| order.iter().position(|o| *o == id).unwrap();
    assert!(pos("weekly_platform_priority_digest") < pos("weekly_backlog_generate"));
}

fn job(id: &str, extra: &str) -> String {
    format!(
        "  - {{ id: {id}, schedule: '0 * * * *', tool: backlog_tool, action: cleanup{extra} }}\n"
    )
}

#[track_caller]
fn bad(jobs: &str, expect: &str) {
    let text = format!("jobs:\n{jobs}");
    let e = Registry::parse("ops/task_registry.yml", &text, Some(&catalog()))
        .expect_err(&text)
        .to_string();
    assert!(e.starts_with("ops/task_registry.yml: "), "{e}");
    assert!(e.contains(expect), "{text}\n{e}");
}

#[test]
fn validation_names_file_job_and_key() {
    bad(
        &job("a", ", schedule: '61 * * * *'").replace("schedule: '0 * * * *', ", ""),
        "jobs[0] (a).schedule: `61 * * * *`: minute field",
    );
    bad(
        &(job("a", "") + &job("a", "")),
        "jobs[1] (a).id: duplicate job id",
    );
    bad(
        &job("a", ", after: [b]"),
        "jobs[0] (a).after: unknown job `b`",
    );
    bad(
        &(job("a", ", after: [b]") + &job("b", ", after: [c]") + &job("c", ", after: [a]")),
        "`after` forms a cycle: a -> b -> c -> a",
    );
    bad(&job("a", ", after: [a]"), "cycle: a -> a");
    bad(
        &job("a", "").replace("backlog_tool", "nope_tool"),
        "jobs[0] (a).tool: tool `nope_tool` is not in the RBAC matrix",
    );
    bad(
        &job("a", "").replace("cleanup", "drop_all"),
        "jobs[0] (a).action: action `backlog_tool.drop_all` is not in the RBAC matrix",
    );
    bad(
        &job("a", ", agent: ghost"),
        "agent `ghost` is not in the RBAC matrix",
    );
    bad(&job("a", ", params: [1]"), "(a).params: must be a mapping");
    bad(&job("a", ", params: {tool: x}"), "`tool` is reserved");
    bad(
        &job("a", ", log: ../etc/passwd"),
        "(a).log: `../etc/passwd` must be a plain file name",
    );
    bad(&job("Bad", ""), "jobs[0].id: `Bad` must match");
    bad(&job("a", ", colour: red"), "unknown field `colour`");
    bad(
        &job("a", ", retryable: sometimes"),
        "jobs[0] (a).retryable: must be true or false",
    );
    bad(
        &job("a", ", retryable: 1"),
        "(a).retryable: must be true or false",
    );
}

#[test]
fn retryable_is_read_and_defaults_to_false() {
    let text = format!("jobs:\n{}{}", job("a", ""), job("b", ", retryable: true"));
    let reg = Registry::parse(FILE, &text, None).unwrap();
    assert!(!reg.jobs[0].retryable);
    assert!(reg.jobs[1].retryable);
}

#[test]
fn defaults_apply() {
    let text = format!("jobs:\n{}", job("a", ""));
    let reg = Registry::parse(FILE, &text, None).unwrap();
    let a = &reg.jobs[0];
    assert_eq!(
        (a.agent.as_str(), a.enabled, a.log.as_str()),
        ("scheduler", true, "a.log")
    );
    assert!(a.params.is_empty());
    assert_eq!(
        a.request_body().to_string(),
        r#"{"tool":"backlog_tool","action":"cleanup"}"#
    );
}

#[test]
fn request_body_is_flat() {
    let reg = Registry::parse(FILE, SHIPPED, None).unwrap();
    let body = reg.job("weekly_backlog_generate").unwrap().request_body();
    assert_eq!(
        body,
        serde_json::json!({"tool":"backlog_tool","action":"auto_generate_weekly","env":"prod"})
    );
}

/// Every registry value that reaches a root cron line is held to an inert alphabet: the
/// injections an operator could paste by mistake (or a reviewer would try) are refused.
#[test]
fn values_that_reach_a_cron_line_cannot_carry_shell_or_cron_syntax() {
    for log in [
        "'x.log;touch${IFS}p;#'",
        "'gen.log$(id)'",
        "'a b.log'",
        "'x.log%y'",
        "'x.log`id`'",
        "'x.log|sh'",
        "'x.log>y'",
        ".hidden.log",
        "'a\\tb.log'",
    ] {
        bad(&job("a", &format!(", log: {log}")), "(a).log: ");
    }
    bad(
        &job("a", ", description: \"two\\nlines\""),
        "(a).description: must be one line without `%` or control characters",
    );
    bad(
        &job("a", ", description: '50% of runs'"),
        "(a).description: must be one line without `%`",
    );
    bad(
        &job("a", &format!(", description: '{}'", "x".repeat(201))),
        "(a).description: must be at most 200 characters",
    );
    let text = format!(
        "jobs:\n{}",
        job("a", "").replace("backlog_tool", "'backlog tool'")
    );
    let e = Registry::parse(FILE, &text, None).unwrap_err().to_string();
    assert!(e.contains("(a).tool: `backlog tool` must match"), "{e}");
    let text = format!(
        "jobs:\n{}",
        job("a", "").replace("cleanup", "\"clean\\nup\"")
    );
    let e = Registry::parse(FILE, &text, None).unwrap_err().to_string();
    assert!(e.contains("(a).action: `clean\\nup` must match"), "{e}");
    let text = format!("jobs:\n{}", job("a", ", log: gen-2026_11.log"));
    assert_eq!(
        Registry::parse(FILE, &text, None).unwrap().jobs[0].log,
        "gen-2026_11.log"
    );
}
