//! The resolved form of a policy: every key given, as [`Policy`] serializes. The host sends
//! guests this form (`Policy::from_resolved_json`), so a new instance reads its policy with one
//! JSON pass and no defaults: merging a document over the built-in policy means parsing the
//! shipped YAML first, which cost a `per-call` instance ~150 µs of its first call.
//!
//! Strict: a missing or unknown key anywhere is an error (the caller then falls back to the
//! merge, `Policy::from_json_str`), and the result is validated like any policy.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::model::{
    Band, Categories, CategoryPolicy, Dashboard, Dedupe, Defaults, Generation, Ownership, Policy,
    PolicyError, Rule, perr,
};

/// Every section, every key: the shape [`Policy`]'s `Serialize` writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolved {
    defaults: Defaults,
    dedupe: Dedupe,
    categories: Categories,
    generation: Generation,
    ownership: Ownership,
    dashboard: Dashboard,
}

impl Policy {
    /// Reads a policy in resolved form (`serde_json::to_string(&policy)`: every key) and
    /// validates it. Not a document merged over defaults: a partial document is an error
    /// here; [`Policy::from_json_str`] reads those.
    pub fn from_resolved_json(text: &str) -> Result<Policy, PolicyError> {
        let r: Resolved = serde_json::from_str(text)
            .map_err(|e| perr("", format!("not a resolved policy: {e}")))?;
        let p = Policy {
            defaults: r.defaults,
            dedupe: r.dedupe,
            categories: r.categories,
            generation: r.generation,
            ownership: r.ownership,
            dashboard: r.dashboard,
        };
        p.validate()?;
        Ok(p)
    }
}

impl<'de> Deserialize<'de> for Categories {
    /// A map in document order; a repeated name is an error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Categories;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of category name to category")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Categories, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, CategoryPolicy>()? {
                    pairs.push(entry);
                }
                Categories::from_pairs(pairs).ok_or_else(|| de::Error::custom("a category repeats"))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// The three shapes of a rule, as [`Rule`]'s `Serialize` writes them.
#[derive(Deserialize)]
#[serde(untagged)]
enum RuleForm {
    Signal(SignalForm),
    Review(ReviewForm),
    Band(BandForm),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalForm {
    signal: String,
    gte: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewForm {
    requires_arch_review: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BandForm {
    band_at_least: Band,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match RuleForm::deserialize(d)? {
            RuleForm::Signal(SignalForm { signal, gte }) => Ok(Rule::Signal { signal, gte }),
            RuleForm::Review(ReviewForm {
                requires_arch_review: true,
            }) => Ok(Rule::RequiresArchReview),
            RuleForm::Review(_) => Err(de::Error::custom("requires_arch_review must be true")),
            RuleForm::Band(BandForm { band_at_least }) => Ok(Rule::BandAtLeast(band_at_least)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOM: &str = r#"
defaults: {retention_days: 30}
categories:
  zeta: {priority: P1, due_days: 3, owner: team-z, when: [{signal: pages, gte: 4}]}
  alpha: {priority: P0, due_days: 1, when: [{requires_arch_review: true}, {band_at_least: high}]}
  manual: {priority: P3, due_days: 90, when: []}
ownership: {overrides: {billing: team-b}}
generation: {daily_risk_bands: [critical, high]}
"#;

    #[test]
    fn a_policy_reads_back_from_its_resolved_form() {
        for policy in [Policy::default(), Policy::from_yaml_str(CUSTOM).unwrap()] {
            let text = serde_json::to_string(&policy).unwrap();
            assert_eq!(Policy::from_resolved_json(&text).unwrap(), policy);
        }
        // Category order is the document's, not sorted.
        let custom = Policy::from_yaml_str(CUSTOM).unwrap();
        let back = Policy::from_resolved_json(&serde_json::to_string(&custom).unwrap()).unwrap();
        assert_eq!(back.categories.names(), ["zeta", "alpha", "manual"]);
    }

    #[test]
    fn a_partial_or_unknown_or_invalid_resolved_form_is_an_error() {
        let full: serde_json::Value = serde_json::to_value(Policy::default()).unwrap();
        let mut missing = full.clone();
        missing["dashboard"]
            .as_object_mut()
            .unwrap()
            .remove("top_services");
        let mut unknown = full.clone();
        unknown["dedupe"]["extra"] = serde_json::json!(1);
        let mut invalid = full.clone();
        invalid["defaults"]["max_items_per_run"] = serde_json::json!(0);
        let mut no_review = full.clone();
        no_review["categories"] = serde_json::json!({"a": {"priority": "P1", "due_days": 1,
            "when": [{"requires_arch_review": false}]}});
        for doc in [serde_json::json!({}), missing, unknown, invalid, no_review] {
            assert!(
                Policy::from_resolved_json(&doc.to_string()).is_err(),
                "{doc}"
            );
        }
        let repeated = r#"{"a": 1, "a": 2}"#;
        assert!(Policy::from_resolved_json(repeated).is_err());
    }
}
