//! A double of KubeVirt's virt-controller: it starts and stops the VirtualMachineInstances of
//! VirtualMachines as their run strategy asks, with the boot and stop delays, addresses and
//! guest OS that the VMs' annotations script.
//!
//! Starting creates the VMI at once (phase `Scheduling`, owned by the VM) and sets the VM
//! `Starting`; after the boot delay the VMI is `Running` with an address from the
//! documentation ranges (RFC 5737: data only, nothing is ever sent there), guest OS info and
//! a connected guest agent, and the VM is `Running` and ready. Stopping sets the VM
//! `Stopping`, deletes the VMI after the stop delay, then sets the VM `Stopped`. `Manual` VMs
//! stay as they are. The boot clock is kept in the VMI's status, so a restarted double goes
//! on where it left off.
//!
//! Limitation: the stop clock lives in memory, so a double restarted while a VM is stopping
//! waits the whole stop delay again.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scenario::{GuestOs, Scenario, ScenarioError};
use super::{Running, scoped, whole_seconds};

/// The field manager of everything this double writes.
pub const FIELD_MANAGER: &str = "kubevirt-double";

/// The node the double pretends its VMIs run on.
const NODE_NAME: &str = "kubevirt-double-node";

/// How soon a failed reconcile is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The `kubevirt.io/v1` VirtualMachine kind.
pub fn virtual_machines() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachine");
    ApiResource::from_gvk_with_plural(&gvk, "virtualmachines")
}

/// The `kubevirt.io/v1` VirtualMachineInstance kind.
pub fn virtual_machine_instances() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance");
    ApiResource::from_gvk_with_plural(&gvk, "virtualmachineinstances")
}

/// The KubeVirt controller double, running until dropped or stopped.
#[derive(Debug)]
pub struct KubevirtDouble {
    running: Running,
}

impl KubevirtDouble {
    /// Starts the double for the VMs of one namespace, or of all namespaces with `None`.
    pub fn start(client: Client, namespace: Option<&str>) -> Self {
        let (vms, vmis) = (virtual_machines(), virtual_machine_instances());
        let controller = Controller::new_with(
            scoped(client.clone(), namespace, &vms),
            watcher::Config::default(),
            vms,
        )
        .owns_with(
            scoped(client.clone(), namespace, &vmis),
            vmis,
            watcher::Config::default(),
        );
        let context = Arc::new(Context {
            client,
            stopping: Mutex::default(),
        });
        let work = controller
            .run(reconcile, |_, _, _| Action::requeue(RETRY), context)
            .for_each(|_| futures::future::ready(()));
        KubevirtDouble {
            running: Running::spawn(work),
        }
    }

    /// Stops the double; VMs and VMIs stay as they are.
    pub fn stop(&self) {
        self.running.stop();
    }
}

struct Context {
    client: Client,
    /// When each stopping VMI (by uid) is to be gone.
    stopping: Mutex<HashMap<String, Instant>>,
}

impl Context {
    /// The time left until the VMI `uid` is gone, starting its stop clock if needed.
    fn stop_remaining(&self, uid: &str, delay: Duration) -> Option<Duration> {
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = *stopping
            .entry(uid.to_string())
            .or_insert(Instant::now() + delay);
        Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    fn forget_stop(&self, uid: &str) {
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        stopping.remove(uid);
    }
}

/// What a VM's spec asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Power {
    Run,
    Stop,
    /// `Manual` (and `WaitAsReceiver`): whatever it is now.
    Keep,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmSpec {
    run_strategy: Option<String>,
    running: Option<bool>,
}

impl VmSpec {
    fn of(vm: &DynamicObject) -> Self {
        let spec = vm.data.get("spec").cloned().unwrap_or(Value::Null);
        serde_json::from_value(spec).unwrap_or_default()
    }

