//! Change control (`docs/change-control.md`): pinned components, key files, `config check`.

use std::path::Path;

use serde_json::Value;

use crate::util::{BACKLOG_TOOL_WASM, Env, HOSTILE_WASM, Run};

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(env: &Env, args: &[&str]) -> Run {
    env.cmd().args(args).output().expect("run binary").into()
}

/// Registers `file` (under the config dir) as tool `extra`, with `pin` when given.
fn register_extra(env: &Env, header: &str, pin: Option<&str>) {
    let path = env.config.join("plugins.yml");
    let shipped = std::fs::read_to_string(crate::util::repo_config().join("plugins.yml")).unwrap();
    let pin = pin.map(|p| format!(", sha256: {p}")).unwrap_or_default();
    std::fs::write(
        path,
        format!("{header}{shipped}  extra: {{ component: extra.wasm{pin} }}\n"),
    )
    .unwrap();
}

fn digest_of(list: &Value, tool: &str) -> String {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tool)
        .unwrap_or_else(|| panic!("no tool {tool} in {list}"))["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest for {tool} in {list}"))
        .to_owned()
}

#[test]
fn a_pinned_component_loads_and_plugins_list_shows_every_digest() {
    let env = Env::new();
    let bytes = std::fs::read(BACKLOG_TOOL_WASM).unwrap();
    std::fs::write(env.config.join("extra.wasm"), &bytes).unwrap();
    register_extra(&env, "", Some(&sha256_hex(&bytes)));
    let list = run(&env, &["plugins", "list", "-o", "json"]);
    assert_eq!(list.code, 0, "{list:?}");
    let list = list.json();
    assert_eq!(
        digest_of(&list, "extra"),
        format!("sha256:{}", sha256_hex(&bytes))
    );
    // The builtin one has its digest too (the same bytes, built in).
    assert_eq!(
        digest_of(&list, "backlog_tool"),
        digest_of(&list, "extra"),
        "{list}"
    );
    let table = run(&env, &["plugins", "list", "-o", "table"]);
    assert!(table.stdout.contains("extra: sha256:"), "{table:?}");
}

