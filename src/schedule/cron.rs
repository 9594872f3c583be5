//! Cron expressions as Kubernetes CronJob writes them, plus "nth weekday of the month".
//!
//! An expression has five fields separated by spaces:
//!
//! | field        | values                                   |
//! |--------------|------------------------------------------|
//! | minute       | 0-59                                     |
//! | hour         | 0-23                                     |
//! | day-of-month | 1-31                                     |
//! | month        | 1-12 or JAN-DEC                          |
//! | day-of-week  | 0-7 or SUN-SAT (0 and 7 are both Sunday) |
//!
//! Each field is `*`, or a comma-separated list of values (`5`), ranges (`1-5`) and steps
//! (`*/15`, `1-30/5`, and `10/15`, which means `10-59/15`). Names are case-insensitive and
//! may end ranges (`MON-FRI`). `?` means the same as `*` and is allowed in the two day
//! fields only. Instead of five fields a descriptor may be written: `@yearly` (or
//! `@annually`), `@monthly`, `@weekly`, `@daily` (or `@midnight`) and `@hourly`.
//!
//! Refused although some cron dialects have them: `@every` (a window opens at wall-clock
//! times, not at intervals from an arbitrary start), a sixth field for seconds, and the
//! `TZ=` and `CRON_TZ=` prefixes (a window's time zone is its `timeZone` field).
//!
//! # Differences from Kubernetes CronJob
//!
//! Everything else CronJob accepts is accepted with the same meaning, with these
//! differences: `@every` is refused (see above); `7` is accepted as Sunday, where CronJob's
//! cron library stops at 6; `?` is refused outside the day fields, where that library
//! silently reads it as `*`; and the `#` items below are an extension.
//!
//! # Day-of-month and day-of-week together
//!
//! As in every standard cron, when *both* day fields are restricted, a day matches if it
//! matches *either* of them: `0 3 1 * MON` runs on the 1st of each month *and* on every
//! Monday, not only on Mondays that fall on the 1st. When one of them is `*` or `?`, only
//! the other one counts. A field counts as restricted unless it is `*` or `?` (a stepped
//! `*/2` is restricted), as in the cron library Kubernetes uses.
//!
//! # Nth weekday of the month
//!
//! For patching cadences the day-of-week field also takes `DAY#N`, the Nth (1 to 5) such
//! weekday of the month, and `DAY#L`, the last one: `0 3 * * TUE#2` is 03:00 on the second
//! Tuesday of each month ("Patch Tuesday"), `2#2` is the same, and `0 22 * * FRI#L` is the
//! last Friday evening. Such items may be mixed with plain ones in a list (`MON#1,FRI#L`).
//! Kubernetes CronJob does not accept them: they are this operator's extension.

use std::fmt;
use std::str::FromStr;

use jiff::SignedDuration;
use jiff::civil::{Date, DateTime};

/// One of the five fields of a cron expression, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Minute of the hour, 0-59.
    Minute,
    /// Hour of the day, 0-23.
    Hour,
    /// Day of the month, 1-31.
    DayOfMonth,
    /// Month of the year, 1-12 or JAN-DEC.
    Month,
    /// Day of the week, 0-7 (0 and 7 are Sunday) or SUN-SAT.
    DayOfWeek,
}

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The values a field may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    min: u8,
    max: u8,
    /// Where `*` and `N/step` end; below `max` for day-of-week, where 7 repeats Sunday.
    star_max: u8,
    /// Names for consecutive values starting at `min`.
    names: &'static [&'static str],
    /// What to write, for error messages.
    allowed: &'static str,
}

