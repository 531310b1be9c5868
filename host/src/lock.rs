//! One writer at a time per JSONL directory, across threads and processes (`docs/storage.md`).
//!
//! WASI has no file locks, so the host takes an advisory lock on `<dir>/.lock` for the whole
//! of every write-capable call (the `auto` backend's calls: only if they turn to the
//! directory, through `caps/dir_lock.rs`). Each call opens its own descriptor, and `flock` locks belong to
//! the open file description, so the same lock also serializes threads of one process.
//!
//! The lock file is opened with `O_NOFOLLOW`: a `.lock` planted as a symbolic link is refused
//! (`ELOOP`), never followed to create or lock a file outside the store directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Held for the duration of one write-capable call; released on drop.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

/// The lock file's name inside the store directory.
pub const LOCK_FILE: &str = ".lock";

/// Opens `path` without following a symbolic link in its last component (`O_NOFOLLOW`): a
/// link fails with an error that says so.
pub fn open_nofollow(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    opts.open(path).map_err(|e| {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            io::Error::new(
                e.kind(),
                format!(
                    "{} is a symbolic link; the bridge does not follow links in the store directory: remove it",
                    path.display()
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    })
}

impl DirLock {
    /// Blocks until this caller is the only writer of `dir`.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let file = open_nofollow(
            OpenOptions::new().create(true).truncate(false).write(true),
            &dir.join(LOCK_FILE),
        )?;
        file.lock()?;
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
