//! The router's limits over the real binary: what a client without a key can hold
//! (connections, timeouts, bodies), the browser guard on every route (with one test in a
//! real headless Chromium), key hygiene, and `/readyz` against a store that refuses writes.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{OPERATOR_KEY, Server, VIEWER_KEY, env};

/// A REST create body the component accepts.
fn create_body(title: &str) -> Value {
    json!({"env":"prod","service":"gw","category":"refactor","title": title})
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a fresh connection and reads until the server closes it or `wait`
/// passes. Returns the status (0: no answer) and the whole response text.
fn raw(addr: &str, request: &[u8], wait: Duration) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send");
    read_answer(&mut stream, wait)
}

/// Reads one answer (until EOF, or the headers plus `Content-Length` bytes, or `wait`).
fn read_answer(stream: &mut TcpStream, wait: Duration) -> (u16, String) {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= length {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn body_json(text: &str) -> Value {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The server's resident set size in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Raises this test process's open-files limit to its hard limit.
fn raise_own_fd_limit(need: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= need,
        "this test needs {need} open files; the hard limit is {}",
        limit.rlim_cur
    );
}

/// A header-only request announcing a body of `length` bytes.
fn announce(method: &str, path: &str, host: &str, key: Option<&str>, length: usize) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// 401, 404 and 413 go out while the body is still unsent; a keyed body that stalls is
/// refused after `--idle-timeout`.
#[test]
fn answers_that_need_no_body_go_out_before_it_arrives() {
    let env = env();
    let server = Server::start(&env, &["--idle-timeout", "1"]);
    let host = addr(&server);
    let wait = Duration::from_secs(5);
    let mib = 1 << 20;
    for (path, key, length, want) in [
        ("/v1/backlog/items", None, mib, 401),
        ("/v1/tools/execute", Some("wrong-key-0123456789"), mib, 401),
        ("/v1/nowhere", Some(OPERATOR_KEY), mib, 404),
        ("/v1/backlog/items", Some(OPERATOR_KEY), 2 * mib, 413),
        ("/v1/backlog/items", Some(VIEWER_KEY), mib, 403),
    ] {
        let mut request = announce("POST", path, &host, key, length);
        request.extend_from_slice(b"{\"title\":");
        let started = Instant::now();
        let (status, text) = raw(&host, &request, wait);
        assert_eq!(status, want, "{path} {key:?}: {text}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path}: slow");
        assert!(body_json(&text)["code"].is_string(), "{text}");
    }
    // An authorized body that stops half-way: refused once it has stalled for 1 s.
    let mut request = announce("POST", "/v1/backlog/items", &host, Some(OPERATOR_KEY), 1000);
    request.extend_from_slice(b"{\"title\":");
    let (status, text) = raw(&host, &request, Duration::from_secs(10));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("stalled"), "{text}");
    assert!(!env.backlog_dir().join("items.jsonl").exists());
}

/// Connections beyond `--max-connections` are closed at once; a connection that sends no
/// request head within `--header-timeout` is closed; then the router serves again.
#[test]
fn connections_are_capped_and_silent_ones_time_out() {
    let env = env();
    let server = Server::start(&env, &["--max-connections", "4", "--header-timeout", "2"]);
    let host = addr(&server);
    let metrics = || {
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(&host, request.as_bytes(), Duration::from_secs(10)).1
    };
    // The harness's kept-alive connection (from its health check) times out first: then the
    // scrape's own connection is the only one (bounded poll).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !metrics().contains("\nbacklog_bridge_connections_open 1\n") {
        assert!(
            Instant::now() < deadline,
            "connections never drained: {}",
            metrics()
        );
        std::thread::sleep(Duration::from_millis(50)); // retry interval of a bounded poll
    }
    // Five connections against four seats. The scrape above closed its connection from the
    // client side, so its seat may be given back a moment after the first of these arrive:
    // whichever of the five finds the router full is closed at once (the last one, unless
    // that race hit), and the other four are held until the header timeout (2 s).
    let mut streams: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(&host).expect("connect"))
        .collect();
    let window = Instant::now() + Duration::from_secs(1);
    let mut closed_at_once = std::collections::BTreeSet::new();
    while Instant::now() < window {
        for (i, stream) in streams.iter_mut().enumerate() {
            if closed_at_once.contains(&i) {
                continue;
            }
            // A short read timeout is the poll's interval: still open unless EOF or reset.
            stream
                .set_read_timeout(Some(Duration::from_millis(10)))
                .expect("timeout");
            match stream.read(&mut [0u8; 1]) {
                Ok(0) => {
                    closed_at_once.insert(i);
                }
                Ok(_) => panic!("connection {i} was answered"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed_at_once.insert(i);
                }
            }
        }
    }
    assert_eq!(
        closed_at_once.len(),
        1,
        "one connection is closed at once, the others held: {closed_at_once:?}"
    );
    // The four silent connections are closed by the header timeout.
    let mut idle: Vec<TcpStream> = streams
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !closed_at_once.contains(i))
        .map(|(_, s)| s)
        .collect();
    for stream in &mut idle {
        let started = Instant::now();
        let (status, _) = read_answer(stream, Duration::from_secs(10));
        assert_eq!(status, 0);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    drop(idle);
    let text = metrics();
    assert!(
        text.contains("\nbacklog_bridge_connections_refused_total 1\n"),
        "{text}"
    );
    server.get("/v1/tools", Some(OPERATOR_KEY)).ok();
}

