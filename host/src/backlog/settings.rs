//! Backend selection and the settings of the store: flags merged with the environment, read
//! once at start-up (`docs/storage.md`, `docs/configuration.md`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};

use crate::caps::pg::Dsn;
use crate::runtime::cache;

/// The store backend (`BACKLOG_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Postgres,
    Jsonl,
    Memory,
    Null,
}

impl Backend {
    /// Parses `BACKLOG_BACKEND`.
    pub fn parse(s: &str) -> anyhow::Result<Backend> {
        Ok(match s {
            "" | "auto" => Backend::Auto,
            "jsonl" => Backend::Jsonl,
            "memory" => Backend::Memory,
            "null" => Backend::Null,
            "postgres" => Backend::Postgres,
            other => {
                bail!("BACKLOG_BACKEND={other:?}: expected auto, postgres, jsonl, memory or null")
            }
        })
    }

    /// The name guests are told and report as `backend`.
    pub(crate) fn guest_name(self) -> &'static str {
        match self {
            Backend::Auto | Backend::Jsonl => "jsonl",
            Backend::Postgres => "postgres",
            Backend::Memory => "memory",
            Backend::Null => "null",
        }
    }
}

/// Validated settings: flags merged with the environment, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub ops_dir: PathBuf,
    pub backend: Backend,
    /// `BACKLOG_JSONL_DIR`, else `<ops-dir>/backlog`.
    pub jsonl_dir: PathBuf,
    /// `<ops-dir>/reports`.
    pub reports_dir: PathBuf,
    /// Compiled-component cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// `BACKLOG_BRIDGE_NOW`: the clock guests see, pinned.
    pub now: Option<DateTime<Utc>>,
    /// `BACKLOG_BRIDGE_NOW_FILE`: a file whose first line (RFC 3339) is the clock, read at each
    /// look — a pinned clock that drills move forward for several processes at once. Wins
    /// over `now` while it holds a time.
    pub now_file: Option<PathBuf>,
    /// `BACKLOG_POSTGRES_DSN`, else `POSTGRES_DSN` (prints redacted).
    pub postgres_dsn: Option<Dsn>,
    /// `BACKLOG_PG_RETRY_SECONDS` (default 300): how long `auto` stays on JSONL after
    /// Postgres failed before it tries again.
    pub pg_retry_seconds: u64,
    /// The audit trail's directory (`--audit-dir`, `BACKLOG_BRIDGE_AUDIT_DIR`, else
    /// `<ops-dir>/audit`).
    pub audit_dir: PathBuf,
}

impl Settings {
    /// Reads the environment variables (see `docs/storage.md`, `docs/configuration.md`, `docs/cli.md`) over the given directories.
    pub fn from_env(config_dir: PathBuf, ops_dir: PathBuf) -> anyhow::Result<Settings> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let backend = Backend::parse(var("BACKLOG_BACKEND").as_deref().unwrap_or("auto"))?;
        let jsonl_dir = var("BACKLOG_JSONL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| ops_dir.join("backlog"));
        let now = match var("BACKLOG_BRIDGE_NOW") {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("BACKLOG_BRIDGE_NOW={s:?} is not an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Settings {
            postgres_dsn: Dsn::resolve(None, var),
            pg_retry_seconds: match var("BACKLOG_PG_RETRY_SECONDS") {
                None => 300,
                Some(s) => s.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("BACKLOG_PG_RETRY_SECONDS={s:?} is not a positive number of seconds")
                })?,
            },
            audit_dir: var("BACKLOG_BRIDGE_AUDIT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| ops_dir.join("audit")),
            reports_dir: ops_dir.join("reports"),
            config_dir,
            ops_dir,
            backend,
            jsonl_dir,
            cache_dir: cache::default_dir(),
            now,
            now_file: var("BACKLOG_BRIDGE_NOW_FILE").map(PathBuf::from),
        })
    }
}
