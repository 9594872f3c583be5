//! What the planner decides: the actions to apply, the new bookkeeping, the counts for the
//! window's status, and whether the run is over.

use std::fmt;

use jiff::Timestamp;

pub use crate::api::window::RunResult;

use super::input::{Progress, SkipReason, VmId};

/// One decision of the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What to do now, restores first, then patch starts, then wakes; each kind in VM order.
    pub actions: Vec<Action>,
    /// The bookkeeping to persist in the window's status and hand back on the next decision.
    pub progress: Progress,
    /// The VMs of the run by where they stand, before the actions are applied.
    pub counts: StageCounts,
    /// What keeps the run from starting VMs, if anything: to be shown in the window's status.
    pub hold: Option<Hold>,
    /// How the run ended; `None` while it goes on. A run is over once every eligible VM is
    /// done, or when no VM may start anymore (halted, or past the cutoff) and none is in
    /// flight: patching, awake because of the operator, or being put back.
    pub result: Option<RunResult>,
    /// When to decide again if nothing else changes: the end of a soak, the cutoff or the
    /// window's end, whichever comes first. `None` when no moment matters, such as when the
    /// run is over; changes to VMs and Jobs call for a decision anyway.
    pub next_decision: Option<Timestamp>,
}

impl Plan {
    /// Whether the run is over (see [`Plan::result`]).
    pub fn is_finished(&self) -> bool {
        self.result.is_some()
    }
}

/// Something the reconciler does to one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Put the VM back to its original power state, after its own patching or because it may
    /// not patch anymore (halt, cutoff, skip). At the window's end this includes VMs still
    /// patching: the reconciler stops their Job first and fails their run.
    Restore(VmId),
    /// Create the VM's patch Job.
    StartPatch(VmId),
    /// Start the powered-off VM (set its run strategy) so that it boots ahead of its turn.
    Wake(VmId),
}

impl Action {
    /// The VM the action applies to.
    pub fn vm(self) -> VmId {
        match self {
            Action::Restore(vm) | Action::StartPatch(vm) | Action::Wake(vm) => vm,
        }
    }
}

/// VMs of a run by where they stand, for the window's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Not started yet (running VMs that are ready count here too).
    pub waiting: u32,
    /// Woken by the operator and not patching yet: booting, or ready for their turn.
    pub waking: u32,
    /// Patch Job running.
    pub patching: u32,
    /// Being put back to their original power state.
    pub restoring: u32,
    /// Patched, or nothing to install.
    pub succeeded: u32,
    /// Patching failed.
    pub failed: u32,
    /// Left out of the run, by reason.
    pub skipped: SkippedCounts,
}

impl StageCounts {
    /// All VMs of the run, skipped ones included.
    pub fn total(&self) -> u32 {
        let started = self.waking + self.patching + self.restoring;
        self.waiting + started + self.succeeded + self.failed + self.skipped.total()
    }
}

/// Skipped VMs by the reason they were left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkippedCounts {
    /// Verdict `Retire`.
    pub retire: u32,
    /// Covered by a PatchException.
    pub exception: u32,
    /// Selected by two windows with different baselines.
    pub conflict: u32,
    /// Powered off, and the window does not wake dormant VMs.
    pub dormant: u32,
    /// Woken between windows to be scanned, not back yet.
    pub assessing: u32,
}

impl SkippedCounts {
    /// All skipped VMs.
    pub fn total(&self) -> u32 {
        self.retire + self.exception + self.conflict + self.dormant + self.assessing
    }

    /// The count for one reason.
    pub fn of(&self, reason: SkipReason) -> u32 {
        match reason {
            SkipReason::Retire => self.retire,
            SkipReason::Exception => self.exception,
            SkipReason::Conflict => self.conflict,
            SkipReason::Dormant => self.dormant,
            SkipReason::Assessing => self.assessing,
        }
    }

    pub(super) fn add(&mut self, reason: SkipReason) {
        match reason {
            SkipReason::Retire => self.retire += 1,
            SkipReason::Exception => self.exception += 1,
            SkipReason::Conflict => self.conflict += 1,
            SkipReason::Dormant => self.dormant += 1,
            SkipReason::Assessing => self.assessing += 1,
        }
    }
}

/// What keeps a run from starting VMs. Its `Display` is a sentence for the window's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The failed VMs reached the failure budget; the run starts no VM anymore.
    Halted {
        /// VMs that failed.
        failed: u32,
        /// VMs eligible for the run.
        eligible: u32,
        /// The failure budget (`maxFailures`).
        budget: u32,
    },
    /// A wave is done and soaking before the next one starts.
    Soaking {
        /// The name of the wave that is soaking.
        wave: String,
        /// When the soak ends.
        until: Timestamp,
    },
    /// The cutoff passed: no VM starts anymore, those in flight finish.
    Cutoff {
        /// The last moment a VM could start.
        at: Timestamp,
    },
    /// The window closed.
    Closed {
        /// When it closed.
        at: Timestamp,
    },
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Halted {
                failed,
                eligible,
                budget,
            } => write!(
                f,
                "{failed} of {eligible} VMs failed; the failure budget is {budget}"
            ),
            Hold::Soaking { wave, until } => {
                write!(f, "wave {wave} is done and soaks until {until}")
            }
            Hold::Cutoff { at } => write!(f, "no VM starts after the cutoff at {at}"),
            Hold::Closed { at } => write!(f, "the window closed at {at}"),
        }
    }
}
