//! Wave promotion: a wave is complete once its eligible VMs are done and back to their power
//! state; the next wave starts once the soak has passed, if the failure budget holds.

use jiff::{SignedDuration, Timestamp};

use super::input::{Progress, RunInput};
use super::tally::Tally;

/// Where the waves stand after this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WaveState {
    /// The bookkeeping, with the wave promoted and its completion time updated.
    pub progress: Progress,
    /// When the soak of the current, complete wave ends, while it soaks.
    pub soaking_until: Option<Timestamp>,
}

/// Promotes through every wave that is complete and has soaked, in one decision, so that
/// waves with nothing to do (or no soak) do not cost a decision each.
pub(super) fn advance(input: &RunInput<'_>, tally: &Tally, mut progress: Progress) -> WaveState {
    loop {
        let index = progress.wave as usize;
        let (Some(wave), Some(spec)) = (tally.waves.get(index), input.waves.get(index)) else {
            return WaveState::idle(progress);
        };
        if wave.unsettled > 0 {
            progress.wave_completed_at = None;
            return WaveState::idle(progress);
        }
        let completed_at = progress.wave_completed_at.unwrap_or(input.now);
        progress.wave_completed_at = Some(completed_at);
        let is_last = index + 1 >= input.waves.len();
        if is_last || progress.halted.is_some() {
            return WaveState::idle(progress);
        }

        // A wave none of whose VMs was patched has nothing to soak.
        let soak = if wave.eligible == 0 { None } else { spec.soak };
        let until = soak.map_or(completed_at, |soak| soak_end(completed_at, soak));
        if input.now < until {
            let soaking_until = Some(until);
            return WaveState {
                progress,
                soaking_until,
            };
        }
        progress.wave += 1;
        progress.wave_completed_at = None;
    }
}

/// When a soak started at `completed_at` ends, at the latest the end of representable time.
fn soak_end(completed_at: Timestamp, soak: SignedDuration) -> Timestamp {
    // Adding a duration saturates and cannot fail; only calendar spans can.
    completed_at.saturating_add(soak).unwrap_or(Timestamp::MAX)
}

impl WaveState {
    fn idle(progress: Progress) -> WaveState {
        WaveState {
            progress,
            soaking_until: None,
        }
    }
}
