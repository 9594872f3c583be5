//! The rollout planner: at each step of a maintenance-window run, which VMs to wake, which to
//! patch and which to put back to their original power state.
//!
//! It is pure: the window reconciler builds a [`RunInput`] from cluster state and the
//! window's status, calls [`plan`], applies the [`Action`]s, persists the new [`Progress`]
//! and the [`StageCounts`] in the window's status, and decides again when a VM or a Job
//! changes, or at [`Plan::next_decision`] at the latest. The same input always gives the same
//! plan; one decision visits the fleet twice and allocates only for the actions.
//!
//! # Rules
//!
//! - At most `max_concurrent` VMs patch at once, and at most `max_awake` VMs are awake
//!   because of the operator, counted from the wake until the VM is back to its power state.
//! - No VM is woken or given a patch Job at or after `last_start` (the window's end minus its
//!   cutoff). Woken VMs that have not started patching by then are put back at once, since
//!   they will not patch in this window.
//! - A woken VM is put back as soon as its own patching ends, not at the window's end.
//! - Only the current wave's VMs start. A wave is complete when every eligible VM in it is
//!   done or failed and none is awake because of the operator; the next wave starts once the
//!   soak has passed since then. A wave none of whose VMs was eligible does not soak.
//! - When the failed VMs reach `max_failures` the run halts, for good: nothing starts and no
//!   wave is promoted, VMs already patching finish, and woken VMs that have not started
//!   patching are put back. [`Plan::hold`] says why.
//! - When the window closes, every VM awake because of the operator goes back, including VMs
//!   still patching: the window's end is a promise to the VMs' owners.
//! - Skipped VMs are never woken or patched; they are counted by reason.
//!
//! # Wake-ahead
//!
//! Booting takes minutes, so dormant VMs of the current wave are woken ahead of their turn,
//! their boot overlapping other VMs' patching. The heuristic:
//!
//! 1. Free patch slots (`max_concurrent` minus VMs patching) go first to woken VMs that are
//!    ready, then to running VMs that are waiting, each in VM order. Woken VMs go first
//!    because each holds one of the scarce `max_awake` places until it is patched and put
//!    back; running VMs cost nothing while they wait. A VM that is still booting is never
//!    waited for while a ready VM could use the slot.
//! 2. The pipeline is the woken VMs that are booting or ready and did not get a slot. Enough
//!    dormant VMs are woken to bring it up to `max_concurrent`, so that every slot, busy or
//!    free, has a VM warming up behind it, but never so many that the VMs awake because of
//!    the operator (booting, ready, patching, or waiting to be or being put back) exceed
//!    `max_awake`.
//!
//! Dormant VMs are thus woken from the start of their wave, not after the running ones: when
//! `max_awake` is smaller than `max_concurrent`, the dormant VMs are the slower stream, and
//! starting it late would add its whole length to the wave's. Running VMs fill the slots the
//! dormant ones leave.
//!
//! Limitation: the planner does not know how long boots and patches take, so it does not
//! stop waking VMs that could not boot before the cutoff; they are put back at the cutoff.

mod actions;
mod input;
mod plan;
mod tally;
mod waves;

#[cfg(test)]
mod tests;

use jiff::Timestamp;

pub use self::input::{
    HaltReason, Limits, Outcome, Power, Progress, RunInput, SkipReason, Stage, Vm, VmId, Wave,
};
pub use self::plan::{Action, Hold, Plan, RunResult, SkippedCounts, StageCounts};

use self::actions::Allowance;
use self::tally::Tally;
use self::waves::WaveState;

