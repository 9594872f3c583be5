//! Who takes part in a window's run, in which wave, and who is left out and why. Pure: the
//! run reconciler gathers the VMs and records, this decides.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::api::managed_vm::Decision;
use crate::api::window::Wave;
use crate::api::{MaintenanceWindowSpec, ManagedVMStatus};
use crate::planner::SkipReason;
use crate::policy::selector::matches;
use crate::schedule::parse_duration;

/// Whether an active PatchException exempts the VM from patching altogether: it names no
/// packages and no retirement reasons, covers the VM, and has not expired.
pub fn exempts_from_patching(
    exceptions: &[std::sync::Arc<crate::api::PatchException>],
    vm: &str,
    labels: &BTreeMap<String, String>,
    now: jiff::Timestamp,
) -> bool {
    exceptions.iter().any(|exception| {
        let spec = &exception.spec;
        let covers = match (&spec.vm_names, &spec.selector) {
            (Some(names), _) => names.iter().any(|n| n == vm),
            (None, Some(selector)) => matches(selector, labels),
            (None, None) => false,
        };
        covers
            && now < spec.expires.0
            && spec.packages.is_empty()
            && spec.retirement_reasons.is_empty()
    })
}

/// The name of the wave that takes the VMs no declared wave took.
pub const REMAINDER: &str = "remainder";

/// A VM as the membership decision sees it.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The ManagedVM's status, when the VM has one yet.
    pub status: Option<&'a ManagedVMStatus>,
    /// Whether the VM is powered off.
    pub dormant: bool,
    /// Whether windows with different baselines select the VM.
    pub conflict: bool,
    /// Whether an active PatchException exempts the VM from patching altogether.
    pub excepted: bool,
    /// Whether the VM is awake between windows to be scanned.
    pub scan_wake: bool,
}

/// One wave of the run, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavePlan {
    pub name: String,
    pub soak: Option<SignedDuration>,
}

/// The run's members in name order, each with its wave index and skip reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub waves: Vec<WavePlan>,
    /// Indexes into the candidates, in name order.
    pub members: Vec<Member>,
}

/// One VM of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub candidate: usize,
    pub wave: u32,
    pub skip: Option<SkipReason>,
}

