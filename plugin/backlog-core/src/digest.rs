//! The digests generation reads (`docs/actions.md`): the weekly platform digest
//! `platform/YYYY-WW.json` and the daily risk digest `risk/YYYY-MM-DD.json`, under the reports
//! directory.
//!
//! Owns lookup (env subdirectory first, latest by the token in the file name, digests of
//! another env skipped), shape validation with errors naming file and field, and the paths
//! shown to callers. Owns no I/O: the directory is reached only through [`Reports`], which the
//! component implements over its read-only preopen and tests implement in memory.
//!
//! Security: paths handed to [`Reports`] are built only from fixed parts, a validated `env`
//! (`^[a-z0-9][a-z0-9_-]{0,31}$`) and names returned by [`Reports::list`] that match the
//! digest name pattern, so a caller cannot steer a read outside `platform/` or `risk/`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

use crate::error::Error;
use crate::params::type_name;
use crate::policy::Band;
use crate::time;
use crate::validate::{self, shown};

/// Largest digest file generation reads (bytes): a digest names a few hundred services.
pub const DIGEST_MAX_BYTES: u64 = 16 << 20;

/// Read access to the reports directory (`ops/reports/` on the host).
///
/// Paths are relative to that directory and use `/`: `platform`, `platform/prod`,
/// `platform/2026-48.json`. Implementations map a sandbox refusal to `forbidden` and other
/// failures to `internal`/`unavailable`.
pub trait Reports {
    /// The entry names (not paths) directly inside `dir`, files and directories alike, in any
    /// order. A directory that does not exist lists as empty (not an error).
    fn list(&mut self, dir: &str) -> Result<Vec<String>, Error>;
    /// The whole text of the file at `path`.
    fn read(&mut self, path: &str) -> Result<String, Error>;
    /// Receives one log line for the operator (a skipped digest, a suspicious file). The
    /// default drops it; the component writes it to stderr, which the host logs.
    fn log(&mut self, _line: &str) {}
}

/// How the reports directory appears in paths shown to callers: `ops/reports/`.
pub const REPORTS_PREFIX: &str = "ops/reports/";

/// The operator-relative form of a report-relative path: `platform/2026-48.json` →
/// `ops/reports/platform/2026-48.json`.
pub fn operator_path(rel: &str) -> String {
    format!("{REPORTS_PREFIX}{rel}")
}

/// One service of a platform digest.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformService {
    /// Service name (`^[a-z0-9][a-z0-9._-]{0,63}$`).
    pub service: String,
    /// As written in the digest (integer or decimal).
    pub score: Number,
    /// Risk band.
    pub band: Band,
    /// Default false.
    pub requires_arch_review: bool,
    /// Signal name → value; a signal not listed counts as 0.
    pub signals: BTreeMap<String, u64>,
    /// Kind → ids. Default empty.
    pub evidence_refs: BTreeMap<String, Vec<String>>,
}

impl PlatformService {
    /// The value of signal `name` (0 if absent).
    pub fn signal(&self, name: &str) -> u64 {
        self.signals.get(name).copied().unwrap_or(0)
    }
}

/// A weekly platform digest (`docs/actions.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformDigest {
    /// ISO week `YYYY-WW`.
    pub week: String,
    /// Environment the digest describes.
    pub env: String,
    /// When the digest was produced (RFC 3339, as written).
    pub generated_at: String,
    /// One entry per service, names unique.
    pub services: Vec<PlatformService>,
}

/// One service of a risk digest.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskService {
    /// Service name.
    pub service: String,
    /// As written in the digest.
    pub score: Number,
    /// Risk band.
    pub band: Band,
}

/// A daily risk digest (`docs/actions.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct RiskDigest {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Environment the digest describes.
    pub env: String,
    /// One entry per service, names unique.
    pub services: Vec<RiskService>,
}

