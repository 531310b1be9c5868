//! Digest lookup and validation over an in-memory reports directory.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::error::ErrorCode;

/// An in-memory reports directory: report-relative path → file text. Records reads and logs.
#[derive(Debug, Default, Clone)]
pub(crate) struct MemReports {
    pub files: BTreeMap<String, String>,
    pub reads: Vec<String>,
    pub logs: Vec<String>,
}

impl MemReports {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, path: &str, text: impl Into<String>) -> &mut Self {
        self.files.insert(path.to_owned(), text.into());
        self
    }
}

impl Reports for MemReports {
    fn list(&mut self, dir: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        Ok(names)
    }

    fn read(&mut self, path: &str) -> Result<String, Error> {
        self.reads.push(path.to_owned());
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no file {path}")))
    }

    fn log(&mut self, line: &str) {
        self.logs.push(line.to_owned());
    }
}

/// A platform digest text.
pub(crate) fn platform(week: &str, env: &str, services: Value) -> String {
    json!({"week": week, "env": env, "generated_at": "2026-11-23T06:00:04Z", "services": services})
        .to_string()
}

/// A risk digest text.
pub(crate) fn risk(date: &str, env: &str, services: Value) -> String {
    json!({"date": date, "env": env, "services": services}).to_string()
}

fn gw() -> Value {
    json!([{"service": "gateway", "score": 82, "band": "critical"}])
}

#[track_caller]
fn check_platform(r: &mut MemReports, env: &str, want: Option<(&str, &str)>, logs: &[&str]) {
    let got = find_platform(r, env).map(|f| f.map(|f| (f.path.clone(), f.digest.week.clone())));
    let want = want.map(|(p, w)| (p.to_owned(), w.to_owned()));
    assert_eq!(got, Ok(want));
    assert_eq!(r.logs.len(), logs.len(), "{:?}", r.logs);
    for (line, frag) in r.logs.iter().zip(logs) {
        assert!(line.contains(frag), "{line:?} lacks {frag:?}");
    }
}

#[test]
fn lookup_prefers_env_dir_then_latest() {
    // Env subdirectory first, even when the top level has a later week.
    let mut r = MemReports::new();
    r.put(
        "platform/prod/2026-47.json",
        platform("2026-47", "prod", gw()),
    )
    .put("platform/2026-48.json", platform("2026-48", "prod", gw()));
    check_platform(
        &mut r,
        "prod",
        Some(("platform/prod/2026-47.json", "2026-47")),
        &[],
    );

    // Latest by week token; other names are ignored and never read.
    let mut r = MemReports::new();
    r.put("platform/2025-52.json", platform("2025-52", "prod", gw()))
        .put("platform/2026-09.json", platform("2026-09", "prod", gw()))
        .put("platform/2026-10.json", platform("2026-10", "prod", gw()))
        .put("platform/2026-11.md", "# not json")
        .put("platform/2026-54.json", "{")
        .put("platform/latest.json", "{")
        .put("platform/2026-12.json.bak", "{")
        .put(
            "platform/staging/2026-12.json",
            platform("2026-12", "staging", gw()),
        );
    check_platform(
        &mut r,
        "prod",
        Some(("platform/2026-10.json", "2026-10")),
        &[],
    );
    assert_eq!(r.reads, ["platform/2026-10.json"]);
    // Staging finds its own directory.
    check_platform(
        &mut r,
        "staging",
        Some(("platform/staging/2026-12.json", "2026-12")),
        &[],
    );

    // A digest of another env is skipped (logged) and the next-latest is tried.
    let mut r = MemReports::new();
    r.put(
        "platform/2026-10.json",
        platform("2026-10", "staging", gw()),
    )
    .put("platform/2026-09.json", platform("2026-09", "prod", gw()));
    check_platform(
        &mut r,
        "prod",
        Some(("platform/2026-09.json", "2026-09")),
        &["skipping ops/reports/platform/2026-10.json: its env is \"staging\", not \"prod\""],
    );

    // An env directory holding only other envs' digests falls back to the top level.
    let mut r = MemReports::new();
    r.put(
        "platform/prod/2026-11.json",
        platform("2026-11", "dev", gw()),
    )
    .put("platform/2026-08.json", platform("2026-08", "prod", gw()));
    check_platform(
        &mut r,
        "prod",
        Some(("platform/2026-08.json", "2026-08")),
        &["skipping ops/reports/platform/prod/2026-11.json"],
    );

    // Only other envs: nothing; missing directories: nothing.
    let mut r = MemReports::new();
    r.put(
        "platform/2026-10.json",
        platform("2026-10", "staging", gw()),
    );
    check_platform(&mut r, "prod", None, &["its env is \"staging\""]);
    check_platform(&mut MemReports::new(), "prod", None, &[]);

    // A file whose name and content disagree on the week: the content wins, with a warning.
    let mut r = MemReports::new();
    r.put("platform/2026-10.json", platform("2026-09", "prod", gw()));
    check_platform(
        &mut r,
        "prod",
        Some(("platform/2026-10.json", "2026-09")),
        &["holds week 2026-09"],
    );
    // The env is validated before it becomes part of a path.
    assert_eq!(
        find_platform(&mut MemReports::new(), "../x").map_err(|e| e.code),
        Err(ErrorCode::InvalidInput)
    );
}

