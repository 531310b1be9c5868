//! Params of the actions that write items: `create`, `upsert`, `set_status`, `add_comment`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::contract::*;
use super::fields::object;
use crate::error::Error;
use crate::model::{Priority, Source, Status};
use crate::policy::Policy;
use crate::validate as v;

type Result<T = ()> = std::result::Result<T, Error>;

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
