//! Action params: the JSON object of each action turned into a typed struct.
//!
//! Owns the accepted keys of every action (unknown keys are `invalid_input` naming the key and
//! listing the allowed ones), JSON types (a wrong type names the field and the expected type)
//! and every field rule that does not need the store. JSON `null` counts as absent for optional
//! fields. The typed structs are also what the typed WIT interface fills directly; their
//! `validate` is what both entry points run, so they cannot disagree.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::list::{ListQuery, MAX_LIMIT, MAX_OFFSET};
use crate::model::{Priority, Source, Status};
use crate::policy::Policy;
use crate::validate as v;

type Result<T = ()> = std::result::Result<T, Error>;

/// Keys `create` accepts.
pub const CREATE_KEYS: &[&str] = &[
    "env",
    "service",
    "category",
    "title",
    "description",
    "priority",
    "owner",
    "due_date",
    "dedupe_key",
    "evidence_refs",
    "tags",
    "meta",
    "source",
];
/// Keys `upsert` accepts: those of `create` plus `id`.
pub const UPSERT_KEYS: &[&str] = &[
    "id",
    "env",
    "service",
    "category",
    "title",
    "description",
    "priority",
    "owner",
    "due_date",
    "dedupe_key",
    "evidence_refs",
    "tags",
    "meta",
    "source",
];
/// Keys `get` accepts.
pub const GET_KEYS: &[&str] = &["id", "include_events"];
/// Keys `list` accepts.
pub const LIST_KEYS: &[&str] = &[
    "env",
    "status",
    "priority",
    "service",
    "owner",
    "category",
    "due_before",
    "overdue",
    "limit",
    "offset",
];
/// Keys `events` accepts.
pub const EVENTS_KEYS: &[&str] = &["id", "limit"];
/// Keys `set_status` accepts.
pub const SET_STATUS_KEYS: &[&str] = &["id", "status", "comment"];
/// Keys `add_comment` accepts.
pub const ADD_COMMENT_KEYS: &[&str] = &["id", "message"];
/// Keys `dashboard` accepts.
pub const DASHBOARD_KEYS: &[&str] = &["env"];
/// Keys `auto_generate_weekly` and `auto_generate_daily` accept.
pub const GENERATE_KEYS: &[&str] = &["env"];
/// Keys `cleanup` accepts.
pub const CLEANUP_KEYS: &[&str] = &["retention_days", "dry_run"];
/// The env of `dashboard` and generation when none is given.
pub const DEFAULT_ENV: &str = "prod";

/// The accepted keys of `action`, for the actions this module parses.
pub fn allowed_keys(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "create" => CREATE_KEYS,
        "upsert" => UPSERT_KEYS,
        "get" => GET_KEYS,
        "list" => LIST_KEYS,
        "events" => EVENTS_KEYS,
        "set_status" => SET_STATUS_KEYS,
        "add_comment" => ADD_COMMENT_KEYS,
        "dashboard" => DASHBOARD_KEYS,
        "auto_generate_weekly" | "auto_generate_daily" => GENERATE_KEYS,
        "cleanup" => CLEANUP_KEYS,
        _ => return None,
    })
}

/// A typed params struct of one action.
pub trait Params: Sized {
    /// The action name.
    const ACTION: &'static str;
    /// The keys its JSON object may hold.
    const KEYS: &'static [&'static str];
    /// Parses and validates the JSON params.
    fn from_json(params: &Value, policy: &Policy) -> Result<Self>;
    /// The field rules (run by `from_json` and again by the typed action functions).
    fn validate(&self, policy: &Policy) -> Result;
}

/// The JSON type name of `v`, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The params object of `action`, with every key checked against `allowed`.
pub fn object<'a>(action: &str, params: &'a Value, allowed: &[&str]) -> Result<Fields<'a>> {
    let Value::Object(map) = params else {
        return Err(Error::invalid_input(format!(
            "params of `{action}` must be a JSON object, got {}",
            type_name(params)
        )));
    };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid_input(format!(
            "unknown parameter `{}` for `{action}`; allowed: {}",
            key.escape_debug(),
            allowed.join(", ")
        )));
    }
    Ok(Fields {
        action: action.to_owned(),
        map,
    })
}

