//! Prometheus metrics of the router (`GET /metrics`), every name prefixed `backlog_bridge_`.
//!
//! Owns the counters and the latency histogram the request path updates, and the text
//! exposition format. The store gauges (active backend, degraded, pending replay, overdue
//! items per env) are computed by the caller at scrape time and passed in as [`StoreGauges`].
//!
//! Must not: take labels from anything a caller can choose freely (tool and action labels are
//! recorded only for calls to installed tools and actions, so they cannot grow without bound).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the call latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 120.0,
];

/// The backends `backlog_bridge_backend_active` has a series for.
const BACKENDS: [&str; 4] = ["postgres", "jsonl", "memory", "null"];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    /// (tool, action, outcome) → calls.
    calls: BTreeMap<(String, String, String), u64>,
    /// (tool, action) → latency.
    latency: BTreeMap<(String, String), Histogram>,
    /// (method, route, status) → requests.
    requests: BTreeMap<(String, String, u16), u64>,
}

/// The router's counters.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    auth_failures: AtomicU64,
    auth_throttled: AtomicU64,
    /// Open MCP sessions of `/mcp` (kept current by `mcp::sessions`).
    pub mcp_sessions: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// env → (overdue items, overdue P0 items).
pub type OverdueCounts = BTreeMap<String, (u64, u64)>;

/// Store state at scrape time.
#[derive(Debug, Clone, Default)]
pub struct StoreGauges {
    pub backend: &'static str,
    pub degraded: bool,
    pub pending_replay: usize,
    /// env → (overdue items, overdue P0 items); envs whose query failed are absent.
    pub overdue: OverdueCounts,
    /// Warm instances pooled per plugin (`docs/isolation.md`).
    pub instances_pooled: Vec<(String, usize)>,
}

