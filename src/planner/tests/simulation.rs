//! Whole runs against a simulated world: random fleets, limits and waves; VMs that take their
//! time to boot, patch and go back, and sometimes fail. Time jumps from one event to the next
//! (a boot, a patch or a restore ending, or the moment the plan asked for), the planner
//! decides, and its actions are applied as the reconciler would apply them.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

const WAVE_NAMES: [&str; 4] = ["canary", "early", "main", "remainder"];

/// Decisions at one instant after which the planner must have nothing more to do.
const DECISIONS_PER_INSTANT: usize = 4;

/// How a simulated VM behaves, in minutes.
#[derive(Clone, Copy, Debug)]
struct Behaviour {
    boot: i64,
    patch: i64,
    restore: i64,
    fails: bool,
}

impl Behaviour {
    /// The longest a VM can take from its wake to being back.
    fn longest_turn(self) -> i64 {
        self.boot + self.patch + self.restore
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    limits: Limits,
    soaks: Vec<Option<SignedDuration>>,
    vms: Vec<Vm>,
    behaviours: Vec<Behaviour>,
}

impl Scenario {
    fn waves(&self) -> Vec<Wave<'static>> {
        let named = WAVE_NAMES.iter().zip(&self.soaks);
        named
            .map(|(name, soak)| Wave { name, soak: *soak })
            .collect()
    }

    fn is_skipped(&self, vm: &Vm) -> bool {
        vm.skip.is_some() || (vm.power != Power::Running && !self.limits.wake_dormant)
    }

    /// A window long enough for every VM to have its turn one after the other, soaks included.
    fn is_roomy(&self) -> bool {
        let turns: i64 = self.behaviours.iter().map(|b| b.longest_turn()).sum();
        let soaks: i64 = self.soaks.iter().flatten().map(|soak| soak.as_mins()).sum();
        minute(turns + soaks) < self.limits.last_start
    }
}

fn skip_reason() -> impl Strategy<Value = Option<SkipReason>> {
    let reason = prop_oneof![
        Just(SkipReason::Retire),
        Just(SkipReason::Exception),
        Just(SkipReason::Conflict),
        Just(SkipReason::Dormant),
        Just(SkipReason::Assessing),
    ];
    prop_oneof![8 => Just(None), 1 => reason.prop_map(Some)]
}

