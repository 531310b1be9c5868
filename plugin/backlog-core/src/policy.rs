//! The backlog policy (SPEC §4, `config/backlog_policy.yml`): categories in evaluation order,
//! ownership, defaults, dedupe prefix, generation switches, dashboard limits.
//!
//! Owns the policy's shape, its built-in defaults and its semantic checks. It does not read
//! the file (the host does) and does not evaluate `when` rules (generation does).
//!
//! Deep merge: every struct is `#[serde(default)]`, so a partial document deserializes to
//! "defaults with the given keys replaced", key by key; a given `categories` map replaces the
//! default map whole. Unknown keys are rejected at every level.
//!
//! Order: `categories` keeps document order. Pass the policy as JSON/YAML *text*;
//! `serde_json::Value` (without `preserve_order`) would sort the category keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::model::Priority;

/// The whole policy. `Default` is SPEC §4's built-in policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub defaults: Defaults,
    pub dedupe: Dedupe,
    /// Category name → policy, in evaluation order.
    pub categories: Categories,
    pub generation: Generation,
    pub ownership: Ownership,
    pub dashboard: Dashboard,
}

/// `defaults:` — retention and generation cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Days to keep `done`/`canceled` items (cleanup). Default 180.
    pub retention_days: u32,
    /// Items created or updated per generation run. Default 50.
    pub max_items_per_run: u32,
}

/// `dedupe:` — prefix of generated dedupe keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dedupe {
    /// Default `platform_backlog`.
    pub key_prefix: String,
}

/// One category: defaults for its items and the rules that make generation create one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryPolicy {
    pub priority: Priority,
    /// Due date on create = today + `due_days`.
    pub due_days: u32,
    /// Owner for this category, below `ownership.overrides[service]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Any-of rules; opaque here, interpreted by generation.
    #[serde(default)]
    pub when: Vec<Value>,
}

/// Risk band of a service, ordered `low` < `medium` < `high` < `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Low,
    Medium,
    High,
    Critical,
}

/// `generation:` — which digests generate items, and escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Generation {
    pub weekly_from_pressure_digest: bool,
    pub daily_from_risk_digest: bool,
    pub escalate_on_critical_band: bool,
    pub daily_risk_bands: Vec<Band>,
}

/// `ownership:` — who owns an item by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ownership {
    pub default_owner: String,
    /// Service → owner; wins over everything else.
    pub overrides: BTreeMap<String, String>,
}

/// `dashboard:` — list sizes and alert thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dashboard {
    pub overdue_limit: u32,
    pub top_services: u32,
    pub overdue_notify_threshold: u32,
}

/// Category name → [`CategoryPolicy`], in document order, names unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Categories(Vec<(String, CategoryPolicy)>);

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

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;

        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Categories;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of category name to {priority, due_days, owner, when}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Categories, A::Error> {
                let mut pairs: Vec<(String, CategoryPolicy)> = Vec::new();
                while let Some((name, c)) = map.next_entry::<String, CategoryPolicy>()? {
                    if pairs.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate category `{name}`"
                        )));
                    }
                    pairs.push((name, c));
                }
                Ok(Categories(pairs))
            }
        }

        deserializer.deserialize_map(OrderedVisitor)
    }
}

fn cat(priority: Priority, due_days: u32, owner: Option<&str>, when: Value) -> CategoryPolicy {
    CategoryPolicy {
        priority,
        due_days,
        owner: owner.map(str::to_owned),
        when: match when {
            Value::Array(rules) => rules,
            other => vec![other],
        },
    }
}

