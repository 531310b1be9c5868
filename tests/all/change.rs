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
