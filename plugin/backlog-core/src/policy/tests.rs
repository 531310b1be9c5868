use std::collections::BTreeMap;

use super::model::{
    Band, Categories, CategoryPolicy, Dashboard, Dedupe, Defaults, Generation, Ownership, Policy,
    PolicyError, Rule,
};
use super::{DEFAULT_POLICY_YAML, defaults, parse as parser};
use crate::model::Priority;

mod old_tree;
mod same_as_old_tree;

fn parse(s: &str) -> Result<Policy, PolicyError> {
    Policy::from_json_str(s)
}

fn cat(priority: Priority, due_days: u32, owner: Option<&str>, when: Vec<Rule>) -> CategoryPolicy {
    CategoryPolicy {
        priority,
        due_days,
        owner: owner.map(str::to_owned),
        when,
    }
}

fn signal(name: &str, gte: u64) -> Rule {
    Rule::Signal {
        signal: name.to_owned(),
        gte,
    }
}

/// The built-in policy as the Rust `Default`s spelled it before the shipped YAML became the
/// only copy (pinned once; a change of a default changes this on purpose).
fn pinned_defaults() -> Policy {
    Policy {
        defaults: Defaults {
            retention_days: 180,
            max_items_per_run: 50,
        },
        dedupe: Dedupe {
            key_prefix: "platform_backlog".into(),
        },
        categories: Categories::from_pairs(vec![
            (
                "arch_review".into(),
                cat(
                    Priority::P1,
                    14,
                    Some("cto"),
                    vec![Rule::RequiresArchReview],
                ),
            ),
            (
                "refactor".into(),
                cat(
                    Priority::P2,
                    30,
                    None,
                    vec![
                        signal("regressions_30d", 2),
                        signal("recurrence_high_30d", 1),
                    ],
                ),
            ),
            (
                "slo_hardening".into(),
                cat(Priority::P1, 14, None, vec![signal("escalations_30d", 2)]),
            ),
            (
                "cleanup_followups".into(),
                cat(Priority::P2, 7, None, vec![signal("followups_overdue", 1)]),
            ),
            (
                "security".into(),
                cat(
                    Priority::P1,
                    7,
                    None,
                    vec![signal("dependency_high_30d", 1)],
                ),
            ),
        ])
        .expect("distinct names"),
        generation: Generation {
            weekly_from_pressure_digest: true,
            daily_from_risk_digest: false,
            escalate_on_critical_band: true,
            daily_risk_bands: vec![Band::Critical],
        },
        ownership: Ownership {
            default_owner: "oncall".into(),
            overrides: BTreeMap::new(),
        },
        dashboard: Dashboard {
            overdue_limit: 50,
            top_services: 10,
            overdue_notify_threshold: 5,
        },
    }
}

#[test]
fn shipped_yaml_is_the_pinned_defaults() {
    assert_eq!(defaults::parse_shipped(), Ok(pinned_defaults()));
    assert_eq!(Policy::default(), pinned_defaults());
    assert_eq!(
        Policy::from_yaml_str(DEFAULT_POLICY_YAML),
        Ok(pinned_defaults())
    );
    assert_eq!(pinned_defaults().validate(), Ok(()));
    assert_eq!(parse("{}"), Ok(Policy::default()));
    assert_eq!(parse("null"), Ok(Policy::default()));
    // The serialized default parses back to itself (Rule and Categories serialize in the
    // shapes the parser reads).
    let text = serde_json::to_string(&Policy::default()).expect("serializes");
    assert_eq!(parse(&text), Ok(Policy::default()));
}

#[test]
fn a_shipped_file_missing_a_key_is_refused() {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&DEFAULT_POLICY_YAML.replace("  top_services: 10\n", ""))
            .expect("yaml");
    let a = parser::merge(pinned_defaults(), &doc);
    assert!(a.is_ok());
    // The completeness check of `parse_shipped` is what catches it: two bases, two results.
    let mut base = pinned_defaults();
    base.dashboard.top_services = 99;
    assert_ne!(parser::merge(base, &doc), a);
}

