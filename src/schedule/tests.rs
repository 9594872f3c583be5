use std::ops::Range;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};
use proptest::prelude::*;

use super::*;

fn timing(schedule: &str, zone: &str, duration: &str, cutoff: &str) -> WindowTiming {
    match WindowTiming::parse(schedule, zone, duration, cutoff) {
        Ok(timing) => timing,
        Err(error) => panic!("{schedule:?} in {zone}: {error}"),
    }
}

fn instant(text: &str) -> Timestamp {
    match text.parse() {
        Ok(instant) => instant,
        Err(error) => panic!("{text:?}: {error}"),
    }
}

/// The first `count` openings after `after`, as UTC instants.
fn openings(timing: &WindowTiming, after: &str, count: usize) -> Vec<String> {
    timing
        .occurrences_after(instant(after))
        .take(count)
        .map(|occurrence| occurrence.opens.timestamp().to_string())
        .collect()
}

fn wall_clock(zoned: &Zoned) -> String {
    zoned.datetime().to_string()
}

#[test]
fn a_daily_window_in_the_spring_forward_gap_opens_once_shifted_by_the_gap() {
    let cases: &[(&str, &str, [&str; 3])] = &[
        (
            "America/New_York",
            "2025-03-07T12:00:00Z",
            [
                "2025-03-08T07:30:00Z",
                "2025-03-09T07:30:00Z",
                "2025-03-10T06:30:00Z",
            ],
        ),
        (
            "Europe/Berlin",
            "2025-03-28T12:00:00Z",
            [
                "2025-03-29T01:30:00Z",
                "2025-03-30T01:30:00Z",
                "2025-03-31T00:30:00Z",
            ],
        ),
        (
            "Australia/Sydney",
            "2025-10-03T00:00:00Z",
            [
                "2025-10-03T16:30:00Z",
                "2025-10-04T16:30:00Z",
                "2025-10-05T15:30:00Z",
            ],
        ),
    ];
    for &(zone, after, expected) in cases {
        let timing = timing("30 2 * * *", zone, "1h", "0s");
        assert_eq!(openings(&timing, after, 3), expected, "{zone}");
        let Some(gap_day) = timing.occurrences_after(instant(after)).nth(1) else {
            panic!("{zone}: no second opening");
        };
        assert!(
            wall_clock(&gap_day.opens).ends_with("T03:30:00"),
            "{zone}: {}",
            gap_day.opens
        );
    }
}

#[test]
fn a_daily_window_in_the_fall_back_overlap_opens_once_at_the_first_occurrence() {
    let cases: &[(&str, &str, &str, [&str; 3])] = &[
        (
            "America/New_York",
            "30 1 * * *",
            "2025-10-31T12:00:00Z",
            [
                "2025-11-01T05:30:00Z",
                "2025-11-02T05:30:00Z",
                "2025-11-03T06:30:00Z",
            ],
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2025-10-24T12:00:00Z",
            [
                "2025-10-25T00:30:00Z",
                "2025-10-26T00:30:00Z",
                "2025-10-27T01:30:00Z",
            ],
        ),
        (
            "Australia/Sydney",
            "30 2 * * *",
            "2025-04-04T00:00:00Z",
            [
                "2025-04-04T15:30:00Z",
                "2025-04-05T15:30:00Z",
                "2025-04-06T16:30:00Z",
            ],
        ),
    ];
    for &(zone, schedule, after, expected) in cases {
        let timing = timing(schedule, zone, "1h", "0s");
        assert_eq!(openings(&timing, after, 3), expected, "{zone}");
    }
}

#[test]
fn an_hourly_schedule_opens_once_per_wall_clock_hour_when_clocks_go_back() {
    let timing = timing("30 * * * *", "America/New_York", "15m", "0s");
    let found: Vec<(String, String)> = timing
        .occurrences_after(instant("2025-11-02T03:00:00Z"))
        .take(5)
        .map(|occurrence| {
            (
                occurrence.opens.timestamp().to_string(),
                wall_clock(&occurrence.opens),
            )
        })
        .collect();
    let expected = [
        ("2025-11-02T03:30:00Z", "2025-11-01T23:30:00"),
        ("2025-11-02T04:30:00Z", "2025-11-02T00:30:00"),
        ("2025-11-02T05:30:00Z", "2025-11-02T01:30:00"),
        ("2025-11-02T07:30:00Z", "2025-11-02T02:30:00"),
        ("2025-11-02T08:30:00Z", "2025-11-02T03:30:00"),
    ]
    .map(|(utc, wall)| (utc.to_owned(), wall.to_owned()));
    assert_eq!(found, expected);
}

