//! VMs that no window patches: those no window selects, and those whose windows disagree on
//! the baseline.

use serde::Serialize;

use super::fleet::FleetVm;
use crate::api::common::STALLED;

/// The reason of the `Stalled` condition of a VM whose windows disagree on its baseline.
const WINDOW_CONFLICT: &str = "WindowConflict";

/// VMs that no window patches.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoverageReport {
    /// VMs that no window selects. Inventoried, never patched.
    pub uncovered: Vec<UncoveredVm>,
    /// VMs that windows with different baselines select, left unpatched until one
    /// baseline applies.
    pub conflicts: Vec<WindowConflict>,
}

/// A VM no window selects.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UncoveredVm {
    pub namespace: String,
    pub vm: String,
}

/// A VM selected by windows that disagree on its baseline.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowConflict {
    pub namespace: String,
    pub vm: String,
    /// The operator's explanation, naming the windows.
    pub message: String,
}

/// The VMs without a window, and those in conflict, in namespace and name order.
pub(super) fn report(vms: &[FleetVm]) -> CoverageReport {
    let mut report = CoverageReport::default();
    for vm in vms {
        if let Some(message) = conflict_message(vm) {
            report.conflicts.push(WindowConflict {
                namespace: vm.namespace.clone(),
                vm: vm.name.clone(),
                message,
            });
        } else if has_no_window(vm) {
            report.uncovered.push(UncoveredVm {
                namespace: vm.namespace.clone(),
                vm: vm.name.clone(),
            });
        }
    }
    report
}

fn has_no_window(vm: &FleetVm) -> bool {
    let window = vm.managed.status.as_ref().and_then(|s| s.window.as_deref());
    window.is_none_or(|w| w.trim().is_empty())
}

/// The message of the VM's `Stalled` condition when its reason is a window conflict.
fn conflict_message(vm: &FleetVm) -> Option<String> {
    let conditions = &vm.managed.status.as_ref()?.conditions;
    let stalled = conditions
        .iter()
        .find(|c| c.type_ == STALLED && c.status == "True")?;
    (stalled.reason == WINDOW_CONFLICT).then(|| stalled.message.clone())
}

#[cfg(test)]
mod tests {
    use crate::report::fixtures::*;
    use crate::report::fleet::FleetReport;

    fn coverage_of(fleet: &crate::report::fleet::Fleet) -> super::CoverageReport {
        FleetReport::build(fleet, now(), days(14)).coverage
    }

    #[test]
    fn a_vm_with_an_empty_window_is_uncovered() {
        let fleet = fleet_of(vec![vm("team-a", "loose").uncovered(), vm("team-a", "web")]);
        let coverage = coverage_of(&fleet);
        let names: Vec<_> = coverage.uncovered.iter().map(|u| u.vm.as_str()).collect();
        assert_eq!(names, ["loose"]);
        assert!(coverage.conflicts.is_empty());
    }

    #[test]
    fn a_vm_in_window_conflict_is_listed_with_the_operators_message_and_not_as_uncovered() {
        let fleet = fleet_of(vec![vm("team-a", "torn").in_window_conflict("a", "b")]);
        let coverage = coverage_of(&fleet);
        assert!(coverage.uncovered.is_empty());
        assert_eq!(coverage.conflicts.len(), 1);
        assert!(coverage.conflicts[0].message.contains("windows a, b"));
    }

    #[test]
    fn a_stalled_condition_for_another_reason_is_no_window_conflict() {
        let fleet = fleet_of(vec![vm("team-a", "web").stalled("InvalidSchedule")]);
        assert!(coverage_of(&fleet).conflicts.is_empty());
    }
}
