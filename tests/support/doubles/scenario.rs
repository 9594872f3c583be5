//! How a VirtualMachine's guest behaves under the doubles, as annotations on the VM script it.
//!
//! Every annotation is optional; an unknown one under the prefix, or a value that does not
//! parse, is an error rather than silently ignored, so a typo in a test shows at once.

use std::collections::BTreeMap;
use std::time::Duration;

use patchkeeper::summary::{Classification, PackageManager, Severity};

use super::ANNOTATION_PREFIX;

/// Seconds from start until the guest runs and answers (default 1).
pub const BOOT_SECONDS: &str = "double.patchkeeper.io/boot-seconds";
/// Seconds from stop until the guest is gone (default 1).
pub const STOP_SECONDS: &str = "double.patchkeeper.io/stop-seconds";
/// `ID VERSION_ID PRETTY_NAME`, e.g. `debian 12 Debian GNU/Linux 12 (bookworm)`.
pub const OS: &str = "double.patchkeeper.io/os";
/// `"true"`: the VMI runs but never gets an IP address, and its guest agent never connects.
pub const NEVER_REACHABLE: &str = "double.patchkeeper.io/never-reachable";
/// What a scan finds: `name=candidate[:Classification[:Severity]]`, comma-separated.
pub const UPDATES: &str = "double.patchkeeper.io/updates";
/// Written by the kubelet double: `name=version` pairs that installs put in the guest.
pub const INSTALLED: &str = "double.patchkeeper.io/installed";
/// Seconds a patch Pod runs before it ends (default 1).
pub const PATCH_SECONDS: &str = "double.patchkeeper.io/patch-seconds";
/// `scan`, `install` or `always`: the runs of that kind fail with a package manager error.
pub const FAIL: &str = "double.patchkeeper.io/fail";
/// `"true"`: installs run out of time while the package manager is still working.
pub const TIMEOUT: &str = "double.patchkeeper.io/timeout";
/// `"true"`: the guest asks for a reboot.
pub const REBOOT_REQUIRED: &str = "double.patchkeeper.io/reboot-required";
/// `"true"`: scans find thousands of updates, more than a termination message holds.
pub const OVERSIZED: &str = "double.patchkeeper.io/oversized";
/// `"true"`: the guest runs but its SSH port never answers.
pub const UNREACHABLE: &str = "double.patchkeeper.io/unreachable";

const KNOWN: [&str; 12] = [
    BOOT_SECONDS,
    STOP_SECONDS,
    OS,
    NEVER_REACHABLE,
    UPDATES,
    INSTALLED,
    PATCH_SECONDS,
    FAIL,
    TIMEOUT,
    REBOOT_REQUIRED,
    OVERSIZED,
    UNREACHABLE,
];

/// The form of one entry of the updates annotation.
const UPDATE_FORM: &str = "name=candidate[:Classification[:Severity]], comma-separated";

/// How long a double waits when the VM does not say.
const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// Longest delay accepted, so that a typo cannot park a VM for years.
const MAX_DELAY_SECONDS: f64 = 86_400.0;

