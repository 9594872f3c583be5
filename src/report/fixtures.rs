//! Small named builders of the objects a report is made from, for the report's tests.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde_json::json;

use super::fleet::Fleet;
use crate::api::baseline::{Classification, RetirementAction, Severity};
use crate::api::common::STALLED;
use crate::api::exception::PatchExceptionStatus;
use crate::api::managed_vm::{
    Compliance, ComplianceState, Decision, PendingUpdate, RetirementReason, VERDICT_LABEL, Verdict,
    VerdictReason,
};
use crate::api::{
    MaintenanceWindow, ManagedVM, ManagedVMSpec, ManagedVMStatus, PatchBaseline, PatchBaselineSpec,
    PatchException,
};

/// The instant every test report is made at.
pub fn now() -> Timestamp {
    "2026-05-01T12:00:00Z".parse().unwrap()
}

pub fn days(count: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * count)
}

pub fn at(instant: Timestamp) -> Time {
    Time(instant)
}

pub fn days_ago(count: i64) -> Time {
    at(now() - days(count))
}

pub fn days_from_now(count: i64) -> Time {
    at(now() + days(count))
}

/// A fleet of these VMs and nothing else.
pub fn fleet_of(managed_vms: Vec<ManagedVM>) -> Fleet {
    Fleet {
        managed_vms,
        ..Fleet::default()
    }
}

/// A VM covered by window `nightly` with baseline `standard`, never scanned nor judged.
pub fn vm(namespace: &str, name: &str) -> ManagedVM {
    let spec = ManagedVMSpec {
        virtual_machine_name: name.to_owned(),
    };
    let mut managed = ManagedVM::new(name, spec);
    managed.metadata.namespace = Some(namespace.to_owned());
    managed.status = Some(ManagedVMStatus {
        window: Some("nightly".into()),
        baseline: Some("standard".into()),
        ..ManagedVMStatus::default()
    });
    managed
}

pub fn dormant_reason() -> VerdictReason {
    VerdictReason {
        reason: RetirementReason::Dormant,
        message: "powered off for 120 days, longer than 90 days".into(),
    }
}

pub fn end_of_life_reason() -> VerdictReason {
    VerdictReason {
        reason: RetirementReason::EndOfLife,
        message: "debian 10 reached its end of life on 2024-06-30".into(),
    }
}

/// A window of `namespace` that patches against `baseline`.
pub fn window(namespace: &str, name: &str, baseline: &str) -> MaintenanceWindow {
    let spec = json!({
        "schedule": "0 2 * * *",
        "duration": "4h",
        "selector": {},
        "baselineRef": {"name": baseline},
        "executor": {"sshSecretRef": {"name": "ssh"}},
    });
    let spec = serde_json::from_value(spec).expect("a valid window spec");
    let mut window = MaintenanceWindow::new(name, spec);
    window.metadata.namespace = Some(namespace.to_owned());
    window
}

/// A baseline of `namespace` whose retirement action is `action`.
pub fn baseline(namespace: &str, name: &str, action: RetirementAction) -> PatchBaseline {
    let mut spec = PatchBaselineSpec::default();
    spec.retirement.action = action;
    let mut baseline = PatchBaseline::new(name, spec);
    baseline.metadata.namespace = Some(namespace.to_owned());
    baseline
}

/// An exception of `namespace` for one VM, owned by the DBAs, expiring at `expires`.
pub fn exception(namespace: &str, name: &str, expires: Time) -> PatchException {
    let spec = json!({
        "owner": "dba@example.com",
        "reason": "vendor certifies only this kernel",
        "expires": expires,
        "vmNames": ["db"],
    });
    let spec = serde_json::from_value(spec).expect("a valid exception spec");
    let mut exception = PatchException::new(name, spec);
    exception.metadata.namespace = Some(namespace.to_owned());
    exception
}

/// Changes to a fixture exception.
pub trait ExceptionFixture {
    fn covering(self, vms: i32) -> Self;
}

impl ExceptionFixture for PatchException {
    fn covering(mut self, vms: i32) -> Self {
        self.status = Some(PatchExceptionStatus {
            covered_count: vms,
            ..Default::default()
        });
        self
    }
}

/// Changes to a fixture VM, chained after [`vm`].
pub trait VmFixture: Sized {
    fn status_mut(&mut self) -> &mut ManagedVMStatus;

    fn compliance(mut self, state: ComplianceState) -> Self {
        self.status_mut()
            .compliance
            .get_or_insert_with(Compliance::default)
            .state = state;
        self
    }

    fn compliant(self) -> Self {
        self.compliance(ComplianceState::Compliant)
    }

    fn non_compliant(self) -> Self {
        self.compliance(ComplianceState::NonCompliant)
    }

    fn stale(self) -> Self {
        self.compliance(ComplianceState::Stale)
    }

    fn keep(mut self) -> Self {
        let keep = Verdict {
            decision: Decision::Keep,
            ..Verdict::default()
        };
        self.status_mut().verdict = Some(keep);
        self
    }

    fn retire(mut self, reasons: &[VerdictReason]) -> Self {
        let retire = Verdict {
            decision: Decision::Retire,
            reasons: reasons.to_vec(),
            ..Verdict::default()
        };
        self.status_mut().verdict = Some(retire);
        self
    }

    /// Dates a `Retire` verdict set by [`VmFixture::retire`].
    fn retired_since(mut self, since: Time, grace_period_ends_at: Option<Time>) -> Self {
        if let Some(verdict) = &mut self.status_mut().verdict {
            verdict.since = Some(since);
            verdict.grace_period_ends_at = grace_period_ends_at;
        }
        self
    }

    fn pending(mut self, package: &str, severity: Severity, first_seen: Time) -> Self {
        let compliance = self
            .status_mut()
            .compliance
            .get_or_insert_with(Compliance::default);
        compliance.pending_updates.push(PendingUpdate {
            name: package.to_owned(),
            version: "2.0-1".into(),
            classification: Classification::Security,
            severity,
            first_seen,
        });
        self
    }

    fn without_baseline(mut self) -> Self {
        self.status_mut().baseline = None;
        self
    }

    fn uncovered(mut self) -> Self {
        let status = self.status_mut();
        status.window = None;
        status.baseline = None;
        self
    }

    fn stalled(mut self, reason: &str) -> Self {
        self.status_mut().conditions.push(Condition {
            type_: STALLED.into(),
            status: "True".into(),
            reason: reason.into(),
            message: format!("stalled because of {reason}"),
            last_transition_time: days_ago(1),
            observed_generation: Some(1),
        });
        self
    }

    fn in_window_conflict(self, first: &str, second: &str) -> Self {
        let mut vm = self.uncovered().stalled("WindowConflict");
        let message = format!(
            "windows {first}, {second} select this VM with different baselines; it is not \
             patched until only one baseline applies"
        );
        if let Some(condition) = vm.status_mut().conditions.last_mut() {
            condition.message = message;
        }
        vm
    }
}

impl VmFixture for ManagedVM {
    fn status_mut(&mut self) -> &mut ManagedVMStatus {
        self.status.get_or_insert_with(ManagedVMStatus::default)
    }
}

/// Changes to a fixture VM that are not about its status.
pub trait VmMetadataFixture {
    fn without_status(self) -> Self;
    fn labelled_retire(self) -> Self;
}

impl VmMetadataFixture for ManagedVM {
    fn without_status(mut self) -> Self {
        self.status = None;
        self
    }

    fn labelled_retire(mut self) -> Self {
        self.labels_mut()
            .insert(VERDICT_LABEL.into(), "retire".into());
        self
    }
}