    fn power(&self) -> Power {
        match (self.run_strategy.as_deref(), self.running) {
            (Some("Always" | "RerunOnFailure" | "Once"), _) | (None, Some(true)) => Power::Run,
            (Some("Manual" | "WaitAsReceiver"), _) => Power::Keep,
            _ => Power::Stop,
        }
    }

    /// The strategy in effect, as KubeVirt records it in the VM's status.
    fn effective_strategy(&self) -> &str {
        match (self.run_strategy.as_deref(), self.running) {
            (Some(strategy), _) => strategy,
            (None, Some(true)) => "Always",
            (None, _) => "Halted",
        }
    }
}

/// One VM being reconciled, with the APIs of its kind and of its VMIs.
struct Machine<'a> {
    context: &'a Context,
    vm: &'a DynamicObject,
    vms: Api<DynamicObject>,
    vmis: Api<DynamicObject>,
}

async fn reconcile(vm: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, kube::Error> {
    if vm.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the VMI through its owner reference.
        return Ok(Action::await_change());
    }
    let namespace = vm.namespace().unwrap_or_default();
    let api = |kind: &ApiResource| Api::namespaced_with(context.client.clone(), &namespace, kind);
    let machine = Machine {
        context: &context,
        vm: &vm,
        vms: api(&virtual_machines()),
        vmis: api(&virtual_machine_instances()),
    };
    match Scenario::from_annotations(vm.annotations()) {
        Ok(scenario) => machine.reconcile(&scenario).await,
        Err(error) => machine.report_invalid(&error).await,
    }
}

impl Machine<'_> {
    async fn reconcile(&self, scenario: &Scenario) -> Result<Action, kube::Error> {
        let vmi = self.vmis.get_opt(&self.vm.name_any()).await?;
        match (VmSpec::of(self.vm).power(), vmi) {
            (Power::Stop, Some(vmi)) => self.stop(&vmi, scenario).await,
            (Power::Run, None) => self.start(scenario).await,
            (Power::Run | Power::Keep, Some(vmi)) => self.boot(&vmi, scenario).await,
            (Power::Stop | Power::Keep, None) => {
                self.set_vm_status("Stopped").await?;
                Ok(Action::await_change())
            }
        }
    }

    /// Says on the VM why the double cannot play its scenario.
    async fn report_invalid(&self, error: &ScenarioError) -> Result<Action, kube::Error> {
        let name = self.vm.name_any();
        tracing::warn!(vm = %name, %error, "invalid double scenario");
        let failure = ("DoubleScenarioInvalid", error.to_string());
        let status = vm_status(self.vm, "Unknown", Some((failure.0, &failure.1)));
        apply_status(&self.vms, &name, "VirtualMachine", status).await?;
        Ok(Action::await_change())
    }

    /// Creates the VMI and starts its boot clock.
    async fn start(&self, scenario: &Scenario) -> Result<Action, kube::Error> {
        let name = self.vm.name_any();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let vmi: DynamicObject =
            serde_json::from_value(vmi_for(self.vm)).map_err(kube::Error::SerdeError)?;
        match self.vmis.create(&params, &vmi).await {
            Ok(_) => tracing::info!(vm = %name, "starting"),
            // Created already, by an earlier pass this one did not see yet: look again.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                return Ok(Action::requeue(RETRY));
            }
            Err(error) => return Err(error),
        }
        self.schedule(&name).await?;
        self.set_vm_status("Starting").await?;
        Ok(Action::requeue(scenario.boot))
    }

    /// Marks the VMI `Scheduling` now: the moment its boot delay counts from.
    async fn schedule(&self, name: &str) -> Result<(), kube::Error> {
        let status = json!({
            "phase": "Scheduling",
            "phaseTransitionTimestamps": [transition("Scheduling", Timestamp::now())],
        });
        apply_status(&self.vmis, name, "VirtualMachineInstance", status).await
    }

    /// Waits out the boot delay of a VMI that is not running yet, then makes it run.
    async fn boot(&self, vmi: &DynamicObject, scenario: &Scenario) -> Result<Action, kube::Error> {
        self.context.forget_stop(&vmi.uid().unwrap_or_default());
        if vmi_phase(vmi) == Some("Running") {
            self.set_vm_status("Running").await?;
            return Ok(Action::await_change());
        }
        let Some(scheduled) = transition_time(vmi, "Scheduling") else {
            self.schedule(&vmi.name_any()).await?;
            return Ok(Action::requeue(scenario.boot));
        };
        if let Some(left) = remaining(scheduled, scenario.boot) {
            self.set_vm_status("Starting").await?;
            return Ok(Action::requeue(left));
        }
        let status = running_vmi_status(vmi, scheduled, scenario);
        apply_status(
            &self.vmis,
            &vmi.name_any(),
            "VirtualMachineInstance",
            status,
        )
        .await?;
        tracing::info!(vm = %vmi.name_any(), "running");
        self.set_vm_status("Running").await?;
        Ok(Action::await_change())
    }

    /// Deletes the VMI once the stop delay is over.
    async fn stop(&self, vmi: &DynamicObject, scenario: &Scenario) -> Result<Action, kube::Error> {
        let uid = vmi.uid().unwrap_or_default();
        if let Some(left) = self.context.stop_remaining(&uid, scenario.stop) {
            self.set_vm_status("Stopping").await?;
            return Ok(Action::requeue(left));
        }
        match self
            .vmis
            .delete(&vmi.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => tracing::info!(vm = %vmi.name_any(), "stopped"),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(error) => return Err(error),
        }
        self.context.forget_stop(&uid);
        self.set_vm_status("Stopped").await?;
        Ok(Action::await_change())
    }

    /// Writes the VM's status for `printable` unless it already says so.
    async fn set_vm_status(&self, printable: &str) -> Result<(), kube::Error> {
        let status = vm_status(self.vm, printable, None);
        if self.vm.data.get("status") == Some(&status) {
            return Ok(());
        }
        apply_status(&self.vms, &self.vm.name_any(), "VirtualMachine", status).await
    }
}