#[test]
fn partial_merge_keeps_order() {
    let p = parse(
        r#"{"defaults":{"retention_days":90},
            "categories":{"zeta":{"priority":"P0","due_days":1},
                          "alpha":{"priority":"P3","due_days":2,"owner":"team-a",
                                   "when":[{"band_at_least":"high"}]}},
            "ownership":{"overrides":{"gateway":"team-gw"}},
            "generation":{"daily_risk_bands":["high","critical"],"escalate_on_critical_band":null}}"#,
    )
    .unwrap_or_default();
    assert_eq!(p.defaults.retention_days, 90);
    assert_eq!(p.defaults.max_items_per_run, 50);
    assert_eq!(p.categories.names(), ["zeta", "alpha"]);
    assert_eq!(
        p.category("alpha").map(|c| c.when.clone()),
        Some(vec![Rule::BandAtLeast(Band::High)])
    );
    assert_eq!(p.ownership.default_owner, "oncall");
    assert_eq!(
        p.ownership.overrides.get("gateway").map(String::as_str),
        Some("team-gw")
    );
    assert_eq!(p.generation.daily_risk_bands, [Band::High, Band::Critical]);
    // null = not given: the default stays.
    assert!(p.generation.escalate_on_critical_band);
    assert!(p.generation.weekly_from_pressure_digest);
    // Round trip through text keeps the order.
    let text = serde_json::to_string(&p).unwrap_or_default();
    assert_eq!(
        parse(&text).map(|p| p.categories.names().join(",")),
        Ok("zeta,alpha".into())
    );
    // Through the serde Deserialize impl too.
    let via_serde: Result<Policy, _> = serde_json::from_str(&text);
    assert_eq!(via_serde.ok(), Some(p));
    let bad: Result<Policy, _> = serde_json::from_str(r#"{"defaults":{"retention":1}}"#);
    let msg = bad.map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("`defaults.retention`: unknown key"), "{msg}");
}

/// Parsing `doc` fails at `key` with a message containing `frag`.
#[track_caller]
fn check_err(doc: &str, key: &str, frag: &str) {
    match parse(doc) {
        Ok(p) => panic!("{doc} parsed: {p:?}"),
        Err(e) => {
            assert_eq!(e.key, key, "{doc}: {e}");
            assert!(e.message.contains(frag), "{doc}: {e} lacks {frag:?}");
        }
    }
}

