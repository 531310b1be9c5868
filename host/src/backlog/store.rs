//! The store's files on the host: which directory and Postgres pool the configured backend
//! uses, the directory a write-capable call locks, the fsync that makes its write durable
//! before the answer, the host-side filesystem errors, and the `/readyz` write probe.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::settings::{Backend, Settings};
use crate::caps::pg::{self, Postgres};
use crate::error::{Code, ToolError};
use crate::grants::{Access, Grants};
use crate::lock::DirLock;
use crate::runtime::sandbox::Resources;

/// What the configured backend gives calls: the JSONL directory and the Postgres pool, and
/// (the `memory` backend) the temporary directory that must live as long as the process.
pub(crate) fn open(settings: &Settings) -> anyhow::Result<(Resources, Option<tempfile::TempDir>)> {
    let (backlog, memory_dir) = match settings.backend {
        Backend::Null | Backend::Postgres => (None, None),
        Backend::Memory => {
            let dir = tempfile::Builder::new()
                .prefix("backlog-memory-")
                .tempdir()?;
            (Some(dir.path().to_owned()), Some(dir))
        }
        Backend::Auto | Backend::Jsonl => (Some(settings.jsonl_dir.clone()), None),
    };
    let postgres = match (settings.backend, &settings.postgres_dsn) {
        (Backend::Postgres | Backend::Auto, Some(dsn)) => {
            tracing::debug!(dsn = %dsn, "postgres: configured");
            Some(Arc::new(
                Postgres::new(
                    dsn.clone(),
                    pg::Limits::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?,
                )
                .context("the Postgres backend")?,
            ))
        }
        (Backend::Postgres, None) => bail!(
            "BACKLOG_BACKEND=postgres needs a DSN: set BACKLOG_POSTGRES_DSN (or POSTGRES_DSN)"
        ),
        _ => None,
    };
    match settings.backend {
        Backend::Postgres => tracing::info!("backlog_store: using PostgresBacklogStore"),
        // With a DSN, the guest's auto store logs each switch itself (on the first call
        // and whenever Postgres goes away or comes back).
        Backend::Auto if postgres.is_some() => {}
        Backend::Auto => {
            tracing::info!("backlog_store: using JsonlBacklogStore");
            tracing::info!(
                "backlog_store: auto without BACKLOG_POSTGRES_DSN or POSTGRES_DSN: JSONL only"
            );
        }
        Backend::Jsonl => tracing::info!("backlog_store: using JsonlBacklogStore"),
        Backend::Memory => tracing::info!("backlog_store: using MemoryBacklogStore"),
        Backend::Null => tracing::info!("backlog_store: using NullBacklogStore"),
    }
    let reports = Some(settings.reports_dir.clone());
    Ok((
        Resources {
            backlog,
            reports,
            postgres,
        },
        memory_dir,
    ))
}

/// How a write-capable call holds the store directory's lock.
pub(crate) enum DirLocking {
    /// The call cannot write the directory: no lock.
    None,
    /// Taken before the guest runs, held until the write is durable.
    Held(DirLock),
    /// The `auto` backend over Postgres: the guest takes it only if it turns to the
    /// directory (`caps/dir_lock.rs`); a call that runs on Postgres never waits for it.
    OnDemand,
}

/// Before a call enters its guest: grants to what the host does not have are dropped, and a
/// write-capable call holds the directory lock until its write is durable (or may take it on
/// demand: [`DirLocking::OnDemand`]). The store directory itself is made only when something
/// needs it and finds it missing: the lock here, a new sandbox's preopen
/// ([`ensure_store_dir`]). A warm instance holds its preopen open: a per-call check of the
/// path would tell it nothing.
pub(crate) fn prepare(
    settings: &Settings,
    resources: &Resources,
    grants: &mut Grants,
) -> Result<DirLocking, ToolError> {
    if resources.backlog.is_none() {
        grants.backlog_dir = Access::None;
    }
    if resources.postgres.is_none() {
        grants.postgres = Access::None;
    }
    let lock = match (grants.backlog_dir, &resources.backlog) {
        (Access::ReadWrite, Some(_)) if lock_on_demand(settings, resources) => DirLocking::OnDemand,
        (Access::ReadWrite, Some(dir)) => {
            let lock = match DirLock::acquire(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ensure_dir(dir)?;
                    DirLock::acquire(dir)
                }
                taken => taken,
            };
            lock.map(DirLocking::Held)
                .map_err(|e| host_fs_error("cannot lock the store directory", &e))?
        }
        _ => DirLocking::None,
    };
    if grants.reports_dir != Access::None && std::fs::create_dir_all(&settings.reports_dir).is_err()
    {
        grants.reports_dir = Access::None;
    }
    Ok(lock)
}

/// Makes the store directory a new sandbox with `grants` will preopen, if it is missing.
pub(crate) fn ensure_store_dir(resources: &Resources, grants: Grants) -> Result<(), ToolError> {
    match (grants.backlog_dir, &resources.backlog) {
        (Access::None, _) | (_, None) => Ok(()),
        (_, Some(dir)) => ensure_dir(dir),
    }
}