impl CronField {
    /// The field's name as error messages write it.
    pub fn name(self) -> &'static str {
        match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }

    fn limits(self) -> Limits {
        let numbers = |min, max, allowed| Limits {
            min,
            max,
            star_max: max,
            names: &[],
            allowed,
        };
        match self {
            CronField::Minute => numbers(0, 59, "a number 0-59"),
            CronField::Hour => numbers(0, 23, "a number 0-23"),
            CronField::DayOfMonth => numbers(1, 31, "a number 1-31"),
            CronField::Month => Limits {
                names: MONTH_NAMES,
                ..numbers(1, 12, "a number 1-12 or a name JAN-DEC")
            },
            CronField::DayOfWeek => Limits {
                star_max: 6,
                names: WEEKDAY_NAMES,
                ..numbers(0, 7, "a number 0-7 (0 and 7 are Sunday) or a name SUN-SAT")
            },
        }
    }

    fn is_day(self) -> bool {
        matches!(self, CronField::DayOfMonth | CronField::DayOfWeek)
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing was written.
    #[error(
        "schedule is empty; write five fields (minute hour day-of-month month day-of-week) \
         or a descriptor such as @daily"
    )]
    Empty,
    /// Not five fields.
    #[error(
        "schedule has {found} fields; write five: minute hour day-of-month month \
         day-of-week{hint}",
        hint = if *found == 6 { " (a field for seconds is not supported)" } else { "" }
    )]
    FieldCount {
        /// How many fields were written.
        found: usize,
    },
    /// A `TZ=` or `CRON_TZ=` prefix.
    #[error(
        "time zone prefixes such as {prefix} are not supported in the schedule; \
         use the window's timeZone field instead"
    )]
    TimeZonePrefix {
        /// The prefix as written.
        prefix: String,
    },
    /// `@every`, which opens windows at intervals instead of at wall-clock times.
    #[error(
        "@every is not supported; write a cron expression such as \"0 */6 * * *\" \
         (every six hours)"
    )]
    Every,
    /// A word starting with `@` that is not a known descriptor.
    #[error(
        "unknown descriptor {descriptor}; allowed: @yearly, @annually, @monthly, @weekly, \
         @daily, @midnight, @hourly"
    )]
    UnknownDescriptor {
        /// The descriptor as written.
        descriptor: String,
    },
    /// One field is wrong.
    #[error("{field}: {reason}")]
    Field {
        /// The field that is wrong.
        field: CronField,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
}

impl CronError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            CronError::TimeZonePrefix { .. } | CronError::Every => "UnsupportedSchedule",
            CronError::Empty
            | CronError::FieldCount { .. }
            | CronError::UnknownDescriptor { .. }
            | CronError::Field { .. } => "InvalidSchedule",
        }
    }
}

fn field_error(field: CronField, reason: String) -> CronError {
    CronError::Field { field, reason }
}

/// A set of small values (minutes, hours, days, months or weekdays), one bit per value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ValueSet(u64);

impl ValueSet {
    fn with_range(self, first: u8, last: u8, step: u8) -> ValueSet {
        let added = (first..=last)
            .step_by(usize::from(step))
            .fold(0u64, |bits, value| bits | 1 << value);
        ValueSet(self.0 | added)
    }

    fn union(self, other: ValueSet) -> ValueSet {
        ValueSet(self.0 | other.0)
    }

    fn contains(self, value: i8) -> bool {
        (0..64).contains(&value) && self.0 & (1 << value) != 0
    }

    /// The smallest value in the set that is at least `value`.
    fn first_from(self, value: i8) -> Option<i8> {
        if value >= 64 {
            return None;
        }
        let rest = self.0 & (u64::MAX << value.max(0));
        (rest != 0).then(|| rest.trailing_zeros() as i8)
    }

    /// The largest value in the set that is at most `value`.
    fn last_through(self, value: i8) -> Option<i8> {
        if value < 0 {
            return None;
        }
        let rest = self.0 & (u64::MAX >> (63 - value.min(63)));
        (rest != 0).then(|| 63 - rest.leading_zeros() as i8)
    }
}

/// Which occurrence of a weekday in its month a `#` item means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occurrence {
    /// The first to fifth.
    Nth(i8),
    /// The last, whether it is the fourth or the fifth.
    Last,
}

/// A day-of-week item with `#`, such as `TUE#2` or `FRI#L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NthWeekday {
    /// 0 is Sunday.
    weekday: i8,
    occurrence: Occurrence,
}

impl NthWeekday {
    fn matches(self, date: Date) -> bool {
        if date.weekday().to_sunday_zero_offset() != self.weekday {
            return false;
        }
        match self.occurrence {
            Occurrence::Nth(nth) => (date.day() - 1) / 7 + 1 == nth,
            Occurrence::Last => date.day() + 7 > date.days_in_month(),
        }
    }
}

/// What one field allows, as parsed.
#[derive(Debug, Default)]
struct ParsedField {
    values: ValueSet,
    /// Written as `*` or `?`, so that it does not restrict the day (see the OR rule).
    unrestricted: bool,
    nth_weekdays: Vec<NthWeekday>,
}

/// Which days of a month the two day fields select together.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DayRule {
    month_days: ValueSet,
    weekdays: ValueSet,
    nth_weekdays: Vec<NthWeekday>,
    month_days_unrestricted: bool,
    weekdays_unrestricted: bool,
}

