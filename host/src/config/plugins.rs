//! `config/plugins.yml`: the tool plugins this host loads, what each may ever be granted, and
//! which entitlement gives which access (see [`crate::grants::grants_for`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, load_yaml};
use crate::grants::Grants;
use crate::runtime::pool::{Instances, PLUGIN_MAX, Reuse, TOTAL_MAX};

/// The file name under the config dir.
pub const FILE: &str = "plugins.yml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    /// Refuse any file component without a `sha256` pin.
    #[serde(default)]
    require_pinned: bool,
    plugins: BTreeMap<String, PluginEntry>,
}

/// One registered plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// `builtin` or a path to a component file (relative to the config dir).
    pub component: String,
    /// Guest memory limit in MiB (default 128).
    #[serde(default = "default_memory")]
    pub memory_limit_mib: u64,
    /// The most this plugin may ever be granted.
    #[serde(default)]
    pub may_use: Grants,
    /// What each entitlement gives, capped by `may_use`.
    #[serde(default)]
    pub grants: BTreeMap<String, Grants>,
    /// The SHA-256 (64 hex digits) the component file's bytes must have; a file that does not
    /// match is not loaded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Who may reuse an instance (`docs/isolation.md`): `per-call`, `per-caller` or `shared`;
    /// absent: `per-caller` for builtin tools, `per-call` for component files.
    #[serde(default)]
    pub instances: Option<Instances>,
    /// Warm instances kept for this plugin at most (default 16, at most 32).
    #[serde(default)]
    pub max_pooled: Option<usize>,
}

fn default_memory() -> u64 {
    128
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    Builtin,
    File(PathBuf),
}

impl PluginEntry {
    /// Resolves `component` against the config dir.
    pub fn source(&self, config_dir: &Path) -> ComponentSource {
        match self.component.as_str() {
            "builtin" => ComponentSource::Builtin,
            path => ComponentSource::File(config_dir.join(path)),
        }
    }

    /// How this plugin's instances are reused, defaults applied.
    pub fn reuse(&self) -> Reuse {
        let default = match self.component.as_str() {
            "builtin" => Instances::PerCaller,
            _ => Instances::PerCall,
        };
        Reuse {
            instances: self.instances.unwrap_or(default),
            max_pooled: self.max_pooled.unwrap_or(PLUGIN_MAX),
        }
    }
}

/// Loads `<config_dir>/plugins.yml`.
pub fn load(config_dir: &Path) -> Result<BTreeMap<String, PluginEntry>, ConfigError> {
    let path = config_dir.join(FILE);
    let mut raw: RawRegistry = load_yaml(&path)?;
    for (name, p) in &mut raw.plugins {
        if let Some(pin) = &mut p.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid {
                    path,
                    key: format!("plugins.{name}.sha256"),
                    message: format!("must be 64 hex digits (`sha256sum FILE`), got {pin:?}"),
                });
            }
            pin.make_ascii_lowercase();
        }
        if raw.require_pinned && p.component != "builtin" && p.sha256.is_none() {
            return Err(ConfigError::Invalid {
                path,
                key: format!("plugins.{name}.sha256"),
                message: "missing: `require_pinned: true` refuses a component file without \
                          its digest (add `sha256: <output of sha256sum FILE>`)"
                    .to_owned(),
            });
        }
        if p.max_pooled.is_some_and(|n| n > TOTAL_MAX) {
            return Err(ConfigError::Invalid {
                path,
                key: format!("plugins.{name}.max_pooled"),
                message: format!(
                    "must be 0..={TOTAL_MAX} (the pool's total), got {}",
                    p.max_pooled.unwrap_or_default()
                ),
            });
        }
        if p.memory_limit_mib == 0 || p.memory_limit_mib > 4096 {
            return Err(ConfigError::Invalid {
                path,
                key: format!("plugins.{name}.memory_limit_mib"),
                message: format!("must be 1..=4096, got {}", p.memory_limit_mib),
            });
        }
    }
    Ok(raw.plugins)
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A component file whose bytes are not the ones its entry pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{FILE}: `plugins.{plugin}.sha256`: {path} does not match its pinned digest: expected \
     {expected}, actual {actual}; the plugin is not loaded"
)]
pub struct DigestMismatch {
    pub plugin: String,
    pub path: String,
    pub expected: String,
    pub actual: String,
}

/// Checks `bytes` (read from `path`) against the entry's pin, if any.
pub fn check_pin(
    name: &str,
    entry: &PluginEntry,
    path: &Path,
    bytes: &[u8],
) -> Result<String, DigestMismatch> {
    let actual = sha256_hex(bytes);
    match &entry.sha256 {
        Some(expected) if *expected != actual => Err(DigestMismatch {
            plugin: name.to_owned(),
            path: path.display().to_string(),
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<BTreeMap<String, PluginEntry>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        load(dir.path())
    }

    #[test]
    fn pins_are_64_hex_digits_and_required_when_asked() {
        let pin = "AB".repeat(32);
        let ok = load_text(&format!(
            "plugins:\n  t: {{ component: t.wasm, sha256: {pin} }}\n"
        ))
        .unwrap();
        assert_eq!(ok["t"].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        let err = load_text("plugins:\n  t: { component: t.wasm, sha256: abc }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugins.t.sha256"), "{err}");
        let err = load_text("require_pinned: true\nplugins:\n  t: { component: t.wasm }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plugins.t.sha256") && err.contains("require_pinned"),
            "{err}"
        );
        load_text("require_pinned: true\nplugins:\n  b: { component: builtin }\n").unwrap();
    }

    #[test]
    fn instances_default_by_source_and_unknown_values_are_refused() {
        let all = load_text(
            "plugins:
  b: { component: builtin }
  f: { component: f.wasm }
  s: { component: f.wasm, instances: shared, max_pooled: 2 }
  c: { component: builtin, instances: per-call }
",
        )
        .unwrap();
        let got = |n: &str| all[n].reuse();
        assert_eq!(got("b").instances, Instances::PerCaller);
        assert_eq!(got("f").instances, Instances::PerCall);
        assert_eq!(got("s").instances, Instances::Shared);
        assert_eq!(got("s").max_pooled, 2);
        assert_eq!(got("c").instances, Instances::PerCall);
        assert_eq!(got("b").max_pooled, PLUGIN_MAX);
        let err = load_text("plugins:\n  t: { component: t.wasm, instances: per-agent }\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("instances")
                && err.contains("per-agent")
                && err.contains("per-call")
                && err.contains("per-caller")
                && err.contains("shared"),
            "{err}"
        );
        let err = load_text("plugins:\n  t: { component: t.wasm, max_pooled: 33 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugins.t.max_pooled"), "{err}");
    }

    #[test]
    fn a_mismatch_names_both_digests() {
        let entry = PluginEntry {
            component: "t.wasm".into(),
            memory_limit_mib: 1,
            may_use: Grants::default(),
            grants: BTreeMap::new(),
            sha256: Some("0".repeat(64)),
            instances: None,
            max_pooled: None,
        };
        let err = check_pin("t", &entry, Path::new("t.wasm"), b"x").unwrap_err();
        assert_eq!(err.actual, sha256_hex(b"x"));
        let text = err.to_string();
        assert!(
            text.contains(&"0".repeat(64)) && text.contains(&err.actual),
            "{text}"
        );
        let unpinned = PluginEntry {
            sha256: None,
            ..entry
        };
        assert_eq!(
            check_pin("t", &unpinned, Path::new("t.wasm"), b"x").unwrap(),
            sha256_hex(b"x")
        );
    }
}
