//! A window's run while the window is open: gather the members, observe each VM, let the
//! planner decide, carry out its actions, and report the run in the window's status.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::conditions::Standing;
use super::context::{Context, normal, warning};
use super::error::Error;
use super::inventory::{Coverage, coverage};
use super::members::exempts_from_patching;
use super::members::{Candidate, Membership, membership};
use super::vm_run::{self, RunScope, VmView};
use crate::api::managed_vm::{PatchOutcome, PatchPhase, PatchProgress};
use crate::api::window::{MaintenanceWindowStatus, RunCounts, RunResult, WindowPhase, WindowRun};
use crate::api::{MaintenanceWindow, PatchBaseline};
use crate::planner::{
    self, Action, HaltReason, Limits, Outcome, Plan, Power, Progress, RunInput, Stage, StageCounts,
    Vm, Wave,
};
use crate::policy::selector::matches;
use crate::schedule::{Occurrence, WindowTiming};

/// While VMs are in flight, look again at least this often (in clock time), to catch
/// boot timeouts and Jobs that end without an event reaching the operator.
const IN_FLIGHT_POLL: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The run's identifier: its opening instant in UTC, e.g. `20261208t2200z`. It names the
/// run's Jobs, so it is short and a valid part of a Kubernetes name.
pub fn run_id(opens: Timestamp) -> String {
    opens.strftime("%Y%m%dt%H%Mz").to_string()
}

/// One step of the run of an open window. Returns the window's status and when to look
/// again.
pub async fn step(
    ctx: &Context,
    window: &MaintenanceWindow,
    baseline: &PatchBaseline,
    occurrence: &Occurrence,
    timing: Option<&WindowTiming>,
    now: Timestamp,
) -> Result<(MaintenanceWindowStatus, Option<Timestamp>), Error> {
    let run = run_id(occurrence.opens.timestamp());
    let previous = window.status.clone().unwrap_or_default();
    if let Some(done) = previous.last_run.as_ref().filter(|r| r.id == run) {
        // This opening's run is over; the window stays open but starts nothing more.
        return Ok((
            finished_status(window, &previous, done, timing, now),
            next_start(timing, now),
        ));
    }
    let scope = RunScope {
        window,
        baseline,
        run: &run,
        now,
        ends: occurrence.closes.timestamp(),
    };
    if !caches_listed(ctx) || (timing.is_some() && !inventory_caught_up(ctx, window)) {
        // A step decided on a partial view could end the run at once, leaving woken VMs
        // awake, or promote a wave whose VMs are not inventoried yet. Look again shortly.
        tracing::debug!(window = %window.name_any(), "waiting for the caches and the inventory");
        return Ok((previous, Some(now)));
    }
    let mut views = member_views(ctx, window);
    let (members, dormant) = {
        let candidates = candidates(ctx, window, &views, now);
        let members = membership(&window.spec, &candidates);
        let dormant: Vec<bool> = members
            .members
            .iter()
            .map(|m| candidates[m.candidate].dormant)
            .collect();
        (members, dormant)
    };

    let progress = observe_members(ctx, &scope, &mut views, &members).await?;
    let current = previous.current_run.as_ref().filter(|r| r.id == run);
    let plan = decide(
        window, occurrence, &members, &progress, &dormant, current, now,
    );
    apply(ctx, &scope, &mut views, &members, &plan).await;

    let status = run_status(window, &previous, occurrence, &members, &plan, &run, now);
    announce(ctx, window, current, &status).await;
    let requeue = requeue_at(&plan, now, timing);
    Ok((status, requeue))
}

fn member_views(ctx: &Context, window: &MaintenanceWindow) -> Vec<VmView> {
    let namespace = window.namespace().unwrap_or_default();
    let mut views: Vec<VmView> = ctx
        .stores
        .vms
        .state()
        .into_iter()
        .filter(|vm| vm.namespace().as_deref() == Some(&namespace))
        .filter_map(|vm| {
            let name = vm.name_any();
            let managed = ctx
                .stores
                .managed_vms
                .get(&ObjectRef::new(&name).within(&namespace))?;
            let vmi = ctx
                .stores
                .vmis
                .get(&ObjectRef::new(&name).within(&namespace));
            Some(VmView::new(vm, vmi, managed))
        })
        .collect();
    views.sort_by_key(VmView::name);
    views
}

/// Whether every cache a step reads has had its first list: before it, a missing VM or
/// ManagedVM only means "not listed yet".
fn caches_listed(ctx: &Context) -> bool {
    ctx.listed.all()
}

