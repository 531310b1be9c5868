//! The governance scheduler over the real binary: `cron render|check`, `run-job` (HTTP
//! transport failures, dry run, `--local`, errors passed through), and `scheduler
//! --from/--until` (exactly once across two processes on one Postgres; a hanging job cut at
//! its limit and recorded `timeout`).
//!
//! `run-job` against the real router (a wrong key's `HTTP 401 from /v1/tools/execute`, the
//! missing digest over HTTP, a successful run) and `serve --scheduler` are in `http.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::util::{Env, Run};

const NO_DIGEST: &str = "No platform digest found. Run architecture_pressure_tool.digest first.";

/// The repository's shipped ops directory.
fn repo_ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

/// An installation with the shipped task registry.
fn env() -> Env {
    let env = Env::new();
    std::fs::copy(
        repo_ops().join("task_registry.yml"),
        env.ops.join("task_registry.yml"),
    )
    .unwrap();
    env
}

fn run(env: &Env, args: &[&str]) -> Run {
    env.cmd().args(args).output().expect("run binary").into()
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn with_digest(env: &Env) {
    let dir = env.ops.join("reports/platform");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reports/platform/2026-48.json"),
        dir.join("2026-48.json"),
    )
    .unwrap();
}

#[test]
fn shipped_cron_file_is_in_sync_and_render_reproduces_it() {
    let env = env();
    // The repository's own files: what CI checks.
    let shipped = std::process::Command::new(crate::util::BIN)
        .arg("--config-dir")
        .arg(&env.config)
        .arg("--ops-dir")
        .arg(repo_ops())
        .args(["cron", "check"])
        .output()
        .unwrap();
    let shipped: Run = shipped.into();
    assert_eq!(shipped.code, 0, "{shipped:?}");
    assert_eq!(shipped.json()["in_sync"], true);

    let r = run(&env, &["cron", "render"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rendered = std::fs::read_to_string(env.ops.join("cron/jobs.cron")).unwrap();
    let expected = std::fs::read_to_string(repo_ops().join("cron/jobs.cron")).unwrap();
    assert_eq!(rendered, expected);
    assert!(rendered.contains(
        "20 6 * * 1 root cd \"$REPO_ROOT\" && { set -a; [ ! -r .env ] || . ./.env; set +a; \
         backlog-bridge run-job --job weekly_backlog_generate; } >> /var/log/daarion/backlog_generate.log 2>&1"
    ));
    let r = run(&env, &["cron", "check"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn cron_check_names_each_drift_and_exits_1() {
    let env = env();
    let deployed = env.tmp.path().join("daarion-governance");
    let text = std::fs::read_to_string(repo_ops().join("cron/jobs.cron"))
        .unwrap()
        // An operator's edit of the header is not drift.
        .replace("REPO_ROOT=/opt/daarion", "REPO_ROOT=/srv/daarion")
        // Generation moved before the digest: the runbook's missing-digest cause.
        .replace("20 6 * * 1 root", "0 6 * * 1 root");
    let text: String = text
        .lines()
        .filter(|l| !l.contains("--job daily_backlog_cleanup"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&deployed, text).unwrap();
    let r = run(
        &env,
        &["cron", "check", "--file", deployed.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let drifts: Vec<String> = r.json()["drifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(drifts.len(), 2, "{drifts:?}");
    assert!(
        drifts[0].starts_with("job weekly_backlog_generate: line "),
        "{drifts:?}"
    );
    assert!(drifts[0].ends_with("schedule `0 6 * * 1`, the registry says `20 6 * * 1`"));
    assert_eq!(
        drifts[1],
        "job daily_backlog_cleanup: missing (the registry runs it at `40 3 * * *`)"
    );
    for d in &drifts {
        assert!(
            r.stderr.contains(d.as_str()),
            "stderr names {d}: {}",
            r.stderr
        );
    }
}

/// Registry values reach root cron lines: a log name or description carrying shell or cron
/// syntax is refused by `cron render` (exit 2, naming the key) instead of being written, and a
/// deployed line whose redirection was tampered with is drift for `cron check`.
#[test]
fn cron_lines_cannot_be_injected_through_the_registry_or_the_deployed_file() {
    let shipped = std::fs::read_to_string(repo_ops().join("task_registry.yml")).unwrap();
    for (from, to, key) in [
        (
            "log: backlog_generate.log",
            "log: 'x.log;touch${IFS}p;#'",
            "(weekly_backlog_generate).log: ",
        ),
        (
            "log: backlog_generate.log",
            "log: 'gen.log$(touch p)'",
            "(weekly_backlog_generate).log: ",
        ),
        (
            "description: Backlog items from the latest platform digest, Monday 06:20 UTC (runbook §3.1).",
            "description: \"one\\n0 * * * * root touch /tmp/p\"",
            "(weekly_backlog_generate).description: must be one line",
        ),
        (
            "description: Backlog items from the latest platform digest, Monday 06:20 UTC (runbook §3.1).",
            "description: '100% of services'",
            "(weekly_backlog_generate).description: must be one line without `%`",
        ),
    ] {
        assert!(shipped.contains(from), "the shipped registry has `{from}`");
        let env = env();
        let registry = shipped.replacen(from, to, 1);
        std::fs::write(env.ops.join("task_registry.yml"), &registry).unwrap();
        let r = run(&env, &["cron", "render"]);
        assert_eq!(r.code, 2, "{to}: {r:?}");
        assert!(r.stderr.contains(key), "{to}: {}", r.stderr);
        assert!(!env.ops.join("cron/jobs.cron").exists(), "nothing rendered");
    }

    let env = env();
    let line = "backlog-bridge run-job --job weekly_backlog_generate; } >> /var/log/daarion/backlog_generate.log 2>&1";
    let text = std::fs::read_to_string(repo_ops().join("cron/jobs.cron")).unwrap();
    assert!(text.contains(line));
    let deployed = env.tmp.path().join("daarion-governance");
    std::fs::write(
        &deployed,
        text.replace(
            line,
            "backlog-bridge run-job --job weekly_backlog_generate; } >> /var/log/daarion/x.log;touch${IFS}p;# 2>&1",
        ),
    )
    .unwrap();
    let r = run(
        &env,
        &["cron", "check", "--file", deployed.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("job weekly_backlog_generate: line ")
            && r.stderr.contains("command differs"),
        "{}",
        r.stderr
    );
}

#[test]
fn run_job_against_a_stopped_router_says_cannot_reach_and_exits_3() {
    let env = env();
    let url = format!("http://127.0.0.1:{}", closed_port());
    // From the cron header's ROUTER_URL …
    let r = env
        .cmd()
        .env("ROUTER_URL", &url)
        .args(["run-job", "--job", "weekly_backlog_generate"])
        .output()
        .unwrap();
    let r: Run = r.into();
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains(&format!("Cannot reach {url}")),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{r:?}");
    // … and from --router-url, for a one-off job.
    let r = run(
        &env,
        &[
            "run-job",
            "--tool",
            "backlog_tool",
            "--action",
            "dashboard",
            "--router-url",
            &url,
        ],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains(&format!("Cannot reach {url}")),
        "{}",
        r.stderr
    );
}

#[test]
fn dry_run_prints_the_exact_request_with_the_key_masked() {
    let env = env().var("SCHEDULER_API_KEY", "sched-Secr3t");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let expected = json!({
        "method": "POST",
        "url": format!("{url}/v1/tools/execute"),
        "headers": {"Authorization": "Bearer ***", "Content-Type": "application/json"},
        "body": {"tool": "backlog_tool", "action": "auto_generate_weekly", "env": "prod"},
    });
    for args in [
        vec![
            "run-job",
            "--job",
            "weekly_backlog_generate",
            "--dry-run",
            "--router-url",
            &url,
        ],
        vec![
            "run-job",
            "--tool",
            "backlog_tool",
            "--action",
            "auto_generate_weekly",
            "--params-json",
            r#"{"env":"prod"}"#,
            "--dry-run",
            "--router-url",
            &url,
        ],
    ] {
        let r = run(&env, &args);
        // Nothing listens on the port: a dry run sent nothing, or it would have failed.
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(r.json(), expected);
        assert!(!r.stdout.contains("sched-Secr3t") && !r.stderr.contains("sched-Secr3t"));
    }
    // Malformed params are a tool error (exit 1), named.
    let r = run(
        &env,
        &[
            "run-job",
            "--tool",
            "backlog_tool",
            "--action",
            "cleanup",
            "--params-json",
            "{oops",
            "--dry-run",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["code"], "invalid_input");
    // An unknown job is a usage error (exit 2) naming the known ones.
    let r = run(&env, &["run-job", "--job", "nope", "--dry-run"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("unknown job `nope`") && r.stderr.contains("weekly_backlog_generate")
    );
}

#[test]
fn local_run_job_runs_the_tool_as_the_job_agent() {
    let env = env();
    with_digest(&env);
    let r = run(
        &env,
        &["run-job", "--job", "weekly_backlog_generate", "--local"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let result = r.json();
    assert_eq!(result["week"], "2026-48");
    assert!(result["created"].as_u64().unwrap() > 0, "{result}");
    // The events name the job's agent as the actor.
    let id = result["items"][0].as_str().unwrap();
    let item = env.ok("get", json!({"id": id, "include_events": true}));
    assert_eq!(item["events"][0]["actor"], "scheduler");

    let r = run(
        &env,
        &["run-job", "--job", "daily_backlog_cleanup", "--local"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["deleted"], 0);

    // RBAC applies as the agent: `scheduler` holds no tools.backlog.write.
    let r = run(
        &env,
        &[
            "run-job",
            "--tool",
            "backlog_tool",
            "--action",
            "add_comment",
            "--local",
            "--params-json",
            r#"{"id":"bl_000000000000","message":"x"}"#,
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["code"], "forbidden");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("tools.backlog.write")
    );

    // A tool the matrix knows but no plugin provides: skipped, exit 0.
    let r = run(
        &env,
        &["run-job", "--job", "hourly_risk_snapshot", "--local"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["skipped"], true);
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("`risk_history_tool` is not installed")
    );
}

/// The four shipped jobs whose tools are not installed here, run as the rendered cron lines
/// run them (`run-job --job ID`, the router from `ROUTER_URL`, the agent's key from the
/// environment) against a real `serve`: `skipped`, exit 0, the reason logged once — the same
/// answer as `--local` and the built-in scheduler.
#[test]
fn jobs_of_tools_not_installed_are_skipped_over_http_as_the_cron_lines_run_them() {
    let env = crate::http::env();
    std::fs::copy(
        repo_ops().join("task_registry.yml"),
        env.ops.join("task_registry.yml"),
    )
    .unwrap();
    let server = crate::http::Server::start(&env, &[]);
    for job in [
        "hourly_risk_snapshot",
        "daily_risk_digest",
        "risk_history_cleanup",
        "weekly_platform_priority_digest",
    ] {
        for local in [false, true] {
            let mut cmd = env.cmd();
            cmd.env("ROUTER_URL", &server.base)
                .args(["run-job", "--job", job]);
            if local {
                cmd.arg("--local");
            }
            let r: Run = cmd.output().expect("run-job").into();
            assert_eq!(r.code, 0, "{job} (local: {local}): {r:?}");
            let out = r.json();
            assert_eq!(out["skipped"], true, "{job}: {r:?}");
            let reason = out["reason"].as_str().unwrap();
            assert!(reason.contains("is not installed"), "{reason}");
            let logged = r
                .stderr
                .lines()
                .filter(|l| l.contains("is not installed"))
                .count();
            assert_eq!(logged, 1, "the reason is logged once: {}", r.stderr);
            assert!(r.stderr.contains("skipped"), "{}", r.stderr);
        }
    }
}

#[test]
fn missing_digest_error_is_passed_through_with_exit_1() {
    let env = env();
    let r = run(
        &env,
        &["run-job", "--job", "weekly_backlog_generate", "--local"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"error": NO_DIGEST, "code": "precondition_failed"})
    );
    // The runbook's troubleshooting row: `error: No platform digest found`.
    assert!(
        r.stderr.contains("error: No platform digest found"),
        "{}",
        r.stderr
    );
}

/// Runs of a Postgres `scheduler_runs` as (job → [(minute, outcome)]).
fn pg_runs(db: &crate::pg::TestDb) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in db.rows(
        "SELECT job_id, to_char(scheduled_minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS m, \
         outcome FROM scheduler_runs ORDER BY job_id, scheduled_minute",
    ) {
        let v: Value = serde_json::from_str(&row).unwrap();
        out.entry(v["job_id"].as_str().unwrap().into())
            .or_default()
            .push((
                v["m"].as_str().unwrap().into(),
                v["outcome"].as_str().unwrap().into(),
            ));
    }
    out
}

#[test]
fn two_schedulers_on_one_postgres_run_each_job_once_per_scheduled_minute() {
    let db = crate::pg::database();
    let env = env().with_postgres(&db);
    let m = env.migrate(&[]);
    assert_eq!(m.code, 0, "{m:?}");
    with_digest(&env);
    // The week of 2026-11-23 (a Monday) to Sunday 23:59, in two processes at once.
    let span = [
        "scheduler",
        "--from",
        "2026-11-23T00:00:00Z",
        "--until",
        "2026-11-29T23:59:00Z",
    ];
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.cmd()
                .args(span)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn scheduler")
        })
        .collect();
    let outs: Vec<Run> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().into())
        .collect();
    let mut claimed = 0;
    let mut contested = 0;
    for o in &outs {
        assert_eq!(o.code, 0, "{o:?}");
        claimed += o.json()["claimed"].as_u64().unwrap();
        contested += o.json()["already_claimed"].as_u64().unwrap();
    }
    let runs = pg_runs(&db);
    let count = |job: &str| runs.get(job).map_or(0, Vec::len);
    // Exactly what each schedule says for that week.
    assert_eq!(count("hourly_risk_snapshot"), 7 * 24);
    assert_eq!(count("daily_risk_digest"), 7);
    assert_eq!(count("risk_history_cleanup"), 7);
    assert_eq!(count("weekly_platform_priority_digest"), 1);
    assert_eq!(count("weekly_backlog_generate"), 1);
    assert_eq!(count("daily_backlog_cleanup"), 7);
    let total: usize = runs.values().map(Vec::len).sum();
    assert_eq!(total, 191);
    // Every due run was claimed by exactly one process, and the other saw it taken.
    assert_eq!(claimed, 191, "{outs:?}");
    assert_eq!(contested, 191, "{outs:?}");
    // Scheduled minutes are the schedule's, and outcomes are right.
    assert_eq!(
        runs["weekly_backlog_generate"],
        [("2026-11-23 06:20".to_owned(), "ok".to_owned())]
    );
    assert_eq!(runs["weekly_platform_priority_digest"][0].1, "skipped");
    assert!(
        runs["daily_backlog_cleanup"]
            .iter()
            .all(|(m, o)| m.ends_with("03:40") && o == "ok")
    );
    assert!(
        runs["hourly_risk_snapshot"]
            .iter()
            .all(|(m, o)| m.ends_with(":00") && o == "skipped")
    );
    let reason =
        db.scalar("SELECT error FROM scheduler_runs WHERE job_id = 'hourly_risk_snapshot' LIMIT 1");
    assert!(
        reason.contains("`risk_history_tool` is not installed"),
        "{reason}"
    );
    // The generation ran once: its items exist once.
    let items = db.scalar("SELECT count(*) FROM backlog_items");
    assert!(items.parse::<u32>().unwrap() > 0);
    let dup = db.scalar("SELECT count(*) FROM (SELECT dedupe_key FROM backlog_items GROUP BY 1 HAVING count(*) > 1) d");
    assert_eq!(dup, "0");

    // `scheduler status` reads the same table.
    let st = env
        .cmd()
        .args(["scheduler", "status"])
        .env("BACKLOG_BRIDGE_NOW", "2026-11-30T00:00:00Z")
        .output()
        .unwrap();
    let st: Run = st.into();
    assert_eq!(st.code, 0, "{st:?}");
    let st = st.json();
    assert_eq!(st["runs"], "postgres");
    let generate = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "weekly_backlog_generate")
        .unwrap();
    assert_eq!(generate["outcome"], "ok");
    assert_eq!(generate["last_run"]["scheduled"], "2026-11-23T06:20:00Z");
    assert_eq!(generate["next_due"], "2026-11-30T06:20:00Z");
}

#[test]
fn a_hanging_job_is_recorded_timeout_and_the_loop_goes_on() {
    let env = Env::new().with_hostile();
    // `hostile.spin` loops forever; the matrix gives it 1 s. It needs tools.backlog.read,
    // so it runs as `operator`.
    std::fs::write(
        env.ops.join("task_registry.yml"),
        "jobs:
  - { id: hang, schedule: '* * * * *', tool: hostile, action: spin, agent: operator }
  - { id: cleanup, schedule: '* * * * *', tool: backlog_tool, action: cleanup, after: [hang] }
",
    )
    .unwrap();
    let r = run(
        &env,
        &[
            "scheduler",
            "--from",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T10:02:00Z",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["timeout"], 3, "{r:?}");
    assert_eq!(r.json()["ok"], 3, "{r:?}");
    let text = std::fs::read_to_string(env.ops.join("scheduler/runs.jsonl")).unwrap();
    let mut last: BTreeMap<(String, String), Value> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        last.insert(
            (
                v["job"].as_str().unwrap().into(),
                v["scheduled"].as_str().unwrap().into(),
            ),
            v,
        );
    }
    assert_eq!(last.len(), 6);
    for ((job, minute), v) in &last {
        let expect = if job == "hang" { "timeout" } else { "ok" };
        assert_eq!(v["outcome"], expect, "{job} {minute}: {v}");
        if job == "hang" {
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("exceeded its time limit of 1000 ms"),
                "{v}"
            );
        }
    }
    // A second drill over the same minutes runs nothing again (the claims are kept).
    let again = run(
        &env,
        &[
            "scheduler",
            "--from",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T10:02:00Z",
        ],
    );
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["claimed"], 0);
    assert_eq!(again.json()["already_claimed"], 6);
}

/// Last record per (job, minute) of `ops/scheduler/runs.jsonl`.
fn jsonl_runs(env: &Env) -> BTreeMap<(String, String), Value> {
    let text = std::fs::read_to_string(env.ops.join("scheduler/runs.jsonl")).unwrap();
    let mut last = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        last.insert(
            (
                v["job"].as_str().unwrap().into(),
                v["scheduled"].as_str().unwrap().into(),
            ),
            v,
        );
    }
    last
}

#[test]
fn two_schedulers_on_one_host_with_jsonl_claim_each_run_once() {
    let env = env();
    with_digest(&env);
    // Monday 2026-11-23: every job of the registry is due at least once.
    let span = [
        "scheduler",
        "--from",
        "2026-11-23T00:00:00Z",
        "--until",
        "2026-11-23T23:59:00Z",
    ];
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.cmd()
                .args(span)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Run> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().into())
        .collect();
    let claimed: u64 = outs
        .iter()
        .map(|o| {
            assert_eq!(o.code, 0, "{o:?}");
            o.json()["claimed"].as_u64().unwrap()
        })
        .sum();
    let runs = jsonl_runs(&env);
    assert_eq!(runs.len(), 24 + 1 + 1 + 1 + 1 + 1);
    assert_eq!(claimed, 29);
    assert!(runs.values().all(|v| v["outcome"] != "running"), "{runs:?}");
    assert_eq!(
        runs[&(
            "weekly_backlog_generate".into(),
            "2026-11-23T06:20:00Z".into()
        )]["outcome"],
        "ok"
    );
}

#[test]
fn after_downtime_a_run_within_15_minutes_runs_once_and_older_ones_are_missed() {
    let env = env();
    let at = |from: &str, until: &str| {
        let r = run(&env, &["scheduler", "--from", from, "--until", until]);
        assert_eq!(r.code, 0, "{r:?}");
        r.json()
    };
    at("2026-11-24T10:00:00Z", "2026-11-24T10:00:00Z");
    // Down from 10:01 until 12:10: 11:00 is 70 minutes late, 12:00 only 10.
    let back = at("2026-11-24T12:10:00Z", "2026-11-24T12:10:00Z");
    assert_eq!(back["missed"], 1, "{back}");
    let runs = jsonl_runs(&env);
    let hourly =
        |m: &str| runs[&("hourly_risk_snapshot".to_owned(), m.to_owned())]["outcome"].clone();
    assert_eq!(hourly("2026-11-24T10:00:00Z"), "skipped");
    assert_eq!(hourly("2026-11-24T11:00:00Z"), "missed");
    assert_eq!(hourly("2026-11-24T12:00:00Z"), "skipped");
    let missed = &runs[&(
        "hourly_risk_snapshot".to_owned(),
        "2026-11-24T11:00:00Z".to_owned(),
    )];
    assert!(
        missed["error"]
            .as_str()
            .unwrap()
            .contains("not running within 15 minutes"),
        "{missed}"
    );
    // Daily jobs of that morning before 10:00 were never in a look: nothing is invented.
    assert_eq!(runs.len(), 3, "{runs:?}");
}

/// The built-in scheduler on the wall clock stops cleanly on SIGTERM: exit 0 with its summary.
#[test]
fn sigterm_stops_the_wall_clock_scheduler_cleanly() {
    use std::io::BufRead as _;
    let env = env();
    let mut child = env
        .cmd()
        .arg("scheduler")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scheduler");
    // Wait for the loop to have started (its log line), then signal it.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let started = line.contains("scheduler: started");
                seen.push(line);
                if started {
                    break;
                }
            }
            _ => panic!("scheduler ended before starting: {seen:?}"),
        }
    }
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{seen:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON on stdout");
    assert!(summary["ticks"].is_u64(), "{summary}");
}

/// A registry of two cleanup jobs at 03:40 (one `retryable`) and an hourly one.
fn lease_registry(env: &Env) {
    std::fs::write(
        env.ops.join("task_registry.yml"),
        "jobs:
  - { id: cleanup_retry, schedule: '40 3 * * *', tool: backlog_tool, action: cleanup, params: { dry_run: true }, retryable: true }
  - { id: cleanup_once, schedule: '40 3 * * *', tool: backlog_tool, action: cleanup, params: { dry_run: true } }
  - { id: hourly, schedule: '0 * * * *', tool: backlog_tool, action: cleanup, params: { dry_run: true } }
",
    )
    .unwrap();
}

/// A scheduler that died holding two runs (their leases long expired at the pinned clock):
/// the next scheduler records the plain one `failed` ("scheduler died") and runs the
/// retryable one again once; `scheduler status` shows both. Its first look also records the
/// missed runs of a job that has no record of its own, and prunes old claim files.
#[test]
fn expired_leases_are_failed_or_retried_once_and_status_shows_it() {
    let env = env();
    lease_registry(&env);
    let dir = env.ops.join("scheduler");
    std::fs::create_dir_all(dir.join("claims/2026-11-01")).unwrap();
    std::fs::write(dir.join("claims/2026-11-01/hourly@0000"), "").unwrap();
    std::fs::create_dir_all(dir.join("claims/2026-11-27")).unwrap();
    let mut lines = String::new();
    for job in ["cleanup_retry", "cleanup_once"] {
        std::fs::write(dir.join(format!("claims/2026-11-27/{job}@0340")), "").unwrap();
        lines.push_str(
            &json!({
                "job": job, "scheduled": "2026-11-27T03:40:00Z",
                "started_at": "2026-11-27T03:40:01Z", "finished_at": null,
                "outcome": "running", "error": null,
                "lease_until": "2026-11-27T03:42:01Z", "owner": "dead-host/4242", "attempt": 1
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(dir.join("runs.jsonl"), lines).unwrap();

    // The clock is pinned at 10:00 (Env's BACKLOG_BRIDGE_NOW).
    let r = run(
        &env,
        &[
            "scheduler",
            "--from",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T10:00:00Z",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let summary = r.json();
    assert_eq!(
        (summary["died"].clone(), summary["retried"].clone()),
        (json!(2), json!(1)),
        "{summary}"
    );
    assert_eq!(summary["pruned"], 1, "{summary}");
    let runs = jsonl_runs(&env);
    let at = |job: &str, m: &str| runs[&(job.to_owned(), m.to_owned())].clone();
    let once = at("cleanup_once", "2026-11-27T03:40:00Z");
    assert_eq!(once["outcome"], "failed", "{once}");
    assert!(
        once["error"].as_str().unwrap().contains("scheduler died"),
        "{once}"
    );
    assert!(
        once["error"].as_str().unwrap().contains("dead-host/4242"),
        "{once}"
    );
    let retried = at("cleanup_retry", "2026-11-27T03:40:00Z");
    assert_eq!(
        (retried["outcome"].clone(), retried["attempt"].clone()),
        (json!("ok"), json!(2)),
        "{retried}"
    );
    assert!(
        retried["error"]
            .as_str()
            .unwrap()
            .contains("scheduler died"),
        "{retried}"
    );
    // `hourly` had no record: it looks back to the scheduler's latest record (03:40), so
    // 04:00..09:00 are missed and 10:00 runs.
    assert_eq!(at("hourly", "2026-11-27T04:00:00Z")["outcome"], "missed");
    assert_eq!(at("hourly", "2026-11-27T09:00:00Z")["outcome"], "missed");
    assert_eq!(at("hourly", "2026-11-27T10:00:00Z")["outcome"], "ok");
    assert!(!dir.join("claims/2026-11-01").exists(), "old claims pruned");
    assert!(dir.join("claims/2026-11-27/cleanup_once@0340").exists());

    let status = run(&env, &["scheduler", "status"]);
    assert_eq!(status.code, 0, "{status:?}");
    let jobs = status.json()["jobs"].clone();
    let job = |id: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(job("cleanup_retry")["retryable"], true);
    assert_eq!(job("cleanup_retry")["last_run"]["attempt"], 2);
    assert_eq!(job("cleanup_once")["last_run"]["outcome"], "failed");
    assert!(
        job("cleanup_once")["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("scheduler died")
    );

    // Taken over once: a second scheduler finds nothing left to take over.
    let again = run(
        &env,
        &[
            "scheduler",
            "--from",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T10:00:00Z",
        ],
    );
    assert_eq!(again.json()["died"], 0, "{again:?}");
}
