//! Isolation between callers (`docs/isolation.md`): the remembering test component
//! (`tests/components/remember`) keeps the params of its last `remember` in a static and
//! answers them to the next `recall` of the same instance. Agent `alice` remembers a secret,
//! agent `bob` recalls: every secret of alice's that bob sees is a leak. Over REST, MCP over
//! HTTP (two agents, a session each), CLI `batch` (a line per agent) and scheduled jobs,
//! sequential and with 8 parallel clients:
//! - under the defaults (a component file is `per-call`) and with `per-caller`: 0 leaks;
//! - with `shared` the reuse is visible (so these tests can fail);
//! - with `per-call` even alice never sees her own earlier call; with `per-caller` she does.
//!
//! And the builtin `backlog_tool`'s per-caller pool stays within its bound however many
//! agents call it (`backlog_bridge_instances_pooled`).

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::http::Server;
use crate::util::{Env, append};

/// The remembering test component.
const REMEMBER_WASM: &str = env!("REMEMBER_GUEST_WASM");

const ALICE_KEY: &str = "alice-key-0123456789abcdef";
const BOB_KEY: &str = "bob-key-0123456789abcdef";

/// Rounds of each sequential run.
const ROUNDS: usize = 20;

/// The shipped config plus tool `remember` (with `instances` when given, else the default)
/// and agents `alice` and `bob`, each with a key, both allowed both actions.
fn env(instances: Option<&str>) -> Env {
    let env = Env::new()
        .var("ALICE_API_KEY", ALICE_KEY)
        .var("BOB_API_KEY", BOB_KEY);
    let setting = instances
        .map(|i| format!("    instances: {i}\n"))
        .unwrap_or_default();
    append(
        &env.config.join("plugins.yml"),
        &format!("  remember:\n    component: {REMEMBER_WASM}\n{setting}"),
    );
    matrix(&env, &["alice", "bob"]);
    env
}

/// Adds tool `remember` and `agents` (key in `<AGENT>_API_KEY`, allowed `remember` and
/// `backlog_tool`'s reads) to the matrix.
fn matrix(env: &Env, agents: &[&str]) {
    let path = env.config.join("rbac_tools_matrix.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let agents: String = agents
        .iter()
        .map(|a| {
            format!(
                "  {a}:\n    entitlements: [tools.remember.use, tools.backlog.read]\n    api_key_env: {}_API_KEY\n",
                a.to_uppercase()
            )
        })
        .collect();
    let text = text
        .replacen(
            "tools:\n",
            "tools:
  remember:
    actions:
      remember: { entitlements: [tools.remember.use] }
      recall:   { entitlements: [tools.remember.use] }
      config:   { entitlements: [tools.remember.use] }
",
            1,
        )
        .replacen("\nagents:\n", &format!("\nagents:\n{agents}"), 1);
    std::fs::write(path, text).unwrap();
}

/// What one agent recalled: a secret (`alice-…`/`bob-…`) or nothing.
fn secret(recalled: &Value) -> Option<String> {
    recalled["recalled"]["secret"].as_str().map(str::to_owned)
}

/// Counts over a run: bob seeing alice's secret (a leak) and alice seeing her own.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Seen {
    leaks: usize,
    own: usize,
    rounds: usize,
}

/// `ROUNDS` × (alice remembers, bob recalls, alice recalls) through `call(agent, action,
/// params) -> result`.
fn sequential(mut call: impl FnMut(&str, &str, Value) -> Value) -> Seen {
    let mut seen = Seen::default();
    for i in 0..ROUNDS {
        let mine = format!("alice-{i}");
        let r = call("alice", "remember", json!({"secret": mine}));
        assert_eq!(r, json!({"remembered": true}));
        let theirs = call("bob", "recall", json!({}));
        if secret(&theirs).is_some_and(|s| s.starts_with("alice")) {
            seen.leaks += 1;
        }
        let own = call("alice", "recall", json!({}));
        if secret(&own).as_deref() == Some(mine.as_str()) {
            seen.own += 1;
        }
        seen.rounds += 1;
    }
    seen
}

