//! The backlog policy (`docs/configuration.md`, `config/backlog_policy.yml`): categories in evaluation order,
//! ownership, defaults, dedupe prefix, generation switches, dashboard limits.
//!
//! Owns the policy's shape, its built-in defaults (and their shipped text,
//! [`DEFAULT_POLICY_YAML`]), parsing with errors that name the dotted key, and the semantic
//! checks. It does not read the file (the host does) and does not evaluate `when` rules
//! (generation does).
//!
//! Parsing goes through [`PolicyDocument`], an order-preserving tree that any serde format
//! (JSON, YAML) deserializes into, so category order survives and every error can name its key
//! (`categories.refactor.when[1]`). Deep merge: every given key replaces the default of that
//! key; maps merge key by key, except that a given `categories` map replaces the default one
//! whole. A `null` value (YAML `key:` with nothing after it) means "not given". Unknown keys
//! are rejected at every level. Never parse a policy from a `serde_json::Value`: without
//! `preserve_order` it sorts the category keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Priority;

/// The whole policy. `Default` is the built-in policy described in `docs/configuration.md` (the text of
/// [`DEFAULT_POLICY_YAML`]). Deserializing (from any serde format) runs [`Policy::from_document`],
/// so a deserialized policy is always valid.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defaults {
    /// Days to keep `done`/`canceled` items (cleanup). Default 180.
    pub retention_days: u32,
    /// Items created or updated per generation run (at least 1). Default 50.
    pub max_items_per_run: u32,
}

/// `dedupe:` — prefix of generated dedupe keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dedupe {
    /// Default `platform_backlog`.
    pub key_prefix: String,
}

/// One category: defaults for its items and the rules that make generation create one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryPolicy {
    /// Priority of new items (before escalation).
    pub priority: Priority,
    /// Due date on create = today + `due_days`.
    pub due_days: u32,
    /// Owner for this category, below `ownership.overrides[service]`.
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Owner when neither an override nor the category names one. Default `oncall`.
    pub default_owner: String,
    /// Service → owner; wins over everything else.
    pub overrides: BTreeMap<String, String>,
}

