//! Inventory: exactly one ManagedVM per VirtualMachine, with the VM's power state, its
//! operating system as the guest agent reports it, and the window that covers it.
//!
//! A VM that no window covers is still inventoried and says so: knowing what you have
//! comes before patching it.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::Standing;
use super::context::{Context, FIELD_MANAGER, normal, warning};
use super::error::Error;
use crate::api::common::{READY, RECONCILING, STALLED};
use crate::api::managed_vm::{OperatingSystem, Power, PowerState};
use crate::api::{MaintenanceWindow, ManagedVM, ManagedVMStatus};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use crate::policy::selector::matches;

/// Which windows cover a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// No window selects the VM: it is inventoried but never patched.
    Uncovered,
    /// One window, or several that agree on the baseline.
    Covered {
        windows: Vec<String>,
        baseline: String,
    },
    /// Windows with different baselines select the VM: it is not patched until a person
    /// decides which baseline applies.
    Conflict { windows: Vec<String> },
}

/// The windows in the VM's namespace whose selector matches the VM's labels.
pub fn coverage(labels: &BTreeMap<String, String>, windows: &[Arc<MaintenanceWindow>]) -> Coverage {
    let mut matching: Vec<&MaintenanceWindow> = windows
        .iter()
        .map(AsRef::as_ref)
        .filter(|w| matches(&w.spec.selector, labels))
        .collect();
    matching.sort_by_key(|w| w.name_any());
    let names: Vec<String> = matching.iter().map(|w| w.name_any()).collect();
    let Some(first) = matching.first() else {
        return Coverage::Uncovered;
    };
    let baseline = &first.spec.baseline_ref.name;
    if matching
        .iter()
        .all(|w| &w.spec.baseline_ref.name == baseline)
    {
        Coverage::Covered {
            windows: names,
            baseline: baseline.clone(),
        }
    } else {
        Coverage::Conflict { windows: names }
    }
}

/// The power state from what KubeVirt reports.
pub fn power_state(vm: &VirtualMachine) -> PowerState {
    match vm.printable_status() {
        "Running" | "Paused" | "Migrating" => PowerState::Running,
        "Stopped" => PowerState::Stopped,
        "Starting" | "Provisioning" | "WaitingForVolumeBinding" => PowerState::Starting,
        "Stopping" | "Terminating" => PowerState::Stopping,
        _ => PowerState::Unknown,
    }
}

/// The inventory's part of a ManagedVM's status.
pub fn observe(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    coverage: &Coverage,
    previous: Option<&ManagedVMStatus>,
    now: Timestamp,
) -> ManagedVMStatus {
    let state = power_state(vm);
    // The first time a VM is seen stopped, its dormancy starts then: the operator cannot
    // know when it really stopped, and undercounting never retires a VM wrongly. A VM the
    // operator started, to patch or to scan it, is still dormant: nobody else uses it.
    let woken = previous.is_some_and(woken_by_operator);
    let dormant_since = (state == PowerState::Stopped || woken).then(|| {
        previous
            .and_then(|s| s.power.as_ref())
            .and_then(|p| p.dormant_since.clone())
            .unwrap_or(Time(now))
    });
    let power = Power {
        state,
        run_strategy: Some(vm.run_strategy().to_status_string()),
        dormant_since,
    };
    let os = guest_os(vmi).or_else(|| previous.and_then(|s| s.os.clone()));
    let (window, baseline) = match coverage {
        Coverage::Covered { windows, baseline } => {
            (Some(windows.join(",")), Some(baseline.clone()))
        }
        Coverage::Uncovered | Coverage::Conflict { .. } => (None, None),
    };
    let standing = standing(coverage);
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ManagedVMStatus {
        observed_generation: vm_generation(previous),
        conditions: standing.conditions(previous_conditions, Some(1), now),
        power: Some(power),
        os,
        window,
        baseline,
        ..ManagedVMStatus::default()
    }
}

/// Whether the operator started the VM and has not put it back yet.
fn woken_by_operator(status: &ManagedVMStatus) -> bool {
    let for_patching = status
        .patch
        .as_ref()
        .is_some_and(|p| p.original_run_strategy.is_some());
    for_patching || status.scan_wake.is_some()
}

fn vm_generation(_previous: Option<&ManagedVMStatus>) -> Option<i64> {
    // The ManagedVM's spec never changes after creation.
    Some(1)
}

fn guest_os(vmi: Option<&VirtualMachineInstance>) -> Option<OperatingSystem> {
    let info = vmi?.status.as_ref()?.guest_os_info.as_ref()?;
    info.id.as_ref()?;
    Some(OperatingSystem {
        id: info.id.clone(),
        version_id: info.version_id.clone(),
        pretty_name: info.pretty_name.clone(),
        source: Some("GuestAgent".into()),
    })
}

fn standing(coverage: &Coverage) -> Standing {
    match coverage {
        Coverage::Covered { windows, baseline } => Standing::ready(
            "Covered",
            format!(
                "patched by window {} against baseline {baseline}",
                windows.join(", ")
            ),
        ),
        Coverage::Uncovered => Standing::ready(
            "NotCovered",
            "no MaintenanceWindow selects this VM; it is never patched",
        ),
        Coverage::Conflict { windows } => Standing::stalled(
            "WindowConflict",
            format!(
                "windows {} select this VM with different baselines; it is not patched until only one baseline applies",
                windows.join(", ")
            ),
        ),
    }
}