/// An annotation whose value the doubles cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}={value:?}: {problem}")]
pub struct ScenarioError {
    /// The annotation's full name.
    pub annotation: String,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ScenarioError {
    fn new(annotation: &str, value: &str, problem: impl Into<String>) -> Self {
        ScenarioError {
            annotation: annotation.to_string(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}

/// Which patch runs fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailIn {
    /// Scans fail while refreshing package lists; installs succeed.
    Scan,
    /// Installs fail in the package manager; scans succeed.
    Install,
    /// Every run fails.
    Always,
}

/// The guest's operating system, as both its os-release and its guest agent describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestOs {
    /// `ID`, e.g. `debian`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`.
    pub version_id: String,
    /// `PRETTY_NAME`, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: String,
}

/// One update a scan finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedUpdate {
    /// Package name.
    pub name: String,
    /// The version the package manager offers.
    pub candidate: String,
    /// Security or not.
    pub classification: Classification,
    /// How severe.
    pub severity: Severity,
}

/// Everything the annotations of one VirtualMachine say about its guest.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Time from start to a running guest.
    pub boot: Duration,
    /// Time from stop to a guest that is gone.
    pub stop: Duration,
    /// The operating system.
    pub os: GuestOs,
    /// The guest never gets an address and its agent never connects.
    pub never_reachable: bool,
    /// What scans find, before installs.
    pub updates: Vec<ScriptedUpdate>,
    /// Versions installed by earlier patch runs, by package name.
    pub installed: BTreeMap<String, String>,
    /// How long a patch Pod runs.
    pub patch: Duration,
    /// Which runs fail, if any.
    pub fail: Option<FailIn>,
    /// Installs time out.
    pub timeout: bool,
    /// The guest asks for a reboot.
    pub reboot_required: bool,
    /// Scans find thousands of updates.
    pub oversized: bool,
    /// The SSH port never answers.
    pub unreachable: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            boot: DEFAULT_DELAY,
            stop: DEFAULT_DELAY,
            os: GuestOs::default(),
            never_reachable: false,
            updates: Vec::new(),
            installed: BTreeMap::new(),
            patch: DEFAULT_DELAY,
            fail: None,
            timeout: false,
            reboot_required: false,
            oversized: false,
            unreachable: false,
        }
    }
}

impl Scenario {
    /// Reads the scenario from a VM's annotations; annotations without the prefix are ignored.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, ScenarioError> {
        let mut scenario = Scenario::default();
        for (key, value) in annotations {
            if key.starts_with(ANNOTATION_PREFIX) {
                scenario.set(key, value)?;
            }
        }
        Ok(scenario)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ScenarioError> {
        match key {
            BOOT_SECONDS => self.boot = delay(key, value)?,
            STOP_SECONDS => self.stop = delay(key, value)?,
            PATCH_SECONDS => self.patch = delay(key, value)?,
            OS => self.os = GuestOs::parse(key, value)?,
            UPDATES => self.updates = updates(key, value)?,
            INSTALLED => self.installed = installed(key, value)?,
            FAIL => self.fail = Some(fail_in(key, value)?),
            NEVER_REACHABLE => self.never_reachable = flag(key, value)?,
            TIMEOUT => self.timeout = flag(key, value)?,
            REBOOT_REQUIRED => self.reboot_required = flag(key, value)?,
            OVERSIZED => self.oversized = flag(key, value)?,
            UNREACHABLE => self.unreachable = flag(key, value)?,
            _ => {
                let known = KNOWN.join(", ");
                return Err(ScenarioError::new(
                    key,
                    value,
                    format!("unknown; known: {known}"),
                ));
            }
        }
        Ok(())
    }
}

fn delay(key: &str, value: &str) -> Result<Duration, ScenarioError> {
    match value.trim().parse::<f64>() {
        Ok(seconds) if (0.0..=MAX_DELAY_SECONDS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(ScenarioError::new(
            key,
            value,
            "expected seconds from 0 to 86400",
        )),
    }
}

fn flag(key: &str, value: &str) -> Result<bool, ScenarioError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ScenarioError::new(
            key,
            value,
            "expected \"true\" or \"false\"",
        )),
    }
}

fn fail_in(key: &str, value: &str) -> Result<FailIn, ScenarioError> {
    match value.trim() {
        "scan" => Ok(FailIn::Scan),
        "install" => Ok(FailIn::Install),
        "always" => Ok(FailIn::Always),
        _ => Err(ScenarioError::new(
            key,
            value,
            "expected scan, install or always",
        )),
    }
}

