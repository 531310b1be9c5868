//! The MCP face: the official Python SDK (`tests/mcp/*.py`, pinned, in a throwaway venv built
//! by `tests/mcp/setup-venv.sh`) over stdio against the real binary, and over Streamable HTTP
//! against `/mcp` of the real `serve` on loopback; plus the checks that need no
//! client (exit codes, stdout hygiene, Origin/Host/auth, OAuth 404s).
//!
//! The venv is built once per test binary; if it cannot be built (no python3, no package
//! index) these tests fail, they never skip.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::util::{BIN, Env, Run, snapshot};

fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp")
}

/// The venv's python, built on first use.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
        let out = Command::new(mcp_dir().join("setup-venv.sh"))
            .arg(&venv)
            .output()
            .expect("run tests/mcp/setup-venv.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cannot build the MCP client venv (needs python3 with venv and the package index; \
             this suite does not skip): {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

/// Runs one of the Python clients; its stderr carries the server's log (stdio).
fn client(env: &Env, script: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(python());
    cmd.arg(mcp_dir().join(script)).args(args);
    env.environment(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd.output().expect("run python").into()
}

/// A client run that passed; its JSON summary.
#[track_caller]
fn passed(run: &Run) -> Value {
    assert_eq!(
        run.code, 0,
        "MCP client failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    serde_json::from_str(run.stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {run:?}"))
}

fn stdio(env: &Env, agent: &str, mode: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--bin", BIN, "--agent", agent, "--mode", mode];
    args.extend_from_slice(extra);
    let config = env.config.to_str().expect("utf-8 path");
    let ops = env.ops.to_str().expect("utf-8 path");
    args.extend_from_slice(&["--", "--config-dir", config, "--ops-dir", ops]);
    client(env, "client_stdio.py", &args)
}

/// `plugins list` as {action: params_schema}: what inputSchema must equal.
fn schemas(env: &Env) -> PathBuf {
    let run: Run = env
        .cmd()
        .args(["plugins", "list"])
        .output()
        .expect("plugins list")
        .into();
    let doc = run.json();
    let actions = doc["tools"][0]["actions"].as_array().expect("actions");
    let map: serde_json::Map<String, Value> = actions
        .iter()
        .map(|a| {
            (
                a["name"].as_str().expect("name").to_owned(),
                a["params_schema"].clone(),
            )
        })
        .collect();
    let path = env.tmp.path().join("schemas.json");
    std::fs::write(&path, Value::Object(map).to_string()).expect("write schemas");
    path
}

/// The operator's scenario left exactly its item behind, acted on as `operator`.
#[track_caller]
fn check_operator_item(env: &Env, summary: &Value, tag: &str) {
    let id = summary["created"].as_str().expect("created id");
    let item = env.ok("get", json!({"id": id, "include_events": true}));
    assert!(item["title"].as_str().unwrap().contains(tag), "{item}");
    assert_eq!(item["status"], "done", "{item}");
    let actors: Vec<&str> = item["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["operator", "operator"], "{item}");
    let all = env.ok("list", json!({}));
    assert_eq!(all["total"], 1, "refused calls must write nothing: {all}");
}

#[test]
fn stdio_initialize_handshake() {
    let env = Env::new();
    let schemas = schemas(&env);
    let run = stdio(
        &env,
        "operator",
        "legacy",
        &["--schemas", schemas.to_str().unwrap()],
    );
    let summary = passed(&run);
    assert_eq!(summary["protocol_version"], "2025-11-25", "{summary}");
    check_operator_item(&env, &summary, "stdio-legacy");
}

#[test]
fn stdio_stateless_protocol() {
    let env = Env::new();
    let run = stdio(&env, "operator", "auto", &[]);
    let summary = passed(&run);
    assert_eq!(summary["protocol_version"], "2026-07-28", "{summary}");
    check_operator_item(&env, &summary, "stdio-auto");
}

#[test]
fn stdio_viewer_sees_reads_and_denied_calls_never_reach_the_guest() {
    let env = Env::new().var("RUST_LOG", "info");
    let item = env.ok(
        "create",
        json!({"env": "prod", "service": "gateway", "category": "refactor", "title": "seen"}),
    );
    let before = snapshot(&env.backlog_dir());
    let id = item["id"].as_str().unwrap();
    let run = stdio(&env, "viewer", "legacy", &["--existing", id]);
    let summary = passed(&run);
    assert_eq!(
        summary["tools"],
        json!([
            "backlog_tool_dashboard",
            "backlog_tool_events",
            "backlog_tool_get",
            "backlog_tool_list"
        ])
    );
    assert_eq!(snapshot(&env.backlog_dir()), before, "a denied call wrote");
    // The refusals happened before the bridge: the MCP layer logged them, and the bridge's
    // own "tool call" lines are only the reads that were allowed.
    let refused = run
        .stderr
        .lines()
        .filter(|l| l.contains("tool call refused"))
        .count();
    assert_eq!(refused, 3, "{}", run.stderr);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.contains("tool call") && !l.contains("refused") && l.contains("create")),
        "a denied create reached the bridge: {}",
        run.stderr
    );
}