fn simulated_vm(waves: usize) -> impl Strategy<Value = (Vm, Behaviour)> {
    let wave = 0..waves as u32;
    let power = prop_oneof![Just(Power::Running), Just(Power::Dormant)];
    let behaviour = (1..20i64, 1..60i64, 1..5i64, prop::bool::weighted(0.1));
    (wave, power, skip_reason(), behaviour).prop_map(|(wave, power, skip, behaviour)| {
        let (boot, patch, restore, fails) = behaviour;
        let vm = Vm {
            wave,
            power,
            skip,
            stage: Stage::Waiting,
        };
        (
            vm,
            Behaviour {
                boot,
                patch,
                restore,
                fails,
            },
        )
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    let counts = (1..=8u32, 1..=8u32, 1..=15u32, prop::bool::weighted(0.8));
    let timing = (30..=2000i64, 0..=120i64);
    (counts, timing).prop_map(
        |((concurrent, awake, failures, wake), (duration, cutoff))| Limits {
            max_concurrent: count(concurrent),
            max_awake: count(awake),
            max_failures: count(failures),
            wake_dormant: wake,
            last_start: minute(duration - cutoff.min(duration - 1)),
            ends: minute(duration),
        },
    )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let soak = prop::option::of((0..60i64).prop_map(SignedDuration::from_mins));
    let soaks = prop::collection::vec(soak, 1..=WAVE_NAMES.len());
    (limits(), soaks).prop_flat_map(|(limits, soaks)| {
        let vms = prop_oneof![
            prop::collection::vec(simulated_vm(soaks.len()), 0..12),
            prop::collection::vec(simulated_vm(soaks.len()), 0..300),
        ];
        vms.prop_map(move |fleet| {
            let (vms, behaviours) = fleet.into_iter().unzip();
            Scenario {
                limits,
                soaks: soaks.clone(),
                vms,
                behaviours,
            }
        })
    })
}

/// The simulated cluster: the VMs as the reconciler would report them, when the boot, patch
/// or restore in progress on each ends, and when each wave was first complete.
struct World<'a> {
    scenario: &'a Scenario,
    vms: Vec<Vm>,
    due: Vec<Option<i64>>,
    completed: Vec<Option<i64>>,
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario) -> World<'a> {
        World {
            scenario,
            vms: scenario.vms.clone(),
            due: vec![None; scenario.vms.len()],
            completed: vec![None; scenario.soaks.len()],
        }
    }

    /// Ends the boots, patches and restores due by `now`.
    fn advance(&mut self, now: i64) {
        let behaviours = &self.scenario.behaviours;
        let vms = self.vms.iter_mut().zip(&mut self.due).zip(behaviours);
        for ((vm, due), behaviour) in vms {
            if due.take_if(|due| *due <= now).is_some() {
                vm.stage = match vm.stage {
                    Stage::Waking => Stage::Ready,
                    Stage::Patching if behaviour.fails => Stage::Failed,
                    Stage::Patching => Stage::Done,
                    Stage::Restoring(outcome) => {
                        vm.power = Power::Dormant;
                        outcome.stage()
                    }
                    stage => stage,
                };
            }
        }
        self.note_complete_waves(now);
    }

    fn note_complete_waves(&mut self, now: i64) {
        for (wave, completed) in self.completed.iter_mut().enumerate() {
            let members = self.vms.iter().filter(|vm| vm.wave as usize == wave);
            let mut eligible = members.filter(|vm| !self.scenario.is_skipped(vm));
            if completed.is_none() && eligible.all(is_settled) {
                *completed = Some(now);
            }
        }
    }

    /// Applies the plan's actions as the reconciler would.
    fn apply(&mut self, plan: &Plan, now: i64) {
        for action in &plan.actions {
            let index = action.vm().index();
            let behaviour = self.scenario.behaviours[index];
            let vm = &mut self.vms[index];
            let (stage, takes) = match action {
                Action::Wake(_) => (Stage::Waking, behaviour.boot),
                Action::StartPatch(_) => (Stage::Patching, behaviour.patch),
                Action::Restore(_) => (Stage::Restoring(outcome_of(vm.stage)), behaviour.restore),
            };
            if let Action::Wake(_) = action {
                vm.power = Power::Woken;
            }
            vm.stage = stage;
            self.due[index] = Some(now + takes);
        }
    }

    fn next_event(&self) -> Option<i64> {
        self.due.iter().flatten().copied().min()
    }

    fn count(&self, predicate: impl Fn(&Vm) -> bool) -> u32 {
        self.vms.iter().filter(|vm| predicate(vm)).count() as u32
    }

    /// Whether a wave has eligible VMs, and so soaks once complete.
    fn has_eligible(&self, wave: usize) -> bool {
        let mut members = self.vms.iter().filter(|vm| vm.wave as usize == wave);
        members.any(|vm| !self.scenario.is_skipped(vm))
    }
}

/// How the run of a VM put back now ended; a VM still patching has its Job stopped.
fn outcome_of(stage: Stage) -> Outcome {
    match stage {
        Stage::Done => Outcome::Succeeded,
        Stage::Failed | Stage::Patching => Outcome::Failed,
        _ => Outcome::NotPatched,
    }
}

fn is_settled(vm: &Vm) -> bool {
    matches!(vm.stage, Stage::Done | Stage::Failed) && vm.power != Power::Woken
}

/// The plan's actions are allowed for the VMs they name, before they are applied.
fn check_actions(world: &World<'_>, plan: &Plan, now: i64) -> Result<(), TestCaseError> {
    let scenario = world.scenario;
    let mut seen = HashSet::new();
    for action in &plan.actions {
        let vm = &world.vms[action.vm().index()];
        prop_assert!(
            seen.insert(action.vm()),
            "two actions for one VM: {:?}",
            plan.actions
        );
        prop_assert!(
            !scenario.is_skipped(vm),
            "{action:?} touches a skipped VM: {vm:?}"
        );
        let allowed = match action {
            Action::Wake(_) => vm.power == Power::Dormant && vm.stage == Stage::Waiting,
            Action::StartPatch(_) => match vm.power {
                Power::Running => matches!(vm.stage, Stage::Waiting | Stage::Ready),
                Power::Woken => vm.stage == Stage::Ready,
                Power::Dormant => false,
            },
            Action::Restore(_) => {
                vm.power == Power::Woken && !matches!(vm.stage, Stage::Restoring(_))
            }
        };
        prop_assert!(allowed, "{action:?} at minute {now} on {vm:?}");
        if matches!(action, Action::Wake(_) | Action::StartPatch(_)) {
            check_start(world, plan, vm, now)?;
        }
    }
    Ok(())
}

