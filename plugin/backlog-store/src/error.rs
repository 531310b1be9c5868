//! Typed failures of the JSONL store and their mapping onto [`StoreError`].
//!
//! Messages name the file (`items.jsonl`, never an absolute host path: guests must not leak
//! where the operator keeps the data) and what the store was doing when it failed.

use std::io;

use backlog_core::store::StoreError;

/// A failure of the JSONL store. Converted into [`StoreError`] at the trait boundary:
/// [`JsonlError::ReadOnly`] and [`JsonlError::Refused`] become `Forbidden`, the rest `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The store was opened with [`crate::Access::ReadOnly`] and was asked to write.
    #[error(
        "the sandbox refused to write {file}: this call holds a read-only grant on the JSONL directory"
    )]
    ReadOnly {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
    },
    /// The operating system or the WASI sandbox refused the operation (read-only preopen,
    /// permissions, read-only filesystem).
    #[error("the sandbox refused to {op} {file}: {source}")]
    Refused {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
        /// What was attempted: `read`, `write`, `create`, `truncate`, `sync`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The host's filesystem refused the operation or is full (permissions, read-only
    /// filesystem, no space or quota left): not the sandbox and not a fault of the store, but
    /// something the operator has to fix. The message says "the store directory"; the host,
    /// which alone knows where that is, names it.
    #[error("cannot {op} {file} in the store directory: {what}; {fix}")]
    HostFs {
        /// The file: `items.jsonl`, `events.jsonl`, `.items.jsonl.cleanup.tmp`, …
        file: &'static str,
        /// What was attempted.
        op: &'static str,
        /// The condition, with its errno name.
        what: &'static str,
        /// What the operator should do.
        fix: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A member of the store directory is a symbolic link. The store never follows one: it
    /// could make a write land outside the directory.
    #[error(
        "{file} in the store directory is a symbolic link; the store does not follow links: replace it with the file itself"
    )]
    Symlink {
        /// The file.
        file: &'static str,
    },
    /// Any other I/O failure.
    #[error("jsonl: cannot {op} {file}: {source}")]
    Io {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
        /// What was attempted.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An indexed line no longer holds what the index says (the file was changed in a way the
    /// change detection did not see). The store re-indexes and retries once before reporting it.
    #[error(
        "jsonl: {file} changed while being read (line at byte {offset} is not what was indexed)"
    )]
    Stale {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
        /// Byte offset of the line that did not match.
        offset: u64,
    },
    /// An item or event could not be serialized (never expected for the core model types).
    #[error("jsonl: cannot serialize a record for {file}: {source}")]
    Serialize {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The file holds more lines than the index can address (more than 2^32 - 2).
    #[error("jsonl: {file} is too large to index")]
    TooLarge {
        /// `items.jsonl` or `events.jsonl`.
        file: &'static str,
    },
}

