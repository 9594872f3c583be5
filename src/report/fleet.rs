//! The fleet report as a value: made from the objects read from the cluster and the time of
//! the report, with no client in it, so that every figure can be tested on plain objects.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde::Serialize;

use super::coverage::{self, CoverageReport};
use super::critical::{self, CriticalUpdates};
use super::exceptions::{self, ExceptionReport};
use super::retirement::{self, RetirementCandidate};
use super::tally::{self, BaselineTally, NamespaceTally, Tally};
use crate::api::baseline::RetirementAction;
use crate::api::managed_vm::{ComplianceState, Decision, VERDICT_LABEL};
use crate::api::{MaintenanceWindow, ManagedVM, PatchBaseline, PatchException};

/// Everything read from the cluster that a report is made from.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    pub managed_vms: Vec<ManagedVM>,
    pub exceptions: Vec<PatchException>,
    pub windows: Vec<MaintenanceWindow>,
    pub baselines: Vec<PatchBaseline>,
}

/// How the fleet stands: compliance and verdicts, the VMs flagged for retirement, the oldest
/// missing critical updates, exceptions running out, and VMs that no window patches.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetReport {
    /// The instant the report describes.
    pub generated_at: Timestamp,
    /// The namespaces that hold ManagedVMs, sorted.
    pub namespaces: Vec<String>,
    /// Every VM, counted by compliance and by verdict.
    pub totals: Tally,
    /// The same counts per namespace.
    pub by_namespace: Vec<NamespaceTally>,
    /// The same counts per baseline, including baselines no VM uses.
    pub by_baseline: Vec<BaselineTally>,
    /// The VMs whose verdict is `Retire`.
    pub retirement_candidates: Vec<RetirementCandidate>,
    /// The critical updates that VMs have been missing longest.
    pub critical_updates: CriticalUpdates,
    /// Exceptions that expire soon or have expired.
    pub exceptions: ExceptionReport,
    /// VMs that no window patches.
    pub coverage: CoverageReport,
}

impl FleetReport {
    /// The report on `fleet` as it stands at `now`, listing the exceptions that expire
    /// within `expiring_within` of it.
    pub fn build(fleet: &Fleet, now: Timestamp, expiring_within: SignedDuration) -> Self {
        let vms = FleetVm::all(fleet);
        let namespaces: BTreeSet<&str> = vms.iter().map(|vm| vm.namespace.as_str()).collect();
        Self {
            generated_at: now,
            namespaces: namespaces.into_iter().map(str::to_owned).collect(),
            totals: Tally::of(&vms),
            by_namespace: tally::by_namespace(&vms),
            by_baseline: tally::by_baseline(&vms, &fleet.baselines),
            retirement_candidates: retirement::candidates(&vms),
            critical_updates: critical::oldest(&vms, fleet, now),
            exceptions: exceptions::report(&fleet.exceptions, now, expiring_within),
            coverage: coverage::report(&vms),
        }
    }

    /// VMs whose verdict is `Retire`.
    pub fn flagged(&self) -> usize {
        self.totals.verdict.retire
    }
}

/// One ManagedVM as the report sees it: where it belongs and how it stands.
#[derive(Clone, Debug)]
pub(super) struct FleetVm<'a> {
    pub namespace: String,
    pub name: String,
    pub managed: &'a ManagedVM,
    /// The VM's baseline, from its status or else from its window.
    pub baseline: Option<String>,
    /// What that baseline does with a VM it retires; empty when the baseline is not found.
    pub action: Option<RetirementAction>,
    pub compliance: ComplianceState,
    pub verdict: Option<Decision>,
}

impl<'a> FleetVm<'a> {
    /// Every ManagedVM of the fleet, sorted by namespace and name.
    fn all(fleet: &'a Fleet) -> Vec<Self> {
        let lookup = Lookup::new(fleet);
        let mut vms: Vec<Self> = fleet
            .managed_vms
            .iter()
            .map(|m| Self::of(m, &lookup))
            .collect();
        vms.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        vms
    }

