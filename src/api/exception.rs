//! `PatchException`: a time-limited exemption from patching or from retirement rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{PackagePattern, conditions_schema};
use super::managed_vm::RetirementReason;

/// A time-limited exemption for some VMs: from patching altogether, from some packages, or
/// from some retirement reasons. Every exception has an owner, a reason and an expiry; an
/// expired exception stops applying by itself.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "patchkeeper.io",
    version = "v1alpha1",
    kind = "PatchException",
    namespaced,
    status = "PatchExceptionStatus",
    shortname = "pex",
    category = "patchkeeper",
    doc = "A time-limited exemption of some VMs from patching, from some packages, or from \
           some retirement reasons.",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expires"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "VMs", type_ = "integer", json_path = ".status.coveredCount"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".spec.reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.selector) != has(self.vmNames)").message("give exactly one of spec.selector and spec.vmNames: which VMs the exception covers")
)]
pub struct PatchExceptionSpec {
    /// Who answers for this exception: a person or team, e.g. an e-mail address.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.trim() != ''").message("owner must name who answers for the exception"))]
    pub owner: String,

    /// Why the exception is needed, for the next person who reads it.
    #[schemars(length(min = 10, max = 1024))]
    pub reason: String,

    /// When the exception stops applying, as an RFC 3339 time, e.g.
    /// `2027-01-31T00:00:00Z`. Exceptions never last forever.
    pub expires: Time,

    /// The VMs covered, by the labels of their VirtualMachines. Exclusive with `vmNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// The VMs covered, by VirtualMachine name. Exclusive with `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 253)))]
    pub vm_names: Option<Vec<String>>,

    /// Only these packages are held back (name patterns, `*` matching any run of
    /// characters); the rest of the VM is patched as usual. Without `packages` and
    /// `retirementReasons`, the covered VMs are not patched at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub packages: Vec<PackagePattern>,

    /// These retirement reasons do not count for the covered VMs while the exception
    /// lasts, e.g. `EndOfLife` for a VM whose migration is planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub retirement_reasons: Vec<RetirementReason>,
}

/// What the operator last observed of an exception.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PatchExceptionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// `Active` until the expiry, then `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ExceptionState>,

    /// How many VMs the exception covers now.
    #[serde(default)]
    pub covered_count: i32,

    /// The VMs covered now (at most 100 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "coveredVMs")]
    pub covered_vms: Vec<String>,
}

/// Whether an exception applies.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ExceptionState {
    Active,
    Expired,
}