#[test]
fn risk_lookup() {
    let mut r = MemReports::new();
    r.put("risk/2026-11-24.json", risk("2026-11-24", "prod", gw()))
        .put("risk/2026-11-25.json", risk("2026-11-25", "staging", gw()))
        .put("risk/2026-11-26.md", "x")
        .put("risk/2026-02-30.json", "{");
    let f = find_risk(&mut r, "prod").ok().flatten();
    assert_eq!(
        f.as_ref()
            .map(|f| (f.path.as_str(), f.digest.date.as_str())),
        Some(("risk/2026-11-24.json", "2026-11-24"))
    );
    assert_eq!(
        f.map(|f| f.operator_path()).as_deref(),
        Some("ops/reports/risk/2026-11-24.json")
    );
    assert_eq!(r.logs.len(), 1);
    r.put(
        "risk/prod/2026-11-01.json",
        risk("2026-11-01", "prod", gw()),
    );
    let f = find_risk(&mut r, "prod").ok().flatten();
    assert_eq!(f.map(|f| f.path), Some("risk/prod/2026-11-01.json".into()));
    assert_eq!(find_risk(&mut MemReports::new(), "prod"), Ok(None));
}

#[test]
fn parses_the_spec_example() {
    let text = r#"{ "week": "2026-48", "env": "prod", "generated_at": "2026-11-23T06:00:04Z",
      "services": [ { "service": "gateway", "score": 82, "band": "critical", "requires_arch_review": true,
                      "signals": { "recurrence_high_30d": 2, "recurrence_warn_30d": 1, "regressions_30d": 3,
                                   "escalations_30d": 2, "followups_created_30d": 4, "followups_overdue": 2,
                                   "drift_failures_30d": 0, "dependency_high_30d": 1, "brand_new_signal": 7 },
                      "evidence_refs": { "alerts": ["al_1"], "incidents": ["inc_9"], "release_checks": [] } },
                    { "service": "billing", "score": 40.5, "band": "low", "extra_key": "ignored" } ] }"#;
    let d = parse_platform("platform/2026-48.json", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.week.as_str(), d.env.as_str()), ("2026-48", "prod"));
    let gw = &d.services[0];
    assert!(gw.requires_arch_review);
    assert_eq!(gw.band, Band::Critical);
    assert_eq!(gw.signal("regressions_30d"), 3);
    assert_eq!(gw.signal("brand_new_signal"), 7);
    assert_eq!(gw.signal("never_heard_of"), 0);
    assert_eq!(gw.evidence_refs["incidents"], ["inc_9"]);
    let billing = &d.services[1];
    assert!(!billing.requires_arch_review);
    assert!(billing.signals.is_empty() && billing.evidence_refs.is_empty());
    assert_eq!(billing.score.to_string(), "40.5");
}

#[track_caller]
fn check_malformed(text: &str, want: &str) {
    match parse_platform("platform/2026-48.json", text) {
        Ok(d) => panic!("{text} parsed: {d:?}"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidInput, "{e}");
            assert!(
                e.message.starts_with("ops/reports/platform/2026-48.json: "),
                "{}",
                e.message
            );
            assert!(e.message.contains(want), "{:?} lacks {want:?}", e.message);
        }
    }
}

