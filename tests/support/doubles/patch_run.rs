//! What the patch runner would report from a scripted guest: a real [`RunSummary`], built
//! the way `patchkeeper runner` builds it (same phases, same failure wording), from a
//! [`Scenario`] instead of SSH.

use std::collections::BTreeMap;
use std::time::Duration;

use patchkeeper::runner::{PackageSpec, RebootPolicy};
use patchkeeper::summary::{
    AvailableUpdate, Classification, Failure, InstalledPackage, Mode, NotInstalled,
    NotInstalledReason, OsInfo, Outcome, PackageManager, Phase, RunSummary, Severity, UpdateCounts,
    seconds,
};

use super::scenario::{FailIn, Scenario};

/// Packages every scripted guest has besides those its scenario names.
const BASE_PACKAGES: u32 = 412;

/// How many updates an oversized scan finds.
const OVERSIZED_UPDATES: usize = 3_000;

/// What the runner was asked to do, from the patch Pod's environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Scan or install.
    pub mode: Mode,
    /// The package versions to install.
    pub packages: Vec<PackageSpec>,
    /// When to reboot after an install.
    pub reboot: RebootPolicy,
    /// Time allowed to reach the guest.
    pub connect_timeout: Duration,
    /// Time allowed for the install.
    pub install_timeout: Duration,
}

/// The result of one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Simulated {
    /// What the runner would write as its termination message.
    pub summary: RunSummary,
    /// The guest's installed versions after the run, for the next run to see.
    pub installed: BTreeMap<String, String>,
}

/// Runs `request` against the scripted guest; `reachable` says whether the address the Pod
/// was given leads to the guest. `elapsed` is how long the Pod ran.
pub fn simulate(
    scenario: &Scenario,
    request: &Request,
    reachable: bool,
    elapsed: Duration,
) -> Simulated {
    let mut run = Run {
        scenario,
        request,
        summary: RunSummary::new(request.mode),
        installed: scenario.installed.clone(),
    };
    if let Err((outcome, failure)) = run.phases(reachable) {
        run.summary.outcome = outcome;
        run.summary.failure = Some(failure);
    }
    run.summary.timings.total = seconds(elapsed);
    run.share_time(elapsed);
    Simulated {
        summary: run.summary,
        installed: run.installed,
    }
}

/// How a run ended early, and why.
type Ended = (Outcome, Failure);

struct Run<'a> {
    scenario: &'a Scenario,
    request: &'a Request,
    summary: RunSummary,
    installed: BTreeMap<String, String>,
}