/// Whether every VM the window selects has its ManagedVM with the power state observed, so
/// that the run knows each one's wave and whether it is dormant. Only starting VMs needs
/// this: putting woken VMs back never waits for it.
fn inventory_caught_up(ctx: &Context, window: &MaintenanceWindow) -> bool {
    let namespace = window.namespace().unwrap_or_default();
    let vms = ctx.stores.vms.state();
    let mut selected = vms
        .iter()
        .filter(|vm| vm.namespace().as_deref() == Some(&namespace))
        .filter(|vm| vm.metadata.deletion_timestamp.is_none())
        .filter(|vm| matches(&window.spec.selector, vm.labels()));
    selected.all(|vm| {
        let managed = ctx
            .stores
            .managed_vms
            .get(&ObjectRef::new(&vm.name_any()).within(&namespace));
        managed
            .and_then(|m| m.status.clone())
            .is_some_and(|s| s.power.is_some())
    })
}

fn candidates<'a>(
    ctx: &Context,
    window: &MaintenanceWindow,
    views: &'a [VmView],
    now: Timestamp,
) -> Vec<Candidate<'a>> {
    let namespace = window.namespace().unwrap_or_default();
    let windows: Vec<Arc<MaintenanceWindow>> = ctx
        .stores
        .windows
        .state()
        .into_iter()
        .filter(|w| w.namespace().as_deref() == Some(&namespace))
        .collect();
    let exceptions = ctx.exceptions_in(&namespace);
    views
        .iter()
        .map(|view| {
            let labels: &'a BTreeMap<String, String> = view.vm.labels();
            Candidate {
                name: view.vm.metadata.name.as_deref().unwrap_or_default(),
                labels,
                status: Some(&view.status),
                dormant: vm_run::is_dormant(view),
                conflict: matches!(coverage(labels, &windows), Coverage::Conflict { .. }),
                excepted: exempts_from_patching(&exceptions, &view.name(), labels, now),
                scan_wake: view.status.scan_wake.is_some(),
            }
        })
        .collect()
}

/// Observes every started member; returns each member's progress afterwards.
async fn observe_members(
    ctx: &Context,
    scope: &RunScope<'_>,
    views: &mut [VmView],
    members: &Membership,
) -> Result<Vec<Option<PatchProgress>>, Error> {
    let mut progress = Vec::with_capacity(members.members.len());
    for member in &members.members {
        let view = &mut views[member.candidate];
        match vm_run::observe(ctx, scope, view).await {
            Ok(observed) => progress.push(observed),
            Err(error) => {
                // One VM's trouble must not stop the others: it keeps its last known state.
                tracing::warn!(vm = %view.name(), error = %error, "observing the vm failed");
                progress.push(view.progress(scope.run));
            }
        }
    }
    Ok(progress)
}

fn decide(
    window: &MaintenanceWindow,
    occurrence: &Occurrence,
    members: &Membership,
    progress: &[Option<PatchProgress>],
    dormant: &[bool],
    current: Option<&WindowRun>,
    now: Timestamp,
) -> Plan {
    let waves: Vec<Wave<'_>> = members
        .waves
        .iter()
        .map(|w| Wave {
            name: &w.name,
            soak: w.soak,
        })
        .collect();
    let vms: Vec<Vm> = members
        .members
        .iter()
        .zip(progress.iter().zip(dormant))
        .map(|(member, (progress, &dormant))| Vm {
            wave: member.wave,
            power: power_of(progress.as_ref(), dormant),
            skip: member.skip,
            stage: stage_of(progress.as_ref()),
        })
        .collect();
    let input = RunInput {
        now,
        limits: limits(window, occurrence, vms.len()),
        waves: &waves,
        progress: progress_of(current),
        vms: &vms,
    };
    planner::plan(&input).unwrap_or_else(|error| {
        // Fail closed: a plan that cannot be made starts nothing and stops nothing.
        tracing::error!(window = %window.name_any(), error = %error, "the planner refused the run; nothing is started");
        Plan {
            actions: Vec::new(),
            progress: input.progress,
            counts: StageCounts::default(),
            hold: None,
            result: None,
            next_decision: None,
        }
    })
}

/// A VM the operator woke counts as woken until it is back to its original power state;
/// otherwise what KubeVirt reports decides.
fn power_of(progress: Option<&PatchProgress>, dormant: bool) -> Power {
    match progress {
        Some(p) if p.original_run_strategy.is_some() => Power::Woken,
        _ if dormant => Power::Dormant,
        _ => Power::Running,
    }
}