/// The comma-separated entries of a list annotation, blanks skipped.
fn entries(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

fn updates(key: &str, value: &str) -> Result<Vec<ScriptedUpdate>, ScenarioError> {
    entries(value)
        .map(|entry| {
            ScriptedUpdate::parse(entry).ok_or_else(|| {
                ScenarioError::new(key, value, format!("{entry:?}: expected {UPDATE_FORM}"))
            })
        })
        .collect()
}

fn installed(key: &str, value: &str) -> Result<BTreeMap<String, String>, ScenarioError> {
    entries(value)
        .map(|entry| match entry.split_once('=') {
            Some((name, version)) if !name.is_empty() && !version.is_empty() => {
                Ok((name.to_string(), version.to_string()))
            }
            _ => Err(ScenarioError::new(
                key,
                value,
                format!("{entry:?}: expected name=version"),
            )),
        })
        .collect()
}

impl ScriptedUpdate {
    /// Parses `name=candidate[:Classification[:Severity]]`; names are case-insensitive.
    fn parse(entry: &str) -> Option<Self> {
        let (name, rest) = entry.split_once('=')?;
        let mut fields = rest.split(':');
        let candidate = fields.next().filter(|c| !c.is_empty())?;
        let classification = fields
            .next()
            .map_or(Some(Classification::Other), classification)?;
        let severity = fields
            .next()
            .map_or(Some(Severity::Unspecified), severity)?;
        if name.is_empty() || fields.next().is_some() {
            return None;
        }
        Some(ScriptedUpdate {
            name: name.to_string(),
            candidate: candidate.to_string(),
            classification,
            severity,
        })
    }
}

fn classification(text: &str) -> Option<Classification> {
    match text.to_ascii_lowercase().as_str() {
        "security" => Some(Classification::Security),
        "bugfix" => Some(Classification::Bugfix),
        "enhancement" => Some(Classification::Enhancement),
        "other" => Some(Classification::Other),
        _ => None,
    }
}

fn severity(text: &str) -> Option<Severity> {
    match text.to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "important" => Some(Severity::Important),
        "moderate" => Some(Severity::Moderate),
        "low" => Some(Severity::Low),
        "unspecified" => Some(Severity::Unspecified),
        _ => None,
    }
}

impl Default for GuestOs {
    fn default() -> Self {
        GuestOs {
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        }
    }
}

impl GuestOs {
    fn parse(key: &str, value: &str) -> Result<Self, ScenarioError> {
        let mut words = value.split_whitespace();
        let (Some(id), Some(version_id)) = (words.next(), words.next()) else {
            return Err(ScenarioError::new(
                key,
                value,
                "expected ID VERSION_ID PRETTY_NAME",
            ));
        };
        let pretty_name = words.collect::<Vec<_>>().join(" ");
        Ok(GuestOs {
            id: id.to_string(),
            version_id: version_id.to_string(),
            pretty_name: if pretty_name.is_empty() {
                format!("{id} {version_id}")
            } else {
                pretty_name
            },
        })
    }

    /// The distribution's name without its version, as the guest agent's `name`.
    pub fn name(&self) -> String {
        match self
            .pretty_name
            .split_once(&format!(" {}", self.version_id))
        {
            Some((name, _)) if !name.is_empty() => name.to_string(),
            _ => self.pretty_name.clone(),
        }
    }

    /// The version with its code name, as the guest agent's `version`: `12 (bookworm)`.
    pub fn version(&self) -> String {
        match self.pretty_name.find(&format!(" {}", self.version_id)) {
            Some(at) => self.pretty_name[at + 1..].to_string(),
            None => self.version_id.clone(),
        }
    }

    /// The release name in parentheses, e.g. `bookworm`, or `stable` when there is none.
    pub fn codename(&self) -> String {
        let inside = self
            .pretty_name
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'));
        inside.map_or_else(
            || "stable".to_string(),
            |(name, _)| name.to_ascii_lowercase(),
        )
    }

    /// A kernel release typical of the distribution.
    pub fn kernel_release(&self) -> &'static str {
        match self.package_manager() {
            Some(PackageManager::Apt) if self.id == "ubuntu" => "6.8.0-45-generic",
            Some(PackageManager::Apt) => "6.1.0-28-amd64",
            Some(PackageManager::Dnf) => "5.14.0-427.13.1.el9_4.x86_64",
            None => "6.6.52-0-virt",
        }
    }

    /// The package manager the runner would drive in this guest, if it supports the OS.
    pub fn package_manager(&self) -> Option<PackageManager> {
        match self.id.as_str() {
            "debian" | "ubuntu" => Some(PackageManager::Apt),
            "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" => {
                Some(PackageManager::Dnf)
            }
            _ => None,
        }
    }
}
