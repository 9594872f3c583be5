//! apt and dpkg: Debian, Ubuntu and their derivatives.
//!
//! Scan: `apt-get update`, the installed set from `dpkg-query`, each installed package's
//! candidate from `apt-cache policy`, and the suite, origin and label of the candidate's
//! repository from the package-file list of `apt-cache policy`. A candidate served by a
//! security suite (`*-security`) or a repository labelled as security is a security update;
//! apt gives no severity, so every update's severity is `Unspecified`.
//!
//! Install: exactly the requested `name=version` list, upgrades only, never removing a
//! package (`--no-remove`), keeping changed configuration files, with holds respected.
//! New dependencies of an upgraded package are installed (and reported); recommended
//! packages are not.
//!
//! A candidate served by both a security and a regular suite counts as security (Debian point
//! releases fold security fixes into stable).
//!
//! Limitation: the classification comes only from where a candidate is served: an update
//! published only in a regular suite is `Other` even when it fixes a vulnerability, since apt
//! metadata carries no advisories.

use std::collections::HashMap;

use super::guest::{Guest, GuestError, Shell, command_failed, quote};
use super::packages::{
    BlockedPackage, InstallReport, Installed, InstalledSet, Inventory, PackageSpec, changes,
    partition, screen, unmet,
};
use crate::summary::{AvailableUpdate, Classification, Severity};

/// Environment for apt commands: never ask, never page, restart services without asking.
const APT_ENV: &str =
    "DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none";

/// Wait this long for another apt or dpkg (e.g. unattended-upgrades) to release its lock.
const LOCK_WAIT: &str = "-o DPkg::Lock::Timeout=300";

const NAMES_COMMAND: &str = r"dpkg-query -W -f '${binary:Package}\n'";

const INSTALLED_COMMAND: &str =
    r"dpkg-query -W -f '${binary:Package}\t${Version}\t${db:Status-Abbrev}\n'";

/// Refreshes the package lists; any failed source fails the scan rather than leaving it
/// stale without a word.
pub async fn refresh<S: Shell>(guest: &Guest<'_, S>) -> Result<(), GuestError> {
    let command = format!("{APT_ENV} apt-get update -q -o APT::Update::Error-Mode=any {LOCK_WAIT}");
    guest.run_ok("apt-get update", &command).await?;
    Ok(())
}

/// Lists installed packages and their available updates, from the lists as they are.
pub async fn inventory<S: Shell>(guest: &Guest<'_, S>) -> Result<Inventory, GuestError> {
    let installed = installed(guest).await?;
    if installed.is_empty() {
        return Err(GuestError::Unreadable {
            label: "dpkg-query".to_string(),
            detail: "no installed packages listed".to_string(),
        });
    }
    // Names go through xargs: thousands of them overflow a single command line.
    let command = format!("{NAMES_COMMAND} | xargs -r apt-cache policy");
    let policies = parse_policies(&guest.run_ok("apt-cache policy", &command).await?.stdout);
    let files = guest.run_ok("apt-cache policy", "apt-cache policy").await?;
    let releases = parse_package_files(&files.stdout);
    let updates = updates(&installed, &policies, &releases);
    Ok(Inventory { installed, updates })
}

/// Installs exactly `requested`, refreshing the lists first so the versions are found,
/// and leaving out every requested package that would touch a `blocked` one.
pub async fn install<S: Shell>(
    guest: &Guest<'_, S>,
    requested: &[PackageSpec],
    blocked: &[BlockedPackage],
) -> Result<InstallReport, GuestError> {
    refresh(guest).await?;
    let before = installed(guest).await?;
    let (wanted, mut not_installed) = partition(requested, &before);
    let (wanted, refused) = screen(wanted, blocked, async |specs: &[PackageSpec]| {
        simulate(guest, specs).await
    })
    .await?;
    not_installed.extend(refused);

    let mut failure = None;
    if !wanted.is_empty() {
        let output = guest
            .run("apt-get install", &install_command(&wanted))
            .await?;
        if !output.success() {
            failure = Some(command_failed("apt-get install", &output));
        }
    }

    let after = installed(guest).await?;
    not_installed.extend(unmet(&wanted, &after));
    Ok(InstallReport {
        installed: changes(&before, &after),
        not_installed,
        failure,
    })
}

