//! `cargo bench -p backlog-bridge --bench mcp` — the MCP face's cost for `tools/call` of `get`
//! on a small JSONL store (warm instances everywhere):
//!
//! (a) `Bridge::call` in-process — the baseline;
//! (b) `McpHandler::call` in-process — plus argument checks (RBAC, size, schema) and the hop to
//!     the blocking pool;
//! (c) `backlog-bridge mcp` over stdio — one JSON-RPC line out, one back, through rmcp and a
//!     pipe, measured by the client.
//!
//! (d) `tools/call` over Streamable HTTP to `/mcp` of a `serve` process on loopback (session
//!     from an `initialize` handshake, one keep-alive connection, bearer key).
//!
//! The MCP overhead is (c) − (a) at p50; issue #7's target is ≤ 200 µs over stdio.
//!
//! Options (env): BENCH_ITERS=2000.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use backlog_bridge::backlog::Backend;
use backlog_bridge::mcp::McpHandler;
use backlog_bridge::{Bridge, CallRequest, Settings};
use serde_json::{Value, json};

#[path = "common/store.rs"]
mod store;
use store::{measure, pct};

/// The product binary's allocator (`src/main.rs`), so in-process figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_backlog-bridge");
const NOW: &str = "2026-11-27T10:00:00Z";

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    // SAFETY: single-threaded at this point; the variables configure the bridge below and are
    // inherited by the `mcp` child.
    unsafe {
        std::env::set_var("BACKLOG_BRIDGE_CACHE_DIR", &cache);
        std::env::set_var("BACKLOG_BRIDGE_NOW", NOW);
        std::env::set_var("BACKLOG_BACKEND", "jsonl");
        std::env::set_var("RUST_LOG", "warn");
    }
    println!("backlog-bridge MCP benchmark ({iters} iterations per figure; p50 / p99)");

    let ops = tmp.path().join("ops");
    let bridge = Arc::new(load_bridge(&ops));
    let mut ids = Vec::new();
    for i in 0..10 {
        let item = call(
            &bridge,
            "create",
            &json!({"env": "prod", "service": format!("svc-{i}"), "category": "refactor",
                    "title": format!("bench item {i}")})
            .to_string(),
        );
        ids.push(item["id"].as_str().expect("id").to_owned());
    }
    let get = json!({"id": ids[3]});
    let get_text = get.to_string();

    // (a)
    for _ in 0..50 {
        call(&bridge, "get", &get_text);
    }
    let direct = measure(iters, || {
        call(&bridge, "get", &get_text);
    });
    report("(a) Bridge::call `get`, in-process", &direct, None);

    // (b)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handler = McpHandler::for_agent(bridge.clone(), "operator");
    let args = get.as_object().cloned();
    let handler_call = || {
        let result = runtime
            .block_on(handler.call("operator", "backlog_tool_get", args.clone()))
            .expect("known tool");
        assert_eq!(result.is_error, Some(false), "{result:?}");
    };
    for _ in 0..50 {
        handler_call();
    }
    let in_process = measure(iters, handler_call);
    report("(b) McpHandler::call `get`, in-process", &in_process, None);

    // (c)
    let mut server = StdioServer::spawn(&ops);
    for _ in 0..50 {
        server.get(&get);
    }
    let stdio = measure(iters, || server.get(&get));
    report("(c) tools/call `get` over stdio (round trip)", &stdio, None);
    server.close();

    // (d)
    let http = HttpServer::spawn(&ops);
    let session = http.initialize();
    for _ in 0..50 {
        http.get(&session, &get);
    }
    let over_http = measure(iters, || http.get(&session, &get));
    report(
        "(d) tools/call `get` over HTTP /mcp (round trip)",
        &over_http,
        None,
    );

    println!();
    overhead("MCP layer in-process (b) - (a)", &in_process, &direct, None);
    overhead(
        "MCP over stdio (c) - (a)",
        &stdio,
        &direct,
        Some(Duration::from_micros(200)),
    );
    overhead("MCP over HTTP (d) - (a)", &over_http, &direct, None);
}

const BENCH_KEY: &str = "bench-operator-key";

/// `backlog-bridge serve` on a free loopback port (killed on drop), and a keep-alive client.
struct HttpServer {
    child: std::process::Child,
    url: String,
    agent: ureq::Agent,
}