/// A VM starts only before the cutoff, in a run that is not halted, in the current wave, and
/// once every earlier wave is complete.
fn check_start(world: &World<'_>, plan: &Plan, vm: &Vm, now: i64) -> Result<(), TestCaseError> {
    let limits = &world.scenario.limits;
    prop_assert!(
        minute(now) < limits.last_start,
        "a VM started at minute {now}"
    );
    prop_assert_eq!(plan.progress.halted, None, "a VM started in a halted run");
    prop_assert_eq!(vm.wave, plan.progress.wave, "a VM started out of its wave");
    for wave in 0..vm.wave as usize {
        let completed = world.completed[wave];
        let soak = world.scenario.soaks[wave].map_or(0, |soak| soak.as_mins());
        let soaked = completed.is_some_and(|at| now >= at + soak);
        let unsoaked = completed.is_some() && !world.has_eligible(wave);
        prop_assert!(
            soaked || unsoaked,
            "wave {} started before wave {wave} soaked",
            vm.wave
        );
    }
    Ok(())
}

/// The limits hold once the plan's actions are applied.
fn check_limits(world: &World<'_>, now: i64) -> Result<(), TestCaseError> {
    let limits = &world.scenario.limits;
    let patching = world.count(|vm| vm.stage == Stage::Patching);
    let awake = world.count(|vm| vm.power == Power::Woken);
    prop_assert!(
        patching <= limits.max_concurrent.get(),
        "{patching} VMs patching"
    );
    prop_assert!(awake <= limits.max_awake.get(), "{awake} VMs awake");
    if minute(now) >= limits.ends {
        let staying =
            world.count(|vm| vm.power == Power::Woken && !matches!(vm.stage, Stage::Restoring(_)));
        prop_assert_eq!(staying, 0, "woken VMs stay awake after the window's end");
    }
    Ok(())
}

/// The run ended with every woken VM back, and a result that matches the VMs.
fn check_end(world: &World<'_>, result: RunResult) -> Result<(), TestCaseError> {
    let scenario = world.scenario;
    prop_assert_eq!(
        world.count(|vm| vm.power == Power::Woken),
        0,
        "woken VMs left awake"
    );
    let eligible: Vec<&Vm> = world
        .vms
        .iter()
        .filter(|vm| !scenario.is_skipped(vm))
        .collect();
    let failed = eligible
        .iter()
        .filter(|vm| vm.stage == Stage::Failed)
        .count() as u32;
    let waiting = eligible.iter().any(|vm| vm.stage == Stage::Waiting);
    let budget = scenario.limits.max_failures.get();
    let expected = if failed >= budget {
        RunResult::Halted
    } else if waiting {
        RunResult::Incomplete
    } else if failed > 0 {
        RunResult::PartiallySucceeded
    } else {
        RunResult::Succeeded
    };
    prop_assert_eq!(result, expected, "{} failed", failed);
    if scenario.is_roomy() && failed < budget {
        prop_assert!(!waiting, "a roomy window left VMs without their turn");
    }
    Ok(())
}

/// Where the decisions at one instant left the run.
enum Settled {
    /// Nothing more to do now; decide again at this moment if nothing happens before.
    Until(Option<Timestamp>),
    /// The run is over.
    Over(RunResult),
}

/// Decides at `now` and applies each plan, checking it, until the planner has nothing more
/// to do.
fn decide(
    world: &mut World<'_>,
    progress: &mut Progress,
    now: i64,
) -> Result<Settled, TestCaseError> {
    let waves = world.scenario.waves();
    for _ in 0..DECISIONS_PER_INSTANT {
        let input = RunInput {
            now: minute(now),
            limits: world.scenario.limits,
            waves: &waves,
            progress: *progress,
            vms: &world.vms,
        };
        let plan = plan(&input).map_err(|error| TestCaseError::fail(error.to_string()))?;
        check_actions(world, &plan, now)?;
        world.apply(&plan, now);
        check_limits(world, now)?;
        *progress = plan.progress;
        if let Some(result) = plan.result {
            return Ok(Settled::Over(result));
        }
        if plan.actions.is_empty() {
            return Ok(Settled::Until(plan.next_decision));
        }
    }
    Err(TestCaseError::fail(format!("still acting at minute {now}")))
}

/// Runs the scenario to its end, jumping from one event to the next.
fn simulate(scenario: &Scenario) -> Result<(), TestCaseError> {
    let mut world = World::new(scenario);
    let mut progress = Progress::default();
    let mut now = 0;
    loop {
        world.advance(now);
        let next_decision = match decide(&mut world, &mut progress, now)? {
            Settled::Over(result) => return check_end(&world, result),
            Settled::Until(moment) => moment.map(|at| at.duration_since(minute(0)).as_mins()),
        };
        let next = world.next_event().into_iter().chain(next_decision).min();
        let Some(next) = next else {
            return Err(TestCaseError::fail(format!("stuck at minute {now}")));
        };
        prop_assert!(next > now, "time stands still at minute {now}");
        now = next;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn whole_runs_keep_every_limit_and_put_every_woken_vm_back(scenario in scenario()) {
        simulate(&scenario)?;
    }
}
