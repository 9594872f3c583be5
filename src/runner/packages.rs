//! What the package managers have in common: the requested package versions, the installed
//! set, and how an install's effect is measured (the installed set before and after).

use std::collections::BTreeMap;
use std::str::FromStr;

use super::guest::GuestError;
use crate::summary::{AvailableUpdate, InstalledPackage, NotInstalled, NotInstalledReason};

/// Errors in a requested package version.
#[derive(Debug, thiserror::Error)]
pub enum PackageSpecError {
    /// Not of the form `name=version`.
    #[error("{spec:?} is not of the form name=version")]
    NotNameEqualsVersion {
        /// The text given.
        spec: String,
    },

    /// The name or version holds characters no package name or version has.
    #[error("{spec:?} has characters outside letters, digits and . _ + - : ~ ^")]
    BadCharacters {
        /// The text given.
        spec: String,
    },
}

impl PackageSpecError {
    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            PackageSpecError::NotNameEqualsVersion { .. } => "PackageSpecMalformed",
            PackageSpecError::BadCharacters { .. } => "PackageSpecInvalid",
        }
    }
}

/// One package version to install, `name=version`: on apt `openssl=3.0.15-1~deb12u1`, on dnf
/// `openssl.x86_64=1:3.0.7-27.el9` (the name may carry the architecture; the version is
/// `[epoch:]version-release`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageSpec {
    /// Package name as the scan reported it.
    pub name: String,
    /// Exact version to install.
    pub version: String,
}

impl FromStr for PackageSpec {
    type Err = PackageSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let not_spec = || PackageSpecError::NotNameEqualsVersion {
            spec: spec.to_string(),
        };
        let (name, version) = spec.trim().split_once('=').ok_or_else(not_spec)?;
        if name.is_empty() || version.is_empty() {
            return Err(not_spec());
        }
        // These characters cover Debian and RPM names and versions, and none of them means
        // anything to a shell, which keeps the install command free of injection.
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._+-:~^".contains(c);
        let sane = |word: &str| word.chars().all(allowed) && !word.starts_with('-');
        if !sane(name) || !sane(version) {
            return Err(PackageSpecError::BadCharacters {
                spec: spec.to_string(),
            });
        }
        Ok(PackageSpec {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

impl std::fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.version)
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Installed version.
    pub version: String,
    /// On hold: the package manager will not change it.
    pub held: bool,
    /// Unpacked but not configured (dpkg left it half-way): present, but not installed.
    pub broken: bool,
}

/// Installed packages by name.
pub type InstalledSet = BTreeMap<String, Installed>;

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Installed packages.
    pub installed: InstalledSet,
    /// Packages with a newer candidate version.
    pub updates: Vec<AvailableUpdate>,
}

/// What an install did.
#[derive(Debug, Default)]
pub struct InstallReport {
    /// Packages whose installed version changed, dependencies included.
    pub installed: Vec<InstalledPackage>,
    /// Requested versions that are not installed now, and why.
    pub not_installed: Vec<NotInstalled>,
    /// The package manager's error, when it failed; changes before the failure still count.
    pub failure: Option<GuestError>,
}

/// Splits the request into what to hand to the package manager and what to skip at once:
/// packages on hold, and packages not installed at all (the runner only upgrades).
pub fn partition(
    requested: &[PackageSpec],
    installed: &InstalledSet,
) -> (Vec<PackageSpec>, Vec<NotInstalled>) {
    let mut wanted = Vec::new();
    let mut skipped = Vec::new();
    for spec in requested {
        let reason = match installed.get(&spec.name) {
            None => Some(NotInstalledReason::NotPresent),
            Some(package) if package.held => Some(NotInstalledReason::Held),
            Some(_) => None,
        };
        match reason {
            Some(reason) => skipped.push(not_installed(spec, reason)),
            None => wanted.push(spec.clone()),
        }
    }
    (wanted, skipped)
}

/// Requested versions that the package manager was asked for but that are not installed now.
pub fn unmet(wanted: &[PackageSpec], after: &InstalledSet) -> Vec<NotInstalled> {
    wanted
        .iter()
        .filter(|spec| {
            after
                .get(&spec.name)
                .is_none_or(|p| p.version != spec.version || p.broken)
        })
        .map(|spec| not_installed(spec, NotInstalledReason::Failed))
        .collect()
}

/// Packages whose version differs between two installed sets (new packages included), as
/// long as the new version is completely installed.
pub fn changes(before: &InstalledSet, after: &InstalledSet) -> Vec<InstalledPackage> {
    after
        .iter()
        .filter(|(_, package)| !package.broken)
        .filter(|(name, package)| {
            before
                .get(*name)
                .is_none_or(|old| old.version != package.version)
        })
        .map(|(name, package)| InstalledPackage {
            name: name.clone(),
            from: before.get(name).map(|old| old.version.clone()),
            to: package.version.clone(),
        })
        .collect()
}

fn not_installed(spec: &PackageSpec, reason: NotInstalledReason) -> NotInstalled {
    NotInstalled {
        name: spec.name.clone(),
        version: spec.version.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, &str, bool)]) -> InstalledSet {
        entries
            .iter()
            .map(|(name, version, held)| {
                let installed = Installed {
                    version: version.to_string(),
                    held: *held,
                    broken: false,
                };
                (name.to_string(), installed)
            })
            .collect()
    }

    fn spec(text: &str) -> PackageSpec {
        text.parse().unwrap()
    }

    #[test]
    fn a_spec_is_name_equals_version() {
        assert_eq!(spec("openssl=3.0.15-1~deb12u1").version, "3.0.15-1~deb12u1");
        assert_eq!(spec("openssl.x86_64=1:3.0.7-27.el9").name, "openssl.x86_64");
    }

    #[test]
    fn a_spec_with_shell_characters_is_refused() {
        assert!("openssl=1;reboot".parse::<PackageSpec>().is_err());
        assert!("openssl=$(id)".parse::<PackageSpec>().is_err());
        assert!("-oopt=1".parse::<PackageSpec>().is_err());
        assert!("openssl".parse::<PackageSpec>().is_err());
    }

    #[test]
    fn held_and_absent_packages_are_skipped_with_their_reason() {
        let installed = set(&[("a", "1", false), ("h", "1", true)]);
        let (wanted, skipped) =
            partition(&[spec("a=2"), spec("h=2"), spec("missing=2")], &installed);
        assert_eq!(wanted, vec![spec("a=2")]);
        let reasons: Vec<_> = skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("h", NotInstalledReason::Held),
                ("missing", NotInstalledReason::NotPresent)
            ]
        );
    }

    #[test]
    fn changes_include_new_dependencies_without_a_from_version() {
        let before = set(&[("a", "1", false), ("b", "1", false)]);
        let after = set(&[("a", "2", false), ("b", "1", false), ("dep", "1", false)]);
        let changed = changes(&before, &after);
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].from.as_deref(), Some("1"));
        assert_eq!(changed[1].from, None);
    }

    #[test]
    fn a_half_installed_package_is_no_change_and_unmet() {
        let before = set(&[("a", "1", false)]);
        let mut after = set(&[("a", "2", false)]);
        after.get_mut("a").unwrap().broken = true;
        assert!(changes(&before, &after).is_empty());
        assert_eq!(unmet(&[spec("a=2")], &after).len(), 1);
    }

    #[test]
    fn a_version_not_reached_is_unmet() {
        let after = set(&[("a", "2", false), ("b", "1", false)]);
        let unmet = unmet(&[spec("a=2"), spec("b=2")], &after);
        assert_eq!(unmet.len(), 1);
        assert_eq!(unmet[0].name, "b");
    }
}
