use chrono::{DateTime, Utc};

use super::*;
use crate::registry::Registry;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

fn reg() -> Registry {
    let text = "jobs:
  - { id: hourly, schedule: '0 * * * *', tool: x, action: y }
  - { id: gen, schedule: '20 6 * * 1', tool: x, action: y, after: [digest] }
  - { id: digest, schedule: '0 6 * * 1', tool: x, action: y }
  - { id: off, schedule: '* * * * *', tool: x, action: y, enabled: false }
";
    Registry::parse("r.yml", text, None).unwrap()
}

fn plan(start: &str, tick: &str) -> Vec<(String, String, bool)> {
    let r = reg();
    let mut out = Vec::new();
    for i in r.order().unwrap() {
        for d in due_for_job(&r, i, t(start), t(tick)) {
            out.push((
                r.jobs[d.job].id.clone(),
                d.minute.format("%m-%d %H:%M").to_string(),
                d.action == Action::Run,
            ));
        }
    }
    out
}

#[test]
fn one_minute_looks() {
    assert_eq!(
        plan("2026-11-23T06:00:00Z", "2026-11-23T06:00:00Z"),
        [
            ("hourly".into(), "11-23 06:00".into(), true),
            ("digest".into(), "11-23 06:00".into(), true),
        ]
    );
    assert!(plan("2026-11-23T06:01:00Z", "2026-11-23T06:01:00Z").is_empty());
    assert_eq!(
        plan("2026-11-23T06:20:00Z", "2026-11-23T06:20:00Z"),
        [("gen".into(), "11-23 06:20".into(), true),]
    );
    // Disabled jobs never come due.
    assert!(
        plan("2026-11-24T06:01:00Z", "2026-11-24T06:01:00Z")
            .iter()
            .all(|d| d.0 != "off")
    );
}

#[test]
fn missed_runs_within_grace_run_once_older_are_missed() {
    // Down from 05:50 to 06:14: the 06:00 runs are 14 minutes old, so they run.
    assert_eq!(
        plan("2026-11-23T05:51:00Z", "2026-11-23T06:14:00Z"),
        [
            ("hourly".into(), "11-23 06:00".into(), true),
            ("digest".into(), "11-23 06:00".into(), true),
        ]
    );
    // Back at 06:16: 16 minutes is too late.
    assert_eq!(
        plan("2026-11-23T05:51:00Z", "2026-11-23T06:16:00Z"),
        [
            ("hourly".into(), "11-23 06:00".into(), false),
            ("digest".into(), "11-23 06:00".into(), false),
        ]
    );
    // Down three hours: only the latest hourly run within grace runs; the others are missed.
    assert_eq!(
        plan("2026-11-23T04:01:00Z", "2026-11-23T07:05:00Z"),
        [
            ("hourly".into(), "11-23 05:00".into(), false),
            ("hourly".into(), "11-23 06:00".into(), false),
            ("hourly".into(), "11-23 07:00".into(), true),
            ("digest".into(), "11-23 06:00".into(), false),
            ("gen".into(), "11-23 06:20".into(), false),
        ]
    );
}

#[test]
fn missed_reasons_say_why() {
    let r = reg();
    let d = due_for_job(&r, 0, t("2026-11-23T04:01:00Z"), t("2026-11-23T07:05:00Z"));
    assert_eq!(
        d[0].action,
        Action::Missed(
            "the scheduler was not running within 15 minutes of 2026-11-23T05:00Z".into()
        )
    );
}

#[test]
fn window_start_rules() {
    let tick = t("2026-11-23T06:20:30Z");
    // Later looks continue after the previous one.
    assert_eq!(
        window_start(Some(t("2026-11-23T06:19:00Z")), None, tick),
        t("2026-11-23T06:20:00Z")
    );
    assert_eq!(
        window_start(Some(t("2026-11-23T06:10:00Z")), None, tick),
        t("2026-11-23T06:11:00Z")
    );
    // First look: after the last record, bounded by the lookback; nothing recorded: now.
    assert_eq!(
        window_start(None, Some(t("2026-11-23T05:00:00Z")), tick),
        t("2026-11-23T05:01:00Z")
    );
    assert_eq!(
        window_start(None, Some(t("2026-01-01T00:00:00Z")), tick),
        t("2026-11-16T06:20:00Z")
    );
    assert_eq!(window_start(None, None, tick), t("2026-11-23T06:20:00Z"));
    // A record from the future (a drill replaying an old span): just this minute.
    assert_eq!(
        window_start(None, Some(t("2026-12-01T00:00:00Z")), tick),
        t("2026-11-23T06:20:00Z")
    );
}

#[test]
fn same_day_is_utc() {
    assert!(same_day(
        t("2026-11-23T00:00:00Z"),
        t("2026-11-23T23:59:00Z")
    ));
    assert!(!same_day(
        t("2026-11-23T23:59:00Z"),
        t("2026-11-24T00:00:00Z")
    ));
}
