//! The policy's shape: the types every other module reads, the owner rule and the semantic
//! checks ([`Policy::validate`]). No parsing here ([`super::parse`]) and no default values
//! ([`super::defaults`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::model::Priority;

/// The whole policy. `Default` is the built-in policy described in `docs/configuration.md` (the text of
/// [`DEFAULT_POLICY_YAML`]). Deserializing (from any serde format) runs [`Policy::from_document`],
/// so a deserialized policy is always valid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Retention and generation cap.
    pub defaults: Defaults,
    /// Dedupe key prefix.
    pub dedupe: Dedupe,
    /// Category name → policy, in evaluation order.
    pub categories: Categories,
    /// Generation switches and escalation.
    pub generation: Generation,
    /// Default owner and per-service overrides.
    pub ownership: Ownership,
    /// Dashboard limits and alert threshold.
    pub dashboard: Dashboard,
}

/// `defaults:` — retention and generation cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Days to keep `done`/`canceled` items (cleanup). Default 180.
    pub retention_days: u32,
    /// Items created or updated per generation run (at least 1). Default 50.
    pub max_items_per_run: u32,
}

/// `dedupe:` — prefix of generated dedupe keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dedupe {
    /// Default `platform_backlog`.
    pub key_prefix: String,
}

/// One category: defaults for its items and the rules that make generation create one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryPolicy {
    /// Priority of new items (before escalation).
    pub priority: Priority,
    /// Due date on create = today + `due_days`.
    pub due_days: u32,
    /// Owner for this category, below `ownership.overrides[service]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Any-of rules; empty = generation never creates this category (manual only).
    pub when: Vec<Rule>,
}

/// One `when` rule of a category. Generation evaluates it against a digest's service entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `{signal: NAME, gte: N}`: the service's signal `NAME` (missing = 0) is at least `N`.
    Signal {
        /// Signal name as in the digest's `signals`.
        signal: String,
        /// Threshold, inclusive.
        gte: u64,
    },
    /// `{requires_arch_review: true}`: the service's entry says `requires_arch_review: true`.
    RequiresArchReview,
    /// `{band_at_least: BAND}`: the service's band is `BAND` or worse.
    BandAtLeast(Band),
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rule::Signal { signal, gte } => {
                let mut m = serializer.serialize_map(Some(2))?;
                m.serialize_entry("signal", signal)?;
                m.serialize_entry("gte", gte)?;
                m.end()
            }
            Rule::RequiresArchReview => {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("requires_arch_review", &true)?;
                m.end()
            }
            Rule::BandAtLeast(band) => {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("band_at_least", band)?;
                m.end()
            }
        }
    }
}

/// Risk band of a service, ordered `low` < `medium` < `high` < `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Band {
    /// Every band, least severe first.
    pub const ALL: [Band; 4] = [Band::Low, Band::Medium, Band::High, Band::Critical];

    /// The wire name (`low` … `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Low => "low",
            Band::Medium => "medium",
            Band::High => "high",
            Band::Critical => "critical",
        }
    }

    /// The band named `s`, if any.
    pub fn parse(s: &str) -> Option<Band> {
        Band::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `generation:` — which digests generate items, and escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// `auto_generate_weekly` runs (default true).
    pub weekly_from_pressure_digest: bool,
    /// `auto_generate_daily` runs (default false).
    pub daily_from_risk_digest: bool,
    /// A service in band `critical` gets its generated priority raised one level.
    pub escalate_on_critical_band: bool,
    /// Bands of the risk digest that get an `slo_hardening` item from daily generation.
    pub daily_risk_bands: Vec<Band>,
}

/// `ownership:` — who owns an item by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    /// Owner when neither an override nor the category names one. Default `oncall`.
    pub default_owner: String,
    /// Service → owner; wins over everything else.
    pub overrides: BTreeMap<String, String>,
}

/// `dashboard:` — list sizes and alert thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// At most this many items in `overdue` (`overdue_count` counts all).
    pub overdue_limit: u32,
    /// At most this many entries in `top_services`.
    pub top_services: u32,
    /// A `notify` alert fires when `overdue_count` is greater than this.
    pub overdue_notify_threshold: u32,
}