#[test]
fn a_digest_mismatch_at_start_exits_2_naming_file_and_both_digests() {
    let env = Env::new();
    let bytes = std::fs::read(HOSTILE_WASM).unwrap();
    std::fs::write(env.config.join("extra.wasm"), &bytes).unwrap();
    let expected = "ab".repeat(32);
    register_extra(&env, "", Some(&expected));
    for args in [
        &["plugins", "list"][..],
        &["call", "backlog_tool", "list"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let r = run(&env, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("extra.wasm"), "{r:?}");
        assert!(r.stderr.contains(&expected), "{r:?}");
        assert!(r.stderr.contains(&sha256_hex(&bytes)), "{r:?}");
    }
}

#[test]
fn require_pinned_refuses_an_unpinned_file_component() {
    let env = Env::new();
    std::fs::copy(HOSTILE_WASM, env.config.join("extra.wasm")).unwrap();
    register_extra(&env, "require_pinned: true\n", None);
    let r = run(&env, &["plugins", "list"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("plugins.extra.sha256") && r.stderr.contains("require_pinned"),
        "{r:?}"
    );
    // Builtin components need no pin.
    let env = Env::new();
    let shipped = std::fs::read_to_string(env.config.join("plugins.yml")).unwrap();
    std::fs::write(
        env.config.join("plugins.yml"),
        format!("require_pinned: true\n{shipped}"),
    )
    .unwrap();
    assert_eq!(run(&env, &["plugins", "list"]).code, 0);
}

/// The compiled-component cache is keyed by the bytes' SHA-256: a file swapped at the same
/// path (same name, any mtime) is compiled anew, never served from the old entry.
#[test]
fn a_swapped_component_file_never_runs_under_the_old_compilation() {
    let mut env = Env::new();
    env.cache = env.tmp.path().join("cache");
    let extra = env.config.join("extra.wasm");
    register_extra(&env, "", None);
    std::fs::copy(BACKLOG_TOOL_WASM, &extra).unwrap();
    let first = run(&env, &["plugins", "list", "-o", "json"]).json();
    let actions = |list: &Value| -> Vec<String> {
        list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "extra")
            .unwrap()["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(actions(&first).contains(&"upsert".to_owned()), "{first}");
    let mtime = std::fs::metadata(&extra).unwrap().modified().unwrap();
    std::fs::copy(HOSTILE_WASM, &extra).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&extra)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let second = run(&env, &["plugins", "list", "-o", "json"]).json();
    assert!(
        actions(&second).contains(&"write_backlog".to_owned()),
        "{second}"
    );
    assert_ne!(digest_of(&first, "extra"), digest_of(&second, "extra"));
    assert!(Path::new(&env.cache).read_dir().unwrap().count() >= 2);
}

// ---- key files ----

const OLD_KEY: &str = "viewer-old-key-0123456789";
const NEW_KEY: &str = "viewer-new-key-0123456789";

/// The viewer's keys come from `keys/viewer.keys` (mode `mode`) holding `lines`.
fn with_key_file(env: &Env, lines: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = env.config.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("viewer.keys");
    std::fs::write(&file, lines).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let matrix = env.config.join("rbac_tools_matrix.yml");
    let text = std::fs::read_to_string(&matrix).unwrap();
    if text.contains("api_key_file") {
        return;
    }
    let text = text.replace(
        "    api_key_env: VIEWER_API_KEY\n",
        "    api_key_env: VIEWER_API_KEY\n    api_key_file: keys/viewer.keys\n",
    );
    std::fs::write(matrix, text).unwrap();
}

#[test]
fn key_file_keys_and_digests_and_the_variable_are_all_valid() {
    let env = crate::http::env();
    // The old key in clear, the new one only as its digest; the variable's key still works.
    with_key_file(
        &env,
        &format!(
            "# rotating\n{OLD_KEY}\nsha256:{}\n",
            sha256_hex(NEW_KEY.as_bytes())
        ),
        0o600,
    );
    let server = crate::http::Server::start(&env, &[]);
    for key in [OLD_KEY, NEW_KEY, crate::http::VIEWER_KEY] {
        let r = server.execute(key, "list", &serde_json::json!({}));
        assert_eq!(r.status, 200, "{key}: {r:?}");
    }
    let r = server.execute(
        "viewer-other-key-0123456789",
        "list",
        &serde_json::json!({}),
    );
    r.error(401, "unauthenticated");
    let log = server.log();
    assert!(!log.contains(OLD_KEY) && !log.contains(NEW_KEY), "{log}");
    drop(server);

    // Rotation done: the old line is removed, and only the new key (and the variable) work.
    with_key_file(
        &env,
        &format!("sha256:{}\n", sha256_hex(NEW_KEY.as_bytes())),
        0o400,
    );
    let server = crate::http::Server::start(&env, &[]);
    server
        .execute(OLD_KEY, "list", &serde_json::json!({}))
        .error(401, "unauthenticated");
    assert_eq!(
        server
            .execute(NEW_KEY, "list", &serde_json::json!({}))
            .status,
        200
    );
}

#[test]
fn a_key_file_open_to_group_or_others_is_refused_like_ssh() {
    let env = crate::http::env();
    with_key_file(&env, &format!("{OLD_KEY}\n"), 0o644);
    let r = run(&env, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("viewer.keys") && r.stderr.contains("chmod 600"),
        "{r:?}"
    );
    assert!(!r.stderr.contains(OLD_KEY), "{r:?}");
    // The same key under two agents is refused, naming both sources.
    let env = crate::http::env();
    with_key_file(&env, &format!("{}\n", crate::http::OPERATOR_KEY), 0o600);
    let r = run(&env, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("viewer.keys:1") && r.stderr.contains("$OPERATOR_API_KEY"),
        "{r:?}"
    );
}

// ---- config check ----

fn with_registry(env: &Env) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/task_registry.yml");
    std::fs::copy(shipped, env.ops.join("task_registry.yml")).unwrap();
}

#[test]
fn config_check_passes_a_good_config_and_starts_nothing() {
    let env = Env::new();
    with_registry(&env);
    let r = run(&env, &["config", "check", "-o", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let summary = r.json();
    assert_eq!(summary["jobs"], 6, "{summary}");
    assert!(
        summary["plugins"]["backlog_tool"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{summary}"
    );
    assert!(!env.backlog_dir().exists(), "no store was opened");
    let r = run(&env, &["config", "check", "-o", "table"]);
    assert!(r.stdout.starts_with("config ok: "), "{r:?}");
}

#[test]
fn config_check_reports_every_error_with_the_start_s_own_words() {
    let env = Env::new();
    with_registry(&env);
    // A bad policy value, a bad pin, and a registry job for an agent the matrix lacks.
    std::fs::write(
        env.config.join("backlog_policy.yml"),
        "defaults: { retention_days: -1 }\n",
    )
    .unwrap();
    std::fs::copy(HOSTILE_WASM, env.config.join("extra.wasm")).unwrap();
    register_extra(&env, "", Some(&"cd".repeat(32)));
    let check = run(&env, &["config", "check"]);
    assert_eq!(check.code, 2, "{check:?}");
    assert!(
        check.stderr.contains("defaults.retention_days"),
        "{check:?}"
    );
    assert!(check.stderr.contains(&"cd".repeat(32)), "{check:?}");
    // A start fails with the same lines.
    let start = run(&env, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(start.code, 2, "{start:?}");
    let errors = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(errors(&check.stderr), errors(&start.stderr));

    // Config good again, but the registry names an unknown agent: only check (and the
    // scheduler) read the registry.
    let env = Env::new();
    with_registry(&env);
    let reg = env.ops.join("task_registry.yml");
    let text = std::fs::read_to_string(&reg).unwrap();
    std::fs::write(
        &reg,
        text.replacen(
            "params: { env: prod }",
            "params: { env: prod }\n    agent: ghost",
            1,
        ),
    )
    .unwrap();
    let check = run(&env, &["config", "check"]);
    assert_eq!(check.code, 2, "{check:?}");
    assert!(
        check.stderr.contains("task_registry.yml") && check.stderr.contains("ghost"),
        "{check:?}"
    );
    let sched = run(
        &env,
        &[
            "scheduler",
            "--from",
            "2026-11-27T10:00:00Z",
            "--until",
            "2026-11-27T10:00:00Z",
        ],
    );
    assert_eq!(sched.code, 2, "{sched:?}");
    assert!(sched.stderr.contains("ghost"), "{sched:?}");
}

// ---- audit trail ----

/// Every line of the audit trail under `dir`, parsed.
pub(crate) fn audit_lines(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn audit_text(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

pub(crate) fn mcp_stdio_call(env: &Env, agent: &str, name: &str, arguments: Value) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut child = env
        .cmd()
        .args(["mcp", "--agent", agent])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mcp");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").expect("write");
    send(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}),
    );
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}}),
    );
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"id\":2"), "{line}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn every_face_leaves_one_audit_line_with_the_fields_and_no_secret() {
    let env = crate::http::env();
    let audit = env.ops.join("audit");
    let secret_title = "title-that-must-not-be-audited";
    // CLI call (a write) and a CLI denial.
    let created = env.ok(
        "create",
        serde_json::json!({"service": "gateway", "env": "prod", "category": "refactor",
            "title": secret_title}),
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let denied = env.call("viewer", "backlog_tool", "cleanup", &serde_json::json!({}));
    assert_eq!(denied.code, 1, "{denied:?}");
    // CLI batch.
    env.batch(&[
        serde_json::json!({"tool": "backlog_tool", "action": "get", "params": {"id": id}}),
    ]);
    // MCP stdio.
    mcp_stdio_call(
        &env,
        "viewer",
        "backlog_tool_list",
        serde_json::json!({"limit": 1}),
    );
    // The scheduler's in-process invoker (as `run-job --local` and the scheduler loop use it).
    let job = run(
        &env,
        &[
            "run-job",
            "--local",
            "--tool",
            "backlog_tool",
            "--action",
            "cleanup",
            "--params-json",
            r#"{"dry_run": true}"#,
        ],
    );
    assert_eq!(job.code, 0, "{job:?}");
    // HTTP: allowed, denied, and a flood of wrong keys.
    let server = crate::http::Server::start(&env, &[]);
    assert_eq!(
        server
            .execute(crate::http::VIEWER_KEY, "list", &serde_json::json!({}))
            .status,
        200
    );
    server
        .execute(crate::http::VIEWER_KEY, "cleanup", &serde_json::json!({}))
        .error(403, "forbidden");
    let before_flood = audit_lines(&audit).len();
    for _ in 0..20 {
        assert_eq!(
            server
                .execute("wrong-key-0123456789abc", "list", &serde_json::json!({}))
                .status
                / 100,
            4
        );
    }
    let after_flood = audit_lines(&audit).len();
    assert_eq!(
        before_flood, after_flood,
        "unauthenticated requests are not audited"
    );
    let mut server = server;
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    assert!(server.wait_exit().success(), "{}", server.log());
    let served_log = server.log();

    let lines = audit_lines(&audit);
    let calls: Vec<&Value> = lines.iter().filter(|l| l["event"] == "call").collect();
    let faces: std::collections::BTreeSet<&str> =
        calls.iter().map(|l| l["face"].as_str().unwrap()).collect();
    assert_eq!(
        faces,
        ["cli", "http", "mcp", "scheduler"].into_iter().collect(),
        "{lines:#?}"
    );
    for l in &calls {
        for key in [
            "ts",
            "seq",
            "host",
            "request_id",
            "face",
            "actor",
            "tool",
            "action",
            "decision",
            "reason",
            "grants",
            "outcome",
            "duration_ms",
            "item_ids",
            "prev",
        ] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let write = calls
        .iter()
        .find(|l| l["action"] == "create" && l["face"] == "cli")
        .unwrap();
    assert_eq!(write["decision"], "allow");
    assert_eq!(write["item_ids"], serde_json::json!([id]));
    assert_eq!(write["grants"]["backlog_dir"], "read_write");
    let deny = calls
        .iter()
        .find(|l| l["action"] == "cleanup" && l["face"] == "http")
        .unwrap();
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["outcome"], "forbidden");
    assert!(
        deny["reason"]
            .as_str()
            .unwrap()
            .contains("tools.backlog.admin"),
        "{deny}"
    );
    assert!(
        calls
            .iter()
            .any(|l| l["action"] == "cleanup" && l["face"] == "cli" && l["decision"] == "deny")
    );
    for event in ["start", "plugin_load", "stop"] {
        assert!(
            lines.iter().any(|l| l["event"] == event),
            "no {event} line: {served_log}"
        );
    }
    let text = audit_text(&audit);
    for secret in [
        crate::http::VIEWER_KEY,
        crate::http::OPERATOR_KEY,
        secret_title,
    ] {
        assert!(!text.contains(secret), "{secret} in the audit trail");
    }
    // One chain over all the processes.
    let verify = run(&env, &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    let shown = run(&env, &["audit", "show", "--decision", "deny", "-o", "json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown: Vec<Value> = shown
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|l| l["decision"] == "deny"));
}

#[test]
fn audit_verify_names_the_file_and_line_of_an_edit_a_removal_and_a_reorder() {
    let env = Env::new();
    let dir = env.tmp.path().join("elsewhere");
    let env = env.var("BACKLOG_BRIDGE_AUDIT_DIR", dir.to_str().unwrap());
    for _ in 0..4 {
        env.ok("list", serde_json::json!({}));
    }
    assert_eq!(run(&env, &["audit", "verify"]).code, 0);
    assert!(
        !env.ops.join("audit").exists(),
        "the variable moves the trail"
    );
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let good = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("\"operator\"", "\"viewer\"");
    let mut removed = lines.clone();
    removed.remove(2);
    let mut reordered = lines.clone();
    reordered.swap(0, 1);
    for (bad, line) in [(edited, 3), (removed, 3), (reordered, 1)] {
        std::fs::write(&file, bad.join("\n") + "\n").unwrap();
        let r = run(&env, &["audit", "verify"]);
        assert_eq!(r.code, 1, "{r:?}");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(r.stderr.contains(&format!("{name}:{line}:")), "{r:?}");
    }
    std::fs::write(&file, good).unwrap();
    assert_eq!(run(&env, &["audit", "verify"]).code, 0);
}