#[test]
fn errors_name_the_key() {
    let c = |body: &str| format!(r#"{{"categories":{{"a":{body}}}}}"#);
    let w = |rule: &str| {
        c(&format!(
            r#"{{"priority":"P1","due_days":1,"when":[{rule}]}}"#
        ))
    };
    let rows: Vec<(String, &str, &str)> = vec![
        ("[]".into(), "", "must be a map of sections, got a list"),
        ("{".into(), "", "not valid JSON"),
        (r#"{"extra":{}}"#.into(), "extra", "unknown key; expected one of defaults, dedupe, categories, generation, ownership, dashboard"),
        (r#"{"defaults":{"retention":1}}"#.into(), "defaults.retention", "unknown key"),
        (r#"{"defaults":{"retention_days":-1}}"#.into(), "defaults.retention_days", "expected a non-negative integer, got -1"),
        (r#"{"defaults":{"retention_days":1.5}}"#.into(), "defaults.retention_days", "got 1.5"),
        (r#"{"defaults":{"retention_days":"180"}}"#.into(), "defaults.retention_days", "got the string \"180\""),
        (r#"{"defaults":{"retention_days":5000000000}}"#.into(), "defaults.retention_days", "must be at most 4294967295"),
        (r#"{"defaults":{"max_items_per_run":0}}"#.into(), "defaults.max_items_per_run", "at least 1"),
        (r#"{"defaults":[]}"#.into(), "defaults", "expected a map, got a list"),
        (r#"{"defaults":{"retention_days":1,"retention_days":2}}"#.into(), "", "duplicate entry with key \"retention_days\""),
        (r#"{"dedupe":{"key_prefix":""}}"#.into(), "dedupe.key_prefix", "1..64"),
        (r#"{"dedupe":{"key_prefix":7}}"#.into(), "dedupe.key_prefix", "expected a string, got 7"),
        (r#"{"categories":{}}"#.into(), "categories", "at least one category"),
        (r#"{"categories":{"a":{"priority":"P1","due_days":1},"a":{"priority":"P1","due_days":1}}}"#.into(), "", "duplicate entry with key \"a\""),
        (c(r#"{"priority":"P9","due_days":1}"#), "categories.a.priority", "expected one of P0, P1, P2, P3, got \"P9\""),
        (c(r#"{"priority":"p1","due_days":1}"#), "categories.a.priority", "\"p1\""),
        (c(r#"{"due_days":1}"#), "categories.a.priority", "required key is missing"),
        (c(r#"{"priority":"P1"}"#), "categories.a.due_days", "required key is missing"),
        (c(r#"{"priority":"P1","due_days":-3}"#), "categories.a.due_days", "non-negative integer, got -3"),
        (c(r#"{"priority":"P1","due_days":40000}"#), "categories.a.due_days", "at most 36500"),
        (c(r#"{"priority":"P1","due_days":1,"owner":""}"#), "categories.a.owner", "1..64"),
        (c(r#"{"priority":"P1","due_days":1,"colour":"red"}"#), "categories.a.colour", "unknown key; expected one of priority, due_days, owner, when"),
        (c(r#"{"priority":"P1","due_days":1,"when":{"signal":"x","gte":1}}"#), "categories.a.when", "expected a list, got a map"),
        (c("null"), "categories.a", "got null"),
        (r#"{"categories":{"Bad Name":{"priority":"P1","due_days":1}}}"#.into(), "categories.Bad Name", "must match"),
        (w(r#"{"signal":"x"}"#), "categories.a.when[0]", "unknown rule shape with keys [signal]"),
        (w(r#"{"signal":"x","gte":1,"lte":3}"#), "categories.a.when[0]", "unknown rule shape with keys [gte, lte, signal]"),
        (w(r#"{"score_at_least":80}"#), "categories.a.when[0]", "{band_at_least: low|medium|high|critical}"),
        (w(r#""x""#), "categories.a.when[0]", "expected a map"),
        (w(r#"{"signal":"x","gte":-1}"#), "categories.a.when[0].gte", "non-negative integer"),
        (w(r#"{"signal":5,"gte":1}"#), "categories.a.when[0].signal", "expected a string"),
        (w(r#"{"signal":"","gte":1}"#), "categories.a.when[0].signal", "1..64"),
        (w(r#"{"requires_arch_review":false}"#), "categories.a.when[0].requires_arch_review", "must be true"),
        (w(r#"{"requires_arch_review":"yes"}"#), "categories.a.when[0].requires_arch_review", "expected true or false"),
        (w(r#"{"band_at_least":"severe"}"#), "categories.a.when[0].band_at_least", "expected one of low, medium, high, critical, got \"severe\""),
        (r#"{"generation":{"daily_risk_bands":["high","severe"]}}"#.into(), "generation.daily_risk_bands[1]", "\"severe\""),
        (r#"{"generation":{"weekly_from_pressure_digest":"no"}}"#.into(), "generation.weekly_from_pressure_digest", "expected true or false"),
        (r#"{"ownership":{"default_owner":""}}"#.into(), "ownership.default_owner", "1..64"),
        (r#"{"ownership":{"overrides":{"gateway":"a\u0000"}}}"#.into(), "ownership.overrides.gateway", "U+0000"),
        (r#"{"ownership":{"overrides":{"gateway":3}}}"#.into(), "ownership.overrides.gateway", "expected a string"),
        (r#"{"ownership":{"overrides":{"Gateway":"x"}}}"#.into(), "ownership.overrides.Gateway", "must match"),
        (r#"{"dashboard":{"overdue_limit":-5}}"#.into(), "dashboard.overdue_limit", "non-negative"),
        (r#"{"dashboard":{"top":3}}"#.into(), "dashboard.top", "unknown key"),
    ];
    for (doc, key, frag) in &rows {
        check_err(doc, key, frag);
    }
    let e = parse(&w(r#"{"signal":"x"}"#)).unwrap_err();
    assert!(e.to_string().starts_with("`categories.a.when[0]`: "), "{e}");
    let e = parse("[]").unwrap_err();
    assert!(e.to_string().starts_with("the policy must be"), "{e}");
}

#[test]
fn validate_catches_code_built_policies() {
    let mut p = Policy::default();
    p.ownership.default_owner = String::new();
    assert_eq!(
        p.validate().map_err(|e| e.key),
        Err("ownership.default_owner".into())
    );
    let p = Policy {
        categories: Categories::from_pairs(vec![(
            "a".into(),
            cat(Priority::P1, 1, None, vec![signal("", 1)]),
        )])
        .expect("one name"),
        ..Policy::default()
    };
    assert_eq!(
        p.validate().map_err(|e| e.key),
        Err("categories.a.when[0].signal".into())
    );
    assert!(
        Categories::from_pairs(vec![
            ("a".into(), cat(Priority::P1, 1, None, vec![])),
            ("a".into(), cat(Priority::P1, 1, None, vec![])),
        ])
        .is_none()
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