/// `dashboard:` — list sizes and alert thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl Default for Categories {
    fn default() -> Self {
        Categories(vec![
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

/// The text of the shipped `config/backlog_policy.yml`: every key (see `docs/configuration.md`) at its built-in
/// default, with comments. [`Policy::default`] is what this text means (the host tests that
/// it parses to exactly that; [`DEFAULT_POLICY_JSON`] is the same document as JSON).
pub const DEFAULT_POLICY_YAML: &str = r#"# Backlog policy of the Engineering Backlog Bridge (docs/configuration.md).
#
# A missing file means exactly these built-in defaults. A partial file is deep-merged over
# them key by key, except that a given `categories` map replaces the default one whole. An
# invalid file (unknown key, bad priority, negative number, empty owner, unknown `when` rule,
# ...) is a startup error naming the file and the key.

defaults:
  # Days to keep done/canceled items; `cleanup` deletes older ones (by updated_at).
  retention_days: 180
  # Items one generation run may create or update; the rest are reported as `capped`
  # and picked up by the next run.
  max_items_per_run: 50

dedupe:
  # Generated items get dedupe_key {key_prefix}:{week}:{env}:{service}:{category}.
  key_prefix: platform_backlog

# Order matters: generation evaluates categories in this order.
# `when` is any-of. A rule is one of:
#   {signal: NAME, gte: N}         the digest's signal NAME (missing = 0) is at least N
#   {requires_arch_review: true}   the digest flags the service for architecture review
#   {band_at_least: BAND}          the service's band is BAND or worse (low < medium < high < critical)
# `owner` (optional) is the category's owner, below ownership.overrides.
categories:
  arch_review:
    priority: P1
    due_days: 14
    owner: cto
    when:
      - { requires_arch_review: true }
  refactor:
    priority: P2
    due_days: 30
    when:
      - { signal: regressions_30d, gte: 2 }
      - { signal: recurrence_high_30d, gte: 1 }
  slo_hardening:
    priority: P1
    due_days: 14
    when:
      - { signal: escalations_30d, gte: 2 }
  cleanup_followups:
    priority: P2
    due_days: 7
    when:
      - { signal: followups_overdue, gte: 1 }
  security:
    priority: P1
    due_days: 7
    when:
      - { signal: dependency_high_30d, gte: 1 }

generation:
  # auto_generate_weekly reads ops/reports/platform/YYYY-WW.json.
  weekly_from_pressure_digest: true
  # auto_generate_daily reads ops/reports/risk/YYYY-MM-DD.json.
  daily_from_risk_digest: false
  # A service in band `critical` gets its generated priority raised one level (never above P0).
  escalate_on_critical_band: true
  # Risk bands that get an slo_hardening item from the daily run.
  daily_risk_bands: [critical]

ownership:
  # Owner precedence: overrides[service] > categories.<c>.owner > default_owner.
  default_owner: oncall
  # service: owner
  overrides: {}

dashboard:
  # At most this many items in `overdue` (overdue_count counts all of them).
  overdue_limit: 50
  # At most this many entries in `top_services`.
  top_services: 10
  # Alert `notify oncall` when overdue_count is greater than this.
  overdue_notify_threshold: 5
"#;

/// [`DEFAULT_POLICY_YAML`] as JSON: `Policy::from_json_str(DEFAULT_POLICY_JSON)` equals
/// `Policy::default()`.
pub const DEFAULT_POLICY_JSON: &str = r#"{
  "defaults": { "retention_days": 180, "max_items_per_run": 50 },
  "dedupe": { "key_prefix": "platform_backlog" },
  "categories": {
    "arch_review": { "priority": "P1", "due_days": 14, "owner": "cto",
                     "when": [{ "requires_arch_review": true }] },
    "refactor": { "priority": "P2", "due_days": 30,
                  "when": [{ "signal": "regressions_30d", "gte": 2 },
                           { "signal": "recurrence_high_30d", "gte": 1 }] },
    "slo_hardening": { "priority": "P1", "due_days": 14,
                       "when": [{ "signal": "escalations_30d", "gte": 2 }] },
    "cleanup_followups": { "priority": "P2", "due_days": 7,
                           "when": [{ "signal": "followups_overdue", "gte": 1 }] },
    "security": { "priority": "P1", "due_days": 7,
                  "when": [{ "signal": "dependency_high_30d", "gte": 1 }] }
  },
  "generation": { "weekly_from_pressure_digest": true, "daily_from_risk_digest": false,
                  "escalate_on_critical_band": true, "daily_risk_bands": ["critical"] },
  "ownership": { "default_owner": "oncall", "overrides": {} },
  "dashboard": { "overdue_limit": 50, "top_services": 10, "overdue_notify_threshold": 5 }
}"#;

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

fn perr(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        key: key.into(),
        message: message.into(),
    }
}

/// A parsed policy document before it is merged over the defaults: an order-preserving tree
/// of maps, lists and scalars. Any serde format deserializes into it (`serde_json::from_str`,
/// `serde_yaml_ng::from_str`); [`Policy::from_document`] turns it into a validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicates are kept so the converter can name them.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What the node is, for "expected …, got …" messages.
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Str(s) => format!("the string {}", crate::validate::shown(s)),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a map".into(),
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy document (maps, lists, strings, numbers, booleans)")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element_seed(NodeSeed)? {
            out.push(n);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key_seed(NodeSeed)? {
            // YAML keys may be numbers or booleans (`123: team-a`); read them as text.
            let key = match key {
                Node::Str(s) => s,
                Node::Int(i) => i.to_string(),
                Node::Bool(b) => b.to_string(),
                Node::Float(f) => f.to_string(),
                Node::Null => "null".into(),
                Node::Seq(_) | Node::Map(_) => {
                    return Err(serde::de::Error::custom(
                        "policy map keys must be strings, not lists or maps",
                    ));
                }
            };
            let value = map.next_value_seed(NodeSeed)?;
            out.push((key, value));
        }
        Ok(Node::Map(out))
    }
}

struct NodeSeed;