impl DayRule {
    fn new(month_days: ParsedField, weekdays: ParsedField) -> DayRule {
        // 7 is another name for Sunday, which matching looks up as 0.
        let weekday_values = if weekdays.values.contains(7) {
            ValueSet(weekdays.values.0 & !(1 << 7) | 1)
        } else {
            weekdays.values
        };
        DayRule {
            month_days: month_days.values,
            weekdays: weekday_values,
            nth_weekdays: weekdays.nth_weekdays,
            month_days_unrestricted: month_days.unrestricted,
            weekdays_unrestricted: weekdays.unrestricted,
        }
    }

    fn matches(&self, date: Date) -> bool {
        let by_month_day = self.month_days.contains(date.day());
        let by_weekday = self
            .weekdays
            .contains(date.weekday().to_sunday_zero_offset())
            || self.nth_weekdays.iter().any(|nth| nth.matches(date));
        if self.month_days_unrestricted || self.weekdays_unrestricted {
            by_month_day && by_weekday
        } else {
            by_month_day || by_weekday
        }
    }
}

/// A parsed cron expression: the wall-clock minutes at which windows open.
///
/// It knows nothing of time zones; [`super::WindowTiming`] turns its wall-clock times into
/// instants. [`fmt::Display`] writes the expression exactly as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: ValueSet,
    hours: ValueSet,
    months: ValueSet,
    days: DayRule,
}

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Schedule, CronError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            let prefix = trimmed.split_whitespace().next().unwrap_or(trimmed);
            return Err(CronError::TimeZonePrefix {
                prefix: prefix.to_owned(),
            });
        }
        let expression = if trimmed.starts_with('@') {
            expand_descriptor(trimmed)?
        } else {
            trimmed
        };

        let fields: Vec<&str> = expression.split_whitespace().collect();
        let Ok(texts) = <[&str; 5]>::try_from(fields.as_slice()) else {
            return Err(CronError::FieldCount {
                found: fields.len(),
            });
        };
        let [minutes, hours, month_days, months, weekdays] = parse_fields(texts)?;
        Ok(Schedule {
            text: text.to_owned(),
            minutes: minutes.values,
            hours: hours.values,
            months: months.values,
            days: DayRule::new(month_days, weekdays),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The five-field expression a descriptor stands for.
fn expand_descriptor(descriptor: &str) -> Result<&'static str, CronError> {
    match descriptor {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        _ if descriptor.starts_with("@every") => Err(CronError::Every),
        _ => Err(CronError::UnknownDescriptor {
            descriptor: descriptor.to_owned(),
        }),
    }
}

fn parse_fields(texts: [&str; 5]) -> Result<[ParsedField; 5], CronError> {
    Ok([
        parse_field(CronField::Minute, texts[0])?,
        parse_field(CronField::Hour, texts[1])?,
        parse_field(CronField::DayOfMonth, texts[2])?,
        parse_field(CronField::Month, texts[3])?,
        parse_field(CronField::DayOfWeek, texts[4])?,
    ])
}

fn parse_field(field: CronField, text: &str) -> Result<ParsedField, CronError> {
    let mut parsed = ParsedField::default();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(field_error(field, format!("empty item in the list {text}")));
        }
        if let Some((weekday, occurrence)) = item.split_once('#') {
            let nth = parse_nth_weekday(field, item, weekday, occurrence)?;
            parsed.nth_weekdays.push(nth);
            continue;
        }
        let (values, unrestricted) = parse_item(field, item)?;
        parsed.values = parsed.values.union(values);
        parsed.unrestricted |= unrestricted;
    }
    Ok(parsed)
}

/// Parses `TUE#2` or `FRI#L`, given the parts before and after the `#`.
fn parse_nth_weekday(
    field: CronField,
    item: &str,
    weekday: &str,
    occurrence: &str,
) -> Result<NthWeekday, CronError> {
    if field != CronField::DayOfWeek {
        return Err(field_error(
            field,
            format!("{item}: # is only allowed in day-of-week, as in TUE#2"),
        ));
    }
    if weekday.contains(['*', '?', '-', '/']) {
        return Err(field_error(
            field,
            format!("{item}: # follows a single weekday, as in TUE#2 or 2#2"),
        ));
    }
    let weekday = parse_value(field, item, weekday)? % 7;
    let occurrence = match occurrence {
        "L" | "l" => Occurrence::Last,
        _ => match occurrence.parse::<i8>() {
            Ok(nth @ 1..=5) if occurrence.bytes().all(|byte| byte.is_ascii_digit()) => {
                Occurrence::Nth(nth)
            }
            _ => {
                let reason =
                    format!("{item}: the occurrence after # must be 1-5, or L for the last one");
                return Err(field_error(field, reason));
            }
        },
    };
    Ok(NthWeekday {
        weekday: weekday as i8,
        occurrence,
    })
}

