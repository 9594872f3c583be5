use std::num::NonZeroU32;

use jiff::{SignedDuration, Timestamp};

use super::*;

mod simulation;

/// The window opens at minute 0, its cutoff is at minute 180, and it closes at minute 240.
const CUTOFF: i64 = 180;
const END: i64 = 240;

fn minute(minutes: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
}

fn count(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

fn vm(power: Power, stage: Stage) -> Vm {
    Vm {
        wave: 0,
        power,
        skip: None,
        stage,
    }
}

fn running() -> Vm {
    vm(Power::Running, Stage::Waiting)
}

fn dormant() -> Vm {
    vm(Power::Dormant, Stage::Waiting)
}

fn woken(stage: Stage) -> Vm {
    vm(Power::Woken, stage)
}

fn skipped(mut vm: Vm, reason: SkipReason) -> Vm {
    vm.skip = Some(reason);
    vm
}

fn in_wave(mut vm: Vm, wave: u32) -> Vm {
    vm.wave = wave;
    vm
}

/// `count` copies of a VM.
fn fleet(count: usize, vm: Vm) -> Vec<Vm> {
    vec![vm; count]
}

/// A run at minute 60 of a single-wave window: two patch slots, two awake places, three
/// failures allowed, dormant VMs woken.
struct Run {
    now: Timestamp,
    limits: Limits,
    waves: Vec<Wave<'static>>,
    progress: Progress,
    vms: Vec<Vm>,
}

impl Run {
    fn of(vms: Vec<Vm>) -> Run {
        Run {
            now: minute(60),
            limits: Limits {
                max_concurrent: count(2),
                max_awake: count(2),
                max_failures: count(3),
                wake_dormant: true,
                last_start: minute(CUTOFF),
                ends: minute(END),
            },
            waves: vec![Wave {
                name: "remainder",
                soak: None,
            }],
            progress: Progress::default(),
            vms,
        }
    }

    fn at(mut self, minutes: i64) -> Run {
        self.now = minute(minutes);
        self
    }

    fn concurrent(mut self, value: u32) -> Run {
        self.limits.max_concurrent = count(value);
        self
    }

    fn awake(mut self, value: u32) -> Run {
        self.limits.max_awake = count(value);
        self
    }

    fn failures(mut self, value: u32) -> Run {
        self.limits.max_failures = count(value);
        self
    }

    /// Waves `canary` (soaking `soak_minutes`) and `remainder`.
    fn canary(mut self, soak_minutes: i64) -> Run {
        let soak = Some(SignedDuration::from_mins(soak_minutes));
        self.waves = vec![
            Wave {
                name: "canary",
                soak,
            },
            Wave {
                name: "remainder",
                soak: None,
            },
        ];
        self
    }

    fn progress(mut self, progress: Progress) -> Run {
        self.progress = progress;
        self
    }

    fn input(&self) -> RunInput<'_> {
        RunInput {
            now: self.now,
            limits: self.limits,
            waves: &self.waves,
            progress: self.progress,
            vms: &self.vms,
        }
    }

    fn plan(&self) -> Plan {
        match plan(&self.input()) {
            Ok(plan) => plan,
            Err(error) => panic!("the planner refused the input: {error}"),
        }
    }
}

/// The VM indices an action of the kind `kind` (e.g. `Action::Wake`) applies to.
fn targets(plan: &Plan, kind: fn(VmId) -> Action) -> Vec<usize> {
    let actions = plan.actions.iter();
    let matching = actions.filter(|action| **action == kind(action.vm()));
    matching.map(|action| action.vm().index()).collect()
}

fn is_start(action: &Action) -> bool {
    matches!(action, Action::Wake(_) | Action::StartPatch(_))
}

#[test]
fn at_most_max_concurrent_vms_patch_at_once() {
    let plan = Run::of(fleet(5, running())).concurrent(2).plan();

    assert_eq!(targets(&plan, Action::StartPatch), [0, 1]);
}

