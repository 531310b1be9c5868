//! `backlog-bridge config check` (`docs/change-control.md`): everything a start reads, checked
//! with the very code a start runs — the config dir ([`ConfigParts::load`]: matrix, policy,
//! plugins with their digests, every component compiled), the agents' keys ([`Keys::load`]:
//! variables and key files) and the ops dir's task registry against the matrix — but no store
//! is opened and nothing is served. Every error is reported, not only the first.

use crate::backlog::Settings;
use crate::http::auth::Keys;
use crate::registry::ConfigParts;

/// What a good config holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub config_dir: String,
    /// Each plugin's component digest, by tool.
    pub plugins: std::collections::BTreeMap<String, String>,
    pub agents: usize,
    /// Jobs of the task registry, when the ops dir has one.
    pub jobs: Option<usize>,
}

/// Checks the config dir and the ops registry; `Err` holds every error found.
pub fn check(
    settings: &Settings,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Summary, Vec<anyhow::Error>> {
    let parts = ConfigParts::load(settings)?;
    let mut errors = Vec::new();
    if let Err(e) = Keys::load(&parts.matrix, var) {
        errors.push(anyhow::Error::from(e));
    }
    let mut jobs = None;
    let registry = crate::scheduler::registry_path(&settings.ops_dir);
    if registry.exists() {
        let catalog = crate::scheduler::catalog(&parts.matrix, |t| parts.provides(t));
        match crate::scheduler::load_registry(&settings.ops_dir, &catalog) {
            Ok((r, _)) => jobs = Some(r.jobs.len()),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Summary {
        config_dir: settings.config_dir.display().to_string(),
        plugins: parts.digests().map(|(n, d)| (n.to_owned(), d)).collect(),
        agents: parts.matrix.agents().count(),
        jobs,
    })
}
