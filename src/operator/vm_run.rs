//! One VM's path through a run:
//! `Waiting → (Waking → Ready) → Patching → (Restoring) → Done | Failed`.
//!
//! The planner decides *when* a VM moves on; this module observes what happened to it
//! (booted, Job finished, back to sleep), carries out the planner's actions, and records
//! every step in the ManagedVM's status and in Events on the ManagedVM and its VM.
//!
//! Every action is recorded before it is taken where a crash in between would lose
//! something: the original run strategy is written to status before the VM is woken, so a
//! restarted operator still restores it.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, FIELD_MANAGER, normal, warning};
use super::error::Error;
use super::job::{self, JobRequest, Step};
use crate::api::managed_vm::{PatchOutcome, PatchPhase, PatchProgress, PowerState, RunRecord};
use crate::api::{MaintenanceWindow, ManagedVM, ManagedVMStatus, PatchBaseline};
use crate::kubevirt::{RUN_STRATEGY_ALWAYS, RunStrategy, VirtualMachine, VirtualMachineInstance};
use crate::summary::{Outcome as RunnerOutcome, RunSummary};

use super::approval_step::{self, ScanDecision};

/// How many runs a ManagedVM's history keeps.
const HISTORY: usize = 10;

/// The run reconciler writes the ManagedVM fields about runs with a field manager of its
/// own, so that the inventory's fields are never overwritten by it.
pub const RUNS_MANAGER: &str = "patchkeeper-runs";

/// Everything about one member VM that the run looks at.
#[derive(Clone, Debug)]
pub struct VmView {
    pub vm: Arc<VirtualMachine>,
    pub vmi: Option<Arc<VirtualMachineInstance>>,
    pub managed: Arc<ManagedVM>,
    /// The ManagedVM's status as last written: the cache may lag behind this step's writes.
    pub status: ManagedVMStatus,
}

impl VmView {
    pub fn name(&self) -> String {
        self.vm.name_any()
    }

    pub fn new(
        vm: Arc<VirtualMachine>,
        vmi: Option<Arc<VirtualMachineInstance>>,
        managed: Arc<ManagedVM>,
    ) -> Self {
        let status = managed.status.clone().unwrap_or_default();
        Self {
            vm,
            vmi,
            managed,
            status,
        }
    }

    /// The VM's progress in `run`, if it has started in it.
    pub fn progress(&self, run: &str) -> Option<PatchProgress> {
        self.status.patch.clone().filter(|p| p.run == run)
    }

    /// The VM's address, once its instance runs and reports one.
    pub fn address(&self) -> Option<String> {
        let vmi = self.vmi.as_ref().filter(|vmi| vmi.is_running())?;
        vmi.ip_address().map(str::to_string)
    }

    pub fn is_stopped(&self) -> bool {
        self.vm.printable_status() == "Stopped" && self.vmi.is_none()
    }
}

/// The run a VM is in, and what the window says about it.
#[derive(Clone, Debug)]
pub struct RunScope<'a> {
    pub window: &'a MaintenanceWindow,
    pub baseline: &'a PatchBaseline,
    pub run: &'a str,
    pub now: Timestamp,
    /// When the window closes: Jobs must end before.
    pub ends: Timestamp,
}

/// Observes what happened to a started VM since the last look, and records it.
/// Returns the VM's progress afterwards.
pub async fn observe(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &mut VmView,
) -> Result<Option<PatchProgress>, Error> {
    let Some(progress) = view.progress(scope.run) else {
        return Ok(None);
    };
    let next = match progress.phase {
        PatchPhase::Waking => {
            // A restart between recording the wake and starting the VM leaves it off: start
            // it again (setting the same run strategy twice changes nothing).
            let always = RunStrategy::Strategy(RUN_STRATEGY_ALWAYS.into());
            if view.vm.run_strategy() != always {
                set_run_strategy(ctx, &view.vm, &always).await?;
            }
            observe_waking(scope, view, &progress)
        }
        PatchPhase::Patching | PatchPhase::Rebooting | PatchPhase::Verifying => {
            return observe_patching(ctx, scope, view, progress).await.map(Some);
        }
        PatchPhase::Restoring => {
            give_back_original(ctx, view, &progress).await?;
            observe_restoring(scope, view, &progress)
        }
        _ => None,
    };
    match next {
        Some(next) => record(ctx, scope, view, next, None).await.map(Some),
        None => Ok(Some(progress)),
    }
}

