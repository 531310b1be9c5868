//! `lstat` for the store's looks at its own files: what a warm call asks of each file before it
//! trusts its index, and what a new instance asks before it opens anything.
//!
//! Natively it is `std::fs::symlink_metadata`. Inside the component, std's goes through
//! wasi-libc, which fills in `st_ino` with a second host call (`metadata-hash-at`, a second
//! `statx` on the host) that the store never reads ([`ino_of`] is `None` there). Here it asks the
//! preopened directory's `stat-at` alone: one host call a look instead of two (a warm `get` made
//! three host calls, two of them this look). Anything but success or "no such file" is asked
//! again through std, so errors read and classify exactly as before.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// What the store needs of a file's metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lstat {
    /// A regular file (not a link, not a directory).
    pub is_file: bool,
    /// A symbolic link (never followed).
    pub is_symlink: bool,
    pub len: u64,
    /// Last modification, where the filesystem has one.
    pub modified: Option<SystemTime>,
    /// The inode, where std exposes it (`None` inside the component).
    pub ino: Option<u64>,
}

impl From<std::fs::Metadata> for Lstat {
    fn from(m: std::fs::Metadata) -> Lstat {
        Lstat {
            is_file: m.file_type().is_file(),
            is_symlink: m.file_type().is_symlink(),
            len: m.len(),
            modified: m.modified().ok(),
            ino: ino_of(&m),
        }
    }
}

/// The file's inode where std exposes it (not on WASI: unstable there).
pub(crate) fn ino_of(meta: &std::fs::Metadata) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// The metadata of `path` itself (a link is not followed).
pub(crate) fn lstat(path: &Path) -> io::Result<Lstat> {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    if let Some(found) = p2::lstat(path) {
        return found;
    }
    std::fs::symlink_metadata(path).map(Lstat::from)
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod p2 {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{Descriptor, DescriptorType, ErrorCode, PathFlags};

    use super::Lstat;

    /// wasi-libc's `ENOENT`, so the error reads as std's would.
    const ENOENT: i32 = 44;

    thread_local! {
        /// The instance's preopens, asked for once: each `get-directories` makes new handles.
        static DIRS: Vec<(Descriptor, PathBuf)> = get_directories()
            .into_iter()
            .map(|(dir, path)| (dir, PathBuf::from(path)))
            .collect();
    }

    /// `None`: not under a preopen, or an error std is to report.
    pub(super) fn lstat(path: &Path) -> Option<io::Result<Lstat>> {
        DIRS.with(|dirs| {
            // The innermost preopen holding `path`.
            let (dir, rel) = dirs
                .iter()
                .filter_map(|(dir, root)| Some((dir, path.strip_prefix(root).ok()?)))
                .min_by_key(|(_, rel)| rel.as_os_str().len())?;
            let rel = rel.to_str().filter(|r| !r.is_empty())?;
            match dir.stat_at(PathFlags::empty(), rel) {
                Ok(st) => Some(Ok(Lstat {
                    is_file: st.type_ == DescriptorType::RegularFile,
                    is_symlink: st.type_ == DescriptorType::SymbolicLink,
                    len: st.size,
                    modified: st.data_modification_timestamp.and_then(|t| {
                        let since = Duration::from_secs(t.seconds)
                            .checked_add(Duration::from_nanos(t.nanoseconds.into()))?;
                        SystemTime::UNIX_EPOCH.checked_add(since)
                    }),
                    ino: None,
                })),
                Err(ErrorCode::NoEntry) => Some(Err(io::Error::from_raw_os_error(ENOENT))),
                Err(_) => None,
            }
        })
    }
}
