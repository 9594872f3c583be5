//! `PatchBaseline`: what may be installed, how compliance is judged, and which VMs are not
//! worth keeping.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Duration, PackagePattern, conditions_schema};

/// What may be installed on the VMs of the windows that use this baseline, how their
/// compliance is judged, and when a VM is not worth keeping.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "patchkeeper.io",
    version = "v1alpha1",
    kind = "PatchBaseline",
    namespaced,
    status = "PatchBaselineStatus",
    shortname = "pb",
    category = "patchkeeper",
    doc = "What may be installed on VMs, how their compliance is judged, and which VMs are \
           not worth keeping.",
    printcolumn(
        name = "Classifications",
        type_ = "string",
        json_path = ".spec.approval.classifications"
    ),
    printcolumn(
        name = "Approve After",
        type_ = "string",
        json_path = ".spec.approval.approveAfter"
    ),
    printcolumn(name = "Reboot", type_ = "string", json_path = ".spec.reboot"),
    printcolumn(
        name = "Retire Action",
        type_ = "string",
        json_path = ".spec.retirement.action"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Windows",
        type_ = "string",
        priority = 1,
        json_path = ".status.windows"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PatchBaselineSpec {
    /// Which updates are approved for installation.
    #[serde(default)]
    pub approval: Approval,

    /// How often running VMs are scanned between windows, and when a scan is too old.
    #[serde(default)]
    pub assessment: Assessment,

    /// Whether VMs are rebooted after patching: `IfRequired` (default) reboots when the
    /// operating system says a reboot is needed, `Never` leaves that to a person, `Always`
    /// reboots after every run that installed something.
    #[serde(default)]
    pub reboot: RebootPolicy,

    /// How soon missing updates of each severity must be installed. A VM missing an update
    /// for longer is in breach of its deadline; absent severities have no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadlines: Option<Deadlines>,

    /// When a VM is not worth keeping, and what happens to it then.
    #[serde(default)]
    pub retirement: Retirement,
}

/// Which updates are approved for installation.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Kinds of update approved. Default: every kind.
    #[serde(default = "all_classifications")]
    #[schemars(length(min = 1, max = 4))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d == c))").message("must not list a classification twice"))]
    pub classifications: Vec<Classification>,

    /// Severities approved. Updates without a severity (apt gives none) are `Unspecified`.
    /// Default: every severity.
    #[serde(default = "all_severities")]
    #[schemars(length(min = 1, max = 5))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))").message("must not list a severity twice"))]
    pub severities: Vec<Severity>,

    /// How long an update must have been released before it is approved, so that it soaks
    /// elsewhere first (`168h` is a week). Where the repository gives no release date (apt
    /// repositories do not), the age counts from when patchkeeper first saw the update.
    /// Default: approved at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_after: Option<Duration>,

    /// Packages always approved, whatever their classification, severity or age.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub approved_packages: Vec<PackageMatch>,

    /// Packages never approved. They win over every other rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub rejected_packages: Vec<PackageMatch>,

    /// What a rejected package may still do: `Block` (default) never installs it, so an
    /// update that needs it is not installed either; `AllowAsDependency` installs it only when
    /// an approved update requires it.
    #[serde(default)]
    pub rejected_action: RejectedAction,
}

impl Default for Approval {
    fn default() -> Self {
        Self {
            classifications: all_classifications(),
            severities: all_severities(),
            approve_after: None,
            approved_packages: Vec::new(),
            rejected_packages: Vec::new(),
            rejected_action: RejectedAction::default(),
        }
    }
}

fn all_classifications() -> Vec<Classification> {
    use Classification::*;
    vec![Security, Bugfix, Enhancement, Other]
}

fn all_severities() -> Vec<Severity> {
    use Severity::*;
    vec![Critical, Important, Moderate, Low, Unspecified]
}

/// The kind of an update, as the distribution classifies it.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Classification {
    /// Fixes a security vulnerability (from a security repository or advisory).
    Security,
    /// Fixes a bug.
    Bugfix,
    /// Adds or improves a feature.
    Enhancement,
    /// Anything else, including updates the distribution does not classify.
    Other,
}

/// How severe the problem is that an update fixes, as the distribution rates it.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Severity {
    Critical,
    Important,
    Moderate,
    Low,
    /// The distribution gives no severity (apt repositories never do).
    Unspecified,
}

/// A package name pattern, and optionally a version.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PackageMatch {
    /// Package name; `*` matches any run of characters (`linux-image-*`).
    pub name: PackagePattern,

    /// Exact version to match, as the package manager writes it (`3.0.15-1~deb12u1`,
    /// `1:3.0.7-27.el9`). Default: every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9.+~:^_-]*$')").message("must be a package version: letters, digits, '.', '+', '~', ':', '^', '_' and '-'"))]
    pub version: Option<String>,
}

/// What a rejected package may still do.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RejectedAction {
    /// Never install it.
    #[default]
    Block,
    /// Install it only as a dependency of an approved update.
    AllowAsDependency,
}

