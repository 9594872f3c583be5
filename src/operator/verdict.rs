//! Keep or retire: for each ManagedVM, the exceptions that cover it, its compliance as time
//! passes (a scan turns stale, a deadline runs out), and the verdict of its baseline's
//! retirement rule — with the label, condition and Events that make it visible, and the
//! `Stop` or `Delete` action once the grace period has ended.
//!
//! A verdict is never reached on an error path: when the baseline cannot be read or the VM
//! cannot be seen, nothing is decided and nothing is done.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::assessment;
use super::conditions::{condition, remove_condition, set_condition};
use super::context::{Context, normal, warning};
use super::error::Error;
use crate::api::managed_vm::{Decision, ManagedVMStatus, VERDICT_LABEL, Verdict};
use crate::api::{ManagedVM, PatchBaseline};
use crate::kubevirt::{RUN_STRATEGY_HALTED, RunStrategy, VirtualMachine};
use crate::policy::approval::review_pending;
use crate::policy::compliance::{ComplianceReport, ComplianceRules, Scan};
use crate::policy::exceptions::{Coverage, covering};
use crate::policy::verdict::{Change, DueAction, Enforcement, Evidence, Judgement, RetirementRule};
use crate::schedule::parse_duration;

/// The field manager of the verdict's fields in status.
pub const VERDICT_MANAGER: &str = "patchkeeper-verdict";
/// The condition type a retired VM carries.
pub const RETIRE_CONDITION: &str = "Retire";

/// What the reconciler concluded for one VM.
#[derive(Debug)]
struct Assessment<'a> {
    coverage: Coverage<'a>,
    report: Option<ComplianceReport>,
    judgement: Option<Judgement>,
    /// When the VM will have been dormant longer than the baseline allows.
    dormancy_limit_at: Option<Timestamp>,
}

/// Reconciles one ManagedVM's exceptions, compliance and verdict.
pub async fn reconcile(managed: Arc<ManagedVM>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let name = managed.name_any();
    let Some(vm) = ctx
        .stores
        .vms
        .get(&ObjectRef::new(&name).within(&namespace))
    else {
        // The VM is gone or not seen yet; its ManagedVM goes with it.
        return Ok(Action::await_change());
    };
    let status = managed.status.clone().unwrap_or_default();
    let baseline = status.baseline.as_ref().and_then(|b| {
        ctx.stores
            .baselines
            .get(&ObjectRef::new(b).within(&namespace))
    });
    let exceptions = ctx.exceptions_in(&namespace);
    let now = ctx.clock().now();

    let (status, next_scan) =
        scan_between_windows(&ctx, &managed, &vm, status, baseline.as_deref(), now).await?;
    let failed_scan = assessment::failed_scan(&ctx, &managed);
    let assessment = assess(
        &vm,
        &status,
        baseline.as_deref(),
        exceptions.iter().map(AsRef::as_ref),
        failed_scan,
        now,
    );
    let next = [next_look(&assessment, now), next_scan]
        .into_iter()
        .flatten()
        .min();
    apply_verdict(&ctx, &managed, &vm, &status, &assessment).await?;
    Ok(match next {
        Some(at) => Action::requeue(
            ctx.clock()
                .real_delay(at.duration_since(now))
                .max(std::time::Duration::from_secs(1)),
        ),
        None => Action::await_change(),
    })
}

/// Scans the VM between windows when due; returns the status with what a finished scan
/// recorded.
async fn scan_between_windows(
    ctx: &Context,
    managed: &ManagedVM,
    vm: &VirtualMachine,
    status: ManagedVMStatus,
    baseline: Option<&PatchBaseline>,
    now: Timestamp,
) -> Result<(ManagedVMStatus, Option<Timestamp>), Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let window = status
        .window
        .as_ref()
        .and_then(|w| w.split(',').next().map(str::to_string))
        .and_then(|w| {
            ctx.stores
                .windows
                .get(&ObjectRef::new(&w).within(&namespace))
        });
    let (Some(baseline), Some(window)) = (baseline, window) else {
        return Ok((status, None));
    };
    let vmi = assessment::instance(ctx, managed);
    let target = assessment::Target {
        vm,
        managed,
        status: &status,
        baseline,
        window: &window,
        vmi: vmi.as_deref(),
        labels: vm.labels(),
    };
    let (recorded, next) = assessment::step(ctx, &target, now).await?;
    Ok((recorded.unwrap_or(status), next))
}