#[test]
fn vms_already_patching_take_their_slots() {
    let mut vms = fleet(4, running());
    vms[2].stage = Stage::Patching;

    let plan = Run::of(vms).concurrent(2).plan();

    assert_eq!(targets(&plan, Action::StartPatch), [0]);
}

#[test]
fn at_most_max_awake_vms_are_woken() {
    let plan = Run::of(fleet(10, dormant())).concurrent(5).awake(3).plan();

    assert_eq!(targets(&plan, Action::Wake), [0, 1, 2]);
}

#[test]
fn woken_vms_count_against_max_awake_until_they_are_back() {
    let mut vms = fleet(6, dormant());
    vms[0] = woken(Stage::Restoring(Outcome::Succeeded));
    vms[1] = woken(Stage::Done);
    vms[2] = woken(Stage::Patching);

    let plan = Run::of(vms).concurrent(5).awake(4).plan();

    assert_eq!(targets(&plan, Action::Wake), [3]);
}

#[test]
fn no_vm_starts_at_or_after_the_cutoff() {
    for now in [CUTOFF, CUTOFF + 1, END - 1] {
        let vms = vec![running(), dormant(), woken(Stage::Ready)];

        let plan = Run::of(vms).awake(5).at(now).plan();

        assert!(
            !plan.actions.iter().any(is_start),
            "at minute {now}: {plan:?}"
        );
    }
}

#[test]
fn vms_start_until_just_before_the_cutoff() {
    let plan = Run::of(vec![running(), dormant()]).at(CUTOFF - 1).plan();

    assert_eq!(
        plan.actions,
        [Action::StartPatch(VmId(0)), Action::Wake(VmId(1))]
    );
}

#[test]
fn woken_vms_that_have_not_started_patching_are_restored_at_the_cutoff() {
    let vms = vec![
        woken(Stage::Waking),
        woken(Stage::Ready),
        woken(Stage::Patching),
    ];

    let plan = Run::of(vms).at(CUTOFF).plan();

    assert_eq!(
        plan.actions,
        [Action::Restore(VmId(0)), Action::Restore(VmId(1))]
    );
    assert_eq!(
        plan.hold.map(|hold| hold.to_string()).as_deref(),
        Some("no VM starts after the cutoff at 1970-01-01T03:00:00Z")
    );
}

#[test]
fn reaching_the_failure_budget_halts_the_run_and_says_why() {
    let mut vms = fleet(40, running());
    vms[..3].fill(vm(Power::Running, Stage::Failed));

    let plan = Run::of(vms).failures(3).plan();

    assert!(plan.actions.is_empty());
    assert_eq!(plan.progress.halted, Some(HaltReason::FailureBudget));
    let message = plan.hold.map(|hold| hold.to_string());
    assert_eq!(
        message.as_deref(),
        Some("3 of 40 VMs failed; the failure budget is 3")
    );
}

#[test]
fn failures_being_restored_count_against_the_budget() {
    let vms = vec![woken(Stage::Restoring(Outcome::Failed)), running()];

    let plan = Run::of(vms).failures(1).plan();

    assert_eq!(plan.progress.halted, Some(HaltReason::FailureBudget));
}

#[test]
fn a_halted_run_lets_patching_vms_finish_and_restores_woken_vms_not_patching() {
    let vms = vec![
        vm(Power::Running, Stage::Failed),
        vm(Power::Running, Stage::Patching),
        woken(Stage::Patching),
        woken(Stage::Waking),
        woken(Stage::Ready),
        dormant(),
    ];

    let plan = Run::of(vms).awake(5).failures(1).plan();

    assert_eq!(
        plan.actions,
        [Action::Restore(VmId(3)), Action::Restore(VmId(4))]
    );
    assert_eq!(plan.result, None);
}

