//! Item limits and the store directory's edges through the real binary: over-limit writes
//! refused, over-limit items from older versions readable, list pages bounded, reserved
//! generated keys, `batch --agent` as a ceiling, symlinks, stale cleanup temp files, and host
//! filesystem errors (EACCES as an unprivileged user, ENOSPC on a small tmpfs).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{BIN, Env, Run, append};

/// `n` nested objects around `1`.
fn nested(n: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..n {
        v = json!({ "a": v });
    }
    v
}

/// A stored item line (as an older version wrote it) with `meta` nested `levels` deep inside
/// its `meta` object, and `evidence` ids.
fn legacy_line(n: u32, env: &str, due: &str, levels: usize, evidence: usize) -> String {
    let id = format!("bl_{n:012x}");
    let ids: Vec<String> = (0..evidence).map(|i| format!("al_{i:09}")).collect();
    let item = json!({
        "id": id, "created_at": "2026-11-01T00:00:00.000000Z",
        "updated_at": "2026-11-01T00:00:00.000000Z", "env": env, "service": "gw",
        "category": "refactor", "title": format!("legacy {n}"), "description": "",
        "priority": "P0", "status": "open", "owner": "o", "due_date": due, "source": "manual",
        "dedupe_key": format!("manual:{id}"), "evidence_refs": {"alerts": ids}, "tags": [],
        "meta": {"deep": "MARK"}
    });
    let deep = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    format!("{}\n", item.to_string().replace("\"MARK\"", &deep))
}

fn base(extra: Value) -> Value {
    let mut p = json!({"env": "prod", "service": "gw", "category": "refactor", "title": "t"});
    if let (Some(m), Value::Object(e)) = (p.as_object_mut(), extra) {
        m.extend(e);
    }
    p
}

