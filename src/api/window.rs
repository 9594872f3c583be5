//! `MaintenanceWindow`: when VMs are patched, how fast, and which ones.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CountOrPercent, Duration, LocalRef, conditions_schema};
use crate::schedule::{WindowError, WindowTiming};

/// When the VMs it selects are patched, how fast, and against which baseline.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "patchkeeper.io",
    version = "v1alpha1",
    kind = "MaintenanceWindow",
    namespaced,
    status = "MaintenanceWindowStatus",
    shortname = "mw",
    category = "patchkeeper",
    doc = "When the VMs it selects are patched, how fast, and against which baseline.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Time Zone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Next Start", type_ = "string", json_path = ".status.nextStart"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastRun.result"
    ),
    printcolumn(
        name = "Baseline",
        type_ = "string",
        priority = 1,
        json_path = ".spec.baselineRef.name"
    ),
    printcolumn(
        name = "Duration",
        type_ = "string",
        priority = 1,
        json_path = ".spec.duration"
    ),
    printcolumn(
        name = "VMs",
        type_ = "integer",
        priority = 1,
        json_path = ".status.selectedVMs"
    ),
    printcolumn(
        name = "Wave",
        type_ = "string",
        priority = 1,
        json_path = ".status.currentRun.wave"
    ),
    printcolumn(
        name = "Done",
        type_ = "integer",
        priority = 1,
        json_path = ".status.currentRun.counts.succeeded"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        priority = 1,
        json_path = ".status.currentRun.counts.failed"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.cutoff) || !self.cutoff.matches('^([0-9]+(\\\\.[0-9]+)?(h|m|s|ms))+$') || !self.duration.matches('^([0-9]+(\\\\.[0-9]+)?(h|m|s|ms))+$') || duration(self.cutoff) < duration(self.duration)").message("spec.cutoff must be shorter than spec.duration: no VM could ever start").field_path(".cutoff")
)]
pub struct MaintenanceWindowSpec {
    /// When the window opens, in cron syntax as a Kubernetes CronJob accepts it: five fields
    /// (minute hour day-of-month month day-of-week) or a macro such as `@weekly`. To patch
    /// on the Nth weekday of the month, write `DAY#N` in the day-of-week field: `0 22 * *
    /// TUE#2` opens at 22:00 on the second Tuesday; `DAY#L` means the last one. Checked by the
    /// operator: a schedule it cannot read stalls the window, and no VM is touched.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`. Default: `UTC`.
    /// On daylight-saving days a start inside the skipped hour moves forward by the length
    /// of the gap, and a start inside the repeated hour happens once, at its first
    /// occurrence.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// How long the window stays open, counted in real time from its start, e.g. `4h`.
    pub duration: Duration,

    /// No VM starts patching this close to the end of the window, e.g. `30m`, so that the
    /// last ones finish in time. Must be shorter than `duration`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<Duration>,

    /// Which VirtualMachines in this namespace the window patches. `{}` selects all of them.
    pub selector: LabelSelector,

    /// The PatchBaseline, in this namespace, that says what may be installed.
    pub baseline_ref: LocalRef,

    /// Pauses the window, like a CronJob's `suspend`: no run starts while it is true. A run
    /// in progress starts no new VM, and the VMs it woke are put back to sleep.
    #[serde(default)]
    pub suspend: bool,

    /// How fast the run goes, and when it stops.
    #[serde(default)]
    pub rollout: Rollout,

    /// What happens to VMs that are powered off when the window opens.
    #[serde(default)]
    pub dormant: DormantPolicy,

    /// How the patch Jobs are run.
    pub executor: Executor,
}