/// The attack of the review: 1,000 unauthenticated half-sent 1 MiB bodies and 1,100 idle
/// connections. The server stays small, a keyed `get` answers within 1 s, and the memory
/// comes back when the clients go.
#[test]
fn unauthenticated_floods_leave_the_router_small_and_serving() {
    raise_own_fd_limit(2_100 + 256);
    let env = env();
    let server = Server::start(&env, &["--header-timeout", "60"]);
    let host = addr(&server);
    let created = server
        .post(
            "/v1/backlog/items",
            Some(OPERATOR_KEY),
            &create_body("flood"),
        )
        .ok();
    let id = created["item"]["id"]
        .as_str()
        .or_else(|| created["id"].as_str())
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_owned();
    let get = format!("/v1/backlog/items/{id}");
    server.get(&get, Some(VIEWER_KEY)).ok();
    let baseline = rss(server.pid());

    let chunk = vec![b' '; 64 << 10];
    let mut half_sent = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let mut stream = TcpStream::connect(&host).expect("connect");
        let _ = stream.write_all(&announce("POST", "/v1/backlog/items", &host, None, 1 << 20));
        let _ = stream.write_all(&chunk);
        half_sent.push(stream);
    }
    let idle: Vec<TcpStream> = (0..1_100)
        .map(|_| TcpStream::connect(&host).expect("connect"))
        .collect();
    let started = Instant::now();
    server.get(&get, Some(VIEWER_KEY)).ok();
    let took = started.elapsed();
    let loaded = rss(server.pid());
    assert!(took < Duration::from_secs(1), "keyed get took {took:?}");
    assert!(
        loaded < 300 << 20,
        "RSS {} MB under the flood (baseline {} MB)",
        loaded >> 20,
        baseline >> 20
    );
    // Every half-sent request was refused without its body.
    let (status, _) = read_answer(&mut half_sent[0], Duration::from_secs(5));
    assert!(matches!(status, 401 | 429), "{status}");
    drop(half_sent);
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = rss(server.pid());
    while now > baseline + (32 << 20) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100)); // retry interval of a bounded poll
        now = rss(server.pid());
    }
    assert!(
        now <= baseline + (32 << 20),
        "RSS {} MB after the clients left (baseline {} MB, peak seen {} MB)",
        now >> 20,
        baseline >> 20,
        loaded >> 20
    );
    eprintln!(
        "flood: baseline {} MB, under flood {} MB, after {} MB, keyed get {took:?}",
        baseline >> 20,
        loaded >> 20,
        now >> 20
    );
}