/// Parses a value, range or step item; also says whether it was an unrestricting `*`.
fn parse_item(field: CronField, item: &str) -> Result<(ValueSet, bool), CronError> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(field, item, step)?)),
        None => (item, None),
    };
    let (first, last, star) = parse_range(field, item, range, step.is_some())?;
    let step = step.unwrap_or(1);
    let values = ValueSet::default().with_range(first, last, step);
    Ok((values, star && step == 1))
}

/// The first and last value of `*`, `a`, `a-b`, or `a/step` (which runs to the end).
fn parse_range(
    field: CronField,
    item: &str,
    range: &str,
    stepped: bool,
) -> Result<(u8, u8, bool), CronError> {
    let limits = field.limits();
    if range == "*" || (range == "?" && field.is_day()) {
        return Ok((limits.min, limits.star_max, true));
    }
    if range == "?" {
        let reason = "? is only allowed in day-of-month and day-of-week; write *".to_owned();
        return Err(field_error(field, reason));
    }

    let (first, last) = match range.split_once('-') {
        Some((_, last)) if last.contains('-') => {
            return Err(field_error(field, format!("{item} has more than one -")));
        }
        Some((first, last)) => (
            parse_value(field, item, first)?,
            parse_value(field, item, last)?,
        ),
        None => {
            let value = parse_value(field, item, range)?;
            let last = if stepped {
                limits.star_max.max(value)
            } else {
                value
            };
            (value, last)
        }
    };
    if first > last {
        let reason = format!(
            "range {range} runs backwards; ranges do not wrap around, so write it as a list \
             of two ranges"
        );
        return Err(field_error(field, reason));
    }
    Ok((first, last, false))
}

/// A number or a name within the field's limits.
fn parse_value(field: CronField, item: &str, text: &str) -> Result<u8, CronError> {
    let limits = field.limits();
    if text.is_empty() {
        return Err(field_error(field, format!("{item} is missing a value")));
    }
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse::<u8>()
            .ok()
            .filter(|value| (limits.min..=limits.max).contains(value))
            .ok_or_else(|| {
                let reason = format!("{text} is out of range {}-{}", limits.min, limits.max);
                field_error(field, reason)
            });
    }
    let named = limits
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text));
    match named {
        Some(index) => Ok(limits.min + index as u8),
        None => {
            let reason = format!("{text:?} is not allowed; write {}", limits.allowed);
            Err(field_error(field, reason))
        }
    }
}

fn parse_step(field: CronField, item: &str, step: &str) -> Result<u8, CronError> {
    if step.is_empty() || !step.bytes().all(|byte| byte.is_ascii_digit()) {
        let reason = format!("the step in {item} must be a whole number of at least 1");
        return Err(field_error(field, reason));
    }
    match step.parse::<u32>() {
        Ok(0) => Err(field_error(
            field,
            format!("the step in {item} must be at least 1"),
        )),
        // A step longer than the field keeps only the first value, like a step of 64 does.
        Ok(step) => Ok(step.min(64) as u8),
        Err(_) => Ok(64),
    }
}

impl Schedule {
    /// The expression exactly as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the schedule fires at this wall-clock time: a matching minute, at zero
    /// seconds.
    pub fn matches(&self, wall_clock: DateTime) -> bool {
        wall_clock.second() == 0
            && wall_clock.subsec_nanosecond() == 0
            && self.minutes.contains(wall_clock.minute())
            && self.hours.contains(wall_clock.hour())
            && self.matches_date(wall_clock.date())
    }

    /// Whether the schedule fires at some time on this date.
    pub fn matches_date(&self, date: Date) -> bool {
        self.months.contains(date.month()) && self.days.matches(date)
    }

    /// The earliest wall-clock time in `[from, until)` at which the schedule fires.
    ///
    /// Months and days that do not match are skipped whole, and within a day the hours and
    /// minutes are looked up directly, so a sparse schedule costs a few steps per month.
    pub fn next_wall_clock(&self, from: DateTime, until: DateTime) -> Option<DateTime> {
        let start = ceil_to_minute(from)?;
        let mut date = start.date();
        let mut earliest = (start.hour(), start.minute());
        while date <= until.date() {
            if !self.months.contains(date.month()) {
                date = date.last_of_month().tomorrow().ok()?;
            } else if self.days.matches(date)
                && let Some((hour, minute)) = self.first_time_from(earliest)
            {
                let found = date.at(hour, minute, 0, 0);
                return (found < until).then_some(found);
            } else {
                date = date.tomorrow().ok()?;
            }
            earliest = (0, 0);
        }
        None
    }

