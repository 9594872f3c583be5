//! Assessment between windows: running VMs are scanned on their baseline's interval, with
//! scan-only Jobs that never install anything, under a concurrency limit of their own, so
//! that compliance stays fresh without waiting for a window. Dormant VMs are scanned when a
//! window wakes them, and woken between windows just to be scanned only when the baseline
//! says `wakeToScan` (see [`super::scan_wake`]).

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, FIELD_MANAGER, normal, warning};
use super::error::Error;
use super::job::{self, JobRequest, RUN_LABEL, Step, VM_LABEL};
use super::scan_wake::{self, ScanJob};
use super::vm_run;
use crate::api::managed_vm::{ManagedVMStatus, PatchPhase, PowerState};
use crate::api::window::Executor;
use crate::api::{MaintenanceWindow, ManagedVM, PatchBaseline};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use crate::policy::approval::review_scan;
use crate::policy::exceptions::covering;
use crate::schedule::parse_duration;
use crate::summary::{Outcome, RunSummary};

/// The field manager of what assessment scans record.
pub const ASSESSMENT_MANAGER: &str = "patchkeeper-assessment";
/// Annotation on an assessment Job: the operator-clock instant the scan was started.
const SCAN_AT: &str = "patchkeeper.io/scan-at";
/// Assessment runs are named `assess-<instant>`.
const RUN_PREFIX: &str = "assess-";

/// Everything one assessment step looks at.
#[derive(Debug)]
pub struct Target<'a> {
    pub vm: &'a VirtualMachine,
    pub managed: &'a ManagedVM,
    pub status: &'a ManagedVMStatus,
    pub baseline: &'a PatchBaseline,
    pub window: &'a MaintenanceWindow,
    pub vmi: Option<&'a VirtualMachineInstance>,
    pub labels: &'a std::collections::BTreeMap<String, String>,
}

/// Records a finished assessment scan, or starts one when it is due: on a running VM, or
/// on a dormant one woken for it. Returns the status with what a recorded scan found, and
/// when to look again.
pub async fn step(
    ctx: &Context,
    target: &Target<'_>,
    now: Timestamp,
) -> Result<(Option<ManagedVMStatus>, Option<Timestamp>), Error> {
    let namespace = target.managed.namespace().ok_or(Error::MissingNamespace)?;
    let jobs = assessment_jobs(ctx, &namespace);
    let name = target.managed.name_any();
    let mine: Vec<&Job> = jobs
        .iter()
        .map(AsRef::as_ref)
        .filter(|j| j.labels().get(VM_LABEL) == Some(&name))
        .collect();
    let last_scan = target
        .status
        .compliance
        .as_ref()
        .and_then(|c| c.last_scan_at.as_ref())
        .map(|t| t.0);

    if let Some((job, scan_at)) = unrecorded(&mine) {
        let recorded = record(ctx, target, job, scan_at).await?;
        return Ok((recorded, None));
    }
    if let Some(wake) = &target.status.scan_wake {
        let job = wake_job(&mine, wake.since.0);
        let next = scan_wake::follow(ctx, target, wake, job, now).await?;
        return Ok((None, next));
    }
    let interval = parse_duration(target.baseline.spec.assessment.interval.as_str())
        .unwrap_or(SignedDuration::from_hours(24));
    // A failed attempt also waits for the interval: a VM that cannot be scanned is not
    // hammered, and its compliance turns stale as it should.
    let last_attempt = mine.iter().filter_map(|j| scan_at(j)).max();
    let due = last_scan
        .max(last_attempt)
        .map_or(now, |at| at.saturating_add(interval).unwrap_or(at));
    let in_flight = mine.iter().any(|j| !is_finished(j));
    if due > now || in_flight {
        return Ok((None, Some(due.max(now))));
    }
    let limit = usize::try_from(target.baseline.spec.assessment.max_concurrent_scans)
        .unwrap_or(1)
        .max(1);
    let take_slot = || {
        ctx.scan_slots
            .take(&namespace, &name, busy_vms(ctx, &namespace, &jobs), limit)
    };
    // A full queue is retried soon: a slot freed by another VM does not call for a look.
    let soon = Some(now + SignedDuration::from_secs(15));
    if let Some(host) = scannable(target) {
        if take_slot() {
            start(ctx, target, &host, now).await?;
        }
        return Ok((None, soon));
    }
    let excepted = exempts_from_patching(ctx, target, now);
    match scan_wake::refusal(target, excepted, now) {
        None => {
            if take_slot() {
                scan_wake::wake(ctx, target, now).await?;
            }
            Ok((None, soon))
        }
        Some(reason) => {
            tracing::debug!(vm = %name, reason, "not scanned between windows");
            Ok((
                None,
                Some(due.max(now).saturating_add(interval).unwrap_or(now)),
            ))
        }
    }
}