/// Each rule of the browser guard over the real server with an anonymous agent, on REST,
/// `/v1/tools/execute`, `/mcp` and `/metrics`; requests without browser headers pass.
#[test]
fn the_browser_guard_refuses_pages_on_every_route() {
    let env = env();
    let server = Server::start(
        &env,
        &[
            "--anonymous-agent",
            "operator",
            "--allowed-origin",
            "https://console.example.com",
            "--allowed-host",
            "bridge.internal",
        ],
    );
    let host = addr(&server);
    let wait = Duration::from_secs(10);
    let create = create_body("from a page").to_string();
    let execute =
        json!({"tool":"backlog_tool","action":"create","env":"prod","service":"gw","category":"refactor","title":"t"})
            .to_string();
    let request = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            text.push_str(&format!("Host: {host}\r\n"));
        }
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        raw(&host, text.as_bytes(), wait)
    };
    let evil = ("Origin", "http://evil.example");
    let plain = ("Content-Type", "text/plain;charset=UTF-8");
    let json_type = ("Content-Type", "application/json");
    for (method, path, headers, body, want, code) in [
        (
            "POST",
            "/v1/backlog/items",
            vec![evil, plain],
            &create,
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/backlog/items",
            vec![evil, json_type],
            &create,
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/tools/execute",
            vec![evil, plain],
            &execute,
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/backlog/cleanup",
            vec![evil],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "GET",
            "/v1/backlog/items",
            vec![evil],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "GET",
            "/v1/tools",
            vec![evil],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "GET",
            "/metrics",
            vec![evil],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "POST",
            "/mcp",
            vec![evil, json_type],
            &"{}".to_owned(),
            403,
            "forbidden",
        ),
        (
            "GET",
            "/v1/backlog/items",
            vec![("Host", "evil.example")],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "GET",
            "/v1/backlog/items",
            vec![("Sec-Fetch-Site", "cross-site")],
            &String::new(),
            403,
            "forbidden",
        ),
        (
            "POST",
            "/v1/backlog/items",
            vec![plain],
            &create,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/tools/execute",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            &execute,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/backlog/generate/weekly?env=prod",
            vec![
                ("Origin", "http://localhost:3000"),
                ("Sec-Fetch-Mode", "no-cors"),
            ],
            &String::new(),
            415,
            "unsupported_media_type",
        ),
    ] {
        let (status, text) = request(method, path, &headers, body);
        assert_eq!(status, want, "{method} {path} {headers:?}: {text}");
        let answer = body_json(&text);
        assert_eq!(answer["code"], code, "{text}");
        assert!(answer["error"].is_string(), "{text}");
    }
    assert!(
        !env.backlog_dir().join("items.jsonl").exists(),
        "a refused request wrote"
    );
    // Allowed: no browser headers (curl), an allowed origin, a configured host name, a
    // same-site browser request with JSON.
    for headers in [
        vec![json_type],
        vec![json_type, ("Origin", "https://console.example.com")],
        vec![
            json_type,
            ("Origin", "https://console.example.com"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![json_type, ("Host", "bridge.internal:8443")],
        vec![
            json_type,
            ("Origin", "http://localhost:5173"),
            ("Sec-Fetch-Site", "same-site"),
        ],
    ] {
        let (status, text) = request("POST", "/v1/backlog/items", &headers, &create);
        assert_eq!(status, 200, "{headers:?}: {text}");
    }
    let (status, text) = request("GET", "/v1/backlog/items?env=prod", &[], "");
    assert_eq!(status, 200, "{text}");
    assert_eq!(body_json(&text)["total"], 5, "{text}");
}

/// The installed Chromium (Debian's `chromium`).
fn chromium_binary() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("chromium is not installed (.ci/run installs the Debian package `chromium`)")
}

/// Runs headless Chromium on `url` with a fresh profile, 10 s of virtual time for the page's
/// scripts and `args` (`--dump-dom`, `--screenshot=…`); returns its stdout (the DOM).
pub(crate) fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium_binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .args(args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = out.read_to_string(&mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50)); // retry interval of a bounded poll
    }
    reader.join().expect("stdout reader")
}

/// One real browser: a page on another loopback origin tries a `no-cors` fetch and two form
/// submits against a bridge with `--anonymous-agent operator`. Nothing is created.
#[test]
fn a_page_in_headless_chromium_cannot_write_through_the_anonymous_agent() {
    let env = env();
    let server = Server::start(&env, &["--anonymous-agent", "operator"]);
    let bridge = server.base.clone();
    let create = create_body("from a page").to_string();
    let page = format!(
        r#"<!doctype html><html><head><title>t</title></head><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" action="{bridge}/v1/backlog/items" target="sink1" enctype="text/plain">
<input name='{{"env":"prod","service":"gw","category":"refactor","title":"form","x":"' value='"}}'></form>
<form id="urlenc" method="POST" action="{bridge}/v1/tools/execute" target="sink2">
<input name="tool" value="backlog_tool"><input name="action" value="cleanup"></form>
<script>
fetch("{bridge}/v1/backlog/items", {{mode: "no-cors", method: "POST", body: JSON.stringify({create})}})
  .then(() => document.title += " fetch-done", () => document.title += " fetch-failed");
document.getElementById("plain").submit();
document.getElementById("urlenc").submit();
</script></body></html>"#
    );
    // The other origin: a one-page server on another loopback port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let page_url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    let dom = chromium(&["--dump-dom"], &page_url);
    assert!(
        dom.contains("fetch-done"),
        "the page's fetch did not run: {dom}"
    );
    // The three requests reached the router and were refused (text/plain, text/plain form,
    // urlencoded form: 415).
    let log = server.log_when(|log| {
        log.lines()
            .filter(|l| l.contains("http request") && l.contains("status=415"))
            .count()
            >= 3
    });
    assert!(!log.contains("status=200 agent=\"operator\""), "{log}");
    let list = server.get("/v1/backlog/items?env=prod", None).ok();
    assert_eq!(list["total"], 0, "a page created items: {list}");
    assert!(!env.backlog_dir().join("items.jsonl").exists());
}

