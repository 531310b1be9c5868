//! The backlog policy (`docs/configuration.md`, `config/backlog_policy.yml`): categories in
//! evaluation order, ownership, defaults, dedupe prefix, generation switches, dashboard limits.
//!
//! Three parts, each importing only the ones before it: [`model`] (the shape, the owner rule
//! and the semantic checks), [`parse`] (any serde document merged over a base policy, errors
//! naming the dotted key) and [`defaults`] (the shipped YAML compiled in, the only copy of the
//! default values). This file joins them: [`Policy::from_document`] merges over the defaults.
//! `resolved` reads the complete form the host hands guests ([`Policy::from_resolved_json`]).
//! The module does not read the file (the host does) and does not evaluate `when` rules
//! (generation does).

pub mod defaults;
pub mod model;
pub mod parse;
mod resolved;

pub use defaults::DEFAULT_POLICY_YAML;
pub use model::{
    Band, Categories, CategoryPolicy, Dashboard, Dedupe, Defaults, Generation, MAX_DUE_DAYS,
    Ownership, Policy, PolicyError, Rule,
};
pub use parse::PolicyDocument;

use serde::{Deserialize, Deserializer};

use model::perr;

impl Policy {
    /// Parses a policy given as JSON text (or the JSON rendering of the YAML file), merges it
    /// over the defaults and validates it. `null` or `{}` is the default policy.
    pub fn from_json_str(text: &str) -> Result<Policy, PolicyError> {
        let doc: PolicyDocument = serde_json::from_str(text)
            .map_err(|e| perr("", format!("the policy is not valid JSON: {e}")))?;
        Policy::from_document(&doc)
    }

    /// Merges a parsed document over [`Policy::default`] (see the module docs) and runs
    /// [`Policy::validate`]. The error names the dotted key.
    pub fn from_document(doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        let p = parse::merge(defaults::builtin().clone(), &doc.0)?;
        p.validate()?;
        Ok(p)
    }

    /// Parses a policy given as YAML text, like [`Policy::from_json_str`].
    pub fn from_yaml_str(text: &str) -> Result<Policy, PolicyError> {
        let doc: PolicyDocument = serde_yaml_ng::from_str(text)
            .map_err(|e| perr("", format!("the policy is not valid YAML: {e}")))?;
        Policy::from_document(&doc)
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// [`PolicyDocument`] then [`Policy::from_document`]; a [`PolicyError`] becomes the
    /// format's custom error with the same text (`` `key`: message ``).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let doc = PolicyDocument::deserialize(d)?;
        Policy::from_document(&doc).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
