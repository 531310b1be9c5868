//! What every action's params share: the keys each action accepts and the [`Params`] trait
//! the typed structs implement (a leaf: `read.rs` and `write.rs` build on it).

use serde_json::Value;

use crate::error::Error;
use crate::policy::Policy;

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
