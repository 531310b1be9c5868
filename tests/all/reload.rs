//! Reloading the config without a restart (`docs/change-control.md`): `SIGHUP` and
//! `POST /v1/admin/reload` on `serve`, `SIGHUP` on `scheduler`; revocations and grants on
//! every face, a broken file or a digest mismatch keeping the old config, calls in flight,
//! key rotation through a key file, the reload metrics and audit lines.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY};
use crate::util::{BACKLOG_TOOL_WASM, Env, HOSTILE_WASM, Run};

const MATRIX: &str = "rbac_tools_matrix.yml";

/// Rewrites the config file `name` of `env`: `from` (which must be there) becomes `to`.
#[track_caller]
fn edit(env: &Env, name: &str, from: &str, to: &str) {
    let path = env.config.join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {name}:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// The viewer's entitlements line of the shipped matrix.
const VIEWER_READS: &str = "  viewer:\n    entitlements: [tools.backlog.read]";
const VIEWER_NOTHING: &str = "  viewer:\n    entitlements: []";

/// `POST /v1/admin/reload` as `key`.
fn reload(server: &Server, key: &str) -> crate::http::Resp {
    server.post("/v1/admin/reload", Some(key), &json!({}))
}

fn metrics(server: &Server) -> String {
    let r = server.get("/metrics", None);
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// Polls `/metrics` until it holds `line` (bounded).
#[track_caller]
fn wait_metric(server: &Server, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(server);
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(Instant::now() < deadline, "{line} never came:\n{text}");
        std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
    }
}

/// Every audit line of `env`, in file order.
fn audit_lines(env: &Env) -> Vec<Value> {
    let dir = env.ops.join("audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// The `reload` audit lines of `env`, polled until there are `n` (bounded).
#[track_caller]
fn reload_lines(env: &Env, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<Value> = audit_lines(env)
            .into_iter()
            .filter(|l| l["event"] == "reload")
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{n} reload lines never came: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
    }
}

fn hup(pid: i32) {
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

/// SIGHUP no longer ends `serve`: it reloads. A revoked entitlement refuses the very next
/// call, and the endpoint grants it back; an agent without `bridge.reload` gets 403; each
/// reload leaves its audit line (trigger, actor, result, the changed file) and the metrics
/// count it.
#[test]
fn sighup_and_the_endpoint_reload_revoke_and_grant_over_http() {
    let env = crate::http::env();
    let mut server = Server::start(&env, &[]);
    server.execute(VIEWER_KEY, "list", &json!({})).ok();
    let text = metrics(&server);
    for line in [
        "backlog_bridge_config_last_reload_successful 1",
        "backlog_bridge_config_reloads_total{result=\"success\"} 0",
        "backlog_bridge_config_reloads_total{result=\"failure\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    assert!(
        text.contains("backlog_bridge_config_last_reload_success_timestamp_seconds "),
        "{text}"
    );

    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    hup(server.pid());
    wait_metric(
        &server,
        "backlog_bridge_config_reloads_total{result=\"success\"} 1",
    );
    let denied = server.execute(VIEWER_KEY, "list", &json!({}));
    assert!(
        denied
            .error(403, "forbidden")
            .contains("tools.backlog.read")
    );
    // Unchanged agents keep what they had.
    server.execute(OPERATOR_KEY, "list", &json!({})).ok();

    // The endpoint needs `bridge.reload`: the viewer has it not.
    let refused = reload(&server, VIEWER_KEY);
    assert!(refused.error(403, "forbidden").contains("bridge.reload"));
    assert_eq!(
        server.post("/v1/admin/reload", None, &json!({})).status,
        401
    );
    edit(&env, MATRIX, VIEWER_NOTHING, VIEWER_READS);
    let done = reload(&server, OPERATOR_KEY).ok();
    assert_eq!(done["reloaded"], true, "{done}");
    assert_eq!(done["changed"], json!([MATRIX]), "{done}");
    server.execute(VIEWER_KEY, "list", &json!({})).ok();
    wait_metric(
        &server,
        "backlog_bridge_config_reloads_total{result=\"success\"} 2",
    );

    let lines = reload_lines(&env, 3);
    let sighup = &lines[0];
    assert_eq!(sighup["trigger"], "sighup", "{sighup}");
    assert_eq!(sighup["result"], "success", "{sighup}");
    assert_eq!(sighup["changed"], json!([MATRIX]), "{sighup}");
    let deny = &lines[1];
    assert_eq!(deny["decision"], "deny", "{deny}");
    assert_eq!(deny["actor"], "viewer", "{deny}");
    assert_eq!(deny["reason"], "bridge.reload", "{deny}");
    let http = &lines[2];
    assert_eq!(http["trigger"], "http", "{http}");
    assert_eq!(http["actor"], "operator", "{http}");
    assert_eq!(http["result"], "success", "{http}");
    for line in &lines {
        for key in [OPERATOR_KEY, VIEWER_KEY] {
            assert!(!line.to_string().contains(key), "{line}");
        }
    }
    // Still the same process, and SIGTERM keeps its meaning.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let exit = server.wait_exit();
    assert!(exit.success(), "{exit:?}: {}", server.log());
}

/// A broken file keeps the old config whole: the endpoint answers 400 `invalid_config` naming
/// the file and key, the metric says 0, calls go on under the old config; fixed, it loads.
#[test]
fn a_broken_file_keeps_the_old_config_and_the_metric_says_0() {
    let env = crate::http::env();
    let server = Server::start(&env, &[]);
    // Two errors in two files: the viewer's read is revoked (valid), and a timeout is out of
    // range (invalid); the policy file is not YAML.
    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    edit(
        &env,
        MATRIX,
        "cleanup:              { entitlements: [tools.backlog.admin], timeout_s: 120 }",
        "cleanup:              { entitlements: [tools.backlog.admin], timeout_s: 0 }",
    );
    let policy = env.config.join("backlog_policy.yml");
    let good_policy = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, "defaults: [\n").unwrap();

    let r = reload(&server, OPERATOR_KEY);
    let message = r.error(400, "invalid_config");
    assert!(
        message.contains("tools.backlog_tool.actions.cleanup.timeout_s"),
        "{message}"
    );
    assert!(message.contains("backlog_policy.yml"), "{message}");
    assert_eq!(
        r.json()["errors"].as_array().map(Vec::len),
        Some(2),
        "{r:?}"
    );
    let text = wait_metric(&server, "backlog_bridge_config_last_reload_successful 0");
    assert!(
        text.contains("backlog_bridge_config_reloads_total{result=\"failure\"} 1"),
        "{text}"
    );
    // The old matrix is still in force: the viewer still reads.
    server.execute(VIEWER_KEY, "list", &json!({})).ok();
    let log = server.log_when(|l| l.contains("config reload failed"));
    assert!(log.contains("backlog_policy.yml"), "{log}");
    let failed = &reload_lines(&env, 1)[0];
    assert_eq!(failed["result"], "failure", "{failed}");

    // SIGHUP with the same errors: still the old config, still 0.
    hup(server.pid());
    wait_metric(
        &server,
        "backlog_bridge_config_reloads_total{result=\"failure\"} 2",
    );
    server.execute(VIEWER_KEY, "list", &json!({})).ok();

    std::fs::write(&policy, good_policy).unwrap();
    edit(
        &env,
        MATRIX,
        "cleanup:              { entitlements: [tools.backlog.admin], timeout_s: 0 }",
        "cleanup:              { entitlements: [tools.backlog.admin], timeout_s: 120 }",
    );
    reload(&server, OPERATOR_KEY).ok();
    wait_metric(&server, "backlog_bridge_config_last_reload_successful 1");
    server
        .execute(VIEWER_KEY, "list", &json!({}))
        .error(403, "forbidden");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pinned component file swapped for other bytes: the reload is refused naming the file and
/// both digests, the old config (and component) stay; the file put back, the reload passes.
#[test]
fn a_digest_mismatch_at_reload_keeps_the_old_config() {
    let env = crate::http::env();
    let bytes = std::fs::read(BACKLOG_TOOL_WASM).unwrap();
    let extra = env.config.join("extra.wasm");
    std::fs::write(&extra, &bytes).unwrap();
    let pin = sha256_hex(&bytes);
    crate::util::append(
        &env.config.join("plugins.yml"),
        &format!("  extra: {{ component: extra.wasm, sha256: {pin} }}\n"),
    );
    let server = Server::start(&env, &[]);
    let hostile = std::fs::read(HOSTILE_WASM).unwrap();
    std::fs::write(&extra, &hostile).unwrap();
    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    let message = reload(&server, OPERATOR_KEY).error(400, "invalid_config");
    for part in ["extra.wasm", &pin, &sha256_hex(&hostile)] {
        assert!(message.contains(part), "{part}: {message}");
    }
    wait_metric(&server, "backlog_bridge_config_last_reload_successful 0");
    server.execute(VIEWER_KEY, "list", &json!({})).ok();
    // The refusal's audit line names what changed on disk, the swapped file among them.
    let refused = &reload_lines(&env, 1)[0];
    assert_eq!(refused["result"], "failure", "{refused}");
    assert_eq!(
        refused["changed"],
        json!(["extra.wasm", MATRIX]),
        "{refused}"
    );

    std::fs::write(&extra, &bytes).unwrap();
    let done = reload(&server, OPERATOR_KEY).ok();
    assert_eq!(done["changed"], json!([MATRIX]), "{done}");
    server
        .execute(VIEWER_KEY, "list", &json!({}))
        .error(403, "forbidden");

    // A new component with its new pin: loaded (compiled) by the reload, audited with its
    // digest; the builtin one is taken over (no second line for it).
    std::fs::write(&extra, &hostile).unwrap();
    edit(&env, "plugins.yml", &pin, &sha256_hex(&hostile));
    let done = reload(&server, OPERATOR_KEY).ok();
    assert_eq!(
        done["changed"],
        json!(["extra.wasm", "plugins.yml"]),
        "{done}"
    );
    let loads: Vec<Value> = audit_lines(&env)
        .into_iter()
        .filter(|l| l["event"] == "plugin_load")
        .collect();
    let last = loads.last().expect("plugin_load lines");
    assert_eq!(last["plugin"], "extra", "{loads:?}");
    assert_eq!(
        last["digest"],
        format!("sha256:{}", sha256_hex(&hostile)),
        "{loads:?}"
    );
    assert!(
        !loads.iter().skip(2).any(|l| l["plugin"] == "backlog_tool"),
        "{loads:?}"
    );
}

/// A policy change reaches the guest at the next call: a category's default priority.
#[test]
fn a_reloaded_policy_applies_to_the_next_call() {
    let env = crate::http::env();
    let server = Server::start(&env, &[]);
    let create = |title: &str| {
        server
            .execute(
                OPERATOR_KEY,
                "create",
                &json!({"env": "prod", "service": "svc", "category": "refactor", "title": title}),
            )
            .ok()
    };
    assert_eq!(create("before")["priority"], "P2");
    edit(
        &env,
        "backlog_policy.yml",
        "  refactor:\n    priority: P2",
        "  refactor:\n    priority: P0",
    );
    let done = reload(&server, OPERATOR_KEY).ok();
    assert_eq!(done["changed"], json!(["backlog_policy.yml"]), "{done}");
    assert_eq!(create("after")["priority"], "P0");
}

/// Writes `keys` to the viewer's key file (mode 0600).
fn write_keys(path: &Path, keys: &[&str]) {
    let mut text = String::from("# viewer keys\n");
    for k in keys {
        text.push_str(k);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A key rotation without a restart: the key file gets the new key beside the old one
/// (both valid), then loses the old one (refused from the next request on). A key file
/// readable by others fails the reload and keeps the keys in force.
#[test]
fn key_rotation_through_a_key_file_and_reloads() {
    const OLD: &str = "viewer-old-key-0123456789";
    const NEW: &str = "viewer-new-key-9876543210";
    let env = crate::http::env();
    edit(
        &env,
        MATRIX,
        "api_key_env: VIEWER_API_KEY",
        "api_key_file: viewer.keys",
    );
    let file = env.config.join("viewer.keys");
    write_keys(&file, &[OLD]);
    let server = Server::start(&env, &[]);
    server.execute(OLD, "list", &json!({})).ok();
    server
        .execute(NEW, "list", &json!({}))
        .error(401, "unauthenticated");

    write_keys(&file, &[OLD, NEW]);
    hup(server.pid());
    wait_metric(
        &server,
        "backlog_bridge_config_reloads_total{result=\"success\"} 1",
    );
    server.execute(OLD, "list", &json!({})).ok();
    server.execute(NEW, "list", &json!({})).ok();

    write_keys(&file, &[NEW]);
    let done = reload(&server, OPERATOR_KEY).ok();
    assert_eq!(done["changed"], json!(["viewer.keys"]), "{done}");
    server
        .execute(OLD, "list", &json!({}))
        .error(401, "unauthenticated");
    server.execute(NEW, "list", &json!({})).ok();
    // Nothing of a key reaches the log or the audit trail.
    for text in [server.log(), format!("{:?}", audit_lines(&env))] {
        assert!(!text.contains(OLD) && !text.contains(NEW), "{text}");
    }

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = reload(&server, OPERATOR_KEY).error(400, "invalid_config");
    assert!(message.contains("viewer.keys"), "{message}");
    server.execute(NEW, "list", &json!({})).ok();
}

/// A call in flight when a reload revokes its action finishes under the config it started
/// with (its own outcome, not `forbidden`), the reload does not wait for it, and the next call
/// is refused.
#[test]
fn a_call_in_flight_finishes_under_the_config_it_started_with() {
    let env = crate::http::env().with_hostile();
    edit(
        &env,
        MATRIX,
        "spin:          { entitlements: [tools.backlog.read], timeout_s: 1 }",
        "spin:          { entitlements: [tools.backlog.read], timeout_s: 4 }",
    );
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    let slow = std::thread::spawn(move || {
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = client
            .post(format!("{base}/v1/tools/execute"))
            .header("Authorization", format!("Bearer {VIEWER_KEY}"))
            .header("Content-Type", "application/json")
            .send(json!({"tool": "hostile", "action": "spin"}).to_string())
            .expect("spin");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    });
    wait_metric(&server, "backlog_bridge_calls_in_flight 1");
    edit(
        &env,
        MATRIX,
        "spin:          { entitlements: [tools.backlog.read], timeout_s: 4 }",
        "spin:          { entitlements: [tools.backlog.admin], timeout_s: 4 }",
    );
    reload(&server, OPERATOR_KEY).ok();
    // The reload answered while the call still runs: it did not wait for it.
    assert!(
        metrics(&server)
            .lines()
            .any(|l| l == "backlog_bridge_calls_in_flight 1"),
        "the call in flight ended before the reload answered"
    );
    let refused = server.post(
        "/v1/tools/execute",
        Some(VIEWER_KEY),
        &json!({"tool": "hostile", "action": "spin"}),
    );
    assert!(
        refused
            .error(403, "forbidden")
            .contains("tools.backlog.admin")
    );
    let (status, body) = slow.join().unwrap();
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((status, &body["code"]), (504, &json!("timeout")), "{body}");
}

/// One exchange with `/mcp` ([`crate::mcp::http`]): status, the header lines lower-cased,
/// body.
fn raw_http(
    server: &Server,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let addr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let (status, headers, body) = crate::mcp::http(addr, method, "/mcp", headers, body);
    let head = headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", v.to_ascii_lowercase()))
        .collect();
    (status, head, body)
}

/// A POST to `/mcp` as the viewer; the JSON-RPC message with `id` (or the first one).
fn mcp_post(server: &Server, session: Option<&str>, message: &Value) -> (u16, String, Value) {
    let bearer = format!("Bearer {VIEWER_KEY}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", bearer.as_str()),
    ];
    if let Some(s) = session {
        headers.push(("Mcp-Session-Id", s));
    }
    let (status, head, body) = raw_http(server, "POST", &headers, &message.to_string());
    let value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // Chunked or SSE: the first JSON document in it.
        body.lines()
            .filter_map(|l| {
                serde_json::from_str::<Value>(l.trim_start_matches("data:").trim()).ok()
            })
            .find(|v| v.is_object())
            .unwrap_or(Value::Null)
    });
    (status, head, value)
}

/// MCP over HTTP: a reload that revokes the viewer's reads sends its open session
/// `notifications/tools/list_changed` on the session's stream; `tools/list` then shows
/// nothing and the call is refused. `initialize` advertises `tools.listChanged`.
#[test]
fn mcp_sessions_hear_of_a_changed_tool_list_and_calls_follow_the_reload() {
    let env = crate::http::env();
    let server = Server::start(&env, &[]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "reload-test", "version": "0"}}});
    let (status, head, answer) = mcp_post(&server, None, &init);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["capabilities"]["tools"]["listChanged"], true,
        "{answer}"
    );
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .expect("session id")
        .trim()
        .to_owned();
    let (status, _, _) = mcp_post(
        &server,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(status, 202);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (_, _, tools) = mcp_post(&server, Some(&session), &list);
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{tools}"
    );

    // The session's stream (GET /mcp), open before the reload.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {VIEWER_KEY}\r\nMcp-Session-Id: {session}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = String::new();
    // Reads until `seen` holds `want` `times` times.
    let read_until = |stream: &mut TcpStream, seen: &mut String, want: &str, times: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        while seen.matches(want).count() < times {
            assert!(Instant::now() < deadline, "{want} never came: {seen}");
            match stream.read(&mut buf) {
                Ok(0) => panic!("stream closed: {seen}"),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}: {seen}"),
            }
        }
    };
    read_until(&mut stream, &mut seen, "\r\n\r\n", 1);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");

    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    reload(&server, OPERATOR_KEY).ok();
    read_until(
        &mut stream,
        &mut seen,
        "notifications/tools/list_changed",
        1,
    );

    let (_, _, tools) = mcp_post(&server, Some(&session), &list);
    assert_eq!(tools["result"]["tools"], json!([]), "{tools}");
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "backlog_tool_list", "arguments": {}}});
    let (_, _, answer) = mcp_post(&server, Some(&session), &call);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["code"], "forbidden",
        "{answer}"
    );

    // Granted back: told again, and the session lists and calls the reads.
    edit(&env, MATRIX, VIEWER_NOTHING, VIEWER_READS);
    reload(&server, OPERATOR_KEY).ok();
    read_until(
        &mut stream,
        &mut seen,
        "notifications/tools/list_changed",
        2,
    );
    let (_, _, tools) = mcp_post(&server, Some(&session), &list);
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{tools}"
    );
    let (_, _, answer) = mcp_post(&server, Some(&session), &call);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
}