#[test]
fn malformed_digests_name_file_and_field() {
    let with = |svc: Value| platform("2026-48", "prod", json!([gw()[0].clone(), svc]));
    let ok = json!({"service": "db", "score": 1, "band": "low"});
    let patch = |k: &str, v: Value| {
        let mut s = ok.clone();
        s[k] = v;
        with(s)
    };
    let rows: Vec<(String, &str)> = vec![
        ("[]".into(), "expected a JSON object, got array"),
        ("{".into(), "not valid JSON"),
        (json!({"env": "prod", "generated_at": "2026-11-23T06:00:04Z", "services": []}).to_string(), "week: missing"),
        (platform("2026-54", "prod", json!([])), "week: expected an ISO week YYYY-WW, got \"2026-54\""),
        (platform("2026-48", "Prod", json!([])), "env: expected ^[a-z0-9][a-z0-9_-]{0,31}$"),
        (json!({"week": "2026-48", "env": "prod", "generated_at": "soon", "services": []}).to_string(), "generated_at: expected an RFC 3339 timestamp"),
        (json!({"week": "2026-48", "env": "prod", "generated_at": "2026-11-23T06:00:04Z"}).to_string(), "services: missing"),
        (json!({"week": "2026-48", "env": "prod", "generated_at": "2026-11-23T06:00:04Z", "services": {}}).to_string(), "services: expected a list"),
        (with(json!("db")), "services[1]: expected an object, got string"),
        (patch("band", json!("severe")), "services[1].band: expected one of low, medium, high, critical, got \"severe\""),
        (patch("band", Value::Null), "services[1].band: missing"),
        (patch("score", json!("82")), "services[1].score: expected a number, got string"),
        (patch("service", json!("DB")), "services[1].service: expected ^[a-z0-9][a-z0-9._-]{0,63}$"),
        (patch("service", json!("gateway")), "services[1].service: duplicate service \"gateway\" (also in services[0])"),
        (patch("requires_arch_review", json!("yes")), "services[1].requires_arch_review: expected true or false, got string"),
        (patch("signals", json!([])), "services[1].signals: expected an object, got array"),
        (patch("signals", json!({"regressions_30d": -1})), "services[1].signals.regressions_30d: expected a non-negative integer, got -1"),
        (patch("signals", json!({"regressions_30d": 1.5})), "services[1].signals.regressions_30d: expected a non-negative integer, got 1.5"),
        (patch("evidence_refs", json!({"alerts": "al_1"})), "services[1].evidence_refs.alerts: expected a list of strings"),
        (patch("evidence_refs", json!({"alerts": [1]})), "services[1].evidence_refs.alerts[0]: expected a string, got number"),
        (patch("evidence_refs", json!({"alerts": ["a\u{0}"]})), "services[1].evidence_refs.alerts[0]: must not contain U+0000"),
    ];
    for (text, want) in &rows {
        check_malformed(text, want);
    }
    // Risk digests get the same treatment.
    let e = parse_risk(
        "risk/2026-11-25.json",
        &risk(
            "2026-11-25",
            "prod",
            json!([{"service": "gw", "score": 1, "band": "extreme"}]),
        ),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(
        e.message,
        "ops/reports/risk/2026-11-25.json: services[0].band: expected one of low, medium, high, critical, got \"extreme\""
    );
    let e = parse_risk("risk/x.json", &risk("2026-02-30", "prod", json!([])))
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.message.contains("date: expected a date YYYY-MM-DD"),
        "{e}"
    );
}

#[test]
fn name_tokens() {
    assert_eq!(week_token("2026-48.json"), Some("2026-48"));
    assert_eq!(week_token("2026-53.json"), Some("2026-53"));
    assert_eq!(week_token("2025-53.json"), None);
    assert_eq!(week_token("2026-48.md"), None);
    assert_eq!(week_token("2026-48"), None);
    assert_eq!(week_token("prod"), None);
    assert_eq!(date_token("2026-11-25.json"), Some("2026-11-25"));
    assert_eq!(date_token("2026-11-31.json"), None);
    assert_eq!(
        operator_path("platform/2026-48.json"),
        "ops/reports/platform/2026-48.json"
    );
}