impl<'de> serde::de::DeserializeSeed<'de> for NodeSeed {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(PolicyDocument)
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of a map node; `None` for `null`. With `allowed`, every key must be one of
/// them. Duplicate keys are errors.
fn entries<'a>(
    node: &'a Node,
    path: &str,
    allowed: Option<&[&str]>,
) -> Result<Option<&'a [(String, Node)]>, PolicyError> {
    let list = match node {
        Node::Null => return Ok(None),
        Node::Map(list) => list,
        other => {
            let what = if path.is_empty() {
                "the policy must be a map of sections"
            } else {
                "expected a map"
            };
            return Err(perr(path, format!("{what}, got {}", other.describe())));
        }
    };
    for (i, (k, _)) in list.iter().enumerate() {
        let key = join(path, k);
        if list[..i].iter().any(|(seen, _)| seen == k) {
            return Err(perr(key, "duplicate key"));
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&k.as_str())
        {
            return Err(perr(
                key,
                format!("unknown key; expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(Some(list))
}

fn uint(node: &Node, key: &str, max: u64) -> Result<u64, PolicyError> {
    match node {
        Node::Int(i) if *i >= 0 => match u64::try_from(*i) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(perr(key, format!("must be at most {max}, got {i}"))),
        },
        other => Err(perr(
            key,
            format!("expected a non-negative integer, got {}", other.describe()),
        )),
    }
}

fn uint32(node: &Node, key: &str) -> Result<u32, PolicyError> {
    let n = uint(node, key, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| perr(key, format!("must be at most {}", u32::MAX)))
}

fn boolean(node: &Node, key: &str) -> Result<bool, PolicyError> {
    match node {
        Node::Bool(b) => Ok(*b),
        other => Err(perr(
            key,
            format!("expected true or false, got {}", other.describe()),
        )),
    }
}

fn string(node: &Node, key: &str) -> Result<String, PolicyError> {
    match node {
        Node::Str(s) => Ok(s.clone()),
        other => Err(perr(
            key,
            format!("expected a string, got {}", other.describe()),
        )),
    }
}

fn band(node: &Node, key: &str) -> Result<Band, PolicyError> {
    let expected = "expected one of low, medium, high, critical";
    match node {
        Node::Str(s) => Band::parse(s).ok_or_else(|| {
            perr(
                key,
                format!("{expected}, got {}", crate::validate::shown(s)),
            )
        }),
        other => Err(perr(key, format!("{expected}, got {}", other.describe()))),
    }
}

fn priority(node: &Node, key: &str) -> Result<Priority, PolicyError> {
    let expected = "expected one of P0, P1, P2, P3";
    match node {
        Node::Str(s) => Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                perr(
                    key,
                    format!("{expected}, got {}", crate::validate::shown(s)),
                )
            }),
        other => Err(perr(key, format!("{expected}, got {}", other.describe()))),
    }
}

fn seq<'a>(node: &'a Node, key: &str) -> Result<&'a [Node], PolicyError> {
    match node {
        Node::Seq(items) => Ok(items),
        other => Err(perr(
            key,
            format!("expected a list, got {}", other.describe()),
        )),
    }
}

const TOP_KEYS: &[&str] = &[
    "defaults",
    "dedupe",
    "categories",
    "generation",
    "ownership",
    "dashboard",
];
const RULE_SHAPES: &str = "expected {signal: NAME, gte: N}, {requires_arch_review: true} or \
{band_at_least: low|medium|high|critical}";

fn rule(node: &Node, key: &str) -> Result<Rule, PolicyError> {
    let Some(list) = entries(node, key, None)? else {
        return Err(perr(key, format!("{RULE_SHAPES}, got null")));
    };
    let mut names: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let get = |name: &str| list.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    match (names.as_slice(), get("signal"), get("gte")) {
        (["gte", "signal"], Some(s), Some(g)) => Ok(Rule::Signal {
            signal: string(s, &join(key, "signal"))?,
            gte: uint(g, &join(key, "gte"), u64::MAX)?,
        }),
        (["requires_arch_review"], _, _) => {
            let k = join(key, "requires_arch_review");
            let on = get("requires_arch_review").map_or(Ok(false), |v| boolean(v, &k))?;
            if !on {
                return Err(perr(
                    k,
                    "must be true (the rule matches services the digest flags for review)",
                ));
            }
            Ok(Rule::RequiresArchReview)
        }
        (["band_at_least"], _, _) => get("band_at_least")
            .map(|v| band(v, &join(key, "band_at_least")))
            .unwrap_or(Err(perr(key, RULE_SHAPES)))
            .map(Rule::BandAtLeast),
        _ => Err(perr(
            key,
            format!(
                "unknown rule shape with keys [{}]; {RULE_SHAPES}",
                names.join(", ")
            ),
        )),
    }
}