impl MaintenanceWindowSpec {
    /// The window's schedule, zone, duration and cutoff, checked and combined; a missing
    /// cutoff is `0s`. This is the check the operator makes before it touches any VM.
    pub fn timing(&self) -> Result<WindowTiming, WindowError> {
        let cutoff = self.cutoff.as_ref().map_or("0s", |c| c.as_str());
        WindowTiming::parse(
            &self.schedule,
            &self.time_zone,
            self.duration.as_str(),
            cutoff,
        )
    }
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// How fast a run goes, and when it stops.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// How many VMs may be patched at the same time: a count, or a percentage of the VMs
    /// in the run. Default: 1.
    #[serde(default = "one")]
    pub max_concurrent: CountOrPercent,

    /// How many VMs may fail before the run halts: a count, or a percentage of the VMs in
    /// the run. Once reached, no new VM starts, the ones in progress finish, and the window
    /// says why. Default: 1, i.e. the first failure halts the run.
    #[serde(default = "one")]
    pub max_failures: CountOrPercent,

    /// Waves patched one after the other, e.g. a canary wave first. Each VM belongs to the
    /// first wave that selects it; VMs no wave selects form a last wave named `remainder`.
    /// A wave is promoted to the next once all its VMs are done, its soak time has passed
    /// and the failure budget still holds. Default: one wave with every VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(w, self.exists_one(v, v.name == w.name))").message("wave names must be unique"))]
    pub waves: Vec<Wave>,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_concurrent: one(),
            max_failures: one(),
            waves: Vec::new(),
        }
    }
}

fn one() -> CountOrPercent {
    CountOrPercent::Count(1)
}

/// A group of VMs patched together before the next group starts.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.selector) && has(self.size))").message("a wave takes its VMs by selector or by size, not both"),
    validation = Rule::new("has(self.selector) || has(self.size)").message("a wave needs a selector or a size")
)]
pub struct Wave {
    /// Name of the wave, shown in status and Events, e.g. `canary`.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a lowercase name of letters, digits and '-'"))]
    #[x_kube(validation = Rule::new("self != 'remainder'").message("remainder is the name of the implicit last wave"))]
    pub name: String,

    /// The VMs of this wave, by label (e.g. `patchkeeper.io/wave: canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// The number of VMs in this wave, or a percentage of the run's VMs, taken in name
    /// order from those no earlier wave selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<CountOrPercent>,

    /// How long to wait after the wave's last VM is done before promoting the next wave,
    /// so that problems show up first. Default: promote at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Duration>,
}

/// What happens to VMs that are powered off when the window opens.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DormantPolicy {
    /// Whether powered-off VMs are started for patching. Each one is put back to its
    /// original power state as soon as its own patching ends. Default: true.
    #[serde(default = "yes")]
    pub wake: bool,

    /// How many VMs may be awake for patching at once, against boot storms. Default: 2.
    #[serde(default = "default_max_awake")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_awake: i32,

    /// How long a woken VM may take to boot and become reachable. Default: `10m`.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: Duration,
}

