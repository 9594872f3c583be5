//! VMs counted by compliance state and by verdict: for the whole fleet, per namespace and
//! per baseline.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;

use super::fleet::FleetVm;
use crate::api::PatchBaseline;
use crate::api::baseline::RetirementAction;
use crate::api::managed_vm::{ComplianceState, Decision};

/// Some VMs, counted by compliance state and by verdict.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// How many VMs.
    pub vms: usize,
    /// The same VMs by compliance state.
    pub compliance: ComplianceCounts,
    /// The same VMs by verdict.
    pub verdict: VerdictCounts,
}

/// VMs by compliance state.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComplianceCounts {
    pub compliant: usize,
    pub non_compliant: usize,
    /// Last scanned too long ago to be trusted.
    pub stale: usize,
    /// Never scanned.
    pub unknown: usize,
}

/// VMs by keep-or-retire verdict.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerdictCounts {
    pub keep: usize,
    pub retire: usize,
    /// Not judged yet.
    pub undecided: usize,
}

/// The counts of one namespace.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceTally {
    pub namespace: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// The counts of one baseline.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BaselineTally {
    pub namespace: String,
    /// The baseline; empty for the VMs that have none (no window covers them).
    pub baseline: Option<String>,
    /// What the baseline does with a VM it retires; empty when the baseline is not found.
    pub retirement_action: Option<RetirementAction>,
    #[serde(flatten)]
    pub tally: Tally,
}

impl Tally {
    /// The counts of `vms`.
    pub(super) fn of<'a>(vms: impl IntoIterator<Item = &'a FleetVm<'a>>) -> Self {
        let mut tally = Self::default();
        for vm in vms {
            tally.add(vm);
        }
        tally
    }

    fn add(&mut self, vm: &FleetVm) {
        self.vms += 1;
        let compliance = &mut self.compliance;
        match vm.compliance {
            ComplianceState::Compliant => compliance.compliant += 1,
            ComplianceState::NonCompliant => compliance.non_compliant += 1,
            ComplianceState::Stale => compliance.stale += 1,
            ComplianceState::Unknown => compliance.unknown += 1,
        }
        match vm.verdict {
            Some(Decision::Keep) => self.verdict.keep += 1,
            Some(Decision::Retire) => self.verdict.retire += 1,
            None => self.verdict.undecided += 1,
        }
    }
}

/// The counts of each namespace that holds VMs, in namespace order.
pub(super) fn by_namespace(vms: &[FleetVm]) -> Vec<NamespaceTally> {
    let mut groups: BTreeMap<&str, Tally> = BTreeMap::new();
    for vm in vms {
        groups.entry(&vm.namespace).or_default().add(vm);
    }
    let tallies = groups.into_iter().map(|(namespace, tally)| NamespaceTally {
        namespace: namespace.to_owned(),
        tally,
    });
    tallies.collect()
}

/// The counts of each baseline, in namespace and baseline order, with the VMs that have no
/// baseline last in their namespace. Baselines that no VM uses are listed with zero counts.
pub(super) fn by_baseline(vms: &[FleetVm], baselines: &[PatchBaseline]) -> Vec<BaselineTally> {
    type Key = (String, BaselineKey);
    let mut groups: BTreeMap<Key, (Option<RetirementAction>, Tally)> = BTreeMap::new();
    for baseline in baselines {
        let key = (
            baseline.namespace().unwrap_or_default(),
            BaselineKey::Named(baseline.name_any()),
        );
        groups.insert(
            key,
            (Some(baseline.spec.retirement.action), Tally::default()),
        );
    }
    for vm in vms {
        let name = vm
            .baseline
            .clone()
            .map_or(BaselineKey::None, BaselineKey::Named);
        let entry = groups.entry((vm.namespace.clone(), name)).or_default();
        entry.0 = entry.0.or(vm.action);
        entry.1.add(vm);
    }
    let tallies = groups
        .into_iter()
        .map(|((namespace, name), (action, tally))| BaselineTally {
            namespace,
            baseline: name.into_name(),
            retirement_action: action,
            tally,
        });
    tallies.collect()
}

/// A baseline's name, ordered so that "no baseline" comes after every named one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum BaselineKey {
    Named(String),
    None,
}

impl BaselineKey {
    fn into_name(self) -> Option<String> {
        match self {
            Self::Named(name) => Some(name),
            Self::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;
    use crate::report::fleet::FleetReport;

    fn report_of(fleet: &crate::report::fleet::Fleet) -> FleetReport {
        FleetReport::build(fleet, now(), days(14))
    }

    fn mixed_fleet() -> crate::report::fleet::Fleet {
        fleet_of(vec![
            vm("team-a", "web-1").compliant().keep(),
            vm("team-a", "web-2").non_compliant().keep(),
            vm("team-a", "old").stale().retire(&[dormant_reason()]),
            vm("team-b", "db").compliant().keep(),
            vm("team-b", "new").without_status(),
        ])
    }

    #[test]
    fn totals_count_every_vm_once_by_compliance_and_by_verdict() {
        let totals = report_of(&mixed_fleet()).totals;
        assert_eq!(totals.vms, 5);
        let expected = ComplianceCounts {
            compliant: 2,
            non_compliant: 1,
            stale: 1,
            unknown: 1,
        };
        assert_eq!(totals.compliance, expected);
        assert_eq!(
            totals.verdict,
            VerdictCounts {
                keep: 3,
                retire: 1,
                undecided: 1
            }
        );
    }

    #[test]
    fn each_namespace_is_counted_on_its_own() {
        let by_namespace = report_of(&mixed_fleet()).by_namespace;
        let summary: Vec<_> = by_namespace
            .iter()
            .map(|n| (n.namespace.as_str(), n.tally.vms, n.tally.verdict.retire))
            .collect();
        assert_eq!(summary, [("team-a", 3, 1), ("team-b", 2, 0)]);
    }

    #[test]
    fn vms_are_counted_under_their_baseline_with_its_retirement_action() {
        let mut fleet = mixed_fleet();
        fleet
            .baselines
            .push(baseline("team-a", "standard", RetirementAction::Stop));
        let by_baseline = report_of(&fleet).by_baseline;
        let team_a = &by_baseline[0];
        assert_eq!(team_a.namespace, "team-a");
        assert_eq!(team_a.baseline.as_deref(), Some("standard"));
        assert_eq!(team_a.retirement_action, Some(RetirementAction::Stop));
        assert_eq!(team_a.tally.vms, 3);
    }

    #[test]
    fn vms_without_a_baseline_are_grouped_last_in_their_namespace() {
        let fleet = fleet_of(vec![
            vm("team-a", "loose").without_baseline(),
            vm("team-a", "web").compliant(),
        ]);
        let by_baseline = report_of(&fleet).by_baseline;
        let names: Vec<_> = by_baseline.iter().map(|b| b.baseline.as_deref()).collect();
        assert_eq!(names, [Some("standard"), None]);
    }

    #[test]
    fn a_baseline_no_vm_uses_is_listed_with_zero_vms() {
        let mut fleet = fleet_of(vec![]);
        fleet
            .baselines
            .push(baseline("team-c", "unused", RetirementAction::Flag));
        let by_baseline = report_of(&fleet).by_baseline;
        assert_eq!(by_baseline.len(), 1);
        assert_eq!(by_baseline[0].tally, Tally::default());
    }

    #[test]
    fn a_baseline_missing_from_the_cluster_has_no_action() {
        let fleet = fleet_of(vec![vm("team-a", "web").compliant()]);
        let by_baseline = report_of(&fleet).by_baseline;
        assert_eq!(by_baseline[0].retirement_action, None);
    }
}