fn assess<'a>(
    vm: &VirtualMachine,
    status: &ManagedVMStatus,
    baseline: Option<&PatchBaseline>,
    exceptions: impl IntoIterator<Item = &'a crate::api::PatchException>,
    failed_scan: Option<Timestamp>,
    now: Timestamp,
) -> Assessment<'a> {
    let coverage = covering(exceptions, &vm.name_any(), vm.labels(), now);
    let Some(baseline) = baseline else {
        return Assessment {
            coverage,
            report: None,
            judgement: None,
            dormancy_limit_at: None,
        };
    };
    let report = compliance(baseline, status, &coverage, now);
    let judgement = RetirementRule::from_baseline(&baseline.spec.retirement)
        .ok()
        .map(|rule| {
            let waived = coverage.waived_reasons();
            let evidence = Evidence {
                dormant_since: status
                    .power
                    .as_ref()
                    .and_then(|p| p.dormant_since.as_ref())
                    .map(|t| t.0),
                os: status.os.as_ref(),
                consecutive_failures: status.consecutive_failures,
                labels: Some(vm.labels()),
                compliance: report.as_ref(),
                scan_failed: last_scan_failed(status, failed_scan),
                waived: &waived,
            };
            rule.judge(&evidence, status.verdict.as_ref(), now)
        });
    Assessment {
        coverage,
        report,
        judgement,
        dormancy_limit_at: dormancy_limit_at(baseline, status),
    }
}

/// The first instant at which the VM has been dormant longer than the baseline's
/// `dormantLongerThan`, if the VM is dormant and the baseline sets a limit.
fn dormancy_limit_at(baseline: &PatchBaseline, status: &ManagedVMStatus) -> Option<Timestamp> {
    let limit = baseline
        .spec
        .retirement
        .reasons
        .dormant_longer_than
        .as_ref()?;
    let limit = parse_duration(limit.as_str()).ok()?;
    let since = status.power.as_ref()?.dormant_since.as_ref()?.0;
    // The reason counts once the VM has been dormant strictly longer than the limit.
    let past_limit = limit.checked_add(SignedDuration::from_secs(1))?;
    since.checked_add(past_limit).ok()
}

/// The VM's compliance now, from the updates its last scan recorded.
fn compliance(
    baseline: &PatchBaseline,
    status: &ManagedVMStatus,
    coverage: &Coverage<'_>,
    now: Timestamp,
) -> Option<ComplianceReport> {
    let rules = ComplianceRules::from_baseline(&baseline.spec).ok()?;
    let recorded = status.compliance.as_ref();
    let Some(scanned_at) = recorded.and_then(|c| c.last_scan_at.as_ref()).map(|t| t.0) else {
        return Some(rules.assess(None, now));
    };
    let pending = recorded
        .map(|c| c.pending_updates.as_slice())
        .unwrap_or_default();
    let review = review_pending(
        &baseline.spec.approval,
        pending,
        &coverage.held_packages(),
        now,
    )
    .ok()?;
    Some(rules.assess(
        Some(Scan {
            at: scanned_at,
            review: &review,
        }),
        now,
    ))
}

/// Whether the VM's most recent scan failed: the scan of its last run, or an assessment
/// scan (`failed_scan`, when it started) newer than the last scan that succeeded.
fn last_scan_failed(status: &ManagedVMStatus, failed_scan: Option<Timestamp>) -> bool {
    let run_scan_failed = status.history.first().is_some_and(|r| {
        r.result == "Failed" && r.reason.as_deref().is_some_and(|m| m.starts_with("scan"))
    });
    let last_scan = status
        .compliance
        .as_ref()
        .and_then(|c| c.last_scan_at.as_ref())
        .map(|t| t.0);
    run_scan_failed || failed_scan.is_some_and(|failed| last_scan.is_none_or(|at| failed > at))
}

/// When time alone changes the assessment: an exception expires, a scan turns stale, a
/// deadline or a grace period ends, a dormant VM passes the limit. Only instants still
/// ahead count: a grace period that has ended calls for no more looks.
fn next_look(assessment: &Assessment<'_>, now: Timestamp) -> Option<Timestamp> {
    let grace = assessment
        .judgement
        .as_ref()
        .and_then(|j| j.verdict.grace_period_ends_at.as_ref())
        .map(|t| t.0);
    [
        assessment.coverage.next_expiry,
        assessment.report.as_ref().and_then(|r| r.changes_at),
        grace,
        assessment.dormancy_limit_at,
    ]
    .into_iter()
    .flatten()
    .filter(|at| *at > now)
    .min()
}

async fn apply_verdict(
    ctx: &Context,
    managed: &ManagedVM,
    vm: &VirtualMachine,
    previous: &ManagedVMStatus,
    assessment: &Assessment<'_>,
) -> Result<(), Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ManagedVM> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = ctx.clock().now();
    let verdict = assessment
        .judgement
        .as_ref()
        .map(|j| j.verdict.clone())
        .or_else(|| previous.verdict.clone());
    let mut conditions = previous.conditions.clone();
    match verdict.as_ref().filter(|v| v.decision == Decision::Retire) {
        Some(v) => set_condition(
            &mut conditions,
            condition(
                RETIRE_CONDITION,
                true,
                &reason_names(v),
                &reason_text(v),
                Some(1),
                now,
            ),
        ),
        None => remove_condition(&mut conditions, RETIRE_CONDITION),
    }
    let retire: Vec<_> = conditions
        .into_iter()
        .filter(|c| c.type_ == RETIRE_CONDITION)
        .collect();
    let mut fields = json!({
        "conditions": retire,
        "exceptions": assessment.coverage.names(),
        "verdict": verdict,
    });
    if let Some(report) = &assessment.report {
        let c = &report.compliance;
        fields["compliance"] = json!({
            "state": c.state, "missing": c.missing,
            "oldestMissingSince": c.oldest_missing_since, "deadlineBreaches": c.deadline_breaches,
        });
    }
    let body = json!({"apiVersion": ManagedVM::api_version(&()), "kind": ManagedVM::kind(&()), "status": fields});
    let params = PatchParams::apply(VERDICT_MANAGER).force();
    api.patch_status(&managed.name_any(), &params, &Patch::Apply(body))
        .await?;
    label(&api, managed, verdict.as_ref()).await?;
    if let Some(judgement) = &assessment.judgement {
        announce(ctx, managed, judgement).await;
        enforce(ctx, managed, vm, judgement).await?;
    }
    Ok(())
}