#[test]
fn stdio_without_agent_is_a_usage_error() {
    let env = Env::new();
    let run: Run = env.cmd().arg("mcp").output().expect("run").into();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("--agent") && run.stderr.contains("BACKLOG_BRIDGE_AGENT"),
        "{run:?}"
    );

    let env = env.var("BACKLOG_BRIDGE_AGENT", "");
    let run: Run = env.cmd().arg("mcp").output().expect("run").into();
    assert_eq!(run.code, 2, "empty variable counts as none: {run:?}");

    let run: Run = env
        .cmd()
        .args(["mcp", "--agent", "mallory"])
        .output()
        .expect("run")
        .into();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("unknown agent `mallory`"), "{run:?}");
}

/// Raw JSON-RPC lines over the binary's stdin/stdout, debug logging on: stdout carries only
/// protocol messages, and the agent can come from the environment.
#[test]
fn stdio_stdout_is_only_protocol() {
    let env = Env::new()
        .var("BACKLOG_BRIDGE_AGENT", "viewer")
        .var("RUST_LOG", "debug");
    let mut child = env
        .cmd()
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").expect("write");
    let mut recv = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}),
    );
    let init = recv();
    assert_eq!(
        init["result"]["serverInfo"]["name"], "backlog-bridge",
        "{init}"
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let list = recv();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "backlog_tool_get",
            "backlog_tool_list",
            "backlog_tool_events",
            "backlog_tool_dashboard"
        ]
    );
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "backlog_tool_list", "arguments": {"limit": 0}}}));
    let call = recv();
    assert_eq!(call["result"]["isError"], true, "{call}");
    assert_eq!(call["result"]["structuredContent"]["code"], "invalid_input");
    send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "nope", "arguments": {}}}));
    let unknown = recv();
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read rest");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(
        rest.trim().is_empty(),
        "stdout after the last response: {rest:?}"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("DEBUG"), "logs belong on stderr: {stderr}");
}

// ---------------------------------------------------------------------------------------
// HTTP, in-process: the router is mounted the way `serve` mounts it.

use crate::http::{OPERATOR_KEY, VIEWER_KEY};

/// `mcp::http_router` on 127.0.0.1:0 over the installation `env`, with a test key table.
/// The real `serve` process (`http::Server`), whose `/mcp` these tests talk to.
struct Server(crate::http::Server);

impl Server {
    fn start(env: &Env) -> Server {
        Server(crate::http::Server::start(env, &[]))
    }

    fn addr(&self) -> SocketAddr {
        self.0
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("server address")
    }

    fn url(&self) -> String {
        format!("{}/mcp", self.0.base)
    }
}

/// One HTTP/1.1 exchange on a fresh connection: status, lower-cased headers, body
/// (de-chunked). Shared by the MCP, isolation and reload suites.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("receive");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, headers, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
}

const JSON_RPC_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

#[track_caller]
fn error_object(status: u16, body: &str, expect_status: u16, code: &str) -> String {
    assert_eq!(status, expect_status, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["code"], code, "{v}");
    v["error"].as_str().expect("message").to_owned()
}

#[test]
fn http_python_client() {
    let env = crate::http::env();
    let server = Server::start(&env);
    for mode in ["legacy", "auto"] {
        let run = client(
            &env,
            "client_http.py",
            &[
                &server.url(),
                OPERATOR_KEY,
                "--scenario",
                "operator",
                "--mode",
                mode,
            ],
        );
        let summary = passed(&run);
        let expect = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(summary["protocol_version"], expect, "{summary}");
        let item = env.ok("get", json!({"id": summary["created"]}));
        assert_eq!(item["status"], "done", "{item}");
    }
    let before = snapshot(&env.backlog_dir());
    let any_id = env.ok("list", json!({"limit": 1}))["items"][0]["id"].clone();
    for mode in ["legacy", "auto"] {
        let run = client(
            &env,
            "client_http.py",
            &[
                &server.url(),
                VIEWER_KEY,
                "--scenario",
                "viewer",
                "--mode",
                mode,
                "--existing",
                any_id.as_str().unwrap(),
            ],
        );
        let summary = passed(&run);
        assert_eq!(
            summary["tools"].as_array().map(Vec::len),
            Some(4),
            "{summary}"
        );
    }
    assert_eq!(snapshot(&env.backlog_dir()), before, "a denied call wrote");
}