impl Default for Categories {
    fn default() -> Self {
        use serde_json::json;
        Categories(vec![
            (
                "arch_review".into(),
                cat(
                    Priority::P1,
                    14,
                    Some("cto"),
                    json!([{ "requires_arch_review": true }]),
                ),
            ),
            (
                "refactor".into(),
                cat(
                    Priority::P2,
                    30,
                    None,
                    json!([
                        { "signal": "regressions_30d", "gte": 2 },
                        { "signal": "recurrence_high_30d", "gte": 1 }
                    ]),
                ),
            ),
            (
                "slo_hardening".into(),
                cat(
                    Priority::P1,
                    14,
                    None,
                    json!([{ "signal": "escalations_30d", "gte": 2 }]),
                ),
            ),
            (
                "cleanup_followups".into(),
                cat(
                    Priority::P2,
                    7,
                    None,
                    json!([{ "signal": "followups_overdue", "gte": 1 }]),
                ),
            ),
            (
                "security".into(),
                cat(
                    Priority::P1,
                    7,
                    None,
                    json!([{ "signal": "dependency_high_30d", "gte": 1 }]),
                ),
            ),
        ])
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            retention_days: 180,
            max_items_per_run: 50,
        }
    }
}

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe {
            key_prefix: "platform_backlog".into(),
        }
    }
}

impl Default for Generation {
    fn default() -> Self {
        Generation {
            weekly_from_pressure_digest: true,
            daily_from_risk_digest: false,
            escalate_on_critical_band: true,
            daily_risk_bands: vec![Band::Critical],
        }
    }
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            default_owner: "oncall".into(),
            overrides: BTreeMap::new(),
        }
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            overdue_limit: 50,
            top_services: 10,
            overdue_notify_threshold: 5,
        }
    }
}

/// Largest `due_days` accepted (100 years), so due dates stay 4-digit-year dates.
pub const MAX_DUE_DAYS: u32 = 36_500;

