//! dnf and rpm: RHEL, Fedora and their rebuilds.
//!
//! Scan: `dnf check-update --refresh` lists each upgradable `name.arch` with its candidate,
//! `dnf updateinfo list` gives the advisories (type and severity) for the available updates,
//! and `rpm -qa` the installed set. An update takes the most important advisory that names
//! its package: security first, then the most severe.
//!
//! Install: exactly the requested NEVRAs with `dnf upgrade`, after a dry run that refuses any
//! transaction removing or downgrading a package; a requested package whose dry run would
//! install or upgrade a blocked package is left out. Reboot-needed comes from
//! `needs-restarting -r`.
//!
//! Limitation: dnf holds (the versionlock plugin) are not reported; locked packages simply
//! do not appear as updates.

use super::guest::{Guest, GuestError, Shell, command_failed, quote};
use super::packages::{
    BlockedPackage, InstallReport, Installed, InstalledSet, Inventory, PackageSpec, changes,
    partition, screen, unmet,
};
use crate::summary::{AvailableUpdate, Classification, Severity};

/// Installed packages as `installtime name.arch [epoch:]version-release`, skipping the
/// `gpg-pubkey` pseudo-packages (which have no architecture).
const INSTALLED_COMMAND: &str = r"rpm -qa --qf '%{INSTALLTIME}\t%{NAME}.%{ARCH}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n'";

/// Options of every upgrade, real or dry run.
const UPGRADE_OPTIONS: &str = "--setopt=install_weak_deps=False";

/// Architectures that may end a `name.arch` package name.
const ARCHES: &[&str] = &[
    "x86_64", "noarch", "aarch64", "i686", "ppc64le", "s390x", "armv7hl",
];

/// Lists installed packages and available updates; `refresh` is `--refresh` to fetch fresh
/// metadata first, or empty to use the cache.
pub async fn inventory<S: Shell>(
    guest: &Guest<'_, S>,
    refresh: &str,
) -> Result<Inventory, GuestError> {
    let label = "dnf check-update";
    let output = guest
        .run(label, &format!("dnf -q -y check-update {refresh}"))
        .await?;
    // check-update exits 100 when updates exist, 0 when none, anything else on error.
    if !matches!(output.status, Some(0) | Some(100)) {
        return Err(command_failed(label, &output));
    }
    let candidates = parse_check_update(&output.stdout);
    let advisories = guest
        .run_ok("dnf updateinfo", "dnf -q updateinfo list")
        .await?;
    let advisories = parse_updateinfo(&advisories.stdout);
    let installed = installed(guest).await?;
    let updates = candidates
        .into_iter()
        .filter_map(|candidate| update(candidate, &installed, &advisories))
        .collect();
    Ok(Inventory { installed, updates })
}

/// Installs exactly `requested`, refusing a transaction that removes or downgrades anything,
/// and leaving out every requested package that would touch a `blocked` one.
pub async fn install<S: Shell>(
    guest: &Guest<'_, S>,
    requested: &[PackageSpec],
    blocked: &[BlockedPackage],
) -> Result<InstallReport, GuestError> {
    let before = installed(guest).await?;
    let (wanted, mut not_installed) = partition(requested, &before);
    let (wanted, refused) = screen(wanted, blocked, async |specs: &[PackageSpec]| {
        Ok(Some(planned_changes(&dry_run(guest, specs).await?)))
    })
    .await?;
    not_installed.extend(refused);
    let mut failure = None;
    if !wanted.is_empty() {
        let removals = removals(&dry_run(guest, &wanted).await?);
        failure = if removals.is_empty() {
            upgrade(guest, &targets(&wanted)).await?
        } else {
            Some(GuestError::CommandFailed {
                label: "dnf upgrade".to_string(),
                status: "refused".to_string(),
                detail: format!(
                    "the transaction would remove or downgrade: {}",
                    removals.join(", ")
                ),
            })
        };
    }
    let after = installed(guest).await?;
    not_installed.extend(unmet(&wanted, &after));
    Ok(InstallReport {
        installed: changes(&before, &after),
        not_installed,
        failure,
    })
}