#[test]
fn http_authentication_origin_host_and_oauth_paths() {
    let env = crate::http::env();
    let server = Server::start(&env);
    let addr = server.addr();
    let bearer = format!("Bearer {OPERATOR_KEY}");
    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut h: Vec<(&str, &str)> = JSON_RPC_HEADERS.to_vec();
        h.extend_from_slice(extra);
        h
    }

    // The handshake works with a key (and with a loopback browser origin).
    let (status, headers, body) = http(
        addr,
        "POST",
        "/mcp",
        &with(&[("Authorization", &bearer)]),
        &initialize(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        headers.iter().any(|(k, _)| k == "mcp-session-id"),
        "the handshake style gets a session: {headers:?}"
    );
    assert!(body.contains("backlog-bridge"), "{body}");
    let (status, _, body) = http(
        addr,
        "POST",
        "/mcp",
        &with(&[
            ("Authorization", &bearer),
            ("Origin", "http://localhost:6274"),
        ]),
        &initialize(),
    );
    assert_eq!(status, 200, "{body}");

    // No key, a wrong key: 401 with the error object, before anything else happens.
    let (status, _, body) = http(addr, "POST", "/mcp", &with(&[]), &initialize());
    error_object(status, &body, 401, "unauthenticated");
    let (status, _, body) = http(
        addr,
        "POST",
        "/mcp",
        &with(&[("Authorization", "Bearer wrong")]),
        &initialize(),
    );
    error_object(status, &body, 401, "unauthenticated");

    // DNS rebinding: a foreign Origin or Host is refused even with a valid key.
    let (status, _, body) = http(
        addr,
        "POST",
        "/mcp",
        &with(&[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ]),
        &initialize(),
    );
    let message = error_object(status, &body, 403, "forbidden");
    assert!(message.contains("http://evil.example"), "{message}");
    let mut stream = TcpStream::connect(addr).expect("connect");
    let body = initialize();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Authorization: {bearer}\r\nContent-Length: {}\r\n\r\n{body}",
        addr.port(),
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("receive");
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains("\"code\":\"forbidden\""), "{raw}");

    // OAuth discovery: a fast JSON 404, no key needed, for every well-known path.
    for path in backlog_bridge::mcp::http::WELL_KNOWN_PATHS {
        for method in ["GET", "POST"] {
            let (status, _, body) = http(addr, method, path, &[], "");
            let message = error_object(status, &body, 404, "not_found");
            assert!(message.contains("Bearer"), "{path}: {message}");
        }
    }
}

/// `--anonymous-agent NAME`: requests without a key act as NAME (REST and `/mcp`), a wrong key
/// is still 401, and a non-loopback listen address refuses the option (exit 2).
#[test]
fn anonymous_agent_only_on_loopback_and_only_without_a_key() {
    let env = crate::http::env();
    let refused: Run = env
        .cmd()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--anonymous-agent",
            "viewer",
        ])
        .output()
        .expect("run serve")
        .into();
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("loopback"), "{}", refused.stderr);

    let server = crate::http::Server::start(&env, &["--anonymous-agent", "viewer"]);
    let base = &server.base;
    let agent = ureq::Agent::new_with_defaults();
    let dash = agent
        .get(format!("{base}/v1/backlog/dashboard?env=prod"))
        .call()
        .expect("anonymous dashboard");
    assert_eq!(dash.status(), 200);
    // Anonymous is `viewer`: a write is forbidden, not unauthenticated.
    let write = agent
        .post(format!("{base}/v1/backlog/items"))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send(json!({"env":"prod","service":"gw","category":"refactor","title":"t"}).to_string())
        .expect("anonymous write");
    assert_eq!(write.status(), 403);
    let wrong = agent
        .get(format!("{base}/v1/tools"))
        .header("Authorization", "Bearer not-a-key")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("wrong key");
    assert_eq!(wrong.status(), 401);
    // Over MCP too: the viewer's read tools only.
    let item = env.ok(
        "create",
        json!({"env":"prod","service":"gw","category":"refactor","title":"t"}),
    );
    let run = client(
        &env,
        "client_http.py",
        &[
            &format!("{base}/mcp"),
            "",
            "--scenario",
            "viewer",
            "--mode",
            "legacy",
            "--existing",
            item["id"].as_str().expect("id"),
        ],
    );
    let summary = passed(&run);
    assert_eq!(
        summary["tools"].as_array().map(Vec::len),
        Some(4),
        "{summary}"
    );
}