impl Run<'_> {
    fn phases(&mut self, reachable: bool) -> Result<(), Ended> {
        let manager = self.log_in(reachable)?;
        match self.request.mode {
            Mode::Scan => self.scan(manager),
            Mode::Install => self.install_and_rescan(manager),
        }
    }

    /// `Connect` and `SshReady`.
    fn log_in(&mut self, reachable: bool) -> Result<PackageManager, Ended> {
        if !reachable || self.scenario.unreachable {
            let limit = self.request.connect_timeout;
            return Err(timed_out(Phase::Connect, "SSH on port 22", limit));
        }
        let os = &self.scenario.os;
        self.summary.os = Some(OsInfo {
            id: os.id.clone(),
            version_id: os.version_id.clone(),
            pretty_name: os.pretty_name.clone(),
        });
        self.summary.package_manager = os.package_manager();
        self.summary.package_manager.ok_or_else(|| {
            let message = format!(
                "unsupported operating system {:?} (supported: Debian and Ubuntu families with \
                 apt, RHEL and Fedora families with dnf)",
                os.id
            );
            failed(Phase::SshReady, "/etc/os-release", message)
        })
    }

    fn scan(&mut self, manager: PackageManager) -> Result<(), Ended> {
        if matches!(self.scenario.fail, Some(FailIn::Scan | FailIn::Always)) {
            let (label, detail) = refresh_error(manager, &self.scenario.os.codename());
            return Err(command_failed(Phase::Scan, label, &detail, manager));
        }
        self.take_inventory();
        Ok(())
    }

    fn take_inventory(&mut self) {
        let updates = pending(self.scenario, &self.installed);
        let named = self.scenario.updates.iter().map(|u| &u.name);
        let mut names: Vec<&String> = named.chain(self.installed.keys()).collect();
        names.sort();
        names.dedup();
        self.summary.counts.installed_packages = BASE_PACKAGES + count(names.len());
        self.summary.counts.updates = UpdateCounts::of(&updates);
        self.summary.updates = updates;
        self.summary.reboot_required = self.scenario.reboot_required;
    }

    /// `Install`, the scan of what is left, and `Reboot` when the policy says so.
    fn install_and_rescan(&mut self, manager: PackageManager) -> Result<(), Ended> {
        if self.scenario.timeout {
            let awaiting = format!("{} to finish", install_label(manager));
            return Err(timed_out(
                Phase::Install,
                &awaiting,
                self.request.install_timeout,
            ));
        }
        let failure = self.install(manager).err();
        self.take_inventory();
        if let Some(failure) = failure {
            return Err(failure);
        }
        if self.wants_reboot() {
            self.summary.rebooted = true;
            self.summary.reboot_required = false;
        }
        Ok(())
    }

    fn install(&mut self, manager: PackageManager) -> Result<(), Ended> {
        let offered = pending(self.scenario, &self.installed);
        let (wanted, skipped) = self.partition(&offered);
        self.summary.not_installed = skipped;
        let is_offered = |spec: &PackageSpec| {
            offered
                .iter()
                .any(|u| u.name == spec.name && u.candidate == spec.version)
        };
        let error = match (
            wanted.iter().find(|spec| !is_offered(spec)),
            self.scenario.fail,
        ) {
            (Some(spec), _) => Some(version_not_found(manager, spec)),
            (None, Some(FailIn::Install | FailIn::Always)) if !wanted.is_empty() => {
                Some(install_error(manager, &wanted[0].name))
            }
            _ => None,
        };
        if let Some(detail) = error {
            let failed = wanted
                .iter()
                .map(|spec| not_installed(spec, NotInstalledReason::Failed));
            self.summary.not_installed.extend(failed);
            self.count_install();
            let label = install_label(manager);
            return Err(command_failed(Phase::Install, label, &detail, manager));
        }
        self.apply(&wanted, &offered);
        self.count_install();
        Ok(())
    }

    /// Skips packages the guest does not have (the runner only upgrades) and those already
    /// at the requested version; the rest goes to the package manager.
    fn partition(&self, offered: &[AvailableUpdate]) -> (Vec<PackageSpec>, Vec<NotInstalled>) {
        let mut wanted = Vec::new();
        let mut skipped = Vec::new();
        for spec in &self.request.packages {
            let installed = self.installed.get(&spec.name);
            if installed == Some(&spec.version) {
                continue;
            }
            if installed.is_some() || offered.iter().any(|u| u.name == spec.name) {
                wanted.push(spec.clone());
            } else {
                skipped.push(not_installed(spec, NotInstalledReason::NotPresent));
            }
        }
        (wanted, skipped)
    }

    /// Installs `wanted`, each from the version its offered update says is installed.
    fn apply(&mut self, wanted: &[PackageSpec], offered: &[AvailableUpdate]) {
        for spec in wanted {
            let update = offered.iter().find(|u| u.name == spec.name);
            self.summary.installed.push(InstalledPackage {
                name: spec.name.clone(),
                from: update.map(|u| u.installed.clone()),
                to: spec.version.clone(),
            });
            self.installed
                .insert(spec.name.clone(), spec.version.clone());
        }
    }

    fn count_install(&mut self) {
        self.summary.counts.installed_this_run = count(self.summary.installed.len());
        self.summary.counts.failed = count(self.summary.not_installed.len());
    }

    fn wants_reboot(&self) -> bool {
        match self.request.reboot {
            RebootPolicy::Never => false,
            RebootPolicy::IfRequired => self.summary.reboot_required,
            RebootPolicy::Always => self.summary.counts.installed_this_run > 0,
        }
    }

    /// Splits the Pod's running time over the phases the run went through.
    fn share_time(&mut self, elapsed: Duration) {
        let timings = &mut self.summary.timings;
        if self.summary.os.is_none() {
            return;
        }
        timings.connect = Some(seconds(elapsed / 10));
        let work = elapsed * 9 / 10;
        match (self.summary.mode, self.summary.rebooted) {
            (Mode::Scan, _) => timings.scan = Some(seconds(work)),
            (Mode::Install, false) => {
                timings.install = Some(seconds(work * 2 / 3));
                timings.scan = Some(seconds(work / 3));
            }
            (Mode::Install, true) => {
                timings.install = Some(seconds(work / 3));
                timings.scan = Some(seconds(work / 3));
                timings.reboot = Some(seconds(work / 3));
            }
        }
    }
}

