//! `ManagedVM`: the operator's record of one VirtualMachine — inventory, compliance, patch
//! runs and the keep-or-retire verdict.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::baseline::{Classification, Severity};
use super::common::conditions_schema;

/// The label that marks a ManagedVM whose verdict is `Retire`, for pipelines to select.
pub const VERDICT_LABEL: &str = "patchkeeper.io/verdict";

/// The operator's record of one VirtualMachine: inventory, compliance, patch runs and the
/// keep-or-retire verdict. Created and owned by the operator, one per VirtualMachine, and
/// deleted with it.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "patchkeeper.io",
    version = "v1alpha1",
    kind = "ManagedVM",
    plural = "managedvms",
    namespaced,
    status = "ManagedVMStatus",
    shortname = "mvm",
    category = "patchkeeper",
    doc = "The operator's record of one VirtualMachine: inventory, compliance, patch runs and \
           the keep-or-retire verdict.",
    printcolumn(name = "Power", type_ = "string", json_path = ".status.power.state"),
    printcolumn(name = "Window", type_ = "string", json_path = ".status.window"),
    printcolumn(
        name = "Compliance",
        type_ = "string",
        json_path = ".status.compliance.state"
    ),
    printcolumn(
        name = "Critical",
        type_ = "integer",
        description = "Missing critical updates",
        json_path = ".status.compliance.missing.critical"
    ),
    printcolumn(
        name = "Last Patched",
        type_ = "date",
        json_path = ".status.lastPatchedAt"
    ),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.verdict.decision"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        priority = 1,
        json_path = ".status.patch.phase"
    ),
    printcolumn(
        name = "OS",
        type_ = "string",
        priority = 1,
        json_path = ".status.os.prettyName"
    ),
    printcolumn(
        name = "Baseline",
        type_ = "string",
        priority = 1,
        json_path = ".status.baseline"
    ),
    printcolumn(
        name = "Failures",
        type_ = "integer",
        priority = 1,
        description = "Consecutive failed runs",
        json_path = ".status.consecutiveFailures"
    ),
    printcolumn(
        name = "Reasons",
        type_ = "string",
        priority = 1,
        json_path = ".status.verdict.reasons[*].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedVMSpec {
    /// The VirtualMachine, in this namespace, that this record describes. Set by the
    /// operator and never changed.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("virtualMachineName is immutable: a ManagedVM describes one VirtualMachine for its whole life"))]
    pub virtual_machine_name: String,
}

/// Everything the operator knows about one VM.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedVMStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling`, `Stalled`, and `Retire` while the verdict is Retire, each
    /// with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The VM's power state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,

    /// The VM's operating system, from the guest agent or the last scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OperatingSystem>,

    /// The MaintenanceWindow that patches this VM. Empty when no window selects it: the VM
    /// is inventoried but never patched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,

    /// The PatchBaseline of that window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,

    /// How the VM stands against its baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<Compliance>,

    /// The VM's part in the run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchProgress>,

    /// Set while the operator has started this dormant VM between windows to scan it (its
    /// baseline's `assessment.wakeToScan`); the VM is put back as soon as the scan ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_wake: Option<ScanWake>,

    /// When a run last installed updates on this VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_patched_at: Option<Time>,

    /// Patch runs in a row that failed; reset by a successful run.
    #[serde(default)]
    pub consecutive_failures: i32,

    /// The most recent runs, newest first (at most ten): when, what changed, and the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<RunRecord>,

    /// Whether this VM is worth keeping, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,

    /// The PatchExceptions that apply to this VM now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
}

/// A VM's power state.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Power {
    /// `Running`, `Stopped`, `Starting`, `Stopping` or `Unknown`.
    pub state: PowerState,
    /// The VM's run strategy as last observed (`Always`, `Halted`, `Manual`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Since when the VM has been stopped; empty while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dormant_since: Option<Time>,
}

/// A VM's power state.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PowerState {
    Running,
    Stopped,
    Starting,
    Stopping,
    #[default]
    Unknown,
}