/// The official conformance runner (`tests/mcp/conformance.sh`: pinned Node and runner from
/// npm) against `/mcp` of the real `serve` on loopback: every scenario that applies to a
/// tools-only server passes, the others are listed with their reasons in
/// `tests/mcp/conformance-expected-failures.yml` (the runner fails on a listed one that passes).
#[test]
fn conformance_runner_passes_against_serve() {
    let env = crate::http::env();
    let server = crate::http::Server::start(&env, &["--anonymous-agent", "operator"]);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-conformance");
    let out = Command::new(mcp_dir().join("conformance.sh"))
        .arg(format!("{}/mcp", server.base))
        .env("MCP_CONFORMANCE_CACHE", &cache)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/mcp/conformance.sh");
    assert!(
        out.status.success(),
        "conformance runner failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

// ---------------------------------------------------------------------------------------
// Sessions, limits, logs, unreadable messages, admission and drain (the hardening passes).

/// The JSON-RPC messages of a response body: a JSON document, or the `data:` lines of SSE.
fn messages(body: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body.trim()) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// One POST to `/mcp`: status, headers, body.
fn post_mcp(
    addr: SocketAddr,
    key: Option<&str>,
    session: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = JSON_RPC_HEADERS.to_vec();
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    if let Some(s) = session {
        headers.push(("Mcp-Session-Id", s));
    }
    http(addr, "POST", "/mcp", &headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `initialize` + `notifications/initialized` as `key`: the session id.
#[track_caller]
fn open_session(addr: SocketAddr, key: Option<&str>) -> String {
    let (status, headers, body) = post_mcp(addr, key, None, &initialize());
    assert_eq!(status, 200, "{body}");
    let id = header(&headers, "mcp-session-id")
        .unwrap_or_else(|| panic!("no session id: {headers:?}"))
        .to_owned();
    let (status, _, body) = post_mcp(
        addr,
        key,
        Some(&id),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    );
    assert_eq!(status, 202, "{body}");
    id
}

fn tools_call(id: u64, name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}})
    .to_string()
}

/// The response message with `id` among a body's messages.
#[track_caller]
fn response(body: &str, id: u64) -> Value {
    messages(body)
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no response {id} in {body:?}"))
}

/// `GET /metrics` text.
fn metrics(addr: SocketAddr) -> String {
    let (status, _, body) = http(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `/metrics` until `calls_in_flight` is `n` (bounded).
#[track_caller]
fn wait_in_flight(addr: SocketAddr, n: usize) {
    let want = format!("backlog_bridge_calls_in_flight {n}\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if metrics(addr).contains(&want) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5)); // retry interval of a bounded poll
    }
    panic!("calls in flight never reached {n}: {}", metrics(addr));
}

/// Every attempt to use an operator's session with another principal — the viewer's key, or
/// no key under `--anonymous-agent operator` — is answered exactly like an unknown session,
/// while the operator's call is in flight; the operator gets its result and keeps its session;
/// the session id is never logged.
#[test]
fn http_sessions_belong_to_their_creator() {
    let env = crate::http::env().with_hostile();
    let server = crate::http::Server::start(&env, &["--anonymous-agent", "operator"]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(OPERATOR_KEY));
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let (status, _, body) = post_mcp(addr, Some(OPERATOR_KEY), Some(&sid), &list);
    assert_eq!(status, 200, "{body}");
    assert!(response(&body, 2)["result"]["tools"].is_array(), "{body}");

    // The operator's slow call (the hostile `spin`, stopped at its 1 s limit) is in flight.
    let call = {
        let sid = sid.clone();
        std::thread::spawn(move || {
            post_mcp(
                addr,
                Some(OPERATOR_KEY),
                Some(&sid),
                &tools_call(3, "hostile_spin", json!({})),
            )
        })
    };
    wait_in_flight(addr, 1);

    let (status, _, unknown) = post_mcp(
        addr,
        Some(VIEWER_KEY),
        Some("00000000-0000-4000-8000-000000000000"),
        &list,
    );
    assert_eq!(status, 404, "{unknown}");
    let viewer = format!("Bearer {VIEWER_KEY}");
    for (who, auth) in [("viewer", Some(viewer.as_str())), ("anonymous", None)] {
        let mut base: Vec<(&str, &str)> = vec![("Mcp-Session-Id", &sid)];
        if let Some(a) = auth {
            base.push(("Authorization", a));
        }
        let mut post = base.clone();
        post.extend_from_slice(&JSON_RPC_HEADERS);
        let mut resume = base.clone();
        resume.extend_from_slice(&[("Accept", "text/event-stream"), ("Last-Event-ID", "0")]);
        for (method, headers, body) in [
            ("POST", &post, list.clone()),
            ("POST", &post, initialize()),
            ("POST", &post, tools_call(9, "backlog_tool_list", json!({}))),
            ("GET", &resume, String::new()),
            ("GET", &base, String::new()),
            ("DELETE", &base, String::new()),
        ] {
            let (status, _, answer) = http(addr, method, "/mcp", headers, &body);
            assert_eq!(status, 404, "{who} {method} {body}: {answer}");
            assert_eq!(
                answer, unknown,
                "{who} {method}: not told apart from an unknown id"
            );
        }
    }

    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let result = response(&body, 3);
    assert_eq!(result["result"]["isError"], true, "{result}");
    assert!(
        result["result"]["structuredContent"]["code"].is_string(),
        "{result}"
    );
    // Nobody else closed or re-initialized it: the owner goes on, then ends it.
    let (status, _, body) = post_mcp(addr, Some(OPERATOR_KEY), Some(&sid), &list);
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {OPERATOR_KEY}");
    let (status, _, body) = http(
        addr,
        "DELETE",
        "/mcp",
        &[("Authorization", &bearer), ("Mcp-Session-Id", &sid)],
        "",
    );
    assert!(status == 200 || status == 202, "{status} {body}");
    let (status, _, _) = post_mcp(addr, Some(OPERATOR_KEY), Some(&sid), &list);
    assert_eq!(status, 404);
    let log = server.log();
    assert!(!log.contains(&sid), "a session id reached the log: {log}");
    assert!(log.contains("mcp: session opened"), "{log}");
}

/// Resident set size of a process, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// 10,000 session attempts from one key: the first 64 open, the rest get 503 with the error
/// object, RSS grows < 100 MB and keyed REST calls are served. The total cap holds for other
/// agents; oversized `initialize` requests are refused; closing a session frees its slot;
/// `/metrics` shows the open sessions.
#[test]
fn http_sessions_are_bounded() {
    let env = crate::http::env();
    let server = crate::http::Server::start(
        &env,
        &[
            "--mcp-max-sessions-per-agent",
            "64",
            "--mcp-max-sessions",
            "100",
        ],
    );
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let url = server.base.clone() + "/mcp";
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let init = |key: &str, body: &str| {
        let mut resp = agent
            .post(&url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .send(body)
            .expect("initialize");
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (resp.status().as_u16(), session, text)
    };
    let rest = |key: &str| {
        agent
            .get(format!("{}/v1/backlog/items?limit=1", server.base))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .expect("REST list")
            .status()
            .as_u16()
    };
    assert_eq!(rest(OPERATOR_KEY), 200);
    let before = rss(server.pid());
    let mut opened = Vec::new();
    let mut refused = 0;
    for i in 0..10_000 {
        let (status, session, body) = init(OPERATOR_KEY, &initialize());
        match status {
            200 => opened.push(session.expect("session id")),
            503 => {
                refused += 1;
                if refused == 1 {
                    let message = error_object(status, &body, 503, "unavailable");
                    assert!(
                        message.contains("--mcp-max-sessions-per-agent"),
                        "{message}"
                    );
                }
            }
            other => panic!("attempt {i}: {other} {body}"),
        }
        if i % 2_500 == 0 {
            assert_eq!(rest(OPERATOR_KEY), 200, "REST starved at attempt {i}");
        }
    }
    assert_eq!((opened.len(), refused), (64, 10_000 - 64));
    assert_eq!(rest(OPERATOR_KEY), 200);
    let grown = rss(server.pid()).saturating_sub(before);
    eprintln!(
        "RSS growth over 10,000 session attempts: {} KiB",
        grown / 1024
    );
    assert!(grown < 100 << 20, "RSS grew {grown} bytes");
    assert!(
        metrics(addr).contains("backlog_bridge_mcp_sessions_open 64\n"),
        "{}",
        metrics(addr)
    );

    // The total cap: the viewer gets the remaining 36.
    let mut viewer_sessions = 0;
    loop {
        let (status, _, body) = init(VIEWER_KEY, &initialize());
        if status == 503 {
            let message = error_object(status, &body, 503, "unavailable");
            assert!(message.contains("--mcp-max-sessions"), "{message}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        viewer_sessions += 1;
        assert!(viewer_sessions <= 36, "the total cap did not hold");
    }
    assert_eq!(viewer_sessions, 36);

    // Closing one frees its slot.
    let bearer = format!("Bearer {OPERATOR_KEY}");
    let (status, _, _) = http(
        addr,
        "DELETE",
        "/mcp",
        &[("Authorization", &bearer), ("Mcp-Session-Id", &opened[0])],
        "",
    );
    assert!(status == 200 || status == 202, "{status}");
    assert!(metrics(addr).contains("backlog_bridge_mcp_sessions_open 99\n"));
    assert_eq!(init(OPERATOR_KEY, &initialize()).0, 200);

    // `initialize` is size-limited (a JSON-RPC error, not a session), also at 1.9 MiB.
    for size in [9 * 1024, 1_900 * 1024] {
        let big = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "x".repeat(size), "version": "0"}}})
        .to_string();
        let (status, _, body) = post_mcp(addr, Some(VIEWER_KEY), None, &big);
        assert_eq!(status, 400, "{size}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON-RPC error");
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert_eq!(v["id"], 1, "{v}");
    }
    let log = server.log();
    assert!(
        !log.contains(&"x".repeat(200)),
        "client info reached the log whole"
    );
}

/// A session is closed after its absolute lifetime however busy it is: its next request is a
/// 404, and the gauge goes back to 0.
#[test]
fn http_sessions_have_an_absolute_lifetime() {
    let env = crate::http::env();
    let server = crate::http::Server::start(&env, &["--mcp-session-lifetime-s", "1"]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(OPERATOR_KEY));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut answered = 0;
    loop {
        let (status, _, body) = post_mcp(addr, Some(OPERATOR_KEY), Some(&sid), &ping);
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        answered += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its lifetime"
        );
        std::thread::sleep(std::time::Duration::from_millis(50)); // a busy client's pace
    }
    assert!(answered > 0, "the session never served a request");
    assert!(metrics(addr).contains("backlog_bridge_mcp_sessions_open 0\n"));
}

/// The server's log once `found` holds (bounded poll: the reader thread may lag the response).
#[track_caller]
fn log_when(server: &crate::http::Server, found: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let log = server.log();
        if found(&log) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // retry interval of a bounded poll
    }
    panic!("the expected log lines never came: {}", server.log());
}