/// A policy that parses but breaks a rule; `key` is the dotted path (`categories.x.owner`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct PolicyError {
    pub key: String,
    pub message: String,
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

    /// Semantic checks serde cannot express: at least one category, category names and
    /// services shaped like the item fields they fill, owners 1..64 chars, `due_days` ≤
    /// [`MAX_DUE_DAYS`], a non-empty dedupe prefix. The first failure names its key.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use crate::validate as v;
        let err = |key: String, e: crate::Error| PolicyError {
            key,
            message: e.message,
        };
        if self.categories.is_empty() {
            return Err(PolicyError {
                key: "categories".into(),
                message: "at least one category is required".into(),
            });
        }
        for (name, c) in self.categories.iter() {
            let key = format!("categories.{name}");
            v::category_name(name).map_err(|e| err(key.clone(), e))?;
            if c.due_days > MAX_DUE_DAYS {
                return Err(PolicyError {
                    key: format!("{key}.due_days"),
                    message: format!("must be at most {MAX_DUE_DAYS}, got {}", c.due_days),
                });
            }
            if let Some(owner) = &c.owner {
                v::owner(owner).map_err(|e| err(format!("{key}.owner"), e))?;
            }
        }
        v::owner(&self.ownership.default_owner)
            .map_err(|e| err("ownership.default_owner".into(), e))?;
        for (service, owner) in &self.ownership.overrides {
            let key = format!("ownership.overrides.{service}");
            v::service(service).map_err(|e| err(key.clone(), e))?;
            v::owner(owner).map_err(|e| err(key, e))?;
        }
        let prefix = &self.dedupe.key_prefix;
        if prefix.is_empty() || prefix.chars().count() > 64 || prefix.contains('\0') {
            return Err(PolicyError {
                key: "dedupe.key_prefix".into(),
                message: "must be 1..64 characters without U+0000".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Policy, String> {
        serde_json::from_str::<Policy>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_spec() {
        let p = Policy::default();
        assert_eq!(
            p.categories.names(),
            [
                "arch_review",
                "refactor",
                "slo_hardening",
                "cleanup_followups",
                "security"
            ]
        );
        assert_eq!(p.defaults.retention_days, 180);
        assert_eq!(p.defaults.max_items_per_run, 50);
        assert_eq!(p.dedupe.key_prefix, "platform_backlog");
        assert_eq!(p.ownership.default_owner, "oncall");
        assert_eq!(p.generation.daily_risk_bands, [Band::Critical]);
        assert!(p.generation.weekly_from_pressure_digest);
        assert!(!p.generation.daily_from_risk_digest);
        assert_eq!(p.dashboard.overdue_limit, 50);
        assert_eq!(
            p.category("security").map(|c| (c.priority, c.due_days)),
            Some((Priority::P1, 7))
        );
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(parse("{}"), Ok(Policy::default()));
    }

    #[test]
    fn partial_merge_keeps_order_and_rejects_unknown() {
        let p = parse(
            r#"{"defaults":{"retention_days":90},
                "categories":{"zeta":{"priority":"P0","due_days":1},"alpha":{"priority":"P3","due_days":2,"owner":"team-a"}}}"#,
        );
        let p = p.unwrap_or_default();
        assert_eq!(p.defaults.retention_days, 90);
        assert_eq!(p.defaults.max_items_per_run, 50);
        assert_eq!(p.categories.names(), ["zeta", "alpha"]);
        // Round trip through text keeps the order.
        let text = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(
            parse(&text).map(|p| p.categories.names().join(",")),
            Ok("zeta,alpha".into())
        );

        let bad = parse(r#"{"defaults":{"retention":1}}"#).unwrap_err();
        assert!(bad.contains("unknown field `retention`"), "{bad}");
        let bad = parse(r#"{"categories":{"a":{"priority":"P9","due_days":1}}}"#).unwrap_err();
        assert!(bad.contains("P9"), "{bad}");
        let bad = parse(r#"{"categories":{"a":{"priority":"P1","due_days":1},"a":{"priority":"P1","due_days":1}}}"#)
            .unwrap_err();
        assert!(bad.contains("duplicate category `a`"), "{bad}");
        let bad = parse(r#"{"generation":{"daily_risk_bands":["severe"]}}"#).unwrap_err();
        assert!(bad.contains("severe"), "{bad}");
    }

    #[track_caller]
    fn check_validate(p: Value, key: Option<&str>) {
        let p: Policy = serde_json::from_value(p).unwrap_or_default();
        assert_eq!(p.validate().err().map(|e| e.key).as_deref(), key);
    }

    #[test]
    fn semantic_checks() {
        check_validate(json!({}), None);
        check_validate(json!({"categories": {}}), Some("categories"));
        check_validate(
            json!({"categories": {"Bad Name": {"priority": "P1", "due_days": 1}}}),
            Some("categories.Bad Name"),
        );
        check_validate(
            json!({"categories": {"a": {"priority": "P1", "due_days": 40000}}}),
            Some("categories.a.due_days"),
        );
        check_validate(
            json!({"categories": {"a": {"priority": "P1", "due_days": 1, "owner": ""}}}),
            Some("categories.a.owner"),
        );
        check_validate(
            json!({"ownership": {"default_owner": ""}}),
            Some("ownership.default_owner"),
        );
        check_validate(
            json!({"ownership": {"overrides": {"gateway": "a\u{0}"}}}),
            Some("ownership.overrides.gateway"),
        );
        check_validate(
            json!({"ownership": {"overrides": {"Gateway": "x"}}}),
            Some("ownership.overrides.Gateway"),
        );
        check_validate(
            json!({"dedupe": {"key_prefix": ""}}),
            Some("dedupe.key_prefix"),
        );
    }

    #[test]
    fn owner_precedence() {
        let mut p = Policy::default();
        p.ownership
            .overrides
            .insert("gateway".into(), "team-gw".into());
        let rows = [
            ("gateway", "arch_review", "team-gw"),
            ("gateway", "refactor", "team-gw"),
            ("billing", "arch_review", "cto"),
            ("billing", "refactor", "oncall"),
            ("billing", "no_such_category", "oncall"),
        ];
        for (service, category, want) in rows {
            assert_eq!(p.owner_for(service, category), want, "{service}/{category}");
        }
    }
}