#[test]
fn a_halted_run_stays_halted() {
    let halted = Progress {
        halted: Some(HaltReason::FailureBudget),
        ..Progress::default()
    };

    let plan = Run::of(fleet(3, running())).progress(halted).plan();

    assert!(plan.actions.is_empty());
    assert_eq!(plan.progress.halted, Some(HaltReason::FailureBudget));
    assert_eq!(plan.result, Some(RunResult::Halted));
}

#[test]
fn only_the_current_waves_vms_start() {
    let vms = vec![in_wave(running(), 1), running(), in_wave(dormant(), 1)];

    let plan = Run::of(vms).canary(30).plan();

    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
}

#[test]
fn a_complete_wave_soaks_before_the_next_wave_starts() {
    let vms = vec![vm(Power::Running, Stage::Done), in_wave(running(), 1)];

    let plan = Run::of(vms).canary(30).plan();

    assert!(plan.actions.is_empty());
    assert_eq!(plan.progress.wave, 0);
    assert_eq!(plan.progress.wave_completed_at, Some(minute(60)));
    assert_eq!(plan.next_decision, Some(minute(90)));
    let message = plan.hold.map(|hold| hold.to_string());
    assert_eq!(
        message.as_deref(),
        Some("wave canary is done and soaks until 1970-01-01T01:30:00Z")
    );
}

#[test]
fn the_next_wave_starts_once_the_soak_has_passed() {
    let vms = vec![vm(Power::Running, Stage::Done), in_wave(running(), 1)];
    let completed = Progress {
        wave_completed_at: Some(minute(30)),
        ..Progress::default()
    };

    let plan = Run::of(vms).canary(30).progress(completed).plan();

    assert_eq!(plan.progress.wave, 1);
    assert_eq!(plan.progress.wave_completed_at, None);
    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
}

#[test]
fn a_wave_is_not_complete_while_a_woken_vm_is_awake() {
    for stage in [Stage::Done, Stage::Restoring(Outcome::Succeeded)] {
        let vms = vec![woken(stage), in_wave(running(), 1)];

        let plan = Run::of(vms).canary(0).plan();

        assert_eq!(plan.progress.wave, 0, "{stage:?}");
        assert_eq!(plan.progress.wave_completed_at, None, "{stage:?}");
    }
}

#[test]
fn a_failing_canary_wave_stops_promotion() {
    let vms = vec![vm(Power::Running, Stage::Failed), in_wave(running(), 1)];

    let plan = Run::of(vms).canary(0).failures(1).plan();

    assert_eq!(plan.progress.wave, 0);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.result, Some(RunResult::Halted));
}

#[test]
fn failures_within_the_budget_do_not_stop_promotion() {
    let vms = vec![vm(Power::Running, Stage::Failed), in_wave(running(), 1)];

    let plan = Run::of(vms).canary(0).failures(2).plan();

    assert_eq!(plan.progress.wave, 1);
    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
}

#[test]
fn a_wave_without_eligible_vms_is_passed_without_soaking() {
    let vms = vec![
        skipped(running(), SkipReason::Retire),
        in_wave(running(), 1),
    ];

    let plan = Run::of(vms).canary(30).plan();

    assert_eq!(plan.progress.wave, 1);
    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
}

#[test]
fn woken_vms_are_restored_right_after_their_own_run() {
    let vms = vec![
        woken(Stage::Done),
        woken(Stage::Failed),
        woken(Stage::Patching),
    ];

    let plan = Run::of(vms).awake(3).plan();

    assert_eq!(
        plan.actions,
        [Action::Restore(VmId(0)), Action::Restore(VmId(1))]
    );
}

#[test]
fn vms_back_to_their_power_state_are_not_restored_again() {
    let vms = vec![
        vm(Power::Dormant, Stage::Done),
        woken(Stage::Restoring(Outcome::Succeeded)),
    ];

    let plan = Run::of(vms).plan();

    assert!(plan.actions.is_empty());
}