#[test]
fn an_hourly_schedule_opens_once_per_real_hour_when_clocks_go_forward() {
    let timing = timing("30 * * * *", "America/New_York", "15m", "0s");
    let expected = [
        "2025-03-09T05:30:00Z",
        "2025-03-09T06:30:00Z",
        "2025-03-09T07:30:00Z",
        "2025-03-09T08:30:00Z",
    ];
    assert_eq!(openings(&timing, "2025-03-09T05:00:00Z", 4), expected);
}

#[test]
fn skipped_times_and_the_real_times_after_the_gap_open_one_window_each_instant() {
    let timing = timing("*/30 * * * *", "America/New_York", "15m", "0s");
    let expected = [
        "2025-03-09T06:30:00Z",
        "2025-03-09T07:00:00Z",
        "2025-03-09T07:30:00Z",
        "2025-03-09T08:00:00Z",
        "2025-03-09T08:30:00Z",
    ];
    assert_eq!(openings(&timing, "2025-03-09T06:00:00Z", 5), expected);
}

#[test]
fn an_hourly_schedule_in_berlin_skips_the_repeated_hour_when_clocks_go_back() {
    let timing = timing("0 * * * *", "Europe/Berlin", "15m", "0s");
    let expected = ["2025-10-26T00:00:00Z", "2025-10-26T02:00:00Z"];
    assert_eq!(openings(&timing, "2025-10-25T23:30:00Z", 2), expected);
}

#[test]
fn a_window_open_across_a_clock_change_lasts_its_duration_in_real_time() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // New York falls back at 02:00: four real hours from 00:00 end at 03:00.
        (
            "America/New_York",
            "2025-11-01T12:00:00Z",
            "2025-11-02T04:00:00Z",
            "2025-11-02T08:00:00Z",
            "T03:00:00",
        ),
        // New York springs forward at 02:00: four real hours from 00:00 end at 05:00.
        (
            "America/New_York",
            "2025-03-08T12:00:00Z",
            "2025-03-09T05:00:00Z",
            "2025-03-09T09:00:00Z",
            "T05:00:00",
        ),
        (
            "Europe/Berlin",
            "2025-10-25T12:00:00Z",
            "2025-10-25T22:00:00Z",
            "2025-10-26T02:00:00Z",
            "T03:00:00",
        ),
        (
            "Europe/Berlin",
            "2025-03-29T12:00:00Z",
            "2025-03-29T23:00:00Z",
            "2025-03-30T03:00:00Z",
            "T05:00:00",
        ),
    ];
    for &(zone, after, opens, closes, closes_wall_clock) in cases {
        let timing = timing("0 0 * * *", zone, "4h", "1h");
        let Some(occurrence) = timing.next_occurrence_after(instant(after)) else {
            panic!("{zone}: no opening");
        };
        assert_eq!(occurrence.opens.timestamp(), instant(opens), "{zone}");
        assert_eq!(occurrence.closes.timestamp(), instant(closes), "{zone}");
        assert!(
            wall_clock(&occurrence.closes).ends_with(closes_wall_clock),
            "{zone}"
        );
        let last_start = occurrence.closes.timestamp() - SignedDuration::from_hours(1);
        assert_eq!(occurrence.last_start.timestamp(), last_start, "{zone}");
    }
}

#[test]
fn a_window_is_open_from_its_opening_until_just_before_its_close() {
    let timing = timing("0 1 * * *", "Europe/Berlin", "3h", "30m");
    // 01:00 CEST on the night the clocks go back; three real hours end at 03:00 CET.
    let cases: &[(&str, Option<&str>)] = &[
        ("2025-10-25T22:59:59Z", None),
        ("2025-10-25T23:00:00Z", Some("2025-10-25T23:00:00Z")),
        ("2025-10-26T01:59:59Z", Some("2025-10-25T23:00:00Z")),
        ("2025-10-26T02:00:00Z", None),
    ];
    for &(at, expected) in cases {
        let found = timing
            .open_at(instant(at))
            .map(|occurrence| occurrence.opens.timestamp());
        assert_eq!(found, expected.map(instant), "at {at}");
        assert_eq!(
            timing.is_open_at(instant(at)),
            expected.is_some(),
            "at {at}"
        );
    }
}

