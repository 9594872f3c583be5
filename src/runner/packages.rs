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

    /// A blocked package is not `pattern` or `pattern=version`.
    #[error(
        "{spec:?} is not a package pattern (letters, digits, . _ + - and *), optionally =version"
    )]
    BadPattern {
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
            PackageSpecError::BadPattern { .. } => "BlockedPatternInvalid",
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
        if !is_word(name, "") || !is_word(version, "") {
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

/// Whether `word` is made only of the characters of Debian and RPM names and versions (and
/// `extra`), and does not start like a command-line option.
fn is_word(word: &str, extra: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._+-:~^".contains(c) || extra.contains(c);
    !word.is_empty() && word.chars().all(allowed) && !word.starts_with('-')
}

/// A package that an install must not touch, not even as a dependency of a requested one:
/// `pattern` or `pattern=version`, where `*` in the pattern matches any run of characters
/// and a pattern names a package with or without its architecture, as in the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedPackage {
    /// Package name pattern.
    pub pattern: String,
    /// Only this version is blocked; every version when absent.
    pub version: Option<String>,
}

impl BlockedPackage {
    /// Whether installing `version` of `name` is forbidden.
    pub fn blocks(&self, name: &str, version: &str) -> bool {
        crate::policy::approval::name_matches(&self.pattern, name)
            && self.version.as_deref().is_none_or(|v| v == version)
    }
}

impl FromStr for BlockedPackage {
    type Err = PackageSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let (pattern, version) = match spec.split_once('=') {
            Some((pattern, version)) => (pattern, Some(version)),
            None => (spec, None),
        };
        if !is_word(pattern, "*") || version.is_some_and(|v| !is_word(v, "")) {
            return Err(PackageSpecError::BadPattern {
                spec: spec.to_string(),
            });
        }
        Ok(BlockedPackage {
            pattern: pattern.to_string(),
            version: version.map(str::to_string),
        })
    }
}

impl std::fmt::Display for BlockedPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}={version}", self.pattern),
            None => f.write_str(&self.pattern),
        }
    }
}

/// The packages a planned transaction would install or upgrade that are blocked, as
/// `name=version`.
pub fn blocked_in(planned: &[PackageSpec], blocked: &[BlockedPackage]) -> Vec<String> {
    planned
        .iter()
        .filter(|p| blocked.iter().any(|b| b.blocks(&p.name, &p.version)))
        .map(ToString::to_string)
        .collect()
}