#[test]
fn every_woken_vm_is_restored_when_the_window_ends() {
    let vms = vec![
        woken(Stage::Waking),
        woken(Stage::Ready),
        woken(Stage::Patching),
        woken(Stage::Done),
        woken(Stage::Restoring(Outcome::Failed)),
        vm(Power::Running, Stage::Patching),
    ];

    let plan = Run::of(vms).awake(6).at(END).plan();

    let restored = targets(&plan, Action::Restore);
    assert_eq!(restored, [0, 1, 2, 3]);
    assert_eq!(plan.actions.len(), 4);
}

#[test]
fn dormant_vms_are_woken_ahead_of_their_turn() {
    let mut vms = fleet(2, vm(Power::Running, Stage::Patching));
    vms.extend(fleet(5, dormant()));

    let plan = Run::of(vms).concurrent(2).awake(4).plan();

    assert_eq!(targets(&plan, Action::Wake), [2, 3]);
}

#[test]
fn wake_ahead_keeps_max_concurrent_vms_warming_up() {
    let mut vms = vec![woken(Stage::Waking), woken(Stage::Ready)];
    vms.extend(fleet(5, dormant()));

    let plan = Run::of(vms).concurrent(3).awake(10).plan();

    assert_eq!(targets(&plan, Action::StartPatch), [1]);
    assert_eq!(targets(&plan, Action::Wake), [2, 3]);
}

#[test]
fn ready_woken_vms_are_patched_before_running_ones() {
    let vms = vec![running(), running(), woken(Stage::Ready)];

    let plan = Run::of(vms).concurrent(2).plan();

    assert_eq!(targets(&plan, Action::StartPatch), [0, 2]);
}

#[test]
fn booting_vms_are_not_waited_for_while_running_vms_are_ready() {
    let vms = vec![woken(Stage::Waking), running()];

    let plan = Run::of(vms).concurrent(1).plan();

    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
}

#[test]
fn a_running_vm_reported_ready_is_patched_like_a_waiting_one() {
    let plan = Run::of(vec![vm(Power::Running, Stage::Ready)]).plan();

    assert_eq!(plan.actions, [Action::StartPatch(VmId(0))]);
}

#[test]
fn skipped_vms_are_reported_not_touched() {
    let vms = vec![
        skipped(running(), SkipReason::Retire),
        skipped(dormant(), SkipReason::Retire),
        skipped(running(), SkipReason::Exception),
        skipped(dormant(), SkipReason::Conflict),
    ];

    let plan = Run::of(vms).plan();

    assert!(plan.actions.is_empty());
    let expected = SkippedCounts {
        retire: 2,
        exception: 1,
        conflict: 1,
        dormant: 0,
        assessing: 0,
    };
    assert_eq!(plan.counts.skipped, expected);
    assert_eq!(plan.result, Some(RunResult::Succeeded));
}

#[test]
fn dormant_vms_are_skipped_when_the_window_does_not_wake() {
    let mut run = Run::of(vec![dormant(), running()]);
    run.limits.wake_dormant = false;

    let plan = run.plan();

    assert_eq!(plan.actions, [Action::StartPatch(VmId(1))]);
    assert_eq!(plan.counts.skipped.of(SkipReason::Dormant), 1);
}

#[test]
fn a_woken_vm_skipped_since_its_wake_is_restored_not_patched() {
    let vms = vec![skipped(woken(Stage::Ready), SkipReason::Exception)];

    let plan = Run::of(vms).plan();

    assert_eq!(plan.actions, [Action::Restore(VmId(0))]);
}

#[test]
fn counts_tell_where_each_vm_stands() {
    let vms = vec![
        running(),
        vm(Power::Running, Stage::Ready),
        woken(Stage::Waking),
        woken(Stage::Ready),
        woken(Stage::Patching),
        woken(Stage::Restoring(Outcome::Succeeded)),
        vm(Power::Dormant, Stage::Done),
        vm(Power::Running, Stage::Failed),
        skipped(running(), SkipReason::Conflict),
    ];

    let counts = Run::of(vms).awake(10).failures(5).plan().counts;

    let expected = StageCounts {
        waiting: 2,
        waking: 2,
        patching: 1,
        restoring: 1,
        succeeded: 1,
        failed: 1,
        skipped: SkippedCounts {
            conflict: 1,
            ..SkippedCounts::default()
        },
    };
    assert_eq!(counts, expected);
    assert_eq!(counts.total(), 9);
}