fn observe_waking(
    scope: &RunScope<'_>,
    view: &VmView,
    progress: &PatchProgress,
) -> Option<PatchProgress> {
    if view.address().is_some() {
        return Some(PatchProgress {
            phase: PatchPhase::Ready,
            since: Some(Time(scope.now)),
            message: Some("booted and reachable".into()),
            ..progress.clone()
        });
    }
    let boot_timeout =
        crate::schedule::parse_duration(scope.window.spec.dormant.boot_timeout.as_str())
            .unwrap_or(SignedDuration::from_mins(10));
    let since = progress.since.as_ref().map(|t| t.0).unwrap_or(scope.now);
    (scope.now.duration_since(since) >= boot_timeout).then(|| PatchProgress {
        phase: PatchPhase::Failed,
        since: Some(Time(scope.now)),
        message: Some(format!(
            "timed out after {} waiting for the VM to boot and report an IP address",
            scope.window.spec.dormant.boot_timeout
        )),
        ..progress.clone()
    })
}

fn observe_restoring(
    scope: &RunScope<'_>,
    view: &VmView,
    progress: &PatchProgress,
) -> Option<PatchProgress> {
    let original = progress
        .original_run_strategy
        .as_deref()
        .map(RunStrategy::from_status_string);
    let back = match original {
        Some(strategy) if strategy.wants_running() => !view.is_stopped(),
        Some(strategy) => view.is_stopped() && view.vm.run_strategy() == strategy,
        None => view.is_stopped(),
    };
    back.then(|| {
        let phase = match progress.outcome {
            Some(PatchOutcome::Succeeded) => PatchPhase::Done,
            Some(PatchOutcome::Failed) => PatchPhase::Failed,
            Some(PatchOutcome::NotPatched) | None => PatchPhase::Waiting,
        };
        PatchProgress {
            phase,
            since: Some(Time(scope.now)),
            original_run_strategy: None,
            message: Some("back to its original power state".into()),
            ..progress.clone()
        }
    })
}

/// Writes the original run strategy of a VM that was stopped with `Halted` in its place,
/// once it is off.
async fn give_back_original(
    ctx: &Context,
    view: &VmView,
    progress: &PatchProgress,
) -> Result<(), Error> {
    let original = progress
        .original_run_strategy
        .as_deref()
        .map(RunStrategy::from_status_string);
    let Some(original) = original.filter(|o| !o.wants_running()) else {
        return Ok(());
    };
    if view.is_stopped() && view.vm.run_strategy() != original {
        set_run_strategy(ctx, &view.vm, &original).await?;
    }
    Ok(())
}

async fn observe_patching(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &mut VmView,
    progress: PatchProgress,
) -> Result<PatchProgress, Error> {
    let namespace = view.managed.namespace().ok_or(Error::MissingNamespace)?;
    let Some(job_name) = progress.job.clone() else {
        return Ok(progress);
    };
    let job = ctx
        .stores
        .jobs
        .get(&ObjectRef::new(&job_name).within(&namespace));
    let Some(finished) = job.as_deref().and_then(job_finished) else {
        return Ok(progress);
    };
    let summary = termination_summary(ctx, &namespace, &job_name).await?;
    let step = if job_name.ends_with("-scan") {
        Step::Scan
    } else {
        Step::Install
    };
    match (step, finished, summary) {
        (Step::Scan, JobEnd::Succeeded, Some(summary)) => {
            after_scan(ctx, scope, view, progress, &summary).await
        }
        (Step::Install, JobEnd::Succeeded, Some(summary)) => {
            match approval_step::compliance_after_install(ctx, scope, view, &summary) {
                Ok(Some(compliance)) => view.status.compliance = Some(compliance),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(vm = %view.name(), reason = %reason, "compliance not updated")
                }
            }
            let next = finish(
                scope,
                &progress,
                PatchOutcome::Succeeded,
                install_message(&summary),
            );
            record(ctx, scope, view, next, Some(&summary)).await
        }
        (_, _, summary) => {
            let reason = failure_reason(step, summary.as_ref(), job.as_deref());
            let next = finish(scope, &progress, PatchOutcome::Failed, reason);
            record(ctx, scope, view, next, summary.as_ref()).await
        }
    }
}