/// A VM's operating system.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperatingSystem {
    /// `ID` from `/etc/os-release`, e.g. `debian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `VERSION_ID`, e.g. `12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A readable name, e.g. `Debian GNU/Linux 12 (bookworm)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// Where this came from: `GuestAgent` or `Scan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// How a VM stands against its baseline.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Compliance {
    /// `Compliant`, `NonCompliant`, `Unknown` (never scanned) or `Stale` (the last scan is
    /// older than the baseline allows; a dormant VM's old scan is never trusted).
    #[serde(default)]
    pub state: ComplianceState,
    /// When the VM was last scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_at: Option<Time>,
    /// Approved updates not installed, by severity.
    #[serde(default)]
    pub missing: MissingCounts,
    /// Since when the oldest missing update has been known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_missing_since: Option<Time>,
    /// Severities whose deadline has passed for some missing update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deadline_breaches: Vec<Severity>,
    /// Available updates with when patchkeeper first saw each, so that `approveAfter` counts
    /// from then even across restarts (at most 500, oldest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub pending_updates: Vec<PendingUpdate>,
}

/// How a VM stands against its baseline.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ComplianceState {
    Compliant,
    NonCompliant,
    #[default]
    Unknown,
    Stale,
}

/// Missing updates by severity.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MissingCounts {
    pub critical: i32,
    pub important: i32,
    pub moderate: i32,
    pub low: i32,
    pub unspecified: i32,
    /// Of these, security updates.
    pub security: i32,
    pub total: i32,
}

/// An update available to a VM.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpdate {
    /// Package name.
    pub name: String,
    /// The version available.
    pub version: String,
    pub classification: Classification,
    pub severity: Severity,
    /// When patchkeeper first saw this version available.
    pub first_seen: Time,
}

/// A VM's part in the run in progress.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PatchProgress {
    /// The run this VM is part of.
    pub run: String,
    /// `Waiting`, `Waking`, `Ready`, `Patching`, `Rebooting`, `Verifying`, `Restoring`,
    /// `Done` or `Failed`.
    pub phase: PatchPhase,
    /// When the VM's part in the run began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the phase began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The run strategy the VM had before the operator woke it, restored afterwards. Empty
    /// when the operator did not wake it, in which case it never stops it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_run_strategy: Option<String>,
    /// The Job doing the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// What the VM is waiting for, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// While `Restoring`: how the VM's patching ended, which it keeps once it is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<PatchOutcome>,
}

/// A dormant VM started between windows to be scanned.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanWake {
    /// `Scanning` until the scan has ended (or the VM did not become reachable in time),
    /// then `Restoring` until the VM is back to its original power state.
    pub phase: ScanWakePhase,
    /// When the operator started the VM.
    pub since: Time,
    /// The run strategy the VM had (`Halted`, `Manual`, or `running=false`), put back
    /// after the scan.
    pub original_run_strategy: String,
}

/// Where a scan wake stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ScanWakePhase {
    /// Started, booting or being scanned.
    Scanning,
    /// Being put back.
    Restoring,
}

/// How a VM's patching ended.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PatchOutcome {
    /// Patched, or nothing to install.
    Succeeded,
    /// The patching failed.
    Failed,
    /// Put back before its patching started (the run halted, or passed its cutoff).
    NotPatched,
}

/// Where a VM stands in a run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum PatchPhase {
    #[default]
    Waiting,
    Waking,
    Ready,
    Patching,
    Rebooting,
    Verifying,
    Restoring,
    Done,
    Failed,
}

/// One patch run on one VM.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The window run.
    pub run: String,
    /// The window.
    pub window: String,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// `Succeeded`, `Failed` or `Skipped`.
    pub result: String,
    /// Packages installed, as `name from→to` (at most 20, then a count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the VM was rebooted.
    #[serde(default)]
    pub rebooted: bool,
    /// Whether the operator woke the VM for this run.
    #[serde(default)]
    pub woken: bool,
}

/// Whether a VM is worth keeping.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// `Keep` or `Retire`.
    pub decision: Decision,
    /// Why the VM should be retired; empty for `Keep`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<VerdictReason>,
    /// Since when the decision has stood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// When the baseline's `Stop` or `Delete` action acts, unless the reasons go away first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_ends_at: Option<Time>,
}

/// Keep or retire.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Decision {
    #[default]
    Keep,
    Retire,
}

/// One reason for a `Retire` verdict.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerdictReason {
    /// `Dormant`, `EndOfLife`, `ConsecutiveFailures`, `MissingOwner` or
    /// `CriticalPastDeadline`.
    pub reason: RetirementReason,
    /// The evidence, in words.
    pub message: String,
}

/// The reasons a VM may be retired for.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum RetirementReason {
    Dormant,
    EndOfLife,
    ConsecutiveFailures,
    MissingOwner,
    CriticalPastDeadline,
}