/// Lines of `log` that are not log lines (do not start with a timestamp): forged.
fn foreign_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

/// Newlines injected through MCP property names, REST params, headers and agent-visible
/// error messages never start a log line; each call produces exactly its own lines (all
/// carrying its request id).
#[test]
fn logs_cannot_be_forged() {
    let env = crate::http::env();
    let server = crate::http::Server::start(&env, &[]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let forged = "\nFORGED 2099-01-01T00:00:00Z INFO tool call agent=operator action=cleanup\r\n";
    let viewer_sid = open_session(addr, Some(VIEWER_KEY));
    let operator_sid = open_session(addr, Some(OPERATOR_KEY));

    // Runs one exchange: it leaves exactly `expect_lines` lines carrying its request id, and
    // any line that shows the injected text is one of them (a forged line would not carry
    // the id, or would not start with a timestamp).
    let check = |what: &str, expect_lines: usize, exchange: &dyn Fn() -> (u16, String)| {
        let (_, rid) = exchange();
        let log = log_when(&server, |log| {
            log.lines().filter(|l| l.contains(&rid)).count() >= expect_lines
        });
        let own: Vec<&str> = log.lines().filter(|l| l.contains(&rid)).collect();
        assert_eq!(own.len(), expect_lines, "{what}: {own:#?}");
        for line in log.lines().filter(|l| l.contains("FORGED")) {
            assert!(line.contains("request_id"), "{what}: forged line: {line}");
        }
        assert!(
            foreign_lines(&log).is_empty(),
            "{what}: {:#?}",
            foreign_lines(&log)
        );
    };
    let rid_of = |headers: &[(String, String)]| {
        header(headers, "x-request-id")
            .expect("x-request-id")
            .to_owned()
    };

    // MCP: a property name with a newline, refused for RBAC (viewer creates) and for the
    // schema (operator; the error message names the property).
    let mut args = serde_json::Map::new();
    args.insert(format!("x{forged}"), json!(1));
    check("mcp forbidden", 2, &|| {
        let (status, headers, body) = post_mcp(
            addr,
            Some(VIEWER_KEY),
            Some(&viewer_sid),
            &tools_call(2, "backlog_tool_create", Value::Object(args.clone())),
        );
        assert_eq!(status, 200, "{body}");
        let r = response(&body, 2);
        assert_eq!(r["result"]["structuredContent"]["code"], "forbidden", "{r}");
        (status, rid_of(&headers))
    });
    check("mcp invalid", 2, &|| {
        let (status, headers, body) = post_mcp(
            addr,
            Some(OPERATOR_KEY),
            Some(&operator_sid),
            &tools_call(3, "backlog_tool_list", Value::Object(args.clone())),
        );
        let r = response(&body, 3);
        assert_eq!(
            r["result"]["structuredContent"]["code"], "invalid_input",
            "{r}"
        );
        assert!(
            r["result"]["structuredContent"]["error"]
                .as_str()
                .unwrap()
                .contains("FORGED"),
            "the agent-visible error echoes the name: {r}"
        );
        (status, rid_of(&headers))
    });
    // REST: a param whose value the guest's error echoes, and a header with a tab.
    check("rest param", 2, &|| {
        let bearer = format!("Bearer {OPERATOR_KEY}");
        let q: String = form_urlencoded::byte_serialize(forged.as_bytes()).collect();
        let (status, headers, body) = http(
            addr,
            "GET",
            &format!("/v1/backlog/items?status={q}"),
            &[("Authorization", &bearer), ("X-Request-Id", "a\tFORGED")],
            "",
        );
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("FORGED"),
            "the error echoes the value: {body}"
        );
        (status, rid_of(&headers))
    });
    check("rest execute", 2, &|| {
        let bearer = format!("Bearer {OPERATOR_KEY}");
        let body = json!({"tool": "backlog_tool", "action": "get", "id": forged}).to_string();
        let (status, headers, answer) = http(
            addr,
            "POST",
            "/v1/tools/execute",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        assert!(status >= 400, "{answer}");
        (status, rid_of(&headers))
    });
    let log = server.log();
    assert!(!log.contains("\nFORGED"), "{log}");

    // The CLI face, in both log formats: a param value with the injected text, echoed by the
    // agent-visible error, never starts a line; JSON lines stay one JSON document each.
    let env = env.var("RUST_LOG", "info");
    let run = env.call(
        "operator",
        "backlog_tool",
        "list",
        &json!({"status": forged}),
    );
    assert!(
        run.stdout.contains("FORGED"),
        "the error echoes it: {run:?}"
    );
    assert!(foreign_lines(&run.stderr).is_empty(), "{}", run.stderr);
    let run: Run = env
        .cmd()
        .args([
            "--log-format",
            "json",
            "call",
            "backlog_tool",
            "list",
            "--agent",
            "operator",
        ])
        .arg("--params-json")
        .arg(json!({"status": forged}).to_string())
        .output()
        .expect("run")
        .into();
    assert!(!run.stderr.trim().is_empty(), "no log lines: {run:?}");
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON log line ({e}): {line:?}"));
    }
}