/// How compliance is kept fresh between windows.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    /// How often running VMs are scanned (scan only: nothing is installed). Default: `24h`.
    #[serde(default = "default_scan_interval")]
    pub interval: Duration,

    /// A scan older than this makes the VM's compliance `Stale` rather than trusted.
    /// Default: `72h`.
    #[serde(default = "default_stale_after")]
    pub stale_after: Duration,

    /// How many scans may run at once in a namespace. Default: 5.
    #[serde(default = "default_max_concurrent_scans")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_scans: i32,

    /// Whether dormant VMs are woken between windows just to be scanned. When true, a
    /// powered-off VM whose scan is due is started, scanned (nothing is installed) and put
    /// back to its original run strategy right after, so that its compliance stays fresh;
    /// this counts against `maxConcurrentScans`, and never happens while its window runs or
    /// is about to open. Default: false, dormant VMs are scanned when a window wakes them.
    #[serde(default)]
    pub wake_to_scan: bool,
}

impl Default for Assessment {
    fn default() -> Self {
        Self {
            interval: default_scan_interval(),
            stale_after: default_stale_after(),
            max_concurrent_scans: default_max_concurrent_scans(),
            wake_to_scan: false,
        }
    }
}

fn default_scan_interval() -> Duration {
    Duration::new("24h")
}

fn default_stale_after() -> Duration {
    Duration::new("72h")
}

fn default_max_concurrent_scans() -> i32 {
    5
}

/// Whether VMs are rebooted after patching.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RebootPolicy {
    /// Reboot when the operating system says a reboot is needed.
    #[default]
    IfRequired,
    /// Never reboot; a needed reboot is reported.
    Never,
    /// Reboot after every run that installed something.
    Always,
}

/// How soon missing updates of each severity must be installed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deadlines {
    /// Deadline for critical updates, e.g. `168h` (a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<Duration>,
    /// Deadline for important updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub important: Option<Duration>,
    /// Deadline for moderate updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderate: Option<Duration>,
    /// Deadline for low updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<Duration>,
}

/// When a VM is not worth keeping, and what happens to it then.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.action != 'Delete' || (has(self.allowDelete) && self.allowDelete)").message("retirement.action Delete needs retirement.allowDelete: true, an explicit opt-in to deleting VMs"),
    validation = Rule::new("self.action == 'Flag' || has(self.gracePeriod)").message("retirement.gracePeriod is required when retirement.action is Stop or Delete")
)]
pub struct Retirement {
    /// What happens to a VM whose verdict is `Retire`: `Flag` (default) marks it with a
    /// condition, the label `patchkeeper.io/verdict=retire` and an Event, so that a person or
    /// a GitOps pipeline removes it; `Stop` also powers it off after the grace period;
    /// `Delete` deletes it after the grace period, and only with `allowDelete`.
    #[serde(default)]
    pub action: RetirementAction,

    /// How long a flagged VM is kept as it is before `Stop` or `Delete` acts, e.g. `168h`.
    /// Its end is shown in the VM's status and announced by an Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Duration>,

    /// Must be true for `action: Delete`: deleting VMs is never a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_delete: Option<bool>,

    /// Which reasons lead to a `Retire` verdict. A reason left out never counts.
    #[serde(default)]
    pub reasons: RetirementReasons,

    /// Corrections to the end-of-life table shipped with patchkeeper, or additions for
    /// distributions it does not know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub end_of_life_overrides: Vec<EndOfLifeOverride>,
}

/// What happens to a VM whose verdict is `Retire`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RetirementAction {
    /// Condition, label and Event only: nothing is done to the VM.
    #[default]
    Flag,
    /// Power the VM off after the grace period.
    Stop,
    /// Delete the VM after the grace period (needs `allowDelete: true`).
    Delete,
}

/// The reasons that lead to a `Retire` verdict.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetirementReasons {
    /// Retire a VM that has been powered off longer than this, e.g. `2160h` (90 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dormant_longer_than: Option<Duration>,

    /// Retire a VM whose operating system is past its end of life.
    #[serde(default)]
    pub end_of_life: bool,

    /// Retire a VM after this many patch runs in a row have failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub consecutive_failures: Option<i32>,

    /// Retire a VM that has no label with this key on its VirtualMachine (e.g. `owner` or
    /// `team`): nobody answers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 317))]
    pub missing_owner_label: Option<String>,

    /// Retire a VM that misses a critical update past the critical deadline in `deadlines`.
    #[serde(default)]
    pub critical_past_deadline: bool,
}

/// The end of life of one operating system release.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndOfLifeOverride {
    /// Distribution id as in `/etc/os-release` `ID`, e.g. `debian`, `ubuntu`, `rhel`.
    #[schemars(length(min = 1, max = 64))]
    pub distribution: String,

    /// Release as in `/etc/os-release` `VERSION_ID`, e.g. `12` or `22.04`.
    #[schemars(length(min = 1, max = 32))]
    pub version: String,

    /// The day support ends, as `YYYY-MM-DD`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$')").message("must be a date written YYYY-MM-DD"))]
    #[schemars(length(max = 10))]
    pub date: String,
}

/// What the operator last observed of a baseline.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PatchBaselineStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The windows that use this baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}