/// `patchkeeper.io/verdict=retire` on a retired VM's ManagedVM, for pipelines to select.
async fn label(
    api: &Api<ManagedVM>,
    managed: &ManagedVM,
    verdict: Option<&Verdict>,
) -> Result<(), Error> {
    let retire = verdict.is_some_and(|v| v.decision == Decision::Retire);
    let has = managed
        .labels()
        .get(VERDICT_LABEL)
        .is_some_and(|v| v == "retire");
    if retire == has {
        return Ok(());
    }
    let labels: BTreeMap<&str, &str> = if retire {
        BTreeMap::from([(VERDICT_LABEL, "retire")])
    } else {
        BTreeMap::new()
    };
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()), "kind": ManagedVM::kind(&()),
        "metadata": {"name": managed.name_any(), "labels": labels},
    });
    api.patch(
        &managed.name_any(),
        &PatchParams::apply(VERDICT_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

fn reason_names(verdict: &Verdict) -> String {
    let names: Vec<String> = verdict
        .reasons
        .iter()
        .map(|r| format!("{:?}", r.reason))
        .collect();
    names.join("And")
}

fn reason_text(verdict: &Verdict) -> String {
    let mut text: Vec<String> = verdict.reasons.iter().map(|r| r.message.clone()).collect();
    if let Some(end) = &verdict.grace_period_ends_at {
        text.push(format!("grace period ends {}", end.0));
    }
    text.join("; ")
}

async fn announce(ctx: &Context, managed: &ManagedVM, judgement: &Judgement) {
    let text = reason_text(&judgement.verdict);
    match judgement.change {
        Change::Retired => {
            tracing::info!(vm = %managed.name_any(), reasons = %text, "verdict retire");
            let note = format!("not worth patching: {text}");
            ctx.publish_on_vm(managed, warning("RetirementFlagged", "Judge", note))
                .await;
        }
        Change::Revoked => {
            tracing::info!(vm = %managed.name_any(), "verdict revoked");
            let note = "the reasons for retirement went away; the VM is kept";
            ctx.publish_on_vm(managed, normal("RetirementRevoked", "Judge", note))
                .await;
        }
        Change::Unchanged => {}
    }
    if let DueAction::Announce { enforcement, at } = judgement.action {
        let what = match enforcement {
            Enforcement::Stop => "stopped",
            Enforcement::Delete => "deleted",
        };
        let note =
            format!("the VM will be {what} at {at} unless the reasons go away first: {text}");
        ctx.publish_on_vm(managed, warning("RetirementScheduled", "Judge", note))
            .await;
    }
    if let (Change::Retired, Some(fallback)) = (judgement.change, &judgement.fallback) {
        ctx.publish_on_vm(
            managed,
            warning("RetirementFlagOnly", "Judge", fallback.clone()),
        )
        .await;
    }
}

/// Stops or deletes a retired VM once its grace period is over.
async fn enforce(
    ctx: &Context,
    managed: &ManagedVM,
    vm: &VirtualMachine,
    judgement: &Judgement,
) -> Result<(), Error> {
    let namespace = vm.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), &namespace);
    match judgement.action {
        DueAction::Stop
            if vm.run_strategy() != RunStrategy::Strategy(RUN_STRATEGY_HALTED.into()) =>
        {
            let note = format!(
                "grace period over; stopping the VM: {}",
                reason_text(&judgement.verdict)
            );
            ctx.publish_on_vm(managed, warning("RetiredStopped", "Enforce", note))
                .await;
            let patch = RunStrategy::Strategy(RUN_STRATEGY_HALTED.into()).merge_patch();
            let params = PatchParams {
                field_manager: Some(super::FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch(&vm.name_any(), &params, &Patch::Merge(patch))
                .await?;
        }
        DueAction::Delete => {
            let note = format!(
                "grace period over; deleting the VM: {}",
                reason_text(&judgement.verdict)
            );
            ctx.publish_on_vm(managed, warning("RetiredDeleted", "Enforce", note))
                .await;
            match api.delete(&vm.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        _ => {}
    }
    Ok(())
}