async fn after_scan(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &mut VmView,
    progress: PatchProgress,
    scan: &RunSummary,
) -> Result<PatchProgress, Error> {
    let decision = match approval_step::decide(ctx, scope, view, scan) {
        Ok(decision) => decision,
        Err(reason) => {
            // Fail closed: rules that cannot be read install nothing.
            let next = finish(scope, &progress, PatchOutcome::Failed, reason);
            return record(ctx, scope, view, next, Some(scan)).await;
        }
    };
    view.status.compliance = Some(decision.compliance.clone());
    if decision.install.is_empty() {
        let next = finish(
            scope,
            &progress,
            PatchOutcome::Succeeded,
            nothing_message(&decision),
        );
        return record(ctx, scope, view, next, None).await;
    }
    let job = create_job(ctx, scope, view, Step::Install, &decision).await?;
    let next = PatchProgress {
        phase: PatchPhase::Patching,
        since: Some(Time(scope.now)),
        job: Some(job),
        message: Some(format!(
            "installing {} approved updates",
            decision.install.len()
        )),
        ..progress
    };
    record(ctx, scope, view, next, None).await
}

fn nothing_message(decision: &ScanDecision) -> String {
    match decision.held_back {
        0 => "nothing to install: no update is available".into(),
        n => format!("nothing to install: {n} available updates are not approved"),
    }
}

fn install_message(summary: &RunSummary) -> String {
    let installed = summary.counts.installed_this_run;
    let reboot = if summary.rebooted {
        ", rebooted"
    } else if summary.reboot_required {
        ", reboot required"
    } else {
        ""
    };
    format!("installed {installed} updates{reboot}")
}

/// A VM whose patching ended: woken VMs go on to be restored, the others are done.
fn finish(
    scope: &RunScope<'_>,
    progress: &PatchProgress,
    outcome: PatchOutcome,
    message: String,
) -> PatchProgress {
    let phase = match outcome {
        PatchOutcome::Succeeded => PatchPhase::Done,
        PatchOutcome::Failed | PatchOutcome::NotPatched => PatchPhase::Failed,
    };
    PatchProgress {
        phase,
        since: Some(Time(scope.now)),
        outcome: Some(outcome),
        message: Some(message),
        ..progress.clone()
    }
}

/// How a Job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobEnd {
    Succeeded,
    Failed,
}

fn job_finished(job: &Job) -> Option<JobEnd> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |type_: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    if holds("Complete") {
        Some(JobEnd::Succeeded)
    } else if holds("Failed") {
        Some(JobEnd::Failed)
    } else {
        None
    }
}

