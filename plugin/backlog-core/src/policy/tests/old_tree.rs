//! The hand-written order-preserving tree the policy parser used before `serde_yaml_ng::Value`,
//! kept verbatim as the oracle of the equivalence property in `tests.rs`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::model::Priority;
use crate::policy::model::{Band, Categories, CategoryPolicy, Policy, PolicyError, Rule, perr};
use crate::validate::shown;

pub struct OldPolicy;

/// A parsed policy document before it is merged over the defaults: an order-preserving tree
/// of maps, lists and scalars. Any serde format deserializes into it (`serde_json::from_str`,
/// `serde_yaml_ng::from_str`); [`OldPolicy::from_document`] turns it into a validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct OldDocument(Node);

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
            Node::Str(s) => format!("the string {}", shown(s)),
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

impl<'de> Deserialize<'de> for OldDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(OldDocument)
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
        Node::Str(s) => {
            Band::parse(s).ok_or_else(|| perr(key, format!("{expected}, got {}", shown(s))))
        }
        other => Err(perr(key, format!("{expected}, got {}", other.describe()))),
    }
}

fn priority(node: &Node, key: &str) -> Result<Priority, PolicyError> {
    let expected = "expected one of P0, P1, P2, P3";
    match node {
        Node::Str(s) => Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| perr(key, format!("{expected}, got {}", shown(s)))),
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

impl OldPolicy {
    pub fn from_json_str(text: &str) -> Result<Policy, PolicyError> {
        let doc: OldDocument = serde_json::from_str(text)
            .map_err(|e| perr("", format!("the policy is not valid JSON: {e}")))?;
        OldPolicy::from_document(&doc)
    }

    /// Merges a parsed document over [`Policy::default`] (see the module docs) and runs
    /// [`Policy::validate`]. The error names the dotted key.
    pub fn from_document(doc: &OldDocument) -> Result<Policy, PolicyError> {
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
}
