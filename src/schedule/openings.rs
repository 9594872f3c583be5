//! From a schedule's wall-clock times to the instants at which windows open in a time zone.
//!
//! Real time is cut at the zone's transitions into stretches with one UTC offset each. In a
//! stretch, the wall-clock times that open windows there map to instants by subtracting the
//! offset, in one or two pieces:
//!
//! - the stretch's own wall-clock times, except, after the clocks went back, those of the
//!   overlap, which already opened at their first occurrence in the stretch before;
//! - after the clocks went forward, the wall-clock times the jump skipped, which open with
//!   the offset from before the jump, that is, shifted later by the length of the gap.
//!
//! Every wall-clock time belongs to exactly one piece, so each opens exactly once, at the
//! instant jiff's "compatible" disambiguation gives it. Two wall-clock times can meet at one
//! instant (02:30 shifted by the gap, and the real 03:30); the search returns instants, so
//! they open one window.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use super::cron::Schedule;

const NANOSECOND: SignedDuration = SignedDuration::from_nanos(1);

/// The earliest instant in `[from, until)` at which the schedule opens a window in `zone`.
pub(crate) fn first_opening(
    schedule: &Schedule,
    zone: &TimeZone,
    from: Timestamp,
    until: Timestamp,
) -> Option<Timestamp> {
    let mut from = from;
    while from < until {
        let stretch = Stretch::containing(zone, from);
        let found = stretch
            .pieces()
            .into_iter()
            .flatten()
            .filter_map(|piece| piece.first_opening(schedule, from, until))
            .min();
        if found.is_some() {
            return found;
        }
        from = stretch.end?;
    }
    None
}

/// The latest instant in `[from, until)` at which the schedule opens a window in `zone`.
pub(crate) fn last_opening(
    schedule: &Schedule,
    zone: &TimeZone,
    from: Timestamp,
    until: Timestamp,
) -> Option<Timestamp> {
    let mut until = until;
    while from < until {
        let stretch = Stretch::containing(zone, until.checked_sub(NANOSECOND).ok()?);
        let found = stretch
            .pieces()
            .into_iter()
            .flatten()
            .filter_map(|piece| piece.last_opening(schedule, from, until))
            .max();
        if found.is_some() {
            return found;
        }
        until = stretch.start?;
    }
    None
}

/// A stretch of real time during which the zone's UTC offset does not change.
#[derive(Debug)]
struct Stretch {
    /// The transition that began it, if any.
    start: Option<Timestamp>,
    /// The transition that ends it, if any.
    end: Option<Timestamp>,
    offset: Offset,
    /// The offset before `start`.
    offset_before: Offset,
}

impl Stretch {
    fn containing(zone: &TimeZone, at: Timestamp) -> Stretch {
        // `preceding` yields transitions strictly before its argument.
        let just_after = at.checked_add(NANOSECOND).unwrap_or(at);
        let start = zone
            .preceding(just_after)
            .next()
            .map(|transition| transition.timestamp());
        let end = zone
            .following(at)
            .next()
            .map(|transition| transition.timestamp());
        let offset = zone.to_offset(at);
        let offset_before = start
            .and_then(|start| start.checked_sub(NANOSECOND).ok())
            .map_or(offset, |before| zone.to_offset(before));
        Stretch {
            start,
            end,
            offset,
            offset_before,
        }
    }

    fn pieces(&self) -> [Option<Piece>; 2] {
        [self.skipped_piece(), Some(self.own_piece())]
    }

    /// The wall-clock times skipped when the clocks went forward at `start`.
    fn skipped_piece(&self) -> Option<Piece> {
        let start = self.start?;
        (self.offset > self.offset_before).then(|| Piece {
            first: Some(self.offset_before.to_datetime(start)),
            end: Some(self.offset.to_datetime(start)),
            offset: self.offset_before,
        })
    }

    /// The stretch's own wall-clock times, less an overlap that opened before `start`.
    fn own_piece(&self) -> Piece {
        let first = self.start.map(|start| {
            let own = self.offset.to_datetime(start);
            own.max(self.offset_before.to_datetime(start))
        });
        Piece {
            first,
            end: self.end.map(|end| self.offset.to_datetime(end)),
            offset: self.offset,
        }
    }
}

/// Wall-clock times in `[first, end)` that open windows with one UTC offset.
#[derive(Debug)]
struct Piece {
    first: Option<DateTime>,
    end: Option<DateTime>,
    offset: Offset,
}

impl Piece {
    fn first_opening(
        &self,
        schedule: &Schedule,
        from: Timestamp,
        until: Timestamp,
    ) -> Option<Timestamp> {
        let (from, until) = self.wall_clocks(from, until);
        let wall_clock = schedule.next_wall_clock(from, until)?;
        self.offset.to_timestamp(wall_clock).ok()
    }

    fn last_opening(
        &self,
        schedule: &Schedule,
        from: Timestamp,
        until: Timestamp,
    ) -> Option<Timestamp> {
        let (from, until) = self.wall_clocks(from, until);
        let wall_clock = schedule.previous_wall_clock(from, until)?;
        self.offset.to_timestamp(wall_clock).ok()
    }

    /// The wall-clock times of this piece that fall in the instants `[from, until)`.
    fn wall_clocks(&self, from: Timestamp, until: Timestamp) -> (DateTime, DateTime) {
        let from = self.offset.to_datetime(from);
        let until = self.offset.to_datetime(until);
        (
            self.first.map_or(from, |first| first.max(from)),
            self.end.map_or(until, |end| end.min(until)),
        )
    }
}