/// Keys: ASCII whitespace around a key is trimmed with a warning, a no-break space is not;
/// short keys stop `serve` with exit 2; two `Authorization` headers are 400; failed logins
/// are counted and limited per address.
#[test]
fn key_hygiene() {
    // Too short: refused at start, naming the variable, never the key.
    let r: crate::util::Run = env()
        .var("VIEWER_API_KEY", "tiny-k3y")
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("serve")
        .into();
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("$VIEWER_API_KEY"), "{}", r.stderr);
    assert!(r.stderr.contains("at least 16"), "{}", r.stderr);
    assert!(!r.stderr.contains("tiny-k3y"), "{}", r.stderr);

    let nbsp_key = format!("{VIEWER_KEY}\u{a0}");
    let env = env()
        .var("OPERATOR_API_KEY", &format!("  {OPERATOR_KEY}\n"))
        .var("VIEWER_API_KEY", &nbsp_key);
    let server = Server::start(&env, &["--auth-failures-per-minute", "3"]);
    server.log_when(|l| l.contains("OPERATOR_API_KEY has whitespace around the key"));
    server.get("/v1/tools", Some(OPERATOR_KEY)).ok();
    let host = addr(&server);
    let get_tools = |auth: &[&[u8]]| {
        let mut req =
            format!("GET /v1/tools HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
        for a in auth {
            req.extend_from_slice(b"Authorization: ");
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        raw(&host, &req, Duration::from_secs(10))
    };
    let bearer = |k: &str| format!("Bearer {k}").into_bytes();
    // The no-break space is part of the key: without it, 401; with it, 200.
    assert_eq!(get_tools(&[&bearer(VIEWER_KEY)]).0, 401);
    assert_eq!(get_tools(&[&bearer(&nbsp_key)]).0, 200);
    // Two Authorization headers: 400, even when both are valid.
    let (status, text) = get_tools(&[&bearer(OPERATOR_KEY), &bearer(OPERATOR_KEY)]);
    assert_eq!(status, 400, "{text}");
    assert_eq!(body_json(&text)["code"], "invalid_input");
    // Failed logins: 1 above, 2 more allowed in the burst of 3, then 429 with Retry-After.
    for _ in 0..2 {
        assert_eq!(get_tools(&[b"Bearer wrong-key-0123456789"]).0, 401);
    }
    let (status, text) = get_tools(&[b"Bearer wrong-key-0123456789"]);
    assert_eq!(status, 429, "{text}");
    assert_eq!(body_json(&text)["code"], "rate_limited");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: "),
        "{text}"
    );
    // A valid key is never limited.
    server.get("/v1/tools", Some(OPERATOR_KEY)).ok();
    let metrics = server.get("/metrics", None).body;
    for line in [
        "backlog_bridge_auth_failures_total 3",
        "backlog_bridge_auth_throttled_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
}

/// Marks files immutable (`chattr +i`): even root cannot write them; undone on drop.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(paths: Vec<std::path::PathBuf>) -> Immutable {
        for p in &paths {
            let out = Command::new("chattr")
                .arg("+i")
                .arg(p)
                .output()
                .expect("chattr");
            assert!(
                out.status.success(),
                "chattr +i {} failed (the test needs a file system with immutable files and \
                 CAP_LINUX_IMMUTABLE): {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

/// `/readyz` answers 503 while the JSONL store refuses writes, and 200 again once it takes
/// them. The store is made unwritable with immutable files, which hold for root too (the
/// suite runs as root, for whom a read-only mode bit changes nothing).
#[test]
fn readyz_is_503_while_the_jsonl_store_refuses_writes() {
    let env = env();
    let server = Server::start(&env, &[]);
    server
        .post(
            "/v1/backlog/items",
            Some(OPERATOR_KEY),
            &create_body("ready"),
        )
        .ok();
    assert_eq!(server.get("/readyz", None).status, 200);
    let dir = env.backlog_dir();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("store dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.push(dir.clone());
    let frozen = Immutable::set(paths);
    let resp = server.get("/readyz", None);
    assert_eq!(resp.status, 503, "{resp:?}");
    let body = resp.json();
    assert_eq!(body["backend"], "jsonl");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&dir.display().to_string()), "{body}");
    // And a write really fails.
    let write = server.post("/v1/backlog/items", Some(OPERATOR_KEY), &create_body("no"));
    assert_ne!(write.status, 200, "{write:?}");
    drop(frozen);
    assert_eq!(server.get("/readyz", None).status, 200);
    assert!(Path::new(&dir).join("items.jsonl").exists());
}