/// The updates a scan finds now: the scripted ones not yet installed, plus the oversized
/// filler when scripted.
fn pending(scenario: &Scenario, installed: &BTreeMap<String, String>) -> Vec<AvailableUpdate> {
    let scripted = scenario.updates.iter().filter_map(|update| {
        let current = installed.get(&update.name);
        (current != Some(&update.candidate)).then(|| AvailableUpdate {
            name: update.name.clone(),
            installed: current
                .cloned()
                .unwrap_or_else(|| older_than(&update.candidate)),
            candidate: update.candidate.clone(),
            classification: update.classification,
            severity: update.severity,
            suite: Some(suite(scenario, update.classification)),
            origin: Some(scenario.os.name()),
            advisory: None,
            held: false,
        })
    });
    let filler = (0..OVERSIZED_UPDATES)
        .filter(|_| scenario.oversized)
        .map(|i| filler(scenario, i));
    scripted.chain(filler).collect()
}

/// One of the many updates of an oversized scan; every tenth is a security update.
fn filler(scenario: &Scenario, index: usize) -> AvailableUpdate {
    let classification = match index % 10 {
        0 => Classification::Security,
        _ => Classification::Other,
    };
    AvailableUpdate {
        name: format!("libdouble-oversized-scan-filler-package-{index:04}"),
        installed: "1.0-1".into(),
        candidate: "1.0-2".into(),
        classification,
        severity: Severity::Unspecified,
        suite: Some(suite(scenario, classification)),
        origin: Some(scenario.os.name()),
        advisory: None,
        held: false,
    }
}

fn suite(scenario: &Scenario, classification: Classification) -> String {
    let codename = scenario.os.codename();
    match classification {
        Classification::Security => format!("{codename}-security"),
        _ => codename,
    }
}

/// A version that sorts before `version` in both dpkg and rpm order.
fn older_than(version: &str) -> String {
    format!("{version}~old")
}

fn not_installed(spec: &PackageSpec, reason: NotInstalledReason) -> NotInstalled {
    NotInstalled {
        name: spec.name.clone(),
        version: spec.version.clone(),
        reason,
    }
}

fn install_label(manager: PackageManager) -> &'static str {
    match manager {
        PackageManager::Apt => "apt-get install",
        PackageManager::Dnf => "dnf upgrade",
    }
}

/// The command and error lines of a failed refresh of the package lists.
fn refresh_error(manager: PackageManager, codename: &str) -> (&'static str, String) {
    match manager {
        PackageManager::Apt => (
            "apt-get update",
            format!(
                "E: Failed to fetch http://deb.debian.org/debian/dists/{codename}/InRelease  \
                 Temporary failure resolving 'deb.debian.org'\nE: Some index files failed to \
                 download. They have been ignored, or old ones used instead."
            ),
        ),
        PackageManager::Dnf => (
            "dnf check-update",
            "Error: Failed to download metadata for repo 'baseos': Cannot download \
             repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried"
                .to_string(),
        ),
    }
}

/// The error lines of an install that broke in the package manager.
fn install_error(manager: PackageManager, package: &str) -> String {
    match manager {
        PackageManager::Apt => format!(
            "dpkg: error processing package {package} (--configure):\ninstalled {package} \
             package post-installation script subprocess returned error exit status 1\nE: \
             Sub-process /usr/bin/dpkg returned an error code (1)"
        ),
        PackageManager::Dnf => format!(
            "Error: Transaction test error: file /usr/share/doc/{package} conflicts between \
             attempted installs"
        ),
    }
}

fn version_not_found(manager: PackageManager, spec: &PackageSpec) -> String {
    match manager {
        PackageManager::Apt => {
            format!(
                "E: Version '{}' for '{}' was not found",
                spec.version, spec.name
            )
        }
        PackageManager::Dnf => format!(
            "Error: Unable to find a match: {}-{}",
            spec.name, spec.version
        ),
    }
}

/// A failed command, worded as the runner words it.
fn command_failed(phase: Phase, label: &str, detail: &str, manager: PackageManager) -> Ended {
    let status = match manager {
        PackageManager::Apt => 100,
        PackageManager::Dnf => 1,
    };
    failed(
        phase,
        label,
        format!("`{label}` exited with {status}: {detail}"),
    )
}

fn failed(phase: Phase, awaiting: &str, message: String) -> Ended {
    let failure = Failure {
        phase,
        awaiting: awaiting.to_string(),
        message,
    };
    (Outcome::Failed, failure)
}

fn timed_out(phase: Phase, awaiting: &str, limit: Duration) -> Ended {
    let failure = Failure {
        phase,
        awaiting: awaiting.to_string(),
        message: format!(
            "no answer within {}s while awaiting {awaiting}",
            limit.as_secs()
        ),
    };
    (Outcome::TimedOut, failure)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