    fn of(managed: &'a ManagedVM, lookup: &Lookup) -> Self {
        let namespace = managed.namespace().unwrap_or_default();
        let status = managed.status.as_ref();
        let baseline = status.and_then(|s| s.baseline.clone()).or_else(|| {
            let windows = status?.window.as_deref()?;
            lookup.baseline_of_window(&namespace, windows)
        });
        let action = baseline
            .as_deref()
            .and_then(|b| lookup.action(&namespace, b));
        Self {
            name: managed.name_any(),
            baseline,
            action,
            compliance: status
                .and_then(|s| s.compliance.as_ref())
                .map_or(ComplianceState::Unknown, |c| c.state),
            verdict: verdict_of(managed),
            namespace,
            managed,
        }
    }
}

/// The verdict in the VM's status; the label alone counts when the status has none.
fn verdict_of(managed: &ManagedVM) -> Option<Decision> {
    let from_status = managed.status.as_ref().and_then(|s| s.verdict.as_ref());
    match from_status {
        Some(verdict) => Some(verdict.decision),
        None => {
            let labelled = managed
                .labels()
                .get(VERDICT_LABEL)
                .is_some_and(|v| v == "retire");
            labelled.then_some(Decision::Retire)
        }
    }
}

/// Baselines and windows by namespace and name.
struct Lookup<'a> {
    actions: BTreeMap<(String, String), RetirementAction>,
    window_baselines: BTreeMap<(String, String), &'a str>,
}

impl<'a> Lookup<'a> {
    fn new(fleet: &'a Fleet) -> Self {
        Self {
            actions: fleet
                .baselines
                .iter()
                .map(|b| (key(b), b.spec.retirement.action))
                .collect(),
            window_baselines: fleet
                .windows
                .iter()
                .map(|w| (key(w), w.spec.baseline_ref.name.as_str()))
                .collect(),
        }
    }

    fn action(&self, namespace: &str, baseline: &str) -> Option<RetirementAction> {
        self.actions
            .get(&(namespace.to_owned(), baseline.to_owned()))
            .copied()
    }

    /// The baseline of the first of the windows named in a VM's status (`a,b`): windows that
    /// cover one VM together agree on its baseline.
    fn baseline_of_window(&self, namespace: &str, windows: &str) -> Option<String> {
        let first = windows.split(',').next()?.trim();
        let key = (namespace.to_owned(), first.to_owned());
        self.window_baselines.get(&key).map(|b| (*b).to_owned())
    }
}

/// The namespace and name of an object, the key it is looked up by.
fn key<K: ResourceExt>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

    #[test]
    fn namespaces_are_those_holding_vms_in_order() {
        let fleet = fleet_of(vec![
            vm("team-b", "db"),
            vm("team-a", "web"),
            vm("team-b", "app"),
        ]);
        let report = FleetReport::build(&fleet, now(), days(14));
        assert_eq!(report.namespaces, ["team-a", "team-b"]);
    }

    #[test]
    fn a_vm_without_a_baseline_in_status_takes_its_windows_baseline() {
        let mut fleet = fleet_of(vec![vm("team-a", "web").without_baseline()]);
        fleet.windows.push(window("team-a", "nightly", "strict"));
        fleet
            .baselines
            .push(baseline("team-a", "strict", RetirementAction::Stop));
        let vms = FleetVm::all(&fleet);
        assert_eq!(vms[0].baseline.as_deref(), Some("strict"));
        assert_eq!(vms[0].action, Some(RetirementAction::Stop));
    }

    #[test]
    fn the_retire_label_counts_when_the_status_has_no_verdict() {
        let fleet = fleet_of(vec![vm("team-a", "web").labelled_retire()]);
        let vms = FleetVm::all(&fleet);
        assert_eq!(vms[0].verdict, Some(Decision::Retire));
    }

    #[test]
    fn the_status_verdict_wins_over_a_stale_label() {
        let fleet = fleet_of(vec![vm("team-a", "web").labelled_retire().keep()]);
        let vms = FleetVm::all(&fleet);
        assert_eq!(vms[0].verdict, Some(Decision::Keep));
    }

    #[test]
    fn a_vm_never_judged_has_no_verdict_and_unknown_compliance() {
        let fleet = fleet_of(vec![vm("team-a", "web").without_status()]);
        let vms = FleetVm::all(&fleet);
        assert_eq!(vms[0].verdict, None);
        assert_eq!(vms[0].compliance, ComplianceState::Unknown);
    }
}
