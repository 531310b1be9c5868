//! Property: the policy parser over `serde_yaml_ng::Value` gives exactly what the old
//! hand-written tree gave (same policy or same error), for JSON and YAML text, on random
//! policy-shaped documents without duplicate keys. (Duplicate keys are now refused by the
//! deserializer for the whole document; the host's YAML loader refused them before already.)

use proptest::prelude::*;

use super::old_tree::{OldDocument, OldPolicy};
use crate::policy::Policy;

#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    Int(i64),
    Big(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

impl Doc {
    fn json(&self) -> String {
        match self {
            Doc::Null => "null".into(),
            Doc::Bool(b) => b.to_string(),
            Doc::Int(i) => i.to_string(),
            Doc::Big(u) => u.to_string(),
            Doc::Float(f) => format!("{f:?}"),
            Doc::Str(s) => serde_json::to_string(s).unwrap_or_default(),
            Doc::Seq(items) => {
                let parts: Vec<String> = items.iter().map(Doc::json).collect();
                format!("[{}]", parts.join(","))
            }
            Doc::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}:{}",
                            serde_json::to_string(k).unwrap_or_default(),
                            v.json()
                        )
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
        }
    }
}

const WORDS: &[&str] = &[
    "defaults",
    "dedupe",
    "categories",
    "generation",
    "ownership",
    "dashboard",
    "retention_days",
    "max_items_per_run",
    "key_prefix",
    "priority",
    "due_days",
    "owner",
    "when",
    "signal",
    "gte",
    "requires_arch_review",
    "band_at_least",
    "weekly_from_pressure_digest",
    "daily_from_risk_digest",
    "escalate_on_critical_band",
    "daily_risk_bands",
    "default_owner",
    "overrides",
    "overdue_limit",
    "top_services",
    "overdue_notify_threshold",
    "refactor",
    "security",
    "gateway",
    "Bad Name",
    "P0",
    "P1",
    "P3",
    "P9",
    "low",
    "high",
    "critical",
    "severe",
    "",
    "team-a",
    "a\u{0}",
    "ünï",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

fn leaf() -> BoxedStrategy<Doc> {
    prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(7),
            Just(36_501),
            0i64..100
        ]
        .prop_map(Doc::Int),
        prop_oneof![Just(5_000_000_000u64), Just(u64::MAX)].prop_map(Doc::Big),
        prop_oneof![Just(1.5f64), Just(2.0), Just(-0.5)].prop_map(Doc::Float),
        word().prop_map(Doc::Str),
    ]
    .boxed()
}

fn doc() -> impl Strategy<Value = Doc> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Doc::Seq),
            proptest::collection::vec((word(), inner), 0..6).prop_map(|mut entries| {
                let mut seen = std::collections::BTreeSet::new();
                entries.retain(|(k, _)| seen.insert(k.clone()));
                Doc::Map(entries)
            }),
        ]
    })
}

/// A map of some of `keys` (each at most once, in random order) with values from `value`.
fn map_of<S: Strategy<Value = Doc> + 'static>(
    keys: &'static [&'static str],
    value: S,
) -> BoxedStrategy<Doc> {
    let entry = (
        prop_oneof![9 => proptest::sample::select(keys).prop_map(str::to_owned), 1 => word()],
        value,
    );
    proptest::collection::vec(entry, 0..keys.len() + 2)
        .prop_map(|mut entries| {
            let mut seen = std::collections::BTreeSet::new();
            entries.retain(|(k, _)| seen.insert(k.clone()));
            Doc::Map(entries)
        })
        .boxed()
}

/// Mostly a plausible value, sometimes anything.
fn or_any<S: Strategy<Value = Doc> + 'static>(good: S) -> BoxedStrategy<Doc> {
    prop_oneof![4 => good, 1 => doc()].boxed()
}

fn rule() -> BoxedStrategy<Doc> {
    or_any(prop_oneof![
        (word(), leaf())
            .prop_map(|(s, g)| Doc::Map(vec![("signal".into(), Doc::Str(s)), ("gte".into(), g)])),
        leaf().prop_map(|v| Doc::Map(vec![("requires_arch_review".into(), v)])),
        leaf().prop_map(|v| Doc::Map(vec![("band_at_least".into(), v)])),
        map_of(
            &["signal", "gte", "requires_arch_review", "band_at_least"],
            leaf()
        ),
    ])
}

fn category() -> BoxedStrategy<Doc> {
    let field = prop_oneof![
        3 => leaf(),
        1 => proptest::collection::vec(rule(), 0..4).prop_map(Doc::Seq),
    ];
    or_any(map_of(&["priority", "due_days", "owner", "when"], field))
}

fn section() -> BoxedStrategy<Doc> {
    let bands = proptest::collection::vec(leaf(), 0..3).prop_map(Doc::Seq);
    let overrides = map_of(&["gateway", "Bad Name", "123"], leaf());
    let value = prop_oneof![3 => leaf(), 1 => bands, 1 => overrides];
    or_any(prop_oneof![
        map_of(
            &[
                "retention_days",
                "max_items_per_run",
                "key_prefix",
                "weekly_from_pressure_digest",
                "daily_from_risk_digest",
                "escalate_on_critical_band",
                "daily_risk_bands",
                "default_owner",
                "overrides",
                "overdue_limit",
                "top_services",
                "overdue_notify_threshold",
            ],
            value,
        ),
        map_of(&["refactor", "security", "zeta", "Bad Name"], category()),
    ])
}

/// A document shaped like a policy: known sections with plausible, sometimes wrong contents.
fn policy_doc() -> impl Strategy<Value = Doc> {
    map_of(
        &[
            "defaults",
            "dedupe",
            "categories",
            "generation",
            "ownership",
            "dashboard",
        ],
        section(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.max(512), ..ProptestConfig::default() })]

    #[test]
    fn new_parser_equals_old_tree(d in prop_oneof![4 => policy_doc(), 1 => doc()]) {
        let text = d.json();
        prop_assert_eq!(Policy::from_json_str(&text), OldPolicy::from_json_str(&text), "{}", text);
        let old_yaml: Result<OldDocument, _> = serde_yaml_ng::from_str(&text);
        let new_yaml: Result<crate::policy::PolicyDocument, _> = serde_yaml_ng::from_str(&text);
        prop_assert_eq!(old_yaml.is_ok(), new_yaml.is_ok(), "{}", text);
        if let (Ok(old), Ok(new)) = (old_yaml, new_yaml) {
            prop_assert_eq!(Policy::from_document(&new), OldPolicy::from_document(&old), "{}", text);
        }
    }
}