/// Ensures the VM's ManagedVM exists and carries the inventory's view of it.
pub async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = vm.namespace().ok_or(Error::MissingNamespace)?;
    if vm.metadata.deletion_timestamp.is_some() {
        // Going away: its ManagedVM goes with it by garbage collection.
        return Ok(Action::await_change());
    }
    let name = vm.name_any();
    let vmi = ctx
        .stores
        .vmis
        .get(&ObjectRef::new(&name).within(&namespace));
    let windows: Vec<_> = ctx
        .stores
        .windows
        .state()
        .into_iter()
        .filter(|w| w.namespace().as_deref() == Some(&namespace))
        .collect();
    let previous = ctx
        .stores
        .managed_vms
        .get(&ObjectRef::new(&name).within(&namespace));
    let now = ctx.clock().now();

    let coverage = coverage(vm.labels(), &windows);
    let status = observe(
        &vm,
        vmi.as_deref(),
        &coverage,
        previous.as_ref().and_then(|m| m.status.as_ref()),
        now,
    );

    let api: Api<ManagedVM> = Api::namespaced(ctx.client.clone(), &namespace);
    if previous.is_none() {
        create_managed_vm(&api, &vm).await?;
        tracing::info!(vm = %name, namespace = %namespace, "inventoried");
    }
    let managed = apply_status(&api, &name, &status).await?;
    announce_changes(&ctx, &managed, previous.as_deref(), &status).await;
    Ok(Action::await_change())
}

async fn create_managed_vm(api: &Api<ManagedVM>, vm: &VirtualMachine) -> Result<(), Error> {
    let owner = vm.controller_owner_ref(&()).ok_or(Error::MissingUid)?;
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()),
        "kind": ManagedVM::kind(&()),
        "metadata": {"name": vm.name_any(), "ownerReferences": [owner]},
        "spec": {"virtualMachineName": vm.name_any()},
    });
    api.patch(
        &vm.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

async fn apply_status(
    api: &Api<ManagedVM>,
    name: &str,
    status: &ManagedVMStatus,
) -> Result<ManagedVM, Error> {
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()),
        "kind": ManagedVM::kind(&()),
        "status": inventory_fields(status),
    });
    let params = PatchParams::apply(INVENTORY_MANAGER).force();
    Ok(api.patch_status(name, &params, &Patch::Apply(body)).await?)
}

/// The inventory writes status with a field manager of its own, so that the window
/// reconciler's fields (runs, compliance, verdict) are never overwritten by it.
pub const INVENTORY_MANAGER: &str = "patchkeeper-inventory";

fn inventory_fields(status: &ManagedVMStatus) -> serde_json::Value {
    // Only the kstatus conditions are the inventory's; others (Retire) have their own owner.
    let own: Vec<&Condition> = status
        .conditions
        .iter()
        .filter(|c| [READY, RECONCILING, STALLED].contains(&c.type_.as_str()))
        .collect();
    json!({
        "observedGeneration": status.observed_generation,
        "conditions": own,
        "power": status.power,
        "os": status.os,
        "window": status.window,
        "baseline": status.baseline,
    })
}

async fn announce_changes(
    ctx: &Context,
    managed: &ManagedVM,
    previous: Option<&ManagedVM>,
    status: &ManagedVMStatus,
) {
    let before = previous.and_then(|m| m.status.as_ref());
    let reason_of = |conditions: &[Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == "Ready" || c.type_ == "Stalled" && c.status == "True")
            .map(|c| c.reason.clone())
    };
    let old = before.and_then(|s| reason_of(&s.conditions));
    let new = reason_of(&status.conditions);
    if old == new && before.map(|s| &s.window) == Some(&status.window) {
        return;
    }
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let event = match new.as_deref() {
        Some("WindowConflict") => warning("WindowConflict", "Inventory", stalled_message(status)),
        Some("NotCovered") => normal("NotCovered", "Inventory", message),
        _ => normal("Covered", "Inventory", message),
    };
    ctx.publish_on_vm(managed, event).await;
}

fn stalled_message(status: &ManagedVMStatus) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::managed_vm::{PatchPhase, PatchProgress};

    fn vm(printable_status: &str) -> VirtualMachine {
        serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "db-1", "namespace": "prod"},
            "spec": {"runStrategy": "Always"},
            "status": {"printableStatus": printable_status},
        }))
        .unwrap()
    }

    fn dormant_since(status: &ManagedVMStatus) -> Option<Timestamp> {
        status.power.as_ref()?.dormant_since.as_ref().map(|t| t.0)
    }

    fn stopped_at(at: Timestamp) -> ManagedVMStatus {
        observe(&vm("Stopped"), None, &Coverage::Uncovered, None, at)
    }

    #[test]
    fn a_vm_started_by_someone_else_is_no_longer_dormant() {
        let then = Timestamp::from_second(1_800_000_000).unwrap();
        let previous = stopped_at(then);
        let running = observe(
            &vm("Running"),
            None,
            &Coverage::Uncovered,
            Some(&previous),
            then,
        );
        assert_eq!(dormant_since(&running), None);
    }

    #[test]
    fn a_vm_the_operator_woke_stays_dormant_since_it_was_first_seen_off() {
        let then = Timestamp::from_second(1_800_000_000).unwrap();
        let later = Timestamp::from_second(1_800_086_400).unwrap();
        let mut previous = stopped_at(then);
        previous.patch = Some(PatchProgress {
            run: "20261208t2200z".into(),
            phase: PatchPhase::Patching,
            started_at: None,
            since: None,
            original_run_strategy: Some("Halted".into()),
            job: None,
            message: None,
            outcome: None,
        });
        let running = observe(
            &vm("Running"),
            None,
            &Coverage::Uncovered,
            Some(&previous),
            later,
        );
        assert_eq!(dormant_since(&running), Some(then));
    }
}