/// Typed access to a params object; `null` reads as absent.
pub struct Fields<'a> {
    action: String,
    map: &'a Map<String, Value>,
}

fn wrong(key: &str, expected: &str, got: &Value) -> Error {
    Error::invalid_input(format!(
        "`{key}` must be {expected}, got {}",
        type_name(got)
    ))
}

impl<'a> Fields<'a> {
    /// The value of `key`, `None` if absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn missing(&self, key: &str) -> Error {
        Error::invalid_input(format!(
            "missing required parameter `{key}` for `{}`",
            self.action
        ))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(key, "a string", other)),
        }
    }

    /// A required string.
    pub fn req_str(&self, key: &str) -> Result<String> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong(key, "a boolean", other)),
        }
    }

    /// An optional non-negative integer of at most `max` (the message names the limit).
    pub fn opt_bounded(&self, key: &str, min: u64, max: usize) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(n @ Value::Number(num)) => {
                let Some(u) = num.as_u64() else {
                    return Err(wrong(key, "a non-negative integer", n));
                };
                match usize::try_from(u) {
                    Ok(x) if u >= min && x <= max => Ok(Some(x)),
                    _ => Err(Error::invalid_input(format!(
                        "`{key}` must be between {min} and {max}, got {u}"
                    ))),
                }
            }
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// An optional non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(n @ Value::Number(num)) => num
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .map(Some)
                .ok_or_else(|| wrong(key, "a non-negative integer", n)),
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// An optional JSON object.
    pub fn opt_object(&self, key: &str) -> Result<Option<Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(wrong(key, "an object", other)),
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(&format!("{key}[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong(key, "a list of strings", other)),
        }
    }

    /// An optional object of kind → list of strings (`evidence_refs`).
    pub fn opt_refs(&self, key: &str) -> Result<Option<BTreeMap<String, Vec<String>>>> {
        let Some(obj) = self.opt_object(key)? else {
            return Ok(None);
        };
        let mut refs = BTreeMap::new();
        for (kind, list) in obj {
            let field = format!("{key}.{kind}");
            let Value::Array(a) = list else {
                return Err(wrong(&field, "a list of strings", &list));
            };
            let ids = a
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(&format!("{field}[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>>>()?;
            refs.insert(kind, ids);
        }
        Ok(Some(refs))
    }

    /// An optional priority name.
    pub fn opt_priority(&self, key: &str) -> Result<Option<Priority>> {
        self.opt_str(key)?.map(|s| v::priority(key, &s)).transpose()
    }

    /// An optional source name.
    pub fn opt_source(&self, key: &str) -> Result<Option<Source>> {
        self.opt_str(key)?.map(|s| v::source(key, &s)).transpose()
    }
}

/// `create`: the four required fields plus optional overrides of the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateParams {
    pub env: String,
    pub service: String,
    pub category: String,
    pub title: String,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub owner: Option<String>,
    pub due_date: Option<String>,
    pub dedupe_key: Option<String>,
    pub evidence_refs: Option<BTreeMap<String, Vec<String>>>,
    pub tags: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    pub source: Option<Source>,
}

/// `upsert`: every `create` field optional, plus `id`; needs `id` or `dedupe_key`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpsertParams {
    pub id: Option<String>,
    pub env: Option<String>,
    pub service: Option<String>,
    pub category: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub owner: Option<String>,
    pub due_date: Option<String>,
    pub dedupe_key: Option<String>,
    pub evidence_refs: Option<BTreeMap<String, Vec<String>>>,
    pub tags: Option<Vec<String>>,
    pub meta: Option<Map<String, Value>>,
    pub source: Option<Source>,
}

/// `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetParams {
    pub id: String,
    /// Add the item's events (oldest first, up to [`MAX_LIMIT`]). Default false.
    pub include_events: bool,
}

/// `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsParams {
    pub id: String,
    /// 1..=1000, default 100.
    pub limit: usize,
}

/// `set_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatusParams {
    pub id: String,
    pub status: Status,
    /// Recorded as the event's message (0..4000 chars).
    pub comment: Option<String>,
}

/// `add_comment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCommentParams {
    pub id: String,
    /// 1..4000 chars.
    pub message: String,
}

