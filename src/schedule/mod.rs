//! When maintenance windows open and close: cron schedules, time zones and durations, as
//! plain values with no Kubernetes client, for the maintenance-window reconciler to decide
//! with.
//!
//! A window's timing is a [`WindowTiming`]: a cron [`Schedule`] (see [`cron`] for the
//! syntax), an IANA time zone (see [`zone`]), a duration and a cutoff (see [`duration`]).
//! Openings are wall-clock times in the window's zone; each [`Occurrence`] runs for the
//! duration from its opening, and no new VM starts in its last `cutoff`.
//!
//! # Daylight saving time
//!
//! No window is skipped and none is doubled. Each wall-clock time the schedule names opens
//! exactly one window, and two wall-clock times that land on the same instant open one.
//!
//! - **Clocks go forward** (a gap, such as 02:00-03:00 in New York on the second Sunday of
//!   March): a wall-clock time in the gap does not exist that day, so its window opens at
//!   the wall-clock time shifted later by the length of the gap: 02:30 opens at 03:30 EDT.
//!   This is jiff's "compatible" disambiguation, the rule of RFC 5545 and `java.time`. A
//!   schedule that also names a time just after the gap (`*/30 * * * *` names 02:30 and
//!   03:30) opens one window at that instant, not two.
//! - **Clocks go back** (an overlap, such as 01:00-02:00 in New York on the first Sunday of
//!   November): a wall-clock time that happens twice opens its window once, at the first
//!   occurrence (01:30 EDT, not again at 01:30 EST). A schedule that names every hour thus
//!   still opens once per wall-clock hour, and that night two real hours pass between its
//!   01:30 and 02:30 openings.
//! - **Durations are real elapsed time**: a window is open from its opening for exactly its
//!   duration, whatever the clocks do meanwhile. A four-hour window opening at 00:00 on a
//!   night the clocks go back closes at 03:00 wall-clock time, four real hours later; on a
//!   night they go forward, at 05:00. The last start is the end minus the cutoff, in real
//!   time too.
//!
//! # Overlapping windows
//!
//! A duration longer than the time between two openings makes windows overlap. That is not
//! refused; a later opening starts a new occurrence, and [`WindowTiming::open_at`] reports
//! the latest one.
//!
//! # Schedules that never fire
//!
//! Openings are searched up to a hundred years ahead, enough for the sparsest real schedule
//! (a fifth Monday in February comes every 28 to 40 years). A schedule that names no real
//! date, such as `0 0 30 2 *`, has no openings: [`WindowTiming::occurrences_after`] ends at
//! once, and the caller reports it.

pub mod cron;
pub mod duration;
mod openings;
pub mod zone;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

pub use self::cron::{CronError, CronField, Schedule};
pub use self::duration::{DurationError, parse_duration, to_compact_string, to_go_string};
pub use self::zone::{ZoneError, parse_time_zone};

const NANOSECOND: SignedDuration = SignedDuration::from_nanos(1);

/// How far after an instant the next opening is searched for.
const SEARCH_HORIZON: SignedDuration = SignedDuration::from_hours(100 * 366 * 24);

/// Why a window's timing was refused. Messages start with the field's name in the
/// MaintenanceWindow spec and are complete on their own, to be written into a condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The schedule is not a valid cron expression.
    #[error("schedule: {0}")]
    Schedule(CronError),
    /// The time zone is unknown.
    #[error("timeZone: {0}")]
    TimeZone(ZoneError),
    /// The duration is not a valid duration.
    #[error("duration: {0}")]
    Duration(DurationError),
    /// The cutoff is not a valid duration.
    #[error("cutoff: {0}")]
    Cutoff(DurationError),
    /// The duration is zero or negative.
    #[error("duration: {duration} leaves no time to patch; a window must last longer than 0s")]
    EmptyDuration {
        /// The duration, written compactly.
        duration: String,
    },
    /// The cutoff is negative.
    #[error("cutoff: {cutoff} is negative; a cutoff must be zero or more")]
    NegativeCutoff {
        /// The cutoff, written compactly.
        cutoff: String,
    },
    /// The cutoff takes up the whole window.
    #[error(
        "cutoff: {cutoff} is not shorter than the duration {duration}, so no VM could ever \
         start; make the cutoff shorter or the window longer"
    )]
    CutoffTooLong {
        /// The cutoff, written compactly.
        cutoff: String,
        /// The duration, written compactly.
        duration: String,
    },
}

impl WindowError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            WindowError::Schedule(error) => error.category(),
            WindowError::TimeZone(error) => error.category(),
            WindowError::Duration(error) => error.category(),
            WindowError::EmptyDuration { .. } => "InvalidDuration",
            WindowError::Cutoff(_)
            | WindowError::NegativeCutoff { .. }
            | WindowError::CutoffTooLong { .. } => "InvalidCutoff",
        }
    }
}

/// When a maintenance window opens, how long it lasts, and when it stops starting VMs.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTiming {
    schedule: Schedule,
    zone: TimeZone,
    duration: SignedDuration,
    cutoff: SignedDuration,
}

/// One opening of a window, with its end and last start, as instants in the window's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// When the window opens.
    pub opens: Zoned,
    /// From this instant on, no new VM is started: `closes` minus the cutoff.
    pub last_start: Zoned,
    /// When the window closes: `opens` plus the duration, in real elapsed time.
    pub closes: Zoned,
}

