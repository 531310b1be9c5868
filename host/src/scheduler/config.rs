//! The task registry of the ops dir read against a bridge's matrix and plugins: for the loop,
//! `scheduler status`, `config check` and a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use scheduler_core::{Catalog, Registry};

use crate::config::rbac::Matrix;
use crate::registry::Bridge;

/// The registry file under the ops dir.
pub fn registry_path(ops_dir: &Path) -> PathBuf {
    ops_dir.join(scheduler_core::registry::FILE)
}

/// What the matrix knows, for registry validation; `installed` from `provides`.
pub fn catalog(matrix: &Matrix, provides: impl Fn(&str) -> bool) -> Catalog {
    let actions: std::collections::BTreeSet<(String, String)> = matrix
        .listed_actions()
        .map(|(t, a)| (t.to_owned(), a.to_owned()))
        .collect();
    let installed = actions
        .iter()
        .map(|(t, _)| t.clone())
        .filter(|t| provides(t))
        .collect();
    Catalog {
        actions,
        agents: matrix.agents().map(|(id, _)| id.to_owned()).collect(),
        installed,
    }
}

/// Reads and validates the registry; returns it with its text (for the component).
pub fn load_registry(ops_dir: &Path, catalog: &Catalog) -> anyhow::Result<(Registry, String)> {
    let path = registry_path(ops_dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the task registry {}", path.display()))?;
    let registry = Registry::parse(&path.display().to_string(), &text, Some(catalog))?;
    Ok((registry, text))
}

/// The bridge the loop runs under and the task registry read against it.
pub(super) struct Config {
    pub(super) bridge: Arc<Bridge>,
    pub(super) catalog: Catalog,
    pub(super) registry: Registry,
    pub(super) text: String,
    pub(super) order: Vec<usize>,
}

impl Config {
    pub(super) fn load(bridge: Arc<Bridge>) -> anyhow::Result<Config> {
        let catalog = catalog(&bridge.matrix, |t| bridge.provides(t));
        let (registry, text) = load_registry(&bridge.settings.ops_dir, &catalog)?;
        let order = registry
            .order()
            .map_err(|c| anyhow::anyhow!("`after` cycle: {}", c.join(" -> ")))?;
        Ok(Config {
            bridge,
            catalog,
            registry,
            text,
            order,
        })
    }
}