/// `dashboard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardParams {
    /// Default `prod`.
    pub env: String,
}

/// `auto_generate_weekly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyParams {
    /// Default `prod`.
    pub env: String,
}

/// `auto_generate_daily`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyParams {
    /// Default `prod`.
    pub env: String,
}

/// `cleanup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupParams {
    /// Days to keep terminal items; `None` = the policy's `defaults.retention_days`.
    pub retention_days: Option<u32>,
    /// Count only, delete nothing. Default false.
    pub dry_run: bool,
}

/// The optional item fields shared by create and upsert.
#[allow(clippy::too_many_arguments)]
fn validate_fields(
    policy: &Policy,
    category: Option<&str>,
    description: Option<&str>,
    owner: Option<&str>,
    due_date: Option<&str>,
    dedupe_key: Option<&str>,
    evidence_refs: Option<&BTreeMap<String, Vec<String>>>,
    tags: Option<&[String]>,
    meta: Option<&Map<String, Value>>,
) -> Result {
    if let Some(c) = category {
        known_category(policy, c)?;
    }
    if let Some(d) = description {
        v::description(d)?;
    }
    if let Some(o) = owner {
        v::owner(o)?;
    }
    if let Some(d) = due_date {
        v::due_date(d)?;
    }
    if let Some(k) = dedupe_key {
        v::dedupe_key(k)?;
    }
    if let Some(r) = evidence_refs {
        v::evidence_refs(r)?;
    }
    if let Some(t) = tags {
        v::tags(t)?;
    }
    if let Some(m) = meta {
        v::meta(m)?;
    }
    Ok(())
}

impl Params for CreateParams {
    const ACTION: &'static str = "create";
    const KEYS: &'static [&'static str] = CREATE_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let p = CreateParams {
            env: f.req_str("env")?,
            service: f.req_str("service")?,
            category: f.req_str("category")?,
            title: f.req_str("title")?,
            description: f.opt_str("description")?,
            priority: f.opt_priority("priority")?,
            owner: f.opt_str("owner")?,
            due_date: f.opt_str("due_date")?,
            dedupe_key: f.opt_str("dedupe_key")?,
            evidence_refs: f.opt_refs("evidence_refs")?,
            tags: f.opt_str_list("tags")?,
            meta: f.opt_object("meta")?,
            source: f.opt_source("source")?,
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, policy: &Policy) -> Result {
        v::env(&self.env)?;
        v::service(&self.service)?;
        v::title(&self.title)?;
        validate_fields(
            policy,
            Some(&self.category),
            self.description.as_deref(),
            self.owner.as_deref(),
            self.due_date.as_deref(),
            self.dedupe_key.as_deref(),
            self.evidence_refs.as_ref(),
            self.tags.as_deref(),
            self.meta.as_ref(),
        )
    }
}

impl Params for UpsertParams {
    const ACTION: &'static str = "upsert";
    const KEYS: &'static [&'static str] = UPSERT_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let p = UpsertParams {
            id: f.opt_str("id")?,
            env: f.opt_str("env")?,
            service: f.opt_str("service")?,
            category: f.opt_str("category")?,
            title: f.opt_str("title")?,
            description: f.opt_str("description")?,
            priority: f.opt_priority("priority")?,
            owner: f.opt_str("owner")?,
            due_date: f.opt_str("due_date")?,
            dedupe_key: f.opt_str("dedupe_key")?,
            evidence_refs: f.opt_refs("evidence_refs")?,
            tags: f.opt_str_list("tags")?,
            meta: f.opt_object("meta")?,
            source: f.opt_source("source")?,
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, policy: &Policy) -> Result {
        if self.id.is_none() && self.dedupe_key.is_none() {
            return Err(Error::invalid_input(
                "`upsert` needs `id` or `dedupe_key` to find the item to update",
            ));
        }
        if let Some(id) = &self.id {
            v::item_id("id", id)?;
        }
        if let Some(e) = &self.env {
            v::env(e)?;
        }
        if let Some(s) = &self.service {
            v::service(s)?;
        }
        if let Some(t) = &self.title {
            v::title(t)?;
        }
        validate_fields(
            policy,
            self.category.as_deref(),
            self.description.as_deref(),
            self.owner.as_deref(),
            self.due_date.as_deref(),
            self.dedupe_key.as_deref(),
            self.evidence_refs.as_ref(),
            self.tags.as_deref(),
            self.meta.as_ref(),
        )
    }
}