impl HttpServer {
    fn spawn(ops: &Path) -> HttpServer {
        let mut child = Command::new(BIN)
            .arg("--config-dir")
            .arg(repo_config())
            .arg("--ops-dir")
            .arg(ops)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("OPERATOR_API_KEY", BENCH_KEY)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stderr.read_line(&mut line).expect("read log") == 0 {
                panic!("serve exited before listening");
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect::<String>();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        HttpServer {
            child,
            url: format!("http://{addr}/mcp"),
            agent: ureq::Agent::new_with_defaults(),
        }
    }

    fn post(&self, session: Option<&str>, body: &Value) -> (Option<String>, String) {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Authorization", format!("Bearer {BENCH_KEY}"))
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if let Some(s) = session {
            req = req
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", "2025-11-25");
        }
        let resp = req.send(body.to_string()).expect("POST /mcp");
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.into_body().read_to_string().expect("body");
        (session, text)
    }

    /// The `initialize` handshake; the session id.
    fn initialize(&self) -> String {
        let (session, text) = self.post(
            None,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}}),
        );
        assert!(text.contains("backlog-bridge"), "{text}");
        let session = session.expect("an Mcp-Session-Id");
        self.post(
            Some(&session),
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        session
    }

    fn get(&self, session: &str, args: &Value) {
        let (_, text) = self.post(
            Some(session),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "backlog_tool_get", "arguments": args}}),
        );
        assert!(text.contains("\"isError\":false"), "{text}");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `backlog-bridge mcp --agent operator` with a completed handshake.
struct StdioServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next_id: u64,
    line: String,
}

impl StdioServer {
    fn spawn(ops: &Path) -> StdioServer {
        let mut child = Command::new(BIN)
            .arg("--config-dir")
            .arg(repo_config())
            .arg("--ops-dir")
            .arg(ops)
            .args(["mcp", "--agent", "operator"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut s = StdioServer {
            child,
            stdin,
            stdout,
            next_id: 1,
            line: String::new(),
        };
        let init = s.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "0"}}),
        );
        assert!(init.contains("backlog-bridge"), "{init}");
        writeln!(
            s.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .expect("write");
        s
    }

    fn request(&mut self, method: &str, params: Value) -> &str {
        let id = self.next_id;
        self.next_id += 1;
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .expect("write");
        self.stdin.flush().expect("flush");
        self.line.clear();
        self.stdout.read_line(&mut self.line).expect("read");
        &self.line
    }

    fn get(&mut self, args: &Value) {
        let reply = self.request(
            "tools/call",
            json!({"name": "backlog_tool_get", "arguments": args}),
        );
        assert!(reply.contains("\"isError\":false"), "{reply}");
    }

    fn close(mut self) {
        drop(self.stdin);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "mcp exited with {status:?}");
    }
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn load_bridge(ops: &Path) -> Bridge {
    let mut settings = Settings::from_env(repo_config(), ops.to_owned()).expect("settings");
    settings.backend = Backend::Jsonl;
    Bridge::load(settings).expect("bridge")
}

fn call(bridge: &Bridge, action: &str, params: &str) -> Value {
    let req = CallRequest {
        agent: "operator",
        tool: "backlog_tool",
        action,
        params,
    };
    bridge
        .call(&req)
        .unwrap_or_else(|e| panic!("{action} {params}: {e}"))
        .to_value()
}

fn report(name: &str, v: &[Duration], target: Option<Duration>) {
    let (p50, p99) = (pct(v, 0.50), pct(v, 0.99));
    let verdict = match target {
        Some(t) if p50 <= t => format!("  (target p50 <= {t:?}: met)"),
        Some(t) => format!("  (target p50 <= {t:?}: MISSED)"),
        None => String::new(),
    };
    println!("{name:<48} p50 {:>10.1?}  p99 {:>10.1?}{verdict}", p50, p99);
}

fn overhead(name: &str, with: &[Duration], base: &[Duration], target: Option<Duration>) {
    let diff = |p| pct(with, p).saturating_sub(pct(base, p));
    let (p50, p99) = (diff(0.50), diff(0.99));
    let verdict = match target {
        Some(t) if p50 <= t => format!("  (target p50 <= {t:?}: met)"),
        Some(t) => format!("  (target p50 <= {t:?}: MISSED)"),
        None => String::new(),
    };
    println!("{name:<48} p50 {:>10.1?}  p99 {:>10.1?}{verdict}", p50, p99);
}