/// Server-side applies `status` to the named object's status subresource.
async fn apply_status(
    api: &Api<DynamicObject>,
    name: &str,
    kind: &str,
    status: Value,
) -> Result<(), kube::Error> {
    let body = json!({ "apiVersion": "kubevirt.io/v1", "kind": kind, "status": status });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(body)).await?;
    Ok(())
}

/// The VM status KubeVirt shows for `printable`; `failure` adds a `Failure` condition.
fn vm_status(vm: &DynamicObject, printable: &str, failure: Option<(&str, &str)>) -> Value {
    let ready = printable == "Running";
    let why = match printable {
        "Running" => None,
        "Stopped" => Some(("VMINotExists", "VMI does not exist")),
        _ => Some(("VMINotReady", "VMI is not running yet")),
    };
    let mut conditions = vec![condition(vm, "Ready", ready, why)];
    if let Some(failure) = failure {
        conditions.push(condition(vm, "Failure", true, Some(failure)));
    }
    json!({
        "printableStatus": printable,
        "ready": ready,
        "runStrategy": VmSpec::of(vm).effective_strategy(),
        "conditions": conditions,
    })
}

/// A condition of `object`, keeping its last transition time while its status stays the
/// same; `why` is the reason and message, for conditions that are not plainly true.
fn condition(object: &DynamicObject, kind: &str, status: bool, why: Option<(&str, &str)>) -> Value {
    let status = if status { "True" } else { "False" };
    let existing = object
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array);
    let unchanged = existing
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status);
    let since = unchanged
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(whole_seconds(Timestamp::now())));
    let mut condition = json!({ "type": kind, "status": status, "lastTransitionTime": since });
    if let Some((reason, message)) = why {
        condition["reason"] = json!(reason);
        condition["message"] = json!(message);
    }
    condition
}

