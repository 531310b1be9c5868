//! The digests generation reads (`ops/reports/platform/*.json`, `ops/reports/risk/*.json`):
//! parsed, validated, and turned into backlog items and the generation's JSON report.

use std::collections::BTreeMap;

use backlog_core::actions::{Ctx, execute};
use backlog_core::digest::{self, Reports};
use backlog_core::mem::MemStore;
use backlog_core::policy::Policy;
use serde_json::{Value, json};

use crate::{Counter, now};

/// An in-memory reports directory.
#[derive(Default)]
struct MemReports(BTreeMap<String, String>);

impl Reports for MemReports {
    fn list(&mut self, dir: &str) -> Result<Vec<String>, backlog_core::Error> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        Ok(names)
    }

    fn read(&mut self, path: &str) -> Result<String, backlog_core::Error> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| backlog_core::Error::not_found(format!("{path}: no such file")))
    }
}

/// Runs generation `action` for `env` over `reports`; `internal` or a panic is a bug.
fn generate(
    store: &mut MemStore,
    reports: &mut MemReports,
    action: &str,
    env: &str,
) -> Option<Value> {
    // Daily generation is off by default: on here, so both kinds run.
    let policy = Policy::from_json_str(r#"{"generation":{"daily_from_risk_digest":true}}"#)
        .expect("the policy parses");
    let mut entropy = Counter(11);
    let mut ctx = Ctx::new("fuzz", now(), &policy, &mut entropy)
        .with_reports(reports)
        .with_reserved_keys(true);
    match execute(store, action, &json!({ "env": env }), &mut ctx) {
        Ok(v) => {
            let _ = serde_json::to_string(&v).expect("the report prints");
            Some(v)
        }
        Err(e) => {
            assert!(
                e.code != backlog_core::ErrorCode::Internal,
                "{action} {env}: internal error {}",
                e.message
            );
            None
        }
    }
}

/// Runs `action` twice over a reports directory holding `text` at `path`: the first run's
/// report names the digest; the second creates and changes nothing.
fn generate_twice(path: &str, text: &str, action: &str, env: &str) {
    let mut reports = MemReports::default();
    reports.0.insert(path.to_owned(), text.to_owned());
    let mut store = MemStore::new();
    let Some(first) = generate(&mut store, &mut reports, action, env) else {
        return;
    };
    if first.get("skipped").is_some() {
        return;
    }
    assert_eq!(
        first["digest"],
        json!(digest::operator_path(path)),
        "{first}"
    );
    let second = generate(&mut store, &mut reports, action, env)
        .unwrap_or_else(|| panic!("{action} ran once, then failed"));
    assert_eq!(
        (&second["created"], &second["updated"]),
        (&json!(0), &json!(0)),
        "a second run over the same digest: {second}"
    );
}

/// A platform or risk digest (JSON text): parsing never panics; a digest that parses can be
/// used: weekly (or daily) generation over it answers without `internal`, its JSON report
/// names the digest, and a second run over it creates and updates nothing.
pub fn check_digest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = digest::parse_platform("platform/2026-48.json", text) {
        let path = format!("platform/{}.json", d.week);
        generate_twice(&path, text, "auto_generate_weekly", &d.env);
    }
    if let Ok(d) = digest::parse_risk("risk/2026-11-27.json", text) {
        let path = format!("risk/{}.json", d.date);
        generate_twice(&path, text, "auto_generate_daily", &d.env);
    }
}