/// What each setting must show in a sequential run.
#[track_caller]
fn expect(instances: Option<&str>, seen: Seen) {
    assert_eq!(seen.rounds, ROUNDS);
    match instances {
        // Default (a component file) and per-call: nothing is ever reused.
        None | Some("per-call") => assert_eq!((seen.leaks, seen.own), (0, 0), "{instances:?}"),
        // Reused for the same caller only.
        Some("per-caller") => assert_eq!((seen.leaks, seen.own), (0, ROUNDS), "{instances:?}"),
        // One instance serves everyone (the calls are sequential).
        Some("shared") => {
            assert_eq!((seen.leaks, seen.own), (ROUNDS, ROUNDS), "{instances:?}")
        }
        Some(other) => panic!("{other}"),
    }
}

const SETTINGS: [Option<&str>; 4] = [None, Some("per-call"), Some("per-caller"), Some("shared")];

fn key(agent: &str) -> &'static str {
    match agent {
        "alice" => ALICE_KEY,
        "bob" => BOB_KEY,
        other => panic!("no key for {other}"),
    }
}

/// One REST call (`POST /v1/tools/execute`) of tool `remember`.
fn rest(server: &Server, agent: &str, action: &str, params: Value) -> Value {
    server
        .post(
            "/v1/tools/execute",
            Some(key(agent)),
            &json!({"tool": "remember", "action": action, "params": params}),
        )
        .ok()
}

#[test]
fn rest_sequential_callers_share_nothing_unless_shared() {
    for instances in SETTINGS {
        let env = env(instances);
        let server = Server::start(&env, &[]);
        let seen = sequential(|agent, action, params| rest(&server, agent, action, params));
        eprintln!("REST sequential, {instances:?}: {seen:?}");
        expect(instances, seen);
    }
}

/// 8 parallel clients (4 as alice, 4 as bob), each remembering its own secret and recalling
/// `ROUNDS` times: what each recalls is its own agent's, or nothing.
/// `call(client, agent, action, params)`, `client` in 0..8.
fn concurrent(call: impl Fn(usize, &str, &str, Value) -> Value + Sync) -> (usize, usize) {
    let (leaks, own) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let call = &call;
                s.spawn(move || {
                    let (agent, other) = if t < 4 {
                        ("alice", "bob")
                    } else {
                        ("bob", "alice")
                    };
                    let (mut leaks, mut own) = (0, 0);
                    for i in 0..ROUNDS {
                        call(
                            t,
                            agent,
                            "remember",
                            json!({"secret": format!("{agent}-{t}-{i}")}),
                        );
                        match secret(&call(t, agent, "recall", json!({}))) {
                            Some(s) if s.starts_with(other) => leaks += 1,
                            Some(_) => own += 1,
                            None => {}
                        }
                    }
                    (leaks, own)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    (leaks, own)
}

#[test]
fn rest_eight_parallel_clients_see_no_other_callers_data() {
    for instances in [None, Some("per-caller")] {
        let env = env(instances);
        let server = Server::start(&env, &["--workers", "4"]);
        let (leaks, own) = concurrent(|_, a, action, p| rest(&server, a, action, p));
        eprintln!(
            "REST 8 clients, {instances:?}: {leaks} leaks, {own} own of {}",
            8 * ROUNDS
        );
        assert_eq!(leaks, 0, "{instances:?}");
        if instances.is_none() {
            assert_eq!(own, 0, "per-call reused an instance");
        }
    }
}

// ---------------------------------------------------------------------------------------
// MCP over HTTP: raw JSON-RPC, a session per agent.

/// One JSON-RPC message to `/mcp` as `agent` in `session`.
fn mcp_post(
    addr: SocketAddr,
    agent: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Vec<(String, String)>, String) {
    let bearer = format!("Bearer {}", key(agent));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", bearer.as_str()),
    ];
    if let Some(s) = session {
        headers.push(("Mcp-Session-Id", s));
    }
    crate::mcp::http(addr, "POST", "/mcp", &headers, &body.to_string())
}

/// `initialize` + `notifications/initialized` as `agent`: the session id.
fn open_session(addr: SocketAddr, agent: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "isolation", "version": "0"}}});
    let (status, headers, body) = mcp_post(addr, agent, None, &init);
    assert_eq!(status, 200, "{body}");
    let id = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no session id: {headers:?}"));
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = mcp_post(addr, agent, Some(&id), &done);
    assert_eq!(status, 202, "{body}");
    id
}

