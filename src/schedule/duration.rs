//! Durations written the way Kubernetes writes them (Go's `time.ParseDuration`), such as
//! `1h30m`, `90s`, `1.5h` or `500ms`.
//!
//! Parsed durations are [`SignedDuration`]s, the type jiff adds to timestamps, and they are
//! never negative. Go's units are accepted: `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`.
//! Days and weeks are not Kubernetes units; a value that uses them is refused with the same
//! value written in hours, so that `7d` gets the answer "write 168h".
//!
//! Two formatters print durations back: [`to_go_string`] writes exactly what Go's
//! `Duration.String()` writes (`1h30m0s`), which is how `metav1.Duration` fields appear in
//! `kubectl get -o yaml`, so status fields written with it read the same as those of
//! Kubernetes itself; [`to_compact_string`] leaves out zero parts (`1h30m`, `168h`) for
//! messages meant to be read by a person. Both are accepted by [`parse_duration`].

use jiff::SignedDuration;

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: u128 = 24 * NANOS_PER_HOUR;

/// Go stores a duration in a signed 64-bit count of nanoseconds; longer values are refused
/// like Kubernetes refuses them (a little over 106 751 days).
const LONGEST_NANOS: u128 = i64::MAX as u128;

/// Fraction digits beyond this many cannot change the result by a whole nanosecond.
const MAX_FRACTION_DIGITS: usize = 18;

/// The units a Kubernetes duration may use, as named in error messages.
const UNITS: &str = "ns, us, µs, ms, s, m, h";

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("duration is empty; write a number with a unit, such as 90m or 2h")]
    Empty,
    /// The value starts with a minus sign.
    #[error("{text} is negative; a duration must be zero or more")]
    Negative {
        /// The value as written.
        text: String,
    },
    /// A number has no unit after it (only a bare `0` may go without one).
    #[error("{text} has a number without a unit; add one of {UNITS}, as in 90m")]
    MissingUnit {
        /// The value as written.
        text: String,
    },
    /// A unit that is not one of Go's, such as `y`.
    #[error("{text} uses the unknown unit {unit:?}; allowed units: {UNITS}")]
    UnknownUnit {
        /// The value as written.
        text: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// Days or weeks, which Kubernetes durations do not have.
    #[error("{text} is not a Kubernetes duration; write {suggestion}")]
    CalendarUnit {
        /// The value as written.
        text: String,
        /// The same length written in hours.
        suggestion: String,
    },
    /// Something that is not a sequence of numbers with units.
    #[error("{text} is not a duration; write numbers with units, such as 1h30m or 1.5h")]
    Malformed {
        /// The value as written.
        text: String,
    },
    /// Longer than a Kubernetes duration can be.
    #[error("{text} is too long; a duration can be at most 2562047h")]
    TooLong {
        /// The value as written.
        text: String,
    },
}

impl DurationError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidDuration"
    }
}

/// Whether day and week units are read (to suggest the equivalent in hours) or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Units {
    Kubernetes,
    WithCalendar,
}

/// Parses a duration the way Kubernetes (Go's `time.ParseDuration`) does, refusing negative
/// values and calendar units.
pub fn parse_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let nanos = match total_nanos(text, Units::Kubernetes) {
        Err(DurationError::UnknownUnit { unit, .. }) if calendar_unit(&unit).is_some() => {
            return Err(suggest_hours(text));
        }
        other => other?,
    };
    let nanos = i64::try_from(nanos).map_err(|_| too_long(text))?;
    Ok(SignedDuration::from_nanos(nanos))
}

/// The refusal of a value written with days or weeks, naming the same length in hours.
fn suggest_hours(text: &str) -> DurationError {
    match total_nanos(text, Units::WithCalendar) {
        Ok(nanos) => DurationError::CalendarUnit {
            text: text.to_owned(),
            suggestion: compact_nanos(nanos),
        },
        Err(error) => error,
    }
}

/// The sum of all `number unit` parts of `text`, in nanoseconds.
fn total_nanos(text: &str, units: Units) -> Result<u128, DurationError> {
    let unsigned = match text.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => {
            return Err(DurationError::Negative {
                text: text.to_owned(),
            });
        }
        Some(b'+') => &text[1..],
        Some(_) => text,
    };
    if unsigned == "0" {
        return Ok(0);
    }
    if unsigned.is_empty() {
        return Err(malformed(text));
    }

    let mut rest = unsigned;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (part, remainder) = next_part(text, rest, units)?;
        total = total.saturating_add(part);
        if total > LONGEST_NANOS {
            return Err(too_long(text));
        }
        rest = remainder;
    }
    Ok(total)
}

