//! What `describe()` tells agents: the tool name and description, and per action its
//! description, required entitlement and JSON Schema (draft 2020-12) of its params.
//!
//! Owns only descriptions. What is actually accepted is decided by `params`; a test keeps the
//! two in step (same property names, same required keys).

use serde_json::{Map, Value, json};

use crate::list::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::params::DEFAULT_ENV;
use crate::policy::Policy;
use crate::validate::{
    DATE_PATTERN, DEDUPE_KEY_MAX, DESCRIPTION_MAX, ENV_PATTERN, ITEM_ID_PATTERN, MESSAGE_MAX,
    OWNER_MAX, SERVICE_PATTERN, TAG_MAX, TAGS_MAX, TITLE_MAX,
};

/// The tool's name as agents call it.
pub const TOOL_NAME: &str = "backlog_tool";

/// The tool's description for agents.
pub const TOOL_DESCRIPTION: &str = "Engineering backlog: deduplicated work items generated from \
platform digests or created by hand. Create, upsert (by id or dedupe_key), get, list (filter by \
env, status, priority, service, owner, category, due date, overdue), read an item's event \
history, change status (open, in_progress, blocked, done, canceled; done/canceled can only be \
reopened) and comment; see an env's dashboard (counts, overdue items, top services, alerts). \
Admins generate items from the weekly platform digest (and the daily risk digest) and clean up \
old done/canceled items. Every change is recorded as an event attributed to the calling agent.";

/// Entitlement of read-only actions.
pub const READ: &str = "tools.backlog.read";
/// Entitlement of actions that change items.
pub const WRITE: &str = "tools.backlog.write";
/// Entitlement of generation and cleanup.
pub const ADMIN: &str = "tools.backlog.admin";

/// One action as `describe()` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// The one entitlement a caller needs.
    pub entitlement: &'static str,
    /// JSON Schema (draft 2020-12) of the params object.
    pub schema: Value,
}

fn id_prop(what: &str) -> Value {
    json!({"type": "string", "pattern": ITEM_ID_PATTERN, "description": what})
}

fn limit_prop(what: &str) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT, "description": what})
}

fn category_prop(policy: Option<&Policy>) -> Value {
    let names = policy
        .unwrap_or_else(|| crate::policy::defaults::builtin())
        .categories
        .names();
    let mut p = json!({
        "type": "string",
        "description": format!("A category of the backlog policy ({}). It sets the default priority, due date and owner.", names.join(", ")),
    });
    if let (Some(_), Some(obj)) = (policy, p.as_object_mut()) {
        obj.insert("enum".into(), json!(names));
    }
    p
}