/// `tools/call remember_<action>` in `session`: the result's structured content.
fn mcp_call(addr: SocketAddr, agent: &str, session: &str, action: &str, params: Value) -> Value {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": format!("remember_{action}"), "arguments": params}});
    let (status, _, body) = mcp_post(addr, agent, Some(session), &call);
    assert_eq!(status, 200, "{body}");
    let messages: Vec<Value> = match serde_json::from_str::<Value>(body.trim()) {
        Ok(v) => vec![v],
        Err(_) => body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect(),
    };
    let response = messages
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no response in {body:?}"));
    let result = &response["result"];
    assert_ne!(result["isError"], true, "{response}");
    result["structuredContent"].clone()
}

fn addr(server: &Server) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

#[test]
fn mcp_http_sessions_of_two_agents_share_nothing_unless_shared() {
    for instances in SETTINGS {
        let env = env(instances);
        let server = Server::start(&env, &[]);
        let addr = addr(&server);
        let sessions = [
            ("alice", open_session(addr, "alice")),
            ("bob", open_session(addr, "bob")),
        ];
        let session = |agent: &str| {
            sessions
                .iter()
                .find(|(a, _)| *a == agent)
                .map(|(_, s)| s.clone())
                .unwrap()
        };
        let seen = sequential(|agent, action, params| {
            mcp_call(addr, agent, &session(agent), action, params)
        });
        eprintln!("MCP HTTP sequential, {instances:?}: {seen:?}");
        expect(instances, seen);
        if instances == Some("per-caller") {
            // 8 parallel clients, each in its own session.
            let sessions: Vec<(String, String)> = (0..8)
                .map(|t| {
                    let agent = if t < 4 { "alice" } else { "bob" };
                    (agent.to_owned(), open_session(addr, agent))
                })
                .collect();
            let (leaks, own) = concurrent(|t, agent, action, params| {
                assert_eq!(sessions[t].0, agent);
                mcp_call(addr, agent, &sessions[t].1, action, params)
            });
            eprintln!(
                "MCP HTTP 8 clients, per-caller: {leaks} leaks, {own} own of {}",
                8 * ROUNDS
            );
            assert_eq!(leaks, 0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// CLI batch: one process, a line per agent.

#[test]
fn batch_lines_of_two_agents_share_nothing_unless_shared() {
    for instances in SETTINGS {
        let env = env(instances);
        let mut lines = Vec::new();
        for i in 0..ROUNDS {
            for (agent, action, params) in [
                ("alice", "remember", json!({"secret": format!("alice-{i}")})),
                ("bob", "recall", json!({})),
                ("alice", "recall", json!({})),
            ] {
                lines.push(
                    json!({"agent": agent, "tool": "remember", "action": action, "params": params}),
                );
            }
        }
        let out = env.batch(&lines);
        assert_eq!(out.len(), lines.len());
        let mut answers = out.into_iter();
        let seen = sequential(|_, _, _| answers.next().unwrap());
        eprintln!("CLI batch, {instances:?}: {seen:?}");
        expect(instances, seen);
    }
}

/// The config goes to an instance once: on its first call, `none` after it while it is
/// unchanged; a new instance (another caller's, or any `per-call` one) gets it again.
#[test]
fn a_warm_instance_is_sent_its_config_once() {
    for instances in ["per-caller", "per-call"] {
        let env = env(Some(instances));
        let line = |agent: &str| json!({"agent": agent, "tool": "remember", "action": "config", "params": {}});
        let out = env.batch(&[line("alice"), line("alice"), line("alice"), line("bob")]);
        let got: Vec<(bool, u64)> = out
            .iter()
            .map(|o| (o["sent"].as_bool().unwrap(), o["calls"].as_u64().unwrap()))
            .collect();
        let want = match instances {
            "per-caller" => vec![(true, 1), (false, 2), (false, 3), (true, 1)],
            _ => vec![(true, 1); 4],
        };
        assert_eq!(got, want, "{instances}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Scheduled jobs: each counts as its agent.

#[test]
fn scheduled_jobs_of_two_agents_share_nothing_unless_shared() {
    for instances in [None, Some("per-caller"), Some("shared")] {
        let env = env(instances);
        // Every minute alice's job remembers, then bob's job recalls; bob's run fails
        // (`conflict`, naming what it recalled) when it recalls anything.
        std::fs::write(
            env.ops.join("task_registry.yml"),
            "jobs:
  - { id: alice_remembers, schedule: '* * * * *', tool: remember, action: remember, agent: alice, params: { secret: alice-job } }
  - { id: bob_recalls, schedule: '* * * * *', tool: remember, action: recall, agent: bob, params: { as_error: true }, after: [alice_remembers] }
",
        )
        .unwrap();
        let run: crate::util::Run = env
            .cmd()
            .args([
                "scheduler",
                "--from",
                "2026-11-27T10:00:00Z",
                "--until",
                "2026-11-27T10:09:00Z",
            ])
            .output()
            .expect("run scheduler")
            .into();
        assert_eq!(run.code, 0, "{run:?}");
        let summary = run.json();
        let runs = std::fs::read_to_string(env.ops.join("scheduler/runs.jsonl")).unwrap();
        let leaks = runs
            .lines()
            .filter(|l| l.contains("bob_recalls") && l.contains("alice-job"))
            .count();
        eprintln!("scheduler, {instances:?}: {summary}, {leaks} leaks in 10 minutes");
        if instances == Some("shared") {
            assert_eq!(summary["failed"], 10, "{summary}");
            assert!(leaks >= 10, "{runs}");
        } else {
            assert_eq!(summary["ok"], 20, "{summary}");
            assert_eq!(leaks, 0, "{runs}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pool's bound.

/// `backlog_bridge_instances_pooled{plugin=…}` from `/metrics`.
fn pooled(server: &Server, plugin: &str) -> usize {
    let text = server.get("/metrics", None).body;
    let prefix = format!("backlog_bridge_instances_pooled{{plugin=\"{plugin}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in {text}"))
        .parse()
        .unwrap()
}

/// 40 agents each call the builtin `backlog_tool` (per-caller by default) and `remember`
/// (per-caller, `max_pooled: 3`): the pool keeps at most the plugin's bound of warm
/// instances (16 by default), the least recently used callers' going first.
#[test]
fn per_caller_pools_stay_within_their_bound_as_agents_grow() {
    let agents: Vec<String> = (0..40).map(|i| format!("agent{i}")).collect();
    let names: Vec<&str> = agents.iter().map(String::as_str).collect();
    let mut env = Env::new();
    for a in &agents {
        env = env.var(
            &format!("{}_API_KEY", a.to_uppercase()),
            &format!("{a}-key-0123456789abcdef"),
        );
    }
    append(
        &env.config.join("plugins.yml"),
        &format!(
            "  remember:\n    component: {REMEMBER_WASM}\n    instances: per-caller\n    max_pooled: 3\n"
        ),
    );
    matrix(&env, &names);
    let server = Server::start(&env, &[]);
    for (i, a) in agents.iter().enumerate() {
        let key = format!("{a}-key-0123456789abcdef");
        server
            .post(
                "/v1/tools/execute",
                Some(&key),
                &json!({"tool": "backlog_tool", "action": "list", "params": {"limit": 1}}),
            )
            .ok();
        server
            .post(
                "/v1/tools/execute",
                Some(&key),
                &json!({"tool": "remember", "action": "recall", "params": {}}),
            )
            .ok();
        let (backlog, remember) = (pooled(&server, "backlog_tool"), pooled(&server, "remember"));
        assert!(backlog <= 16, "after {} agents: {backlog}", i + 1);
        assert!(remember <= 3, "after {} agents: {remember}", i + 1);
        if i >= 16 {
            assert_eq!((backlog, remember), (16, 3), "after {} agents", i + 1);
        }
    }
}
