//! 5-field cron expressions (`minute hour day-of-month month day-of-week`), evaluated in UTC.
//!
//! Syntax: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month names
//! `jan`..`dec`, weekday names `sun`..`sat` (0 and 7 are Sunday). As in Vixie cron, when both
//! day fields are restricted (neither starts with `*`) a day matches if either matches.

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, NaiveTime, Timelike as _, Utc};

/// How far ahead [`Schedule::next_after`] looks: one whole Gregorian cycle (400 years, also a
/// whole number of weeks), after which every (date, weekday) pair repeats. So a schedule that
/// fires at all fires within it from any start (`0 0 29 2 */7`, a 29 February that is a
/// Sunday, can be 28 years away), and one that does not (30 February) never fires; parsing
/// rejects those with the same bound.
const HORIZON_DAYS: i64 = 146_097;

/// A parse error: which field, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    #[error("{field} field `{text}`: {reason}")]
    Field {
        field: &'static str,
        text: String,
        reason: String,
    },
    #[error("never fires (no day matches its day-of-month, month and day-of-week fields)")]
    Never,
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Spec = Spec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Spec = Spec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Spec = Spec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    /// Parses a 5-field expression; rejects schedules that never fire.
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let mut weekdays = field(&WEEKDAY, dow)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let schedule = Schedule {
            text: fields.join(" "),
            minutes: field(&MINUTE, m)?,
            hours: field(&HOUR, h)?,
            days: field(&DAY, dom)?,
            months: field(&MONTH, mon)?,
            weekdays,
            days_star: dom.starts_with('*'),
            weekdays_star: dow.starts_with('*'),
        };
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or(CronError::Never)?;
        if !(0..HORIZON_DAYS).any(|d| schedule.day_matches(start + Duration::days(d))) {
            return Err(CronError::Never);
        }
        Ok(schedule)
    }

    /// The expression, fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the schedule fires in the minute containing `t`.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        self.day_matches(t.date_naive())
            && bit(self.hours, t.hour())
            && bit(self.minutes, t.minute())
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if !bit(self.months, d.month()) {
            return false;
        }
        let dom = bit(self.days, d.day());
        let dow = bit(self.weekdays, d.weekday().num_days_from_sunday());
        match (self.days_star, self.weekdays_star) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first minute strictly after `t` at which the schedule fires.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = minute_floor(t) + Duration::minutes(1);
        let first_day = start.date_naive();
        for offset in 0..HORIZON_DAYS {
            let day = first_day + Duration::days(offset);
            if !self.day_matches(day) {
                continue;
            }
            for h in (0..24).filter(|h| bit(self.hours, *h)) {
                for m in (0..60).filter(|m| bit(self.minutes, *m)) {
                    let time = NaiveTime::from_hms_opt(h, m, 0)?;
                    let at = day.and_time(time).and_utc();
                    if at >= start {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// Every firing minute in `[from, until]` (both inclusive, truncated to minutes).
    pub fn fires_between(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = minute_floor(from) - Duration::minutes(1);
        while let Some(next) = self.next_after(at) {
            if next > until {
                break;
            }
            out.push(next);
            at = next;
        }
        out
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `t` with seconds and below cut off.
pub fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

fn field(spec: &Spec, text: &str) -> Result<u64, CronError> {
    let err = |reason: String| CronError::Field {
        field: spec.name,
        text: text.to_owned(),
        reason,
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| err(format!("step `{s}` is not a positive number")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(spec, a).map_err(err)?, value(spec, b).map_err(err)?)
        } else {
            let v = value(spec, range).map_err(err)?;
            if step > 1 {
                return Err(err(format!("a step needs `*` or a range, not `{range}`")));
            }
            (v, v)
        };
        if lo > hi {
            return Err(err(format!("range {lo}-{hi} is backwards")));
        }
        // `step_by` stops at `hi`: a huge step (`0-59/4294967295`) neither overflows nor
        // wraps around to smaller values.
        for n in (lo..=hi).step_by(step as usize) {
            set |= 1 << n;
        }
    }
    Ok(set)
}

fn value(spec: &Spec, text: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if spec.min == 1 { 1 } else { 0 });
    }
    let n: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if n < spec.min || n > spec.max {
        return Err(format!("{n} is outside {}-{}", spec.min, spec.max));
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
