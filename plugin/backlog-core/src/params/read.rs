//! Params of the actions that read (`get`, `events`, `list`, `dashboard`) and of the admin
//! actions (`auto_generate_weekly`, `auto_generate_daily`, `cleanup`).

use serde_json::Value;

use super::contract::*;
use super::fields::{Fields, object, wrong};
use crate::error::Error;
use crate::list::{ListQuery, MAX_LIMIT, MAX_OFFSET};
use crate::model::Status;
use crate::policy::Policy;
use crate::validate as v;

type Result<T = ()> = std::result::Result<T, Error>;

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