/// Category name → [`CategoryPolicy`], in document order, names unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Categories(pub(crate) Vec<(String, CategoryPolicy)>);

impl Categories {
    /// From `(name, policy)` pairs; `None` if a name repeats.
    pub fn from_pairs(pairs: Vec<(String, CategoryPolicy)>) -> Option<Self> {
        let mut seen = std::collections::BTreeSet::new();
        pairs
            .iter()
            .all(|(n, _)| seen.insert(n.as_str()))
            .then_some(Categories(pairs))
    }

    /// The policy of category `name`.
    pub fn get(&self, name: &str) -> Option<&CategoryPolicy> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// `(name, policy)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CategoryPolicy)> {
        self.0.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// Names in order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Number of categories.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Categories {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, c) in &self.0 {
            map.serialize_entry(name, c)?;
        }
        map.end()
    }
}

/// Largest `due_days` accepted (100 years), so due dates stay 4-digit-year dates.
pub const MAX_DUE_DAYS: u32 = 36_500;

/// A policy that does not parse or breaks a rule; `key` is the dotted path of the offending
/// key (`categories.refactor.when[1]`), empty for the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Dotted path of the offending key; empty for the whole document.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

pub(crate) fn perr(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        key: key.into(),
        message: message.into(),
    }
}

impl Policy {
    /// The policy of category `name`.
    pub fn category(&self, name: &str) -> Option<&CategoryPolicy> {
        self.categories.get(name)
    }

    /// Owner of a new item: `ownership.overrides[service]` > `categories[category].owner` >
    /// `ownership.default_owner`.
    pub fn owner_for(&self, service: &str, category: &str) -> String {
        self.ownership
            .overrides
            .get(service)
            .or_else(|| self.category(category).and_then(|c| c.owner.as_ref()))
            .unwrap_or(&self.ownership.default_owner)
            .clone()
    }

    /// Semantic checks the parser does not cover: at least one category, category names and
    /// services shaped like the item fields they fill, owners 1..64 chars, `due_days` ≤
    /// [`MAX_DUE_DAYS`], signal names 1..64 chars, `max_items_per_run` ≥ 1, a dedupe prefix of
    /// 1..64 chars. The first failure names its key. Run by every parse; call it again on a
    /// policy built or changed in code.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use crate::validate as v;
        let err = |key: String, e: crate::Error| PolicyError {
            key,
            message: e.message,
        };
        if self.defaults.max_items_per_run == 0 {
            return Err(perr(
                "defaults.max_items_per_run",
                "must be at least 1 (to stop generation, set generation.weekly_from_pressure_digest: false)",
            ));
        }
        let prefix = &self.dedupe.key_prefix;
        if prefix.is_empty() || prefix.chars().count() > 64 || prefix.contains('\0') {
            return Err(perr(
                "dedupe.key_prefix",
                "must be 1..64 characters without U+0000",
            ));
        }
        if self.categories.is_empty() {
            return Err(perr("categories", "at least one category is required"));
        }
        for (name, c) in self.categories.iter() {
            let key = format!("categories.{name}");
            v::category_name(name).map_err(|e| err(key.clone(), e))?;
            if c.due_days > MAX_DUE_DAYS {
                return Err(perr(
                    format!("{key}.due_days"),
                    format!("must be at most {MAX_DUE_DAYS}, got {}", c.due_days),
                ));
            }
            if let Some(owner) = &c.owner {
                v::owner(owner).map_err(|e| err(format!("{key}.owner"), e))?;
            }
            for (i, r) in c.when.iter().enumerate() {
                if let Rule::Signal { signal, .. } = r {
                    let n = signal.chars().count();
                    if n == 0 || n > 64 || signal.contains('\0') {
                        return Err(perr(
                            format!("{key}.when[{i}].signal"),
                            "must be 1..64 characters without U+0000",
                        ));
                    }
                }
            }
        }
        v::owner(&self.ownership.default_owner)
            .map_err(|e| err("ownership.default_owner".into(), e))?;
        for (service, owner) in &self.ownership.overrides {
            let key = format!("ownership.overrides.{service}");
            v::service(service).map_err(|e| err(key.clone(), e))?;
            v::owner(owner).map_err(|e| err(key, e))?;
        }
        Ok(())
    }
}