/// Properties of the item fields shared by create and upsert.
fn item_props(policy: Option<&Policy>) -> Map<String, Value> {
    let props = json!({
        "env": {"type": "string", "pattern": ENV_PATTERN, "description": "Environment, e.g. prod, staging, dev."},
        "service": {"type": "string", "pattern": SERVICE_PATTERN, "description": "Service the item is about, e.g. gateway."},
        "category": category_prop(policy),
        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX, "description": "One-line summary."},
        "description": {"type": "string", "maxLength": DESCRIPTION_MAX, "description": "Details (Markdown). Default empty."},
        "priority": {"type": "string", "enum": ["P0", "P1", "P2", "P3"], "description": "P0 is most urgent. Default: the category's priority."},
        "owner": {"type": "string", "minLength": 1, "maxLength": OWNER_MAX, "description": "Owning person or team. Default: policy ownership (service override, then category owner, then the default owner)."},
        "due_date": {"type": "string", "format": "date", "pattern": DATE_PATTERN, "description": "YYYY-MM-DD. Default: today (UTC) plus the category's due_days."},
        "dedupe_key": {"type": "string", "minLength": 1, "maxLength": DEDUPE_KEY_MAX, "description": "Unique key of the item across the store. Default manual:<id>."},
        "evidence_refs": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Kind to list of ids, e.g. {\"alerts\":[\"al_1\"],\"incidents\":[]}; at most 1000 ids per kind and 64 KiB serialized. Default {}."
        },
        "tags": {"type": "array", "maxItems": TAGS_MAX, "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX}, "description": "Free-form labels. Default []."},
        "meta": {"type": "object", "description": "Free-form JSON object, at most 64 KiB serialized and 16 levels deep (meta itself included). Default {}."},
        "source": {"type": "string", "enum": ["digest", "risk", "pressure", "manual"], "description": "Where the item came from. Default manual."}
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn object_schema(properties: Map<String, Value>, required: &[&str]) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn props(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

const STATUSES: [&str; 5] = ["open", "in_progress", "blocked", "done", "canceled"];

/// Every action of this crate, with schemas describing the default policy's categories.
pub fn actions() -> Vec<ActionSpec> {
    build(None)
}

/// [`actions`], with `category` restricted (`enum`) to `policy`'s categories.
pub fn actions_for(policy: &Policy) -> Vec<ActionSpec> {
    build(Some(policy))
}

/// The spec of one action by name.
pub fn action(name: &str) -> Option<ActionSpec> {
    actions().into_iter().find(|a| a.name == name)
}

fn build(policy: Option<&Policy>) -> Vec<ActionSpec> {
    let mut upsert_props = item_props(policy);
    upsert_props.insert(
        "id".into(),
        id_prop(
            "Id of the item to update (bl_ + 12 hex). Unknown id without dedupe_key is not_found.",
        ),
    );
    let status_one = json!({"type": "string", "enum": STATUSES});
    let env_default = |what: &str| {
        props(vec![(
            "env",
            json!({"type": "string", "pattern": ENV_PATTERN, "default": DEFAULT_ENV, "description": what}),
        )])
    };
    vec![
        ActionSpec {
            name: "create",
            description: "Create an item. Required: env, service, category, title. Priority, due date and owner default from the category policy; status starts open. Fails with conflict if dedupe_key is already used. Returns the item.",
            entitlement: WRITE,
            schema: object_schema(item_props(policy), &["env", "service", "category", "title"]),
        },
        ActionSpec {
            name: "upsert",
            description: "Create or update an item found by id or dedupe_key (give at least one). Updates overwrite only the fields given; status never changes here (use set_status); owner changes only when given. Creating needs env, service, category, title. Returns {\"action\":\"created\"|\"updated\"|\"unchanged\",\"item\":…}; unchanged writes nothing.",
            entitlement: WRITE,
            schema: object_schema(upsert_props, &[]),
        },
        ActionSpec {
            name: "get",
            description: "Get one item by id, optionally with its event history (oldest first).",
            entitlement: READ,
            schema: object_schema(
                props(vec![
                    ("id", id_prop("Item id.")),
                    (
                        "include_events",
                        json!({"type": "boolean", "default": false, "description": "Add the item's events under key events."}),
                    ),
                ]),
                &["id"],
            ),
        },
        ActionSpec {
            name: "list",
            description: "List items matching all given filters, sorted by priority, due_date, id. Returns {\"items\":[…],\"total\":N,\"next_offset\":N|null}; pass next_offset as offset for the next page (a page may hold fewer than limit items: it also stops at 8 MiB).",
            entitlement: READ,
            schema: object_schema(
                props(vec![
                    (
                        "env",
                        json!({"type": "string", "pattern": ENV_PATTERN, "description": "Only this environment."}),
                    ),
                    (
                        "status",
                        json!({
                            "oneOf": [status_one.clone(), {"type": "array", "items": status_one.clone()}],
                            "description": "Only these statuses: one name, a comma-separated string, or a list."
                        }),
                    ),
                    (
                        "priority",
                        json!({"type": "string", "enum": ["P0", "P1", "P2", "P3"], "description": "Only this priority."}),
                    ),
                    (
                        "service",
                        json!({"type": "string", "pattern": SERVICE_PATTERN, "description": "Only this service."}),
                    ),
                    (
                        "owner",
                        json!({"type": "string", "minLength": 1, "maxLength": OWNER_MAX, "description": "Only this owner."}),
                    ),
                    (
                        "category",
                        json!({"type": "string", "description": "Only this category."}),
                    ),
                    (
                        "due_before",
                        json!({"type": "string", "format": "date", "pattern": DATE_PATTERN, "description": "Only items due strictly before this date (YYYY-MM-DD)."}),
                    ),
                    (
                        "overdue",
                        json!({"type": "boolean", "description": "true: only overdue items (not done/canceled, due before today UTC); false: only items that are not overdue; absent: no filter."}),
                    ),
                    ("limit", limit_prop("Page size.")),
                    (
                        "offset",
                        json!({"type": "integer", "minimum": 0, "maximum": crate::list::MAX_OFFSET, "default": 0, "description": "Matches to skip."}),
                    ),
                ]),
                &[],
            ),
        },
        ActionSpec {
            name: "events",
            description: "An item's event history (created, updated, status_changed, commented, owner_changed), oldest first. Returns {\"events\":[…]}.",
            entitlement: READ,
            schema: object_schema(
                props(vec![
                    ("id", id_prop("Item id.")),
                    ("limit", limit_prop("How many events, from the oldest.")),
                ]),
                &["id"],
            ),
        },
        ActionSpec {
            name: "set_status",
            description: "Change an item's status. Any open status (open, in_progress, blocked) can move anywhere; done and canceled can only be reopened (status open), anything else is a conflict. Setting the current status again records only the comment. Returns the item.",
            entitlement: WRITE,
            schema: object_schema(
                props(vec![
                    ("id", id_prop("Item id.")),
                    (
                        "status",
                        json!({"type": "string", "enum": STATUSES, "description": "New status (canceled has one L)."}),
                    ),
                    (
                        "comment",
                        json!({"type": "string", "maxLength": MESSAGE_MAX, "description": "Why; recorded as the event message."}),
                    ),
                ]),
                &["id", "status"],
            ),
        },
        ActionSpec {
            name: "add_comment",
            description: "Add a comment to an item's history. Returns the event.",
            entitlement: WRITE,
            schema: object_schema(
                props(vec![
                    ("id", id_prop("Item id.")),
                    (
                        "message",
                        json!({"type": "string", "minLength": 1, "maxLength": MESSAGE_MAX, "description": "The comment."}),
                    ),
                ]),
                &["id", "message"],
            ),
        },
        ActionSpec {
            name: "dashboard",
            description: "Dashboard of one environment: total, status_counts and priority_counts (every key, zeros included), overdue_count, the overdue items (not done/canceled, due before today UTC; sorted by due_date then priority; at most the policy's overdue_limit), top_services by open items, and alerts (notify oncall when overdue_count exceeds the policy threshold; page cto when a P0 item is overdue).",
            entitlement: READ,
            schema: object_schema(env_default("Environment. Default prod."), &[]),
        },
        ActionSpec {
            name: "auto_generate_weekly",
            description: "Generate backlog items from the latest weekly platform digest (ops/reports/platform/YYYY-WW.json) of the env: one item per service and matching policy category, deduplicated by week, env, service and category, at most the policy's max_items_per_run created or updated per run (the rest are counted as capped; run again to continue). Re-running changes nothing. Owner, status, priority and due date that people set are kept. Returns {\"week\",\"env\",\"digest\",\"created\",\"updated\",\"unchanged\",\"capped\",\"items\",\"stale\",\"warnings\"}, or {\"skipped\":true,…} when disabled by policy; precondition_failed when no digest exists.",
            entitlement: ADMIN,
            schema: object_schema(
                env_default("Environment whose digest to read. Default prod."),
                &[],
            ),
        },
        ActionSpec {
            name: "auto_generate_daily",
            description: "Generate slo_hardening items from the latest daily risk digest (ops/reports/risk/YYYY-MM-DD.json) for services in the policy's daily_risk_bands, merged into this week's weekly item of the same service. Off unless the policy enables it. Returns the weekly result shape with date in place of week.",
            entitlement: ADMIN,
            schema: object_schema(
                env_default("Environment whose digest to read. Default prod."),
                &[],
            ),
        },
        ActionSpec {
            name: "cleanup",
            description: "Destructive: permanently deletes done and canceled items (and their event history) last updated more than retention_days ago. Open, in_progress and blocked items are never deleted. Use dry_run to count first. Returns {\"deleted\":N,\"dry_run\":bool,\"cutoff\":\"<timestamp>\"}.",
            entitlement: ADMIN,
            schema: object_schema(
                props(vec![
                    (
                        "retention_days",
                        json!({"type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "Keep terminal items updated within this many days. Default: the policy's defaults.retention_days (180)."}),
                    ),
                    (
                        "dry_run",
                        json!({"type": "boolean", "default": false, "description": "Only count what would be deleted; change nothing."}),
                    ),
                ]),
                &[],
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{self, Params};
    use std::collections::BTreeSet;

    fn keys(schema: &Value, of: &str) -> BTreeSet<String> {
        match &schema[of] {
            Value::Object(m) => m.keys().cloned().collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    #[test]
    fn schemas_match_params() {
        let specs = actions();
        let names: Vec<&str> = specs.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "create",
                "upsert",
                "get",
                "list",
                "events",
                "set_status",
                "add_comment",
                "dashboard",
                "auto_generate_weekly",
                "auto_generate_daily",
                "cleanup"
            ]
        );
        assert_eq!(names, crate::actions::ACTIONS);
        for spec in &specs {
            let accepted = params::allowed_keys(spec.name).unwrap_or_default();
            let accepted: BTreeSet<String> = accepted.iter().map(|k| (*k).to_owned()).collect();
            assert_eq!(keys(&spec.schema, "properties"), accepted, "{}", spec.name);
            assert_eq!(spec.schema["type"], "object", "{}", spec.name);
            assert_eq!(spec.schema["additionalProperties"], false, "{}", spec.name);
            for (k, p) in spec.schema["properties"].as_object().into_iter().flatten() {
                assert!(
                    p["description"].is_string(),
                    "{}.{k} lacks a description",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn required_keys_are_what_the_parser_requires() {
        let policy = Policy::default();
        for spec in actions() {
            let required = keys(&spec.schema, "required");
            // Dropping any required key from a minimal valid request must fail.
            let minimal = match spec.name {
                "create" => {
                    json!({"env": "prod", "service": "gw", "category": "security", "title": "t"})
                }
                "upsert" => json!({"dedupe_key": "k"}),
                "get" | "events" => json!({"id": "bl_000000000001"}),
                "list" => json!({}),
                "set_status" => json!({"id": "bl_000000000001", "status": "open"}),
                "add_comment" => json!({"id": "bl_000000000001", "message": "m"}),
                "dashboard" | "auto_generate_weekly" | "auto_generate_daily" | "cleanup" => {
                    json!({})
                }
                other => panic!("no minimal request for {other}"),
            };
            let parses = |v: &Value| -> bool {
                match spec.name {
                    "create" => params::CreateParams::from_json(v, &policy).is_ok(),
                    "upsert" => params::UpsertParams::from_json(v, &policy).is_ok(),
                    "get" => params::GetParams::from_json(v, &policy).is_ok(),
                    "list" => crate::list::ListQuery::from_json(v, &policy).is_ok(),
                    "events" => params::EventsParams::from_json(v, &policy).is_ok(),
                    "set_status" => params::SetStatusParams::from_json(v, &policy).is_ok(),
                    "add_comment" => params::AddCommentParams::from_json(v, &policy).is_ok(),
                    "dashboard" => params::DashboardParams::from_json(v, &policy).is_ok(),
                    "auto_generate_weekly" => params::WeeklyParams::from_json(v, &policy).is_ok(),
                    "auto_generate_daily" => params::DailyParams::from_json(v, &policy).is_ok(),
                    "cleanup" => params::CleanupParams::from_json(v, &policy).is_ok(),
                    other => panic!("no parser for {other}"),
                }
            };
            assert!(parses(&minimal), "{}: minimal request rejected", spec.name);
            let minimal_keys: BTreeSet<String> = minimal
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            if spec.name != "upsert" {
                assert_eq!(required, minimal_keys, "{}", spec.name);
            }
            for k in &required {
                let mut less = minimal.clone();
                if let Some(m) = less.as_object_mut() {
                    m.remove(k);
                }
                assert!(
                    !parses(&less),
                    "{}: accepted without required `{k}`",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn entitlements_and_policy_enum() {
        let ent: Vec<(&str, &str)> = actions().iter().map(|a| (a.name, a.entitlement)).collect();
        assert_eq!(
            ent,
            [
                ("create", WRITE),
                ("upsert", WRITE),
                ("get", READ),
                ("list", READ),
                ("events", READ),
                ("set_status", WRITE),
                ("add_comment", WRITE),
                ("dashboard", READ),
                ("auto_generate_weekly", ADMIN),
                ("auto_generate_daily", ADMIN),
                ("cleanup", ADMIN)
            ]
        );
        assert!(
            action("cleanup").is_some_and(|a| a.description.starts_with("Destructive")),
            "cleanup must say it is destructive"
        );
        let specs = actions_for(&Policy::default());
        assert_eq!(
            specs[0].schema["properties"]["category"]["enum"][4],
            "security"
        );
        assert!(actions()[0].schema["properties"]["category"]["enum"].is_null());
        assert_eq!(action("events").map(|a| a.entitlement), Some(READ));
        assert_eq!(action("dance"), None);
    }
}