/// Lines that are not one JSON-RPC message get the JSON-RPC error the specification names, on
/// stdio (`-32700` parse error: not JSON, not UTF-8, too deep, too long; `-32600`: not a
/// request) and over HTTP (status 400, not a plain-text 415), and each is logged.
#[test]
fn unreadable_messages_get_json_rpc_errors() {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let cases: Vec<(Vec<u8>, i64, Value)> = vec![
        (b"not json".to_vec(), -32700, Value::Null),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\xff\"}".to_vec(),
            -32700,
            Value::Null,
        ),
        (deep.into_bytes(), -32700, Value::Null),
        (
            br#"{"jsonrpc":"2.0","id":5,"method":7}"#.to_vec(),
            -32600,
            json!(5),
        ),
        (br#"[1,2,3]"#.to_vec(), -32600, Value::Null),
    ];

    // stdio
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["mcp", "--agent", "viewer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp");
    let mut stdin = child.stdin.take().unwrap();
    // Replies through a reader thread, so a line the server drops fails the test in time
    // instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let recv = || {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("no reply within 30 s: the line was dropped");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    for (bytes, code, id) in &cases {
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let reply = recv();
        assert_eq!(reply["error"]["code"], *code, "{reply}");
        assert_eq!(reply["id"], *id, "{reply}");
    }
    // A line over the limit (4 MiB) is refused without being kept.
    let long = vec![b' '; 5 << 20];
    stdin.write_all(&long).unwrap();
    stdin.write_all(b"x\n").unwrap();
    let reply = recv();
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    // The server still serves.
    writeln!(stdin, "{}", initialize()).unwrap();
    let init = recv();
    assert_eq!(init["id"], 1, "{init}");
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let logged = stderr
        .lines()
        .filter(|l| l.contains("refused an unreadable message"))
        .count();
    assert_eq!(logged, cases.len() + 1, "{stderr}");

    // HTTP
    let env = crate::http::env();
    let server = Server::start(&env);
    let addr = server.addr();
    for (bytes, code, id) in &cases {
        let body = String::from_utf8_lossy(bytes).into_owned();
        if bytes.len() != body.len() {
            continue; // raw bytes: sent below
        }
        let (status, headers, answer) = post_mcp(addr, Some(VIEWER_KEY), None, &body);
        assert_eq!(status, 400, "{body:.40}: {answer}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let v: Value = serde_json::from_str(&answer).expect("JSON-RPC error body");
        assert_eq!(v["error"]["code"], *code, "{v}");
        assert_eq!(v["id"], *id, "{v}");
    }
    // Invalid UTF-8 over HTTP.
    let mut stream = TcpStream::connect(addr).expect("connect");
    let bad = &cases[1].0;
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nAuthorization: Bearer {VIEWER_KEY}\r\n\
         Content-Length: {}\r\n\r\n",
        bad.len()
    )
    .unwrap();
    stream.write_all(bad).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("-32700"), "{raw}");
}

