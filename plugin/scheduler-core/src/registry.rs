//! `ops/task_registry.yml` (`docs/scheduler.md`): the one source of truth for scheduled jobs.
//!
//! Validation on load: YAML shape (unknown keys refused), ids, cron syntax, `retryable`
//! (true or false, default false), duplicate ids,
//! `after` naming unknown jobs or forming a cycle, and tools/actions/agents unknown to the RBAC
//! matrix. A tool the matrix knows but no plugin provides is *not installed*: valid, and its
//! jobs are skipped with that reason when they come due.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cron::{CronError, Schedule};

/// The registry's path under the ops dir.
pub const FILE: &str = "task_registry.yml";

/// The agent a job acts as when it names none.
pub const DEFAULT_AGENT: &str = "scheduler";

/// A registry that could not be loaded: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}{message}")]
pub struct RegistryError {
    /// The registry file as the operator named it.
    pub file: String,
    /// `jobs[2] (weekly_backlog_generate).schedule: ` or empty.
    pub location: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    jobs: Vec<RawJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    id: String,
    schedule: String,
    tool: String,
    action: String,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    retryable: Option<Value>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    log: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// One validated job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub schedule: Schedule,
    pub tool: String,
    pub action: String,
    /// The params object.
    pub params: Map<String, Value>,
    /// The agent whose RBAC applies (default `scheduler`).
    pub agent: String,
    pub enabled: bool,
    /// Whether a run whose scheduler died (its claim's lease expired while `running`) runs
    /// again once (default false: recorded `failed` only). Only for jobs that are safe to
    /// run twice.
    pub retryable: bool,
    /// Jobs whose runs of the same day must have finished before this one starts.
    pub after: Vec<String>,
    /// File name under `/var/log/daarion/` the cron line appends to.
    pub log: String,
    pub description: String,
}

/// What the RBAC matrix and the installed plugins know, for validation.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `(tool, action)` pairs listed in the matrix.
    pub actions: BTreeSet<(String, String)>,
    /// Agents listed in the matrix.
    pub agents: BTreeSet<String>,
    /// Tools some loaded plugin provides.
    pub installed: BTreeSet<String>,
}

impl Catalog {
    /// Why `job` cannot run here, if its tool is not installed.
    pub fn not_installed(&self, job: &Job) -> Option<String> {
        (!self.installed.contains(&job.tool)).then(|| {
            format!(
                "tool `{}` is not installed (listed in the RBAC matrix, but no plugin provides it)",
                job.tool
            )
        })
    }
}

/// The validated registry, jobs in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub jobs: Vec<Job>,
}

