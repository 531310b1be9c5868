//! `config/plugins.yml`: the tool plugins this host loads, what each may ever be granted, and
//! which entitlement gives which access (see [`crate::grants::grants_for`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, load_yaml};
use crate::grants::Grants;

/// The file name under the config dir.
pub const FILE: &str = "plugins.yml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
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
}

/// Loads `<config_dir>/plugins.yml`.
pub fn load(config_dir: &Path) -> Result<BTreeMap<String, PluginEntry>, ConfigError> {
    let path = config_dir.join(FILE);
    let raw: RawRegistry = load_yaml(&path)?;
    for (name, p) in &raw.plugins {
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
