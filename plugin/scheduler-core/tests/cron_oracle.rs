//! Property test: [`Schedule`] against an independent brute-force oracle of 5-field Vixie
//! cron (`docs/testing.md`).
//!
//! The oracle parses each field into a plain list of allowed values with its own code, and
//! walks the calendar day by day and, on a matching day, minute by minute. Vixie semantics:
//! when both day fields are restricted a day matches if either does; a field whose text starts
//! with `*` (`*`, `*/2`) counts as unrestricted, and then both must match. The walk covers one
//! full Gregorian cycle (400 years, a whole number of weeks), so "no match in the walk" is
//! exactly "never fires".
//!
//! Cases: `PROPTEST_CASES` (default 256); a long run is `PROPTEST_CASES=100000`.

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use scheduler_core::Schedule;

/// One Gregorian cycle in days: every (date, weekday) combination that ever happens happens
/// within it.
const CYCLE_DAYS: i64 = 146_097;

/// The oracle's schedule: allowed values per field, and the two "starts with `*`" flags.
struct Oracle {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    weekdays: Vec<u32>,
    dom_star: bool,
    dow_star: bool,
}

fn oracle_field(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Vec<u32> {
    let num = |s: &str| -> u32 {
        match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            Some(i) => i as u32 + name_base,
            None => s.parse().expect("generated numbers parse"),
        }
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u64>().expect("generated step")),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a), num(b)),
                None => (num(r), num(r)),
            },
        };
        let mut v = u64::from(lo);
        while v <= u64::from(hi) {
            out.push(v as u32);
            v += step;
        }
    }
    out
}

impl Oracle {
    fn new(expr: &str) -> Oracle {
        let f: Vec<&str> = expr.split(' ').collect();
        let days_of_week = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let months = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        Oracle {
            minutes: oracle_field(f[0], 0, 59, &[], 0),
            hours: oracle_field(f[1], 0, 23, &[], 0),
            days: oracle_field(f[2], 1, 31, &[], 0),
            months: oracle_field(f[3], 1, 12, &months, 1),
            // 7 is Sunday too.
            weekdays: oracle_field(f[4], 0, 7, &days_of_week, 0)
                .into_iter()
                .map(|d| d % 7)
                .collect(),
            dom_star: f[2].starts_with('*'),
            dow_star: f[4].starts_with('*'),
        }
    }

    fn day(&self, d: NaiveDate) -> bool {
        if !self.months.contains(&d.month()) {
            return false;
        }
        let dom = self.days.contains(&d.day());
        let dow = self.weekdays.contains(&d.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first firing minute strictly after `t`, brute force; `None` if none in a cycle.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60 + 60, 0)?;
        let first = start.date_naive();
        for offset in 0..=CYCLE_DAYS {
            let day = first + Duration::days(offset);
            if !self.day(day) {
                continue;
            }
            let midnight = day.and_hms_opt(0, 0, 0)?.and_utc();
            for minute in 0..24 * 60 {
                let at = midnight + Duration::minutes(minute);
                if at < start {
                    continue;
                }
                let (h, m) = (minute as u32 / 60, minute as u32 % 60);
                if self.hours.contains(&h) && self.minutes.contains(&m) {
                    return Some(at);
                }
            }
        }
        None
    }
}

/// One list element of a field: `*`, `*/n`, `a`, `a-b` or `a-b/n` (ordered, so valid).
fn element(min: u32, max: u32, names: &'static [&'static str], base: u32) -> BoxedStrategy<String> {
    let value = move |v: u32, named: bool| -> String {
        let i = v.wrapping_sub(base) as usize;
        if named && i < names.len() {
            names[i].to_owned()
        } else {
            v.to_string()
        }
    };
    prop_oneof![
        1 => Just("*".to_owned()),
        2 => (1..=u64::from(max) + 3).prop_map(|n| format!("*/{n}")),
        3 => (min..=max, any::<bool>()).prop_map(move |(v, named)| value(v, named)),
        2 => (min..=max, min..=max, any::<bool>()).prop_map(move |(a, b, named)| {
            format!("{}-{}", value(a.min(b), named), value(a.max(b), named))
        }),
        1 => (min..=max, min..=max, 1..=u64::from(max) + 3).prop_map(move |(a, b, s)| {
            format!("{}-{}/{s}", a.min(b), a.max(b))
        }),
        // Huge steps: parsed, and must not wrap around.
        1 => (min..=max, min..=max, (u64::from(u32::MAX) - 70)..=u64::from(u32::MAX))
            .prop_map(|(a, b, s)| format!("{}-{}/{s}", a.min(b), a.max(b))),
    ]
    .boxed()
}

fn field(min: u32, max: u32, names: &'static [&'static str], base: u32) -> BoxedStrategy<String> {
    proptest::collection::vec(element(min, max, names, base), 1..=3)
        .prop_map(|v| v.join(","))
        .boxed()
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn expression() -> impl Strategy<Value = String> {
    // Day fields lean towards rare dates (the 29th-31st, February) so that "never" and
    // once-in-years schedules come up often.
    let dom = prop_oneof![
        3 => field(1, 31, &[], 0),
        2 => (29u32..=31).prop_map(|d| d.to_string()),
        1 => (28u32..=31).prop_map(|d| format!("*/{d}")),
    ];
    let month = prop_oneof![3 => field(1, 12, MONTHS, 1), 2 => Just("2".to_owned())];
    (
        field(0, 59, &[], 0),
        field(0, 23, &[], 0),
        dom,
        month,
        field(0, 7, WEEKDAYS, 0),
    )
        .prop_map(|(m, h, d, mo, w)| format!("{m} {h} {d} {mo} {w}"))
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2200, any second.
    (0i64..7_258_118_400).prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range"))
}

/// The product's answer and the oracle's agree: same next fire, or both "never".
fn check(expr: &str, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let oracle = Oracle::new(expr);
    let expected = oracle.next_after(now);
    match Schedule::parse(expr) {
        Err(e) => prop_assert!(
            expected.is_none() && oracle.next_after(DateTime::UNIX_EPOCH).is_none(),
            "`{expr}` rejected ({e}) but fires at {expected:?}"
        ),
        Ok(s) => {
            let got = s.next_after(now);
            prop_assert_eq!(got, expected, "`{}` after {}", expr, now);
            if let Some(at) = got {
                prop_assert!(at > now && s.matches(at));
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn next_fire_agrees_with_the_oracle(expr in expression(), now in instant()) {
        check(&expr, now)?;
    }
}

/// Regression cases found by the property above (kept explicit, replayed by `cargo test`).
#[test]
fn regressions() {
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    };
    for (expr, now) in [
        ("12-12/4294967284 * * * *", "1970-01-01T00:00:00Z"),
        ("* * 29 2 */2", "2184-02-29T23:59:00Z"),
        ("0 0 29 2 */7", "2033-01-01T00:00:00Z"),
    ] {
        check(expr, at(now)).unwrap_or_else(|e| panic!("{e}"));
    }
}