#[test]
fn new_starts_stop_at_the_cutoff_before_the_close() {
    let timing = timing("0 1 * * *", "UTC", "3h", "30m");
    let Some(occurrence) = timing.open_at(instant("2025-06-01T02:00:00Z")) else {
        panic!("no open window");
    };
    assert_eq!(
        occurrence.last_start.timestamp(),
        instant("2025-06-01T03:30:00Z")
    );
    assert!(occurrence.accepts_new_starts_at(instant("2025-06-01T03:29:59Z")));
    assert!(!occurrence.accepts_new_starts_at(instant("2025-06-01T03:30:00Z")));
    assert!(occurrence.is_open_at(instant("2025-06-01T03:30:00Z")));
    assert!(!occurrence.is_open_at(instant("2025-06-01T04:00:00Z")));
}

#[test]
fn a_window_shifted_by_the_gap_is_open_from_its_shifted_opening() {
    let timing = timing("30 2 * * *", "America/New_York", "1h", "0s");
    let found = timing.open_at(instant("2025-03-09T07:45:00Z"));
    let opens = found.map(|occurrence| occurrence.opens.timestamp());
    assert_eq!(opens, Some(instant("2025-03-09T07:30:00Z")));
}

#[test]
fn the_second_pass_through_a_repeated_hour_opens_no_window() {
    let timing = timing("30 1 * * *", "America/New_York", "30m", "0s");
    assert!(timing.is_open_at(instant("2025-11-02T05:45:00Z")));
    // 01:45 EST, the second time the clocks show 01:45 that night.
    assert!(!timing.is_open_at(instant("2025-11-02T06:45:00Z")));
}

#[test]
fn overlapping_windows_report_the_latest_opening() {
    let timing = timing("0 * * * *", "UTC", "90m", "0s");
    let found = timing.open_at(instant("2025-06-01T01:15:00Z"));
    let opens = found.map(|occurrence| occurrence.opens.timestamp());
    assert_eq!(opens, Some(instant("2025-06-01T01:00:00Z")));
}

#[test]
fn openings_cross_month_and_year_ends_in_the_window_zone() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "0 0 1 * *",
            "America/New_York",
            "2025-12-15T00:00:00Z",
            "2026-01-01T05:00:00Z",
        ),
        (
            "0 22 31 * *",
            "Europe/Berlin",
            "2025-12-01T00:00:00Z",
            "2025-12-31T21:00:00Z",
        ),
        (
            "0 3 * * TUE#2",
            "Europe/Berlin",
            "2025-12-09T02:00:00Z",
            "2026-01-13T02:00:00Z",
        ),
        (
            "0 0 29 2 *",
            "Europe/Berlin",
            "2025-01-01T00:00:00Z",
            "2028-02-28T23:00:00Z",
        ),
        (
            "0 0 29 2 *",
            "UTC",
            "2028-02-29T00:00:00Z",
            "2032-02-29T00:00:00Z",
        ),
        (
            "@yearly",
            "Australia/Sydney",
            "2025-06-01T00:00:00Z",
            "2025-12-31T13:00:00Z",
        ),
    ];
    for &(schedule, zone, after, expected) in cases {
        let timing = timing(schedule, zone, "1h", "0s");
        assert_eq!(
            openings(&timing, after, 1),
            [expected],
            "{schedule} in {zone}"
        );
    }
}

#[test]
fn sparse_schedules_find_openings_decades_ahead() {
    // A fifth Monday in February needs February 29th to be a Monday.
    let timing = timing("0 3 * 2 MON#5", "UTC", "1h", "0s");
    let expected = ["2044-02-29T03:00:00Z", "2072-02-29T03:00:00Z"];
    assert_eq!(openings(&timing, "2025-01-01T00:00:00Z", 2), expected);
}

#[test]
fn a_schedule_that_names_no_real_date_has_no_openings() {
    let timing = timing("0 0 30 2 *", "Europe/Berlin", "1h", "0s");
    assert_eq!(
        timing.next_occurrence_after(instant("2025-01-01T00:00:00Z")),
        None
    );
    assert_eq!(timing.open_at(instant("2025-01-01T00:00:00Z")), None);
}