fn category(node: &Node, key: &str) -> Result<CategoryPolicy, PolicyError> {
    let allowed = ["priority", "due_days", "owner", "when"];
    let Some(list) = entries(node, key, Some(&allowed))? else {
        return Err(perr(
            key,
            "expected a map with priority and due_days, got null",
        ));
    };
    let get = |name: &str| {
        list.iter()
            .find(|(k, v)| k == name && *v != Node::Null)
            .map(|(_, v)| v)
    };
    let required =
        |name: &str| get(name).ok_or_else(|| perr(join(key, name), "required key is missing"));
    let when = match get("when") {
        None => Vec::new(),
        Some(w) => {
            let wkey = join(key, "when");
            seq(w, &wkey)?
                .iter()
                .enumerate()
                .map(|(i, r)| rule(r, &format!("{wkey}[{i}]")))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(CategoryPolicy {
        priority: priority(required("priority")?, &join(key, "priority"))?,
        due_days: uint32(required("due_days")?, &join(key, "due_days"))?,
        owner: get("owner")
            .map(|o| string(o, &join(key, "owner")))
            .transpose()?,
        when,
    })
}

/// Calls `f(key, dotted_path, value)` for every non-null entry of the map at `path`.
fn each(
    node: &Node,
    path: &str,
    allowed: &[&str],
    mut f: impl FnMut(&str, &str, &Node) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    for (k, v) in entries(node, path, Some(allowed))?.unwrap_or_default() {
        if *v != Node::Null {
            f(k, &join(path, k), v)?;
        }
    }
    Ok(())
}

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
        let mut p = Policy::default();
        each(&doc.0, "", TOP_KEYS, |section, path, node| match section {
            "defaults" => {
                let d = &mut p.defaults;
                each(
                    node,
                    path,
                    &["retention_days", "max_items_per_run"],
                    |k, key, v| {
                        let n = uint32(v, key)?;
                        match k {
                            "retention_days" => d.retention_days = n,
                            _ => d.max_items_per_run = n,
                        }
                        Ok(())
                    },
                )
            }
            "dedupe" => each(node, path, &["key_prefix"], |_, key, v| {
                p.dedupe.key_prefix = string(v, key)?;
                Ok(())
            }),
            "categories" => {
                let list = entries(node, path, None)?.unwrap_or_default();
                let pairs = list
                    .iter()
                    .map(|(name, c)| Ok((name.clone(), category(c, &join(path, name))?)))
                    .collect::<Result<Vec<_>, PolicyError>>()?;
                p.categories = Categories(pairs);
                Ok(())
            }
            "generation" => {
                let g = &mut p.generation;
                each(
                    node,
                    path,
                    &[
                        "weekly_from_pressure_digest",
                        "daily_from_risk_digest",
                        "escalate_on_critical_band",
                        "daily_risk_bands",
                    ],
                    |k, key, v| {
                        match k {
                            "weekly_from_pressure_digest" => {
                                g.weekly_from_pressure_digest = boolean(v, key)?
                            }
                            "daily_from_risk_digest" => g.daily_from_risk_digest = boolean(v, key)?,
                            "escalate_on_critical_band" => {
                                g.escalate_on_critical_band = boolean(v, key)?
                            }
                            _ => {
                                g.daily_risk_bands = seq(v, key)?
                                    .iter()
                                    .enumerate()
                                    .map(|(i, b)| band(b, &format!("{key}[{i}]")))
                                    .collect::<Result<_, _>>()?
                            }
                        }
                        Ok(())
                    },
                )
            }
            "ownership" => {
                let o = &mut p.ownership;
                each(node, path, &["default_owner", "overrides"], |k, key, v| {
                    match k {
                        "default_owner" => o.default_owner = string(v, key)?,
                        _ => {
                            let mut map = BTreeMap::new();
                            for (service, owner) in entries(v, key, None)?.unwrap_or_default() {
                                let k = join(key, service);
                                map.insert(service.clone(), string(owner, &k)?);
                            }
                            o.overrides = map;
                        }
                    }
                    Ok(())
                })
            }
            _ => {
                let d = &mut p.dashboard;
                each(
                    node,
                    path,
                    &["overdue_limit", "top_services", "overdue_notify_threshold"],
                    |k, key, v| {
                        let n = uint32(v, key)?;
                        match k {
                            "overdue_limit" => d.overdue_limit = n,
                            "top_services" => d.top_services = n,
                            _ => d.overdue_notify_threshold = n,
                        }
                        Ok(())
                    },
                )
            }
        })?;
        p.validate()?;
        Ok(p)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Policy, PolicyError> {
        Policy::from_json_str(s)
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
        assert!(p.generation.escalate_on_critical_band);
        assert_eq!(p.dashboard, Dashboard::default());
        assert_eq!(
            (
                p.dashboard.overdue_limit,
                p.dashboard.top_services,
                p.dashboard.overdue_notify_threshold
            ),
            (50, 10, 5)
        );
        assert_eq!(
            p.category("security").map(|c| (c.priority, c.due_days)),
            Some((Priority::P1, 7))
        );
        assert_eq!(
            p.category("refactor").map(|c| c.when.clone()),
            Some(vec![
                signal("regressions_30d", 2),
                signal("recurrence_high_30d", 1)
            ])
        );
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(parse("{}"), Ok(Policy::default()));
        assert_eq!(parse("null"), Ok(Policy::default()));
    }

    #[test]
    fn shipped_texts_mean_the_defaults() {
        assert_eq!(parse(DEFAULT_POLICY_JSON), Ok(Policy::default()));
        // The serialized default parses back to itself (Rule and Categories serialize in the
        // shapes the parser reads).
        let text = serde_json::to_string(&Policy::default()).unwrap_or_default();
        assert_eq!(parse(&text), Ok(Policy::default()));
        // Without a YAML parser here: every key of the JSON rendering appears in the YAML
        // text as `key:` (the host tests the real YAML parse).
        fn keys(n: &Node, out: &mut Vec<String>) {
            match n {
                Node::Map(m) => {
                    for (k, v) in m {
                        out.push(k.clone());
                        keys(v, out);
                    }
                }
                Node::Seq(s) => s.iter().for_each(|x| keys(x, out)),
                _ => {}
            }
        }
        let doc: Result<PolicyDocument, _> = serde_json::from_str(DEFAULT_POLICY_JSON);
        let mut all = Vec::new();
        if let Ok(d) = &doc {
            keys(&d.0, &mut all);
        }
        assert!(all.len() > 30, "{all:?}");
        for k in all {
            assert!(
                DEFAULT_POLICY_YAML.contains(&format!("{k}:")),
                "YAML lacks `{k}:`"
            );
        }
        for v in [
            "retention_days: 180",
            "max_items_per_run: 50",
            "key_prefix: platform_backlog",
            "daily_risk_bands: [critical]",
            "default_owner: oncall",
            "overdue_limit: 50",
            "top_services: 10",
            "overdue_notify_threshold: 5",
            "{ signal: recurrence_high_30d, gte: 1 }",
        ] {
            assert!(DEFAULT_POLICY_YAML.contains(v), "YAML lacks {v:?}");
        }
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
            (r#"{"defaults":{"retention_days":1,"retention_days":2}}"#.into(), "defaults.retention_days", "duplicate key"),
            (r#"{"dedupe":{"key_prefix":""}}"#.into(), "dedupe.key_prefix", "1..64"),
            (r#"{"dedupe":{"key_prefix":7}}"#.into(), "dedupe.key_prefix", "expected a string, got 7"),
            (r#"{"categories":{}}"#.into(), "categories", "at least one category"),
            (r#"{"categories":{"a":{"priority":"P1","due_days":1},"a":{"priority":"P1","due_days":1}}}"#.into(), "categories.a", "duplicate key"),
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
            .unwrap_or_default(),
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
}