impl Registry {
    /// Parses and validates `text` (the contents of `file`). With a catalog, also checks
    /// tools, actions and agents against the RBAC matrix.
    pub fn parse(
        file: &str,
        text: &str,
        catalog: Option<&Catalog>,
    ) -> Result<Registry, RegistryError> {
        let err = |location: String, message: String| RegistryError {
            file: file.to_owned(),
            location,
            message,
        };
        let raw: RawRegistry =
            serde_yaml_ng::from_str(text).map_err(|e| err(String::new(), e.to_string()))?;
        let mut jobs = Vec::with_capacity(raw.jobs.len());
        let mut seen = BTreeSet::new();
        for (i, r) in raw.jobs.into_iter().enumerate() {
            let at = |key: &str| format!("jobs[{i}] ({}).{key}: ", r.id);
            if !valid_id(&r.id) {
                return Err(err(
                    format!("jobs[{i}].id: "),
                    format!("{} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$", shown(&r.id)),
                ));
            }
            if !seen.insert(r.id.clone()) {
                return Err(err(at("id"), "duplicate job id".into()));
            }
            let schedule = Schedule::parse(&r.schedule)
                .map_err(|e: CronError| err(at("schedule"), format!("`{}`: {e}", r.schedule)))?;
            let params = match r.params {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m,
                Some(_) => return Err(err(at("params"), "must be a mapping".into())),
            };
            for reserved in ["tool", "action", "params"] {
                if params.contains_key(reserved) {
                    return Err(err(
                        at("params"),
                        format!("`{reserved}` is reserved by the request body"),
                    ));
                }
            }
            // Every value below reaches a root cron line (`cron render`): each is held to an
            // alphabet in which the shell and cron see nothing but text.
            for (key, value) in [("tool", &r.tool), ("action", &r.action)] {
                if !valid_name(value) {
                    return Err(err(
                        at(key),
                        format!("{} must match ^[A-Za-z0-9_.-]{{1,64}}$", shown(value)),
                    ));
                }
            }
            let log = r.log.unwrap_or_else(|| format!("{}.log", r.id));
            if !valid_log(&log) {
                return Err(err(
                    at("log"),
                    format!(
                        "{} must be a plain file name matching ^[A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}}$",
                        shown(&log)
                    ),
                ));
            }
            let description = r.description.unwrap_or_default();
            if let Some(bad) = description.chars().find(|c| c.is_control() || *c == '%') {
                return Err(err(
                    at("description"),
                    format!(
                        "must be one line without `%` or control characters (found {bad:?}): \
                         cron reads `%` and newlines in a cron line as line breaks"
                    ),
                ));
            }
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(err(
                    at("description"),
                    format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
                ));
            }
            let retryable = match r.retryable {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(other) => {
                    return Err(err(
                        at("retryable"),
                        format!("must be true or false, not `{other}`"),
                    ));
                }
            };
            let agent = r.agent.unwrap_or_else(|| DEFAULT_AGENT.into());
            if let Some(c) = catalog {
                if !c.actions.contains(&(r.tool.clone(), r.action.clone())) {
                    let tool_known = c.actions.iter().any(|(t, _)| *t == r.tool);
                    let what = if tool_known {
                        format!("action `{}.{}` is not in the RBAC matrix", r.tool, r.action)
                    } else {
                        format!("tool `{}` is not in the RBAC matrix", r.tool)
                    };
                    return Err(err(at(if tool_known { "action" } else { "tool" }), what));
                }
                if !c.agents.contains(&agent) {
                    return Err(err(
                        at("agent"),
                        format!("agent `{agent}` is not in the RBAC matrix"),
                    ));
                }
            }
            jobs.push(Job {
                id: r.id,
                schedule,
                tool: r.tool,
                action: r.action,
                params,
                agent,
                enabled: r.enabled.unwrap_or(true),
                retryable,
                after: r.after,
                log,
                description,
            });
        }
        for (i, job) in jobs.iter().enumerate() {
            for dep in &job.after {
                if !seen.contains(dep) {
                    return Err(err(
                        format!("jobs[{i}] ({}).after: ", job.id),
                        format!("unknown job `{dep}`"),
                    ));
                }
            }
        }
        let registry = Registry { jobs };
        registry.order().map_err(|cycle| {
            err(
                String::new(),
                format!("`after` forms a cycle: {}", cycle.join(" -> ")),
            )
        })?;
        Ok(registry)
    }

    /// The job called `id`.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// Job indices ordered so that every job comes after the jobs it names in `after`
    /// (otherwise file order); `Err` names a cycle.
    pub fn order(&self) -> Result<Vec<usize>, Vec<String>> {
        let index: BTreeMap<&str, usize> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.id.as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut state = vec![0u8; self.jobs.len()];
        let mut out = Vec::with_capacity(self.jobs.len());
        fn visit(
            i: usize,
            reg: &Registry,
            index: &BTreeMap<&str, usize>,
            state: &mut [u8],
            out: &mut Vec<usize>,
            stack: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            match state[i] {
                2 => return Ok(()),
                1 => {
                    let id = &reg.jobs[i].id;
                    let from = stack.iter().position(|s| s == id).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(id.clone());
                    return Err(cycle);
                }
                _ => {}
            }
            state[i] = 1;
            stack.push(reg.jobs[i].id.clone());
            for dep in &reg.jobs[i].after {
                if let Some(&d) = index.get(dep.as_str()) {
                    visit(d, reg, index, state, out, stack)?;
                }
            }
            stack.pop();
            state[i] = 2;
            out.push(i);
            Ok(())
        }
        for i in 0..self.jobs.len() {
            visit(i, self, &index, &mut state, &mut out, &mut Vec::new())?;
        }
        Ok(out)
    }
}

/// Longest job description (one comment line of the cron file).
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// A tool or action name: `[A-Za-z0-9_.-]{1,64}`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A log file name under the log directory: `[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}` (no path,
/// no hidden file, nothing a shell or cron would read as syntax).
fn valid_log(log: &str) -> bool {
    (1..=128).contains(&log.len())
        && !log.starts_with('.')
        && log
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A registry value quoted for an error message, control characters escaped.
fn shown(value: &str) -> String {
    format!("`{}`", value.escape_debug())
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Job {
    /// The `/v1/tools/execute` body: `{"tool","action", …params}` (params flat, `docs/http-api.md`).
    pub fn request_body(&self) -> Value {
        request_body(&self.tool, &self.action, &self.params)
    }
}

/// The `/v1/tools/execute` body for a tool call: params flat beside `tool` and `action`.
pub fn request_body(tool: &str, action: &str, params: &Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert("tool".into(), Value::String(tool.into()));
    body.insert("action".into(), Value::String(action.into()));
    for (k, v) in params {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests;