/// A digest found by lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    /// The parsed, validated digest.
    pub digest: T,
    /// Report-relative path (`platform/2026-48.json`).
    pub path: String,
    /// Log lines about files skipped or doubted on the way (already sent to
    /// [`Reports::log`]).
    pub warnings: Vec<String>,
}

impl<T> Found<T> {
    /// The path as callers see it (`ops/reports/platform/2026-48.json`).
    pub fn operator_path(&self) -> String {
        operator_path(&self.path)
    }
}

/// The week token of a platform digest file name: `2026-48.json` → `2026-48`; `None` for any
/// other name (`2026-48.md`, `latest.json`, `prod`, `2026-54.json`).
pub fn week_token(name: &str) -> Option<&str> {
    let token = name.strip_suffix(".json")?;
    time::parse_week(token).map(|_| token)
}

/// The date token of a risk digest file name: `2026-11-25.json` → `2026-11-25`.
pub fn date_token(name: &str) -> Option<&str> {
    let token = name.strip_suffix(".json")?;
    time::parse_date(token).map(|_| token)
}

/// The latest platform digest of `env`: `platform/{env}/` first, then `platform/`. `Ok(None)`
/// when neither holds one of this env. A malformed candidate is `invalid_input` naming file
/// and field (lookup stops there rather than silently using an older week).
pub fn find_platform(
    reports: &mut dyn Reports,
    env: &str,
) -> Result<Option<Found<PlatformDigest>>, Error> {
    find(reports, "platform", env, week_token, |path, v| {
        parse_platform_value(path, v)
    })
    .map(|found| {
        found.map(|mut f| {
            let file_week = f.path.rsplit('/').next().and_then(week_token);
            if file_week.is_some_and(|w| w != f.digest.week) {
                let line = format!(
                    "backlog digest: {} holds week {}; using the week in the file",
                    operator_path(&f.path),
                    f.digest.week
                );
                reports.log(&line);
                f.warnings.push(line);
            }
            f
        })
    })
}

/// The latest risk digest of `env`: `risk/{env}/` first, then `risk/`; as [`find_platform`].
pub fn find_risk(reports: &mut dyn Reports, env: &str) -> Result<Option<Found<RiskDigest>>, Error> {
    find(reports, "risk", env, date_token, parse_risk_value)
}

/// Parses and validates platform digest text; `path` (report-relative) names the file in
/// errors.
pub fn parse_platform(path: &str, text: &str) -> Result<PlatformDigest, Error> {
    parse_platform_value(path, &json(path, text)?)
}

/// Parses and validates risk digest text; `path` (report-relative) names the file in errors.
pub fn parse_risk(path: &str, text: &str) -> Result<RiskDigest, Error> {
    parse_risk_value(path, &json(path, text)?)
}

fn json(path: &str, text: &str) -> Result<Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid_input(format!("{}: not valid JSON: {e}", operator_path(path))))
}

fn find<T>(
    reports: &mut dyn Reports,
    kind: &str,
    env: &str,
    token: fn(&str) -> Option<&str>,
    parse: fn(&str, &Value) -> Result<T, Error>,
) -> Result<Option<Found<T>>, Error> {
    validate::env(env)?;
    let mut warnings = Vec::new();
    for dir in [format!("{kind}/{env}"), kind.to_owned()] {
        let names: BTreeSet<String> = reports
            .list(&dir)?
            .into_iter()
            .filter(|n| token(n).is_some())
            .collect();
        // Fixed-width tokens: name order is token order; latest first.
        for name in names.iter().rev() {
            let path = format!("{dir}/{name}");
            let text = reports.read(&path)?;
            let value = json(&path, &text)?;
            if let Some(other) = value.get("env").and_then(Value::as_str)
                && other != env
            {
                let line = format!(
                    "backlog digest: skipping {}: its env is {}, not {}",
                    operator_path(&path),
                    shown(other),
                    shown(env)
                );
                reports.log(&line);
                warnings.push(line);
                continue;
            }
            let digest = parse(&path, &value)?;
            return Ok(Some(Found {
                digest,
                path,
                warnings,
            }));
        }
    }
    Ok(None)
}