/// Takes out of `wanted` every package whose install would touch a blocked package (itself
/// or a dependency), so that the package manager is never asked for one. `simulate` returns
/// the packages a transaction of the given packages would install or upgrade, or `None`
/// when the package manager refuses it (the real install then says why).
///
/// The whole request is simulated first; only when it touches a blocked package is each
/// package simulated on its own to find the ones that need it. If what is left still
/// touches one together, nothing is installed.
///
/// Limitation: packages that touch a blocked package only together fail the whole install
/// rather than being split into sets that install.
pub async fn screen<F>(
    wanted: Vec<PackageSpec>,
    blocked: &[BlockedPackage],
    mut simulate: F,
) -> Result<(Vec<PackageSpec>, Vec<NotInstalled>), GuestError>
where
    F: AsyncFnMut(&[PackageSpec]) -> Result<Option<Vec<PackageSpec>>, GuestError>,
{
    if blocked.is_empty() || wanted.is_empty() {
        return Ok((wanted, Vec::new()));
    }
    let touches = |plan: Option<Vec<PackageSpec>>| {
        plan.map(|plan| blocked_in(&plan, blocked))
            .unwrap_or_default()
    };
    if touches(simulate(&wanted).await?).is_empty() {
        return Ok((wanted, Vec::new()));
    }

    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for spec in wanted {
        let needs = touches(simulate(std::slice::from_ref(&spec)).await?);
        if needs.is_empty() {
            kept.push(spec);
        } else {
            tracing::warn!(package = %spec, blocked = ?needs, "not installed: it needs packages the baseline blocks");
            refused.push(not_installed(&spec, NotInstalledReason::Blocked));
        }
    }
    let together = if kept.is_empty() {
        Vec::new()
    } else {
        touches(simulate(&kept).await?)
    };
    if !together.is_empty() {
        return Err(GuestError::CommandFailed {
            label: "install plan".to_string(),
            status: "refused".to_string(),
            detail: format!(
                "together the approved updates would install blocked packages: {}",
                together.join(", ")
            ),
        });
    }
    Ok((kept, refused))
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

    fn blocked(text: &str) -> BlockedPackage {
        text.parse().unwrap()
    }

    #[test]
    fn a_blocked_package_is_a_pattern_with_an_optional_version() {
        assert_eq!(blocked("linux-image-*").version, None);
        assert_eq!(
            blocked("openssl=3.0.15-1").version.as_deref(),
            Some("3.0.15-1")
        );
        for bad in ["", "a b", "x;reboot", "-oopt", "a=", "a=$(id)", "a=1*"] {
            assert!(bad.parse::<BlockedPackage>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_blocked_pattern_matches_names_with_and_without_architecture() {
        assert!(blocked("linux-image-*").blocks("linux-image-amd64", "6.1"));
        assert!(blocked("libc6").blocks("libc6:i386", "2.36"));
        assert!(blocked("openssl").blocks("openssl.x86_64", "1:3.0.7"));
        assert!(!blocked("openssl=2").blocks("openssl", "3"));
        assert!(blocked("openssl=3").blocks("openssl", "3"));
        assert!(!blocked("openssl").blocks("openssl-libs", "3"));
    }

    /// Plays the package manager: `tool=2` needs `dep=2`, the others need nothing.
    async fn plan(specs: &[PackageSpec]) -> Result<Option<Vec<PackageSpec>>, GuestError> {
        let mut planned = specs.to_vec();
        if specs.iter().any(|s| s.name == "tool") {
            planned.push(spec("dep=2"));
        }
        Ok(Some(planned))
    }

    #[tokio::test]
    async fn a_package_needing_a_blocked_one_is_left_out_and_the_rest_installed() {
        let wanted = vec![spec("lib=2"), spec("tool=2")];
        let (kept, refused) = screen(wanted, &[blocked("dep")], async |s: &[PackageSpec]| {
            plan(s).await
        })
        .await
        .unwrap();
        assert_eq!(kept, vec![spec("lib=2")]);
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].name.as_str(), refused[0].reason),
            ("tool", NotInstalledReason::Blocked)
        );
    }

    #[tokio::test]
    async fn nothing_is_left_out_when_no_blocked_package_is_touched() {
        let wanted = vec![spec("lib=2"), spec("tool=2")];
        let mut simulations = 0;
        let (kept, refused) = screen(
            wanted.clone(),
            &[blocked("dep=1")],
            async |s: &[PackageSpec]| {
                simulations += 1;
                plan(s).await
            },
        )
        .await
        .unwrap();
        assert_eq!(kept, wanted);
        assert!(refused.is_empty());
        assert_eq!(simulations, 1, "one simulation of the whole request");
    }

    #[tokio::test]
    async fn packages_that_touch_a_blocked_one_only_together_install_nothing() {
        let together = async |s: &[PackageSpec]| {
            let mut planned = s.to_vec();
            if s.len() > 1 {
                planned.push(spec("dep=2"));
            }
            Ok(Some(planned))
        };
        let wanted = vec![spec("a=2"), spec("b=2")];
        let error = screen(wanted, &[blocked("dep")], together)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("dep=2"), "{error}");
    }

    #[test]
    fn a_version_not_reached_is_unmet() {
        let after = set(&[("a", "2", false), ("b", "1", false)]);
        let unmet = unmet(&[spec("a=2"), spec("b=2")], &after);
        assert_eq!(unmet.len(), 1);
        assert_eq!(unmet[0].name, "b");
    }
}
