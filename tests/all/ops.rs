//! The operator's side of the binary: output formats, a closed stdout, log levels, `explain`
//! (CLI and `GET /v1/explain`), completions and the man page, `migrate --dry-run | psql`,
//! stale-digest warnings, the config-dir variables, and the ops files (Grafana dashboard and
//! Prometheus rules against the real `/metrics`, `promtool`, the systemd units through
//! `systemd-analyze verify`, the logrotate file against the cron lines).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY, env as keyed_env};
use crate::util::{BIN, Env, Run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(env: &Env, args: &[&str]) -> Run {
    env.cmd().args(args).output().expect("run binary").into()
}

/// The shipped task registry in this installation's ops dir (for `scheduler status`).
fn with_registry(env: &Env) {
    std::fs::copy(
        repo().join("ops/task_registry.yml"),
        env.ops.join("task_registry.yml"),
    )
    .unwrap();
}

fn create(env: &Env, title: &str, extra: Value) -> Value {
    let mut params = json!({"env":"prod","service":"gateway","category":"refactor",
        "title": title,"priority":"P1","owner":"oncall","due_date":"2026-11-20"});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    env.ok("create", params)
}

#[test]
fn output_formats_json_by_default_tables_and_yaml_on_request() {
    let env = Env::new();
    with_registry(&env);
    let item = create(&env, "Gateway 5xx budget burn", json!({}));
    let id = item["id"].as_str().unwrap();

    // Not a terminal: JSON, keys in the data model's order (id first).
    let params = json!({"id": id, "include_events": true}).to_string();
    let get = run(
        &env,
        &["call", "backlog_tool", "get", "--params-json", &params],
    );
    assert_eq!(get.code, 0, "{get:?}");
    assert!(
        get.stdout
            .starts_with(&format!("{{\"id\":\"{id}\",\"created_at\"")),
        "{}",
        get.stdout
    );
    assert_eq!(get.stdout.lines().count(), 1, "JSON stays one line");

    // -o table: the list's columns.
    let list = run(&env, &["call", "backlog_tool", "list", "-o", "table"]);
    assert_eq!(list.code, 0, "{list:?}");
    let mut lines = list.stdout.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "ID", "PRIORITY", "STATUS", "SERVICE", "TITLE", "OWNER", "DUE"
        ]
    );
    let row = lines.next().unwrap();
    for cell in [
        id,
        "P1",
        "open",
        "gateway",
        "Gateway 5xx budget burn",
        "oncall",
        "2026-11-20",
    ] {
        assert!(row.contains(cell), "{cell} missing from {row:?}");
    }
    assert!(list.stdout.contains("1 of 1 items"), "{}", list.stdout);

    // get as a card with its events; dashboard as counts plus the overdue list.
    let card = run(
        &env,
        &[
            "call",
            "backlog_tool",
            "get",
            "--params-json",
            &params,
            "-o",
            "table",
        ],
    );
    assert!(card.stdout.starts_with("id "), "{}", card.stdout);
    assert!(
        card.stdout.contains("events (1):") && card.stdout.contains("created"),
        "{}",
        card.stdout
    );
    let dash = run(
        &env,
        &[
            "call",
            "backlog_tool",
            "dashboard",
            "--params-json",
            r#"{"env":"prod"}"#,
            "-o",
            "table",
        ],
    );
    assert_eq!(dash.code, 0, "{dash:?}");
    assert!(dash.stdout.contains("overdue: 1"), "{}", dash.stdout);
    assert!(
        dash.stdout.contains(id) && dash.stdout.contains("open 1"),
        "{}",
        dash.stdout
    );

    // -o yaml is the same document.
    let yaml = run(
        &env,
        &[
            "call",
            "backlog_tool",
            "get",
            "--params-json",
            &params,
            "-o",
            "yaml",
        ],
    );
    let back: Value = serde_yaml_ng::from_str(&yaml.stdout).unwrap();
    assert_eq!(back, get.json());

    // plugins list and scheduler status as tables; errors too.
    let plugins = run(&env, &["plugins", "list", "-o", "table"]);
    assert!(
        plugins.stdout.starts_with("TOOL") && plugins.stdout.contains("backlog_tool  create"),
        "{}",
        plugins.stdout
    );
    let status = run(&env, &["scheduler", "status", "-o", "table"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.stdout.contains("JOB") && status.stdout.contains("weekly_backlog_generate"),
        "{}",
        status.stdout
    );
    let denied = run(
        &env,
        &[
            "call",
            "backlog_tool",
            "create",
            "--agent",
            "viewer",
            "-o",
            "table",
        ],
    );
    assert_eq!(denied.code, 1);
    assert!(
        denied.stdout.starts_with("error (forbidden): "),
        "{}",
        denied.stdout
    );
}

