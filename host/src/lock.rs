//! One writer at a time per JSONL directory, across threads and processes (SPEC §7).
//!
//! WASI has no file locks, so the host takes an advisory lock on `<dir>/.lock` for the whole
//! of every write-capable call. Each call opens its own descriptor, and `flock` locks belong to
//! the open file description, so the same lock also serializes threads of one process.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Held for the duration of one write-capable call; released on drop.
pub struct DirLock {
    file: File,
}

/// The lock file's name inside the store directory.
pub const LOCK_FILE: &str = ".lock";

impl DirLock {
    /// Blocks until this caller is the only writer of `dir`.
    pub fn acquire(dir: &Path) -> std::io::Result<DirLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        file.lock()?;
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