/// MCP calls take the router's admission: with `--max-in-flight 1` held by a slow REST call,
/// an MCP `tools/call` gets `unavailable` (REST stays responsive); MCP calls are counted in
/// `/metrics`; the access-log line and the call's line share the request id and name the
/// agent, tool and action.
#[test]
fn http_mcp_calls_share_the_routers_admission_and_metrics() {
    let env = crate::http::env().with_hostile();
    let server = crate::http::Server::start(&env, &["--max-in-flight", "1"]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(OPERATOR_KEY));
    let slow = std::thread::spawn(move || {
        let bearer = format!("Bearer {OPERATOR_KEY}");
        http(
            addr,
            "POST",
            "/v1/tools/execute",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &json!({"tool": "hostile", "action": "spin"}).to_string(),
        )
    });
    wait_in_flight(addr, 1);
    let (status, _, body) = post_mcp(
        addr,
        Some(OPERATOR_KEY),
        Some(&sid),
        &tools_call(2, "backlog_tool_list", json!({})),
    );
    assert_eq!(status, 200, "{body}");
    let r = response(&body, 2);
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["code"], "unavailable",
        "{r}"
    );
    let (status, _, _) = http(addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    let (status, _, _) = slow.join().unwrap();
    assert!(status >= 400);

    wait_in_flight(addr, 0);
    let (_, headers, body) = post_mcp(
        addr,
        Some(OPERATOR_KEY),
        Some(&sid),
        &tools_call(3, "backlog_tool_list", json!({})),
    );
    let r = response(&body, 3);
    assert_eq!(r["result"]["isError"], false, "{r}");
    let text = metrics(addr);
    for outcome in ["unavailable", "ok"] {
        let series = format!(
            "backlog_bridge_calls_total{{tool=\"backlog_tool\",action=\"list\",outcome=\"{outcome}\"}} 1\n"
        );
        assert!(text.contains(&series), "{series}: {text}");
    }
    assert!(
        text.contains(
            "backlog_bridge_call_duration_seconds_count{tool=\"backlog_tool\",action=\"list\"} 2"
        ),
        "{text}"
    );

    let rid = header(&headers, "x-request-id")
        .expect("request id")
        .to_owned();
    let log = log_when(&server, |log| {
        log.lines().filter(|l| l.contains(&rid)).count() >= 2
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&rid)).collect();
    let access = lines
        .iter()
        .find(|l| l.contains("http request"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let call = lines
        .iter()
        .find(|l| l.contains("tool call"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    for line in [access, call] {
        for field in [
            "agent=\"operator\"",
            "tool=\"backlog_tool\"",
            "action=\"list\"",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
}

/// SIGTERM while an MCP call runs: the call finishes and its result reaches the client, then
/// the server exits cleanly.
#[test]
fn sigterm_answers_mcp_calls_in_flight() {
    let env = crate::http::env().with_hostile();
    let mut server = crate::http::Server::start(&env, &[]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(OPERATOR_KEY));
    let call = std::thread::spawn(move || {
        post_mcp(
            addr,
            Some(OPERATOR_KEY),
            Some(&sid),
            &tools_call(2, "hostile_spin", json!({})),
        )
    });
    wait_in_flight(addr, 1);
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let (status, _, body) = call.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let r = response(&body, 2);
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r["result"]["structuredContent"]["code"].is_string(), "{r}");
    let exit = server.wait_exit();
    assert!(exit.success(), "{exit:?}: {}", server.log());
}

/// `/mcp` calls take the pipeline's admission and workers like REST calls: with
/// `--max-in-flight 8 --workers 2` and eight calls that run to their time limit, 32 more MCP
/// calls are answered `unavailable` at once (none queues), while `/readyz` answers and the
/// REST dashboard is refused with `unavailable` rather than waiting; every call is counted in
/// `/metrics`.
#[test]
fn http_mcp_admission_refuses_beyond_max_in_flight_and_rest_stays_responsive() {
    let env = crate::http::env().with_hostile();
    // Long enough that the eight admitted calls (two at a time) outlast the checks below.
    let matrix = env.config.join("rbac_tools_matrix.yml");
    let text = std::fs::read_to_string(&matrix).unwrap();
    let spin = "spin:          { entitlements: [tools.backlog.read], timeout_s: 1 }";
    assert!(text.contains(spin), "{text}");
    std::fs::write(
        &matrix,
        text.replace(
            spin,
            "spin:          { entitlements: [tools.backlog.read], timeout_s: 5 }",
        ),
    )
    .unwrap();
    let server = crate::http::Server::start(&env, &["--max-in-flight", "8", "--workers", "2"]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(OPERATOR_KEY));
    let spin_call = |id: u64, sid: String| {
        std::thread::spawn(move || {
            let (status, _, body) = post_mcp(
                addr,
                Some(OPERATOR_KEY),
                Some(&sid),
                &tools_call(id, "hostile_spin", json!({})),
            );
            assert_eq!(status, 200, "{body}");
            response(&body, id)
        })
    };
    let admitted: Vec<_> = (0..8).map(|i| spin_call(100 + i, sid.clone())).collect();
    wait_in_flight(addr, 8);
    let refused: Vec<_> = (0..32).map(|i| spin_call(200 + i, sid.clone())).collect();
    for r in refused {
        let r = r.join().unwrap();
        assert_eq!(r["result"]["isError"], true, "{r}");
        assert_eq!(
            r["result"]["structuredContent"]["code"], "unavailable",
            "{r}"
        );
    }
    let (status, _, body) = http(addr, "GET", "/readyz", &[], "");
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {OPERATOR_KEY}");
    let (status, _, body) = http(
        addr,
        "GET",
        "/v1/backlog/dashboard",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    // All of that happened while the eight admitted calls still ran.
    assert!(
        metrics(addr).contains("backlog_bridge_calls_in_flight 8\n"),
        "{}",
        metrics(addr)
    );
    for r in admitted {
        let r = r.join().unwrap();
        assert_eq!(r["result"]["structuredContent"]["code"], "timeout", "{r}");
    }
    let text = metrics(addr);
    for (outcome, n) in [("unavailable", 32), ("timeout", 8)] {
        let series = format!(
            "backlog_bridge_calls_total{{tool=\"hostile\",action=\"spin\",outcome=\"{outcome}\"}} {n}\n"
        );
        assert!(text.contains(&series), "{series}: {text}");
    }
}

#[test]
fn an_mcp_http_call_leaves_one_audit_line_under_its_request_id() {
    let env = crate::http::env();
    let server = crate::http::Server::start(&env, &[]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let sid = open_session(addr, Some(VIEWER_KEY));
    let (status, headers, body) = post_mcp(
        addr,
        Some(VIEWER_KEY),
        Some(&sid),
        &tools_call(2, "backlog_tool_list", json!({"limit": 1})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(response(&body, 2)["result"]["isError"], false, "{body}");
    let request_id = header(&headers, "x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {headers:?}"))
        .to_owned();
    let lines = crate::change::audit_lines(&env.ops.join("audit"));
    let calls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "call" && l["face"] == "mcp")
        .collect();
    assert_eq!(calls.len(), 1, "{lines:#?}");
    let line = calls[0];
    assert_eq!(line["request_id"], request_id.as_str(), "{line}");
    assert_eq!(line["actor"], "viewer", "{line}");
    assert_eq!(line["action"], "list", "{line}");
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["outcome"], "ok", "{line}");
    assert!(!format!("{lines:?}").contains(VIEWER_KEY));
}
