//! The critical updates that VMs have been missing longest.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use super::fleet::{Fleet, FleetVm};
use crate::api::baseline::{Classification, Severity};
use crate::api::managed_vm::PendingUpdate;
use crate::policy::approval::review_pending;
use crate::policy::exceptions::{Coverage, is_active};

/// How many of the oldest missing critical updates the report lists.
pub const LISTED: usize = 10;

/// Critical updates available to VMs and not installed.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CriticalUpdates {
    /// How many there are in the whole fleet, one per VM and package.
    pub total: usize,
    /// The oldest of them (at most ten), oldest first.
    pub oldest: Vec<MissingCriticalUpdate>,
}

/// One critical update one VM is missing.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MissingCriticalUpdate {
    pub namespace: String,
    pub vm: String,
    pub package: String,
    /// The version available.
    pub version: String,
    pub classification: Classification,
    /// When patchkeeper first saw the update available to this VM.
    pub first_seen: Timestamp,
    /// Seconds from `firstSeen` to the time of the report.
    pub age_seconds: i64,
}

/// The critical updates that the VMs' last scans found pending and their baselines want
/// installed (approved, or soaking), oldest first. Updates a baseline rejects or leaves out,
/// and packages a PatchException holds back, are not missing: the VM's compliance does not
/// count them either.
pub(super) fn oldest(vms: &[FleetVm], fleet: &Fleet, now: Timestamp) -> CriticalUpdates {
    let mut missing: Vec<MissingCriticalUpdate> = vms
        .iter()
        .flat_map(|vm| missing_critical(vm, fleet, now))
        .collect();
    missing.sort_by(|a, b| age_order(a).cmp(&age_order(b)));
    let total = missing.len();
    missing.truncate(LISTED);
    CriticalUpdates {
        total,
        oldest: missing,
    }
}

/// Oldest first; ties in the order of namespace, VM and package.
fn age_order(update: &MissingCriticalUpdate) -> (Timestamp, &str, &str, &str) {
    (
        update.first_seen,
        &update.namespace,
        &update.vm,
        &update.package,
    )
}

fn missing_critical(vm: &FleetVm, fleet: &Fleet, now: Timestamp) -> Vec<MissingCriticalUpdate> {
    let compliance = vm
        .managed
        .status
        .as_ref()
        .and_then(|s| s.compliance.as_ref());
    let pending = compliance
        .map(|c| c.pending_updates.as_slice())
        .unwrap_or_default();
    let wanted = wanted(vm, fleet, pending, now);
    let critical = pending
        .iter()
        .filter(|u| u.severity == Severity::Critical)
        .filter(|u| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&(u.name.clone(), u.version.clone())))
        });
    let missing = critical.map(|update| MissingCriticalUpdate {
        namespace: vm.namespace.clone(),
        vm: vm.name.clone(),
        package: update.name.clone(),
        version: update.version.clone(),
        classification: update.classification,
        first_seen: update.first_seen.0,
        age_seconds: now.duration_since(update.first_seen.0).as_secs().max(0),
    });
    missing.collect()
}

