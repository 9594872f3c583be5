//! The VMs flagged for retirement, with the evidence and what their baseline will do.

use jiff::Timestamp;
use serde::Serialize;

use super::fleet::FleetVm;
use crate::api::baseline::RetirementAction;
use crate::api::managed_vm::{Decision, VerdictReason};

/// A VM whose verdict is `Retire`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetirementCandidate {
    pub namespace: String,
    /// The ManagedVM, named after its VirtualMachine.
    pub vm: String,
    /// Why it is not worth keeping, each reason with its evidence.
    pub reasons: Vec<VerdictReason>,
    /// Since when the verdict has stood.
    pub since: Option<Timestamp>,
    /// When the baseline's `Stop` or `Delete` acts; empty for `Flag`.
    pub grace_period_ends_at: Option<Timestamp>,
    /// The baseline that judged it.
    pub baseline: Option<String>,
    /// What that baseline does with it: `Flag`, `Stop` or `Delete`; empty when the baseline
    /// is not found.
    pub action: Option<RetirementAction>,
}

/// Every VM whose verdict is `Retire`, in namespace and name order.
pub(super) fn candidates(vms: &[FleetVm]) -> Vec<RetirementCandidate> {
    let flagged = vms.iter().filter(|vm| vm.verdict == Some(Decision::Retire));
    flagged.map(candidate).collect()
}

fn candidate(vm: &FleetVm) -> RetirementCandidate {
    let verdict = vm.managed.status.as_ref().and_then(|s| s.verdict.as_ref());
    RetirementCandidate {
        namespace: vm.namespace.clone(),
        vm: vm.name.clone(),
        reasons: verdict.map(|v| v.reasons.clone()).unwrap_or_default(),
        since: verdict.and_then(|v| v.since.as_ref()).map(|t| t.0),
        grace_period_ends_at: verdict
            .and_then(|v| v.grace_period_ends_at.as_ref())
            .map(|t| t.0),
        baseline: vm.baseline.clone(),
        action: vm.action,
    }
}

#[cfg(test)]
mod tests {
    use crate::api::baseline::RetirementAction;
    use crate::api::managed_vm::RetirementReason;
    use crate::report::fixtures::*;
    use crate::report::fleet::FleetReport;

    #[test]
    fn only_vms_judged_retire_are_candidates() {
        let fleet = fleet_of(vec![
            vm("team-a", "kept").keep(),
            vm("team-a", "old").retire(&[dormant_reason()]),
            vm("team-a", "new").without_status(),
        ]);
        let candidates = FleetReport::build(&fleet, now(), days(14)).retirement_candidates;
        let names: Vec<_> = candidates.iter().map(|c| c.vm.as_str()).collect();
        assert_eq!(names, ["old"]);
    }

    #[test]
    fn a_candidate_carries_its_reasons_dates_and_the_baselines_action() {
        let mut fleet = fleet_of(vec![
            vm("team-a", "old")
                .retire(&[dormant_reason(), end_of_life_reason()])
                .retired_since(days_ago(3), Some(days_from_now(4))),
        ]);
        fleet
            .baselines
            .push(baseline("team-a", "standard", RetirementAction::Stop));
        let candidates = FleetReport::build(&fleet, now(), days(14)).retirement_candidates;
        let old = &candidates[0];
        let reasons: Vec<_> = old.reasons.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [RetirementReason::Dormant, RetirementReason::EndOfLife]
        );
        assert_eq!(old.since, Some(days_ago(3).0));
        assert_eq!(old.grace_period_ends_at, Some(days_from_now(4).0));
        assert_eq!(old.baseline.as_deref(), Some("standard"));
        assert_eq!(old.action, Some(RetirementAction::Stop));
    }

    #[test]
    fn a_vm_flagged_only_by_its_label_is_a_candidate_without_reasons() {
        let fleet = fleet_of(vec![vm("team-a", "old").labelled_retire()]);
        let candidates = FleetReport::build(&fleet, now(), days(14)).retirement_candidates;
        assert_eq!(candidates.len(), 1);
        assert!(candidates[0].reasons.is_empty());
    }
}