impl Occurrence {
    /// Whether the window is open at `at`: from its opening, up to but excluding its close.
    pub fn is_open_at(&self, at: Timestamp) -> bool {
        self.opens.timestamp() <= at && at < self.closes.timestamp()
    }

    /// Whether a new VM may start at `at`: from the opening, up to but excluding the last
    /// start.
    pub fn accepts_new_starts_at(&self, at: Timestamp) -> bool {
        self.opens.timestamp() <= at && at < self.last_start.timestamp()
    }
}

impl WindowTiming {
    /// Checks and combines already parsed parts: the duration must be positive, and the
    /// cutoff zero or more and shorter than the duration.
    pub fn new(
        schedule: Schedule,
        zone: TimeZone,
        duration: SignedDuration,
        cutoff: SignedDuration,
    ) -> Result<WindowTiming, WindowError> {
        if !duration.is_positive() {
            let duration = to_compact_string(duration);
            return Err(WindowError::EmptyDuration { duration });
        }
        if cutoff.is_negative() {
            let cutoff = to_compact_string(cutoff);
            return Err(WindowError::NegativeCutoff { cutoff });
        }
        if cutoff >= duration {
            let cutoff = to_compact_string(cutoff);
            let duration = to_compact_string(duration);
            return Err(WindowError::CutoffTooLong { cutoff, duration });
        }
        Ok(WindowTiming {
            schedule,
            zone,
            duration,
            cutoff,
        })
    }

    /// Parses the four fields as a MaintenanceWindow spec writes them. Defaults (such as a
    /// cutoff of `0s` when none is given) are the caller's to fill in.
    pub fn parse(
        schedule: &str,
        time_zone: &str,
        duration: &str,
        cutoff: &str,
    ) -> Result<WindowTiming, WindowError> {
        let schedule = schedule.parse().map_err(WindowError::Schedule)?;
        let zone = parse_time_zone(time_zone).map_err(WindowError::TimeZone)?;
        let duration = parse_duration(duration).map_err(WindowError::Duration)?;
        let cutoff = parse_duration(cutoff).map_err(WindowError::Cutoff)?;
        WindowTiming::new(schedule, zone, duration, cutoff)
    }

    /// The cron schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The time zone the schedule's wall-clock times are read in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// How long each window stays open, in real elapsed time.
    pub fn duration(&self) -> SignedDuration {
        self.duration
    }

    /// How long before the end of a window no new VM is started.
    pub fn cutoff(&self) -> SignedDuration {
        self.cutoff
    }

    /// The windows opening strictly after `after`, earliest first.
    pub fn occurrences_after(&self, after: Timestamp) -> Occurrences<'_> {
        Occurrences {
            timing: self,
            after: Some(after),
        }
    }

    /// The first window opening strictly after `after`.
    pub fn next_occurrence_after(&self, after: Timestamp) -> Option<Occurrence> {
        self.occurrences_after(after).next()
    }

    /// The window open at `at`, if any: the latest opening at or before `at` whose close is
    /// after `at`.
    pub fn open_at(&self, at: Timestamp) -> Option<Occurrence> {
        // Only a window that opened less than a duration ago can still be open.
        let earliest = at.checked_sub(self.duration).unwrap_or(Timestamp::MIN);
        let from = earliest.checked_add(NANOSECOND).ok()?;
        let until = at.checked_add(NANOSECOND).unwrap_or(Timestamp::MAX);
        let opens = openings::last_opening(&self.schedule, &self.zone, from, until)?;
        self.occurrence_opening_at(opens)
    }

    /// Whether a window is open at `at`.
    pub fn is_open_at(&self, at: Timestamp) -> bool {
        self.open_at(at).is_some()
    }

    fn next_opening_after(&self, after: Timestamp) -> Option<Timestamp> {
        let from = after.checked_add(NANOSECOND).ok()?;
        let until = after.checked_add(SEARCH_HORIZON).unwrap_or(Timestamp::MAX);
        openings::first_opening(&self.schedule, &self.zone, from, until)
    }

    /// The occurrence opening at `opens`; `None` only when its end is past jiff's range.
    fn occurrence_opening_at(&self, opens: Timestamp) -> Option<Occurrence> {
        let closes = opens.checked_add(self.duration).ok()?;
        let last_start = closes.checked_sub(self.cutoff).ok()?;
        Some(Occurrence {
            opens: opens.to_zoned(self.zone.clone()),
            last_start: last_start.to_zoned(self.zone.clone()),
            closes: closes.to_zoned(self.zone.clone()),
        })
    }
}

/// The windows of a [`WindowTiming`] opening after an instant, earliest first; made by
/// [`WindowTiming::occurrences_after`].
#[derive(Debug, Clone)]
pub struct Occurrences<'w> {
    timing: &'w WindowTiming,
    /// The last opening returned, or the starting instant; `None` once there are no more.
    after: Option<Timestamp>,
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        let opens = self
            .after
            .and_then(|after| self.timing.next_opening_after(after));
        self.after = opens;
        self.timing.occurrence_opening_at(opens?)
    }
}

#[cfg(test)]
mod tests;
