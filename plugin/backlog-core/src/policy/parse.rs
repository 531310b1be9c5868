//! Parsing a policy document: any serde format (JSON from the host, the YAML of the shipped
//! defaults) deserializes into a [`PolicyDocument`], a `serde_yaml_ng::Value` whose maps
//! keep document order, so category order survives and every error can name its key
//! (`categories.refactor.when[1]`). [`merge`] merges it over a base policy: every
//! given key replaces the default of that key; maps merge key by key, except that a given
//! `categories` map replaces the default one whole. A `null` value (YAML `key:` with nothing
//! after it) means "not given". Unknown keys are rejected at every level. Never parse a policy
//! from a `serde_json::Value` built elsewhere: its key order depends on features.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use super::model::{Band, Categories, CategoryPolicy, Policy, PolicyError, Rule, perr};
use crate::model::Priority;
use crate::validate::shown;

/// A parsed policy document before it is merged over the defaults: an order-preserving tree
/// of maps, lists and scalars. Any serde format deserializes into it (`serde_json::from_str`,
/// `serde_yaml_ng::from_str`); [`Policy::from_document`] turns it into a validated policy.
/// Duplicate keys are refused while deserializing.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument(pub(crate) Value);

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(PolicyDocument)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of a map node, keys as text; `None` for `null`. With `allowed`, every key must
/// be one of them. Two keys with the same text are errors.
fn entries<'a>(
    node: &'a Value,
    path: &str,
    allowed: Option<&[&str]>,
) -> Result<Option<Vec<(String, &'a Value)>>, PolicyError> {
    let map = match node {
        Value::Null => return Ok(None),
        Value::Mapping(map) => map,
        other => {
            let what = if path.is_empty() {
                "the policy must be a map of sections"
            } else {
                "expected a map"
            };
            return Err(perr(path, format!("{what}, got {}", describe(other))));
        }
    };
    let mut list: Vec<(String, &Value)> = Vec::with_capacity(map.len());
    for (k, v) in map {
        let k = key_text(k)
            .ok_or_else(|| perr(path, "policy map keys must be strings, not lists or maps"))?;
        let key = join(path, &k);
        if list.iter().any(|(seen, _)| *seen == k) {
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
        list.push((k, v));
    }
    Ok(Some(list))
}

/// A map key as text: YAML keys may be numbers or booleans (`123: team-a`).
fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) | Value::Null => Some(scalar_text(k)),
        _ => None,
    }
}

/// A scalar as text (numbers as Rust prints them, so `1.0` reads `1`).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => f.to_string(),
            (None, None, None) => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// What the node is, for "expected …, got …" messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {}", shown(s)),
        other => scalar_text(other),
    }
}

fn uint(node: &Value, key: &str, max: u64) -> Result<u64, PolicyError> {
    match node.as_u64() {
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(perr(key, format!("must be at most {max}, got {n}"))),
        None => Err(perr(
            key,
            format!("expected a non-negative integer, got {}", describe(node)),
        )),
    }
}

fn uint32(node: &Value, key: &str) -> Result<u32, PolicyError> {
    let n = uint(node, key, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| perr(key, format!("must be at most {}", u32::MAX)))
}

fn boolean(node: &Value, key: &str) -> Result<bool, PolicyError> {
    match node {
        Value::Bool(b) => Ok(*b),
        other => Err(perr(
            key,
            format!("expected true or false, got {}", describe(other)),
        )),
    }
}

fn string(node: &Value, key: &str) -> Result<String, PolicyError> {
    match node {
        Value::String(s) => Ok(s.clone()),
        other => Err(perr(
            key,
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

fn band(node: &Value, key: &str) -> Result<Band, PolicyError> {
    let expected = "expected one of low, medium, high, critical";
    match node {
        Value::String(s) => {
            Band::parse(s).ok_or_else(|| perr(key, format!("{expected}, got {}", shown(s))))
        }
        other => Err(perr(key, format!("{expected}, got {}", describe(other)))),
    }
}

fn priority(node: &Value, key: &str) -> Result<Priority, PolicyError> {
    let expected = "expected one of P0, P1, P2, P3";
    match node {
        Value::String(s) => Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| perr(key, format!("{expected}, got {}", shown(s)))),
        other => Err(perr(key, format!("{expected}, got {}", describe(other)))),
    }
}

fn seq<'a>(node: &'a Value, key: &str) -> Result<&'a [Value], PolicyError> {
    match node {
        Value::Sequence(items) => Ok(items),
        other => Err(perr(
            key,
            format!("expected a list, got {}", describe(other)),
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

fn rule(node: &Value, key: &str) -> Result<Rule, PolicyError> {
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

fn category(node: &Value, key: &str) -> Result<CategoryPolicy, PolicyError> {
    let allowed = ["priority", "due_days", "owner", "when"];
    let Some(list) = entries(node, key, Some(&allowed))? else {
        return Err(perr(
            key,
            "expected a map with priority and due_days, got null",
        ));
    };
    let get = |name: &str| {
        list.iter()
            .find(|(k, v)| k == name && !v.is_null())
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
    node: &Value,
    path: &str,
    allowed: &[&str],
    mut f: impl FnMut(&str, &str, &Value) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    for (k, v) in entries(node, path, Some(allowed))?.unwrap_or_default() {
        if !v.is_null() {
            f(&k, &join(path, &k), v)?;
        }
    }
    Ok(())
}

/// `doc` merged over `p` (see the module docs), not yet validated.
pub(super) fn merge(mut p: Policy, doc: &Value) -> Result<Policy, PolicyError> {
    {
        each(doc, "", TOP_KEYS, |section, path, node| match section {
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
                                let k = join(key, &service);
                                map.insert(service, string(owner, &k)?);
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
    }
    Ok(p)
}
