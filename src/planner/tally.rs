//! The first pass over the fleet: where each VM stands, and the sums the decision needs.

use super::PlanError;
use super::input::{Outcome, Power, RunInput, SkipReason, Stage, Vm};
use super::plan::StageCounts;

/// Where a VM stands, with the input's loose ends resolved: a running VM is ready whatever
/// its stage says, and a VM past `Waiting` that is marked dormant must have been woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Left out of the run, and not in flight.
    Skipped(SkipReason),
    /// Not started; `dormant` when it must be woken before it can patch.
    Waiting { dormant: bool },
    /// Woken by the operator, boot pending.
    Booting,
    /// Woken by the operator and reachable: ready for its patch Job.
    Awake,
    /// Its patch Job is running; `woken` when the operator woke it.
    Patching { woken: bool },
    /// Being put back to its original power state.
    Restoring(Outcome),
    /// Its patching ended; `awake` while it is still awake because of the operator.
    Ended { failed: bool, awake: bool },
}

impl Phase {
    /// Whether the VM is awake because of the operator: from the wake until it is back.
    fn is_awake(self) -> bool {
        match self {
            Phase::Booting | Phase::Awake | Phase::Restoring(_) => true,
            Phase::Patching { woken } => woken,
            Phase::Ended { awake, .. } => awake,
            Phase::Skipped(_) | Phase::Waiting { .. } => false,
        }
    }

    /// Whether the VM has its run behind it: ended and not awake because of the operator, or
    /// left out of the run.
    fn is_settled(self) -> bool {
        matches!(self, Phase::Skipped(_) | Phase::Ended { awake: false, .. })
    }

    /// Whether the VM is in the middle of something: awake because of the operator, or
    /// patching.
    fn is_in_flight(self) -> bool {
        self.is_awake() || matches!(self, Phase::Patching { .. })
    }

    fn is_failure(self) -> bool {
        matches!(
            self,
            Phase::Ended { failed: true, .. } | Phase::Restoring(Outcome::Failed)
        )
    }
}

/// Why a VM must not start, if it must not: the reconciler's reason, or a dormant VM in a
/// window that does not wake dormant VMs.
pub(super) fn skip_reason(vm: &Vm, wake_dormant: bool) -> Option<SkipReason> {
    let dormant = vm.power != Power::Running;
    vm.skip
        .or((dormant && !wake_dormant).then_some(SkipReason::Dormant))
}

/// Where a VM stands.
pub(super) fn phase(vm: &Vm, wake_dormant: bool) -> Phase {
    let awake = match vm.power {
        Power::Woken => true,
        Power::Running => false,
        Power::Dormant => matches!(vm.stage, Stage::Waking | Stage::Ready | Stage::Patching),
    };
    match vm.stage {
        Stage::Waiting | Stage::Waking | Stage::Ready if !awake => {
            match skip_reason(vm, wake_dormant) {
                Some(reason) => Phase::Skipped(reason),
                None => Phase::Waiting {
                    dormant: vm.power != Power::Running,
                },
            }
        }
        Stage::Waiting | Stage::Waking => Phase::Booting,
        Stage::Ready => Phase::Awake,
        Stage::Patching => Phase::Patching { woken: awake },
        Stage::Restoring(outcome) => Phase::Restoring(outcome),
        Stage::Done => Phase::Ended {
            failed: false,
            awake,
        },
        Stage::Failed => Phase::Ended {
            failed: true,
            awake,
        },
    }
}

/// Sums over the VMs of one wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct WaveTally {
    /// VMs not skipped.
    pub eligible: u32,
    /// VMs whose run is not behind them (see [`Phase::is_settled`]).
    pub unsettled: u32,
    /// Woken VMs, not skipped, that are ready for their patch Job.
    pub awake: u32,
    /// Woken VMs, not skipped, that are booting or ready: the wake-ahead pipeline.
    pub pending: u32,
    /// Running VMs that are ready for their patch Job.
    pub running: u32,
}

/// Sums over the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub counts: StageCounts,
    pub waves: Vec<WaveTally>,
    /// VMs patching.
    pub patching: u32,
    /// VMs awake because of the operator.
    pub awake: u32,
    /// VMs whose patching failed.
    pub failures: u32,
    /// VMs in the middle of something (see [`Phase::is_in_flight`]).
    pub in_flight: u32,
}

impl Tally {
    /// Counts the fleet of `input`, refusing VMs whose wave does not exist.
    pub(super) fn new(input: &RunInput<'_>) -> Result<Tally, PlanError> {
        if u32::try_from(input.vms.len()).is_err() {
            return Err(PlanError::TooManyVms(input.vms.len()));
        }
        let mut tally = Tally {
            waves: vec![WaveTally::default(); input.waves.len()],
            ..Tally::default()
        };
        for (index, vm) in input.vms.iter().enumerate() {
            let Some(wave) = tally.waves.get_mut(vm.wave as usize) else {
                return Err(PlanError::UnknownWave {
                    vm: index,
                    wave: vm.wave,
                    waves: input.waves.len(),
                });
            };
            let wake_dormant = input.limits.wake_dormant;
            let phase = phase(vm, wake_dormant);
            wave.add(phase, skip_reason(vm, wake_dormant).is_none());
            tally.add(phase);
        }
        Ok(tally)
    }

    /// VMs not skipped.
    pub(super) fn eligible(&self) -> u32 {
        self.waves.iter().map(|wave| wave.eligible).sum()
    }

    /// VMs whose run is not behind them.
    pub(super) fn unsettled(&self) -> u32 {
        self.waves.iter().map(|wave| wave.unsettled).sum()
    }

    fn add(&mut self, phase: Phase) {
        let counts = &mut self.counts;
        match phase {
            Phase::Skipped(reason) => counts.skipped.add(reason),
            Phase::Waiting { .. } => counts.waiting += 1,
            Phase::Booting | Phase::Awake => counts.waking += 1,
            Phase::Patching { .. } => counts.patching += 1,
            Phase::Restoring(_) => counts.restoring += 1,
            Phase::Ended { failed: false, .. } => counts.succeeded += 1,
            Phase::Ended { failed: true, .. } => counts.failed += 1,
        }
        self.patching += u32::from(matches!(phase, Phase::Patching { .. }));
        self.awake += u32::from(phase.is_awake());
        self.failures += u32::from(phase.is_failure());
        self.in_flight += u32::from(phase.is_in_flight());
    }
}

impl WaveTally {
    /// Adds one VM; `startable` when nothing keeps it from starting.
    fn add(&mut self, phase: Phase, startable: bool) {
        self.eligible += u32::from(!matches!(phase, Phase::Skipped(_)));
        self.unsettled += u32::from(!phase.is_settled());
        self.running += u32::from(phase == Phase::Waiting { dormant: false });
        if startable {
            self.awake += u32::from(phase == Phase::Awake);
            self.pending += u32::from(matches!(phase, Phase::Booting | Phase::Awake));
        }
    }
}
