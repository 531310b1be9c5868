//! The router (`backlog-bridge serve`) over loopback: auth, RBAC per route, the runbook's
//! calls, HTTP statuses, concurrency against a sequential replay, SIGTERM under load.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::Env;

pub(crate) const OPERATOR_KEY: &str = "op-key-0123456789abcdef";
pub(crate) const VIEWER_KEY: &str = "view-key-0123456789abcdef";
pub(crate) const SCHEDULER_KEY: &str = "sched-key-0123456789abcdef";

/// An installation with the three shipped agents' keys set.
pub(crate) fn env() -> Env {
    Env::new()
        .var("OPERATOR_API_KEY", OPERATOR_KEY)
        .var("VIEWER_API_KEY", VIEWER_KEY)
        .var("SCHEDULER_API_KEY", SCHEDULER_KEY)
}

/// A running `serve` process on a free loopback port; killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    client: ureq::Agent,
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the error object with this status and code; returns the message.
    #[track_caller]
    pub(crate) fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert_eq!(body["code"], code, "{self:?}");
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "{self:?}");
        message
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub(crate) fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{self:?}");
        self.json()
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0 ARGS…` and waits until `/healthz` answers.
    pub(crate) fn start(env: &Env, args: &[&str]) -> Server {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>();
                    let _ = tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not start listening: {}", stderr.lock().unwrap());
            }
        };
        let server = Server {
            child,
            base: format!("http://{addr}"),
            stderr,
            reader: Some(reader),
            client: client(),
        };
        server.wait_healthy();
        server
    }

    /// Polls `/healthz` with a bounded number of tries.
    fn wait_healthy(&self) {
        for _ in 0..100 {
            if self.get("/healthz", None).status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20)); // retry interval of a bounded poll
        }
        panic!("/healthz never answered 200: {}", self.log());
    }

    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The log once `found` holds for it: lines reach the pipe before the response leaves,
    /// but the reader thread may not have read them yet (bounded poll).
    #[track_caller]
    pub(crate) fn log_when(&self, found: impl Fn(&str) -> bool) -> String {
        for _ in 0..500 {
            let log = self.log();
            if found(&log) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10)); // retry interval of a bounded poll
        }
        panic!("the expected log line never came: {}", self.log());
    }

    /// `kill -9` (SIGKILL), then waits for the exit and the whole log.
    pub(crate) fn kill_hard(&mut self) {
        let _ = self.child.kill();
        self.wait_exit();
    }

    /// Waits for the process to exit and for its whole log to be read.
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        send(&self.client, &self.base, method, path, key, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub(crate) fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.send("GET", path, key, None)
    }

    pub(crate) fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        self.send("POST", path, key, Some(body.to_string().into_bytes()))
    }

    /// `POST /v1/tools/execute` with a flat body.
    pub(crate) fn execute(&self, key: &str, action: &str, params: &Value) -> Resp {
        let mut body = json!({"tool": "backlog_tool", "action": action});
        if let Some(p) = params.as_object() {
            for (k, v) in p {
                body[k] = v.clone();
            }
        }
        self.post("/v1/tools/execute", Some(key), &body)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(
    client: &ureq::Agent,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<Resp, ureq::Error> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let resp = match body {
        Some(b) => client.run(
            req.header("Content-Type", "application/json")
                .body(b)
                .expect("request"),
        )?,
        None => client.run(req.body(()).expect("request"))?,
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp.into_body().read_to_string()?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

#[test]
fn no_key_or_a_wrong_key_is_401_and_never_logged() {
    let env = env();
    let server = Server::start(&env, &[]);
    let wrong = "wrong-key-S3CRET-value";
    let routes: [(&str, &str); 5] = [
        ("GET", "/v1/tools"),
        ("POST", "/v1/tools/execute"),
        ("GET", "/v1/backlog/dashboard?env=prod"),
        ("POST", "/v1/backlog/items"),
        ("GET", "/v1/backlog/items/bl_000000000001"),
    ];
    for (method, path) in routes {
        let body =
            (method == "POST").then(|| br#"{"tool":"backlog_tool","action":"list"}"#.to_vec());
        for key in [None, Some(wrong), Some(""), Some(&OPERATOR_KEY[1..])] {
            let resp = server.send(method, path, key, body.clone());
            resp.error(401, "unauthenticated");
            assert!(
                resp.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{resp:?}"
            );
        }
        // Another scheme than Bearer, with a valid key, is not a login either.
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", server.base))
            .header("Authorization", format!("Basic {OPERATOR_KEY}"));
        if method == "POST" {
            req = req.header("Content-Type", "application/json");
        }
        let resp = server
            .client
            .run(req.body(body.clone().unwrap_or_default()).unwrap())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path}");
    }
    // The same routes work with the key; nothing was written by the refused POSTs.
    assert_eq!(server.get("/v1/tools", Some(OPERATOR_KEY)).status, 200);
    assert!(!env.backlog_dir().join("items.jsonl").exists());
    let log = server.log_when(|l| l.contains("unauthenticated"));
    for secret in [wrong, OPERATOR_KEY, VIEWER_KEY, SCHEDULER_KEY] {
        assert!(!log.contains(secret), "the log shows a key: {log}");
    }
}

#[test]
fn an_agent_whose_key_variable_is_unset_cannot_log_in() {
    let env = Env::new().var("OPERATOR_API_KEY", OPERATOR_KEY);
    let server = Server::start(&env, &[]);
    assert_eq!(server.get("/v1/tools", Some(OPERATOR_KEY)).status, 200);
    // An empty Bearer value never matches an agent without a key.
    server
        .send("GET", "/v1/tools", Some(" "), None)
        .error(401, "unauthenticated");
    assert!(
        server.log().contains("$VIEWER_API_KEY is not set"),
        "{}",
        server.log()
    );
}

/// Every write and admin route for the read-only agent: 403 naming the entitlement, nothing
/// written, and the guest never ran (no call line in the log).
#[test]
fn viewer_is_refused_every_write_and_admin_route() {
    let env = env();
    let server = Server::start(&env, &[]);
    let id = "bl_000000000001";
    let write = "tools.backlog.write";
    let admin = "tools.backlog.admin";
    let item = json!({"env":"prod","service":"gw","category":"refactor","title":"t"});
    let rest: Vec<(String, Value, &str)> = vec![
        ("/v1/backlog/items".into(), item.clone(), write),
        (
            format!("/v1/backlog/items/{id}/status"),
            json!({"status":"done"}),
            write,
        ),
        (
            format!("/v1/backlog/items/{id}/comments"),
            json!({"message":"m"}),
            write,
        ),
        (
            "/v1/backlog/generate/weekly?env=prod".into(),
            json!({}),
            admin,
        ),
        (
            "/v1/backlog/generate/daily?env=prod".into(),
            json!({}),
            admin,
        ),
        (
            "/v1/backlog/cleanup".into(),
            json!({"retention_days": 1}),
            admin,
        ),
    ];
    for (path, body, entitlement) in &rest {
        let message = server
            .post(path, Some(VIEWER_KEY), body)
            .error(403, "forbidden");
        assert!(
            message.contains(&format!("`{entitlement}`")),
            "{path}: {message}"
        );
        assert!(message.contains("agent `viewer`"), "{message}");
        // A malformed body does not change the answer: 403 comes before 400.
        let resp = server.send("POST", path, Some(VIEWER_KEY), Some(b"{not json".to_vec()));
        resp.error(403, "forbidden");
    }
    let actions: [(&str, Value, &str); 7] = [
        ("create", item.clone(), write),
        (
            "upsert",
            json!({"dedupe_key":"k","env":"prod","service":"gw","category":"refactor","title":"t"}),
            write,
        ),
        ("set_status", json!({"id": id, "status": "done"}), write),
        ("add_comment", json!({"id": id, "message": "m"}), write),
        ("auto_generate_weekly", json!({"env":"prod"}), admin),
        ("auto_generate_daily", json!({"env":"prod"}), admin),
        ("cleanup", json!({"retention_days": 1}), admin),
    ];
    for (action, params, entitlement) in &actions {
        let message = server
            .execute(VIEWER_KEY, action, params)
            .error(403, "forbidden");
        assert!(
            message.contains(&format!("`{entitlement}` for backlog_tool.{action}")),
            "{action}: {message}"
        );
        // 403 before 400: invalid params do not turn the refusal into a validation error.
        server
            .execute(VIEWER_KEY, action, &json!({"bogus": 1}))
            .error(403, "forbidden");
    }
    // The scheduler holds admin but not read: the read routes are refused to it.
    let message = server
        .get("/v1/backlog/dashboard?env=prod", Some(SCHEDULER_KEY))
        .error(403, "forbidden");
    assert!(message.contains("`tools.backlog.read`"), "{message}");
    server
        .get("/v1/backlog/items", Some(SCHEDULER_KEY))
        .error(403, "forbidden");
    assert!(!env.backlog_dir().join("items.jsonl").exists());
    // Once the access log shows all 28 refusals, no call line may be among them.
    let log = server.log_when(|l| l.matches("status=403").count() >= 28);
    assert!(!log.contains("tool call"), "a guest ran: {log}");
}

/// Runbook §3.2 (HTTP trigger and tool-call body), §4 (cleanup body), §6 (dashboard).
#[test]
fn runbook_calls_work_for_the_scheduler() {
    let env = env();
    let reports = env.ops.join("reports/platform");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::copy(
        crate::util::repo_config().join("../examples/reports/platform/2026-48.json"),
        reports.join("2026-48.json"),
    )
    .unwrap();
    let server = Server::start(&env, &[]);
    let first = server
        .send(
            "POST",
            "/v1/backlog/generate/weekly?env=prod",
            Some(SCHEDULER_KEY),
            None,
        )
        .ok();
    let created = first["created"].as_u64().unwrap_or(0);
    assert!(created > 0, "{first}");
    // Runbook §3.2's tool call, exactly as written there.
    let body = json!({"tool": "backlog_tool", "action": "auto_generate_weekly", "env": "prod"});
    let again = server
        .post("/v1/tools/execute", Some(SCHEDULER_KEY), &body)
        .ok();
    assert_eq!(again["created"], 0, "{again}");
    // The same through the nested form.
    let nested = json!({"tool": "backlog_tool", "action": "auto_generate_weekly", "params": {"env": "prod"}});
    assert_eq!(
        server
            .post("/v1/tools/execute", Some(SCHEDULER_KEY), &nested)
            .ok()["created"],
        0
    );
    // Runbook §4's cleanup body.
    let cleanup = json!({"tool": "backlog_tool", "action": "cleanup", "retention_days": 180});
    let done = server
        .post("/v1/tools/execute", Some(SCHEDULER_KEY), &cleanup)
        .ok();
    assert_eq!(done["dry_run"], false, "{done}");
    // Runbook §6: the dashboard over HTTP, for a reader.
    let dash = server
        .get("/v1/backlog/dashboard?env=prod", Some(VIEWER_KEY))
        .ok();
    assert_eq!(dash["total"].as_u64(), Some(created), "{dash}");
    for key in [
        "status_counts",
        "priority_counts",
        "overdue_count",
        "overdue",
        "top_services",
    ] {
        assert!(dash.get(key).is_some(), "{key} missing: {dash}");
    }
    // The actor of generated items is the authenticated agent.
    let items = server
        .get("/v1/backlog/items?env=prod&limit=1", Some(VIEWER_KEY))
        .ok();
    let id = items["items"][0]["id"].as_str().unwrap().to_owned();
    let events = server
        .get(&format!("/v1/backlog/items/{id}/events"), Some(VIEWER_KEY))
        .ok();
    assert_eq!(events["events"][0]["actor"], "scheduler", "{events}");
}

/// The REST routes are the actions they name; the authenticated agent is the actor.
#[test]
fn rest_routes_call_their_actions() {
    let env = env();
    let server = Server::start(&env, &[]);
    let op = Some(OPERATOR_KEY);
    let item = server
        .post(
            "/v1/backlog/items",
            op,
            &json!({"env":"prod","service":"gateway","category":"refactor","title":"Split","priority":"P0","due_date":"2026-11-01"}),
        )
        .ok();
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .get(&format!("/v1/backlog/items/{id}"), Some(VIEWER_KEY))
            .ok(),
        item
    );
    let moved = server
        .post(
            &format!("/v1/backlog/items/{id}/status"),
            op,
            &json!({"status":"in_progress","comment":"on it"}),
        )
        .ok();
    assert_eq!(moved["status"], "in_progress");
    let comment = server
        .post(
            &format!("/v1/backlog/items/{id}/comments"),
            op,
            &json!({"message":"drafted"}),
        )
        .ok();
    assert_eq!(
        (&comment["type"], &comment["actor"]),
        (&json!("commented"), &json!("operator"))
    );
    let with_events = server
        .get(&format!("/v1/backlog/items/{id}?include_events=true"), op)
        .ok();
    assert_eq!(
        with_events["events"].as_array().map(Vec::len),
        Some(3),
        "{with_events}"
    );
    let events = server
        .get(&format!("/v1/backlog/items/{id}/events?limit=2"), op)
        .ok();
    assert_eq!(events["events"].as_array().map(Vec::len), Some(2));
    // Lists: comma-separated and repeated status, overdue filter.
    for q in [
        "status=open,in_progress",
        "status=open&status=in_progress",
        "status=in_progress&overdue=true",
    ] {
        let page = server.get(&format!("/v1/backlog/items?{q}"), op).ok();
        assert_eq!(page["total"], 1, "{q}: {page}");
    }
    let none = server
        .get("/v1/backlog/items?status=open&overdue=false", op)
        .ok();
    assert_eq!(none["total"], 0, "{none}");
    // The path id wins only when the body agrees with it.
    server
        .post(
            &format!("/v1/backlog/items/{id}/status"),
            op,
            &json!({"id":"bl_000000000009","status":"done"}),
        )
        .error(400, "invalid_input");
    // Tool errors keep their codes and statuses.
    server
        .get("/v1/backlog/items/bl_00000000dead", op)
        .error(404, "not_found");
    let dup =
        json!({"env":"prod","service":"gw","category":"refactor","title":"a","dedupe_key":"dup:1"});
    server.post("/v1/backlog/items", op, &dup).ok();
    server
        .post("/v1/backlog/items", op, &dup)
        .error(409, "conflict");
    let message = server
        .execute(OPERATOR_KEY, "get", &json!({"id": id, "bogus": true}))
        .error(400, "invalid_input");
    assert!(message.contains("bogus"), "{message}");
    server
        .send("POST", "/v1/backlog/generate/weekly?env=prod", op, None)
        .error(412, "precondition_failed");
    let dry = server
        .post("/v1/backlog/cleanup", op, &json!({"dry_run": true}))
        .ok();
    assert_eq!(dry["dry_run"], true);
    // Each response carries the request id the access log and the call's log line share.
    let resp = server.get("/v1/backlog/dashboard?env=prod", op);
    let rid = resp.header("x-request-id").unwrap().to_owned();
    assert!(rid.starts_with("req_"), "{rid}");
    let log = server.log_when(|l| {
        l.lines()
            .any(|l| l.contains(&rid) && l.contains("http request"))
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&rid)).collect();
    assert!(
        lines.iter().any(|l| l.contains("tool call"))
            && lines.iter().any(|l| l.contains("http request")),
        "{lines:?}"
    );
}

#[test]
fn http_errors_have_their_statuses_and_name_the_problem() {
    let env = env();
    let server = Server::start(&env, &[]);
    let op = Some(OPERATOR_KEY);
    // Unknown route: 404 JSON (also without a key).
    for key in [op, None] {
        let message = server.get("/v1/nope", key).error(404, "not_found");
        assert!(message.contains("/v1/nope"), "{message}");
        // The REST table's routes are named by their shared prefix.
        assert!(
            message.ends_with(
                "(routes: /v1/tools/execute, /v1/tools, /v1/explain, /v1/backlog/…, /healthz, \
                 /readyz, /metrics, /openapi.json, /ui)"
            ),
            "{message}"
        );
    }
    // Where a REST route's params come from: body and query must agree (the body's value is
    // named first), a body-only route ignores the query, query values are typed.
    let message = server
        .post(
            "/v1/backlog/generate/weekly?env=prod",
            op,
            &json!({"env": "dev"}),
        )
        .error(400, "invalid_input");
    assert_eq!(
        message,
        r#"`env` is given twice with different values ("dev" and "prod")"#
    );
    let counted = server
        .post(
            "/v1/backlog/cleanup?dry_run=nonsense",
            op,
            &json!({"dry_run": true}),
        )
        .ok();
    assert!(counted.get("would_delete").is_some(), "{counted}");
    let message = server
        .get("/v1/backlog/items?limit=ten", op)
        .error(400, "invalid_input");
    assert_eq!(
        message,
        r#"query parameter `limit` must be a non-negative integer, got "ten""#
    );
    // Unknown tool / action: 404, before the entitlement check (401 → 404 → 403 → 400).
    let message = server
        .post(
            "/v1/tools/execute",
            Some(VIEWER_KEY),
            &json!({"tool":"nope","action":"get"}),
        )
        .error(404, "not_found");
    assert!(message.contains("`nope`"), "{message}");
    let message = server
        .post(
            "/v1/tools/execute",
            Some(VIEWER_KEY),
            &json!({"tool":"backlog_tool","action":"explode","bogus":1}),
        )
        .error(404, "not_found");
    assert!(message.contains("explode"), "{message}");
    let message = server
        .post(
            "/v1/tools/execute",
            Some(SCHEDULER_KEY),
            &json!({"tool":"risk_history_tool","action":"snapshot"}),
        )
        .error(404, "not_found");
    assert!(message.contains("not installed"), "{message}");
    // Wrong method: 405 JSON.
    for (method, path) in [
        ("GET", "/v1/tools/execute"),
        ("DELETE", "/v1/backlog/items/bl_000000000001"),
        ("PUT", "/v1/backlog/dashboard"),
        ("POST", "/healthz"),
    ] {
        let resp = server.send(method, path, op, None);
        let message = resp.error(405, "method_not_allowed");
        assert!(message.contains(method), "{message}");
    }
    // Over 1 MiB: 413.
    let big = json!({"tool":"backlog_tool","action":"create","title": "x".repeat(1 << 20)});
    server
        .post("/v1/tools/execute", op, &big)
        .error(413, "payload_too_large");
    let big_rest =
        json!({"env":"prod","service":"gw","category":"refactor","title": "x".repeat(1 << 20)});
    server
        .post("/v1/backlog/items", op, &big_rest)
        .error(413, "payload_too_large");
    // Just under the limit is read (and then refused by the component's own rules).
    let under = json!({"tool":"backlog_tool","action":"get","id": "x".repeat((1 << 20) - 100)});
    server
        .post("/v1/tools/execute", op, &under)
        .error(400, "invalid_input");
    // Malformed JSON: 400 naming the problem.
    let message = server
        .send(
            "POST",
            "/v1/tools/execute",
            op,
            Some(br#"{"tool": "backlog_tool","#.to_vec()),
        )
        .error(400, "invalid_input");
    assert!(
        message.contains("not valid JSON") && message.contains("line 1"),
        "{message}"
    );
    let message = server
        .send("POST", "/v1/backlog/items", op, Some(b"[1,2]".to_vec()))
        .error(400, "invalid_input");
    assert!(message.contains("JSON object"), "{message}");
    let message = server
        .post("/v1/tools/execute", op, &json!({"action":"get"}))
        .error(400, "invalid_input");
    assert!(message.contains("`tool`"), "{message}");
    let message = server
        .post(
            "/v1/tools/execute",
            op,
            &json!({"tool":"backlog_tool","action":"list","params":{},"env":"prod"}),
        )
        .error(400, "invalid_input");
    assert!(message.contains("both nested"), "{message}");
    let message = server
        .get("/v1/backlog/items?overdue=maybe", op)
        .error(400, "invalid_input");
    assert!(message.contains("overdue"), "{message}");
    // The server is still fine.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert!(!env.backlog_dir().join("items.jsonl").exists());
}

/// `/v1/tools` lists, per caller, exactly the actions it may call, with the schemas the
/// component describes (the same document `plugins list` prints).
#[test]
fn tools_lists_only_what_the_caller_may_call() {
    let env = env();
    let described = env.cmd().args(["plugins", "list"]).output().unwrap();
    let described: Value = serde_json::from_slice(&described.stdout).unwrap();
    let schema_of = |action: &str| -> Value {
        described["tools"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == action)
            .map(|a| a["params_schema"].clone())
            .unwrap()
    };
    let server = Server::start(&env, &[]);
    let check = |key: &str, want: &[&str]| {
        let doc = server.get("/v1/tools", Some(key)).ok();
        let tools = doc["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1, "{doc}");
        assert_eq!(tools[0]["name"], "backlog_tool");
        assert!(
            tools[0]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        let actions = tools[0]["actions"].as_array().unwrap();
        let names: Vec<&str> = actions.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names, want, "{key}");
        for a in actions {
            let name = a["name"].as_str().unwrap();
            assert_eq!(a["params_schema"], schema_of(name), "{name}");
            assert!(a["params_schema"]["properties"].is_object(), "{a}");
            assert!(
                a["entitlements"].as_array().is_some_and(|e| !e.is_empty()),
                "{a}"
            );
        }
    };
    check(VIEWER_KEY, &["get", "list", "events", "dashboard"]);
    check(
        SCHEDULER_KEY,
        &["auto_generate_weekly", "auto_generate_daily", "cleanup"],
    );
    let all = server.get("/v1/tools", Some(OPERATOR_KEY)).ok();
    assert_eq!(
        all["tools"][0]["actions"].as_array().map(Vec::len),
        Some(11)
    );
}

#[test]
fn readyz_and_metrics_show_the_store_and_the_overdue_gauges() {
    let env = env();
    let server = Server::start(&env, &[]);
    assert_eq!(
        server.get("/readyz", None).ok(),
        json!({"backend":"jsonl","degraded":false,"pending_replay":0})
    );
    let op = Some(OPERATOR_KEY);
    // Clock pinned at 2026-11-27: two overdue items in prod (one P0), one in staging, one
    // not overdue, one overdue but done.
    for (env_name, priority, due, status) in [
        ("prod", "P0", "2026-11-01", None),
        ("prod", "P2", "2026-11-20", None),
        ("staging", "P1", "2026-11-02", None),
        ("prod", "P0", "2026-12-20", None),
        ("prod", "P0", "2026-11-03", Some("done")),
    ] {
        let item = server
            .post(
                "/v1/backlog/items",
                op,
                &json!({"env":env_name,"service":"gw","category":"refactor","title":"t","priority":priority,"due_date":due}),
            )
            .ok();
        if let Some(s) = status {
            server
                .post(
                    &format!("/v1/backlog/items/{}/status", item["id"].as_str().unwrap()),
                    op,
                    &json!({"status": s}),
                )
                .ok();
        }
    }
    server
        .get("/v1/backlog/items/bl_00000000dead", op)
        .error(404, "not_found");
    let resp = server.get("/metrics", None);
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let text = resp.body;
    for line in [
        r#"backlog_bridge_overdue_items{env="prod"} 2"#,
        r#"backlog_bridge_overdue_p0_items{env="prod"} 1"#,
        r#"backlog_bridge_overdue_items{env="staging"} 1"#,
        r#"backlog_bridge_overdue_p0_items{env="staging"} 0"#,
        r#"backlog_bridge_overdue_items{env="dev"} 0"#,
        r#"backlog_bridge_calls_total{tool="backlog_tool",action="create",outcome="ok"} 5"#,
        r#"backlog_bridge_calls_total{tool="backlog_tool",action="get",outcome="not_found"} 1"#,
        r#"backlog_bridge_call_duration_seconds_count{tool="backlog_tool",action="create"} 5"#,
        r#"backlog_bridge_backend_active{backend="jsonl"} 1"#,
        r#"backlog_bridge_backend_active{backend="postgres"} 0"#,
        "backlog_bridge_degraded 0",
        "backlog_bridge_pending_replay 0",
        "backlog_bridge_calls_in_flight 0",
        r#"backlog_bridge_http_requests_total{method="POST",route="/v1/backlog/items",status="200"} 5"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
    // Every sample line names a backlog_bridge_ metric.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with("backlog_bridge_"), "{l}");
    }
}

#[test]
fn readyz_is_503_when_writes_would_fail() {
    let env = env().var("BACKLOG_BACKEND", "null");
    let server = Server::start(&env, &[]);
    let resp = server.get("/readyz", None);
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(
        resp.json(),
        json!({"backend":"null","degraded":false,"pending_replay":0})
    );
    assert_eq!(server.get("/healthz", None).status, 200);
}

/// A call that holds the only admission slot makes the next one a clear 503.
#[test]
fn a_saturated_router_answers_503() {
    let env = env().with_hostile();
    let server = Arc::new(Server::start(&env, &["--max-in-flight", "1"]));
    let spinner = {
        let server = server.clone();
        std::thread::spawn(move || {
            server.post(
                "/v1/tools/execute",
                Some(VIEWER_KEY),
                &json!({"tool":"hostile","action":"spin"}),
            )
        })
    };
    let mut busy = false;
    for _ in 0..500 {
        if server
            .get("/metrics", None)
            .body
            .lines()
            .any(|l| l == "backlog_bridge_calls_in_flight 1")
        {
            busy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2)); // retry interval of a bounded poll
    }
    assert!(busy, "the spinning call never showed as in flight");
    let resp = server.get("/v1/backlog/dashboard?env=prod", Some(VIEWER_KEY));
    let message = resp.error(503, "unavailable");
    assert!(message.contains("--max-in-flight"), "{message}");
    assert_eq!(resp.header("retry-after"), Some("1"));
    // The spinning guest hits its 1 s limit: 504, and the router serves again.
    spinner.join().unwrap().error(504, "timeout");
    server
        .get("/v1/backlog/dashboard?env=prod", Some(VIEWER_KEY))
        .ok();
}

/// One client's script: creates, upserts on dedupe keys shared by every client, status
/// changes, comments and reads. Returns the number of calls made; panics on any non-200.
fn script(server_base: &str, client_no: usize, calls: usize) -> usize {
    let http = client();
    let call = |action: &str, params: Value| -> Value {
        let mut body = json!({"tool":"backlog_tool","action":action});
        for (k, v) in params.as_object().unwrap() {
            body[k] = v.clone();
        }
        let key = if matches!(action, "get" | "list" | "dashboard") {
            VIEWER_KEY
        } else {
            OPERATOR_KEY
        };
        let resp = send(
            &http,
            server_base,
            "POST",
            "/v1/tools/execute",
            Some(key),
            Some(body.to_string().into_bytes()),
        )
        .unwrap_or_else(|e| panic!("client {client_no}: {action}: {e}"));
        assert!(resp.status < 500, "5xx: {resp:?}");
        resp.ok()
    };
    let mut own: Vec<String> = Vec::new();
    let mut shared: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..calls {
        let shared_key = format!("shared:{}", (client_no + i) % 8);
        match i % 10 {
            0 | 1 => {
                let item = call(
                    "create",
                    json!({"env":"prod","service":format!("svc-{client_no}"),"category":"refactor",
                        "title":format!("item {client_no}/{i}"),"dedupe_key":format!("own:{client_no}:{i}")}),
                );
                own.push(item["id"].as_str().unwrap().to_owned());
            }
            2 | 3 => {
                let out = call(
                    "upsert",
                    json!({"dedupe_key":shared_key,"env":"prod","service":"shared","category":"refactor",
                        "title":format!("shared item {shared_key}")}),
                );
                assert!(
                    out["action"] == "created" || out["action"] == "unchanged",
                    "{out}"
                );
                shared.insert(shared_key, out["item"]["id"].as_str().unwrap().to_owned());
            }
            4 => {
                let id = shared.values().next_back().unwrap().clone();
                call(
                    "add_comment",
                    json!({"id": id, "message": format!("from {client_no} at {i}")}),
                );
            }
            5 => {
                let id = &own[own.len() - 2];
                call("set_status", json!({"id": id, "status": "in_progress"}));
            }
            6 => {
                let id = &own[own.len() - 1];
                call(
                    "set_status",
                    json!({"id": id, "status": "done", "comment": format!("closed by {client_no}")}),
                );
            }
            7 => {
                // Read-your-writes: the item this client moved at step 5.
                let item = call("get", json!({"id": own[own.len() - 2]}));
                assert_eq!(item["status"], "in_progress", "{item}");
            }
            8 => {
                let page = call(
                    "list",
                    json!({"env":"prod","service":format!("svc-{client_no}")}),
                );
                assert_eq!(page["total"].as_u64(), Some(own.len() as u64), "{page}");
            }
            _ => {
                call("dashboard", json!({"env":"prod"}));
            }
        }
    }
    calls
}

/// The store's final state, without ids: items by dedupe key, each with the multiset of its
/// events (type, actor, message, meta). Also checks that every line is whole JSON.
fn final_state(dir: &std::path::Path) -> (BTreeMap<String, Value>, usize) {
    let lines = |name: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.ends_with('\n'), "{name} ends in a torn line");
        text.lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line in {name} ({e}): {l}"))
            })
            .collect()
    };
    let item_lines = lines("items.jsonl");
    let mut items: BTreeMap<String, Value> = BTreeMap::new();
    for item in &item_lines {
        items.insert(item["id"].as_str().unwrap().to_owned(), item.clone());
    }
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in lines("events.jsonl") {
        let view = json!([e["type"], e["actor"], e["message"], e["meta"]]).to_string();
        events
            .entry(e["item_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(view);
    }
    let mut state = BTreeMap::new();
    for (id, mut item) in items {
        let mut evs = events.remove(&id).unwrap_or_default();
        evs.sort();
        let key = item["dedupe_key"].as_str().unwrap().to_owned();
        item.as_object_mut().unwrap().remove("id");
        item["events"] = json!(evs);
        assert!(
            state.insert(key.clone(), item).is_none(),
            "dedupe key {key} twice"
        );
    }
    (state, item_lines.len())
}

/// 16 clients × 200 mixed calls at once end in the state a one-client replay of the same
/// scripts produces: no lost or duplicated write, no torn line, no 5xx.
#[test]
fn concurrent_clients_end_where_a_sequential_replay_does() {
    const CLIENTS: usize = 16;
    const CALLS: usize = 200;
    let concurrent = env();
    let server = Server::start(&concurrent, &[]);
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let base = server.base.clone();
                s.spawn(move || script(&base, c, CALLS))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, CLIENTS * CALLS);
    let metrics = server.get("/metrics", None).body;
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("backlog_bridge_http_requests_total") && l.contains("status=\"5")
        ),
        "{metrics}"
    );
    drop(server);
    let replay = env();
    let server = Server::start(&replay, &[]);
    for c in 0..CLIENTS {
        script(&server.base, c, CALLS);
    }
    drop(server);
    let (got, got_lines) = final_state(&concurrent.backlog_dir());
    let (want, want_lines) = final_state(&replay.backlog_dir());
    assert_eq!(got.len(), CLIENTS * CALLS / 10 * 2 + 8);
    assert_eq!(got_lines, want_lines, "a different number of writes");
    assert_eq!(got, want);
}

/// SIGTERM while writers are busy: the server stops cleanly, and every create that was
/// answered 2xx is in the store afterwards.
#[test]
fn sigterm_under_load_keeps_every_acknowledged_write() {
    const WRITERS: usize = 8;
    let env = env();
    let server = Server::start(&env, &[]);
    let (acked_tx, acked_rx) = mpsc::channel::<String>();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let base = server.base.clone();
            let acked = acked_tx.clone();
            std::thread::spawn(move || {
                let http = client();
                let mut statuses = Vec::new();
                for i in 0..10_000 {
                    let body = json!({"env":"prod","service":format!("w{w}"),"category":"refactor",
                        "title":format!("write {w}/{i}")});
                    match send(
                        &http,
                        &base,
                        "POST",
                        "/v1/backlog/items",
                        Some(OPERATOR_KEY),
                        Some(body.to_string().into_bytes()),
                    ) {
                        Ok(resp) if resp.status == 200 => {
                            let _ = acked.send(resp.json()["id"].as_str().unwrap().to_owned());
                        }
                        Ok(resp) => statuses.push(resp.status),
                        // The server went away: this writer is done.
                        Err(_) => break,
                    }
                }
                statuses
            })
        })
        .collect();
    drop(acked_tx);
    let mut acked: Vec<String> = Vec::new();
    // Let the load build up: 100 acknowledged writes, then SIGTERM.
    while acked.len() < 100 {
        acked.push(
            acked_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("writes are acknowledged"),
        );
    }
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let mut server = server;
    let status = server.wait_exit();
    for w in writers {
        let statuses = w.join().unwrap();
        assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    }
    acked.extend(acked_rx.iter());
    assert!(
        status.success(),
        "serve exited with {status}: {}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("SIGTERM received") && log.contains("router: stopped"),
        "{log}"
    );
    // Restart and look every acknowledged write up.
    let restarted = Server::start(&env, &[]);
    for id in &acked {
        restarted
            .get(&format!("/v1/backlog/items/{id}"), Some(VIEWER_KEY))
            .ok();
    }
    let (state, _) = final_state(&env.backlog_dir());
    assert!(
        state.len() >= acked.len(),
        "{} items, {} acknowledged",
        state.len(),
        acked.len()
    );
}

/// The router on the `postgres` backend: guest calls on several worker threads share the
/// pool; concurrent clients' writes all land, each once.
#[test]
fn postgres_backend_serves_concurrent_clients() {
    const CLIENTS: usize = 8;
    const CALLS: usize = 100;
    let db = crate::pg::database();
    let env = env().with_postgres(&db);
    assert_eq!(env.migrate(&[]).code, 0);
    let server = Server::start(&env, &["--workers", "4"]);
    assert_eq!(
        server.get("/readyz", None).ok(),
        json!({"backend":"postgres","degraded":false,"pending_replay":0})
    );
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let base = server.base.clone();
            s.spawn(move || script(&base, c, CALLS));
        }
    });
    // Per client and ten calls: 2 creates, 1 comment, 2 status changes (5 events); plus one
    // `created` per shared key.
    assert_eq!(
        db.scalar("SELECT count(*) FROM backlog_items"),
        (CLIENTS * CALLS / 10 * 2 + 8).to_string()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM backlog_events"),
        (CLIENTS * CALLS / 10 * 5 + 8).to_string()
    );
    let metrics = server.get("/metrics", None).body;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"backlog_bridge_backend_active{backend="postgres"} 1"#),
        "{metrics}"
    );
    assert!(!env.backlog_dir().join("items.jsonl").exists());
}

/// `auto` with a server that does not answer: JSONL takes the writes, `/readyz` says degraded
/// (200: writes still succeed).
#[test]
fn readyz_reports_a_degraded_auto_store() {
    let env = env().var("BACKLOG_BACKEND", "auto").var(
        "BACKLOG_POSTGRES_DSN",
        "postgresql://nobody@127.0.0.1:1/none",
    );
    let server = Server::start(&env, &[]);
    let ready = server.get("/readyz", None).ok();
    assert_eq!(
        (&ready["backend"], &ready["degraded"]),
        (&json!("jsonl"), &json!(true)),
        "{ready}"
    );
    server
        .post(
            "/v1/backlog/items",
            Some(OPERATOR_KEY),
            &json!({"env":"prod","service":"gw","category":"refactor","title":"t"}),
        )
        .ok();
    let ready = server.get("/readyz", None).ok();
    assert_eq!(ready["degraded"], true, "{ready}");
    assert_eq!(ready["pending_replay"], 1, "{ready}");
    let metrics = server.get("/metrics", None).body;
    for line in [
        "backlog_bridge_degraded 1",
        "backlog_bridge_pending_replay 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}: {metrics}"
        );
    }
}

/// `--log-format json`: one JSON object per request with agent, tool, action, outcome,
/// status, duration and the request id the response carries.
#[test]
fn json_access_log_has_one_line_per_request() {
    let env = env();
    let server = Server::start(&env, &["--log-format", "json"]);
    let resp = server.post(
        "/v1/tools/execute",
        Some(VIEWER_KEY),
        &json!({"tool":"backlog_tool","action":"get","id":"bl_00000000beef"}),
    );
    resp.error(404, "not_found");
    let rid = resp.header("x-request-id").unwrap().to_owned();
    let log = server.log_when(|l| l.contains(&rid) && l.contains("http request"));
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "http request" && v["fields"]["request_id"] == rid)
        .unwrap_or_else(|| panic!("no JSON access log line for {rid}: {log}"));
    let f = &line["fields"];
    assert_eq!(
        (
            &f["agent"],
            &f["tool"],
            &f["action"],
            &f["outcome"],
            &f["status"]
        ),
        (
            &json!("viewer"),
            &json!("backlog_tool"),
            &json!("get"),
            &json!("not_found"),
            &json!(404)
        ),
        "{line}"
    );
    assert!(f["duration_us"].as_u64().is_some(), "{line}");
}

/// The task registry shipped in `ops/`, in this installation's ops dir.
fn with_registry(env: Env) -> Env {
    let ops = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    std::fs::copy(
        ops.join("task_registry.yml"),
        env.ops.join("task_registry.yml"),
    )
    .unwrap();
    env
}

/// `run-job` over HTTP against the real router: the runbook's messages and exit codes.
#[test]
fn run_job_over_http_wrong_key_missing_digest_and_success() {
    let env = with_registry(env());
    let server = Server::start(&env, &[]);
    let run_job = |key: &str, job: &str| -> crate::util::Run {
        env.cmd()
            .env("SCHEDULER_API_KEY", key)
            .args(["run-job", "--job", job, "--router-url", &server.base])
            .output()
            .expect("run-job")
            .into()
    };
    for key in ["wrong-key", ""] {
        let r = run_job(key, "daily_backlog_cleanup");
        assert_eq!(r.code, 3, "{r:?}");
        assert!(
            r.stderr.contains("HTTP 401 from /v1/tools/execute"),
            "{}",
            r.stderr
        );
    }
    let r = run_job(SCHEDULER_KEY, "weekly_backlog_generate");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["code"], "precondition_failed", "{r:?}");
    assert!(
        r.stderr.contains("error: No platform digest found"),
        "{}",
        r.stderr
    );
    let r = run_job(SCHEDULER_KEY, "daily_backlog_cleanup");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["deleted"], 0, "{r:?}");
}

/// `serve --scheduler` runs the jobs due at its clock's minute and records them; SIGTERM
/// stops both the router and the loop.
#[test]
fn serve_with_scheduler_runs_due_jobs_and_stops_on_sigterm() {
    // 03:40 UTC: `daily_backlog_cleanup` is due.
    let env = with_registry(env()).var("BACKLOG_BRIDGE_NOW", "2026-11-27T03:40:00Z");
    let mut server = Server::start(&env, &["--scheduler"]);
    let runs = env.ops.join("scheduler/runs.jsonl");
    let mut recorded = String::new();
    for _ in 0..500 {
        recorded = std::fs::read_to_string(&runs).unwrap_or_default();
        if recorded.contains("\"outcome\":\"ok\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20)); // retry interval of a bounded poll
    }
    let ok: Vec<Value> = recorded
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"] == "ok")
        .collect();
    assert!(
        ok.iter().any(|r| r["job"] == "daily_backlog_cleanup"),
        "{recorded}\n{}",
        server.log()
    );
    assert_eq!(server.get("/healthz", None).status, 200);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    assert!(server.wait_exit().success(), "{}", server.log());
    assert!(
        server.log().contains("scheduler: stopped"),
        "{}",
        server.log()
    );
}