/// Whether the guest asks for a reboot, and which packages asked for it.
pub async fn reboot_required<S: Shell>(
    guest: &Guest<'_, S>,
) -> Result<(bool, Vec<String>), GuestError> {
    let command = "if [ -e /var/run/reboot-required ]; then echo required; \
                   cat /var/run/reboot-required.pkgs 2>/dev/null; fi";
    let output = guest
        .run_unprivileged("reboot-required check", command)
        .await?;
    let mut lines = output.stdout.lines();
    let required = lines.next() == Some("required");
    let mut packages: Vec<String> = lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    packages.dedup();
    Ok((required, packages))
}

async fn installed<S: Shell>(guest: &Guest<'_, S>) -> Result<InstalledSet, GuestError> {
    let output = guest.run_ok("dpkg-query", INSTALLED_COMMAND).await?;
    Ok(parse_installed(&output.stdout))
}

fn install_command(wanted: &[PackageSpec]) -> String {
    format!(
        "{APT_ENV} apt-get install -q -y {INSTALL_OPTIONS} {LOCK_WAIT} \
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {}",
        targets(wanted)
    )
}

const INSTALL_OPTIONS: &str = "--only-upgrade --no-remove --no-install-recommends";

fn targets(wanted: &[PackageSpec]) -> String {
    let targets: Vec<String> = wanted.iter().map(|spec| quote(&spec.to_string())).collect();
    targets.join(" ")
}

/// What installing `wanted` would install or upgrade, from apt's simulation (which needs no
/// lock and changes nothing); `None` when apt refuses the transaction.
async fn simulate<S: Shell>(
    guest: &Guest<'_, S>,
    wanted: &[PackageSpec],
) -> Result<Option<Vec<PackageSpec>>, GuestError> {
    let command = format!(
        "{APT_ENV} apt-get install -s -q {INSTALL_OPTIONS} {}",
        targets(wanted)
    );
    let output = guest.run("apt-get install (simulated)", &command).await?;
    Ok(output.success().then(|| parse_simulation(&output.stdout)))
}

/// Parses the `Inst name [old] (new suite [arch])` lines of a simulated install.
fn parse_simulation(text: &str) -> Vec<PackageSpec> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some(PackageSpec {
                name: name.to_string(),
                version: version.to_string(),
            })
        })
        .collect()
}

/// Parses `dpkg-query` lines `name\tversion\tstatus`, keeping installed packages.
fn parse_installed(text: &str) -> InstalledSet {
    let mut set = InstalledSet::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(version), Some(status)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mut flags = status.chars();
        let (want, state) = (flags.next(), flags.next());
        // `n` is not installed, `c` only configuration files left behind.
        if matches!(state, None | Some('n') | Some('c')) || version.is_empty() {
            continue;
        }
        let held = want == Some('h');
        // Anything but `i` is a package dpkg left half-way, e.g. after a failed postinst.
        let broken = state != Some('i');
        set.insert(
            name.to_string(),
            Installed {
                version: version.to_string(),
                held,
                broken,
            },
        );
    }
    set
}

/// One package's entry in `apt-cache policy NAME...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Policy {
    name: String,
    installed: Option<String>,
    candidate: Option<String>,
    /// The package files (`URI suite/component arch Packages`) offering the candidate.
    candidate_sources: Vec<String>,
}

/// Parses `apt-cache policy NAME...`. Version lines are indented by five, the package files
/// under each version by eight; a line at column zero starts the next package.
fn parse_policies(text: &str) -> Vec<Policy> {
    let mut policies: Vec<Policy> = Vec::new();
    let mut in_candidate = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 && trimmed.ends_with(':') {
            let name = trimmed.trim_end_matches(':').to_string();
            policies.push(Policy {
                name,
                ..Policy::default()
            });
            in_candidate = false;
            continue;
        }
        let Some(policy) = policies.last_mut() else {
            continue;
        };
        if let Some(version) = trimmed.strip_prefix("Installed:") {
            policy.installed = known_version(version);
        } else if let Some(version) = trimmed.strip_prefix("Candidate:") {
            policy.candidate = known_version(version);
        } else if indent >= 8 && in_candidate {
            if let Some((_, source)) = trimmed.split_once(' ') {
                policy.candidate_sources.push(source.trim().to_string());
            }
        } else if indent < 8 && trimmed != "Version table:" {
            let version = trimmed.trim_start_matches("***").split_whitespace().next();
            in_candidate = version.is_some() && version == policy.candidate.as_deref();
        }
    }
    policies
}