    /// The latest wall-clock time in `[from, until)` at which the schedule fires.
    pub fn previous_wall_clock(&self, from: DateTime, until: DateTime) -> Option<DateTime> {
        let end = until.checked_sub(SignedDuration::from_nanos(1)).ok()?;
        let mut date = end.date();
        let mut latest = (end.hour(), end.minute());
        while date >= from.date() {
            if !self.months.contains(date.month()) {
                date = date.first_of_month().yesterday().ok()?;
            } else if self.days.matches(date)
                && let Some((hour, minute)) = self.last_time_through(latest)
            {
                let found = date.at(hour, minute, 0, 0);
                return (found >= from).then_some(found);
            } else {
                date = date.yesterday().ok()?;
            }
            latest = (23, 59);
        }
        None
    }

    /// The earliest matching (hour, minute) of a day at or after the given one.
    fn first_time_from(&self, (hour, minute): (i8, i8)) -> Option<(i8, i8)> {
        if self.hours.contains(hour)
            && let Some(minute) = self.minutes.first_from(minute)
        {
            return Some((hour, minute));
        }
        let hour = self.hours.first_from(hour + 1)?;
        Some((hour, self.minutes.first_from(0)?))
    }

    /// The latest matching (hour, minute) of a day at or before the given one.
    fn last_time_through(&self, (hour, minute): (i8, i8)) -> Option<(i8, i8)> {
        if self.hours.contains(hour)
            && let Some(minute) = self.minutes.last_through(minute)
        {
            return Some((hour, minute));
        }
        let hour = self.hours.last_through(hour - 1)?;
        Some((hour, self.minutes.last_through(59)?))
    }
}

/// The first whole minute at or after `at`.
fn ceil_to_minute(at: DateTime) -> Option<DateTime> {
    let floor = at.date().at(at.hour(), at.minute(), 0, 0);
    if floor == at {
        return Some(floor);
    }
    floor.checked_add(SignedDuration::from_mins(1)).ok()
}

#[cfg(test)]
mod tests {
    use jiff::civil::{date, datetime};

    use super::*;

    fn schedule(text: &str) -> Schedule {
        match text.parse() {
            Ok(schedule) => schedule,
            Err(error) => panic!("{text:?} was refused: {error}"),
        }
    }

    fn refusal(text: &str) -> CronError {
        match text.parse::<Schedule>() {
            Ok(schedule) => panic!("{text:?} was accepted: {schedule:?}"),
            Err(error) => error,
        }
    }

    /// The first `count` wall-clock times the schedule fires at, from `from` on.
    fn firings(text: &str, from: DateTime, count: usize) -> Vec<DateTime> {
        let schedule = schedule(text);
        let mut found = Vec::new();
        let mut from = from;
        while found.len() < count {
            let Some(next) = schedule.next_wall_clock(from, DateTime::MAX) else {
                break;
            };
            found.push(next);
            from = next + SignedDuration::from_mins(1);
        }
        found
    }

    /// The days in `year`/`month` on which the schedule fires.
    fn days_in(text: &str, year: i16, month: i8) -> Vec<i8> {
        let schedule = schedule(text);
        let first = date(year, month, 1);
        (1..=first.days_in_month())
            .filter(|&day| schedule.matches_date(date(year, month, day)))
            .collect()
    }

    #[test]
    fn valid_expressions_fire_at_the_expected_minutes() {
        let start = datetime(2025, 1, 1, 0, 0, 0, 0);
        let cases: &[(&str, &[(i8, i8)])] = &[
            ("*/15 * * * *", &[(0, 0), (0, 15), (0, 30), (0, 45), (1, 0)]),
            ("1-30/10 3 * * *", &[(3, 1), (3, 11), (3, 21), (3, 1)]),
            ("10/20 0 * * *", &[(0, 10), (0, 30), (0, 50), (0, 10)]),
            ("5,10-11 22 * * *", &[(22, 5), (22, 10), (22, 11), (22, 5)]),
            ("0 */6 * * *", &[(0, 0), (6, 0), (12, 0), (18, 0)]),
            ("  30   4 * * *  ", &[(4, 30), (4, 30)]),
            ("0 0 ? * *", &[(0, 0), (0, 0)]),
            ("*/1 23 * * *", &[(23, 0), (23, 1)]),
            ("59 23 * * *", &[(23, 59), (23, 59)]),
        ];
        for &(text, expected) in cases {
            let times: Vec<(i8, i8)> = firings(text, start, expected.len())
                .iter()
                .map(|at| (at.hour(), at.minute()))
                .collect();
            assert_eq!(times, expected, "{text}");
        }
    }