fn stage_of(progress: Option<&PatchProgress>) -> Stage {
    let Some(progress) = progress else {
        return Stage::Waiting;
    };
    match progress.phase {
        PatchPhase::Waiting => Stage::Waiting,
        PatchPhase::Waking => Stage::Waking,
        PatchPhase::Ready => Stage::Ready,
        PatchPhase::Patching | PatchPhase::Rebooting | PatchPhase::Verifying => Stage::Patching,
        PatchPhase::Restoring => Stage::Restoring(match progress.outcome {
            Some(PatchOutcome::Succeeded) => Outcome::Succeeded,
            Some(PatchOutcome::Failed) => Outcome::Failed,
            Some(PatchOutcome::NotPatched) | None => Outcome::NotPatched,
        }),
        PatchPhase::Done => Stage::Done,
        PatchPhase::Failed => Stage::Failed,
    }
}

fn limits(window: &MaintenanceWindow, occurrence: &Occurrence, members: usize) -> Limits {
    let rollout = &window.spec.rollout;
    let count =
        |n: usize| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    Limits {
        max_concurrent: count(rollout.max_concurrent.of(members)),
        max_awake: count(usize::try_from(window.spec.dormant.max_awake).unwrap_or(1)),
        max_failures: count(rollout.max_failures.of(members)),
        wake_dormant: window.spec.dormant.wake,
        last_start: occurrence.last_start.timestamp(),
        ends: occurrence.closes.timestamp(),
    }
}

fn progress_of(current: Option<&WindowRun>) -> Progress {
    let Some(current) = current else {
        return Progress::default();
    };
    Progress {
        wave: u32::try_from(current.wave_index).unwrap_or(0),
        wave_completed_at: current.wave_completed_at.as_ref().map(|t| t.0),
        halted: current.halted.then_some(HaltReason::FailureBudget),
    }
}

/// Carries out the plan. A failed action is logged and retried at the next step; it never
/// stops the other VMs.
async fn apply(
    ctx: &Context,
    scope: &RunScope<'_>,
    views: &mut [VmView],
    members: &Membership,
    plan: &Plan,
) {
    for action in &plan.actions {
        let view = &mut views[members.members[action.vm().index()].candidate];
        let result = match action {
            Action::Wake(_) => vm_run::wake(ctx, scope, view).await,
            Action::StartPatch(_) => vm_run::start_patch(ctx, scope, view).await,
            Action::Restore(_) => vm_run::restore(ctx, scope, view).await,
        };
        if let Err(error) = result {
            tracing::warn!(vm = %view.name(), action = ?action, error = %error, "action failed; retrying at the next step");
        }
    }
}

fn run_status(
    window: &MaintenanceWindow,
    previous: &MaintenanceWindowStatus,
    occurrence: &Occurrence,
    members: &Membership,
    plan: &Plan,
    run: &str,
    now: Timestamp,
) -> MaintenanceWindowStatus {
    let wave = members
        .waves
        .get(plan.progress.wave as usize)
        .map(|w| w.name.clone());
    let record = WindowRun {
        id: run.to_string(),
        started_at: Time(occurrence.opens.timestamp()),
        ends_at: Time(occurrence.closes.timestamp()),
        last_start_at: Time(occurrence.last_start.timestamp()),
        finished_at: plan.result.map(|_| Time(now)),
        wave,
        wave_index: i32::try_from(plan.progress.wave).unwrap_or(0),
        waves: i32::try_from(members.waves.len()).unwrap_or(0),
        wave_completed_at: plan.progress.wave_completed_at.map(Time),
        halted: plan.progress.halted.is_some(),
        counts: counts(plan),
        result: plan.result,
        message: plan.hold.as_ref().map(ToString::to_string),
    };
    let (phase, standing, current, last) = match plan.result {
        None if record.halted => (
            WindowPhase::Halted,
            Standing::reconciling("Halted", record.message.clone().unwrap_or_default()),
            Some(record),
            previous.last_run.clone(),
        ),
        None => (
            WindowPhase::Running,
            Standing::reconciling("Running", running_message(&record)),
            Some(record),
            previous.last_run.clone(),
        ),
        Some(result) => (
            finished_phase(result),
            finished_standing(&record),
            None,
            Some(record),
        ),
    };
    MaintenanceWindowStatus {
        observed_generation: window.metadata.generation,
        conditions: standing.conditions(&previous.conditions, window.metadata.generation, now),
        phase: Some(phase),
        next_start: previous.next_start.clone(),
        selected_vms: Some(i32::try_from(members.members.len()).unwrap_or(i32::MAX)),
        current_run: current,
        last_run: last,
    }
}

fn running_message(run: &WindowRun) -> String {
    let c = &run.counts;
    let wave = run.wave.as_deref().unwrap_or("remainder");
    let mut message = format!(
        "wave {wave} ({}/{}): {} waiting, {} waking, {} patching, {} restoring, {} done, {} failed, {} skipped",
        run.wave_index + 1,
        run.waves,
        c.waiting,
        c.waking,
        c.patching,
        c.restoring,
        c.succeeded,
        c.failed,
        c.skipped
    );
    if let Some(hold) = &run.message {
        message.push_str("; ");
        message.push_str(hold);
    }
    message
}