/// The VMI a VM's template describes, owned by the VM.
fn vmi_for(vm: &DynamicObject) -> Value {
    let template = vm.data.pointer("/spec/template");
    let field = |path: &str| {
        template
            .and_then(|t| t.pointer(path))
            .cloned()
            .unwrap_or_else(|| json!({}))
    };
    let mut labels: BTreeMap<String, Value> =
        serde_json::from_value(field("/metadata/labels")).unwrap_or_default();
    labels.insert("kubevirt.io/vm".into(), json!(vm.name_any()));
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": vm.name_any(),
            "namespace": vm.namespace(),
            "labels": labels,
            "annotations": field("/metadata/annotations"),
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "name": vm.name_any(),
                "uid": vm.uid(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": field("/spec"),
    })
}

/// The status of a VMI that has booted: running on the double's node, with an address and
/// guest OS info unless the scenario says the guest is never reachable.
fn running_vmi_status(vmi: &DynamicObject, scheduled: Timestamp, scenario: &Scenario) -> Value {
    let identity = Identity::of(vmi);
    let mut interface = json!({ "name": "default", "interfaceName": "eth0", "mac": identity.mac });
    let mut conditions = vec![condition(vmi, "Ready", true, None)];
    let mut status = json!({
        "phase": "Running",
        "nodeName": NODE_NAME,
        "phaseTransitionTimestamps": [
            transition("Scheduling", scheduled),
            transition("Running", Timestamp::now()),
        ],
    });
    if scenario.never_reachable {
        interface["infoSource"] = json!("domain");
    } else {
        interface["ipAddress"] = json!(identity.ip);
        interface["ipAddresses"] = json!([identity.ip]);
        interface["infoSource"] = json!("domain, guest-agent");
        status["guestOSInfo"] = guest_os_info(&scenario.os);
        conditions.push(condition(vmi, "AgentConnected", true, None));
    }
    status["interfaces"] = json!([interface]);
    status["conditions"] = json!(conditions);
    status
}

fn guest_os_info(os: &GuestOs) -> Value {
    json!({
        "id": os.id,
        "name": os.name(),
        "version": os.version(),
        "versionId": os.version_id,
        "prettyName": os.pretty_name,
        "kernelRelease": os.kernel_release(),
        "machine": "x86_64",
    })
}

/// The address and MAC of one VMI, derived from its uid: a new VMI gets a new address, as a
/// VM on a pod network does on every boot.
struct Identity {
    ip: String,
    mac: String,
}

impl Identity {
    fn of(vmi: &DynamicObject) -> Self {
        let mut hasher = DefaultHasher::new();
        vmi.uid().hash(&mut hasher);
        let [a, b, c, d, ..] = hasher.finish().to_be_bytes();
        // The three documentation networks of RFC 5737; hosts 1 to 254.
        let network = ["192.0.2", "198.51.100", "203.0.113"][usize::from(a % 3)];
        Identity {
            ip: format!("{network}.{}", 1 + b % 254),
            mac: format!("02:00:00:{b:02x}:{c:02x}:{d:02x}"),
        }
    }
}

fn transition(phase: &str, at: Timestamp) -> Value {
    json!({ "phase": phase, "phaseTransitionTimestamp": at.to_string() })
}

fn vmi_phase(vmi: &DynamicObject) -> Option<&str> {
    vmi.data.pointer("/status/phase").and_then(Value::as_str)
}

/// When the VMI entered `phase`, to the precision the double wrote it with.
fn transition_time(vmi: &DynamicObject, phase: &str) -> Option<Timestamp> {
    let transitions = vmi.data.pointer("/status/phaseTransitionTimestamps")?;
    let found = transitions
        .as_array()?
        .iter()
        .find(|t| t["phase"] == phase)?;
    found["phaseTransitionTimestamp"].as_str()?.parse().ok()
}

/// The time left of `delay` counted from `since`; `None` once it is over.
fn remaining(since: Timestamp, delay: Duration) -> Option<Duration> {
    let elapsed = Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
    delay.checked_sub(elapsed).filter(|left| !left.is_zero())
}