/// The VMs the window selects, their waves, and who is skipped.
pub fn membership(spec: &MaintenanceWindowSpec, candidates: &[Candidate<'_>]) -> Membership {
    let mut selected: Vec<usize> = (0..candidates.len())
        .filter(|&i| matches(&spec.selector, candidates[i].labels))
        .collect();
    selected.sort_by_key(|&i| candidates[i].name);

    let (waves, assignment) = assign_waves(&spec.rollout.waves, candidates, &selected);
    let members = selected
        .iter()
        .zip(assignment)
        .map(|(&candidate, wave)| Member {
            candidate,
            wave,
            skip: skip_reason(&candidates[candidate], spec.dormant.wake),
        })
        .collect();
    Membership { waves, members }
}

/// Each VM goes to the first declared wave that takes it: by selector, or by size in name
/// order from those no earlier wave took. The rest form the `remainder` wave.
fn assign_waves(
    declared: &[Wave],
    candidates: &[Candidate<'_>],
    selected: &[usize],
) -> (Vec<WavePlan>, Vec<u32>) {
    let mut assignment: Vec<Option<u32>> = vec![None; selected.len()];
    let mut waves = Vec::new();
    for wave in declared {
        let index = waves.len() as u32;
        let mut room = wave.size.as_ref().map(|size| size.of(selected.len()));
        for (slot, &candidate) in assignment.iter_mut().zip(selected) {
            let takes = match (&wave.selector, room) {
                (Some(selector), _) => matches(selector, candidates[candidate].labels),
                (None, Some(left)) => left > 0,
                (None, None) => false,
            };
            if slot.is_none() && takes {
                *slot = Some(index);
                room = room.map(|left| left - 1);
            }
        }
        let soak = wave
            .soak
            .as_ref()
            .and_then(|s| parse_duration(s.as_str()).ok());
        waves.push(WavePlan {
            name: wave.name.clone(),
            soak,
        });
    }
    let remainder = waves.len() as u32;
    if assignment.iter().any(Option::is_none) || waves.is_empty() {
        waves.push(WavePlan {
            name: REMAINDER.into(),
            soak: None,
        });
    }
    (
        waves,
        assignment
            .into_iter()
            .map(|slot| slot.unwrap_or(remainder))
            .collect(),
    )
}

fn skip_reason(candidate: &Candidate<'_>, wake: bool) -> Option<SkipReason> {
    let retire = candidate
        .status
        .and_then(|s| s.verdict.as_ref())
        .is_some_and(|v| v.decision == Decision::Retire);
    if retire {
        Some(SkipReason::Retire)
    } else if candidate.conflict {
        Some(SkipReason::Conflict)
    } else if candidate.excepted {
        Some(SkipReason::Exception)
    } else if candidate.scan_wake {
        Some(SkipReason::Assessing)
    } else if candidate.dormant && !wake {
        Some(SkipReason::Dormant)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{CountOrPercent, Duration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(waves: Vec<Wave>) -> MaintenanceWindowSpec {
        let mut spec: MaintenanceWindowSpec = serde_json::from_value(serde_json::json!({
            "schedule": "@daily", "duration": "1h", "selector": {"matchLabels": {"env": "dev"}},
            "baselineRef": {"name": "b"}, "executor": {"sshSecretRef": {"name": "s"}}
        }))
        .unwrap();
        spec.rollout.waves = waves;
        spec
    }

    fn candidate<'a>(name: &'a str, labels: &'a BTreeMap<String, String>) -> Candidate<'a> {
        Candidate {
            name,
            labels,
            status: None,
            dormant: false,
            conflict: false,
            excepted: false,
            scan_wake: false,
        }
    }

    #[test]
    fn only_selected_vms_take_part_in_name_order() {
        let dev = labels(&[("env", "dev")]);
        let prod = labels(&[("env", "prod")]);
        let candidates = [
            candidate("b", &dev),
            candidate("c", &prod),
            candidate("a", &dev),
        ];
        let membership = membership(&spec(vec![]), &candidates);
        let names: Vec<_> = membership
            .members
            .iter()
            .map(|m| candidates[m.candidate].name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            membership.waves,
            [WavePlan {
                name: "remainder".into(),
                soak: None
            }]
        );
    }

    #[test]
    fn a_canary_wave_takes_its_vms_by_label_and_the_rest_follow() {
        let canary = labels(&[("env", "dev"), ("wave", "canary")]);
        let plain = labels(&[("env", "dev")]);
        let selector = LabelSelector {
            match_labels: Some(labels(&[("wave", "canary")])),
            ..LabelSelector::default()
        };
        let waves = vec![Wave {
            name: "canary".into(),
            selector: Some(selector),
            size: None,
            soak: Some(Duration::new("1h")),
        }];
        let candidates = [
            candidate("a", &plain),
            candidate("b", &canary),
            candidate("c", &plain),
        ];
        let membership = membership(&spec(waves), &candidates);
        let assigned: Vec<_> = membership.members.iter().map(|m| m.wave).collect();
        assert_eq!(assigned, [1, 0, 1]);
        assert_eq!(
            membership.waves[0].soak,
            Some(SignedDuration::from_hours(1))
        );
        assert_eq!(membership.waves[1].name, "remainder");
    }

    #[test]
    fn a_sized_wave_takes_vms_in_name_order() {
        let dev = labels(&[("env", "dev")]);
        let waves = vec![Wave {
            name: "first".into(),
            selector: None,
            size: Some(CountOrPercent::Percent("50%".into())),
            soak: None,
        }];
        let candidates = [
            candidate("d", &dev),
            candidate("c", &dev),
            candidate("b", &dev),
            candidate("a", &dev),
        ];
        let membership = membership(&spec(waves), &candidates);
        let by_name: Vec<_> = membership
            .members
            .iter()
            .map(|m| (candidates[m.candidate].name, m.wave))
            .collect();
        assert_eq!(by_name, [("a", 0), ("b", 0), ("c", 1), ("d", 1)]);
    }

    #[test]
    fn vms_are_skipped_for_conflict_exception_scan_wake_and_dormancy_without_wake() {
        let dev = labels(&[("env", "dev")]);
        let mut spec = spec(vec![]);
        spec.dormant.wake = false;
        let candidates = [
            Candidate {
                conflict: true,
                ..candidate("a", &dev)
            },
            Candidate {
                excepted: true,
                ..candidate("b", &dev)
            },
            Candidate {
                dormant: true,
                ..candidate("c", &dev)
            },
            candidate("d", &dev),
            Candidate {
                dormant: true,
                scan_wake: true,
                ..candidate("e", &dev)
            },
        ];
        let skips: Vec<_> = membership(&spec, &candidates)
            .members
            .iter()
            .map(|m| m.skip)
            .collect();
        assert_eq!(
            skips,
            [
                Some(SkipReason::Conflict),
                Some(SkipReason::Exception),
                Some(SkipReason::Dormant),
                None,
                Some(SkipReason::Assessing)
            ]
        );
    }
}
