//! `config/backlog_policy.yml` (`docs/configuration.md`): loaded and validated at start-up, handed to guests as
//! JSON text in resolved form: every key, merged over the defaults here, once (category order
//! kept: generation evaluates categories in file order).
//!
//! The rules of the policy (defaults, deep merge, validation) live in `backlog-core`; this
//! module only reads the file and reports errors with the file's path.

use std::path::Path;

use backlog_core::policy::Policy;

use super::ConfigError;

/// The file name under the config dir.
pub const FILE: &str = "backlog_policy.yml";

/// The policy in force and the document guests receive.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Policy,
    /// The policy in force as resolved JSON (`Policy::from_resolved_json`: every key), so
    /// that a new guest instance reads it without merging over the defaults.
    pub json: String,
}

/// Loads `<config_dir>/backlog_policy.yml`; a missing file means the built-in defaults.
pub fn load(config_dir: &Path) -> Result<LoadedPolicy, ConfigError> {
    let path = config_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return LoadedPolicy::resolved(Policy::default(), &path);
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
    // An empty file is an empty document: all defaults.
    let doc = match doc {
        serde_yaml_ng::Value::Null => serde_yaml_ng::Value::Mapping(Default::default()),
        doc => doc,
    };
    let json = serde_json::to_string(&doc).map_err(|e| not_json(&path, e))?;
    let policy = Policy::from_json_str(&json).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        key: e.key,
        message: e.message,
    })?;
    LoadedPolicy::resolved(policy, &path)
}

impl LoadedPolicy {
    /// `policy` with its resolved JSON.
    fn resolved(policy: Policy, path: &Path) -> Result<LoadedPolicy, ConfigError> {
        let json = serde_json::to_string(&policy).map_err(|e| not_json(path, e))?;
        Ok(LoadedPolicy { policy, json })
    }
}

fn not_json(path: &Path, e: serde_json::Error) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: String::new(),
        message: format!("cannot be represented as JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<LoadedPolicy, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        load(dir.path())
    }

    #[test]
    fn shipped_file_equals_the_built_in_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        assert_eq!(load(&shipped).unwrap().policy, Policy::default());
        let missing = tempfile::tempdir().unwrap();
        assert_eq!(load(missing.path()).unwrap().policy, Policy::default());
        assert_eq!(
            std::fs::read_to_string(shipped.join(FILE)).unwrap(),
            backlog_core::policy::DEFAULT_POLICY_YAML
        );
    }

    #[test]
    fn partial_file_is_merged_over_the_defaults() {
        let p = load_text("ownership:\n  overrides:\n    gateway: platform-team\n").unwrap();
        assert_eq!(p.policy.owner_for("gateway", "refactor"), "platform-team");
        assert_eq!(p.policy.ownership.default_owner, "oncall");
        assert_eq!(p.policy.defaults.retention_days, 180);
        assert_eq!(load_text("").unwrap().policy, Policy::default());
        // Guests get it resolved: every key, read back without the defaults.
        let back = Policy::from_resolved_json(&p.json).unwrap();
        assert_eq!(back, p.policy);
    }

    #[track_caller]
    fn check_error(text: &str, key: &str) {
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains(FILE), "{err}");
        assert!(err.contains(key), "expected key {key} in: {err}");
    }

    #[test]
    fn errors_name_the_file_and_key() {
        check_error(
            "defaults: { retention_days: -1 }\n",
            "defaults.retention_days",
        );
        check_error("surprise: 1\n", "surprise");
        check_error(
            "categories:\n  refactor: { priority: P9, due_days: 3, when: [] }\n",
            "categories.refactor.priority",
        );
        check_error("defaults: [\n", FILE);
    }
}