fn failure_reason(step: Step, summary: Option<&RunSummary>, job: Option<&Job>) -> String {
    if let Some(failure) = summary.and_then(|s| s.failure.as_ref()) {
        let outcome = match summary.map(|s| s.outcome) {
            Some(RunnerOutcome::TimedOut) => "timed out",
            _ => "failed",
        };
        return format!(
            "{} {outcome} in {} waiting for {}: {}",
            step.as_str(),
            failure.phase.as_str(),
            failure.awaiting,
            failure.message
        );
    }
    let job_message = job
        .and_then(|j| {
            j.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Failed")
                .cloned()
        })
        .map(|c| {
            format!(
                "{}: {}",
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "the Job failed without a result".into());
    format!("{} Job failed: {job_message}", step.as_str())
}

/// The runner's summary from the newest finished Pod of a Job.
pub async fn termination_summary(
    ctx: &Context,
    namespace: &str,
    job: &str,
) -> Result<Option<RunSummary>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let mut messages: Vec<(Timestamp, String)> = list
        .items
        .iter()
        .flat_map(|pod| {
            pod.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter_map(|t| {
            Some((
                t.finished_at.as_ref().map(|f| f.0).unwrap_or_default(),
                t.message.clone()?,
            ))
        })
        .collect();
    messages.sort_by_key(|(at, _)| *at);
    Ok(messages
        .pop()
        .and_then(|(_, message)| RunSummary::from_termination_message(&message).ok()))
}

/// Wakes a dormant VM: records its original run strategy first, then starts it.
pub async fn wake(ctx: &Context, scope: &RunScope<'_>, view: &mut VmView) -> Result<(), Error> {
    let original = view.vm.run_strategy();
    let progress = PatchProgress {
        run: scope.run.to_string(),
        phase: PatchPhase::Waking,
        started_at: Some(Time(scope.now)),
        since: Some(Time(scope.now)),
        original_run_strategy: Some(original.to_status_string()),
        job: None,
        message: Some(format!(
            "starting the VM (run strategy was {})",
            original.to_status_string()
        )),
        outcome: None,
    };
    record(ctx, scope, view, progress, None).await?;
    set_run_strategy(
        ctx,
        &view.vm,
        &RunStrategy::Strategy(RUN_STRATEGY_ALWAYS.into()),
    )
    .await?;
    ctx.metrics.vms_woken.inc();
    Ok(())
}

/// Creates the VM's scan Job and records that it is patching.
pub async fn start_patch(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &mut VmView,
) -> Result<(), Error> {
    if view.address().is_none() {
        // A Job without an address could only fail, and a VM that is still starting would
        // count against the failure budget. It waits for its address instead.
        // Limitation: a running VM that never reports an address keeps the patch slot the
        // planner gives it until the cutoff.
        tracing::debug!(vm = %view.name(), "no IP address yet; the patch waits for one");
        return Ok(());
    }
    let previous = view.progress(scope.run);
    let job = create_job(ctx, scope, view, Step::Scan, &ScanDecision::default()).await?;
    let started_at = previous
        .as_ref()
        .and_then(|p| p.started_at.clone())
        .unwrap_or(Time(scope.now));
    let progress = PatchProgress {
        run: scope.run.to_string(),
        phase: PatchPhase::Patching,
        started_at: Some(started_at),
        since: Some(Time(scope.now)),
        original_run_strategy: previous.and_then(|p| p.original_run_strategy),
        job: Some(job),
        message: Some("scanning for available updates".into()),
        outcome: None,
    };
    record(ctx, scope, view, progress, None).await.map(|_| ())
}

/// Puts a woken VM back to its original run strategy. A VM still patching (the window
/// closed) has its Job stopped and its run failed first.
pub async fn restore(ctx: &Context, scope: &RunScope<'_>, view: &mut VmView) -> Result<(), Error> {
    let Some(progress) = view.progress(scope.run) else {
        return Ok(());
    };
    let Some(original) = progress.original_run_strategy.clone() else {
        // Never stop a VM the operator did not wake.
        return Ok(());
    };
    let outcome = match progress.phase {
        PatchPhase::Patching | PatchPhase::Rebooting | PatchPhase::Verifying => {
            stop_job(ctx, view, progress.job.as_deref()).await?;
            PatchOutcome::Failed
        }
        PatchPhase::Done => PatchOutcome::Succeeded,
        PatchPhase::Failed => progress.outcome.unwrap_or(PatchOutcome::Failed),
        _ => PatchOutcome::NotPatched,
    };
    let message = match (outcome, progress.phase) {
        (PatchOutcome::Failed, PatchPhase::Patching) => {
            "the window closed while patching; putting the VM back".into()
        }
        (PatchOutcome::NotPatched, _) => "not patched in this run; putting the VM back".into(),
        _ => format!("putting the VM back to run strategy {original}"),
    };
    let next = PatchProgress {
        phase: PatchPhase::Restoring,
        since: Some(Time(scope.now)),
        outcome: Some(outcome),
        message: Some(message),
        ..progress
    };
    record(ctx, scope, view, next, None).await?;
    let original = RunStrategy::from_status_string(&original);
    set_run_strategy(ctx, &view.vm, &original.stopping()).await
}

async fn stop_job(ctx: &Context, view: &VmView, job: Option<&str>) -> Result<(), Error> {
    let (Some(job), Some(namespace)) = (job, view.managed.namespace()) else {
        return Ok(());
    };
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(job, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes a VM's run strategy, with the operator's field manager.
pub async fn set_run_strategy(
    ctx: &Context,
    vm: &VirtualMachine,
    strategy: &RunStrategy,
) -> Result<(), Error> {
    let namespace = vm.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(
        &vm.name_any(),
        &params,
        &Patch::Merge(strategy.merge_patch()),
    )
    .await?;
    Ok(())
}

async fn create_job(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &VmView,
    step: Step,
    decision: &ScanDecision,
) -> Result<String, Error> {
    let namespace = view.managed.namespace().ok_or(Error::MissingNamespace)?;
    let host = view.address().unwrap_or_default();
    let owner = view
        .managed
        .controller_owner_ref(&())
        .ok_or(Error::MissingUid)?;
    let request = JobRequest {
        window: &scope.window.name_any(),
        run: scope.run,
        vm: &view.name(),
        step,
        host: &host,
        executor: &scope.window.spec.executor,
        default_image: &ctx.settings.runner_image,
        reboot: scope.baseline.spec.reboot,
        packages: &decision.install,
        blocked: &decision.blocked,
        deadline: scope.ends.duration_since(scope.now),
        owner,
    };
    let job = job::build(&request);
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            },
            &job,
        )
        .await
    {
        Ok(_) => {}
        // The deterministic name makes a repeated start find the Job it created before.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(name)
}

/// Writes a VM's new progress (and, when its run ended, the history entry), and tells the
/// story in Events on the ManagedVM and the VirtualMachine.
pub async fn record(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &mut VmView,
    progress: PatchProgress,
    summary: Option<&RunSummary>,
) -> Result<PatchProgress, Error> {
    let mut status = view.status.clone();
    let before = status.patch.clone().filter(|p| p.run == scope.run);
    if before.as_ref().map(|p| (p.phase, &p.job)) == Some((progress.phase, &progress.job)) {
        return Ok(progress);
    }
    update_history(&mut status, scope, &progress, summary);
    status.patch = Some(progress.clone());
    write_run_fields(ctx, &view.managed, &status).await?;
    view.status = status;
    measure(ctx, scope, before.as_ref(), &progress);
    announce(ctx, view, before.as_ref(), &progress).await;
    Ok(progress)
}

fn update_history(
    status: &mut ManagedVMStatus,
    scope: &RunScope<'_>,
    progress: &PatchProgress,
    summary: Option<&RunSummary>,
) {
    let ended = matches!(progress.phase, PatchPhase::Done | PatchPhase::Failed)
        || (progress.phase == PatchPhase::Restoring
            && progress.outcome != Some(PatchOutcome::NotPatched));
    let recorded = status.history.first().is_some_and(|r| r.run == scope.run);
    if !ended || recorded {
        if let (Some(summary), Some(first)) = (summary, status.history.first_mut()) {
            first.changes = changes(summary).or(first.changes.take());
        }
        return;
    }
    let failed =
        progress.outcome == Some(PatchOutcome::Failed) || progress.phase == PatchPhase::Failed;
    let record = RunRecord {
        run: scope.run.to_string(),
        window: scope.window.name_any(),
        started_at: progress.started_at.clone().unwrap_or(Time(scope.now)),
        finished_at: Some(Time(scope.now)),
        result: if failed { "Failed" } else { "Succeeded" }.into(),
        changes: summary.and_then(changes),
        reason: progress.message.clone(),
        rebooted: summary.is_some_and(|s| s.rebooted),
        woken: progress.original_run_strategy.is_some(),
    };
    if failed {
        status.consecutive_failures += 1;
    } else {
        status.consecutive_failures = 0;
        if summary.is_some_and(|s| s.counts.installed_this_run > 0) {
            status.last_patched_at = Some(Time(scope.now));
        }
    }
    status.history.insert(0, record);
    status.history.truncate(HISTORY);
}

fn changes(summary: &RunSummary) -> Option<String> {
    if summary.installed.is_empty() {
        return None;
    }
    let listed: Vec<String> = summary
        .installed
        .iter()
        .take(20)
        .map(|p| format!("{} {}→{}", p.name, p.from.as_deref().unwrap_or("new"), p.to))
        .collect();
    let more = summary.counts.installed_this_run as usize
        - listed.len().min(summary.counts.installed_this_run as usize);
    Some(if more > 0 {
        format!("{} and {more} more", listed.join(", "))
    } else {
        listed.join(", ")
    })
}

/// Writes the fields the run reconciler owns.
pub async fn write_run_fields(
    ctx: &Context,
    managed: &ManagedVM,
    status: &ManagedVMStatus,
) -> Result<(), Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ManagedVM> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut fields = json!({
        "patch": status.patch,
        "history": status.history,
        "consecutiveFailures": status.consecutive_failures,
        "lastPatchedAt": status.last_patched_at,
    });
    if status.compliance.is_some() {
        fields["compliance"] = approval_step::scan_record(status.compliance.as_ref());
    }
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()),
        "kind": ManagedVM::kind(&()),
        "status": fields,
    });
    api.patch_status(
        &managed.name_any(),
        &PatchParams::apply(RUNS_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

async fn announce(
    ctx: &Context,
    view: &VmView,
    before: Option<&PatchProgress>,
    after: &PatchProgress,
) {
    let message = after.message.clone().unwrap_or_default();
    let restored = before.is_some_and(|b| b.phase == PatchPhase::Restoring);
    let (reason, failed) = match (after.phase, after.outcome) {
        (_, _) if restored => ("BackToSleep", false),
        (PatchPhase::Waking, _) => ("Waking", false),
        (PatchPhase::Ready, _) => ("Booted", false),
        (PatchPhase::Patching, _)
            if after
                .job
                .as_deref()
                .is_some_and(|j| j.ends_with("-install")) =>
        {
            ("Installing", false)
        }
        (PatchPhase::Patching, _) => ("Scanning", false),
        (PatchPhase::Restoring, _) => ("Restoring", false),
        (PatchPhase::Done, _) => ("Patched", false),
        (PatchPhase::Failed, _) => ("PatchFailed", true),
        (PatchPhase::Waiting, Some(PatchOutcome::NotPatched)) => ("BackToSleep", false),
        (PatchPhase::Waiting, _) => ("BackToSleep", false),
        (PatchPhase::Rebooting | PatchPhase::Verifying, _) => ("Rebooting", false),
    };
    tracing::info!(vm = %view.name(), run = %after.run, phase = ?after.phase, from = ?before.map(|b| b.phase), message = %message, "vm run step");
    let event = if failed {
        warning(reason, "Patch", message)
    } else {
        normal(reason, "Patch", message)
    };
    ctx.publish_on_vm(&view.managed, event).await;
}

/// Records how long the VM spent in the phase it left, and how its run ended.
fn measure(
    ctx: &Context,
    scope: &RunScope<'_>,
    before: Option<&PatchProgress>,
    after: &PatchProgress,
) {
    if let Some(before) = before.filter(|b| b.phase != after.phase) {
        let since = before.since.as_ref().map_or(scope.now, |t| t.0);
        let seconds = scope.now.duration_since(since).as_secs_f64();
        ctx.metrics
            .phase_ended(&format!("{:?}", before.phase), seconds);
    }
    let ended = matches!(after.phase, PatchPhase::Done | PatchPhase::Failed);
    let ended_before = before.is_some_and(|b| {
        matches!(
            b.phase,
            PatchPhase::Done | PatchPhase::Failed | PatchPhase::Restoring
        )
    });
    if ended && !ended_before {
        let outcome = if after.phase == PatchPhase::Done {
            "Succeeded"
        } else {
            "Failed"
        };
        ctx.metrics
            .vm_outcomes
            .get_or_create(&super::metrics::ResultLabels {
                result: outcome.into(),
            })
            .inc();
    }
}

/// The VM's power state as the run sees it.
pub fn is_dormant(view: &VmView) -> bool {
    view.status
        .power
        .as_ref()
        .is_some_and(|p| matches!(p.state, PowerState::Stopped | PowerState::Stopping))
        || view.is_stopped()
}