#[test]
fn deep_meta_is_refused_and_an_older_deep_item_does_not_break_reads() {
    let env = Env::new();
    // The attack of the review: 125 levels. Refused, naming the field and the limit.
    let e = env.err(
        "create",
        base(json!({"meta": {"x": nested(124)}})),
        "invalid_input",
    );
    let msg = e["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("`meta` must be nested at most 16 levels deep") && msg.contains("got 125"),
        "{e}"
    );
    env.err(
        "upsert",
        base(json!({"dedupe_key": "k", "meta": nested(17)})),
        "invalid_input",
    );
    env.ok("create", base(json!({"meta": nested(15)})));
    env.ok(
        "create",
        base(json!({"priority": "P0", "due_date": "2026-11-01"})),
    );

    // What an older version let in, written straight into items.jsonl: 125 levels (which
    // parsed, then broke the host's parse of every listing) and 400 (past any parser).
    let items = env.backlog_dir().join("items.jsonl");
    append(&items, &legacy_line(0xd1, "prod", "2026-11-02", 125, 1));
    append(&items, &legacy_line(0xd2, "prod", "2026-11-03", 400, 1));
    let page = env.ok("list", json!({}));
    assert_eq!(page["total"], 4, "{page}");
    for n in [0xd1u32, 0xd2] {
        let id = format!("bl_{n:012x}");
        let item = env.ok("get", json!({ "id": id }));
        let why = item["meta"]["_truncated"].as_str().unwrap_or_default();
        assert!(why.contains("dropped on read"), "{item}");
    }
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert!(
        run.stderr
            .contains("over the item limits, returned truncated")
            && run.stderr.contains("bl_0000000000d2"),
        "a warning names the item: {run:?}"
    );
    let dash = env.ok("dashboard", json!({"env": "prod"}));
    assert_eq!(dash["overdue_count"], 3, "{dash}");

    // An event line nested past any parser does not break the item's history either.
    let deep = format!("{}1{}", "[".repeat(400), "]".repeat(400));
    append(
        &env.backlog_dir().join("events.jsonl"),
        &format!(
            "{{\"id\":\"ev_0000000000e1\",\"item_id\":\"bl_0000000000d2\",\
             \"ts\":\"2026-11-03T00:00:00.000000Z\",\"type\":\"commented\",\"actor\":\"old\",\
             \"message\":\"m\",\"meta\":{{\"d\":{deep}}}}}\n"
        ),
    );
    let events = env.ok("events", json!({"id": "bl_0000000000d2"}));
    let last = events["events"].as_array().and_then(|e| e.last()).cloned();
    assert_eq!(
        last.as_ref().map(|e| e["id"].clone()),
        Some(json!("ev_0000000000e1")),
        "{events}"
    );
    assert!(last.unwrap()["meta"]["_truncated"].is_string(), "{events}");
    let item = env.ok(
        "get",
        json!({"id": "bl_0000000000d2", "include_events": true}),
    );
    assert!(
        item["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{item}"
    );

    // The overdue gauges stay present and count the repaired items.
    let env = env
        .var("OPERATOR_API_KEY", "op-key-0123456789abcdef")
        .var("VIEWER_API_KEY", "view-key-0123456789abcdef")
        .var("SCHEDULER_API_KEY", "sched-key-0123456789abcdef");
    let server = crate::http::Server::start(&env, &[]);
    let text = ureq::get(format!("{}/metrics", server.base))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("body");
    for line in [
        r#"backlog_bridge_overdue_items{env="prod"} 3"#,
        r#"backlog_bridge_overdue_p0_items{env="prod"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
}

#[test]
fn megabyte_evidence_is_refused_and_older_big_items_page_within_memory() {
    let env = Env::new();
    let ids: Vec<String> = (0..65_000).map(|i| format!("al_{i:09}")).collect();
    let params = base(json!({"evidence_refs": {"alerts": ids}}));
    assert!(params.to_string().len() > 900_000);
    // Through batch: argv cannot carry a megabyte.
    let out = env.batch(&[json!({"tool": "backlog_tool", "action": "create", "params": params})]);
    let e = out[0].clone();
    assert_eq!(e["code"], "invalid_input", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`evidence_refs.alerts` must hold at most 1000 ids"),
        "{e}"
    );
    let small: Vec<String> = (0..1000).map(|i| format!("{i:0>70}")).collect();
    let e = env.err(
        "create",
        base(json!({"evidence_refs": {"alerts": small}})),
        "invalid_input",
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`evidence_refs` must be at most 65536 bytes"),
        "{e}"
    );

    // Twenty-five items of ~0.95 MB evidence each, as an older version stored them.
    std::fs::create_dir_all(env.backlog_dir()).unwrap();
    let items = env.backlog_dir().join("items.jsonl");
    let mut text = String::new();
    for n in 0..25u32 {
        text += &legacy_line(0x100 + n, "prod", "2026-12-30", 1, 72_000);
    }
    assert!(text.len() > 23_000_000);
    std::fs::write(&items, text).unwrap();
    let mut offset = 0;
    let mut seen = 0;
    loop {
        let page = env.ok("list", json!({ "offset": offset }));
        assert_eq!(page["total"], 25);
        let got = page["items"].as_array().unwrap();
        assert!(
            !got.is_empty() && got.len() < 25,
            "a byte budget cuts the page: {}",
            got.len()
        );
        for it in got {
            assert_eq!(
                it["evidence_refs"]["alerts"].as_array().unwrap().len(),
                1000
            );
        }
        seen += got.len();
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => break,
        }
    }
    assert_eq!(seen, 25);
}

#[test]
fn offset_past_the_limit_names_the_limit() {
    let env = Env::new();
    let e = env.err(
        "list",
        json!({"offset": 99_999_999_999u64}),
        "invalid_input",
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`offset` must be between 0 and 4294967295, got 99999999999"),
        "{e}"
    );
    assert_eq!(
        env.ok("list", json!({"offset": 4_294_967_295u64}))["items"],
        json!([])
    );
}

/// The shipped matrix plus agent `writer` (read and write, no admin).
fn with_writer(env: Env) -> Env {
    let path = env.config.join("rbac_tools_matrix.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "agents:\n",
        "agents:\n  writer:\n    entitlements: [tools.backlog.read, tools.backlog.write]\n",
    );
    std::fs::write(&path, text).unwrap();
    env
}

#[test]
fn generated_keys_are_reserved_for_admins_and_generation_is_not_squatted() {
    let env = with_writer(Env::new());
    let key = "platform_backlog:2026-48:prod:gateway:arch_review";
    let squat = json!({"env": "prod", "service": "gateway", "category": "arch_review",
                       "title": "squat", "dedupe_key": key, "priority": "P3", "owner": "nobody"});
    for action in ["create", "upsert"] {
        let run = env.call("writer", "backlog_tool", action, &squat);
        let out = run.json();
        assert_eq!(out["code"], "forbidden", "{action}: {run:?}");
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("tools.backlog.admin"),
            "{out}"
        );
    }
    // Moving one's own item onto the key is refused too.
    let mine = env.call("writer", "backlog_tool", "create", &base(json!({})));
    let id = mine.json()["id"].as_str().unwrap().to_owned();
    let run = env.call(
        "writer",
        "backlog_tool",
        "upsert",
        &json!({"id": id, "dedupe_key": key}),
    );
    assert_eq!(run.json()["code"], "forbidden", "{run:?}");

    // Generation is unaffected: the critical item comes out as the policy says.
    let path = env.ops.join("reports/platform/2026-48.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reports/platform/2026-48.json"),
        &path,
    )
    .unwrap();
    let run = env.call(
        "scheduler",
        "backlog_tool",
        "auto_generate_weekly",
        &json!({}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let list = env.ok(
        "list",
        json!({"service": "gateway", "category": "arch_review"}),
    );
    let item = &list["items"][0];
    assert_eq!(item["dedupe_key"], key);
    assert_eq!(
        (&item["status"], &item["priority"], &item["owner"]),
        (&json!("open"), &json!("P0"), &json!("cto")),
        "{item}"
    );
    // An agent holding the admin entitlement (the shipped operator does) may use the
    // namespace; a writer may still update the generated item (humans own its triage).
    let next = json!({"env": "prod", "service": "api", "category": "refactor",
                      "title": "by hand", "dedupe_key": "platform_backlog:2026-49:prod:api:refactor"});
    env.ok("create", next);
    let run = env.call(
        "writer",
        "backlog_tool",
        "upsert",
        &json!({"dedupe_key": key, "owner": "alice"}),
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn batch_agent_is_a_ceiling_not_a_default() {
    let env = Env::new();
    let run = |args: &[&str], lines: &[Value]| -> Vec<Value> {
        let mut child = env
            .cmd()
            .arg("batch")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn batch");
        {
            let mut stdin = child.stdin.take().unwrap();
            for l in lines {
                writeln!(stdin, "{l}").unwrap();
            }
        }
        let out: Run = child.wait_with_output().unwrap().into();
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let create = |agent: Option<&str>| {
        let mut l = json!({"tool": "backlog_tool", "action": "create", "params": base(json!({}))});
        if let Some(a) = agent {
            l["agent"] = json!(a);
        }
        l
    };
    let list = json!({"tool": "backlog_tool", "action": "list", "params": {}});
    let out = run(
        &["--agent", "viewer"],
        &[
            create(Some("operator")),
            list.clone(),
            create(None),
            create(Some("viewer")),
        ],
    );
    assert_eq!(out[0]["code"], "forbidden", "{out:?}");
    assert!(
        out[0]["error"].as_str().unwrap().contains("--agent viewer"),
        "{out:?}"
    );
    assert_eq!(out[1]["total"], 0, "the other lines go on: {out:?}");
    assert_eq!(out[2]["code"], "forbidden", "viewer cannot create: {out:?}");
    assert_eq!(out[3]["code"], "forbidden", "{out:?}");
    assert_eq!(env.ok("list", json!({}))["total"], 0, "nothing was written");
    // Without --agent, a line may name its agent.
    let out = run(
        &[],
        &[
            create(Some("viewer")),
            create(Some("operator")),
            create(None),
        ],
    );
    assert_eq!(out[0]["code"], "forbidden", "{out:?}");
    assert!(
        out[1]["id"].is_string() && out[2]["id"].is_string(),
        "{out:?}"
    );
}

#[test]
fn symlinks_in_the_store_directory_are_refused_not_followed() {
    let env = Env::new();
    let dir = env.backlog_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("lock-target");
    std::os::unix::fs::symlink(&target, dir.join(".lock")).unwrap();
    let e = env.err("create", base(json!({})), "unavailable");
    let msg = e["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(".lock is a symbolic link") && msg.contains("remove it"),
        "{e}"
    );
    assert!(!target.exists(), "the lock target outside was not created");
    std::fs::remove_file(dir.join(".lock")).unwrap();

    // A store file planted as a link: refused by the guest, the outside file untouched.
    let victim = outside.join("victim.jsonl");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("items.jsonl")).unwrap();
    for action in ["create", "list"] {
        let params = if action == "create" {
            base(json!({}))
        } else {
            json!({})
        };
        let run = env.call("operator", "backlog_tool", action, &params);
        let out = run.json();
        assert_eq!(out["code"], "unavailable", "{action}: {run:?}");
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("items.jsonl in the store directory")
                && out["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("symbolic link"),
            "{out}"
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_killed_cleanups_temp_file_is_removed_by_the_next_writer() {
    let env = Env::new();
    env.ok("create", base(json!({})));
    let tmp = env.backlog_dir().join(".items.jsonl.cleanup.tmp");
    std::fs::write(&tmp, "x".repeat(100_000)).unwrap();
    env.ok("list", json!({}));
    assert!(tmp.exists(), "a read (no writer lock) leaves it");
    let run = env.call("operator", "backlog_tool", "create", &base(json!({})));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!tmp.exists(), "the next writer removed it");
    assert!(
        run.stderr.contains(".items.jsonl.cleanup.tmp"),
        "and said so: {run:?}"
    );
    assert_eq!(env.ok("list", json!({}))["total"], 2);
}

/// Runs the binary as user `nobody` (uid/gid 65534).
fn as_nobody(env: &Env, args: &[&str], params: &Value) -> Run {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg("--config-dir")
        .arg(&env.config)
        .arg("--ops-dir")
        .arg(&env.ops);
    env.environment(&mut cmd);
    cmd.args(args).arg(params.to_string()).stdin(Stdio::null());
    cmd.output().expect("run setpriv").into()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn host_permission_denied_is_unavailable_naming_the_host_directory() {
    let mut env = Env::new();
    env.ok("create", base(json!({})));
    // Let `nobody` reach the config and a cache of its own; the store stays root's.
    chmod(env.tmp.path(), 0o755);
    let cache = env.tmp.path().join("nobody-cache");
    std::fs::create_dir_all(&cache).unwrap();
    for e in std::fs::read_dir(&env.cache)
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::copy(e.path(), cache.join(e.file_name()));
    }
    chmod(&cache, 0o777);
    env.cache = cache;
    let dir = env.backlog_dir();
    let call = |action: &str, params: &Value| {
        as_nobody(
            &env,
            &[
                "call",
                "backlog_tool",
                action,
                "--agent",
                "operator",
                "--params-json",
            ],
            params,
        )
    };

    // The host's own open of the lock file.
    let run = call("create", &base(json!({})));
    let out = run.json();
    assert_eq!(out["code"], "unavailable", "{run:?}");
    let msg = out["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("owner or mode"),
        "{msg}"
    );

    // The guest's open of items.jsonl (the lock is now writable): EACCES inside the sandbox is
    // the host filesystem's, not the sandbox's, and names the host directory.
    chmod(&dir.join(".lock"), 0o666);
    let run = call("create", &base(json!({})));
    let out = run.json();
    assert_eq!(out["code"], "unavailable", "{run:?}");
    let msg = out["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "items.jsonl in the store directory {}",
            dir.display()
        )) && msg.contains("permission denied (EACCES)")
            && !msg.contains("os error"),
        "{msg}"
    );
    // Reads still work.
    let run = call("list", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount -t tmpfs failed (the test needs root and mount)"
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn no_space_during_cleanup_names_the_temp_file_and_the_host_directory() {
    let env = Env::new();
    let dir = env.tmp.path().join("small");
    let _fs = Tmpfs::mount(&dir, "256k");
    let env = env.var("BACKLOG_JSONL_DIR", dir.to_str().unwrap());
    // 100 live items and one old done item, then fill the disk.
    let mut text = String::new();
    for n in 0..100u32 {
        text += &legacy_line(0x200 + n, "prod", "2026-12-30", 1, 40);
    }
    text += &legacy_line(0x999, "prod", "2026-12-30", 1, 1).replace("\"open\"", "\"done\"");
    std::fs::write(dir.join("items.jsonl"), &text).unwrap();
    std::fs::write(dir.join(".lock"), "").unwrap();
    let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.sync_all();
    let before = std::fs::read(dir.join("items.jsonl")).unwrap();

    let run = env.call(
        "operator",
        "backlog_tool",
        "cleanup",
        &json!({"retention_days": 1}),
    );
    let out = run.json();
    assert_eq!(out["code"], "unavailable", "{run:?}");
    let msg = out["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            ".items.jsonl.cleanup.tmp in the store directory {}",
            dir.display()
        )) && msg.contains("no space left"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(dir.join("items.jsonl")).unwrap(),
        before,
        "unchanged"
    );
    assert!(
        !dir.join(".items.jsonl.cleanup.tmp").exists(),
        "temp file removed"
    );
    drop(filler);
    std::fs::remove_file(dir.join("filler")).unwrap();
    let ok = env.ok("cleanup", json!({"retention_days": 1}));
    assert_eq!(ok["deleted"], 1, "{ok}");
}

#[test]
fn postgres_items_over_the_limits_are_read_truncated() {
    let env = Env::on(crate::util::Backend::Postgres);
    env.ok(
        "create",
        base(json!({"priority": "P0", "due_date": "2026-11-01"})),
    );
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let ids: Vec<String> = (0..5000).map(|i| format!("\"al_{i}\"")).collect();
    env.db.as_ref().expect("database").batch(&format!(
        "UPDATE backlog_items SET meta = '{{\"d\": {deep}}}'::jsonb, \
         evidence_refs = '{{\"alerts\": [{}]}}'::jsonb",
        ids.join(",")
    ));
    let run = env.call("operator", "backlog_tool", "list", &json!({}));
    assert_eq!(run.code, 0, "{run:?}");
    let page = run.json();
    let item = &page["items"][0];
    assert!(item["meta"]["_truncated"].is_string(), "{page}");
    assert!(
        run.stderr
            .contains("over the stored limits, answered truncated")
            && run.stderr.contains(item["id"].as_str().unwrap()),
        "a warning names the item: {}",
        run.stderr
    );
    assert_eq!(
        item["evidence_refs"]["alerts"].as_array().map(Vec::len),
        Some(1000)
    );
    assert_eq!(env.ok("dashboard", json!({}))["overdue_count"], 1);
}