    #[test]
    fn invalid_expressions_name_the_field_and_what_is_allowed() {
        let cases: &[(&str, &str)] = &[
            ("60 * * * *", "minute: 60 is out of range 0-59"),
            ("0 25 * * *", "hour: 25 is out of range 0-23"),
            ("0 0 0 * *", "day-of-month: 0 is out of range 1-31"),
            ("0 0 32 * *", "day-of-month: 32 is out of range 1-31"),
            ("0 0 * 13 *", "month: 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week: 8 is out of range 0-7"),
            (
                "0 0 * FOO *",
                "month: \"FOO\" is not allowed; write a number 1-12 or a name",
            ),
            (
                "0 0 * * FUN",
                "day-of-week: \"FUN\" is not allowed; write a number 0-7",
            ),
            (
                "x * * * *",
                "minute: \"x\" is not allowed; write a number 0-59",
            ),
            (
                "0 MON * * *",
                "hour: \"MON\" is not allowed; write a number 0-23",
            ),
            ("*/0 * * * *", "minute: the step in */0 must be at least 1"),
            (
                "*/x * * * *",
                "minute: the step in */x must be a whole number",
            ),
            ("0 1/ * * *", "hour: the step in 1/ must be a whole number"),
            ("30-10 * * * *", "minute: range 30-10 runs backwards"),
            (
                "0 0 * * SAT-SUN",
                "day-of-week: range SAT-SUN runs backwards",
            ),
            ("1-2-3 * * * *", "minute: 1-2-3 has more than one -"),
            ("1- * * * *", "minute: 1- is missing a value"),
            ("1,,2 * * * *", "minute: empty item in the list 1,,2"),
            (
                "? * * * *",
                "minute: ? is only allowed in day-of-month and day-of-week",
            ),
            (
                "0 0 * ? *",
                "month: ? is only allowed in day-of-month and day-of-week",
            ),
            (
                "0 0 1#2 * *",
                "day-of-month: 1#2: # is only allowed in day-of-week",
            ),
            (
                "0 0 * * TUE#6",
                "day-of-week: TUE#6: the occurrence after # must be 1-5",
            ),
            (
                "0 0 * * TUE#0",
                "day-of-week: TUE#0: the occurrence after # must be 1-5",
            ),
            (
                "0 0 * * TUE#",
                "day-of-week: TUE#: the occurrence after # must be 1-5",
            ),
            (
                "0 0 * * MON-FRI#2",
                "day-of-week: MON-FRI#2: # follows a single weekday",
            ),
            ("0 0 * * 8#2", "day-of-week: 8 is out of range 0-7"),
            (
                "0 0 L * *",
                "day-of-month: \"L\" is not allowed; write a number 1-31",
            ),
            ("-1 * * * *", "minute: -1 is missing a value"),
            ("999 * * * *", "minute: 999 is out of range 0-59"),
        ];
        for &(text, expected) in cases {
            let error = refusal(text);
            assert!(error.to_string().starts_with(expected), "{text:?}: {error}");
            assert_eq!(error.category(), "InvalidSchedule", "{text:?}");
        }
    }