/// The transaction table dnf prints for an upgrade of `wanted` without carrying it out.
async fn dry_run<S: Shell>(
    guest: &Guest<'_, S>,
    wanted: &[PackageSpec],
) -> Result<String, GuestError> {
    let command = format!(
        "dnf --assumeno {UPGRADE_OPTIONS} upgrade {}",
        targets(wanted)
    );
    Ok(guest.run("dnf upgrade (dry run)", &command).await?.stdout)
}

/// Whether `needs-restarting -r` asks for a reboot.
pub async fn reboot_required<S: Shell>(guest: &Guest<'_, S>) -> Result<bool, GuestError> {
    let script = "if command -v needs-restarting >/dev/null 2>&1; then needs-restarting -r; \
                  else dnf -q needs-restarting -r; fi";
    let output = guest
        .run("needs-restarting -r", &format!("sh -c {}", quote(script)))
        .await?;
    let text = format!("{}\n{}", output.stdout, output.stderr);
    if text.contains("Reboot is required") {
        Ok(true)
    } else if text.contains("Reboot should not be necessary") {
        Ok(false)
    } else {
        Err(command_failed("needs-restarting -r", &output))
    }
}

async fn upgrade<S: Shell>(
    guest: &Guest<'_, S>,
    targets: &str,
) -> Result<Option<GuestError>, GuestError> {
    let command = format!("dnf -y {UPGRADE_OPTIONS} upgrade {targets}");
    let output = guest.run("dnf upgrade", &command).await?;
    Ok((!output.success()).then(|| command_failed("dnf upgrade", &output)))
}

async fn installed<S: Shell>(guest: &Guest<'_, S>) -> Result<InstalledSet, GuestError> {
    let output = guest.run_ok("rpm -qa", INSTALLED_COMMAND).await?;
    Ok(parse_installed(&output.stdout))
}

/// Parses `rpm -qa` lines; of several installed versions (kernels) the newest install wins.
fn parse_installed(text: &str) -> InstalledSet {
    let mut rows: Vec<(u64, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let time = fields.next()?.trim().parse().ok()?;
            Some((time, fields.next()?, fields.next()?))
        })
        .filter(|(_, name, _)| !name.ends_with(".(none)"))
        .collect();
    rows.sort_by_key(|(time, _, _)| *time);
    rows.into_iter()
        .map(|(_, name, version)| {
            (
                name.to_string(),
                Installed {
                    version: version.to_string(),
                    held: false,
                    broken: false,
                },
            )
        })
        .collect()
}

/// The dnf argument for a requested version: `name-[epoch:]version-release[.arch]`.
fn nevra(spec: &PackageSpec) -> String {
    match split_arch(&spec.name) {
        Some((name, arch)) => format!("{name}-{}.{arch}", spec.version),
        None => format!("{}-{}", spec.name, spec.version),
    }
}

fn split_arch(name_arch: &str) -> Option<(&str, &str)> {
    let (name, arch) = name_arch.rsplit_once('.')?;
    ARCHES.contains(&arch).then_some((name, arch))
}

/// One line of `dnf check-update`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Candidate {
    name_arch: String,
    version: String,
    repo: String,
}

/// Parses `dnf check-update`: `name.arch version repo` rows, which dnf wraps onto two lines
/// when the name is long, up to the `Obsoleting Packages` section.
fn parse_check_update(text: &str) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Obsoleting Packages") {
            break;
        }
        pending.extend(line.split_whitespace());
        match pending.as_slice() {
            [name_arch] if split_arch(name_arch).is_some() => continue,
            [name_arch, version, repo] if split_arch(name_arch).is_some() => {
                candidates.push(Candidate {
                    name_arch: name_arch.to_string(),
                    version: version.to_string(),
                    repo: repo.to_string(),
                });
            }
            _ => {}
        }
        pending.clear();
    }
    candidates
}

/// One advisory entry of `dnf updateinfo list`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Advisory {
    id: String,
    classification: Classification,
    severity: Severity,
    name_arch: String,
}