fn known_version(text: &str) -> Option<String> {
    let version = text.trim();
    (!version.is_empty() && version != "(none)").then(|| version.to_string())
}

/// A repository's release fields, from the package-file list of `apt-cache policy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Release {
    /// `a=`: the suite, e.g. `bookworm-security` or `stable-security`.
    archive: String,
    /// `n=`: the codename, e.g. `bookworm-security`.
    codename: String,
    /// `l=`: the label, e.g. `Debian-Security`.
    label: String,
    /// `o=`: the origin, e.g. `Debian`.
    origin: String,
}

impl Release {
    fn is_security(&self, source: &str) -> bool {
        let suite_in_source = source.split_whitespace().nth(1).unwrap_or_default();
        let suite_in_source = suite_in_source.split('/').next().unwrap_or_default();
        [
            self.archive.as_str(),
            self.codename.as_str(),
            suite_in_source,
        ]
        .iter()
        .any(|suite| suite.ends_with("-security"))
            || self.label.to_ascii_lowercase().contains("security")
    }
}

/// Parses the `Package files:` section of a bare `apt-cache policy`: a package-file line
/// (`PRIORITY URI suite/component arch Packages`) followed by its `release` line.
fn parse_package_files(text: &str) -> HashMap<String, Release> {
    let mut releases = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed == "Pinned packages:" {
            break;
        }
        if let Some(fields) = trimmed.strip_prefix("release ") {
            if let Some(source) = current.take() {
                releases.insert(source, parse_release_fields(fields));
            }
        } else if let Some((priority, source)) = trimmed.split_once(' ')
            && priority.parse::<i32>().is_ok()
        {
            current = Some(source.trim().to_string());
        }
    }
    releases
}

fn parse_release_fields(fields: &str) -> Release {
    let mut release = Release::default();
    for field in fields.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let slot = match key.trim() {
            "a" => &mut release.archive,
            "n" => &mut release.codename,
            "l" => &mut release.label,
            "o" => &mut release.origin,
            _ => continue,
        };
        *slot = value.trim().to_string();
    }
    release
}

/// Installed packages whose candidate differs from the installed version.
fn updates(
    installed: &InstalledSet,
    policies: &[Policy],
    releases: &HashMap<String, Release>,
) -> Vec<AvailableUpdate> {
    policies
        .iter()
        .filter_map(|policy| {
            let package = installed.get(&policy.name)?;
            let candidate = policy.candidate.as_ref()?;
            (*candidate != package.version).then(|| update(policy, package, candidate, releases))
        })
        .collect()
}

