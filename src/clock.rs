//! The time the operator decides by.
//!
//! Production runs on the system clock. The demo and the tests start the operator with a
//! clock that begins at a chosen instant (a moment before a window opens) and may run
//! faster than real time. Every decision reads the same [`Clock`], so there is no special
//! case for tests anywhere in the operator.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// A clock that starts at `start` when the operator starts and advances `rate` times as
/// fast as real time. The system clock is `start = now, rate = 1`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    real_origin: Instant,
    start: Timestamp,
    rate: f64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self {
            real_origin: Instant::now(),
            start: Timestamp::now(),
            rate: 1.0,
        }
    }

    /// A clock that reads `start` now and then runs `rate` times as fast as real time.
    /// A rate that is not a positive finite number counts as 1.
    pub fn starting_at(start: Timestamp, rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        Self {
            real_origin: Instant::now(),
            start,
            rate,
        }
    }

    /// The current instant.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.real_origin.elapsed().as_secs_f64() * self.rate;
        let elapsed = SignedDuration::try_from_secs_f64(elapsed).unwrap_or(SignedDuration::MAX);
        self.start.saturating_add(elapsed).unwrap_or(Timestamp::MAX)
    }

    /// How long to wait in real time for `span` of clock time to pass.
    pub fn real_delay(&self, span: SignedDuration) -> std::time::Duration {
        let seconds = span.as_secs_f64().max(0.0) / self.rate;
        std::time::Duration::try_from_secs_f64(seconds).unwrap_or(std::time::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_clock_reads_its_start_at_once() {
        let start: Timestamp = "2026-12-08T21:59:00Z".parse().unwrap();
        let clock = Clock::starting_at(start, 1.0);
        let drift = clock.now().duration_since(start);
        assert!(drift < SignedDuration::from_secs(1), "{drift}");
    }

    #[test]
    fn a_fast_clock_waits_less_real_time() {
        let clock = Clock::starting_at(Timestamp::UNIX_EPOCH, 60.0);
        assert_eq!(
            clock.real_delay(SignedDuration::from_mins(1)),
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn a_nonsensical_rate_runs_at_real_speed() {
        let clock = Clock::starting_at(Timestamp::UNIX_EPOCH, -3.0);
        assert_eq!(
            clock.real_delay(SignedDuration::from_secs(5)),
            std::time::Duration::from_secs(5)
        );
    }
}