/// Whether write-capable calls take the directory lock on demand: the `auto` backend with
/// Postgres configured (the guest is told so in its config: `"dir_lock": "on_demand"`).
pub(crate) fn lock_on_demand(settings: &Settings, resources: &Resources) -> bool {
    settings.backend == Backend::Auto && resources.postgres.is_some()
}

/// The store of one call: what [`durable`](StoreCall::durable) and
/// [`name_store_dir`](StoreCall::name_store_dir) need.
pub(crate) struct StoreCall<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) resources: &'a Resources,
}

impl StoreCall<'_> {
    /// Makes what a write-capable call appended durable before it is acknowledged: both
    /// files and the write intent fdatasync'd in parallel, still under the directory lock.
    /// (Guests are told `"sync":"host"` and skip their own syncs, but for the write intent's
    /// "in progress" record; the `memory` backend needs none.)
    pub(crate) fn durable(&self) -> Result<(), ToolError> {
        let (Backend::Auto | Backend::Jsonl, Some(dir)) =
            (self.settings.backend, &self.resources.backlog)
        else {
            return Ok(());
        };
        let sync = |name: &str| match crate::lock::open_nofollow(
            std::fs::OpenOptions::new().read(true),
            &dir.join(name),
        ) {
            Ok(f) => f.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        // The files and the write intent that makes the call's writes one unit (its end was
        // recorded last by the guest) together: each only counts once all three are synced.
        let (items, events, intent) = std::thread::scope(|s| {
            let events = s.spawn(|| sync(backlog_store::EVENTS_FILE));
            let intent = s.spawn(|| sync(backlog_store::INTENT_FILE));
            (
                sync(backlog_store::ITEMS_FILE),
                events.join(),
                intent.join(),
            )
        });
        let joined = |r: std::thread::Result<std::io::Result<()>>| {
            r.unwrap_or_else(|_| Err(std::io::Error::other("sync thread panicked")))
        };
        let result = items.and(joined(events)).and(joined(intent));
        result.map_err(|e| match host_fs_fix(&e) {
            Some(_) => host_fs_error("the write could not be made durable", &e),
            None => ToolError::new(
                Code::Internal,
                format!("the write could not be made durable: {e}"),
            ),
        })
    }

    /// A guest's host-filesystem failure (`unavailable`, "… in the store directory: …") with
    /// the directory's host path filled in: the guest knows only its guest path.
    pub(crate) fn name_store_dir(&self, mut e: ToolError, grants: Grants) -> ToolError {
        const PHRASE: &str = " in the store directory: ";
        if let (Code::Unavailable, Some(dir), false) = (
            e.code,
            &self.resources.backlog,
            grants.backlog_dir == Access::None,
        ) && e.message.contains(PHRASE)
        {
            e.message = e.message.replacen(
                PHRASE,
                &format!(" in the store directory {}: ", dir.display()),
                1,
            );
        }
        e
    }
}

fn ensure_dir(dir: &Path) -> Result<(), ToolError> {
    // One `statx` when it exists (as it nearly always does), not a failed `mkdir` and then
    // the `statx`.
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        let e = std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        host_fs_error("cannot create the store directory", &e)
    })
}

/// What the operator should do about a host filesystem refusal or a full disk; `None` for
/// other errors.
fn host_fs_fix(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => Some(
            "the user the bridge runs as cannot access it: fix the owner or mode of the store directory and its files",
        ),
        ErrorKind::ReadOnlyFilesystem => Some(
            "the filesystem is read-only: remount it read-write or point BACKLOG_JSONL_DIR at a writable directory",
        ),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            Some("no space left: free space on its filesystem (or raise the quota), then retry")
        }
        _ => None,
    }
}

/// A host-side filesystem failure around the store: `unavailable` (the operator must act, the
/// caller may retry later), with the host path (in `e`) and, when known, the fix.
fn host_fs_error(what: &str, e: &std::io::Error) -> ToolError {
    let message = match host_fs_fix(e) {
        Some(fix) => format!("{what}: {e}; {fix}"),
        None => format!("{what}: {e}"),
    };
    ToolError::new(Code::Unavailable, message)
}

/// Whether a write to the JSONL store in `dir` would get past the file system: the store's
/// files open for appending (without following symlinks) and a new file can be created and
/// removed in the directory. The probe does what a write does rather than reading mode bits,
/// so it answers for this process's real privileges (root ignores mode bits but not a
/// read-only mount or an immutable file). A directory that does not exist yet is created by
/// the first write: its nearest existing ancestor is probed instead.
pub fn jsonl_writable(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut probe_dir = dir;
    while !probe_dir.exists() {
        match probe_dir.parent() {
            Some(parent) => probe_dir = parent,
            None => break,
        }
    }
    let fix = "make it writable for this process, or fix the mount";
    for name in ["items.jsonl", "events.jsonl", crate::lock::LOCK_FILE] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}; {fix}", path.display()))?;
    }
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = probe_dir.join(format!(".readyz-probe-{}-{n}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&probe)
        .map_err(|e| format!("cannot create files in {}: {e}; {fix}", probe_dir.display()))?;
    std::fs::remove_file(&probe)
        .map_err(|e| format!("cannot remove {}: {e}; {fix}", probe.display()))?;
    Ok(())
}
