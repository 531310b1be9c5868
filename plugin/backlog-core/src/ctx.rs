//! [`Ctx`]: everything an action needs besides the store and its params (time, ids, the
//! actor, the policy, the reports grant, the right to reserved dedupe keys), and the small
//! JSON helpers the actions share. An event's actor comes only from here, never from params.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::digest::Reports;
use crate::error::Error;
use crate::ids::{self, Entropy};
use crate::model::{Event, EventType};
use crate::policy::Policy;
use crate::time;
use crate::validate;

type Result<T> = std::result::Result<T, Error>;

/// Everything an action needs besides the store and its params.
pub struct Ctx<'a> {
    /// The authenticated agent id; becomes every event's `actor`.
    pub actor: &'a str,
    /// The current time (pinned in tests).
    pub now: DateTime<Utc>,
    /// The backlog policy in force.
    pub policy: &'a Policy,
    /// Source of item and event ids.
    pub entropy: &'a mut dyn Entropy,
    /// Read access to the reports directory, when this call was granted it (generation
    /// needs it; without it generation fails with `forbidden`).
    pub reports: Option<&'a mut dyn Reports>,
    /// Whether the caller may create items with a dedupe key in the generators' namespace
    /// ([`is_reserved_key`]): it holds [`RESERVED_KEYS_ENTITLEMENT`]. Default false.
    pub reserved_keys: bool,
}

/// The entitlement that lets `create`/`upsert` use a dedupe key in the generators' namespace.
pub const RESERVED_KEYS_ENTITLEMENT: &str = "tools.backlog.admin";

impl<'a> Ctx<'a> {
    /// A context without access to the reports directory.
    pub fn new(
        actor: &'a str,
        now: DateTime<Utc>,
        policy: &'a Policy,
        entropy: &'a mut dyn Entropy,
    ) -> Self {
        Ctx {
            actor,
            now,
            policy,
            entropy,
            reports: None,
            reserved_keys: false,
        }
    }

    /// This context with the caller's right to use reserved dedupe keys set.
    pub fn with_reserved_keys(mut self, allowed: bool) -> Self {
        self.reserved_keys = allowed;
        self
    }

    /// `forbidden` unless this caller may give an item the dedupe key `key`.
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        if self.reserved_keys || !is_reserved_key(self.policy, key) {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "dedupe_key {} is in the namespace of generated items (`{}:…`); only callers holding {RESERVED_KEYS_ENTITLEMENT} may create items there",
            validate::shown(key),
            self.policy.dedupe.key_prefix
        )))
    }

    /// This context with read access to the reports directory through `reports`.
    pub fn with_reports(mut self, reports: &'a mut dyn Reports) -> Self {
        self.reports = Some(reports);
        self
    }

    /// `now` in the stored timestamp form.
    pub fn ts(&self) -> String {
        time::format_ts(self.now)
    }

    /// Today (UTC) as `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        time::today(self.now)
    }

    /// A new event of `kind` on `item_id` at `ts`, by this context's actor.
    pub fn event(
        &mut self,
        item_id: &str,
        ts: &str,
        kind: EventType,
        message: String,
        meta: Map<String, Value>,
    ) -> Result<Event> {
        // The actor comes from the host, not the caller: a bad one is a host bug.
        validate::actor(self.actor)
            .map_err(|e| Error::internal(format!("call context: {}", e.message)))?;
        Ok(Event {
            id: ids::new_event_id(self.entropy),
            item_id: item_id.to_owned(),
            ts: ts.to_owned(),
            kind,
            actor: self.actor.to_owned(),
            message,
            meta,
        })
    }
}

pub(crate) fn to_json<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(serialize_error)
}

/// `t` as JSON text, without a `Value` tree in between.
pub(crate) fn to_text<T: Serialize>(t: &T) -> Result<String> {
    serde_json::to_string(t).map_err(serialize_error)
}

fn serialize_error(e: serde_json::Error) -> Error {
    Error::internal(format!("cannot serialize result: {e}"))
}

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Whether `key` is in the generators' namespace (`{key_prefix}:…`, every key
/// [`crate::generate::dedupe_key`] makes): creating items there needs
/// [`RESERVED_KEYS_ENTITLEMENT`].
pub fn is_reserved_key(policy: &Policy, key: &str) -> bool {
    key.strip_prefix(policy.dedupe.key_prefix.as_str())
        .is_some_and(|rest| rest.starts_with(':'))
}