/// Field access that names the file and the field in every error.
struct At<'a> {
    file: String,
    obj: &'a Map<String, Value>,
    /// Field prefix, e.g. `services[3].`.
    prefix: String,
}

impl<'a> At<'a> {
    fn root(path: &str, v: &'a Value) -> Result<Self, Error> {
        let file = operator_path(path);
        match v {
            Value::Object(obj) => Ok(At {
                file,
                obj,
                prefix: String::new(),
            }),
            other => Err(Error::invalid_input(format!(
                "{file}: expected a JSON object, got {}",
                type_name(other)
            ))),
        }
    }

    fn err(&self, field: &str, message: impl std::fmt::Display) -> Error {
        Error::invalid_input(format!("{}: {}{field}: {message}", self.file, self.prefix))
    }

    /// The value of `field`; `null` counts as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn req(&self, field: &str) -> Result<&'a Value, Error> {
        self.get(field).ok_or_else(|| self.err(field, "missing"))
    }

    fn string(&self, field: &str) -> Result<&'a str, Error> {
        match self.req(field)? {
            Value::String(s) => Ok(s),
            other => Err(self.err(
                field,
                format!("expected a string, got {}", type_name(other)),
            )),
        }
    }

    fn env(&self) -> Result<String, Error> {
        let s = self.string("env")?;
        validate::env(s).map_err(|_| {
            self.err(
                "env",
                format!("expected {}, got {}", validate::ENV_PATTERN, shown(s)),
            )
        })?;
        Ok(s.to_owned())
    }

    fn service(&self) -> Result<String, Error> {
        let s = self.string("service")?;
        validate::service(s).map_err(|_| {
            self.err(
                "service",
                format!("expected {}, got {}", validate::SERVICE_PATTERN, shown(s)),
            )
        })?;
        Ok(s.to_owned())
    }

    fn score(&self) -> Result<Number, Error> {
        match self.req("score")? {
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(n.clone()),
            other => Err(self.err(
                "score",
                format!("expected a number, got {}", type_name(other)),
            )),
        }
    }

    fn band(&self) -> Result<Band, Error> {
        let expected = "expected one of low, medium, high, critical";
        match self.req("band")? {
            Value::String(s) => Band::parse(s)
                .ok_or_else(|| self.err("band", format!("{expected}, got {}", shown(s)))),
            other => Err(self.err("band", format!("{expected}, got {}", type_name(other)))),
        }
    }

    /// The list at `field`, each element an object, as `At`s with prefix `field[i].`.
    fn objects(&self, field: &str) -> Result<Vec<At<'a>>, Error> {
        let Value::Array(list) = self.req(field)? else {
            return Err(self.err(field, "expected a list"));
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                let prefix = format!("{}{field}[{i}].", self.prefix);
                match v {
                    Value::Object(obj) => Ok(At {
                        file: self.file.clone(),
                        obj,
                        prefix,
                    }),
                    other => Err(Error::invalid_input(format!(
                        "{}: {}{field}[{i}]: expected an object, got {}",
                        self.file,
                        self.prefix,
                        type_name(other)
                    ))),
                }
            })
            .collect()
    }

    /// Rejects a second entry for a service already seen.
    fn unique(&self, seen: &mut BTreeMap<String, String>, service: &str) -> Result<(), Error> {
        let here = self.prefix.trim_end_matches('.').to_owned();
        if let Some(first) = seen.insert(service.to_owned(), here) {
            return Err(self.err(
                "service",
                format!("duplicate service {} (also in {first})", shown(service)),
            ));
        }
        Ok(())
    }
}

