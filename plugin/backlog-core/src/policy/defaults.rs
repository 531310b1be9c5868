//! The built-in policy: the shipped `config/backlog_policy.yml`, compiled in and parsed once.
//! That file is the only copy of the default values; `Policy::default()` is what it says.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::model::{
    Band, Categories, CategoryPolicy, Dashboard, Dedupe, Defaults, Generation, Ownership, Policy,
    PolicyError, perr,
};
use super::parse::merge;
use crate::model::Priority;

/// The text of the shipped `config/backlog_policy.yml`: every key (see
/// `docs/configuration.md`) at its built-in default, with comments. [`Policy::default`] is
/// what this text means.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../../../config/backlog_policy.yml");

/// The built-in policy, parsed from [`DEFAULT_POLICY_YAML`] on first use.
pub fn builtin() -> &'static Policy {
    static BUILTIN: OnceLock<Policy> = OnceLock::new();
    BUILTIN.get_or_init(|| match parse_shipped() {
        Ok(p) => p,
        // The text is compiled in and a unit test parses it: this is a build defect, not input.
        Err(e) => panic!("the compiled-in config/backlog_policy.yml is not a complete policy: {e}"),
    })
}

impl Default for Policy {
    /// The built-in policy ([`DEFAULT_POLICY_YAML`]).
    fn default() -> Self {
        builtin().clone()
    }
}

/// Parses [`DEFAULT_POLICY_YAML`] and checks that it gives every key: merged over two
/// placeholder policies that differ in every value, it must give the same result both times.
pub(super) fn parse_shipped() -> Result<Policy, PolicyError> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(DEFAULT_POLICY_YAML)
        .map_err(|e| perr("", format!("not valid YAML: {e}")))?;
    let a = merge(placeholder(0, false), &doc)?;
    let b = merge(placeholder(1, true), &doc)?;
    if a != b {
        return Err(perr("", "a key is missing (every key must be given)"));
    }
    a.validate()?;
    Ok(a)
}

/// A policy with every value set from `n` and `flag` (the base of [`parse_shipped`]'s check).
fn placeholder(n: u32, flag: bool) -> Policy {
    let text = if flag { "x" } else { "" };
    Policy {
        defaults: Defaults {
            retention_days: n,
            max_items_per_run: n,
        },
        dedupe: Dedupe {
            key_prefix: text.into(),
        },
        categories: Categories(if flag {
            vec![(
                text.into(),
                CategoryPolicy {
                    priority: Priority::P0,
                    due_days: n,
                    owner: None,
                    when: Vec::new(),
                },
            )]
        } else {
            Vec::new()
        }),
        generation: Generation {
            weekly_from_pressure_digest: flag,
            daily_from_risk_digest: flag,
            escalate_on_critical_band: flag,
            daily_risk_bands: if flag { vec![Band::Low] } else { Vec::new() },
        },
        ownership: Ownership {
            default_owner: text.into(),
            overrides: if flag {
                BTreeMap::from([(text.to_owned(), text.to_owned())])
            } else {
                BTreeMap::new()
            },
        },
        dashboard: Dashboard {
            overdue_limit: n,
            top_services: n,
            overdue_notify_threshold: n,
        },
    }
}
