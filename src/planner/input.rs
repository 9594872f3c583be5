//! What the planner decides from: the run's limits, its waves, the bookkeeping persisted in
//! the window's status, and where each VM stands.

use std::num::NonZeroU32;

use jiff::{SignedDuration, Timestamp};

/// Everything one decision looks at. Built by the window reconciler from cluster state; the
/// slices are borrowed so that a fleet of 100,000 VMs costs no copy.
#[derive(Clone, Copy, Debug)]
pub struct RunInput<'a> {
    /// The moment the decision is made.
    pub now: Timestamp,
    /// How fast the run may go and when it stops.
    pub limits: Limits,
    /// The waves in order, the implicit last wave (`remainder`) included as an ordinary entry.
    pub waves: &'a [Wave<'a>],
    /// The bookkeeping of earlier decisions, as persisted in the window's status.
    pub progress: Progress,
    /// The VMs of the run in a stable order (name order); a [`VmId`] is an index into it.
    pub vms: &'a [Vm],
}

/// The limits of one run, already resolved from counts or percentages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How many VMs may be patching at once.
    pub max_concurrent: NonZeroU32,
    /// How many VMs may be awake because the operator woke them, from the wake until they are
    /// back to their original power state.
    pub max_awake: NonZeroU32,
    /// How many failed VMs halt the run.
    pub max_failures: NonZeroU32,
    /// Whether VMs that are powered off are woken for patching at all.
    pub wake_dormant: bool,
    /// The last moment a VM may start: no VM is woken or given a patch Job at or after it.
    pub last_start: Timestamp,
    /// When the window closes: every VM still awake because of the operator is put back.
    pub ends: Timestamp,
}

/// One wave of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wave<'a> {
    /// The wave's name, as shown in status and Events.
    pub name: &'a str,
    /// How long to wait after the wave completes before the next one starts.
    pub soak: Option<SignedDuration>,
}

/// The run's bookkeeping: what the planner decided before, persisted by the reconciler in the
/// window's status and handed back on the next decision. A new run starts from
/// [`Progress::default`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Index of the wave whose VMs may start.
    pub wave: u32,
    /// When every VM of the current wave was done, if it is; its soak counts from there.
    pub wave_completed_at: Option<Timestamp>,
    /// Why the run stopped starting VMs, once it did. A halted run stays halted.
    pub halted: Option<HaltReason>,
}

/// Why a run stopped starting VMs before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltReason {
    /// The failed VMs reached the failure budget.
    FailureBudget,
}

/// Identifies a VM by its index in [`RunInput::vms`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(pub u32);

impl VmId {
    /// The index of the VM in [`RunInput::vms`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where one VM stands in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vm {
    /// Index of the VM's wave in [`RunInput::waves`].
    pub wave: u32,
    /// The VM's power state as far as the run is concerned.
    pub power: Power,
    /// Why the VM is left out of the run; `None` when it is eligible. Decided by the
    /// reconciler; the planner never wakes or patches a skipped VM and counts it by reason.
    pub skip: Option<SkipReason>,
    /// How far the VM got in this run.
    pub stage: Stage,
}

/// A VM's power state as far as the run is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Running when the run reached it. The operator never changes its power state.
    Running,
    /// Powered off when the run reached it, and not awake because of the operator: not woken
    /// yet, or woken and already put back.
    Dormant,
    /// Powered off when the run reached it and woken by the operator: it counts against
    /// `max_awake` from the wake until it is back off, when the reconciler sets it to
    /// [`Power::Dormant`] again.
    Woken,
}

/// Why a VM is left out of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Its keep-or-retire verdict is `Retire`: it is not worth patching.
    Retire,
    /// A PatchException covers it.
    Exception,
    /// Two windows with different baselines select it.
    Conflict,
    /// It is powered off and the window does not wake dormant VMs.
    Dormant,
    /// It was woken between windows to be scanned; it joins the run once it is back.
    Assessing,
}

/// How far a VM got in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Not started yet.
    Waiting,
    /// Woken by the operator (its run strategy changed); the boot is pending.
    Waking,
    /// Awake and reachable, not patching yet. A running VM that was never dormant is
    /// effectively ready whether it says `Waiting` or `Ready`.
    Ready,
    /// Its patch Job is running.
    Patching,
    /// Being put back to its original power state; holds how its patching ended, which
    /// the VM's stage becomes once it is back (see [`Outcome::stage`]).
    Restoring(Outcome),
    /// Patched, or had nothing to install.
    Done,
    /// Its patching failed.
    Failed,
}

/// How a VM's patching ended, remembered while the VM is put back to its power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Patched, or nothing to install.
    Succeeded,
    /// The patching failed.
    Failed,
    /// Put back before its patching started: the run halted, passed its cutoff or the VM was
    /// skipped after it was woken.
    NotPatched,
}

impl Outcome {
    /// The stage a VM takes once it is back to its original power state.
    pub fn stage(self) -> Stage {
        match self {
            Outcome::Succeeded => Stage::Done,
            Outcome::Failed => Stage::Failed,
            Outcome::NotPatched => Stage::Waiting,
        }
    }
}
