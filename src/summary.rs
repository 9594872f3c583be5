//! The result of one patch run in one VM: what the runner reports and the operator reads.
//!
//! The runner writes a [`RunSummary`] as the patch Pod's termination message, which Kubernetes
//! limits to [`TERMINATION_MESSAGE_LIMIT`] bytes. [`RunSummary::to_termination_message`] always
//! stays within that limit: counts are never cut, while the lists are ordered most important
//! first and cut from the end, with [`Truncated`] saying how many entries were left out.
//! The operator reads the message back with [`RunSummary::from_termination_message`].
//!
//! The schema is versioned by [`SCHEMA_VERSION`] and documented in `docs/result-schema.md`.

use std::cmp::Reverse;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the summary schema; bumped on any change an older reader would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest termination message Kubernetes keeps for a container, in bytes.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Longest failure message kept, in characters, before the size limit is even considered.
const MAX_MESSAGE_CHARS: usize = 1500;

/// Longest value kept for the short descriptive fields (OS names, what was awaited).
const MAX_SHORT_CHARS: usize = 120;

/// Errors reading a summary back from a termination message.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The text is not JSON, or not shaped like a summary.
    #[error("termination message is not a run summary")]
    Malformed(#[source] serde_json::Error),

    /// The summary was written by a runner with another schema version.
    #[error("run summary has schema version {found}, this reader understands {SCHEMA_VERSION}")]
    UnsupportedVersion {
        /// The version found in the message; zero when it had none.
        found: u64,
    },
}

impl SummaryError {
    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            SummaryError::Malformed(_) => "SummaryMalformed",
            SummaryError::UnsupportedVersion { .. } => "SummaryVersionUnsupported",
        }
    }
}

/// Everything one runner invocation found and did in one VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Version of this schema; always [`SCHEMA_VERSION`] for summaries written by this build.
    pub schema_version: u32,
    /// Whether the run only looked (`Scan`) or installed (`Install`).
    pub mode: Mode,
    /// How the run ended.
    pub outcome: Outcome,
    /// Why the run failed or timed out; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The guest's operating system, from `/etc/os-release`; absent if never reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// The package manager the runner used in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
    /// Counts, complete even when the lists below are truncated.
    pub counts: Counts,
    /// Updates available after the run, most important first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<AvailableUpdate>,
    /// Packages this run installed or upgraded, dependencies included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed: Vec<InstalledPackage>,
    /// Requested packages that this run did not install, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_installed: Vec<NotInstalled>,
    /// The guest said it needs a reboot, as observed at the end of the run.
    pub reboot_required: bool,
    /// This run rebooted the guest (and saw it come back).
    pub rebooted: bool,
    /// Seconds spent in each phase.
    pub timings: Timings,
    /// How many list entries were left out to fit the termination message; absent if none.
    #[serde(default, skip_serializing_if = "Truncated::is_empty")]
    pub truncated: Truncated,
}

/// Whether a run only looks or also installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Refresh the package lists and report available updates; change nothing.
    Scan,
    /// Install exactly the package versions the operator approved.
    Install,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    /// Every phase completed. Requested packages that were skipped are in `notInstalled`.
    Succeeded,
    /// A phase failed; `failure` says which and why.
    Failed,
    /// A phase did not finish within its timeout; `failure` says what was awaited.
    TimedOut,
}

/// The steps of a run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Reaching the guest's SSH port over TCP.
    Connect,
    /// SSH handshake, host key check, login, and reading the OS identity.
    SshReady,
    /// Refreshing package lists and listing available updates.
    Scan,
    /// Installing the approved packages.
    Install,
    /// Rebooting the guest and waiting for it to come back.
    Reboot,
}

impl Phase {
    /// The phase's name as it appears in the summary and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "Connect",
            Phase::SshReady => "SshReady",
            Phase::Scan => "Scan",
            Phase::Install => "Install",
            Phase::Reboot => "Reboot",
        }
    }
}