impl From<JsonlError> for StoreError {
    fn from(e: JsonlError) -> Self {
        match e {
            JsonlError::ReadOnly { .. } | JsonlError::Refused { .. } => {
                StoreError::Forbidden(e.to_string())
            }
            JsonlError::HostFs { .. } | JsonlError::Symlink { .. } => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// Errno values the store tells apart. Natively these are Linux's; inside the component they
/// are WASI's (wasi-libc). wasmtime reports its own refusals (a write through a read-only
/// preopen) as `EPERM`/`ENOTCAPABLE`, or `EBADF` for a descriptor opened without write rights;
/// the host filesystem's `EACCES` and `ENOSPC` reach the guest as themselves.
#[cfg(not(target_os = "wasi"))]
mod errno {
    pub const EPERM: i32 = 1;
    pub const EBADF: i32 = 9;
    pub const EACCES: i32 = 13;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const EDQUOT: i32 = 122;
    /// No such errno natively.
    pub const ENOTCAPABLE: i32 = -1;
}
#[cfg(target_os = "wasi")]
mod errno {
    pub const EACCES: i32 = 2;
    pub const EBADF: i32 = 8;
    pub const EDQUOT: i32 = 19;
    pub const ENOSPC: i32 = 51;
    pub const EPERM: i32 = 63;
    pub const EROFS: i32 = 69;
    pub const ENOTCAPABLE: i32 = 76;
}

/// How an I/O error is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The sandbox refused (`forbidden`).
    Sandbox,
    /// The host filesystem refused or is full (`unavailable`): what and the fix.
    HostFs(&'static str, &'static str),
    /// A fault (`internal`).
    Other,
}

const ACCESS: Class = Class::HostFs(
    "permission denied (EACCES)",
    "the user the bridge runs as cannot access it: fix the owner or mode of the directory and its files (for example `chown -R <bridge user>` on it)",
);
const READ_ONLY: Class = Class::HostFs(
    "read-only filesystem (EROFS)",
    "remount it read-write or point BACKLOG_JSONL_DIR at a writable directory",
);
const FULL_WHAT: &str = "no space left on the device (ENOSPC or quota exceeded)";
const FULL: Class = Class::HostFs(
    FULL_WHAT,
    "free space on its filesystem (or raise the quota), then retry",
);

/// Classifies `e`. `writing`: the operation was a write-side one, where `EBADF` means the
/// descriptor was opened without write rights (what WASI reports for a write through a
/// read-only preopen).
pub(crate) fn classify(e: &io::Error, writing: bool) -> Class {
    match e.raw_os_error() {
        Some(c) if c == errno::EACCES => ACCESS,
        Some(c) if c == errno::EROFS => READ_ONLY,
        Some(c) if c == errno::ENOSPC || c == errno::EDQUOT => FULL,
        Some(c) if c == errno::EPERM || c == errno::ENOTCAPABLE => Class::Sandbox,
        Some(c) if writing && c == errno::EBADF => Class::Sandbox,
        Some(_) => Class::Other,
        None => match e.kind() {
            io::ErrorKind::ReadOnlyFilesystem => READ_ONLY,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FULL,
            io::ErrorKind::PermissionDenied => Class::Sandbox,
            _ => Class::Other,
        },
    }
}

/// Whether `e` is a refusal of any kind (sandbox or host filesystem permissions), for callers
/// that only tell refusals from faults.
pub(crate) fn is_refusal(e: &io::Error, writing: bool) -> bool {
    match classify(e, writing) {
        Class::Sandbox => true,
        Class::HostFs(what, _) => what != FULL_WHAT,
        Class::Other => false,
    }
}

fn classified(
    file: &'static str,
    op: &'static str,
    source: io::Error,
    writing: bool,
) -> JsonlError {
    match classify(&source, writing) {
        Class::Sandbox => JsonlError::Refused { file, op, source },
        Class::HostFs(what, fix) => JsonlError::HostFs {
            file,
            op,
            what,
            fix,
            source,
        },
        Class::Other => JsonlError::Io { file, op, source },
    }
}

/// `Err(Symlink)` if `path` (the store file `file`) is a symbolic link. Checked right after
/// opening: `std::fs` has no portable `O_NOFOLLOW` (and WASI's preopen already keeps links
/// from leaving the directory), so this catches a planted link before anything is read from or
/// written through it.
pub(crate) fn refuse_symlink(path: &std::path::Path, file: &'static str) -> Result<(), JsonlError> {
    match crate::lstat::lstat(path) {
        Ok(m) if m.is_symlink => Err(JsonlError::Symlink { file }),
        _ => Ok(()),
    }
}

/// Classifies an I/O error of a read-side operation.
pub(crate) fn read_err(file: &'static str, op: &'static str, source: io::Error) -> JsonlError {
    classified(file, op, source, false)
}

/// Classifies an I/O error of a write-side operation.
pub(crate) fn write_err(file: &'static str, op: &'static str, source: io::Error) -> JsonlError {
    classified(file, op, source, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_forbidden_and_faults_to_internal() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(
            StoreError::from(write_err("items.jsonl", "write", denied)),
            StoreError::Forbidden(m) if m.starts_with("the sandbox refused to write items.jsonl: ")
        ));
        let rofs = io::Error::from_raw_os_error(errno::EROFS);
        assert!(matches!(
            StoreError::from(write_err("events.jsonl", "write", rofs)),
            StoreError::Unavailable(m) if m.starts_with("cannot write events.jsonl in the store directory: read-only filesystem (EROFS); remount")
        ));
        let acces = io::Error::from_raw_os_error(errno::EACCES);
        assert!(matches!(
            StoreError::from(read_err("items.jsonl", "open", acces)),
            StoreError::Unavailable(m) if m.contains("permission denied (EACCES)") && m.contains("chown")
        ));
        let full = io::Error::from_raw_os_error(errno::ENOSPC);
        assert!(matches!(
            StoreError::from(write_err(".items.jsonl.cleanup.tmp", "write", full)),
            StoreError::Unavailable(m) if m.starts_with("cannot write .items.jsonl.cleanup.tmp in the store directory: no space left")
        ));
        let perm = io::Error::from_raw_os_error(errno::EPERM);
        assert!(matches!(
            StoreError::from(write_err("items.jsonl", "create", perm)),
            StoreError::Forbidden(_)
        ));
        let badf = io::Error::from_raw_os_error(errno::EBADF);
        assert!(matches!(
            StoreError::from(write_err("items.jsonl", "write", badf)),
            StoreError::Forbidden(_)
        ));
        let badf = io::Error::from_raw_os_error(errno::EBADF);
        assert!(matches!(
            StoreError::from(read_err("items.jsonl", "read", badf)),
            StoreError::Internal(_)
        ));
        let other = io::Error::other("disk on fire");
        assert!(matches!(
            StoreError::from(write_err("items.jsonl", "sync", other)),
            StoreError::Internal(m) if m == "jsonl: cannot sync items.jsonl: disk on fire"
        ));
        assert!(matches!(
            StoreError::from(JsonlError::ReadOnly {
                file: "items.jsonl"
            }),
            StoreError::Forbidden(_)
        ));
    }
}