/// How long a slot taken here counts by itself: by then the caches show the Job or the scan
/// wake that took it.
const CLAIM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The scan slots this process has taken lately. The caches lag the operator's own writes,
/// and VMs are reconciled side by side, so counting busy VMs from the caches alone lets two
/// VMs decided at the same moment both take the last slot; the slots taken here are
/// counted too, under one lock, until the caches have caught up.
#[derive(Debug, Default)]
pub struct ScanSlots(std::sync::Mutex<Vec<Claim>>);

#[derive(Debug)]
struct Claim {
    namespace: String,
    vm: String,
    at: std::time::Instant,
}

impl ScanSlots {
    /// Takes a slot for `vm` if fewer than `limit` VMs of the namespace hold one: those in
    /// `busy` (from the caches) and those that took one here lately.
    pub fn take(&self, namespace: &str, vm: &str, busy: BTreeSet<String>, limit: usize) -> bool {
        let now = std::time::Instant::now();
        let Ok(mut claims) = self.0.lock() else {
            return false;
        };
        claims.retain(|c| now.duration_since(c.at) < CLAIM_LIFETIME);
        let mut holders = busy;
        holders.extend(
            claims
                .iter()
                .filter(|c| c.namespace == namespace)
                .map(|c| c.vm.clone()),
        );
        if holders.contains(vm) || holders.len() >= limit {
            return false;
        }
        claims.push(Claim {
            namespace: namespace.to_string(),
            vm: vm.to_string(),
            at: now,
        });
        true
    }
}

/// How far the scan Job of a scan wake begun at `since` has got.
fn wake_job(mine: &[&Job], since: Timestamp) -> ScanJob {
    let jobs: Vec<&&Job> = mine
        .iter()
        .filter(|j| scan_at(j).is_some_and(|at| at >= since))
        .collect();
    if jobs.iter().any(|j| is_finished(j)) {
        ScanJob::Finished
    } else if jobs.is_empty() {
        ScanJob::None
    } else {
        ScanJob::Running
    }
}

/// The VMs of the namespace the caches show taking a scan slot: scanned now, or woken to
/// be scanned.
fn busy_vms(ctx: &Context, namespace: &str, jobs: &[std::sync::Arc<Job>]) -> BTreeSet<String> {
    let scanning = jobs
        .iter()
        .filter(|j| !is_finished(j))
        .filter_map(|j| j.labels().get(VM_LABEL).cloned());
    let woken = ctx
        .stores
        .managed_vms
        .state()
        .into_iter()
        .filter(|m| m.namespace().as_deref() == Some(namespace))
        .filter(|m| m.status.as_ref().is_some_and(|s| s.scan_wake.is_some()))
        .map(|m| m.name_any());
    scanning.chain(woken).collect()
}

fn exempts_from_patching(ctx: &Context, target: &Target<'_>, now: Timestamp) -> bool {
    let namespace = target.managed.namespace().unwrap_or_default();
    let exceptions = ctx.exceptions_in(&namespace);
    super::members::exempts_from_patching(&exceptions, &target.vm.name_any(), target.labels, now)
}

