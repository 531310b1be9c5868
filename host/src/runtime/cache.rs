//! Compiled components cached on disk (`docs/configuration.md`), keyed by the component's SHA-256 and the
//! engine's compatibility hash, so a second process start deserializes instead of compiling.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cached,
    Compiled,
}

/// `BACKLOG_BRIDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/backlog-bridge`, else
/// `~/.cache/backlog-bridge`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BACKLOG_BRIDGE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("backlog-bridge"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/backlog-bridge"))
}

/// The cache file for the component whose bytes have the SHA-256 hex `digest`, under this
/// engine.
pub fn entry_path(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    let hex = digest.get(..32).unwrap_or(digest);
    dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
}

/// Loads `bytes` (whose SHA-256 hex is `digest`: the caller has it already, from `build.rs`
/// for the embedded components) as a component, through the cache when one is configured.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    dir: Option<&Path>,
) -> anyhow::Result<(Component, Origin)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, Origin::Compiled));
    };
    let path = entry_path(dir, engine, digest);
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the file name), in a directory owned by this user.
        // wasmtime still validates the header and refuses a mismatched artifact.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, Origin::Cached)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
            }
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    if let Err(e) = store(dir, &path, &compiled) {
        tracing::warn!(dir = %dir.display(), "cannot write component cache: {e:#}");
    }
    // SAFETY: `compiled` was produced just now by this engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, Origin::Compiled))
}

fn store(dir: &Path, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(compiled)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}
