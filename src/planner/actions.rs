//! The second pass over the fleet: which VMs to put back, to patch and to wake.

use super::input::{RunInput, Vm, VmId};
use super::plan::Action;
use super::tally::{Phase, Tally, phase, skip_reason};

/// What one decision may start, worked out from the tally before the second pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Allowance {
    /// The wave whose VMs may start.
    wave: u32,
    /// Whether any VM may start: not halted, and before the cutoff.
    may_start: bool,
    /// Whether the window has closed.
    closed: bool,
    /// Woken VMs that are ready, to give a patch Job.
    patch_awake: u32,
    /// Running VMs, to give a patch Job.
    patch_running: u32,
    /// Dormant VMs to wake.
    wake: u32,
}

impl Allowance {
    /// What may start in `wave`: patch Jobs for the free slots, ready woken VMs first, and
    /// wakes to keep the pipeline of woken VMs filled (see the module documentation).
    pub(super) fn new(input: &RunInput<'_>, tally: &Tally, wave: u32, may_start: bool) -> Self {
        let mut allowance = Allowance {
            wave,
            may_start,
            closed: input.now >= input.limits.ends,
            patch_awake: 0,
            patch_running: 0,
            wake: 0,
        };
        let Some(current) = tally.waves.get(wave as usize).filter(|_| may_start) else {
            return allowance;
        };
        let max_concurrent = input.limits.max_concurrent.get();
        let free = max_concurrent.saturating_sub(tally.patching);
        allowance.patch_awake = free.min(current.awake);
        allowance.patch_running = (free - allowance.patch_awake).min(current.running);

        let pipeline = current.pending.saturating_sub(allowance.patch_awake);
        let room = input.limits.max_awake.get().saturating_sub(tally.awake);
        allowance.wake = max_concurrent.saturating_sub(pipeline).min(room);
        allowance
    }

    /// Whether a VM awake because of the operator goes back now: its own patching ended, it
    /// may not patch anymore, or the window closed.
    fn must_restore(&self, vm: &Vm, phase: Phase, wake_dormant: bool) -> bool {
        match phase {
            Phase::Ended { awake, .. } => awake,
            Phase::Booting | Phase::Awake => {
                let skipped = skip_reason(vm, wake_dormant).is_some();
                !self.may_start || vm.wave != self.wave || skipped
            }
            Phase::Patching { woken } => woken && self.closed,
            Phase::Skipped(_) | Phase::Waiting { .. } | Phase::Restoring(_) => false,
        }
    }

    /// Takes a start for the VM if the allowance has one left for it.
    fn take_start(&mut self, vm: &Vm, phase: Phase, id: VmId) -> Option<Action> {
        if vm.wave != self.wave {
            return None;
        }
        let (left, action) = match phase {
            Phase::Awake => (&mut self.patch_awake, Action::StartPatch(id)),
            Phase::Waiting { dormant: false } => (&mut self.patch_running, Action::StartPatch(id)),
            Phase::Waiting { dormant: true } => (&mut self.wake, Action::Wake(id)),
            _ => return None,
        };
        *left = left.checked_sub(1)?;
        Some(action)
    }
}

/// The actions of one decision: restores first, then patch starts, then wakes, each kind in
/// VM order. Visits every VM once, since a VM to put back can be anywhere in the fleet.
pub(super) fn choose(input: &RunInput<'_>, mut allowance: Allowance) -> Vec<Action> {
    let wake_dormant = input.limits.wake_dormant;
    let mut restores = Vec::new();
    let mut starts = Vec::new();
    let mut wakes = Vec::new();
    for (index, vm) in input.vms.iter().enumerate() {
        // The tally refused fleets whose indices do not fit.
        let id = VmId(index as u32);
        let phase = phase(vm, wake_dormant);
        if allowance.must_restore(vm, phase, wake_dormant) {
            restores.push(Action::Restore(id));
        } else if let Some(action) = allowance.take_start(vm, phase, id) {
            match action {
                Action::Wake(_) => wakes.push(action),
                Action::StartPatch(_) | Action::Restore(_) => starts.push(action),
            }
        }
    }
    restores.append(&mut starts);
    restores.append(&mut wakes);
    restores
}