/// Parses `dnf updateinfo list` in both layouts: dnf 4 prints `ID Severity/Sec. NEVRA` or
/// `ID bugfix NEVRA`; dnf 5 prints `ID type severity NEVRA issued`.
fn parse_updateinfo(text: &str) -> Vec<Advisory> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (id, kind, severity, package) = match words.as_slice() {
                [id, kind, severity, package, ..] if is_dnf5_type(kind) => {
                    (*id, *kind, *severity, *package)
                }
                [id, kind, package, ..] => {
                    let (severity, kind) = kind.split_once('/').unwrap_or(("", kind));
                    (*id, kind, severity, *package)
                }
                _ => return None,
            };
            Some(Advisory {
                id: id.to_string(),
                classification: classification(kind)?,
                severity: severity_of(severity),
                name_arch: name_arch_of(package)?,
            })
        })
        .collect()
}

fn is_dnf5_type(word: &str) -> bool {
    matches!(
        word,
        "security" | "bugfix" | "enhancement" | "newpackage" | "unspecified"
    )
}

fn classification(kind: &str) -> Option<Classification> {
    match kind.to_ascii_lowercase().as_str() {
        "sec." | "security" => Some(Classification::Security),
        "bugfix" => Some(Classification::Bugfix),
        "enhancement" => Some(Classification::Enhancement),
        "newpackage" | "unspecified" | "unknown" => Some(Classification::Other),
        _ => None,
    }
}

fn severity_of(word: &str) -> Severity {
    match word.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "important" => Severity::Important,
        "moderate" => Severity::Moderate,
        "low" => Severity::Low,
        _ => Severity::Unspecified,
    }
}

/// `openssl-1:3.0.7-27.el9.x86_64` → `openssl.x86_64`.
fn name_arch_of(nevra: &str) -> Option<String> {
    let (rest, arch) = nevra.rsplit_once('.')?;
    let mut parts = rest.rsplitn(3, '-');
    let (_release, _version, name) = (parts.next()?, parts.next()?, parts.next()?);
    ARCHES.contains(&arch).then(|| format!("{name}.{arch}"))
}

fn update(
    candidate: Candidate,
    installed: &InstalledSet,
    advisories: &[Advisory],
) -> Option<AvailableUpdate> {
    let package = installed.get(&candidate.name_arch)?;
    let best = advisories
        .iter()
        .filter(|advisory| advisory.name_arch == candidate.name_arch)
        .min_by_key(|advisory| (advisory.classification, advisory.severity));
    Some(AvailableUpdate {
        name: candidate.name_arch,
        installed: package.version.clone(),
        candidate: candidate.version,
        classification: best.map_or(Classification::Other, |a| a.classification),
        severity: best.map_or(Severity::Unspecified, |a| a.severity),
        suite: Some(candidate.repo),
        origin: None,
        advisory: best.map(|a| a.id.clone()),
        held: false,
    })
}

fn targets(wanted: &[PackageSpec]) -> String {
    let targets: Vec<String> = wanted.iter().map(|spec| quote(&nevra(spec))).collect();
    targets.join(" ")
}