    #[test]
    fn expressions_without_five_fields_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "schedule is empty"),
            ("   ", "schedule is empty"),
            ("* * * *", "schedule has 4 fields; write five"),
            (
                "0 * * * * *",
                "schedule has 6 fields; write five: minute hour day-of-month",
            ),
        ];
        for &(text, expected) in cases {
            let message = refusal(text).to_string();
            assert!(message.starts_with(expected), "{text:?}: {message}");
        }
        assert!(
            refusal("0 0 * * * *")
                .to_string()
                .contains("seconds is not supported")
        );
    }

    #[test]
    fn descriptors_stand_for_their_five_field_expressions() {
        let cases: &[(&str, &str)] = &[
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ];
        let start = datetime(2024, 12, 30, 7, 0, 0, 0);
        for &(descriptor, expression) in cases {
            assert_eq!(
                firings(descriptor, start, 5),
                firings(expression, start, 5),
                "{descriptor}"
            );
        }
    }

    #[test]
    fn unsupported_descriptors_and_time_zone_prefixes_are_refused() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "@every 1h",
                "@every is not supported",
                "UnsupportedSchedule",
            ),
            (
                "@fortnightly",
                "unknown descriptor @fortnightly; allowed: @yearly",
                "InvalidSchedule",
            ),
            ("@Daily", "unknown descriptor @Daily", "InvalidSchedule"),
            ("@daily 0", "unknown descriptor @daily 0", "InvalidSchedule"),
            (
                "TZ=UTC 0 3 * * *",
                "time zone prefixes such as TZ=UTC",
                "UnsupportedSchedule",
            ),
            (
                "CRON_TZ=Europe/Berlin 0 3 * * *",
                "such as CRON_TZ=Europe/Berlin",
                "UnsupportedSchedule",
            ),
        ];
        for &(text, expected, category) in cases {
            let error = refusal(text);
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
            assert_eq!(error.category(), category, "{text:?}");
        }
        assert!(
            refusal("TZ=UTC 0 3 * * *")
                .to_string()
                .contains("use the window's timeZone field")
        );
    }

    #[test]
    fn month_and_weekday_names_are_case_insensitive() {
        let cases: &[(&str, &str)] = &[
            ("0 0 1 jan,Jul *", "0 0 1 1,7 *"),
            ("0 0 1 JAN-MAR *", "0 0 1 1-3 *"),
            ("0 0 * * mon-FRI", "0 0 * * 1-5"),
            ("0 0 * * Sun", "0 0 * * 0"),
            ("0 0 * * MON/2", "0 0 * * 1-6/2"),
        ];
        let start = datetime(2025, 1, 1, 0, 0, 0, 0);
        for &(named, numbered) in cases {
            assert_eq!(
                firings(named, start, 20),
                firings(numbered, start, 20),
                "{named}"
            );
        }
    }

    #[test]
    fn seven_is_sunday_like_zero() {
        assert_eq!(days_in("0 0 * * 7", 2025, 6), days_in("0 0 * * 0", 2025, 6));
        assert_eq!(
            days_in("0 0 * * 5-7", 2025, 6),
            days_in("0 0 * * 0,5,6", 2025, 6)
        );
        assert_eq!(
            days_in("0 0 * * 0-7", 2025, 6),
            days_in("0 0 * * *", 2025, 6)
        );
    }

    #[test]
    fn nth_weekday_items_select_that_occurrence_in_the_month() {
        // June 2025 starts on a Sunday and has 30 days: five Sundays and Mondays, four Tuesdays.
        let cases: &[(&str, &[i8])] = &[
            ("0 3 * * TUE#2", &[10]),
            ("0 3 * * 2#2", &[10]),
            ("0 3 * * tue#1", &[3]),
            ("0 3 * * TUE#5", &[]),
            ("0 3 * * MON#5", &[30]),
            ("0 3 * * TUE#L", &[24]),
            ("0 3 * * WED#L", &[25]),
            ("0 3 * * SUN#L", &[29]),
            ("0 3 * * 7#1", &[1]),
            ("0 3 * * MON#1,FRI#L", &[2, 27]),
            ("0 3 * * SAT,MON#1", &[2, 7, 14, 21, 28]),
        ];
        for &(text, expected) in cases {
            assert_eq!(days_in(text, 2025, 6), expected, "{text}");
        }
    }

    #[test]
    fn patch_tuesday_fires_on_the_second_tuesday_of_each_month() {
        let start = datetime(2025, 11, 1, 0, 0, 0, 0);
        let expected = [
            datetime(2025, 11, 11, 3, 0, 0, 0),
            datetime(2025, 12, 9, 3, 0, 0, 0),
            datetime(2026, 1, 13, 3, 0, 0, 0),
            datetime(2026, 2, 10, 3, 0, 0, 0),
        ];
        assert_eq!(firings("0 3 * * TUE#2", start, 4), expected);
    }

    #[test]
    fn restricting_both_day_fields_fires_when_either_matches() {
        // June 2025: Mondays are the 2nd, 9th, 16th, 23rd and 30th.
        let cases: &[(&str, &[i8])] = &[
            ("0 0 1,15 * MON", &[1, 2, 9, 15, 16, 23, 30]),
            ("0 0 1 * MON#1", &[1, 2]),
            ("0 0 */10 * MON", &[1, 2, 9, 11, 16, 21, 23, 30]),
            ("0 0 1-31 * MON", &(1..=30).collect::<Vec<i8>>()),
        ];
        for &(text, expected) in cases {
            assert_eq!(days_in(text, 2025, 6), expected, "{text}");
        }
    }

    #[test]
    fn a_star_in_one_day_field_leaves_only_the_other() {
        let cases: &[(&str, &[i8])] = &[
            ("0 0 1,15 * *", &[1, 15]),
            ("0 0 1,15 * ?", &[1, 15]),
            ("0 0 * * MON", &[2, 9, 16, 23, 30]),
            ("0 0 ? * MON", &[2, 9, 16, 23, 30]),
            ("0 0 */1 * MON", &[2, 9, 16, 23, 30]),
            ("0 0 *,1 * MON", &[2, 9, 16, 23, 30]),
        ];
        for &(text, expected) in cases {
            assert_eq!(days_in(text, 2025, 6), expected, "{text}");
        }
    }

    #[test]
    fn next_firings_cross_month_and_year_ends() {
        let cases: &[(&str, DateTime, DateTime)] = &[
            (
                "0 0 1 * *",
                datetime(2025, 1, 31, 12, 0, 0, 0),
                datetime(2025, 2, 1, 0, 0, 0, 0),
            ),
            (
                "0 0 31 * *",
                datetime(2025, 4, 1, 0, 0, 0, 0),
                datetime(2025, 5, 31, 0, 0, 0, 0),
            ),
            (
                "30 23 * * *",
                datetime(2025, 12, 31, 23, 31, 0, 0),
                datetime(2026, 1, 1, 23, 30, 0, 0),
            ),
            (
                "0 0 1 1 *",
                datetime(2025, 1, 1, 0, 0, 0, 1),
                datetime(2026, 1, 1, 0, 0, 0, 0),
            ),
            (
                "15 10 * DEC *",
                datetime(2025, 12, 31, 10, 16, 0, 0),
                datetime(2026, 12, 1, 10, 15, 0, 0),
            ),
            (
                "*/5 * * * *",
                datetime(2025, 12, 31, 23, 58, 30, 0),
                datetime(2026, 1, 1, 0, 0, 0, 0),
            ),
        ];
        for &(text, from, expected) in cases {
            assert_eq!(firings(text, from, 1), [expected], "{text} from {from}");
        }
    }

    #[test]
    fn leap_day_schedules_fire_only_in_leap_years() {
        let expected = [
            datetime(2028, 2, 29, 0, 0, 0, 0),
            datetime(2032, 2, 29, 0, 0, 0, 0),
            datetime(2096, 2, 29, 0, 0, 0, 0),
            datetime(2104, 2, 29, 0, 0, 0, 0),
        ];
        let found = firings("0 0 29 2 *", datetime(2025, 3, 1, 0, 0, 0, 0), 19);
        assert_eq!(&found[..2], &expected[..2]);
        assert_eq!(&found[17..], &expected[2..]);
    }

    #[test]
    fn a_schedule_for_a_missing_date_never_fires() {
        let schedule = schedule("0 0 30 2 *");
        let from = datetime(2025, 1, 1, 0, 0, 0, 0);
        assert_eq!(
            schedule.next_wall_clock(from, datetime(2425, 1, 1, 0, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn the_search_stops_at_its_upper_bound() {
        let schedule = schedule("0 12 * * *");
        let from = datetime(2025, 1, 1, 0, 0, 0, 0);
        assert_eq!(
            schedule.next_wall_clock(from, datetime(2025, 1, 1, 12, 0, 0, 0)),
            None
        );
        assert_eq!(
            schedule.next_wall_clock(from, datetime(2025, 1, 1, 12, 0, 0, 1)),
            Some(datetime(2025, 1, 1, 12, 0, 0, 0))
        );
    }

    #[test]
    fn previous_firings_are_found_backwards_across_years() {
        let cases: &[(&str, DateTime, DateTime)] = &[
            (
                "0 3 * * TUE#2",
                datetime(2026, 1, 13, 3, 0, 0, 0),
                datetime(2025, 12, 9, 3, 0, 0, 0),
            ),
            (
                "0 3 * * TUE#2",
                datetime(2026, 1, 13, 3, 0, 0, 1),
                datetime(2026, 1, 13, 3, 0, 0, 0),
            ),
            (
                "0 0 29 2 *",
                datetime(2031, 1, 1, 0, 0, 0, 0),
                datetime(2028, 2, 29, 0, 0, 0, 0),
            ),
            (
                "*/20 9-17 * * *",
                datetime(2025, 3, 3, 9, 0, 0, 0),
                datetime(2025, 3, 2, 17, 40, 0, 0),
            ),
        ];
        for &(text, until, expected) in cases {
            let found = schedule(text).previous_wall_clock(DateTime::MIN, until);
            assert_eq!(found, Some(expected), "{text} before {until}");
        }
    }

    #[test]
    fn display_keeps_the_original_text() {
        for text in ["0 3 * * tue#2", "@daily", " */15  * * * * "] {
            assert_eq!(schedule(text).to_string(), text);
        }
    }
}