/// Reads one `number unit` part from the front of `rest`: its length and what follows it.
fn next_part<'t>(
    text: &str,
    rest: &'t str,
    units: Units,
) -> Result<(u128, &'t str), DurationError> {
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, rest) = rest.split_at(number_len);
    let unit_len = rest
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_len);

    let (whole, fraction) = split_number(text, number)?;
    if unit.is_empty() {
        return Err(DurationError::MissingUnit {
            text: text.to_owned(),
        });
    }
    let unit_nanos = unit_nanos(unit, units).ok_or_else(|| DurationError::UnknownUnit {
        text: text.to_owned(),
        unit: unit.to_owned(),
    })?;
    Ok((part_nanos(text, whole, fraction, unit_nanos)?, rest))
}

/// Splits `12.5` into `12` and `5`; either side may be empty, but not both.
fn split_number<'n>(text: &str, number: &'n str) -> Result<(&'n str, &'n str), DurationError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(malformed(text));
    }
    Ok((whole, fraction))
}

/// The length of `whole.fraction` units, truncated to whole nanoseconds like Go does.
fn part_nanos(text: &str, whole: &str, fraction: &str, unit: u128) -> Result<u128, DurationError> {
    let whole = digits_value(whole).ok_or_else(|| too_long(text))?;
    let whole_nanos = whole.checked_mul(unit).ok_or_else(|| too_long(text))?;

    let kept = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let numerator = digits_value(kept).ok_or_else(|| malformed(text))?;
    let denominator = 10u128.pow(kept.len() as u32);
    Ok(whole_nanos.saturating_add(numerator * unit / denominator))
}

/// The value of a run of ASCII digits (zero when empty), or `None` when it is too large.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |value, digit| {
        let value = value
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
        (value <= LONGEST_NANOS).then_some(value)
    })
}

/// Nanoseconds per unit, for Go's units and, when asked, days and weeks.
fn unit_nanos(unit: &str, units: Units) -> Option<u128> {
    let nanos = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        _ if units == Units::WithCalendar => return calendar_unit(unit),
        _ => return None,
    };
    Some(nanos)
}

/// Nanoseconds per day or week, for the units people write although Kubernetes has none.
fn calendar_unit(unit: &str) -> Option<u128> {
    match unit {
        "d" => Some(NANOS_PER_DAY),
        "w" => Some(7 * NANOS_PER_DAY),
        _ => None,
    }
}

fn malformed(text: &str) -> DurationError {
    DurationError::Malformed {
        text: text.to_owned(),
    }
}

fn too_long(text: &str) -> DurationError {
    DurationError::TooLong {
        text: text.to_owned(),
    }
}

/// Writes a duration exactly as Go's `Duration.String()` does: `1h30m0s`, `2h0m0s`, `1.5s`,
/// `500ms`, `0s`; negative durations get a leading `-`.
pub fn to_go_string(duration: SignedDuration) -> String {
    let nanos = duration.as_nanos();
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    if nanos < NANOS_PER_SECOND {
        return format!("{sign}{}", sub_second(nanos));
    }

    let (hours, minutes, seconds) = clock_parts(nanos);
    let mut text = String::from(sign);
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&seconds);
    text
}

/// Writes a duration in Go's notation without its zero parts: `1h30m`, `168h`, `1m0.5s`,
/// `500ms`, `0s`; negative durations get a leading `-`.
pub fn to_compact_string(duration: SignedDuration) -> String {
    let nanos = duration.as_nanos();
    let sign = if nanos < 0 { "-" } else { "" };
    format!("{sign}{}", compact_nanos(nanos.unsigned_abs()))
}

fn compact_nanos(nanos: u128) -> String {
    if nanos < NANOS_PER_SECOND {
        return sub_second(nanos);
    }
    let (hours, minutes, seconds) = clock_parts(nanos);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    let has_seconds = !nanos.is_multiple_of(NANOS_PER_MINUTE);
    if minutes > 0 || (hours > 0 && has_seconds) {
        text.push_str(&format!("{minutes}m"));
    }
    if has_seconds {
        text.push_str(&seconds);
    }
    text
}

/// Whole hours, whole minutes of the hour, and the seconds written with their unit.
fn clock_parts(nanos: u128) -> (u128, u128, String) {
    let whole_seconds = nanos / NANOS_PER_SECOND;
    let seconds = decimal(whole_seconds % 60, nanos % NANOS_PER_SECOND, 9);
    (
        whole_seconds / 3600,
        whole_seconds / 60 % 60,
        format!("{seconds}s"),
    )
}

/// Durations under a second, in the largest unit that keeps the integer part non-zero.
fn sub_second(nanos: u128) -> String {
    match nanos {
        0 => "0s".to_owned(),
        n if n < NANOS_PER_MICRO => format!("{n}ns"),
        n if n < NANOS_PER_MILLI => format!("{}µs", decimal(n / 1_000, n % 1_000, 3)),
        n => format!("{}ms", decimal(n / 1_000_000, n % 1_000_000, 6)),
    }
}