/// Why the planner refused its input: the reconciler built it wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The run has no wave.
    #[error("the run has no wave; the last wave must be listed too")]
    NoWaves,
    /// The bookkeeping names a wave that does not exist.
    #[error("the current wave is {wave}, but the run has {waves} waves")]
    UnknownCurrentWave {
        /// The current wave in the bookkeeping.
        wave: u32,
        /// How many waves the run has.
        waves: usize,
    },
    /// A VM names a wave that does not exist.
    #[error("vm {vm} belongs to wave {wave}, but the run has {waves} waves")]
    UnknownWave {
        /// The VM's index.
        vm: usize,
        /// The VM's wave.
        wave: u32,
        /// How many waves the run has.
        waves: usize,
    },
    /// More VMs than a [`VmId`] can tell apart.
    #[error("the run has {0} VMs, more than the planner can tell apart")]
    TooManyVms(usize),
}

impl PlanError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidPlanInput"
    }
}

/// Decides the next step of a run.
pub fn plan(input: &RunInput<'_>) -> Result<Plan, PlanError> {
    check_waves(input)?;
    let tally = Tally::new(input)?;
    let budget_spent = tally.failures >= input.limits.max_failures.get();
    let halted = input
        .progress
        .halted
        .or(budget_spent.then_some(HaltReason::FailureBudget));
    let progress = Progress {
        halted,
        ..input.progress
    };

    let waves = waves::advance(input, &tally, progress);
    let cutoff = input.limits.last_start.min(input.limits.ends);
    let may_start = halted.is_none() && input.now < cutoff;
    let result = run_result(&tally, halted, may_start);
    let allowance = Allowance::new(input, &tally, waves.progress.wave, may_start);

    Ok(Plan {
        actions: actions::choose(input, allowance),
        progress: waves.progress,
        counts: tally.counts,
        hold: hold(input, &tally, &waves),
        result,
        next_decision: next_decision(input, &waves, result),
    })
}

fn check_waves(input: &RunInput<'_>) -> Result<(), PlanError> {
    if input.waves.is_empty() {
        return Err(PlanError::NoWaves);
    }
    let wave = input.progress.wave;
    if wave as usize >= input.waves.len() {
        let waves = input.waves.len();
        return Err(PlanError::UnknownCurrentWave { wave, waves });
    }
    Ok(())
}

/// How the run ended, once it has: every eligible VM settled, or nothing may start anymore
/// and nothing is in flight.
fn run_result(tally: &Tally, halted: Option<HaltReason>, may_start: bool) -> Option<RunResult> {
    let unsettled = tally.unsettled();
    if unsettled > 0 && (may_start || tally.in_flight > 0) {
        return None;
    }
    let result = if halted.is_some() {
        RunResult::Halted
    } else if unsettled > 0 {
        RunResult::Incomplete
    } else if tally.failures > 0 {
        RunResult::PartiallySucceeded
    } else {
        RunResult::Succeeded
    };
    Some(result)
}

/// What keeps the run from starting VMs, if anything does while VMs are left.
fn hold(input: &RunInput<'_>, tally: &Tally, waves: &WaveState) -> Option<Hold> {
    let limits = &input.limits;
    if waves.progress.halted.is_some() {
        let failed = tally.failures;
        let eligible = tally.eligible();
        let budget = limits.max_failures.get();
        return Some(Hold::Halted {
            failed,
            eligible,
            budget,
        });
    }
    if tally.unsettled() == 0 {
        return None;
    }
    if input.now >= limits.ends {
        return Some(Hold::Closed { at: limits.ends });
    }
    if input.now >= limits.last_start {
        return Some(Hold::Cutoff {
            at: limits.last_start,
        });
    }
    let until = waves.soaking_until?;
    let index = waves.progress.wave as usize;
    let wave = input
        .waves
        .get(index)
        .map_or("", |wave| wave.name)
        .to_owned();
    Some(Hold::Soaking { wave, until })
}

/// The next moment that changes the decision by itself: a soak's end, the cutoff or the end.
fn next_decision(
    input: &RunInput<'_>,
    waves: &WaveState,
    result: Option<RunResult>,
) -> Option<Timestamp> {
    if result.is_some() {
        return None;
    }
    let limits = &input.limits;
    [
        waves.soaking_until,
        Some(limits.last_start),
        Some(limits.ends),
    ]
    .into_iter()
    .flatten()
    .filter(|moment| *moment > input.now)
    .min()
}
