//! Key files (`agents.<id>.api_key_file` in `rbac_tools_matrix.yml`, relative to the config
//! dir): one key per line, or `sha256:<64 hex>` — the digest of a key, so the file need not
//! hold the secret. Several lines are several valid keys (a rotation's overlap). Blank lines
//! and lines starting with `#` are ignored.
//!
//! Like ssh with a private key, a file that group or others may read (or write) is refused:
//! a key file must be mode 0600 or 0400.

use std::path::{Path, PathBuf};

/// One line of a key file.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyLine {
    /// A key in clear (the caller checks its length and digests it).
    Key(String),
    /// The SHA-256 of a key.
    Digest([u8; 32]),
}

impl std::fmt::Debug for KeyLine {
    // Never print a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLine::Key(_) => f.write_str("Key(***)"),
            KeyLine::Digest(_) => f.write_str("Digest(..)"),
        }
    }
}

/// A key file that cannot be used; `Display` names the file (and line), never a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path} (key file of agent `{agent}`): cannot read: {source}")]
    Read {
        agent: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} (key file of agent `{agent}`) is readable or writable by group or others (mode \
         {mode:04o}); a key file must be private: chmod 600 {path}"
    )]
    TooOpen {
        agent: String,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "{path}:{line} (key file of agent `{agent}`): `sha256:` must be followed by 64 hex digits"
    )]
    BadDigest {
        agent: String,
        path: PathBuf,
        line: usize,
    },
    #[error("{path} (key file of agent `{agent}`) holds no key")]
    Empty { agent: String, path: PathBuf },
}

/// Resolves `file` against the config dir.
pub fn path(config_dir: &Path, file: &str) -> PathBuf {
    config_dir.join(file)
}

/// Reads the key file `path` of `agent`: each line with its 1-based number.
pub fn read(agent: &str, path: &Path) -> Result<Vec<(usize, KeyLine)>, KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read_err = |source| KeyFileError::Read {
        agent: agent.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mode = file.metadata().map_err(read_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            agent: agent.to_owned(),
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let text = std::io::read_to_string(file).map_err(read_err)?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = match line.strip_prefix("sha256:") {
            Some(hex) => KeyLine::Digest(parse_hex(hex.trim_ascii()).ok_or_else(|| {
                KeyFileError::BadDigest {
                    agent: agent.to_owned(),
                    path: path.to_owned(),
                    line: n + 1,
                }
            })?),
            None => KeyLine::Key(line.to_owned()),
        };
        keys.push((n + 1, entry));
    }
    if keys.is_empty() {
        return Err(KeyFileError::Empty {
            agent: agent.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    // Digits only: `u8::from_str_radix` alone also takes a sign (`+f` is 15), so
    // `sha256:+0+0…` was accepted as a digest.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.keys");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn keys_and_digests_one_per_line() {
        let digest = "0f".repeat(32);
        let (_d, p) = file(
            &format!("# rotation\n\nold-key-0123456789\n  sha256:{digest}  \n"),
            0o600,
        );
        let keys = read("a", &p).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], (3, KeyLine::Key("old-key-0123456789".into())));
        assert_eq!(keys[1], (4, KeyLine::Digest([0x0f; 32])));
        assert!(!format!("{keys:?}").contains("old-key"));
    }

    #[test]
    fn open_files_bad_digests_and_empty_files_are_refused() {
        let (_d, p) = file("some-key-0123456789\n", 0o640);
        let err = read("a", &p).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("0640"), "{err}");
        let (_d, p) = file("sha256:abc\n", 0o600);
        let err = read("a", &p).unwrap_err().to_string();
        assert!(err.contains("k.keys:1"), "{err}");
        // A sign is not a hex digit (found by the `keys` fuzz target).
        let (_d, p) = file(&format!("sha256:{}\n", "+f".repeat(32)), 0o600);
        let err = read("a", &p).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        let (_d, p) = file("# nothing\n", 0o400);
        assert!(matches!(read("a", &p), Err(KeyFileError::Empty { .. })));
        assert!(matches!(
            read("a", Path::new("/nonexistent/k")),
            Err(KeyFileError::Read { .. })
        ));
    }
}