/// `whole.fraction` with the fraction zero-padded to `digits` and its trailing zeros removed.
fn decimal(whole: u128, fraction: u128, digits: usize) -> String {
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> i128 {
        match parse_duration(text) {
            Ok(duration) => duration.as_nanos(),
            Err(error) => panic!("{text:?} was refused: {error}"),
        }
    }

    fn refusal(text: &str) -> String {
        match parse_duration(text) {
            Ok(duration) => panic!("{text:?} was accepted as {duration:?}"),
            Err(error) => error.to_string(),
        }
    }

    const SECOND: i128 = 1_000_000_000;

    #[test]
    fn kubernetes_durations_parse_to_their_length() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("0s", 0),
            ("90s", 90 * SECOND),
            ("2h", 7200 * SECOND),
            ("1h30m", 5400 * SECOND),
            ("1.5h", 5400 * SECOND),
            (".5h", 1800 * SECOND),
            ("5.m", 300 * SECOND),
            ("500ms", SECOND / 2),
            ("250us", 250_000),
            ("250µs", 250_000),
            ("250μs", 250_000),
            ("42ns", 42),
            ("1h0m0s", 3600 * SECOND),
            ("+15m", 900 * SECOND),
            ("1m1.5s", 61 * SECOND + SECOND / 2),
            ("0.000000001s", 1),
            ("2562047h", 2_562_047 * 3600 * SECOND),
        ];
        for &(text, expected) in cases {
            assert_eq!(nanos(text), expected, "{text}");
        }
    }

    #[test]
    fn fractions_are_truncated_to_whole_nanoseconds() {
        assert_eq!(nanos("1.9999999999ns"), 1);
        assert_eq!(nanos("0.3333333333333333333333s"), 333_333_333);
    }

    #[test]
    fn malformed_durations_are_refused_with_what_to_write() {
        let cases: &[(&str, &str)] = &[
            ("", "duration is empty"),
            ("-1h", "-1h is negative"),
            ("-0", "-0 is negative"),
            ("90", "90 has a number without a unit"),
            ("1h30", "1h30 has a number without a unit"),
            ("5y", "unknown unit \"y\""),
            ("1H", "unknown unit \"H\""),
            ("h", "h is not a duration"),
            ("1..5h", "1..5h is not a duration"),
            (".h", ".h is not a duration"),
            ("+", "+ is not a duration"),
            ("1h 30m", "unknown unit \"h \""),
            ("2562048h", "2562048h is too long"),
            ("99999999999999999999999h", "is too long"),
        ];
        for &(text, expected) in cases {
            let message = refusal(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn days_and_weeks_are_refused_with_the_same_length_in_hours() {
        let cases: &[(&str, &str)] = &[
            ("7d", "7d is not a Kubernetes duration; write 168h"),
            ("1d12h", "1d12h is not a Kubernetes duration; write 36h"),
            ("1.5d", "1.5d is not a Kubernetes duration; write 36h"),
            ("2w", "2w is not a Kubernetes duration; write 336h"),
            ("1d30m", "1d30m is not a Kubernetes duration; write 24h30m"),
        ];
        for &(text, expected) in cases {
            assert_eq!(refusal(text), expected, "{text}");
        }
    }

    #[test]
    fn a_day_unit_next_to_an_unknown_unit_reports_the_unknown_unit() {
        assert!(refusal("1d2y").contains("unknown unit \"y\""));
    }

    #[test]
    fn go_strings_match_go_duration_string() {
        let cases: &[(i128, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (SECOND / 2, "500ms"),
            (SECOND, "1s"),
            (SECOND + SECOND / 2, "1.5s"),
            (90 * SECOND, "1m30s"),
            (3600 * SECOND, "1h0m0s"),
            (5400 * SECOND, "1h30m0s"),
            (100 * 3600 * SECOND + 1, "100h0m0.000000001s"),
            (-90 * SECOND, "-1m30s"),
        ];
        for &(nanos, expected) in cases {
            let duration = SignedDuration::from_nanos_i128(nanos);
            assert_eq!(to_go_string(duration), expected, "{nanos}ns");
        }
    }

    #[test]
    fn compact_strings_leave_out_zero_parts() {
        let cases: &[(i128, &str)] = &[
            (0, "0s"),
            (SECOND / 2, "500ms"),
            (90 * SECOND, "1m30s"),
            (3600 * SECOND, "1h"),
            (5400 * SECOND, "1h30m"),
            (3600 * SECOND + SECOND, "1h0m1s"),
            (168 * 3600 * SECOND, "168h"),
            (60 * SECOND + SECOND / 2, "1m0.5s"),
        ];
        for &(nanos, expected) in cases {
            let duration = SignedDuration::from_nanos_i128(nanos);
            assert_eq!(to_compact_string(duration), expected, "{nanos}ns");
        }
    }

    proptest::proptest! {
        #[test]
        fn both_formats_parse_back_to_the_same_duration(nanos in 0i64..i64::MAX) {
            let duration = SignedDuration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_duration(&to_go_string(duration)), Ok(duration));
            proptest::prop_assert_eq!(parse_duration(&to_compact_string(duration)), Ok(duration));
        }
    }
}
