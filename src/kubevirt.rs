//! The parts of KubeVirt's `kubevirt.io/v1` API that patchkeeper reads and writes.
//!
//! Only the fields the operator uses are declared, so that the operator's caches stay
//! small in large fleets. The operator never writes these objects whole (that would drop
//! the fields it does not declare): it only patches a VM's run strategy.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The run strategy that keeps a VM running.
pub const RUN_STRATEGY_ALWAYS: &str = "Always";
/// The run strategy that keeps a VM stopped.
pub const RUN_STRATEGY_HALTED: &str = "Halted";

/// The declared parts of a VirtualMachine's spec.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachine",
    namespaced,
    status = "VirtualMachineStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// `Always`, `Halted`, `Manual`, `RerunOnFailure`, `Once` or `WaitAsReceiver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// The deprecated form of the run strategy; exclusive with `runStrategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

/// The declared parts of a VirtualMachine's status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// `Stopped`, `Starting`, `Running`, `Stopping`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

impl VirtualMachine {
    /// The run strategy as the user declared it, in either form.
    pub fn run_strategy(&self) -> RunStrategy {
        match (&self.spec.run_strategy, self.spec.running) {
            (Some(strategy), _) => RunStrategy::Strategy(strategy.clone()),
            (None, Some(running)) => RunStrategy::Running(running),
            (None, None) => RunStrategy::Strategy(RUN_STRATEGY_HALTED.to_string()),
        }
    }

    /// The status KubeVirt reports, `Unknown` when it reports none.
    pub fn printable_status(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.printable_status.as_deref())
            .unwrap_or("Unknown")
    }
}

/// How a VM declares whether it runs: KubeVirt has two exclusive forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStrategy {
    /// `spec.runStrategy`.
    Strategy(String),
    /// The deprecated `spec.running`.
    Running(bool),
}

impl RunStrategy {
    /// Written form for status: the strategy, or `running=true|false`.
    pub fn to_status_string(&self) -> String {
        match self {
            Self::Strategy(strategy) => strategy.clone(),
            Self::Running(running) => format!("running={running}"),
        }
    }

    /// Reads the written form back.
    pub fn from_status_string(text: &str) -> Self {
        match text.strip_prefix("running=") {
            Some(running) => Self::Running(running == "true"),
            None => Self::Strategy(text.to_string()),
        }
    }

    /// Whether KubeVirt keeps a VM with this strategy running.
    pub fn wants_running(&self) -> bool {
        match self {
            Self::Running(running) => *running,
            Self::Strategy(s) => s == RUN_STRATEGY_ALWAYS || s == "RerunOnFailure",
        }
    }

    /// The strategy that puts a VM the operator woke back, when this was its original.
    /// `Manual` leaves a running VM running, and so does any other strategy that neither
    /// runs nor halts one: such a VM is stopped with `Halted` first and gets its original
    /// strategy back once it is off.
    pub fn stopping(&self) -> RunStrategy {
        match self {
            Self::Strategy(s) if !self.wants_running() && s != RUN_STRATEGY_HALTED => {
                Self::Strategy(RUN_STRATEGY_HALTED.into())
            }
            _ => self.clone(),
        }
    }

    /// The JSON merge patch that sets exactly this form on a VM's spec, clearing the other.
    pub fn merge_patch(&self) -> serde_json::Value {
        match self {
            Self::Strategy(strategy) => {
                serde_json::json!({"spec": {"runStrategy": strategy, "running": null}})
            }
            Self::Running(running) => {
                serde_json::json!({"spec": {"running": running, "runStrategy": null}})
            }
        }
    }
}

/// The declared parts of a VirtualMachineInstance: a running VM.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstance",
    namespaced,
    status = "VirtualMachineInstanceStatus",
    schema = "disabled"
)]
pub struct VirtualMachineInstanceSpec {}

/// The declared parts of a VirtualMachineInstance's status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceStatus {
    /// `Pending`, `Scheduling`, `Scheduled`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// From the QEMU guest agent.
    #[serde(
        default,
        rename = "guestOSInfo",
        skip_serializing_if = "Option::is_none"
    )]
    pub guest_os_info: Option<GuestOsInfo>,
}

/// A network interface of a running VM.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the guest agent reports of the operating system.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GuestOsInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl VirtualMachineInstance {
    /// The first IP address of the VM, once it has one.
    pub fn ip_address(&self) -> Option<&str> {
        let status = self.status.as_ref()?;
        status
            .interfaces
            .iter()
            .find_map(|i| i.ip_address.as_deref())
            .filter(|ip| !ip.is_empty())
    }

    /// Whether the instance is running.
    pub fn is_running(&self) -> bool {
        self.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_woken_vm_is_put_back_with_halted_unless_its_original_stops_it_by_itself() {
        let strategy = |s: &str| RunStrategy::Strategy(s.into());
        assert_eq!(strategy("Manual").stopping(), strategy("Halted"));
        assert_eq!(strategy("Halted").stopping(), strategy("Halted"));
        assert_eq!(
            RunStrategy::Running(false).stopping(),
            RunStrategy::Running(false)
        );
        assert!(strategy("RerunOnFailure").wants_running());
        assert!(RunStrategy::Running(true).wants_running());
        assert!(!strategy("Manual").wants_running());
    }

    #[test]
    fn a_vm_without_either_form_counts_as_halted() {
        let vm = VirtualMachine::new("a", VirtualMachineSpec::default());
        assert_eq!(vm.run_strategy(), RunStrategy::Strategy("Halted".into()));
    }

    #[test]
    fn both_forms_survive_the_round_trip_through_status() {
        for strategy in [
            RunStrategy::Running(false),
            RunStrategy::Strategy("Manual".into()),
        ] {
            let text = strategy.to_status_string();
            assert_eq!(RunStrategy::from_status_string(&text), strategy);
        }
    }

    #[test]
    fn restoring_the_deprecated_form_clears_the_run_strategy() {
        let patch = RunStrategy::Running(false).merge_patch();
        assert_eq!(
            patch,
            serde_json::json!({"spec": {"running": false, "runStrategy": null}})
        );
    }
}