/// A reader that closes the pipe early (`| head -c1`) ends the command quietly: exit 0, no
/// panic. The read end is closed before the child writes, so every write hits EPIPE.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let env = Env::new();
    with_registry(&env);
    create(&env, "one", json!({}));
    let cases: &[&[&str]] = &[
        &["call", "backlog_tool", "list"],
        &["call", "backlog_tool", "list", "-o", "table"],
        &["call", "backlog_tool", "create", "--agent", "viewer"], // the error object
        &["plugins", "list"],
        &["scheduler", "status"],
        &["explain", "viewer", "backlog_tool", "create"],
        &["completions", "bash"],
        &["man"],
        &["cron", "render"],
        &["batch"],
    ];
    for args in cases {
        let mut child = env
            .cmd()
            .args(*args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"{\"tool\":\"backlog_tool\",\"action\":\"list\"}\n");
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let expected = if args.contains(&"viewer") && args[0] == "call" {
            1
        } else {
            0
        };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_cli_logs_warnings_only_unless_asked() {
    let env = Env::new();
    let quiet = run(&env, &["call", "backlog_tool", "list"]);
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert_eq!(quiet.stderr, "", "no log lines at the default level");
    let loud = run(&env, &["-v", "call", "backlog_tool", "list"]);
    assert!(
        loud.stderr
            .contains("backlog_store: using JsonlBacklogStore"),
        "{loud:?}"
    );
    assert!(
        loud.stderr.contains("tool call") && !loud.stderr.contains("DEBUG"),
        "{loud:?}"
    );
    let debug = run(&env, &["-vv", "call", "backlog_tool", "list"]);
    assert!(debug.stderr.contains("DEBUG"), "{debug:?}");
    let env = env.var("RUST_LOG", "info");
    let by_var = run(&env, &["call", "backlog_tool", "list"]);
    assert!(by_var.stderr.contains("tool call"), "{by_var:?}");
}

/// The matrix line of `key:` under `parent:` in the shipped matrix, found independently.
fn matrix_line(after: &str, key: &str) -> usize {
    let text = std::fs::read_to_string(repo().join("config/rbac_tools_matrix.yml")).unwrap();
    let start = text
        .lines()
        .position(|l| l.trim_start().starts_with(after))
        .unwrap();
    start
        + 1
        + text
            .lines()
            .skip(start)
            .position(|l| l.trim_start().starts_with(key))
            .unwrap()
}

#[test]
fn explain_tells_what_an_agent_may_call_and_why_not() {
    let env = Env::new();
    let x = run(&env, &["explain", "viewer", "backlog_tool", "create"]);
    assert_eq!(x.code, 0, "{x:?}");
    let x = x.json();
    assert_eq!(x["agent"], "viewer");
    assert!(
        x["may_call"]
            .as_array()
            .unwrap()
            .contains(&json!("backlog_tool.list"))
    );
    assert!(
        !x["may_call"]
            .as_array()
            .unwrap()
            .contains(&json!("backlog_tool.create"))
    );
    let call = &x["call"];
    assert_eq!(
        (call["allowed"].clone(), call["code"].clone()),
        (json!(false), json!("forbidden"))
    );
    let create_line = matrix_line("backlog_tool:", "create:");
    assert_eq!(call["action_line"], create_line);
    assert_eq!(
        call["required"],
        json!([{"name": "tools.backlog.write", "held": false, "line": create_line}])
    );
    let viewer_line = matrix_line("viewer:", "entitlements:");
    assert_eq!(
        x["holds"],
        json!([{"name": "tools.backlog.read", "line": viewer_line}])
    );
    // Grants follow the action, whoever asks.
    assert_eq!(
        call["grants"],
        json!({"backlog_dir": "read_write", "reports_dir": "none", "postgres": "read_write"})
    );

    let ok = run(
        &env,
        &[
            "explain",
            "operator",
            "backlog_tool",
            "auto_generate_weekly",
            "-o",
            "table",
        ],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout
            .contains("backlog_tool.auto_generate_weekly: ALLOWED"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("reports_dir=read"), "{}", ok.stdout);
    let denied = run(
        &env,
        &[
            "explain",
            "viewer",
            "backlog_tool",
            "cleanup",
            "-o",
            "table",
        ],
    );
    assert!(
        denied.stdout.contains("DENIED (forbidden)"),
        "{}",
        denied.stdout
    );
    let at = format!(
        "{}:{}",
        env.config.join("rbac_tools_matrix.yml").display(),
        matrix_line("backlog_tool:", "cleanup:")
    );
    assert!(
        denied
            .stdout
            .lines()
            .any(|l| l.contains("tools.backlog.admin")
                && l.contains("MISSING")
                && l.ends_with(&at)),
        "{at}: {}",
        denied.stdout
    );
    let not_installed = run(
        &env,
        &[
            "explain",
            "scheduler",
            "architecture_pressure_tool",
            "digest",
        ],
    )
    .json();
    assert_eq!(not_installed["call"]["code"], "not_found");
    assert_eq!(not_installed["call"]["grants"], Value::Null);
    let ghost = run(&env, &["explain", "ghost"]);
    assert_eq!(ghost.code, 2, "{ghost:?}");
    assert!(
        ghost.stderr.contains("operator, scheduler, viewer"),
        "{ghost:?}"
    );
}

fn http_get(base: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("{base}{path}"));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[test]
fn explain_over_http_is_for_the_calling_agent() {
    let env = keyed_env();
    let server = Server::start(&env, &[]);
    let (status, body) = http_get(
        &server.base,
        "/v1/explain?tool=backlog_tool&action=cleanup",
        Some(VIEWER_KEY),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["agent"].clone(), body["call"]["allowed"].clone()),
        (json!("viewer"), json!(false))
    );
    assert_eq!(body["call"]["required"][0]["name"], "tools.backlog.admin");
    let (status, body) = http_get(&server.base, "/v1/explain", Some(OPERATOR_KEY));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent"], "operator");
    assert!(body.get("call").is_none());
    assert!(
        body["may_call"]
            .as_array()
            .unwrap()
            .contains(&json!("backlog_tool.cleanup"))
    );
    let (status, body) = http_get(&server.base, "/v1/explain", None);
    assert_eq!(
        (status, body["code"].clone()),
        (401, json!("unauthenticated"))
    );
    // One of the two; an unknown key; a key given twice (refused, as on every other route,
    // not "the last one wins").
    let mut body = Value::Null;
    for path in [
        "/v1/explain?tool=backlog_tool",
        "/v1/explain?agent=operator",
        "/v1/explain?tool=backlog_tool&action=get&tool=scheduler",
    ] {
        let (status, answer) = http_get(&server.base, path, Some(VIEWER_KEY));
        assert_eq!(
            (status, answer["code"].clone()),
            (400, json!("invalid_input")),
            "{path}: {answer}"
        );
        body = answer;
    }
    assert!(
        body["error"].as_str().unwrap_or("").contains("given twice"),
        "{body}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let env = Env::new();
    let bash = run(&env, &["completions", "bash"]);
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(bash.stdout.contains("backlog-bridge") && bash.stdout.contains("explain"));
    let file = env.tmp.path().join("backlog-bridge.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = run(&env, &["completions", shell]);
        assert!(
            out.code == 0 && out.stdout.contains("migrate"),
            "{shell}: {out:?}"
        );
    }
    let man = run(&env, &["man"]);
    assert_eq!(man.code, 0, "{man:?}");
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH backlog-bridge"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    for sub in [
        "call",
        "serve",
        "migrate",
        "explain",
        "completions",
        "scheduler",
    ] {
        assert!(man.stdout.contains(sub), "man page lacks {sub}");
    }
    assert!(
        man.stdout.contains("BACKLOG_BRIDGE_CONFIG_DIR"),
        "the man page names the variables"
    );
}

#[test]
fn migrate_dry_run_is_a_script_for_psql_and_reruns_print_no_notices() {
    let db = crate::pg::database();
    let env = Env::new();
    let dry = env.migrate(&["--dry-run", "--dsn", &db.dsn]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.starts_with("BEGIN;") && dry.stdout.trim_end().ends_with("COMMIT;"),
        "{}",
        dry.stdout
    );
    let summary: Value = serde_json::from_str(dry.stderr.trim()).expect("the summary is on stderr");
    assert_eq!(summary["dry_run"], true);
    let mut psql = Command::new(crate::pg::bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-", &db.dsn])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    psql.stdin
        .take()
        .unwrap()
        .write_all(dry.stdout.as_bytes())
        .unwrap();
    let out = psql.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no NOTICEs from the script"
    );
    assert_eq!(
        db.scalar("SELECT max(version)::text FROM backlog_schema_version"),
        "4"
    );
    // migrate itself over the schema psql made: nothing to do, and no NOTICE lines even at -v.
    let env = env.var("RUST_LOG", "info");
    let again = env.migrate(&["--dsn", &db.dsn]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        !again.stderr.contains("NOTICE") && !again.stderr.contains("already exists"),
        "{again:?}"
    );
    let s: Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(s["applied"], false);
}

#[test]
fn generation_from_a_stale_digest_warns_in_the_result_and_the_log() {
    let env = Env::new().var("BACKLOG_BRIDGE_NOW", "2026-12-08T10:00:00Z");
    let digest =
        std::fs::read_to_string(repo().join("examples/reports/platform/2026-48.json")).unwrap();
    let path = env.ops.join("reports/platform/2026-48.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, digest).unwrap();
    let run = env.call(
        "scheduler",
        "backlog_tool",
        "auto_generate_weekly",
        &json!({}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let want = "warning: stale digest: generated from week 2026-48 (ops/reports/platform/2026-48.json), expected week 2026-50";
    assert_eq!(run.json()["warnings"], json!([want]));
    assert!(
        run.stderr.contains(want) && run.stderr.contains("WARN"),
        "{run:?}"
    );
}

#[test]
fn config_and_ops_dirs_come_from_flags_then_variables() {
    let env = Env::new();
    let cwd = env.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let bare = |vars: &[(&str, &Path)], args: &[&str]| -> Run {
        let mut cmd = Command::new(BIN);
        env.environment(&mut cmd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.current_dir(&cwd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    let list = ["call", "backlog_tool", "list"];
    let by_var = bare(
        &[
            ("BACKLOG_BRIDGE_CONFIG_DIR", &env.config),
            ("BACKLOG_BRIDGE_OPS_DIR", &env.ops),
        ],
        &list,
    );
    assert_eq!(by_var.code, 0, "{by_var:?}");
    assert!(
        env.ops.join("backlog").is_dir(),
        "the store is under BACKLOG_BRIDGE_OPS_DIR"
    );
    let bogus = cwd.join("nope");
    let flag_wins = bare(
        &[("BACKLOG_BRIDGE_CONFIG_DIR", &bogus)],
        &[
            "--config-dir",
            env.config.to_str().unwrap(),
            "call",
            "backlog_tool",
            "list",
        ],
    );
    assert_eq!(flag_wins.code, 0, "{flag_wins:?}");
    let missing = bare(&[], &list);
    assert_eq!(missing.code, 2, "{missing:?}");
    for needle in [
        "--config-dir",
        "BACKLOG_BRIDGE_CONFIG_DIR",
        "BACKLOG_BRIDGE_OPS_DIR",
        "rbac_tools_matrix.yml",
    ] {
        assert!(
            missing.stderr.contains(needle),
            "{needle}: {}",
            missing.stderr
        );
    }
}

/// Every `backlog_bridge_*` name in `text` (histogram series names folded to the metric).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("backlog_bridge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_alert_rules_name_only_metrics_the_router_serves() {
    let env = keyed_env();
    let server = Server::start(&env, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let metrics = agent
        .get(format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let served: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        served.contains("backlog_bridge_scheduler_runs_total"),
        "{metrics}"
    );
    // The scrape (and the list calls behind its overdue gauges) logs nothing at info: a
    // request after it is logged, the scrape's lines are not.
    let (status, _) = http_get(&server.base, "/v1/tools", Some(VIEWER_KEY));
    assert_eq!(status, 200);
    let mut log = server.log();
    for _ in 0..500 {
        if log.contains("/v1/tools") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // retry interval of a bounded poll
        log = server.log();
    }
    assert!(log.contains("/v1/tools"), "{log}");
    assert!(
        !log.contains("/metrics") && !log.contains("tool call"),
        "{log}"
    );

    let dashboard =
        std::fs::read_to_string(repo().join("ops/grafana/backlog-bridge.json")).unwrap();
    let doc: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<&str> = doc["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = std::fs::read_to_string(repo().join("ops/prometheus/alerts.yml")).unwrap();
    let named: BTreeSet<String> = metric_names(&exprs.join("\n"))
        .into_iter()
        .chain(metric_names(&rules))
        .collect();
    for wanted in [
        "backlog_bridge_calls_total",
        "backlog_bridge_call_duration_seconds",
        "backlog_bridge_overdue_items",
        "backlog_bridge_overdue_p0_items",
        "backlog_bridge_degraded",
        "backlog_bridge_backend_active",
        "backlog_bridge_scheduler_runs_total",
    ] {
        assert!(named.contains(wanted), "the ops files do not show {wanted}");
    }
    let unknown: Vec<&String> = named.iter().filter(|n| !served.contains(*n)).collect();
    assert!(unknown.is_empty(), "not on /metrics: {unknown:?}");

    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo().join("ops/prometheus/alerts.yml"))
        .output()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The runbook's thresholds.
    assert!(rules.contains("backlog_bridge_overdue_items{env=\"prod\"} > 5"));
    assert!(rules.contains("backlog_bridge_overdue_p0_items{env=\"prod\"} > 0"));
}

/// The units pass `systemd-analyze verify` (with the real binary in ExecStart, the man page
/// check off: the page is installed by hand), keep their hardening, and the logrotate file
/// covers every log the cron lines write.
#[test]
fn deploy_units_verify_and_logrotate_covers_the_cron_logs() {
    let deploy = repo().join("ops/deploy");
    let dir = tempfile::tempdir().unwrap();
    for unit in ["backlog-bridge.service", "backlog-bridge-scheduler.service"] {
        let text = std::fs::read_to_string(deploy.join(unit)).unwrap();
        for option in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/backlog-bridge",
            "EnvironmentFile=/etc/daarion/governance.env",
        ] {
            assert!(text.contains(option), "{unit} lacks {option}");
        }
        // SIGHUP reloads the config (`reload::`): `systemctl reload` sends it.
        assert!(
            text.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"),
            "{unit} lacks ExecReload"
        );
        std::fs::write(
            dir.path().join(unit),
            text.replace("/usr/local/bin/backlog-bridge", BIN),
        )
        .unwrap();
    }
    let units = std::fs::read_to_string(deploy.join("backlog-bridge.service")).unwrap();
    assert!(units.contains("serve ") && units.contains("--scheduler"));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("backlog-bridge.service"))
        .arg(dir.path().join("backlog-bridge-scheduler.service"))
        .output()
        .expect("systemd-analyze (Debian package systemd; .ci/run installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let logrotate = std::fs::read_to_string(deploy.join("backlog-bridge.logrotate")).unwrap();
    assert!(
        logrotate.contains("/var/log/daarion/*.log {"),
        "{logrotate}"
    );
    let cron = std::fs::read_to_string(repo().join("ops/cron/jobs.cron")).unwrap();
    let logs: Vec<&str> = cron
        .lines()
        .filter_map(|l| l.split(">> ").nth(1))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!logs.is_empty());
    for log in logs {
        assert!(
            log.starts_with("/var/log/daarion/") && log.ends_with(".log"),
            "{log}"
        );
    }
    let example = std::fs::read_to_string(deploy.join("governance.env.example")).unwrap();
    for var in [
        "OPERATOR_API_KEY=",
        "VIEWER_API_KEY=",
        "SCHEDULER_API_KEY=",
        "BACKLOG_POSTGRES_DSN=",
    ] {
        assert!(example.contains(var), "the env template lacks {var}");
    }
    let ignore = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".env"), ".env must be ignored");
}