impl Metrics {
    /// Counts one finished tool call (`outcome`: `ok` or the error code) and its latency.
    pub fn record_call(&self, tool: &str, action: &str, outcome: &str, took: Duration) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        *c.calls
            .entry((tool.to_owned(), action.to_owned(), outcome.to_owned()))
            .or_default() += 1;
        let h = c
            .latency
            .entry((tool.to_owned(), action.to_owned()))
            .or_default();
        let secs = took.as_secs_f64();
        for (count, le) in h.counts.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts one HTTP request by method, matched route template and status.
    pub fn record_request(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut c) = self.counters.lock() {
            *c.requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted connection closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was closed at once: the router was at `--max-connections`.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request failed authentication (`throttled`: answered 429 instead of 401).
    pub fn auth_failed(&self, throttled: bool) {
        let counter = match throttled {
            true => &self.auth_throttled,
            false => &self.auth_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, in_flight: usize, store: &StoreGauges) -> String {
        let mut out = String::new();
        if let Ok(c) = self.counters.lock() {
            header(
                &mut out,
                "calls_total",
                "counter",
                "Tool calls that reached an installed tool and action, by outcome (ok or the error code).",
            );
            for ((tool, action, outcome), n) in &c.calls {
                let labels = labels(&[("tool", tool), ("action", action), ("outcome", outcome)]);
                let _ = writeln!(out, "backlog_bridge_calls_total{{{labels}}} {n}");
            }
            header(
                &mut out,
                "call_duration_seconds",
                "histogram",
                "Wall time of tool calls in the router, from admission to result.",
            );
            for ((tool, action), h) in &c.latency {
                let base = labels(&[("tool", tool), ("action", action)]);
                for (count, le) in h.counts.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "backlog_bridge_call_duration_seconds_bucket{{{base},le=\"{le}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "backlog_bridge_call_duration_seconds_bucket{{{base},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "backlog_bridge_call_duration_seconds_sum{{{base}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "backlog_bridge_call_duration_seconds_count{{{base}}} {}",
                    h.count
                );
            }
            header(
                &mut out,
                "http_requests_total",
                "counter",
                "HTTP requests by method, route template and status.",
            );
            for ((method, route, status), n) in &c.requests {
                let status = status.to_string();
                let labels = labels(&[("method", method), ("route", route), ("status", &status)]);
                let _ = writeln!(out, "backlog_bridge_http_requests_total{{{labels}}} {n}");
            }
        }
        for (name, kind, help, value) in [
            (
                "connections_open",
                "gauge",
                "Client connections open.",
                &self.connections_open,
            ),
            (
                "connections_refused_total",
                "counter",
                "Connections closed at once because --max-connections were open.",
                &self.connections_refused,
            ),
            (
                "auth_failures_total",
                "counter",
                "Requests answered 401 (no or unknown API key).",
                &self.auth_failures,
            ),
            (
                "auth_throttled_total",
                "counter",
                "Requests that failed authentication answered 429: their address failed too often.",
                &self.auth_throttled,
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(
                out,
                "backlog_bridge_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "calls_in_flight",
            "gauge",
            "Tool calls admitted and not yet finished.",
        );
        let _ = writeln!(out, "backlog_bridge_calls_in_flight {in_flight}");
        header(
            &mut out,
            "mcp_sessions_open",
            "gauge",
            "Open MCP sessions of /mcp.",
        );
        let _ = writeln!(
            out,
            "backlog_bridge_mcp_sessions_open {}",
            self.mcp_sessions.load(std::sync::atomic::Ordering::Relaxed)
        );
        header(
            &mut out,
            "backend_active",
            "gauge",
            "1 for the store backend that answers now.",
        );
        for b in BACKENDS {
            let on = u8::from(store.backend == b);
            let _ = writeln!(out, "backlog_bridge_backend_active{{backend=\"{b}\"}} {on}");
        }
        header(
            &mut out,
            "degraded",
            "gauge",
            "1 while auto has fallen back to JSONL or the postgres backend is down.",
        );
        let _ = writeln!(out, "backlog_bridge_degraded {}", u8::from(store.degraded));
        header(
            &mut out,
            "pending_replay",
            "gauge",
            "Writes journaled during a Postgres outage, not yet replayed.",
        );
        let _ = writeln!(
            out,
            "backlog_bridge_pending_replay {}",
            store.pending_replay
        );
        header(
            &mut out,
            "overdue_items",
            "gauge",
            "Non-terminal items whose due_date has passed, per env.",
        );
        for (env, (all, _)) in &store.overdue {
            let _ = writeln!(
                out,
                "backlog_bridge_overdue_items{{{}}} {all}",
                labels(&[("env", env)])
            );
        }
        header(
            &mut out,
            "overdue_p0_items",
            "gauge",
            "Overdue items of priority P0, per env.",
        );
        for (env, (_, p0)) in &store.overdue {
            let _ = writeln!(
                out,
                "backlog_bridge_overdue_p0_items{{{}}} {p0}",
                labels(&[("env", env)])
            );
        }
        header(
            &mut out,
            "instances_pooled",
            "gauge",
            "Warm plugin instances kept for reuse, per plugin (bounded; docs/isolation.md).",
        );
        for (plugin, n) in &store.instances_pooled {
            let _ = writeln!(
                out,
                "backlog_bridge_instances_pooled{{{}}} {n}",
                labels(&[("plugin", plugin)])
            );
        }
        header(
            &mut out,
            "scheduler_runs_total",
            "counter",
            "Governance job runs of this process's scheduler (serve --scheduler), by job id and outcome.",
        );
        // `job_id`, not `job`: Prometheus sets `job` on every scraped series itself.
        for (job, outcome, n) in crate::scheduler::counters::snapshot() {
            let _ = writeln!(
                out,
                "backlog_bridge_scheduler_runs_total{{{}}} {n}",
                labels(&[("job_id", &job), ("outcome", &outcome)])
            );
        }
        out
    }
}

/// The config reload metrics (`crate::reload`), as Prometheus names its own.
pub fn render_reload(out: &mut String, status: &crate::reload::ReloadStatus) {
    header(
        out,
        "config_last_reload_successful",
        "gauge",
        "Whether the last config reload succeeded (1) or kept the old config (0).",
    );
    let _ = writeln!(
        out,
        "backlog_bridge_config_last_reload_successful {}",
        u8::from(status.last_ok())
    );
    header(
        out,
        "config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful config load (start or reload).",
    );
    let _ = writeln!(
        out,
        "backlog_bridge_config_last_reload_success_timestamp_seconds {}",
        status.success_timestamp()
    );
    header(
        out,
        "config_reloads_total",
        "counter",
        "Config reloads since the start, by result.",
    );
    let (ok, failed) = status.counts();
    let _ = writeln!(
        out,
        "backlog_bridge_config_reloads_total{{result=\"success\"}} {ok}"
    );
    let _ = writeln!(
        out,
        "backlog_bridge_config_reloads_total{{result=\"failure\"}} {failed}"
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP backlog_bridge_{name} {help}");
    let _ = writeln!(out, "# TYPE backlog_bridge_{name} {kind}");
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.record_call("t", "get", "ok", Duration::from_millis(3));
        m.record_call("t", "get", "not_found", Duration::from_millis(30));
        m.record_request("GET", "/v1/tools", 200);
        m.auth_failed(false);
        m.auth_failed(true);
        m.auth_failed(false);
        let store = StoreGauges {
            backend: "jsonl",
            degraded: false,
            pending_replay: 2,
            overdue: BTreeMap::from([("pr\"od".to_owned(), (7, 1))]),
            instances_pooled: vec![("t".to_owned(), 3)],
        };
        let text = m.render(3, &store);
        for line in [
            "backlog_bridge_calls_total{tool=\"t\",action=\"get\",outcome=\"ok\"} 1",
            "backlog_bridge_call_duration_seconds_bucket{tool=\"t\",action=\"get\",le=\"0.005\"} 1",
            "backlog_bridge_call_duration_seconds_bucket{tool=\"t\",action=\"get\",le=\"0.05\"} 2",
            "backlog_bridge_call_duration_seconds_bucket{tool=\"t\",action=\"get\",le=\"+Inf\"} 2",
            "backlog_bridge_call_duration_seconds_count{tool=\"t\",action=\"get\"} 2",
            "backlog_bridge_http_requests_total{method=\"GET\",route=\"/v1/tools\",status=\"200\"} 1",
            "backlog_bridge_calls_in_flight 3",
            "backlog_bridge_auth_failures_total 2",
            "backlog_bridge_auth_throttled_total 1",
            "backlog_bridge_connections_open 0",
            "backlog_bridge_backend_active{backend=\"jsonl\"} 1",
            "backlog_bridge_backend_active{backend=\"postgres\"} 0",
            "backlog_bridge_degraded 0",
            "backlog_bridge_pending_replay 2",
            "backlog_bridge_overdue_items{env=\"pr\\\"od\"} 7",
            "backlog_bridge_overdue_p0_items{env=\"pr\\\"od\"} 1",
            "backlog_bridge_instances_pooled{plugin=\"t\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }
}