impl UpsertParams {
    /// The create request this upsert stands for when nothing matches; `invalid_input` naming
    /// the missing required fields.
    pub fn to_create(&self) -> Result<CreateParams> {
        let missing: Vec<&str> = [
            ("env", self.env.is_none()),
            ("service", self.service.is_none()),
            ("category", self.category.is_none()),
            ("title", self.title.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, absent)| absent.then_some(k))
        .collect();
        let (Some(env), Some(service), Some(category), Some(title)) = (
            self.env.clone(),
            self.service.clone(),
            self.category.clone(),
            self.title.clone(),
        ) else {
            return Err(Error::invalid_input(format!(
                "`upsert` found no item to update, so it would create one, which needs {}; missing: {}",
                "`env`, `service`, `category`, `title`",
                missing
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        Ok(CreateParams {
            env,
            service,
            category,
            title,
            description: self.description.clone(),
            priority: self.priority,
            owner: self.owner.clone(),
            due_date: self.due_date.clone(),
            dedupe_key: self.dedupe_key.clone(),
            evidence_refs: self.evidence_refs.clone(),
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            source: self.source,
        })
    }
}

impl From<CreateParams> for UpsertParams {
    fn from(c: CreateParams) -> Self {
        UpsertParams {
            id: None,
            env: Some(c.env),
            service: Some(c.service),
            category: Some(c.category),
            title: Some(c.title),
            description: c.description,
            priority: c.priority,
            owner: c.owner,
            due_date: c.due_date,
            dedupe_key: c.dedupe_key,
            evidence_refs: c.evidence_refs,
            tags: c.tags,
            meta: c.meta,
            source: c.source,
        }
    }
}

fn limit(f: &Fields<'_>) -> Result<usize> {
    Ok(f.opt_bounded("limit", 1, MAX_LIMIT)?
        .unwrap_or(crate::list::DEFAULT_LIMIT))
}

fn check_limit(limit: usize) -> Result {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::invalid_input(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(())
}

impl Params for GetParams {
    const ACTION: &'static str = "get";
    const KEYS: &'static [&'static str] = GET_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let p = GetParams {
            id: f.req_str("id")?,
            include_events: f.opt_bool("include_events")?.unwrap_or(false),
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, _policy: &Policy) -> Result {
        v::item_id("id", &self.id)
    }
}

impl Params for EventsParams {
    const ACTION: &'static str = "events";
    const KEYS: &'static [&'static str] = EVENTS_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let p = EventsParams {
            id: f.req_str("id")?,
            limit: limit(&f)?,
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, _policy: &Policy) -> Result {
        v::item_id("id", &self.id)?;
        check_limit(self.limit)
    }
}

impl Params for SetStatusParams {
    const ACTION: &'static str = "set_status";
    const KEYS: &'static [&'static str] = SET_STATUS_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let id = f.req_str("id")?;
        let status = v::status("status", &f.req_str("status")?)?;
        let p = SetStatusParams {
            id,
            status,
            comment: f.opt_str("comment")?,
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, _policy: &Policy) -> Result {
        v::item_id("id", &self.id)?;
        if let Some(c) = &self.comment {
            v::comment(c)?;
        }
        Ok(())
    }
}

impl Params for AddCommentParams {
    const ACTION: &'static str = "add_comment";
    const KEYS: &'static [&'static str] = ADD_COMMENT_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let p = AddCommentParams {
            id: f.req_str("id")?,
            message: f.req_str("message")?,
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, _policy: &Policy) -> Result {
        v::item_id("id", &self.id)?;
        v::message(&self.message)
    }
}

/// Implements [`Params`] for an action whose only parameter is an optional `env`
/// (default [`DEFAULT_ENV`]).
macro_rules! env_params {
    ($t:ident, $action:literal, $keys:ident) => {
        impl Params for $t {
            const ACTION: &'static str = $action;
            const KEYS: &'static [&'static str] = $keys;

            fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
                let f = object(Self::ACTION, params, Self::KEYS)?;
                let p = $t {
                    env: f.opt_str("env")?.unwrap_or_else(|| DEFAULT_ENV.to_owned()),
                };
                p.validate(policy)?;
                Ok(p)
            }

            fn validate(&self, _policy: &Policy) -> Result {
                v::env(&self.env)
            }
        }
    };
}
env_params!(DashboardParams, "dashboard", DASHBOARD_KEYS);
env_params!(WeeklyParams, "auto_generate_weekly", GENERATE_KEYS);
env_params!(DailyParams, "auto_generate_daily", GENERATE_KEYS);