/// The pending updates the VM's baseline wants installed, as `(name, version)`; `None`
/// when the baseline is not in the fleet or cannot be read, in which case every pending
/// update is listed rather than none.
fn wanted(
    vm: &FleetVm,
    fleet: &Fleet,
    pending: &[PendingUpdate],
    now: Timestamp,
) -> Option<BTreeSet<(String, String)>> {
    let baseline = fleet.baselines.iter().find(|b| {
        b.metadata.namespace.as_deref() == Some(vm.namespace.as_str())
            && vm.baseline.as_deref() == b.metadata.name.as_deref()
    })?;
    let applying = vm
        .managed
        .status
        .as_ref()
        .map(|s| s.exceptions.as_slice())
        .unwrap_or_default();
    let coverage = Coverage {
        active: fleet
            .exceptions
            .iter()
            .filter(|e| e.metadata.namespace.as_deref() == Some(vm.namespace.as_str()))
            .filter(|e| {
                e.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| applying.contains(n))
            })
            .filter(|e| is_active(e, now))
            .collect(),
        ..Coverage::default()
    };
    let review = review_pending(
        &baseline.spec.approval,
        pending,
        &coverage.held_packages(),
        now,
    )
    .ok()?;
    let wanted = review.updates.into_iter().filter(|r| r.is_wanted());
    Some(wanted.map(|r| (r.update.name, r.update.version)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::baseline::RetirementAction;
    use crate::report::fixtures::*;
    use crate::report::fleet::FleetReport;

    fn critical_of(fleet: &crate::report::fleet::Fleet) -> CriticalUpdates {
        FleetReport::build(fleet, now(), days(14)).critical_updates
    }

    #[test]
    fn the_oldest_critical_update_comes_first_with_its_vm_and_age() {
        let fleet = fleet_of(vec![
            vm("team-a", "web").pending("openssl", Severity::Critical, days_ago(2)),
            vm("team-b", "db").pending("glibc", Severity::Critical, days_ago(30)),
        ]);
        let oldest = critical_of(&fleet).oldest;
        let listed: Vec<_> = oldest
            .iter()
            .map(|u| (u.vm.as_str(), u.package.as_str()))
            .collect();
        assert_eq!(listed, [("db", "glibc"), ("web", "openssl")]);
        assert_eq!(oldest[0].namespace, "team-b");
        assert_eq!(oldest[0].age_seconds, 30 * 86_400);
    }

    #[test]
    fn updates_of_other_severities_are_left_out() {
        let fleet = fleet_of(vec![
            vm("team-a", "web")
                .pending("curl", Severity::Important, days_ago(90))
                .pending("vim", Severity::Unspecified, days_ago(90)),
        ]);
        assert_eq!(critical_of(&fleet), CriticalUpdates::default());
    }

    #[test]
    fn updates_the_baseline_rejects_or_an_exception_holds_back_are_not_missing() {
        let mut standard = baseline("team-a", "standard", RetirementAction::Flag);
        standard.spec.approval.rejected_packages =
            vec![serde_json::from_value(serde_json::json!({"name": "linux-image-*"})).unwrap()];
        let mut freeze = exception("team-a", "openssl-freeze", days_from_now(5));
        freeze.spec.packages = vec![crate::api::common::PackagePattern::new("openssl")];
        let mut web = vm("team-a", "web")
            .pending("openssl", Severity::Critical, days_ago(9))
            .pending("linux-image-amd64", Severity::Critical, days_ago(8))
            .pending("glibc", Severity::Critical, days_ago(7));
        web.status_mut().exceptions = vec!["openssl-freeze".into()];
        let fleet = Fleet {
            baselines: vec![standard],
            exceptions: vec![freeze],
            ..fleet_of(vec![web])
        };

        let critical = critical_of(&fleet);
        let listed: Vec<_> = critical.oldest.iter().map(|u| u.package.as_str()).collect();
        assert_eq!(listed, ["glibc"]);
        assert_eq!(critical.total, 1);
    }

    #[test]
    fn an_expired_exception_holds_nothing_back() {
        let standard = baseline("team-a", "standard", RetirementAction::Flag);
        let mut freeze = exception("team-a", "openssl-freeze", days_ago(1));
        freeze.spec.packages = vec![crate::api::common::PackagePattern::new("openssl")];
        let mut web = vm("team-a", "web").pending("openssl", Severity::Critical, days_ago(9));
        web.status_mut().exceptions = vec!["openssl-freeze".into()];
        let fleet = Fleet {
            baselines: vec![standard],
            exceptions: vec![freeze],
            ..fleet_of(vec![web])
        };
        assert_eq!(critical_of(&fleet).total, 1);
    }

    #[test]
    fn only_the_ten_oldest_are_listed_but_all_are_counted() {
        let mut web = vm("team-a", "web");
        for day in 1..=12 {
            web = web.pending(&format!("pkg-{day:02}"), Severity::Critical, days_ago(day));
        }
        let critical = critical_of(&fleet_of(vec![web]));
        assert_eq!(critical.total, 12);
        assert_eq!(critical.oldest.len(), LISTED);
        assert_eq!(critical.oldest[0].package, "pkg-12");
        assert_eq!(critical.oldest[9].package, "pkg-03");
    }
}