/// The CLI is not long-running: a new `call` or `batch` process reads the config as it is
/// then (a revocation takes effect at its next start).
#[test]
fn a_new_cli_process_sees_the_new_config() {
    let env = Env::new();
    let list = |env: &Env| -> Run { env.call("viewer", "backlog_tool", "list", &json!({})) };
    assert_eq!(list(&env).code, 0);
    let batch_line =
        json!({"agent": "viewer", "tool": "backlog_tool", "action": "list", "params": {}});
    assert!(
        env.batch(std::slice::from_ref(&batch_line))[0]
            .get("error")
            .is_none()
    );
    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    let denied = list(&env);
    assert_eq!(denied.json()["code"], "forbidden", "{denied:?}");
    let lines = env.batch(&[batch_line]);
    assert_eq!(lines[0]["code"], "forbidden", "{lines:?}");
}

/// `scheduler` (the daemon) reloads on SIGHUP: a good config is swapped in, a broken one
/// keeps the old (both audited), and SIGTERM still stops it cleanly.
#[test]
fn the_scheduler_reloads_on_sighup() {
    let env = Env::new();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/task_registry.yml"),
        env.ops.join("task_registry.yml"),
    )
    .unwrap();
    let child = env
        .cmd()
        .arg("scheduler")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn scheduler");
    let pid = child.id() as i32;
    // Started: its `start` audit line is written before the loop runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !audit_lines(&env).iter().any(|l| l["event"] == "start") {
        assert!(Instant::now() < deadline, "the scheduler never started");
        std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
    }
    edit(&env, MATRIX, VIEWER_READS, VIEWER_NOTHING);
    hup(pid);
    let lines = reload_lines(&env, 1);
    assert_eq!(lines[0]["result"], "success", "{lines:?}");
    assert_eq!(lines[0]["changed"], json!([MATRIX]), "{lines:?}");
    // A registry job naming an agent the matrix no longer has: refused, the old config stays.
    edit(&env, MATRIX, "  scheduler:\n", "  scheduler_renamed:\n");
    hup(pid);
    let lines = reload_lines(&env, 2);
    assert_eq!(lines[1]["result"], "failure", "{lines:?}");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("config reload failed"), "{stderr}");
    assert!(stderr.contains("task_registry.yml"), "{stderr}");
}

/// Whether `pid` catches SIGHUP (`SigCgt` of `/proc/PID/status`, bit 0 is signal 1).
fn catches_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

/// A SIGHUP while `serve` is still starting (its handler is in place before the config is
/// read) does not end it: it serves, and the HUP has reloaded the config.
#[test]
fn a_sighup_while_serve_starts_does_not_end_it() {
    use std::io::BufRead as _;
    let env = crate::http::env();
    let mut child = env
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !catches_sighup(pid) {
        assert!(Instant::now() < deadline, "serve never caught SIGHUP");
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(Duration::from_millis(1)); // retry interval of a bounded poll
    }
    hup(pid as i32);
    // The log is read to its end (the process goes on writing to it).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = tx.send(addr);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        let status = child.wait();
        panic!(
            "serve did not start: {status:?}\n{}",
            reader.join().unwrap()
        );
    };
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let want = "backlog_bridge_config_reloads_total{result=\"success\"} 1";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .unwrap_or_default();
        if text.lines().any(|l| l == want) {
            break;
        }
        assert!(Instant::now() < deadline, "{want} never came:\n{text}");
        std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
    }
    assert!(child.try_wait().unwrap().is_none(), "serve exited");
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("config reloaded"), "{log}");
}