/// The VM's address when it may be scanned now: running, reachable, and not in a window's
/// run (the run scans it itself).
fn scannable(target: &Target<'_>) -> Option<String> {
    let running = target
        .status
        .power
        .as_ref()
        .is_some_and(|p| p.state == PowerState::Running);
    let in_run = target.status.patch.as_ref().is_some_and(|p| {
        !matches!(
            p.phase,
            PatchPhase::Done | PatchPhase::Failed | PatchPhase::Waiting
        )
    });
    let vmi = target.vmi.filter(|vmi| vmi.is_running())?;
    (running && !in_run)
        .then(|| vmi.ip_address().map(str::to_string))
        .flatten()
}

fn assessment_jobs(ctx: &Context, namespace: &str) -> Vec<std::sync::Arc<Job>> {
    ctx.stores
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace))
        .filter(|j| {
            j.labels()
                .get(RUN_LABEL)
                .is_some_and(|r| r.starts_with(RUN_PREFIX))
        })
        .collect()
}

fn is_finished(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| {
        c.iter()
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    })
}

/// Annotation on an assessment Job once its result is recorded.
const RECORDED: &str = "patchkeeper.io/recorded";

fn scan_at(job: &Job) -> Option<Timestamp> {
    job.annotations().get(SCAN_AT)?.parse().ok()
}

/// The newest finished assessment Job whose result is not recorded yet.
fn unrecorded<'a>(jobs: &[&'a Job]) -> Option<(&'a Job, Timestamp)> {
    jobs.iter()
        .filter(|j| is_finished(j) && !j.annotations().contains_key(RECORDED))
        .filter_map(|j| Some((*j, scan_at(j)?)))
        .max_by_key(|(_, at)| *at)
}

/// The time a scan Job may take: reaching the VM, then scanning.
pub fn scan_deadline(executor: &Executor) -> SignedDuration {
    [&executor.timeouts.ssh_ready, &executor.timeouts.scan]
        .iter()
        .filter_map(|d| parse_duration(d.as_str()).ok())
        .fold(SignedDuration::ZERO, |sum, d| sum + d)
}