/// Why a run did not succeed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The phase that failed or ran out of time.
    pub phase: Phase,
    /// What the runner was waiting for, e.g. `apt-get update` or `boot id change`.
    pub awaiting: String,
    /// The error, including the package manager's own error lines where there were any.
    pub message: String,
}

/// The guest's operating system, as `/etc/os-release` names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsInfo {
    /// `ID`, e.g. `debian`, `ubuntu`, `rhel`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12` or `9.4`; empty when the file has none (rolling releases).
    pub version_id: String,
    /// `PRETTY_NAME`, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: String,
}

/// The package managers the runner drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PackageManager {
    /// Debian, Ubuntu and derivatives: apt and dpkg.
    Apt,
    /// RHEL, Fedora and derivatives: dnf and rpm.
    Dnf,
}

/// Counts that are never truncated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Packages installed in the guest at the end of the run.
    pub installed_packages: u32,
    /// Available updates, by classification and by severity.
    pub updates: UpdateCounts,
    /// Packages this run installed or upgraded, dependencies included.
    pub installed_this_run: u32,
    /// Requested packages this run did not install (held ones included).
    pub failed: u32,
}

/// Available updates counted two ways; each way sums to `total`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCounts {
    /// All available updates.
    pub total: u32,
    /// Updates classified as security fixes.
    pub security: u32,
    /// Updates classified as bug fixes (dnf advisories only).
    pub bugfix: u32,
    /// Updates classified as enhancements (dnf advisories only).
    pub enhancement: u32,
    /// Every other update.
    pub other: u32,
    /// Updates rated critical.
    pub critical: u32,
    /// Updates rated important.
    pub important: u32,
    /// Updates rated moderate.
    pub moderate: u32,
    /// Updates rated low.
    pub low: u32,
    /// Updates without a rating (every apt update).
    pub unspecified: u32,
}

impl UpdateCounts {
    /// Counts the given updates.
    pub fn of(updates: &[AvailableUpdate]) -> Self {
        let mut counts = UpdateCounts::default();
        for update in updates {
            counts.add(update.classification, update.severity);
        }
        counts
    }

    fn add(&mut self, classification: Classification, severity: Severity) {
        self.total += 1;
        *match classification {
            Classification::Security => &mut self.security,
            Classification::Bugfix => &mut self.bugfix,
            Classification::Enhancement => &mut self.enhancement,
            Classification::Other => &mut self.other,
        } += 1;
        *match severity {
            Severity::Critical => &mut self.critical,
            Severity::Important => &mut self.important,
            Severity::Moderate => &mut self.moderate,
            Severity::Low => &mut self.low,
            Severity::Unspecified => &mut self.unspecified,
        } += 1;
    }
}

/// The kind of an update, as the distribution classifies it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Classification {
    /// From a security suite (apt) or a security advisory (dnf).
    Security,
    /// A bug-fix advisory (dnf).
    Bugfix,
    /// An enhancement advisory (dnf).
    Enhancement,
    /// Anything else.
    Other,
}

/// How severe the problem is that an update fixes, as the distribution rates it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Severity {
    /// Critical.
    Critical,
    /// Important.
    Important,
    /// Moderate.
    Moderate,
    /// Low.
    Low,
    /// No rating given; apt repositories never give one.
    Unspecified,
}

/// One package with a newer candidate version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailableUpdate {
    /// Package name (with `:arch` for a foreign architecture on apt, `.arch` on dnf).
    pub name: String,
    /// Installed version.
    pub installed: String,
    /// Version the package manager would install.
    pub candidate: String,
    /// Security or not, and for dnf the advisory type.
    pub classification: Classification,
    /// Severity; `Unspecified` when the distribution gives none.
    pub severity: Severity,
    /// Suite (apt, e.g. `bookworm-security`) or repository id (dnf) of the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Origin or label of the candidate's repository (apt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Advisory id, e.g. `RHSA-2024:1234` (dnf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<String>,
    /// The package is on hold in the guest: the runner will not install this update.
    #[serde(default, skip_serializing_if = "is_false")]
    pub held: bool,
}