#[test]
fn invalid_window_fields_are_refused_naming_the_field() {
    let cases: &[([&str; 4], &str, &str)] = &[
        (
            ["0 25 * * *", "UTC", "1h", "0s"],
            "schedule: hour: 25 is out of range 0-23",
            "InvalidSchedule",
        ),
        (
            ["@every 1h", "UTC", "1h", "0s"],
            "schedule: @every is not supported",
            "UnsupportedSchedule",
        ),
        (
            ["@daily", "Mars/Olympus", "1h", "0s"],
            "timeZone: unknown time zone \"Mars/Olympus\"",
            "UnknownTimeZone",
        ),
        (
            ["@daily", "UTC", "7d", "0s"],
            "duration: 7d is not a Kubernetes duration; write 168h",
            "InvalidDuration",
        ),
        (
            ["@daily", "UTC", "0", "0s"],
            "duration: 0s leaves no time to patch",
            "InvalidDuration",
        ),
        (
            ["@daily", "UTC", "1h", "10"],
            "cutoff: 10 has a number without a unit",
            "InvalidCutoff",
        ),
        (
            ["@daily", "UTC", "1h", "1h"],
            "cutoff: 1h is not shorter than the duration 1h",
            "InvalidCutoff",
        ),
        (
            ["@daily", "UTC", "2h", "3h"],
            "cutoff: 3h is not shorter than the duration 2h",
            "InvalidCutoff",
        ),
    ];
    for &([schedule, zone, duration, cutoff], expected, category) in cases {
        let Err(error) = WindowTiming::parse(schedule, zone, duration, cutoff) else {
            panic!("{schedule:?} {zone} {duration} {cutoff} was accepted");
        };
        assert!(error.to_string().starts_with(expected), "{error}");
        assert_eq!(error.category(), category, "{error}");
    }
}

#[test]
fn a_negative_cutoff_given_directly_is_refused() {
    let result = WindowTiming::new(
        "@daily".parse().unwrap_or_else(|error| panic!("{error}")),
        TimeZone::UTC,
        SignedDuration::from_hours(1),
        SignedDuration::from_mins(-5),
    );
    let Err(error) = result else {
        panic!("accepted")
    };
    assert_eq!(
        error.to_string(),
        "cutoff: -5m is negative; a cutoff must be zero or more"
    );
}

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Asia/Kolkata",
    "Europe/Dublin",
    "Pacific/Chatham",
    "America/Santiago",
];

/// Field texts the generated schedules are made of, besides plain numbers.
const MINUTES: &[&str] = &[
    "*", "*/15", "0", "30", "0,30", "5-10", "*/7", "59", "1-59/20",
];
const HOURS: &[&str] = &["*", "*", "2", "1-3", "*/5", "0,12", "23", "1,2"];
const MONTH_DAYS: &[&str] = &["*", "*", "?", "1", "15", "31", "1-7", "*/10", "29"];
const MONTHS: &[&str] = &["*", "*", "*", "*/2", "2", "3,11", "OCT-DEC", "MAR-APR"];
const WEEKDAYS: &[&str] = &[
    "*", "*", "?", "0", "7", "MON-FRI", "TUE#2", "SUN#L", "6#1", "1,3",
];

fn field_text(options: &'static [&'static str], numbers: Range<u8>) -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(options).prop_map(str::to_owned),
        1 => numbers.prop_map(|number| number.to_string()),
    ]
    .boxed()
}

fn schedule_text() -> impl Strategy<Value = String> {
    let fields = (
        field_text(MINUTES, 0..60),
        field_text(HOURS, 0..24),
        field_text(MONTH_DAYS, 1..32),
        field_text(MONTHS, 1..13),
        field_text(WEEKDAYS, 0..8),
    );
    fields.prop_map(|(minute, hour, day, month, weekday)| {
        format!("{minute} {hour} {day} {month} {weekday}")
    })
}

/// An instant near one of the zone's clock changes in 2024-2026, or in that time for a zone
/// without any.
fn start_near_a_clock_change(zone: &TimeZone, change: usize, shift_minutes: i64) -> Timestamp {
    let base = instant("2024-01-01T00:00:00Z");
    let change = zone
        .following(base)
        .nth(change)
        .map_or(base, |change| change.timestamp());
    change + SignedDuration::from_mins(shift_minutes)
}