impl Params for CleanupParams {
    const ACTION: &'static str = "cleanup";
    const KEYS: &'static [&'static str] = CLEANUP_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let retention_days =
            match f.get("retention_days") {
                None => None,
                Some(n) => Some(n.as_u64().and_then(|d| u32::try_from(d).ok()).ok_or_else(
                    || match n.as_u64() {
                        Some(big) => Error::invalid_input(format!(
                            "`retention_days` must be at most {}, got {big}",
                            u32::MAX
                        )),
                        None => wrong("retention_days", "a non-negative integer", n),
                    },
                )?),
            };
        let p = CleanupParams {
            retention_days,
            dry_run: f.opt_bool("dry_run")?.unwrap_or(false),
        };
        p.validate(policy)?;
        Ok(p)
    }

    fn validate(&self, _policy: &Policy) -> Result {
        Ok(())
    }
}

/// `status` of `list`: one name, a comma-separated string of names, or a list of names.
fn statuses(f: &Fields<'_>) -> Result<Vec<Status>> {
    let names: Vec<String> = match f.get("status") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(&format!("status[{i}]"), "a string", other)),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(wrong("status", "a string or a list of strings", other)),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let s = v::status("status", &name)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

impl Params for ListQuery {
    const ACTION: &'static str = "list";
    const KEYS: &'static [&'static str] = LIST_KEYS;

    fn from_json(params: &Value, policy: &Policy) -> Result<Self> {
        let f = object(Self::ACTION, params, Self::KEYS)?;
        let q = ListQuery {
            env: f.opt_str("env")?,
            status: statuses(&f)?,
            priority: f.opt_priority("priority")?,
            service: f.opt_str("service")?,
            owner: f.opt_str("owner")?,
            category: f.opt_str("category")?,
            due_before: f.opt_str("due_before")?,
            overdue: f.opt_bool("overdue")?,
            limit: limit(&f)?,
            offset: f.opt_bounded("offset", 0, MAX_OFFSET)?.unwrap_or(0),
        };
        q.validate(policy)?;
        Ok(q)
    }

    /// Filters are shape-checked (a malformed `env` can match nothing: say so); `category` is
    /// not checked against the policy, so items of a dropped category stay listable.
    fn validate(&self, _policy: &Policy) -> Result {
        if let Some(e) = &self.env {
            v::env(e)?;
        }
        if let Some(s) = &self.service {
            v::service(s)?;
        }
        if let Some(o) = &self.owner {
            v::owner(o)?;
        }
        if let Some(c) = &self.category {
            v::category_name(c)?;
        }
        if let Some(d) = &self.due_before {
            v::date("due_before", d)?;
        }
        check_limit(self.limit)
    }
}

