//! The backlog policy (`docs/configuration.md`, `config/backlog_policy.yml`): categories in
//! evaluation order, ownership, defaults, dedupe prefix, generation switches, dashboard limits.
//!
//! Three parts: [`model`] (the shape, the owner rule and the semantic checks), [`defaults`]
//! (the shipped YAML compiled in, the only copy of the default values) and [`parse`] (any
//! serde document merged over the defaults, errors naming the dotted key). This module does
//! not read the file (the host does) and does not evaluate `when` rules (generation does).

pub mod defaults;
pub mod model;
pub mod parse;

pub use defaults::DEFAULT_POLICY_YAML;
pub use model::{
    Band, Categories, CategoryPolicy, Dashboard, Dedupe, Defaults, Generation, MAX_DUE_DAYS,
    Ownership, Policy, PolicyError, Rule,
};
pub use parse::PolicyDocument;

#[cfg(test)]
mod tests;
