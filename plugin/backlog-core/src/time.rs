//! Timestamps and dates as stored: the fixed-width UTC form `YYYY-MM-DDTHH:MM:SS.ffffffZ` (so
//! string order is time order), the legacy naive form readers still accept, `YYYY-MM-DD`
//! dates and ISO week tokens (`%G-%V`).
//!
//! This module never reads the clock: the current time always comes in as an argument.

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc, Weekday,
};

/// `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`: exactly 6 fraction digits (truncated), always `Z`.
/// Fixed width for years 0000..=9999 (the only years [`parse_ts`] accepts).
pub fn format_ts(t: DateTime<Utc>) -> String {
    let nanos = t.nanosecond();
    // chrono encodes a leap second as nanos >= 1e9; keep the width and the order.
    let micros = if nanos >= 1_000_000_000 {
        999_999
    } else {
        nanos / 1000
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        micros
    )
}

/// Parses an RFC 3339 timestamp with any offset (normalized to UTC), or the legacy naive form
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]` without zone, read as UTC. `None` if neither, or if the UTC
/// year falls outside 0000..=9999.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => parse_naive(s)?.and_utc(),
    };
    (0..=9999).contains(&t.year()).then_some(t)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

/// The legacy form: exactly `YYYY-MM-DDTHH:MM:SS`, optionally `.` and 1..9 digits.
fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = parse_date(s.get(..10)?)?;
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    Some(date.and_time(NaiveTime::from_hms_nano_opt(h, mi, sec, nanos)?))
}

/// [`parse_ts`] then [`format_ts`]: any accepted form to the stored form.
///
/// Text already in the stored form is returned as it is, without the parse and the format
/// (every stored timestamp of every item and event read passes here).
pub fn normalize_ts(s: &str) -> Option<String> {
    if is_stored_form(s) {
        return Some(s.to_owned());
    }
    parse_ts(s).map(format_ts)
}

/// Whether `s` is a valid timestamp in the stored form `YYYY-MM-DDTHH:MM:SS.ffffffZ`: what
/// [`format_ts`] writes, so `format_ts(parse_ts(s))` would give `s` back. Seconds `60` (a
/// leap second) are not: [`format_ts`] writes those as `59.999999`.
fn is_stored_form(s: &str) -> bool {
    let b = s.as_bytes();
    let shaped = b.len() == 27
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit);
    if !shaped {
        return false;
    }
    let time = (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19]));
    matches!(time, (Some(h), Some(m), Some(sec)) if h < 24 && m < 60 && sec < 60)
        && s.get(..10).and_then(parse_date).is_some()
}

/// `YYYY-MM-DD` of `now` in UTC.
pub fn today(now: DateTime<Utc>) -> String {
    format_date(now.date_naive())
}

/// `date` as `YYYY-MM-DD`.
pub fn format_date(date: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// ISO week-year and week, zero padded (chrono `%G-%V`): 2027-01-01 → `2026-53`.
pub fn iso_week(date: NaiveDate) -> String {
    let w = date.iso_week();
    format!("{:04}-{:02}", w.year(), w.week())
}

/// Strict ISO week token `YYYY-WW` (exactly 7 ASCII characters) naming a week that exists:
/// `WW` is `01`..=`53`, and `53` only in years that have 53 ISO weeks. Returns the Monday of
/// that week.
pub fn parse_week(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return None;
    }
    let (y, w) = (digits(&b[..4])?, digits(&b[5..7])?);
    NaiveDate::from_isoywd_opt(i32::try_from(y).ok()?, w, Weekday::Mon)
}

/// The week before `week` (`YYYY-WW`): the ISO week of its Monday minus 7 days, so
/// `2027-01` → `2026-53` and `2026-01` → `2025-52`. `None` if `week` is not a valid token.
pub fn previous_week(week: &str) -> Option<String> {
    let monday = parse_week(week)?;
    Some(iso_week(add_days(monday, -7)?))
}

/// `date` plus `days` (may be negative); `None` on overflow.
pub fn add_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    date.checked_add_signed(TimeDelta::try_days(days)?)
}

/// Strict `YYYY-MM-DD` (exactly 10 ASCII characters) naming a real calendar date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_is_kept_exactly_when_parsing_and_formatting_would_keep_it() {
        let cases = [
            "2026-11-27T10:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.123456Z",
            "2026-12-31T23:59:60.500000Z", // a leap second: written as 59.999999
            "2025-02-29T00:00:00.000000Z", // no such day
            "2026-13-01T00:00:00.000000Z",
            "2026-11-27T24:00:00.000000Z",
            "2026-11-27T10:60:00.000000Z",
            "2026-11-27T10:00:00.00000aZ",
            "2026-11-27T10:00:00.000000+00:00",
            "2026-11-27T10:00:00Z",
            "2026-11-27T10:00:00.000000",
            "2026-11-27 10:00:00.000000Z",
            "+026-11-27T10:00:00.000000Z",
            "2026-11-27T10:00:00.000000z",
            "",
        ];
        for s in cases {
            assert_eq!(
                normalize_ts(s),
                parse_ts(s).map(format_ts),
                "normalize_ts({s:?}) differs from parse then format"
            );
        }
    }

    proptest::proptest! {
        /// Any text of the stored form's shape, valid or not: the shortcut and the parse
        /// agree.
        #[test]
        fn the_shortcut_agrees_with_the_parse(
            date in "[0-9]{4}-[0-1][0-9]-[0-3][0-9]",
            time in "[0-2][0-9]:[0-6][0-9]:[0-6][0-9]",
            frac in "[0-9]{6}",
        ) {
            let s = format!("{date}T{time}.{frac}Z");
            proptest::prop_assert_eq!(normalize_ts(&s), parse_ts(&s).map(format_ts));
        }
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[track_caller]
    fn check_norm(input: &str, want: Option<&str>) {
        assert_eq!(normalize_ts(input).as_deref(), want, "{input:?}");
    }

    #[test]
    fn normalize() {
        let rows: &[(&str, Option<&str>)] = &[
            (
                "2026-03-02T06:20:01.123456Z",
                Some("2026-03-02T06:20:01.123456Z"),
            ),
            ("2026-03-02T06:20:01Z", Some("2026-03-02T06:20:01.000000Z")),
            (
                "2026-03-02T06:20:01.1Z",
                Some("2026-03-02T06:20:01.100000Z"),
            ),
            (
                "2026-03-02T06:20:01.123456789Z",
                Some("2026-03-02T06:20:01.123456Z"),
            ),
            (
                "2026-03-02T08:20:01.5+02:00",
                Some("2026-03-02T06:20:01.500000Z"),
            ),
            (
                "2026-03-01T23:30:00-07:00",
                Some("2026-03-02T06:30:00.000000Z"),
            ),
            (
                "2026-03-02T06:20:01+00:00",
                Some("2026-03-02T06:20:01.000000Z"),
            ),
            // Legacy naive form, read as UTC.
            (
                "2026-03-02T06:20:01.123456",
                Some("2026-03-02T06:20:01.123456Z"),
            ),
            ("2026-03-02T06:20:01", Some("2026-03-02T06:20:01.000000Z")),
            (
                "2026-03-02T06:20:01.12",
                Some("2026-03-02T06:20:01.120000Z"),
            ),
            ("2026-03-02T06:20:01.", None),
            ("2026-03-02T06:20:01.1234567890", None),
            ("2026-03-02T06:20", None),
            ("2026-03-02 06:20:01x", None),
            ("2026-02-30T06:20:01", None),
            ("2026-03-02T25:20:01", None),
            ("2026-03-02", None),
            ("", None),
            ("yesterday", None),
            ("0000-01-01T00:30:00+01:00", None),
        ];
        for (input, want) in rows {
            check_norm(input, *want);
        }
    }

    #[test]
    fn fixed_width_and_order() {
        let a = parse_ts("2026-03-02T06:20:01Z").unwrap_or_default();
        let b = parse_ts("2026-03-02T06:20:01.000001Z").unwrap_or_default();
        let (fa, fb) = (format_ts(a), format_ts(b));
        assert_eq!(fa.len(), 27);
        assert_eq!(fb.len(), 27);
        assert!(fa < fb);
        assert_eq!(
            format_ts(DateTime::<Utc>::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn weeks_and_dates() {
        let rows = [
            (ymd(2026, 12, 31), "2026-53"),
            (ymd(2027, 1, 1), "2026-53"),
            (ymd(2027, 1, 3), "2026-53"),
            (ymd(2027, 1, 4), "2027-01"),
            (ymd(2026, 11, 23), "2026-48"),
            (ymd(2026, 1, 1), "2026-01"),
        ];
        for (d, want) in rows {
            assert_eq!(iso_week(d), want, "{d}");
            assert_eq!(iso_week(d), d.format("%G-%V").to_string());
        }
        assert_eq!(add_days(ymd(2026, 12, 25), 14), Some(ymd(2027, 1, 8)));
        assert_eq!(add_days(ymd(2026, 3, 1), -1), Some(ymd(2026, 2, 28)));
        assert_eq!(add_days(ymd(2026, 3, 1), i64::MAX), None);
        let now = parse_ts("2026-03-02T23:59:59.999999-01:00").unwrap_or_default();
        assert_eq!(today(now), "2026-03-03");
    }

    #[track_caller]
    fn check_week(s: &str, monday: Option<NaiveDate>, prev: Option<&str>) {
        assert_eq!(parse_week(s), monday, "{s:?}");
        assert_eq!(previous_week(s).as_deref(), prev, "{s:?}");
    }

    #[test]
    fn week_tokens() {
        check_week("2026-48", Some(ymd(2026, 11, 23)), Some("2026-47"));
        check_week("2026-53", Some(ymd(2026, 12, 28)), Some("2026-52"));
        check_week("2027-01", Some(ymd(2027, 1, 4)), Some("2026-53"));
        check_week("2026-01", Some(ymd(2025, 12, 29)), Some("2025-52"));
        check_week("2021-01", Some(ymd(2021, 1, 4)), Some("2020-53"));
        // 2025 has 52 ISO weeks, 2026 has 53.
        check_week("2025-53", None, None);
        check_week("2026-54", None, None);
        check_week("2026-00", None, None);
        check_week("2026-7", None, None);
        check_week("2026W48", None, None);
        check_week("2026-48x", None, None);
        check_week("", None, None);
    }

    #[track_caller]
    fn check_date(s: &str, ok: bool) {
        assert_eq!(parse_date(s).is_some(), ok, "{s:?}");
        if ok {
            assert_eq!(parse_date(s).map(format_date).as_deref(), Some(s));
        }
    }

    #[test]
    fn strict_dates() {
        check_date("2026-03-02", true);
        check_date("2024-02-29", true);
        check_date("2026-02-29", false);
        check_date("2026-3-02", false);
        check_date("2026-03-2", false);
        check_date("2026-03-02T00:00:00", false);
        check_date("2026/03/02", false);
        check_date("+026-03-02", false);
        check_date("2026-13-01", false);
        check_date("2026-00-01", false);
        check_date("２０２６-03-02", false);
        check_date("", false);
    }
}