/// `category`: a key of the policy's `categories`; the message lists the valid ones.
pub(crate) fn known_category(policy: &Policy, s: &str) -> Result {
    if policy.category(s).is_some() {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "`category` must be one of the policy's categories ({}), got {}",
        policy.categories.names().join(", "),
        v::shown(s)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    #[track_caller]
    fn check_err<P: Params + std::fmt::Debug>(params: Value, frag: &str) {
        match P::from_json(&params, &Policy::default()) {
            Ok(p) => panic!("{params} parsed as {p:?}, want error containing {frag:?}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
                assert!(e.message.contains(frag), "{:?} lacks {frag:?}", e.message);
            }
        }
    }

    #[track_caller]
    fn parse<P: Params>(params: Value) -> P {
        match P::from_json(&params, &Policy::default()) {
            Ok(p) => p,
            Err(e) => panic!("{params}: {e}"),
        }
    }

    fn base() -> Value {
        json!({"env": "prod", "service": "gateway", "category": "security", "title": "Patch it"})
    }

    fn with(mut v: Value, key: &str, x: Value) -> Value {
        if let Some(m) = v.as_object_mut() {
            m.insert(key.into(), x);
        }
        v
    }

    #[test]
    fn create_parses() {
        let p: CreateParams = parse(base());
        assert_eq!((p.env.as_str(), p.title.as_str()), ("prod", "Patch it"));
        assert_eq!(p.priority, None);
        let p: CreateParams = parse(json!({
            "env": "prod", "service": "gateway", "category": "security", "title": "t",
            "description": "d", "priority": "P0", "owner": "cto", "due_date": "2026-04-01",
            "dedupe_key": "k", "evidence_refs": {"alerts": ["al_1"], "incidents": []},
            "tags": ["a", "b"], "meta": {"x": 1}, "source": "risk"
        }));
        assert_eq!(p.priority, Some(Priority::P0));
        assert_eq!(p.source, Some(Source::Risk));
        assert_eq!(p.evidence_refs.as_ref().map(|r| r.len()), Some(2));
        // null = absent for optional fields.
        let p: CreateParams = parse(with(base(), "owner", Value::Null));
        assert_eq!(p.owner, None);
    }

    #[test]
    fn create_rejects() {
        check_err::<CreateParams>(
            json!([]),
            "params of `create` must be a JSON object, got array",
        );
        check_err::<CreateParams>(json!("x"), "must be a JSON object, got string");
        check_err::<CreateParams>(
            with(base(), "status", json!("open")),
            "unknown parameter `status` for `create`; allowed: env, service, category, title, description",
        );
        check_err::<CreateParams>(
            json!({"env": "prod"}),
            "missing required parameter `service` for `create`",
        );
        check_err::<CreateParams>(
            with(base(), "title", Value::Null),
            "missing required parameter `title`",
        );
        check_err::<CreateParams>(
            with(base(), "title", json!(5)),
            "`title` must be a string, got number",
        );
        check_err::<CreateParams>(
            with(base(), "tags", json!("a")),
            "`tags` must be a list of strings, got string",
        );
        check_err::<CreateParams>(
            with(base(), "tags", json!(["a", 1])),
            "`tags[1]` must be a string, got number",
        );
        check_err::<CreateParams>(
            with(base(), "meta", json!([])),
            "`meta` must be an object, got array",
        );
        check_err::<CreateParams>(
            with(base(), "evidence_refs", json!({"a": "x"})),
            "`evidence_refs.a` must be a list of strings, got string",
        );
        check_err::<CreateParams>(
            with(base(), "evidence_refs", json!({"a": [true]})),
            "`evidence_refs.a[0]` must be a string, got boolean",
        );
        check_err::<CreateParams>(
            with(base(), "priority", json!("urgent")),
            "`priority` must be one of P0, P1, P2, P3",
        );
        check_err::<CreateParams>(
            with(base(), "source", json!("cron")),
            "`source` must be one of",
        );
        check_err::<CreateParams>(
            with(base(), "category", json!("nope")),
            "policy's categories",
        );
        check_err::<CreateParams>(with(base(), "env", json!("Prod")), "`env` must match");
        check_err::<CreateParams>(
            with(base(), "due_date", json!("2026-02-30")),
            "`due_date` must be a calendar date",
        );
        check_err::<CreateParams>(with(base(), "meta", json!({"a": "\u{0}"})), "U+0000");
        check_err::<CreateParams>(with(base(), "title", json!("x\u{0}")), "U+0000");
    }

    #[test]
    fn upsert_parses() {
        let p: UpsertParams = parse(json!({"dedupe_key": "k", "title": "t"}));
        assert_eq!(
            (p.dedupe_key.as_deref(), p.title.as_deref()),
            (Some("k"), Some("t"))
        );
        let p: UpsertParams = parse(json!({"id": "bl_000000000001"}));
        assert_eq!(p.id.as_deref(), Some("bl_000000000001"));
        check_err::<UpsertParams>(json!({"title": "t"}), "needs `id` or `dedupe_key`");
        check_err::<UpsertParams>(json!({"id": "bl_1"}), "`id` must match ^bl_[0-9a-f]{12}$");
        check_err::<UpsertParams>(
            json!({"id": "bl_000000000001", "status": "done"}),
            "unknown parameter `status` for `upsert`",
        );
        check_err::<UpsertParams>(
            json!({"dedupe_key": "k", "title": ""}),
            "`title` must be 1..200",
        );
        let missing = UpsertParams {
            dedupe_key: Some("k".into()),
            title: Some("t".into()),
            ..Default::default()
        }
        .to_create()
        .map(|_| ())
        .unwrap_err();
        assert!(
            missing
                .message
                .contains("missing: `env`, `service`, `category`"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn small_actions() {
        let g: GetParams = parse(json!({"id": "bl_000000000001"}));
        assert!(!g.include_events);
        let g: GetParams = parse(json!({"id": "bl_000000000001", "include_events": true}));
        assert!(g.include_events);
        check_err::<GetParams>(
            json!({"id": "bl_000000000001", "include_events": "yes"}),
            "`include_events` must be a boolean, got string",
        );
        check_err::<GetParams>(json!({}), "missing required parameter `id` for `get`");
        check_err::<GetParams>(json!({"id": 7}), "`id` must be a string, got number");

        let e: EventsParams = parse(json!({"id": "bl_000000000001"}));
        assert_eq!(e.limit, 100);
        let e: EventsParams = parse(json!({"id": "bl_000000000001", "limit": 1000}));
        assert_eq!(e.limit, 1000);
        check_err::<EventsParams>(
            json!({"id": "bl_000000000001", "limit": 0}),
            "`limit` must be between 1 and 1000, got 0",
        );
        check_err::<EventsParams>(
            json!({"id": "bl_000000000001", "limit": 1001}),
            "between 1 and 1000, got 1001",
        );
        check_err::<EventsParams>(
            json!({"id": "bl_000000000001", "limit": -1}),
            "`limit` must be a non-negative integer, got number",
        );
        check_err::<EventsParams>(
            json!({"id": "bl_000000000001", "limit": 1.5}),
            "`limit` must be a non-negative integer",
        );

        let s: SetStatusParams =
            parse(json!({"id": "bl_000000000001", "status": "done", "comment": "ok"}));
        assert_eq!((s.status, s.comment.as_deref()), (Status::Done, Some("ok")));
        check_err::<SetStatusParams>(
            json!({"id": "bl_000000000001", "status": "cancelled"}),
            "with one L",
        );
        check_err::<SetStatusParams>(
            json!({"id": "bl_000000000001"}),
            "missing required parameter `status`",
        );
        check_err::<SetStatusParams>(
            json!({"id": "bl_000000000001", "status": "done", "comment": "\u{0}"}),
            "`comment` must not contain U+0000",
        );

        let a: AddCommentParams = parse(json!({"id": "bl_000000000001", "message": "hi"}));
        assert_eq!(a.message, "hi");
        check_err::<AddCommentParams>(
            json!({"id": "bl_000000000001", "message": ""}),
            "`message` must be 1..4000",
        );
        check_err::<AddCommentParams>(
            json!({"id": "bl_000000000001", "message": "a\u{0}"}),
            "`message` must not contain U+0000",
        );
        check_err::<AddCommentParams>(
            json!({"id": "bl_000000000001", "message": "m", "actor": "x"}),
            "unknown parameter `actor` for `add_comment`; allowed: id, message",
        );
    }

    #[test]
    fn env_only_and_cleanup() {
        let d: DashboardParams = parse(json!({}));
        assert_eq!(d.env, "prod");
        let d: DashboardParams = parse(json!({"env": null}));
        assert_eq!(d.env, "prod");
        let w: WeeklyParams = parse(json!({"env": "staging"}));
        assert_eq!(w.env, "staging");
        let dl: DailyParams = parse(json!({"env": "dev"}));
        assert_eq!(dl.env, "dev");
        check_err::<DashboardParams>(json!({"env": "Prod"}), "`env` must match");
        check_err::<WeeklyParams>(json!({"env": 1}), "`env` must be a string, got number");
        check_err::<DailyParams>(
            json!({"week": "2026-48"}),
            "unknown parameter `week` for `auto_generate_daily`; allowed: env",
        );
        check_err::<DashboardParams>(
            json!({"limit": 3}),
            "unknown parameter `limit` for `dashboard`; allowed: env",
        );

        let c: CleanupParams = parse(json!({}));
        assert_eq!(
            c,
            CleanupParams {
                retention_days: None,
                dry_run: false
            }
        );
        let c: CleanupParams = parse(json!({"retention_days": 0, "dry_run": true}));
        assert_eq!((c.retention_days, c.dry_run), (Some(0), true));
        check_err::<CleanupParams>(
            json!({"retention_days": -1}),
            "`retention_days` must be a non-negative integer, got number",
        );
        check_err::<CleanupParams>(
            json!({"retention_days": 1.5}),
            "`retention_days` must be a non-negative integer",
        );
        check_err::<CleanupParams>(
            json!({"retention_days": "30"}),
            "`retention_days` must be a non-negative integer, got string",
        );
        check_err::<CleanupParams>(
            json!({"retention_days": 5_000_000_000u64}),
            "`retention_days` must be at most 4294967295, got 5000000000",
        );
        check_err::<CleanupParams>(
            json!({"dry_run": "yes"}),
            "`dry_run` must be a boolean, got string",
        );
        check_err::<CleanupParams>(
            json!({"retention": 3}),
            "unknown parameter `retention` for `cleanup`; allowed: retention_days, dry_run",
        );
    }

    #[test]
    fn list_query() {
        let q: ListQuery = parse(json!({}));
        assert_eq!(q, ListQuery::default());
        let q: ListQuery = parse(json!({"status": "open"}));
        assert_eq!(q.status, [Status::Open]);
        let q: ListQuery = parse(json!({"status": ["open", "blocked", "open"]}));
        assert_eq!(q.status, [Status::Open, Status::Blocked]);
        let q: ListQuery = parse(json!({"status": "open, in_progress"}));
        assert_eq!(q.status, [Status::Open, Status::InProgress]);
        let q: ListQuery = parse(json!({
            "env": "prod", "priority": "P1", "service": "gw", "owner": "cto", "category": "refactor",
            "due_before": "2026-04-01", "overdue": false, "limit": 5, "offset": 10, "status": null
        }));
        assert_eq!((q.limit, q.offset, q.overdue), (5, 10, Some(false)));
        assert_eq!(q.priority, Some(Priority::P1));
        check_err::<ListQuery>(json!({"status": "cancelled"}), "with one L");
        check_err::<ListQuery>(
            json!({"status": 1}),
            "`status` must be a string or a list of strings, got number",
        );
        check_err::<ListQuery>(json!({"status": [1]}), "`status[0]` must be a string");
        check_err::<ListQuery>(
            json!({"limit": 0}),
            "`limit` must be between 1 and 1000, got 0",
        );
        check_err::<ListQuery>(json!({"limit": 1001}), "`limit` must be between 1 and 1000");
        check_err::<ListQuery>(
            json!({"offset": -3}),
            "`offset` must be a non-negative integer",
        );
        // Past the limit: the message says the limit, on every platform.
        check_err::<ListQuery>(
            json!({"offset": 99_999_999_999u64}),
            "`offset` must be between 0 and 4294967295, got 99999999999",
        );
        let q: ListQuery = parse(json!({"offset": 4_294_967_295u64}));
        assert_eq!(q.offset, MAX_OFFSET);
        check_err::<ListQuery>(
            json!({"limit": 99_999_999_999u64}),
            "`limit` must be between 1 and 1000, got 99999999999",
        );
        check_err::<ListQuery>(
            json!({"overdue": "true"}),
            "`overdue` must be a boolean, got string",
        );
        check_err::<ListQuery>(
            json!({"due_before": "tomorrow"}),
            "`due_before` must be a calendar date",
        );
        check_err::<ListQuery>(json!({"env": "PROD"}), "`env` must match");
        check_err::<ListQuery>(json!({"sort": "id"}), "unknown parameter `sort` for `list`");
    }
}
