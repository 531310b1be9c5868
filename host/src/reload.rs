//! Reloading the configuration of a running `serve` or `scheduler` (`docs/change-control.md`):
//! on `SIGHUP` and `POST /v1/admin/reload`.
//!
//! A reload reads the whole config dir with the loader a start and `config check` use
//! ([`ConfigParts`]: matrix, policy, plugins with their pins), checks the task registry of the
//! ops dir against it and whatever the caller adds (the router: the agents' keys), compiles
//! only the components whose entry or bytes changed, and only then swaps the new bridge in
//! ([`Live::swap`]). Any error keeps the old config whole: every error is logged (each names
//! its file and key) and returned. One reload runs at a time.
//!
//! Must not: change what outlives a config (settings, the store and its Postgres pool, the
//! engine, the audit trail), or write a key into a log or audit line (changed files are named,
//! never shown).

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::config::files;
use crate::registry::{Bridge, ConfigParts, Live};

/// What the reload metrics of `/metrics` show.
#[derive(Debug)]
pub struct ReloadStatus {
    last_ok: AtomicBool,
    /// Unix seconds of the last successful load (the start counts as one).
    success_ts: AtomicI64,
    successes: AtomicU64,
    failures: AtomicU64,
}

impl Default for ReloadStatus {
    fn default() -> ReloadStatus {
        ReloadStatus {
            last_ok: AtomicBool::new(true),
            success_ts: AtomicI64::new(chrono::Utc::now().timestamp()),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl ReloadStatus {
    /// Whether the last reload (or the start) succeeded.
    pub fn last_ok(&self) -> bool {
        self.last_ok.load(Ordering::Relaxed)
    }

    /// Unix seconds of the last successful load.
    pub fn success_timestamp(&self) -> i64 {
        self.success_ts.load(Ordering::Relaxed)
    }

    /// Reloads that succeeded and failed since the start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.successes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// A reload that swapped the new config in.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The files whose bytes changed since the last load (config dir relative where they
    /// are under it), or appeared or disappeared.
    pub changed: Vec<String>,
    pub ms: f64,
}

/// A reload that kept the old config: every error found, one per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ReloadError {
    pub errors: Vec<String>,
}

/// Who asked for a reload (the audit line's `trigger` and `actor`).
#[derive(Debug, Clone)]
pub enum Trigger {
    Signal,
    Http { agent: String, request_id: String },
}

/// The reloads of one process over its [`Live`] bridge.
pub struct Reloader {
    live: Arc<Live>,
    /// The digests of the files the config in force was read from; held for a whole reload,
    /// so two reloads never interleave.
    files: Mutex<BTreeMap<String, String>>,
    status: ReloadStatus,
}

impl Reloader {
    pub fn new(live: Arc<Live>) -> Reloader {
        let files = live.current().files.clone();
        Reloader {
            live,
            files: Mutex::new(files),
            status: ReloadStatus::default(),
        }
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    pub fn status(&self) -> &ReloadStatus {
        &self.status
    }

    /// Reloads: loads and checks everything (`prepare` adds the caller's own checks over the
    /// new bridge and returns what `commit` installs under the swap's lock), then swaps. Logs
    /// and audits the result and updates the status either way.
    pub fn reload<C>(
        &self,
        trigger: &Trigger,
        prepare: impl FnOnce(&Bridge) -> Result<C, Vec<anyhow::Error>>,
        commit: impl FnOnce(C),
    ) -> Result<Reloaded, ReloadError> {
        let started = Instant::now();
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.live.current();
        let result = load(&old, prepare);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let new_files = match &result {
            Ok((bridge, _)) => bridge.files.clone(),
            // What is on disk now, read anew (the old bridge's digests may be stale).
            Err(_) => fingerprint_now(&old),
        };
        let changed = diff(&files, &new_files);
        let mut loaded = Vec::new();
        let outcome = match result {
            Ok((bridge, extra)) => {
                loaded = loaded_anew(&old, &bridge);
                self.live.swap(Arc::new(bridge), || commit(extra));
                *files = new_files;
                let took = started.elapsed().as_secs_f64() * 1000.0;
                self.status.last_ok.store(true, Ordering::Relaxed);
                self.status
                    .success_ts
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                self.status.successes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    changed = %changed.join(","),
                    ms = format!("{took:.1}"),
                    "config reloaded"
                );
                Ok(Reloaded {
                    changed: changed.clone(),
                    ms: took,
                })
            }
            Err(errors) => {
                self.status.last_ok.store(false, Ordering::Relaxed);
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                let errors: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
                for e in &errors {
                    tracing::error!(
                        ms = format!("{ms:.1}"),
                        "config reload failed, the old config stays: {e}"
                    );
                }
                Err(ReloadError { errors })
            }
        };
        let bridge = self.live.current();
        bridge.audit_event(audit_line(trigger, &outcome, &changed));
        for (plugin, digest) in loaded {
            let mut line = serde_json::Map::new();
            line.insert("event".into(), json!("plugin_load"));
            line.insert("plugin".into(), json!(plugin));
            line.insert("digest".into(), json!(digest));
            bridge.audit_event(line);
        }
        outcome
    }
}

/// The new bridge and the caller's extra, or every error.
fn load<C>(
    old: &Bridge,
    prepare: impl FnOnce(&Bridge) -> Result<C, Vec<anyhow::Error>>,
) -> Result<(Bridge, C), Vec<anyhow::Error>> {
    let parts = ConfigParts::load_over(&old.settings, Some(old))?;
    let mut errors = Vec::new();
    let registry = crate::scheduler::registry_path(&old.settings.ops_dir);
    if registry.exists() {
        let catalog = crate::scheduler::catalog(&parts.matrix, |t| parts.provides(t));
        if let Err(e) = crate::scheduler::load_registry(&old.settings.ops_dir, &catalog) {
            errors.push(e);
        }
    }
    let bridge = old.successor(parts);
    let extra = match prepare(&bridge) {
        Ok(extra) => Some(extra),
        Err(mut more) => {
            errors.append(&mut more);
            None
        }
    };
    match extra {
        Some(extra) if errors.is_empty() => Ok((bridge, extra)),
        _ => Err(errors),
    }
}

/// The plugins `new` loaded itself rather than took over from `old`: name and digest.
fn loaded_anew(old: &Bridge, new: &Bridge) -> Vec<(String, String)> {
    new.plugins
        .iter()
        .filter(|(name, l)| !old.plugins.get(*name).is_some_and(|o| Arc::ptr_eq(o, l)))
        .map(|(name, l)| (name.clone(), format!("sha256:{}", l.digest)))
        .collect()
}

fn audit_line(
    trigger: &Trigger,
    outcome: &Result<Reloaded, ReloadError>,
    changed: &[String],
) -> serde_json::Map<String, Value> {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), json!("reload"));
    match trigger {
        Trigger::Signal => {
            line.insert("trigger".into(), json!("sighup"));
        }
        Trigger::Http { agent, request_id } => {
            line.insert("trigger".into(), json!("http"));
            line.insert("actor".into(), json!(agent));
            line.insert("request_id".into(), json!(request_id));
        }
    }
    line.insert("pid".into(), json!(std::process::id()));
    match outcome {
        Ok(_) => line.insert("result".into(), json!("success")),
        Err(e) => {
            line.insert("errors".into(), json!(e.errors.len()));
            line.insert("result".into(), json!("failure"))
        }
    };
    line.insert("changed".into(), json!(changed));
    line
}

/// The digests of every file `bridge`'s config was read from, plus the ones the config dir
/// now names (read anew: the old bridge's digests may be stale), so a failed reload still
/// says which files it found changed.
fn fingerprint_now(bridge: &Bridge) -> BTreeMap<String, String> {
    let loaded = bridge
        .plugins
        .values()
        .map(|l| (&l.entry, l.digest.as_str()));
    let s = &bridge.settings;
    files::digests(&s.config_dir, &s.ops_dir, &bridge.matrix, loaded, true)
}

fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            old.get(*n).unwrap_or(&"absent".into()) != new.get(*n).unwrap_or(&"absent".into())
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn diff_names_changed_added_and_removed_files_once_in_order() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let old = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let new = map(&[("a", "1"), ("b", "9"), ("d", "4")]);
        assert_eq!(diff(&old, &new), ["b", "c", "d"]);
        assert!(diff(&old, &old).is_empty());
        // A file that is absent both times is no change.
        let absent = map(&[("k", "absent")]);
        assert!(diff(&absent, &map(&[])).is_empty());
    }
}
