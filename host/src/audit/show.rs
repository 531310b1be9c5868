//! `backlog-bridge audit show`: the lines that match every given filter, oldest first.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::files;

/// The filters of `audit show` (each `None` matches everything).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub tool: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
}

/// `--since`: an RFC 3339 time or a `YYYY-MM-DD` day (its start, UTC).
pub fn parse_since(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
        })
}

impl Filter {
    fn matches(&self, v: &Value) -> bool {
        let eq = |key: &str, want: &Option<String>| {
            want.as_deref().is_none_or(|w| v[key].as_str() == Some(w))
        };
        let after = self.since.is_none_or(|since| {
            v["ts"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= since)
        });
        after
            && eq("actor", &self.actor)
            && eq("tool", &self.tool)
            && eq("action", &self.action)
            && eq("decision", &self.decision)
    }
}

/// Every matching line, parsed.
pub fn show(dir: &Path, filter: &Filter) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for file in files(dir)? {
        for line in std::fs::read_to_string(&file)?.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && filter.matches(&v)
            {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// The lines as a table.
pub fn table(lines: &[Value]) -> String {
    let mut out = String::from(
        "TS                          FACE       ACTOR      TOOL.ACTION               DECISION OUTCOME\n",
    );
    for v in lines {
        let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
        let what = match (v["tool"].as_str(), v["action"].as_str()) {
            (Some(t), Some(a)) => format!("{t}.{a}"),
            _ => s("event"),
        };
        out.push_str(&format!(
            "{:<27} {:<10} {:<10} {:<25} {:<8} {}\n",
            s("ts"),
            s("face"),
            s("actor"),
            what,
            s("decision"),
            s("outcome")
        ));
    }
    out
}