/// The packages a dry-run transaction table would install or upgrade, dependencies
/// included, as `name=version` (names without their architecture, as dnf prints them).
fn planned_changes(plan: &str) -> Vec<PackageSpec> {
    let mut found = Vec::new();
    let mut in_section = false;
    // dnf puts a name too long for its column on a line of its own.
    let mut wrapped: Option<&str> = None;
    for line in plan.lines() {
        if !line.starts_with(' ') {
            in_section = ["Installing", "Upgrading", "Reinstalling"]
                .iter()
                .any(|section| line.starts_with(section))
                && line.trim_end().ends_with(':');
            wrapped = None;
            continue;
        }
        if !in_section {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (name, version) = match (wrapped.take(), words.as_slice()) {
            (None, &[name]) => {
                wrapped = Some(name);
                continue;
            }
            (Some(name), &[_arch, version, ..]) | (None, &[name, _arch, version, ..]) => {
                (name, version)
            }
            _ => continue,
        };
        found.push(PackageSpec {
            name: name.to_string(),
            version: version.to_string(),
        });
    }
    found
}

/// Lines of a dry-run transaction table that would remove or downgrade packages.
fn removals(plan: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_section = false;
    for line in plan.lines() {
        let starts_section = !line.starts_with(' ') && line.trim_end().ends_with(':');
        if starts_section {
            in_section = line.starts_with("Removing") || line.starts_with("Downgrading");
        } else if in_section && let Some(name) = line.split_whitespace().next() {
            found.push(name.to_string());
        }
        if line.trim().is_empty() || line.starts_with("Transaction Summary") {
            in_section = false;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like the output of dnf 4.14 on Rocky Linux 9.
    const CHECK_UPDATE: &str = "
kernel.x86_64                               5.14.0-427.16.1.el9_4               baseos
openssl.x86_64                              1:3.0.7-27.el9_4                    baseos
openssl-libs.x86_64                         1:3.0.7-27.el9_4                    baseos
python3-software-properties-with-a-long-name.noarch
                                            2.1-3.el9                           appstream
tzdata.noarch                               2024a-1.el9                         baseos
Obsoleting Packages
grub2-tools.x86_64                          1:2.06-80.el9_4                     baseos
    grub2-tools.x86_64                      1:2.06-77.el9                       @anaconda
";

    const UPDATEINFO_DNF4: &str = "\
RLSA-2024:2264 Important/Sec. kernel-5.14.0-427.16.1.el9_4.x86_64
RLSA-2024:3001 Moderate/Sec.  openssl-1:3.0.7-27.el9_4.x86_64
RLSA-2024:3001 Moderate/Sec.  openssl-libs-1:3.0.7-27.el9_4.x86_64
RLBA-2024:2999 bugfix         openssl-libs-1:3.0.7-26.el9.x86_64
RLEA-2024:3100 enhancement    tzdata-2024a-1.el9.noarch
";

    const UPDATEINFO_DNF5: &str = "\
Name                     Type        Severity                                   Package              Issued
FEDORA-2024-5b4e6bc1b7   security    Critical             openssl-1:3.2.2-3.fc40.x86_64 2024-06-05 01:23:45
FEDORA-2024-0a1b2c3d4e   bugfix      None                 tzdata-2024a-2.fc40.noarch    2024-06-01 00:00:00
";

    const RPM_QA: &str = "\
1700000000\tkernel.x86_64\t5.14.0-362.8.1.el9_3
1710000000\tkernel.x86_64\t5.14.0-427.13.1.el9_4
1700000000\topenssl.x86_64\t1:3.0.7-25.el9_3
1700000000\topenssl-libs.x86_64\t1:3.0.7-25.el9_3
1700000000\ttzdata.noarch\t2023c-1.el9
1700000000\tpython3-software-properties-with-a-long-name.noarch\t2.1-2.el9
1700000001\tgpg-pubkey.(none)\t5a6340b3-6229229e
";

    fn scan() -> Vec<AvailableUpdate> {
        let installed = parse_installed(RPM_QA);
        let advisories = parse_updateinfo(UPDATEINFO_DNF4);
        parse_check_update(CHECK_UPDATE)
            .into_iter()
            .filter_map(|candidate| update(candidate, &installed, &advisories))
            .collect()
    }

    fn find<'a>(updates: &'a [AvailableUpdate], name: &str) -> &'a AvailableUpdate {
        updates.iter().find(|u| u.name == name).unwrap()
    }

    #[test]
    fn check_update_rows_are_read_including_wrapped_ones_but_not_obsoletes() {
        let candidates = parse_check_update(CHECK_UPDATE);
        let names: Vec<&str> = candidates.iter().map(|c| c.name_arch.as_str()).collect();
        assert_eq!(names.len(), 5);
        assert!(names.contains(&"python3-software-properties-with-a-long-name.noarch"));
        assert!(!names.contains(&"grub2-tools.x86_64"));
    }

    #[test]
    fn a_security_advisory_gives_classification_severity_and_id() {
        let updates = scan();
        let kernel = find(&updates, "kernel.x86_64");
        assert_eq!(kernel.classification, Classification::Security);
        assert_eq!(kernel.severity, Severity::Important);
        assert_eq!(kernel.advisory.as_deref(), Some("RLSA-2024:2264"));
        assert_eq!(
            kernel.installed, "5.14.0-427.13.1.el9_4",
            "the newest installed kernel"
        );
    }

    #[test]
    fn security_outranks_a_bugfix_advisory_for_the_same_package() {
        let updates = scan();
        let libs = find(&updates, "openssl-libs.x86_64");
        assert_eq!(libs.classification, Classification::Security);
        assert_eq!(libs.severity, Severity::Moderate);
        assert_eq!(libs.candidate, "1:3.0.7-27.el9_4");
    }

    #[test]
    fn enhancement_and_unadvised_updates_are_classified_as_such() {
        let updates = scan();
        assert_eq!(
            find(&updates, "tzdata.noarch").classification,
            Classification::Enhancement
        );
        let plain = find(
            &updates,
            "python3-software-properties-with-a-long-name.noarch",
        );
        assert_eq!(
            (plain.classification, plain.severity),
            (Classification::Other, Severity::Unspecified)
        );
        assert_eq!(plain.suite.as_deref(), Some("appstream"));
    }

    #[test]
    fn dnf5_advisory_lists_are_understood() {
        let advisories = parse_updateinfo(UPDATEINFO_DNF5);
        assert_eq!(advisories.len(), 2);
        assert_eq!(advisories[0].severity, Severity::Critical);
        assert_eq!(advisories[0].name_arch, "openssl.x86_64");
        assert_eq!(advisories[1].classification, Classification::Bugfix);
        assert_eq!(advisories[1].severity, Severity::Unspecified);
    }

    #[test]
    fn gpg_pubkeys_are_not_packages() {
        assert!(
            !parse_installed(RPM_QA)
                .keys()
                .any(|name| name.starts_with("gpg-pubkey"))
        );
    }

    #[test]
    fn a_requested_version_becomes_a_nevra() {
        let spec: PackageSpec = "openssl.x86_64=1:3.0.7-27.el9_4".parse().unwrap();
        assert_eq!(nevra(&spec), "openssl-1:3.0.7-27.el9_4.x86_64");
        let bare: PackageSpec = "tzdata=2024a-1.el9".parse().unwrap();
        assert_eq!(nevra(&bare), "tzdata-2024a-1.el9");
    }

    #[test]
    fn a_dry_run_that_removes_packages_is_detected() {
        let plan = "\
Dependencies resolved.
================================================================================
 Package           Arch      Version              Repository              Size
================================================================================
Upgrading:
 foo               x86_64    2.0-1.el9            appstream               10 k
Removing dependent packages:
 bar               x86_64    1.0-1.el9            @appstream              20 k

Transaction Summary
================================================================================
Upgrade  1 Package
Remove   1 Package
";
        assert_eq!(removals(plan), vec!["bar".to_string()]);
        assert!(removals(&plan.replace("Removing dependent packages:", "Installing:")).is_empty());
    }

    #[test]
    fn a_dry_run_lists_what_it_would_install_and_upgrade_wrapped_names_included() {
        let plan = "\
Dependencies resolved.
================================================================================
 Package                          Arch      Version        Repository      Size
================================================================================
Upgrading:
 pk-demo-tool                     noarch    1.1-1          pk-updates     6.2 k
 python3-software-properties-with-a-long-name
                                  noarch    2.1-3          appstream       10 k
Installing dependencies:
 openssl-libs                     x86_64    1:3.0.7-27.el9 baseos         2.1 M
Removing dependent packages:
 bar                              x86_64    1.0-1.el9      @appstream      20 k

Transaction Summary
================================================================================
Upgrade  2 Packages
";
        let planned: Vec<String> = planned_changes(plan)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            planned,
            [
                "pk-demo-tool=1.1-1",
                "python3-software-properties-with-a-long-name=2.1-3",
                "openssl-libs=1:3.0.7-27.el9"
            ]
        );
    }
}
