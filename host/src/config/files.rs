//! The digests of the files a config was read from (the RBAC matrix, plugins, policy, the
//! ops dir's task registry, key files, component files), by name relative to the config dir:
//! a reload names the files that differ (`crate::reload`). Absent files read as `absent`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::plugins::{self, ComponentSource, PluginEntry};
use super::rbac::Matrix;
use super::{keys, policy, rbac};

/// The digests of the config in `config_dir` (and the task registry of `ops_dir`) that
/// `matrix` and the `loaded` components (entry, digest of the bytes loaded) were read from.
/// `reread`: also the files the config dir names now (its matrix's key files, its plugins'
/// components, read anew), for a config that failed to load.
pub fn digests<'a>(
    config_dir: &Path,
    ops_dir: &Path,
    matrix: &Matrix,
    loaded: impl Iterator<Item = (&'a PluginEntry, &'a str)>,
    reread: bool,
) -> BTreeMap<String, String> {
    let dir = config_dir;
    let mut paths: Vec<PathBuf> = vec![
        dir.join(rbac::FILE),
        dir.join(plugins::FILE),
        dir.join(policy::FILE),
        ops_dir.join(scheduler_core::registry::FILE),
    ];
    let on_disk_matrix = if reread { Matrix::load(dir).ok() } else { None };
    for m in [Some(matrix), on_disk_matrix.as_ref()]
        .into_iter()
        .flatten()
    {
        for (_, rule) in m.agents() {
            if let Some(file) = &rule.api_key_file {
                paths.push(keys::path(dir, file));
            }
        }
    }
    // The loaded components: the digest of the bytes loaded, unless everything is read anew.
    let mut known: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (entry, digest) in loaded {
        if let ComponentSource::File(path) = entry.source(dir) {
            match reread {
                true => paths.push(path),
                false => drop(known.insert(path, digest.to_owned())),
            }
        }
    }
    if reread {
        for entry in plugins::load(dir).ok().unwrap_or_default().values() {
            if let ComponentSource::File(path) = entry.source(dir) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths.dedup();
    let name = |path: &Path| {
        path.strip_prefix(dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    };
    let read = paths.into_iter().map(|path| {
        let digest = std::fs::read(&path)
            .map(|b| plugins::sha256_hex(&b))
            .unwrap_or_else(|_| "absent".into());
        (name(&path), digest)
    });
    let kept: Vec<(String, String)> = known.iter().map(|(p, d)| (name(p), d.clone())).collect();
    read.chain(kept).collect()
}
