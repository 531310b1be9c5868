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

/// One HTTP/1.1 exchange on a fresh connection: status, lower-cased headers, body.
fn http(
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
