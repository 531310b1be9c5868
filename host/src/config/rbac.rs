//! `config/rbac_tools_matrix.yml`: which entitlements each tool action requires and which
//! each agent holds. Deny by default: an action that is not listed cannot be called.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, parse_yaml};

/// The file name under the config dir.
pub const FILE: &str = "rbac_tools_matrix.yml";

/// The largest `timeout_s` an action may have: one day.
pub const MAX_TIMEOUT_S: u64 = 86_400;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    tools: BTreeMap<String, RawTool>,
    agents: BTreeMap<String, AgentRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    actions: BTreeMap<String, ActionRule>,
}

/// What one action requires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    /// All of these are required.
    pub entitlements: Vec<String>,
    /// Wall-clock limit of one call, seconds (default: the engine's 10 s).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// One agent: what it holds and where its API key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRule {
    pub entitlements: Vec<String>,
    /// Environment variable that holds the agent's API key (HTTP only).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A key file (relative to the config dir): keys or `sha256:` digests, one per line
    /// ([`super::keys`]). Beside `api_key_env`, both sources are valid.
    #[serde(default)]
    pub api_key_file: Option<String>,
}

/// The validated matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub path: PathBuf,
    tools: BTreeMap<String, BTreeMap<String, ActionRule>>,
    agents: BTreeMap<String, AgentRule>,
}

/// Why a call was refused before any guest ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("unknown agent `{agent}` (not in {path})")]
    UnknownAgent { agent: String, path: String },
    #[error("action `{tool}.{action}` is not listed in {path}, so nobody may call it")]
    Unlisted {
        tool: String,
        action: String,
        path: String,
    },
    #[error(
        "agent `{agent}` lacks {} for {tool}.{action} ({path})",
        .missing.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        agent: String,
        tool: String,
        action: String,
        missing: Vec<String>,
        path: String,
    },
}

impl Matrix {
    /// Loads and validates `<config_dir>/rbac_tools_matrix.yml`.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let path = config_dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Matrix::parse(path, &text)
    }

    /// Parses and validates matrix text read from `path` (what [`Matrix::load`] does after
    /// reading the file; the fuzz target `rbac` calls it directly).
    pub fn parse(path: PathBuf, text: &str) -> Result<Self, ConfigError> {
        let raw: RawMatrix = parse_yaml(&path, text)?;
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            path: path.clone(),
            key,
            message: message.to_owned(),
        };
        for (tool, t) in &raw.tools {
            for (action, rule) in &t.actions {
                if rule.entitlements.is_empty() {
                    return Err(invalid(
                        format!("tools.{tool}.actions.{action}.entitlements"),
                        "must list at least one entitlement (unlisted actions are denied; an empty list would allow everyone)",
                    ));
                }
                // A limit past a day is a typo, and a huge one overflowed the call deadline
                // (`Instant + timeout` panicked on every call of the action).
                if rule
                    .timeout_s
                    .is_some_and(|t| !(1..=MAX_TIMEOUT_S).contains(&t))
                {
                    return Err(invalid(
                        format!("tools.{tool}.actions.{action}.timeout_s"),
                        &format!("must be 1..={MAX_TIMEOUT_S} seconds"),
                    ));
                }
            }
        }
        Ok(Matrix {
            tools: raw
                .tools
                .into_iter()
                .map(|(name, t)| (name, t.actions))
                .collect(),
            agents: raw.agents,
            path,
        })
    }

    /// The matrix as YAML text that [`Matrix::parse`] reads back to an equal matrix.
    pub fn to_yaml(&self) -> String {
        let raw = RawMatrix {
            tools: self
                .tools
                .iter()
                .map(|(name, actions)| {
                    let actions = actions.clone();
                    (name.clone(), RawTool { actions })
                })
                .collect(),
            agents: self.agents.clone(),
        };
        // Maps of strings, lists and numbers: always representable in YAML.
        serde_yaml_ng::to_string(&raw).unwrap_or_default()
    }

    /// The rule of `tool.action`, if listed.
    pub fn action(&self, tool: &str, action: &str) -> Option<&ActionRule> {
        self.tools.get(tool)?.get(action)
    }

    /// Whether the matrix knows `tool` at all.
    pub fn knows_tool(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// Every listed `(tool, action)`.
    pub fn listed_actions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tools
            .iter()
            .flat_map(|(t, actions)| actions.keys().map(move |a| (t.as_str(), a.as_str())))
    }

    /// Every agent, by id.
    pub fn agents(&self) -> impl Iterator<Item = (&str, &AgentRule)> {
        self.agents.iter().map(|(id, rule)| (id.as_str(), rule))
    }

    /// The rule of one agent, if listed.
    pub fn agent(&self, agent: &str) -> Option<&AgentRule> {
        self.agents.get(agent)
    }

    /// Authorizes `agent` for `tool.action`: every listed entitlement is required.
    pub fn authorize(&self, agent: &str, tool: &str, action: &str) -> Result<&ActionRule, Denial> {
        // The path goes into a denial only: no formatting on the allowed path of every call.
        let path = || self.path.display().to_string();
        let held = &self
            .agent(agent)
            .ok_or_else(|| Denial::UnknownAgent {
                agent: agent.into(),
                path: path(),
            })?
            .entitlements;
        let rule = self.action(tool, action).ok_or_else(|| Denial::Unlisted {
            tool: tool.into(),
            action: action.into(),
            path: path(),
        })?;
        if rule.entitlements.iter().all(|e| held.contains(e)) {
            return Ok(rule);
        }
        Err(Denial::Missing {
            agent: agent.into(),
            tool: tool.into(),
            action: action.into(),
            missing: rule
                .entitlements
                .iter()
                .filter(|e| !held.contains(e))
                .cloned()
                .collect(),
            path: path(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(yaml: &str) -> Result<Matrix, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), yaml).unwrap();
        Matrix::load(dir.path())
    }

    const SMALL: &str = "
tools:
  t:
    actions:
      read: { entitlements: [r] }
      both: { entitlements: [r, w], timeout_s: 5 }
agents:
  reader: { entitlements: [r] }
  writer: { entitlements: [r, w], api_key_env: W_KEY }
";

    #[test]
    fn all_entitlements_are_required() {
        let m = matrix(SMALL).unwrap();
        assert!(m.authorize("reader", "t", "read").is_ok());
        assert_eq!(
            m.authorize("writer", "t", "both").unwrap().timeout_s,
            Some(5)
        );
        let err = m.authorize("reader", "t", "both").unwrap_err();
        assert!(matches!(&err, Denial::Missing { missing, .. } if missing == &["w"]));
        assert!(
            err.to_string()
                .contains("agent `reader` lacks `w` for t.both")
        );
    }

    #[test]
    fn unlisted_and_unknown_are_denied() {
        let m = matrix(SMALL).unwrap();
        assert!(matches!(
            m.authorize("writer", "t", "nope"),
            Err(Denial::Unlisted { .. })
        ));
        assert!(matches!(
            m.authorize("writer", "x", "read"),
            Err(Denial::Unlisted { .. })
        ));
        assert!(matches!(
            m.authorize("ghost", "t", "read"),
            Err(Denial::UnknownAgent { .. })
        ));
    }

    #[test]
    fn bad_files_name_the_key() {
        let err = matrix("tools: { t: { actions: { a: { entitlements: [] } } } }\nagents: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tools.t.actions.a.entitlements"), "{err}");
        let err = matrix("tools: {}\nagents: {}\nextra: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
