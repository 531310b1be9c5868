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
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// Errno values that mean "refused" (not "broken"). Natively these are Linux's; inside the
/// component they are WASI's (wasi-libc), which is what a read-only preopen produces.
#[cfg(not(target_os = "wasi"))]
mod errno {
    pub const EPERM: i32 = 1;
    pub const EBADF: i32 = 9;
    pub const EACCES: i32 = 13;
    pub const EROFS: i32 = 30;
    /// No such errno natively.
    pub const ENOTCAPABLE: i32 = -1;
}
#[cfg(target_os = "wasi")]
mod errno {
    pub const EACCES: i32 = 2;
    pub const EBADF: i32 = 8;
    pub const EPERM: i32 = 63;
    pub const EROFS: i32 = 69;
    pub const ENOTCAPABLE: i32 = 76;
}

/// Whether `e` is the sandbox (or the OS) refusing access rather than a fault. `writing`:
/// the operation was a write-side one, where `EBADF` means the descriptor was opened without
/// write rights (what WASI reports for a write through a read-only preopen).
pub(crate) fn is_refusal(e: &io::Error, writing: bool) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) {
        return true;
    }
    match e.raw_os_error() {
        Some(c) => {
            c == errno::EROFS
                || c == errno::EACCES
                || c == errno::EPERM
                || c == errno::ENOTCAPABLE
                || (writing && c == errno::EBADF)
        }
        None => false,
    }
}

/// Classifies an I/O error of a read-side operation.
pub(crate) fn read_err(file: &'static str, op: &'static str, source: io::Error) -> JsonlError {
    if is_refusal(&source, false) {
        JsonlError::Refused { file, op, source }
    } else {
        JsonlError::Io { file, op, source }
    }
}

/// Classifies an I/O error of a write-side operation.
pub(crate) fn write_err(file: &'static str, op: &'static str, source: io::Error) -> JsonlError {
    if is_refusal(&source, true) {
        JsonlError::Refused { file, op, source }
    } else {
        JsonlError::Io { file, op, source }
    }
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