fn finished_phase(result: RunResult) -> WindowPhase {
    match result {
        RunResult::Halted => WindowPhase::Halted,
        _ => WindowPhase::Idle,
    }
}

fn finished_standing(run: &WindowRun) -> Standing {
    let c = &run.counts;
    let summary = format!(
        "run {} ended: {} patched, {} failed, {} skipped",
        run.id, c.succeeded, c.failed, c.skipped
    );
    match run.result {
        Some(RunResult::Halted) => Standing::ready(
            "Halted",
            format!("{summary}; {}", run.message.clone().unwrap_or_default()),
        ),
        _ => Standing::ready("RunFinished", summary),
    }
}

fn finished_status(
    window: &MaintenanceWindow,
    previous: &MaintenanceWindowStatus,
    done: &WindowRun,
    timing: Option<&WindowTiming>,
    now: Timestamp,
) -> MaintenanceWindowStatus {
    MaintenanceWindowStatus {
        observed_generation: window.metadata.generation,
        conditions: finished_standing(done).conditions(
            &previous.conditions,
            window.metadata.generation,
            now,
        ),
        phase: Some(done.result.map(finished_phase).unwrap_or(WindowPhase::Idle)),
        next_start: next_start(timing, now).map(Time),
        selected_vms: previous.selected_vms,
        current_run: None,
        last_run: Some(done.clone()),
    }
}

fn counts(plan: &Plan) -> RunCounts {
    let c = &plan.counts;
    let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    RunCounts {
        total: n(c.total()),
        waiting: n(c.waiting),
        waking: n(c.waking),
        patching: n(c.patching),
        restoring: n(c.restoring),
        succeeded: n(c.succeeded),
        failed: n(c.failed),
        skipped: n(c.skipped.total()),
    }
}

async fn announce(
    ctx: &Context,
    window: &MaintenanceWindow,
    before: Option<&WindowRun>,
    status: &MaintenanceWindowStatus,
) {
    let after = status.current_run.as_ref().or(status.last_run.as_ref());
    let Some(after) = after else { return };
    if before.is_none() && status.current_run.is_some() {
        let note = format!(
            "window opened: run {} with {} VMs, until {}",
            after.id, after.counts.total, after.ends_at.0
        );
        ctx.publish(window, normal("RunStarted", "Run", note)).await;
    }
    if before.map(|b| &b.wave) != Some(&after.wave)
        && before.is_some()
        && status.current_run.is_some()
    {
        let note = format!(
            "promoted to wave {}",
            after.wave.as_deref().unwrap_or_default()
        );
        ctx.publish(window, normal("WavePromoted", "Run", note))
            .await;
    }
    if before.is_some_and(|b| !b.halted) && after.halted {
        ctx.publish(
            window,
            warning("Halted", "Run", after.message.clone().unwrap_or_default()),
        )
        .await;
    }
    if let (Some(result), None) = (after.result, &status.current_run) {
        let labels = super::metrics::ResultLabels {
            result: format!("{result:?}"),
        };
        ctx.metrics.window_runs.get_or_create(&labels).inc();
        let c = &after.counts;
        let note = format!(
            "run {} ended {result:?}: {} patched, {} failed, {} skipped",
            after.id, c.succeeded, c.failed, c.skipped
        );
        let event = match result {
            RunResult::Succeeded => normal("RunFinished", "Run", note),
            _ => warning("RunFinished", "Run", note),
        };
        ctx.publish(window, event).await;
    }
}

fn requeue_at(plan: &Plan, now: Timestamp, timing: Option<&WindowTiming>) -> Option<Timestamp> {
    if plan.is_finished() {
        return next_start(timing, now);
    }
    let poll = now.saturating_add(IN_FLIGHT_POLL).unwrap_or(now);
    Some(plan.next_decision.map_or(poll, |at| at.min(poll)))
}

fn next_start(timing: Option<&WindowTiming>, now: Timestamp) -> Option<Timestamp> {
    timing?
        .next_occurrence_after(now)
        .map(|o| o.opens.timestamp())
}

/// The occurrence of a run that must end now: the window closed, was suspended, or can no
/// longer be read. Stepping it makes the planner put back every VM the run woke.
pub fn winding_down(current: &WindowRun, now: Timestamp) -> Occurrence {
    let utc = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC);
    let closes = current.ends_at.0.min(now);
    Occurrence {
        opens: utc(current.started_at.0),
        last_start: utc(current.last_start_at.0.min(closes)),
        closes: utc(closes),
    }
}
