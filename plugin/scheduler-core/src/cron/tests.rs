use chrono::{DateTime, Utc};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

#[track_caller]
fn next(expr: &str, after: &str, expect: &str) {
    let s = Schedule::parse(expr).expect("valid");
    assert_eq!(
        s.next_after(t(after)),
        Some(t(expect)),
        "{expr} after {after}"
    );
}

#[test]
fn next_after_known_timestamps() {
    // Monday 06:20 UTC: weekly_backlog_generate. 2026-11-23 and -30 are Mondays.
    next("20 6 * * 1", "2026-11-23T06:19:59Z", "2026-11-23T06:20:00Z");
    next("20 6 * * 1", "2026-11-23T06:20:00Z", "2026-11-30T06:20:00Z");
    next(
        "20 6 * * mon",
        "2026-11-27T10:00:00Z",
        "2026-11-30T06:20:00Z",
    );
    next("0 6 * * 1", "2026-11-23T06:00:30Z", "2026-11-30T06:00:00Z");
    // Hourly, across a day, month and year end.
    next("0 * * * *", "2026-12-31T23:00:00Z", "2027-01-01T00:00:00Z");
    next("0 * * * *", "2026-11-27T10:59:59Z", "2026-11-27T11:00:00Z");
    // Daily 03:40 and 09:00.
    next("40 3 * * *", "2026-11-30T03:40:00Z", "2026-12-01T03:40:00Z");
    next("0 9 * * *", "2026-02-28T09:00:00Z", "2026-03-01T09:00:00Z");
    // Month ends: the 31st skips 30-day months; the 29th of February waits for a leap year.
    next("0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z");
    next("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
    next(
        "59 23 28-31 * *",
        "2026-02-28T23:59:00Z",
        "2026-03-28T23:59:00Z",
    );
    // Sunday as 0 and as 7; steps and lists.
    next("0 12 * * 7", "2026-11-27T00:00:00Z", "2026-11-29T12:00:00Z");
    next("0 12 * * 0", "2026-11-27T00:00:00Z", "2026-11-29T12:00:00Z");
    next(
        "*/15 * * * *",
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:15:00Z",
    );
    next(
        "5,35 1-2 * * *",
        "2026-11-27T01:35:00Z",
        "2026-11-27T02:05:00Z",
    );
    next(
        "0 0 1 jan,jul *",
        "2026-11-27T00:00:00Z",
        "2027-01-01T00:00:00Z",
    );
    // Both day fields restricted: either matches (the 1st, or any Monday).
    next("0 0 1 * 1", "2026-11-24T00:00:00Z", "2026-11-30T00:00:00Z");
    next("0 0 1 * 1", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z");
    // One restricted, one `*`: both must match.
    next("0 0 1 * *", "2026-11-24T00:00:00Z", "2026-12-01T00:00:00Z");
}

#[test]
fn fires_between_counts_a_week() {
    let week = (t("2026-11-23T00:00:00Z"), t("2026-11-29T23:59:00Z"));
    let count = |e: &str| {
        Schedule::parse(e)
            .unwrap()
            .fires_between(week.0, week.1)
            .len()
    };
    assert_eq!(count("0 * * * *"), 168);
    assert_eq!(count("0 9 * * *"), 7);
    assert_eq!(count("20 6 * * 1"), 1);
    assert_eq!(count("* * * * *"), 7 * 24 * 60);
}

#[test]
fn matches_is_minute_granular() {
    let s = Schedule::parse("20 6 * * 1").unwrap();
    assert!(s.matches(t("2026-11-23T06:20:59Z")));
    assert!(!s.matches(t("2026-11-23T06:21:00Z")));
    assert!(!s.matches(t("2026-11-24T06:20:00Z")));
}

#[track_caller]
fn bad(expr: &str, expect: &str) {
    let e = Schedule::parse(expr).expect_err(expr).to_string();
    assert!(e.contains(expect), "{expr}: {e}");
}

#[test]
fn rejects_bad_expressions() {
    bad("0 * * *", "expected 5 fields");
    bad("0 * * * * *", "found 6");
    bad("60 * * * *", "minute field `60`: 60 is outside 0-59");
    bad("0 24 * * *", "hour field");
    bad("0 0 0 * *", "day-of-month field `0`");
    bad("0 0 * 13 *", "month field");
    bad("0 0 * * 8", "day-of-week field");
    bad("*/0 * * * *", "step `0`");
    bad("5-1 * * * *", "backwards");
    bad("x * * * *", "`x` is not a number");
    bad("5/2 * * * *", "a step needs");
    bad("0 0 30 2 *", "never fires");
}

#[test]
fn display_normalizes_spaces() {
    assert_eq!(
        Schedule::parse(" 20  6 * *   1 ").unwrap().to_string(),
        "20 6 * * 1"
    );
}

/// Found by `tests/cron_oracle.rs`: a 29 February that is a Sunday is 28 years away after
/// 2032; the old 8-year horizon answered "never" (`next_due: null`).
#[test]
fn rare_dates_beyond_eight_years_still_fire() {
    next(
        "0 0 29 2 */7",
        "2033-01-01T00:00:00Z",
        "2060-02-29T00:00:00Z",
    );
    next(
        "* * 29 2 */2",
        "2184-02-29T23:59:00Z",
        "2212-02-29T00:00:00Z",
    );
}

/// Found by `tests/cron_oracle.rs`: `lo + step` overflowed u32 (a panic in debug builds, a
/// wrap-around to every minute in release builds).
#[test]
fn huge_steps_neither_overflow_nor_wrap() {
    next(
        "12-12/4294967284 * * * *",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:12:00Z",
    );
    next(
        "59-59/4294967295 * * * *",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:59:00Z",
    );
}