/// One package whose installed version this run changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Version before the run; absent for a package new to the guest (a new dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version after the run.
    pub to: String,
}

/// One requested package version that this run did not install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotInstalled {
    /// Package name.
    pub name: String,
    /// The version that was requested.
    pub version: String,
    /// Why it was not installed.
    pub reason: NotInstalledReason,
}

/// Why a requested package version was not installed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum NotInstalledReason {
    /// The package is on hold in the guest; holds are respected.
    Held,
    /// The package is not installed in the guest; the runner only upgrades.
    NotPresent,
    /// The package manager ran but the package is not at the requested version.
    Failed,
    /// Installing it would also install or upgrade a package the baseline blocks, so the
    /// package manager was not asked for it.
    Blocked,
}

/// Seconds spent in each phase, to a tenth of a second; absent for phases not reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Reaching the guest and logging in (the `Connect` and `SshReady` phases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<f64>,
    /// Refreshing lists and listing updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<f64>,
    /// Installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<f64>,
    /// Rebooting and waiting for the guest to come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<f64>,
    /// The whole run.
    pub total: f64,
}

/// How many entries of each list were left out of the termination message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Truncated {
    /// Entries left out of `updates`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub updates: u32,
    /// Entries left out of `installed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub installed: u32,
    /// Entries left out of `notInstalled`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_installed: u32,
}

impl Truncated {
    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.updates == 0 && self.installed == 0 && self.not_installed == 0
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Rounds a duration to tenths of a second, the precision the summary keeps.
pub fn seconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

impl RunSummary {
    /// An empty summary of the given mode, to be filled in as the run goes.
    pub fn new(mode: Mode) -> Self {
        RunSummary {
            schema_version: SCHEMA_VERSION,
            mode,
            outcome: Outcome::Succeeded,
            failure: None,
            os: None,
            package_manager: None,
            counts: Counts::default(),
            updates: Vec::new(),
            installed: Vec::new(),
            not_installed: Vec::new(),
            reboot_required: false,
            rebooted: false,
            timings: Timings::default(),
            truncated: Truncated::default(),
        }
    }

    /// Reads a summary from a termination message, refusing other schema versions.
    pub fn from_termination_message(text: &str) -> Result<Self, SummaryError> {
        let value: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(SummaryError::Malformed)?;
        let found = value
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(SCHEMA_VERSION) {
            return Err(SummaryError::UnsupportedVersion { found });
        }
        serde_json::from_value(value).map_err(SummaryError::Malformed)
    }

    /// Compact JSON of this summary, never longer than [`TERMINATION_MESSAGE_LIMIT`] bytes.
    ///
    /// Counts are kept whole. Lists are sorted most important first (security and severe
    /// updates, then the rest) and cut from the end until the message fits; `truncated` then
    /// says how many entries each list lost. Over-long free text (the failure message, OS
    /// names) is shortened the same way.
    pub fn to_termination_message(&self) -> String {
        let fitted = self.fitted(TERMINATION_MESSAGE_LIMIT);
        encode(&fitted).unwrap_or_else(|| fallback_message(self))
    }

    /// A copy of this summary whose compact JSON is at most `limit` bytes.
    fn fitted(&self, limit: usize) -> RunSummary {
        let mut full = self.clone();
        full.sort_by_importance();
        full.shorten_free_text();
        if encoded_len(&full) <= limit {
            return full;
        }

        let updates = std::mem::take(&mut full.updates);
        let installed = std::mem::take(&mut full.installed);
        let not_installed = std::mem::take(&mut full.not_installed);
        full.truncated.updates += count(&updates);
        full.truncated.installed += count(&installed);
        full.truncated.not_installed += count(&not_installed);
        full.shrink_until_fits(limit);

        // The lists in order of value to the operator: what failed, what changed, what's left.
        keep_prefix(&mut full, limit, not_installed, |s| {
            (&mut s.not_installed, &mut s.truncated.not_installed)
        });
        keep_prefix(&mut full, limit, installed, |s| {
            (&mut s.installed, &mut s.truncated.installed)
        });
        keep_prefix(&mut full, limit, updates, |s| {
            (&mut s.updates, &mut s.truncated.updates)
        });
        full
    }

