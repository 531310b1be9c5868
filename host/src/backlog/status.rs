//! The store's state as the host sees it: which store answers and whether writes would
//! succeed (`/readyz`, `/metrics`), and the `auto` backend's return from an outage (the
//! host's own recovery calls, and `serve`'s task that runs them when no call comes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::settings::Backend;
use crate::call::{CallRequest, new_request_id};
use crate::caps::pg::Postgres;
use crate::grants::{Access, Grants};
use crate::registry::Bridge;

/// For `serve` on the `auto` backend: a thread that runs [`Bridge::recover_store`] every
/// retry interval until `stop` (checked every second), so that a quiet router replays its
/// outage journal and returns to Postgres by itself. `None` on other backends.
pub fn spawn_store_recovery(
    live: Arc<crate::registry::Live>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let bridge = live.current();
    if bridge.settings.backend != Backend::Auto || bridge.resources.postgres.is_none() {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("store-recovery".into())
        .spawn(move || {
            let interval = Duration::from_secs(bridge.settings.pg_retry_seconds.max(1));
            let mut next = Instant::now() + interval;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                if now >= next {
                    // The config in force (a reload may have swapped it).
                    live.current().recover_store();
                    next = now + interval;
                }
                std::thread::sleep((next - now.min(next)).min(Duration::from_secs(1)));
            }
        })
        .map(Some)
}

/// The actor of the host's own store-recovery calls (see [`Bridge::recover_store`]).
pub const RECOVERY_AGENT: &str = "backlog-bridge";

/// Store-recovery calls in one go at most (each replays one batch of the journal).
const RECOVERY_CALLS: usize = 32;

/// The store as `/readyz` reports it (`docs/http-api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store that answers now: `postgres`, `jsonl`, `memory` or `null`.
    pub backend: &'static str,
    /// `auto` fell back to JSONL (Postgres down or without the current schema), or the
    /// `postgres` backend cannot reach its server.
    pub degraded: bool,
    /// Writes journaled during an outage, not yet replayed into Postgres.
    pub pending_replay: usize,
    /// Whether a write would be accepted (false: `null`, or `postgres` down).
    pub writable: bool,
    /// When the Postgres state above is the last known one rather than asked now (the pool
    /// found the server down moments ago and does not wait on it again): how old it is.
    pub postgres_age: Option<Duration>,
}

impl Bridge {
    /// The `auto` backend coming back from an outage: once the retry time has passed and the
    /// outage journal waits to be replayed (or the last replay to be confirmed), runs
    /// write-capable maintenance calls of the builtin `backlog_tool` (a one-item `list` with
    /// read-write grants, as agent [`RECOVERY_AGENT`]) whose store replays the journal in
    /// batches and switches back to Postgres. A read-only call cannot replay (its grants do
    /// not allow writing), so without this reads would answer from JSONL until some write
    /// came. Called before every call that cannot replay itself, and by `serve`'s background
    /// task every retry interval. Failures are logged, never returned: the caller's call goes
    /// on (and, Postgres still down, finds it marked down again).
    pub fn recover_store(&self) {
        let (Backend::Auto, Some(dir), Some(_)) = (
            self.settings.backend,
            &self.resources.backlog,
            &self.resources.postgres,
        ) else {
            return;
        };
        let Some(loaded) = self.plugins.get("backlog_tool") else {
            return;
        };
        let mut due = backlog_store::auto_recovery_due(dir, &self.now());
        // Each call replays at most one batch; a long journal takes several.
        for _ in 0..RECOVERY_CALLS {
            if !due {
                break;
            }
            // What a write call of the plugin gets at most: its `may_use`.
            let grants = Grants {
                backlog_dir: Access::ReadWrite.min(loaded.entry.may_use.backlog_dir),
                reports_dir: Access::None,
                postgres: Access::ReadWrite.min(loaded.entry.may_use.postgres),
            };
            let req = CallRequest {
                agent: RECOVERY_AGENT,
                tool: "backlog_tool",
                action: "list",
                params: r#"{"limit":1}"#,
            };
            let request_id = new_request_id();
            if let Err(e) = crate::call::maintenance(self, loaded, grants, &req, &request_id) {
                tracing::warn!(request_id, "backlog_store: recovery call failed: {e}");
                return;
            }
            // Still due: more batches. Postgres down again: not due until the next retry time.
            due = backlog_store::auto_recovery_due(dir, &self.now());
        }
    }

    /// Which store answers and whether writes would succeed, for `/readyz` and `/metrics`.
    /// May talk to Postgres (one probe statement): call it off the async runtime.
    pub fn store_status(&self) -> StoreStatus {
        let jsonl = |degraded: bool, pending_replay: usize| StoreStatus {
            backend: "jsonl",
            degraded,
            pending_replay,
            writable: true,
            postgres_age: None,
        };
        // The age of a last known "down" (a fresh answer, or a known "up", has none).
        let age_of = |s: &crate::caps::pg::PgStatus| {
            let down = !(s.reachable && s.schema_current);
            (down && !s.age.is_zero()).then_some(s.age)
        };
        match (
            self.settings.backend,
            self.postgres(),
            &self.resources.backlog,
        ) {
            (Backend::Null, ..) => StoreStatus {
                backend: "null",
                degraded: false,
                pending_replay: 0,
                writable: false,
                postgres_age: None,
            },
            (Backend::Memory, ..) => StoreStatus {
                backend: "memory",
                ..jsonl(false, 0)
            },
            (Backend::Postgres, pg, _) => {
                let status = pg.map(Postgres::status);
                let up = status
                    .as_ref()
                    .is_some_and(|s| s.reachable && s.schema_current);
                StoreStatus {
                    backend: "postgres",
                    degraded: !up,
                    pending_replay: 0,
                    writable: up,
                    postgres_age: status.as_ref().and_then(age_of),
                }
            }
            (Backend::Auto, Some(pg), Some(dir)) => {
                let auto = backlog_store::auto_status(dir, &self.now());
                // Journaled writes not replayed yet: calls answer from JSONL (after the retry
                // time, only until the recovery call the next call or `serve`'s task runs).
                if auto.degraded || auto.pending_replay > 0 {
                    return jsonl(true, auto.pending_replay);
                }
                let s = pg.status();
                if s.reachable && s.schema_current {
                    StoreStatus {
                        backend: "postgres",
                        ..jsonl(false, auto.pending_replay)
                    }
                } else {
                    StoreStatus {
                        postgres_age: age_of(&s),
                        ..jsonl(true, auto.pending_replay)
                    }
                }
            }
            (Backend::Auto | Backend::Jsonl, ..) => jsonl(false, 0),
        }
    }
}
