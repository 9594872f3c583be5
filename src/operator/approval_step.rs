//! After a scan: decide against the baseline exactly what to install, and work out the
//! VM's compliance from what the scan found.

use jiff::Timestamp;
use kube::ResourceExt;

use super::context::Context;
use super::vm_run::{RunScope, VmView};
use crate::api::PatchBaseline;
use crate::api::managed_vm::Compliance;
use crate::policy::approval::{Review, review_scan};
use crate::policy::compliance::{ComplianceRules, Scan};
use crate::policy::exceptions::covering;
use crate::summary::RunSummary;

/// What a scan leads to.
#[derive(Clone, Debug, Default)]
pub struct ScanDecision {
    /// `name=version` pairs to install, sorted.
    pub install: Vec<String>,
    /// Package patterns (`pattern` or `pattern=version`) the install must not touch, not
    /// even as a dependency: the baseline's rejected packages under `Block`, and the
    /// packages the VM's exceptions hold back.
    pub blocked: Vec<String>,
    /// Available updates not approved now.
    pub held_back: usize,
    /// The VM's compliance after the scan, with the updates' first sightings.
    pub compliance: Compliance,
}

/// Decides what to install from a scan. A baseline whose rules cannot be read approves
/// nothing: the error is returned for the VM's run to fail with.
pub fn decide(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &VmView,
    scan: &RunSummary,
) -> Result<ScanDecision, String> {
    let namespace = view.managed.namespace().unwrap_or_default();
    let exceptions = ctx.exceptions_in(&namespace);
    let coverage = covering(
        exceptions.iter().map(AsRef::as_ref),
        &view.name(),
        view.vm.labels(),
        scope.now,
    );
    let previously_seen = view
        .status
        .compliance
        .as_ref()
        .map(|c| c.pending_updates.clone())
        .unwrap_or_default();

    let held_packages = coverage.held_packages();
    let review = review_scan(
        &scope.baseline.spec.approval,
        &scan.updates,
        &previously_seen,
        &held_packages,
        scope.now,
    )
    .map_err(|error| format!("baseline {}: {error}", scope.baseline.name_any()))?;
    let compliance = compliance_after(scope.baseline, &review, scope.now)?;
    let install: Vec<String> = review.install().iter().map(ToString::to_string).collect();
    let held_back = review.updates.len() - install.len();
    let blocked = review
        .blocked
        .iter()
        .map(|rejected| match &rejected.version {
            Some(version) => format!("{}={version}", rejected.name.as_str()),
            None => rejected.name.as_str().to_string(),
        })
        .chain(held_packages.iter().map(|p| p.as_str().to_string()))
        .collect();
    Ok(ScanDecision {
        install,
        blocked,
        held_back,
        compliance,
    })
}

/// The VM's compliance right after a scan reviewed as `review`. The run records the scan's
/// time and the updates it found; the keep-or-retire reconciler derives the rest.
pub fn compliance_after(
    baseline: &PatchBaseline,
    review: &Review,
    now: Timestamp,
) -> Result<Compliance, String> {
    let rules = ComplianceRules::from_baseline(&baseline.spec)
        .map_err(|error| format!("baseline {}: {error}", baseline.name_any()))?;
    let mut compliance = rules.assess(Some(Scan { at: now, review }), now).compliance;
    compliance.pending_updates = review.pending_updates();
    Ok(compliance)
}

/// The fields of a VM's compliance that scans and installs record.
pub fn scan_record(compliance: Option<&Compliance>) -> serde_json::Value {
    match compliance {
        Some(c) => {
            serde_json::json!({"lastScanAt": c.last_scan_at, "pendingUpdates": c.pending_updates})
        }
        None => serde_json::Value::Null,
    }
}

/// The VM's compliance after an install: what was installed is no longer missing. The
/// scan's time stays the time of the last look at the VM's packages.
pub fn compliance_after_install(
    ctx: &Context,
    scope: &RunScope<'_>,
    view: &VmView,
    install: &RunSummary,
) -> Result<Option<Compliance>, String> {
    let Some(before) = view.status.compliance.as_ref() else {
        return Ok(None);
    };
    let installed: Vec<(&str, &str)> = install
        .installed
        .iter()
        .map(|p| (p.name.as_str(), p.to.as_str()))
        .collect();
    let remaining: Vec<_> = before
        .pending_updates
        .iter()
        .filter(|u| !installed.contains(&(u.name.as_str(), u.version.as_str())))
        .cloned()
        .collect();
    let namespace = view.managed.namespace().unwrap_or_default();
    let exceptions = ctx.exceptions_in(&namespace);
    let coverage = covering(
        exceptions.iter().map(AsRef::as_ref),
        &view.name(),
        view.vm.labels(),
        scope.now,
    );
    let review = crate::policy::approval::review_pending(
        &scope.baseline.spec.approval,
        &remaining,
        &coverage.held_packages(),
        scope.now,
    )
    .map_err(|error| format!("baseline {}: {error}", scope.baseline.name_any()))?;
    let mut compliance = compliance_after(scope.baseline, &review, scope.now)?;
    compliance.last_scan_at = before.last_scan_at.clone();
    Ok(Some(compliance))
}
