//! The router bench kit both benches share: a `serve` process, a keep-alive HTTP client,
//! and a load generator (one thread and one connection per client).
#![allow(dead_code)] // each bench uses its part

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_backlog-bridge");

pub const OPERATOR_KEY: &str = "bench-operator-key";
pub const VIEWER_KEY: &str = "bench-viewer-key";

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// A `/proc/<pid>/status` memory figure (`VmRSS:`, `VmHWM:`) in KiB.
pub fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Prints the server's resident memory now and at its peak, against the 600 MiB target.
pub fn print_rss(server: &Server, what: &str) {
    let pid = server.child.id();
    let rss = vm_kib(pid, "VmRSS:").unwrap_or(0) >> 10;
    let peak = vm_kib(pid, "VmHWM:").unwrap_or(0) >> 10;
    let verdict = if peak <= 600 { "met" } else { "MISSED" };
    println!("{what:<48} RSS {rss:>5} MiB, peak {peak:>5} MiB  (target <= 600 MiB: {verdict})");
}

/// The server process; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` with the repository's config over `root`, the bench keys and `env`, listening
/// on a free loopback port.
pub fn start(root: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BIN)
        .arg("--config-dir")
        .arg(repo_config())
        .arg("--ops-dir")
        .arg(root)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .env("OPERATOR_API_KEY", OPERATOR_KEY)
        .env("VIEWER_API_KEY", VIEWER_KEY)
        .env("SCHEDULER_API_KEY", "bench-scheduler-key")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    // Drains the log (one access-log line per request, as in production) and reports the
    // address the server listens on.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(
                    rest.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("serve listens");
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// One request; its status (0 when no answer came).
pub fn request(
    http: &ureq::Agent,
    base: &str,
    method: &str,
    path: &str,
    body: Option<String>,
) -> u16 {
    let key = key_for(method);
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {key}"));
    let resp = match body {
        Some(b) => http.run(
            req.header("Content-Type", "application/json")
                .body(b)
                .expect("request"),
        ),
        None => http.run(req.body(()).expect("request")),
    };
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            // Read the body: the connection is reused only once it is consumed.
            let _ = r.into_body().read_to_string();
            status
        }
        Err(_) => 0,
    }
}

/// The bench key a request uses: the operator's for a POST, the viewer's otherwise.
fn key_for(method: &str) -> &'static str {
    if method == "POST" {
        OPERATOR_KEY
    } else {
        VIEWER_KEY
    }
}

/// What one load run measured.
pub struct Load {
    pub requests: usize,
    pub errors: usize,
    pub wall: Duration,
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// The run that began at `started`, from each client's latencies and error count.
    fn gather(started: Instant, per_client: Vec<(Vec<Duration>, usize)>) -> Load {
        let wall = started.elapsed();
        let errors = per_client.iter().map(|(_, e)| e).sum();
        let mut latencies: Vec<Duration> = per_client.into_iter().flat_map(|(l, _)| l).collect();
        latencies.sort();
        Load {
            requests: latencies.len(),
            errors,
            wall,
            latencies,
        }
    }
}

/// `clients` threads send requests from `next(client, i)` (method, path, body) for `secs`.
pub fn load(
    base: &str,
    clients: usize,
    secs: Duration,
    next: impl Fn(usize, usize) -> (&'static str, String, Option<String>) + Sync,
) -> Load {
    let started = Instant::now();
    let per_client: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let next = &next;
                s.spawn(move || {
                    let http = client();
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    let mut i = 0;
                    while started.elapsed() < secs {
                        let (method, path, body) = next(c, i);
                        let t = Instant::now();
                        let status = request(&http, base, method, &path, body);
                        latencies.push(t.elapsed());
                        if status != 200 {
                            errors += 1;
                        }
                        i += 1;
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    Load::gather(started, per_client)
}

/// As [`load`], from one thread: a task per client on a single-threaded tokio runtime,
/// HTTP/1.1 written and read by hand (the router answers with `content-length`), as
/// pgbench drives its clients. What the thread-per-client generator spends per request
/// (~100 µs of CPU here, against pgbench's ~17 µs) is taken from the two cores the server
/// and Postgres share; this one spends a fraction of it.
pub fn lean_load(
    base: &str,
    clients: usize,
    secs: Duration,
    next: impl Fn(usize, usize) -> (&'static str, String, Option<String>) + Sync,
) -> Load {
    let addr = base.trim_start_matches("http://");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let next = &next;
    let per_client = runtime.block_on(futures_util::future::join_all(
        (0..clients).map(|c| lean_client(addr, started, secs, move |i| next(c, i))),
    ));
    Load::gather(started, per_client)
}

/// One client of [`lean_load`]: a keep-alive connection (a new one after an error).
async fn lean_client(
    addr: &str,
    started: Instant,
    secs: Duration,
    next: impl Fn(usize) -> (&'static str, String, Option<String>),
) -> (Vec<Duration>, usize) {
    let (mut latencies, mut errors, mut i) = (Vec::new(), 0, 0);
    let mut stream = None;
    let mut buf = Vec::with_capacity(16 << 10);
    while started.elapsed() < secs {
        let (method, path, body) = next(i);
        i += 1;
        let key = key_for(method);
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = Instant::now();
        let status = match exchange(&mut stream, addr, &request, &mut buf).await {
            Ok(status) => status,
            Err(_) => {
                stream = None;
                0
            }
        };
        latencies.push(t.elapsed());
        if status != 200 {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// Sends `request` and reads the whole answer; its status.
async fn exchange(
    stream: &mut Option<tokio::net::TcpStream>,
    addr: &str,
    request: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if stream.is_none() {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        *stream = Some(s);
    }
    let Some(s) = stream.as_mut() else {
        return Err(Error::from(ErrorKind::NotConnected));
    };
    s.write_all(request.as_bytes()).await?;
    buf.clear();
    let bad = || Error::new(ErrorKind::InvalidData, "not an HTTP answer with a length");
    let (need, status) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad())?;
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .ok_or_else(bad)?;
            break (end + 4 + len, status);
        }
        if s.read_buf(buf).await? == 0 {
            return Err(Error::from(ErrorKind::UnexpectedEof));
        }
    };
    while buf.len() < need {
        if s.read_buf(buf).await? == 0 {
            return Err(Error::from(ErrorKind::UnexpectedEof));
        }
    }
    Ok(status)
}