fn parse_platform_value(path: &str, v: &Value) -> Result<PlatformDigest, Error> {
    let at = At::root(path, v)?;
    let week = at.string("week")?;
    if time::parse_week(week).is_none() {
        return Err(at.err(
            "week",
            format!("expected an ISO week YYYY-WW, got {}", shown(week)),
        ));
    }
    let env = at.env()?;
    let generated_at = at.string("generated_at")?;
    if time::parse_ts(generated_at).is_none() {
        return Err(at.err(
            "generated_at",
            format!(
                "expected an RFC 3339 timestamp, got {}",
                shown(generated_at)
            ),
        ));
    }
    let mut seen = BTreeMap::new();
    let mut services = Vec::new();
    for s in at.objects("services")? {
        let service = s.service()?;
        s.unique(&mut seen, &service)?;
        let requires_arch_review = match s.get("requires_arch_review") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(s.err(
                    "requires_arch_review",
                    format!("expected true or false, got {}", type_name(other)),
                ));
            }
        };
        let mut signals = BTreeMap::new();
        match s.get("signals") {
            None => {}
            Some(Value::Object(m)) => {
                for (name, value) in m {
                    let field = format!("signals.{name}");
                    if name.is_empty() || name.contains('\0') {
                        return Err(
                            s.err("signals", "signal names must be non-empty, without U+0000")
                        );
                    }
                    let n = value.as_u64().ok_or_else(|| {
                        s.err(
                            &field,
                            format!("expected a non-negative integer, got {value}"),
                        )
                    })?;
                    signals.insert(name.clone(), n);
                }
            }
            Some(other) => {
                return Err(s.err(
                    "signals",
                    format!("expected an object, got {}", type_name(other)),
                ));
            }
        }
        let mut evidence_refs = BTreeMap::new();
        match s.get("evidence_refs") {
            None => {}
            Some(Value::Object(m)) => {
                for (kind, ids) in m {
                    let field = format!("evidence_refs.{kind}");
                    let Value::Array(list) = ids else {
                        return Err(s.err(&field, "expected a list of strings"));
                    };
                    let mut out = Vec::with_capacity(list.len());
                    for (j, id) in list.iter().enumerate() {
                        match id {
                            Value::String(x) if !x.contains('\0') => out.push(x.clone()),
                            Value::String(_) => {
                                return Err(
                                    s.err(&format!("{field}[{j}]"), "must not contain U+0000")
                                );
                            }
                            other => {
                                return Err(s.err(
                                    &format!("{field}[{j}]"),
                                    format!("expected a string, got {}", type_name(other)),
                                ));
                            }
                        }
                    }
                    if kind.contains('\0') {
                        return Err(s.err("evidence_refs", "kinds must not contain U+0000"));
                    }
                    evidence_refs.insert(kind.clone(), out);
                }
                // The limits of stored items apply to what generation would store.
                crate::validate::evidence_refs(&evidence_refs)
                    .map_err(|e| s.err("evidence_refs", e.message))?;
            }
            Some(other) => {
                return Err(s.err(
                    "evidence_refs",
                    format!("expected an object, got {}", type_name(other)),
                ));
            }
        }
        services.push(PlatformService {
            service,
            score: s.score()?,
            band: s.band()?,
            requires_arch_review,
            signals,
            evidence_refs,
        });
    }
    Ok(PlatformDigest {
        week: week.to_owned(),
        env,
        generated_at: generated_at.to_owned(),
        services,
    })
}

fn parse_risk_value(path: &str, v: &Value) -> Result<RiskDigest, Error> {
    let at = At::root(path, v)?;
    let date = at.string("date")?;
    if time::parse_date(date).is_none() {
        return Err(at.err(
            "date",
            format!("expected a date YYYY-MM-DD, got {}", shown(date)),
        ));
    }
    let env = at.env()?;
    let mut seen = BTreeMap::new();
    let mut services = Vec::new();
    for s in at.objects("services")? {
        let service = s.service()?;
        s.unique(&mut seen, &service)?;
        services.push(RiskService {
            service,
            score: s.score()?,
            band: s.band()?,
        });
    }
    Ok(RiskDigest {
        date: date.to_owned(),
        env,
        services,
    })
}

#[cfg(test)]
pub(crate) mod tests;