impl Default for DormantPolicy {
    fn default() -> Self {
        Self {
            wake: true,
            max_awake: default_max_awake(),
            boot_timeout: default_boot_timeout(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_awake() -> i32 {
    2
}

fn default_boot_timeout() -> Duration {
    Duration::new("10m")
}

/// How the patch Jobs are run.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Executor {
    /// The Secret, in this namespace, with the SSH credentials: the private key under
    /// `ssh-privatekey` and the pinned host keys under `known_hosts`. It is mounted into the
    /// patch Jobs; the operator itself never reads it.
    pub ssh_secret_ref: LocalRef,

    /// The user to log in as on the VMs. Default: `root`.
    #[serde(default = "default_ssh_user")]
    #[schemars(length(min = 1, max = 32))]
    pub ssh_user: String,

    /// The SSH port of the VMs. Default: 22.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub ssh_port: i32,

    /// The image the patch Jobs run. Default: the operator's own image, which carries the
    /// patch runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// The ServiceAccount the patch Jobs run as. Default: the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// CPU and memory for the patch Jobs' container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// How long each phase of a VM's run may take before it fails.
    #[serde(default)]
    pub timeouts: PhaseTimeouts,
}

fn default_ssh_user() -> String {
    "root".into()
}

fn default_ssh_port() -> i32 {
    22
}

/// How long each phase of a VM's run may take. An expired phase fails the VM's run with a
/// reason naming what was awaited.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTimeouts {
    /// From the VM running to SSH answering. Default: `5m`.
    #[serde(default = "default_ssh_ready")]
    pub ssh_ready: Duration,
    /// The scan of installed packages and available updates. Default: `10m`.
    #[serde(default = "default_scan")]
    pub scan: Duration,
    /// Installing the approved updates. Default: `30m`.
    #[serde(default = "default_install")]
    pub install: Duration,
    /// From the reboot command to SSH answering again. Default: `10m`.
    #[serde(default = "default_reboot")]
    pub reboot: Duration,
}

impl Default for PhaseTimeouts {
    fn default() -> Self {
        Self {
            ssh_ready: default_ssh_ready(),
            scan: default_scan(),
            install: default_install(),
            reboot: default_reboot(),
        }
    }
}

fn default_ssh_ready() -> Duration {
    Duration::new("5m")
}

fn default_scan() -> Duration {
    Duration::new("10m")
}

fn default_install() -> Duration {
    Duration::new("30m")
}

fn default_reboot() -> Duration {
    Duration::new("10m")
}

/// What the operator last observed and did with a window.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindowStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Where the window stands: `Idle` until it opens, `Running` while it patches,
    /// `Halted` when the failure budget ran out, `Suspended`, or `Stalled` when its spec
    /// cannot be used (see the conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WindowPhase>,

    /// When the window opens next, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Time>,

    /// How many VMs the selector matches now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "selectedVMs"
    )]
    pub selected_vms: Option<i32>,

    /// The run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<WindowRun>,

    /// The last run that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<WindowRun>,
}

/// Where a window stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum WindowPhase {
    Idle,
    Running,
    Halted,
    Suspended,
    Stalled,
}

/// One opening of a window and what it did.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowRun {
    /// The run's identifier, derived from its start (e.g. `20261208t2200z`); it names the
    /// run's Jobs.
    pub id: String,
    /// When the window opened.
    pub started_at: Time,
    /// When the window closes.
    pub ends_at: Time,
    /// The last moment a VM may start (the end minus the cutoff).
    pub last_start_at: Time,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The wave being patched, or the last one patched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// The position of that wave, from 0, among the run's waves.
    #[serde(default)]
    pub wave_index: i32,
    /// How many waves the run has, the implicit `remainder` included.
    #[serde(default)]
    pub waves: i32,
    /// When the current wave's last VM was done; its soak counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_completed_at: Option<Time>,
    /// Whether the run stopped starting VMs because the failure budget ran out.
    #[serde(default)]
    pub halted: bool,
    /// VMs of the run by where they stand.
    #[serde(default)]
    pub counts: RunCounts,
    /// How the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Why the run halted or what is holding it, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// VMs of a run by where they stand.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    /// VMs in the run.
    pub total: i32,
    /// Waiting for their turn.
    pub waiting: i32,
    /// Being started because they were powered off.
    pub waking: i32,
    /// Being scanned, patched, rebooted or verified.
    pub patching: i32,
    /// Being put back to their original power state.
    pub restoring: i32,
    /// Patched successfully (or nothing to install).
    pub succeeded: i32,
    /// Failed; see the ManagedVM for why.
    pub failed: i32,
    /// Not patched: retired, excepted, matched by another window, or not reached in time.
    pub skipped: i32,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RunResult {
    /// Every VM was patched or had nothing to install.
    Succeeded,
    /// Some VMs failed, within the failure budget.
    PartiallySucceeded,
    /// The failure budget ran out and the run stopped starting VMs.
    Halted,
    /// The window closed before every VM had its turn.
    Incomplete,
}