#[test]
fn the_run_result_says_how_the_run_ended() {
    let done = vm(Power::Running, Stage::Done);
    let failed = vm(Power::Running, Stage::Failed);
    let cases: &[(&str, Vec<Vm>, i64, Option<RunResult>)] = &[
        ("all done", vec![done, done], 60, Some(RunResult::Succeeded)),
        (
            "one failed",
            vec![done, failed],
            60,
            Some(RunResult::PartiallySucceeded),
        ),
        (
            "budget spent",
            vec![failed, failed, failed],
            60,
            Some(RunResult::Halted),
        ),
        (
            "cutoff passed",
            vec![done, running()],
            CUTOFF,
            Some(RunResult::Incomplete),
        ),
        ("still going", vec![done, running()], 60, None),
        (
            "VM patching",
            vec![vm(Power::Running, Stage::Patching)],
            CUTOFF,
            None,
        ),
        ("VM awaiting restore", vec![woken(Stage::Done)], 60, None),
        ("nothing to patch", vec![], 60, Some(RunResult::Succeeded)),
    ];
    for (case, vms, now, expected) in cases {
        let plan = Run::of(vms.clone()).at(*now).plan();

        assert_eq!(plan.result, *expected, "{case}");
        assert_eq!(plan.is_finished(), expected.is_some(), "{case}");
    }
}

#[test]
fn the_next_decision_is_the_nearest_moment_that_matters() {
    let soaking = vec![vm(Power::Running, Stage::Done), in_wave(running(), 1)];
    let patching = vec![vm(Power::Running, Stage::Patching)];
    let cases: &[(&str, Run, Option<i64>)] = &[
        ("soak end", Run::of(soaking.clone()).canary(30), Some(90)),
        ("cutoff", Run::of(soaking).canary(300), Some(CUTOFF)),
        (
            "window end",
            Run::of(patching.clone()).at(CUTOFF),
            Some(END),
        ),
        ("nothing after the end", Run::of(patching).at(END), None),
        ("run over", Run::of(vec![]), None),
    ];
    for (case, run, expected) in cases {
        assert_eq!(run.plan().next_decision, expected.map(minute), "{case}");
    }
}

#[test]
fn the_same_input_gives_the_same_plan() {
    let mut vms = Vec::new();
    for index in 0..300 {
        let vm = match index % 5 {
            0 => dormant(),
            1 => woken(Stage::Ready),
            2 => vm(Power::Running, Stage::Done),
            _ => running(),
        };
        vms.push(vm);
    }
    let run = Run::of(vms).concurrent(7).awake(20);

    assert_eq!(run.plan(), run.plan());
}

#[test]
fn a_vm_in_an_unknown_wave_is_refused() {
    let run = Run::of(vec![running(), in_wave(running(), 1)]);

    let error = plan(&run.input()).err();

    let expected = PlanError::UnknownWave {
        vm: 1,
        wave: 1,
        waves: 1,
    };
    assert_eq!(error, Some(expected));
}

#[test]
fn a_run_without_waves_is_refused() {
    let mut run = Run::of(vec![running()]);
    run.waves.clear();

    assert_eq!(plan(&run.input()).err(), Some(PlanError::NoWaves));
}

#[test]
fn bookkeeping_past_the_last_wave_is_refused() {
    let past = Progress {
        wave: 1,
        ..Progress::default()
    };
    let run = Run::of(vec![running()]).progress(past);

    let expected = PlanError::UnknownCurrentWave { wave: 1, waves: 1 };
    assert_eq!(plan(&run.input()).err(), Some(expected));
}