fn update(
    policy: &Policy,
    package: &Installed,
    candidate: &str,
    releases: &HashMap<String, Release>,
) -> AvailableUpdate {
    let offered: Vec<(&String, &Release)> = policy
        .candidate_sources
        .iter()
        .filter_map(|source| releases.get(source).map(|release| (source, release)))
        .collect();
    let security = offered
        .iter()
        .find(|(source, release)| release.is_security(source));
    let shown = security.or(offered.first()).map(|(_, release)| *release);
    let nonempty = |text: &str| (!text.is_empty()).then(|| text.to_string());
    AvailableUpdate {
        name: policy.name.clone(),
        installed: package.version.clone(),
        candidate: candidate.to_string(),
        classification: if security.is_some() {
            Classification::Security
        } else {
            Classification::Other
        },
        severity: Severity::Unspecified,
        suite: shown.and_then(|r| nonempty(&r.archive).or_else(|| nonempty(&r.codename))),
        origin: shown.and_then(|r| nonempty(&r.origin).or_else(|| nonempty(&r.label))),
        advisory: None,
        held: package.held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Debian 12 guest with the Debian mirror and a security mirror.
    const POLICIES: &str = "\
openssl:
  Installed: 3.0.11-1~deb12u2
  Candidate: 3.0.15-1~deb12u1
  Version table:
     3.0.15-1~deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     3.0.14-1~deb12u2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 3.0.11-1~deb12u2 100
        100 /var/lib/dpkg/status
tzdata:
  Installed: 2024a-0+deb12u1
  Candidate: 2025b-0+deb12u1
  Version table:
     2025b-0+deb12u1 500
        500 http://deb.debian.org/debian bookworm-updates/main amd64 Packages
 *** 2024a-0+deb12u1 100
        100 /var/lib/dpkg/status
bash:
  Installed: 5.2.15-2+b7
  Candidate: 5.2.15-2+b7
  Version table:
 *** 5.2.15-2+b7 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
";

    const PACKAGE_FILES: &str = "\
Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     release v=12,o=Debian,a=stable-security,n=bookworm-security,l=Debian-Security,c=main,b=amd64
     origin deb.debian.org
 500 http://deb.debian.org/debian bookworm-updates/main amd64 Packages
     release v=12-updates,o=Debian,a=stable-updates,n=bookworm-updates,l=Debian,c=main,b=amd64
     origin deb.debian.org
 500 http://deb.debian.org/debian bookworm/main amd64 Packages
     release v=12.11,o=Debian,a=stable,n=bookworm,l=Debian,c=main,b=amd64
     origin deb.debian.org
Pinned packages:
";

    const DPKG_QUERY: &str = "\
openssl\t3.0.11-1~deb12u2\tii \n\
tzdata\t2024a-0+deb12u1\thi \n\
bash\t5.2.15-2+b7\tii \n\
oldkernel\t6.1.0-1\trc \n\
halfdone\t2.0\tiF \n";

    fn scan() -> Vec<AvailableUpdate> {
        let installed = parse_installed(DPKG_QUERY);
        updates(
            &installed,
            &parse_policies(POLICIES),
            &parse_package_files(PACKAGE_FILES),
        )
    }

    #[test]
    fn dpkg_query_keeps_installed_packages_and_marks_holds() {
        let installed = parse_installed(DPKG_QUERY);
        assert_eq!(installed.len(), 4);
        assert!(installed["tzdata"].held);
        assert!(installed["halfdone"].broken);
        assert!(!installed["bash"].broken);
        assert!(!installed.contains_key("oldkernel"));
    }

    #[test]
    fn a_candidate_from_a_security_suite_is_a_security_update() {
        let updates = scan();
        let openssl = updates.iter().find(|u| u.name == "openssl").unwrap();
        assert_eq!(openssl.classification, Classification::Security);
        assert_eq!(openssl.candidate, "3.0.15-1~deb12u1");
        assert_eq!(openssl.suite.as_deref(), Some("stable-security"));
        assert_eq!(openssl.origin.as_deref(), Some("Debian"));
        assert_eq!(openssl.severity, Severity::Unspecified);
    }

    #[test]
    fn a_candidate_from_an_updates_suite_is_other() {
        let updates = scan();
        let tzdata = updates.iter().find(|u| u.name == "tzdata").unwrap();
        assert_eq!(tzdata.classification, Classification::Other);
        assert_eq!(tzdata.suite.as_deref(), Some("stable-updates"));
        assert!(tzdata.held);
    }

    #[test]
    fn a_package_at_its_candidate_is_no_update() {
        assert!(scan().iter().all(|u| u.name != "bash"));
        assert_eq!(scan().len(), 2);
    }

    #[test]
    fn an_ubuntu_security_pocket_is_recognised_by_its_suite() {
        let release = parse_release_fields("v=22.04,o=Ubuntu,a=jammy-security,n=jammy,l=Ubuntu");
        assert!(
            release.is_security(
                "http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages"
            )
        );
        let updates = parse_release_fields("v=22.04,o=Ubuntu,a=jammy-updates,n=jammy,l=Ubuntu");
        assert!(
            !updates
                .is_security("http://archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages")
        );
    }

    #[test]
    fn a_simulation_lists_upgrades_and_new_packages() {
        let text = "\
NOTE: This is only a simulation!
Reading package lists...
Inst pk-demo-newdep (1.0 patchkeeper tests:pk-stable [all])
Inst pk-demo-tool [1.0] (1.1 patchkeeper tests:pk-stable [all])
Inst libc6:i386 [2.36-9+deb12u8] (2.36-9+deb12u9 Debian-Security:12/stable-security [i386])
Conf pk-demo-newdep (1.0 patchkeeper tests:pk-stable [all])
";
        let planned: Vec<String> = parse_simulation(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            planned,
            [
                "pk-demo-newdep=1.0",
                "pk-demo-tool=1.1",
                "libc6:i386=2.36-9+deb12u9"
            ]
        );
    }

    #[test]
    fn the_install_command_upgrades_only_and_never_removes() {
        let command = install_command(&["a=1.1".parse().unwrap()]);
        assert!(command.contains("--only-upgrade"));
        assert!(command.contains("--no-remove"));
        assert!(command.contains("--force-confold"));
        assert!(command.ends_with("'a=1.1'"));
    }
}