/// The offset in force just before the latest clock change at or before `at`.
fn offset_before_latest_change(zone: &TimeZone, at: Timestamp) -> Offset {
    let just_after = at + SignedDuration::from_nanos(1);
    match zone.preceding(just_after).next() {
        Some(change) => zone.to_offset(change.timestamp() - SignedDuration::from_nanos(1)),
        None => zone.to_offset(at),
    }
}

/// Whether some wall-clock time the schedule names opens at `opening`, by jiff's
/// compatible disambiguation.
fn opened_by_a_named_wall_clock(schedule: &Schedule, zone: &TimeZone, opening: Timestamp) -> bool {
    let offsets = [
        zone.to_offset(opening),
        offset_before_latest_change(zone, opening),
    ];
    offsets.iter().any(|offset| {
        let wall_clock = offset.to_datetime(opening);
        let compatible = zone.to_ambiguous_timestamp(wall_clock).compatible().ok();
        schedule.matches(wall_clock) && compatible == Some(opening)
    })
}

/// All openings in `(after, after + days]`, found by trying every wall-clock minute.
fn openings_by_brute_force(
    schedule: &Schedule,
    zone: &TimeZone,
    after: Timestamp,
    days: i64,
) -> Vec<Timestamp> {
    let until = after + SignedDuration::from_hours(24 * days);
    let first = zone.to_datetime(after).date().at(0, 0, 0, 0) - SignedDuration::from_hours(24);
    let minutes = (days + 3) * 24 * 60;
    let mut found: Vec<Timestamp> = (0..minutes)
        .map(|minute| first + SignedDuration::from_mins(minute))
        .filter(|wall_clock: &DateTime| schedule.matches(*wall_clock))
        .filter_map(|wall_clock| zone.to_ambiguous_timestamp(wall_clock).compatible().ok())
        .filter(|&opening| after < opening && opening <= until)
        .collect();
    found.sort();
    found.dedup();
    found
}

proptest! {
    #[test]
    fn openings_strictly_increase_and_each_is_named_by_the_schedule(
        text in schedule_text(),
        zone_name in proptest::sample::select(ZONES),
        change in 0usize..6,
        shift_minutes in -2880i64..1440,
    ) {
        let timing = timing(&text, zone_name, "1h", "0s");
        let after = start_near_a_clock_change(timing.zone(), change, shift_minutes);
        let mut previous = after;
        for occurrence in timing.occurrences_after(after).take(30) {
            let opening = occurrence.opens.timestamp();
            prop_assert!(previous < opening, "{} then {}", previous, opening);
            prop_assert!(
                opened_by_a_named_wall_clock(timing.schedule(), timing.zone(), opening),
                "{} is not named by {}", occurrence.opens, text
            );
            previous = opening;
        }
    }

    #[test]
    fn openings_are_exactly_the_instants_of_the_named_wall_clock_times(
        text in schedule_text(),
        zone_name in proptest::sample::select(ZONES),
        change in 0usize..6,
        shift_minutes in -2880i64..1440,
    ) {
        let timing = timing(&text, zone_name, "1h", "0s");
        let after = start_near_a_clock_change(timing.zone(), change, shift_minutes);
        let until = after + SignedDuration::from_hours(72);
        let expected = openings_by_brute_force(timing.schedule(), timing.zone(), after, 3);
        let found: Vec<Timestamp> = timing
            .occurrences_after(after)
            .map(|occurrence| occurrence.opens.timestamp())
            .take_while(|&opening| opening <= until)
            .collect();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn the_open_window_is_the_latest_opening_less_than_a_duration_ago(
        text in schedule_text(),
        zone_name in proptest::sample::select(ZONES),
        change in 0usize..6,
        shift_minutes in -2880i64..1440,
        duration in proptest::sample::select(&["1m", "30m", "90m", "4h", "25h"][..]),
    ) {
        let timing = timing(&text, zone_name, duration, "0s");
        let at = start_near_a_clock_change(timing.zone(), change, shift_minutes);
        let expected = timing
            .occurrences_after(at - timing.duration())
            .take_while(|occurrence| occurrence.opens.timestamp() <= at)
            .last();
        prop_assert_eq!(timing.open_at(at), expected);
    }
}