/// Starts a scan-only Job on the VM at `host`.
pub async fn start(
    ctx: &Context,
    target: &Target<'_>,
    host: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let namespace = target.managed.namespace().ok_or(Error::MissingNamespace)?;
    let run = format!("{RUN_PREFIX}{}", super::run::run_id(now));
    let executor = &target.window.spec.executor;
    let deadline = scan_deadline(executor);
    let request = JobRequest {
        window: &target.window.name_any(),
        run: &run,
        vm: &target.managed.name_any(),
        step: Step::Scan,
        host,
        executor,
        default_image: &ctx.settings.runner_image,
        reboot: target.baseline.spec.reboot,
        packages: &[],
        blocked: &[],
        deadline,
        owner: target
            .managed
            .controller_owner_ref(&())
            .ok_or(Error::MissingUid)?,
    };
    let mut job = job::build(&request);
    job.metadata.annotations = Some([(SCAN_AT.to_string(), now.to_string())].into());
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
        Ok(_) => {
            tracing::info!(vm = %target.managed.name_any(), job = %job.name_any(), "assessment scan started")
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Records what a finished assessment scan found; a failed scan is announced, never taken
/// as evidence about the VM.
async fn record(
    ctx: &Context,
    target: &Target<'_>,
    job: &Job,
    scan_at: Timestamp,
) -> Result<Option<ManagedVMStatus>, Error> {
    let namespace = target.managed.namespace().ok_or(Error::MissingNamespace)?;
    let summary = vm_run::termination_summary(ctx, &namespace, &job.name_any()).await?;
    let Some(summary) = summary.clone().filter(|s| s.outcome == Outcome::Succeeded) else {
        let note = failure_note(summary.as_ref());
        ctx.publish_on_vm(target.managed, warning("ScanFailed", "Assess", note))
            .await;
        mark_recorded(ctx, job).await?;
        return Ok(None);
    };
    let exceptions = ctx.exceptions_in(&namespace);
    let coverage = covering(
        exceptions.iter().map(AsRef::as_ref),
        &target.managed.name_any(),
        target.labels,
        scan_at,
    );
    let previous = target
        .status
        .compliance
        .as_ref()
        .map(|c| c.pending_updates.clone())
        .unwrap_or_default();
    let Ok(review) = review_scan(
        &target.baseline.spec.approval,
        &summary.updates,
        &previous,
        &coverage.held_packages(),
        scan_at,
    ) else {
        return Ok(None);
    };
    let mut status = target.status.clone();
    let compliance = status.compliance.get_or_insert_with(Default::default);
    compliance.last_scan_at = Some(Time(scan_at));
    compliance.pending_updates = review.pending_updates();
    write(ctx, target.managed, &status).await?;
    mark_recorded(ctx, job).await?;
    let note = format!(
        "scanned: {} updates available, {} approved now",
        summary.counts.updates.total,
        review.install().len()
    );
    ctx.publish_on_vm(target.managed, normal("Scanned", "Assess", note))
        .await;
    Ok(Some(status))
}

fn failure_note(summary: Option<&RunSummary>) -> String {
    match summary.and_then(|s| s.failure.as_ref()) {
        Some(f) => format!(
            "assessment scan failed in {} waiting for {}: {}; compliance keeps its last scan",
            f.phase.as_str(),
            f.awaiting,
            f.message
        ),
        None => "assessment scan failed without a result; compliance keeps its last scan".into(),
    }
}

/// Marks a Job's result as recorded, so that it is announced and counted once.
async fn mark_recorded(ctx: &Context, job: &Job) -> Result<(), Error> {
    let namespace = job.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"metadata": {"annotations": {RECORDED: "true"}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(&job.name_any(), &params, &Patch::Merge(patch))
        .await?;
    Ok(())
}

async fn write(ctx: &Context, managed: &ManagedVM, status: &ManagedVMStatus) -> Result<(), Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ManagedVM> = Api::namespaced(ctx.client.clone(), &namespace);
    let compliance = status.compliance.as_ref();
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()), "kind": ManagedVM::kind(&()),
        "status": {"compliance": {
            "lastScanAt": compliance.and_then(|c| c.last_scan_at.clone()),
            "pendingUpdates": compliance.map(|c| c.pending_updates.clone()).unwrap_or_default(),
        }},
    });
    api.patch_status(
        &managed.name_any(),
        &PatchParams::apply(ASSESSMENT_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// When the VM's newest finished assessment scan started, if that scan failed: its Job
/// ended `Failed`, having recorded nothing about the VM.
pub fn failed_scan(ctx: &Context, managed: &ManagedVM) -> Option<Timestamp> {
    let namespace = managed.namespace()?;
    let name = managed.name_any();
    let jobs = assessment_jobs(ctx, &namespace);
    let (started, newest) = jobs
        .iter()
        .filter(|j| j.labels().get(VM_LABEL) == Some(&name) && is_finished(j))
        .filter_map(|j| Some((scan_at(j)?, j)))
        .max_by_key(|(at, _)| *at)?;
    has_failed(newest).then_some(started)
}

fn has_failed(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

/// The VM's instance, from the cache.
pub fn instance(
    ctx: &Context,
    managed: &ManagedVM,
) -> Option<std::sync::Arc<VirtualMachineInstance>> {
    ctx.stores
        .vmis
        .get(&ObjectRef::new(&managed.name_any()).within(&managed.namespace()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(vms: &[&str]) -> BTreeSet<String> {
        vms.iter().map(|vm| vm.to_string()).collect()
    }

    #[test]
    fn a_slot_taken_counts_before_the_caches_show_it() {
        let slots = ScanSlots::default();
        assert!(slots.take("prod", "a", busy(&[]), 1));
        assert!(
            !slots.take("prod", "b", busy(&[]), 1),
            "the caches do not show a yet"
        );
        assert!(
            slots.take("dev", "c", busy(&[]), 1),
            "another namespace has its own"
        );
    }

    #[test]
    fn the_caches_and_the_slots_taken_here_count_each_vm_once() {
        let slots = ScanSlots::default();
        assert!(slots.take("prod", "a", busy(&[]), 2));
        assert!(slots.take("prod", "b", busy(&["a"]), 2));
        assert!(!slots.take("prod", "c", busy(&["a", "b"]), 2));
        assert!(
            !slots.take("prod", "a", busy(&[]), 5),
            "a holds its slot already"
        );
    }
}
