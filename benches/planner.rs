//! How long the rollout planner takes for one decision on a large fleet, in the middle of a
//! run: canary and early waves done, the last wave under way with VMs in every stage.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use patchkeeper::planner::{
    Limits, Outcome, Power, Progress, RunInput, SkipReason, Stage, Vm, Wave, plan,
};

const FLEETS: [u32; 2] = [10_000, 100_000];

const WAVES: [Wave<'static>; 3] = [
    Wave {
        name: "canary",
        soak: Some(SignedDuration::from_mins(30)),
    },
    Wave {
        name: "early",
        soak: Some(SignedDuration::from_mins(30)),
    },
    Wave {
        name: "remainder",
        soak: None,
    },
];

fn minute(minutes: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_mins(minutes)
}

fn count(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

/// The VM at `index` of a fleet of `size`: 1% canary, 19% early, the rest in the last wave;
/// one VM in five dormant, one in twenty skipped; the last wave about a third done.
fn vm(index: u32, size: u32) -> Vm {
    let permille = index * 1000 / size;
    let wave = match permille {
        0..10 => 0,
        10..200 => 1,
        _ => 2,
    };
    let dormant = index.is_multiple_of(5);
    let skip = (index % 20 == 7).then_some(SkipReason::Retire);
    let stage = match (wave, permille) {
        (0 | 1, _) if index.is_multiple_of(97) => Stage::Failed,
        (0 | 1, _) | (2, 200..450) => Stage::Done,
        _ => Stage::Waiting,
    };
    let power = if dormant {
        Power::Dormant
    } else {
        Power::Running
    };
    Vm {
        wave,
        power,
        skip,
        stage,
    }
}

/// A fleet in the middle of its last wave, with VMs patching, booting, ready and going back
/// right after the done ones.
fn fleet(size: u32) -> Vec<Vm> {
    let mut vms: Vec<Vm> = (0..size).map(|index| vm(index, size)).collect();
    let first_waiting = (size * 450 / 1000) as usize;
    let busy = vms
        .iter_mut()
        .skip(first_waiting)
        .filter(|vm| vm.skip.is_none());
    for (offset, vm) in busy.take(60).enumerate() {
        vm.stage = match (vm.power, offset % 4) {
            (Power::Running, _) => Stage::Patching,
            (_, 0) => Stage::Restoring(Outcome::Succeeded),
            (_, 1) => Stage::Waking,
            (_, 2) => Stage::Ready,
            _ => Stage::Patching,
        };
        if vm.power == Power::Dormant {
            vm.power = Power::Woken;
        }
    }
    vms
}

fn limits() -> Limits {
    Limits {
        max_concurrent: count(60),
        max_awake: count(40),
        max_failures: count(500),
        wake_dormant: true,
        last_start: minute(210),
        ends: minute(240),
    }
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("planner_decision");
    for size in FLEETS {
        let vms = fleet(size);
        let progress = Progress {
            wave: 2,
            ..Progress::default()
        };
        let input = RunInput {
            now: minute(95),
            limits: limits(),
            waves: &WAVES,
            progress,
            vms: &vms,
        };
        match plan(&input) {
            Ok(decision) => println!("{size} VMs: {} actions", decision.actions.len()),
            Err(error) => panic!("the benchmark's fleet is refused: {error}"),
        }
        group.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            b.iter(|| plan(black_box(input)))
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