    /// Orders the lists so that cutting from the end drops the least important entries.
    fn sort_by_importance(&mut self) {
        self.updates.sort_by(|a, b| {
            (
                a.classification != Classification::Security,
                a.severity,
                &a.name,
            )
                .cmp(&(
                    b.classification != Classification::Security,
                    b.severity,
                    &b.name,
                ))
        });
        self.installed.sort_by(|a, b| a.name.cmp(&b.name));
        self.not_installed.sort_by_key(|entry| {
            (
                Reverse(entry.reason == NotInstalledReason::Failed),
                entry.name.clone(),
            )
        });
    }

    /// Caps free text to lengths that leave room for the counts.
    fn shorten_free_text(&mut self) {
        if let Some(failure) = &mut self.failure {
            clamp(&mut failure.message, MAX_MESSAGE_CHARS);
            clamp(&mut failure.awaiting, MAX_SHORT_CHARS);
        }
        if let Some(os) = &mut self.os {
            clamp(&mut os.id, MAX_SHORT_CHARS);
            clamp(&mut os.version_id, MAX_SHORT_CHARS);
            clamp(&mut os.pretty_name, MAX_SHORT_CHARS);
        }
    }

    /// Shortens free text further while the list-less summary is still too long, which only
    /// happens when escaping blows up the text (control characters encode to six bytes).
    fn shrink_until_fits(&mut self, limit: usize) {
        while encoded_len(self) > limit {
            let message_len = self
                .failure
                .as_ref()
                .map_or(0, |f| f.message.chars().count());
            if let Some(failure) = self.failure.as_mut().filter(|_| message_len > 0) {
                clamp(&mut failure.message, message_len / 2);
            } else if self.os.is_some() {
                self.os = None;
            } else if let Some(failure) = self.failure.as_mut().filter(|f| !f.awaiting.is_empty()) {
                let awaiting_len = failure.awaiting.chars().count();
                clamp(&mut failure.awaiting, awaiting_len / 2);
            } else {
                return;
            }
        }
    }
}

/// Puts back the longest prefix of `items` that keeps the summary within `limit`, and records
/// how many were left out. `slot` picks the list and its truncation counter.
fn keep_prefix<T: Clone>(
    summary: &mut RunSummary,
    limit: usize,
    items: Vec<T>,
    slot: impl Fn(&mut RunSummary) -> (&mut Vec<T>, &mut u32),
) {
    let total = count(&items);
    let already_left_out = *slot(summary).1 - total;
    let try_keep = |summary: &mut RunSummary, kept: usize| {
        let (list, left_out) = slot(summary);
        *list = items[..kept].to_vec();
        *left_out = already_left_out + total - count(list);
        encoded_len(summary) <= limit
    };

    // Invariant: keeping `fits` entries fits (zero always does); keeping `too_many` does not.
    let (mut fits, mut too_many) = (0, items.len() + 1);
    while too_many - fits > 1 {
        let middle = fits + (too_many - fits) / 2;
        if try_keep(summary, middle) {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    try_keep(summary, fits);
}

fn count<T>(items: &[T]) -> u32 {
    u32::try_from(items.len()).unwrap_or(u32::MAX)
}

fn clamp(text: &mut String, max_chars: usize) {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
}

fn encode(summary: &RunSummary) -> Option<String> {
    serde_json::to_string(summary).ok()
}

fn encoded_len(summary: &RunSummary) -> usize {
    encode(summary).map_or(usize::MAX, |text| text.len())
}

/// A minimal summary for the case, never seen in practice, where encoding itself failed.
fn fallback_message(summary: &RunSummary) -> String {
    format!(
        r#"{{"schemaVersion":{SCHEMA_VERSION},"mode":"{:?}","outcome":"Failed","failure":{{"phase":"Scan","awaiting":"summary","message":"summary could not be encoded"}},"counts":{{"installedPackages":0,"updates":{{"total":0,"security":0,"bugfix":0,"enhancement":0,"other":0,"critical":0,"important":0,"moderate":0,"low":0,"unspecified":0}},"installedThisRun":0,"failed":0}},"rebootRequired":false,"rebooted":false,"timings":{{"total":0.0}}}}"#,
        summary.mode
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, classification: Classification) -> AvailableUpdate {
        AvailableUpdate {
            name: name.to_string(),
            installed: "1.0-1".to_string(),
            candidate: "1.0-2".to_string(),
            classification,
            severity: Severity::Unspecified,
            suite: Some("bookworm-security".to_string()),
            origin: Some("Debian".to_string()),
            advisory: None,
            held: false,
        }
    }

    fn long_name(index: usize) -> String {
        format!(
            "{}-{index}",
            "lib-very-long-package-name-for-testing-limits".repeat(3)
        )
    }

    fn scan_with_updates(count: usize) -> RunSummary {
        let mut summary = RunSummary::new(Mode::Scan);
        summary.updates = (0..count)
            .map(|i| {
                let class = if i % 7 == 0 {
                    Classification::Security
                } else {
                    Classification::Other
                };
                update(&long_name(i), class)
            })
            .collect();
        summary.counts.updates = UpdateCounts::of(&summary.updates);
        summary.counts.installed_packages = u32::try_from(count).unwrap_or(u32::MAX);
        summary
    }

    fn install_with_changes(count: usize) -> RunSummary {
        let mut summary = scan_with_updates(count);
        summary.mode = Mode::Install;
        summary.installed = (0..count)
            .map(|i| InstalledPackage {
                name: long_name(i),
                from: Some("1.0-1".into()),
                to: "1.0-2".into(),
            })
            .collect();
        summary.not_installed = (0..count)
            .map(|i| NotInstalled {
                name: long_name(i),
                version: "2.0".into(),
                reason: NotInstalledReason::Held,
            })
            .collect();
        summary
    }

    #[test]
    fn a_small_summary_is_written_whole() {
        let summary = scan_with_updates(3);
        let message = summary.to_termination_message();
        let parsed = RunSummary::from_termination_message(&message).unwrap();
        assert_eq!(parsed.updates.len(), 3);
        assert!(parsed.truncated.is_empty());
        assert!(!message.contains("truncated"));
    }

    #[test]
    fn five_thousand_long_named_updates_fit_in_the_termination_message_limit() {
        let summary = scan_with_updates(5_000);
        let message = summary.to_termination_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{} bytes",
            message.len()
        );
        let parsed = RunSummary::from_termination_message(&message).unwrap();
        assert_eq!(parsed.counts, summary.counts);
        assert!(!parsed.updates.is_empty());
        assert_eq!(
            parsed.updates.len() as u32 + parsed.truncated.updates,
            5_000
        );
    }

    #[test]
    fn truncation_keeps_security_updates_first() {
        let message = scan_with_updates(5_000).to_termination_message();
        let parsed = RunSummary::from_termination_message(&message).unwrap();
        assert!(
            parsed
                .updates
                .iter()
                .all(|u| u.classification == Classification::Security)
        );
    }

    #[test]
    fn every_list_is_cut_with_a_marker_when_all_are_long() {
        let summary = install_with_changes(5_000);
        let message = summary.to_termination_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{} bytes",
            message.len()
        );
        let parsed = RunSummary::from_termination_message(&message).unwrap();
        assert_eq!(
            parsed.not_installed.len() as u32 + parsed.truncated.not_installed,
            5_000
        );
        assert_eq!(
            parsed.installed.len() as u32 + parsed.truncated.installed,
            5_000
        );
        assert_eq!(parsed.truncated.updates, 5_000);
    }

    #[test]
    fn a_huge_failure_message_full_of_control_characters_still_fits() {
        let mut summary = install_with_changes(100);
        summary.outcome = Outcome::Failed;
        summary.failure = Some(Failure {
            phase: Phase::Install,
            awaiting: "\u{1}".repeat(10_000),
            message: "\u{7}".repeat(100_000),
        });
        summary.os = Some(OsInfo {
            id: "\u{2}".repeat(10_000),
            version_id: "\u{3}".repeat(10_000),
            pretty_name: "\u{4}".repeat(10_000),
        });
        let message = summary.to_termination_message();
        assert!(
            message.len() <= TERMINATION_MESSAGE_LIMIT,
            "{} bytes",
            message.len()
        );
        let parsed = RunSummary::from_termination_message(&message).unwrap();
        assert_eq!(parsed.outcome, Outcome::Failed);
        assert_eq!(parsed.failure.map(|f| f.phase), Some(Phase::Install));
    }

    #[test]
    fn a_message_that_was_already_truncated_keeps_its_counts_when_written_again() {
        let first = scan_with_updates(5_000).to_termination_message();
        let parsed = RunSummary::from_termination_message(&first).unwrap();
        let second = parsed.to_termination_message();
        let reparsed = RunSummary::from_termination_message(&second).unwrap();
        assert_eq!(
            reparsed.updates.len() as u32 + reparsed.truncated.updates,
            5_000
        );
    }

    #[test]
    fn another_schema_version_is_refused() {
        let message = scan_with_updates(1)
            .to_termination_message()
            .replace("\"schemaVersion\":1", "\"schemaVersion\":2");
        let error = RunSummary::from_termination_message(&message).unwrap_err();
        assert!(matches!(
            error,
            SummaryError::UnsupportedVersion { found: 2 }
        ));
        assert_eq!(error.category(), "SummaryVersionUnsupported");
    }

    #[test]
    fn text_that_is_not_a_summary_is_refused_as_malformed() {
        let error = RunSummary::from_termination_message("Error: exit status 1").unwrap_err();
        assert_eq!(error.category(), "SummaryMalformed");
    }

    #[test]
    fn update_counts_sum_to_the_total_both_ways() {
        let mut updates = vec![update("a", Classification::Security)];
        updates.push(update("b", Classification::Bugfix));
        updates[1].severity = Severity::Moderate;
        let counts = UpdateCounts::of(&updates);
        assert_eq!(counts.total, 2);
        assert_eq!((counts.security, counts.bugfix), (1, 1));
        assert_eq!((counts.moderate, counts.unspecified), (1, 1));
    }

    const SCHEMA_DOC: &str = include_str!("../docs/result-schema.md");

    fn json_examples(doc: &str) -> Vec<&str> {
        doc.split("```json")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .collect()
    }

    fn property_names(value: &serde_json::Value, names: &mut Vec<String>) {
        if let Some(object) = value.as_object() {
            if let Some(properties) = object.get("properties").and_then(|p| p.as_object()) {
                names.extend(properties.keys().cloned());
            }
            object
                .values()
                .for_each(|child| property_names(child, names));
        }
    }

    #[test]
    fn the_documented_examples_parse_with_the_current_schema_version() {
        let examples = json_examples(SCHEMA_DOC);
        assert!(
            examples.len() >= 2,
            "docs/result-schema.md shows its examples"
        );
        for example in examples {
            let summary = RunSummary::from_termination_message(example).unwrap();
            assert_eq!(summary.schema_version, SCHEMA_VERSION);
            assert!(summary.to_termination_message().len() <= TERMINATION_MESSAGE_LIMIT);
        }
    }

    #[test]
    fn every_field_of_the_schema_is_documented() {
        let schema = serde_json::to_value(schemars::schema_for!(RunSummary)).unwrap();
        let mut names = Vec::new();
        property_names(&schema, &mut names);
        assert!(names.len() > 30, "the schema lists its properties");
        for name in names {
            assert!(
                SCHEMA_DOC.contains(&format!("`{name}`")),
                "{name} is not in docs/result-schema.md"
            );
        }
    }

    #[test]
    fn the_fallback_message_parses() {
        let parsed = RunSummary::from_termination_message(&fallback_message(&RunSummary::new(
            Mode::Install,
        )))
        .unwrap();
        assert_eq!(parsed.outcome, Outcome::Failed);
    }
}
