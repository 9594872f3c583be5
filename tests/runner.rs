//! The patch runner against a real OpenSSH server serving a Debian root, with real apt and
//! dpkg and a local repository of test packages (see `tests/guest/build-root.sh`).
//!
//! Updates available in the standard guest (all installed at 1.0, updates at 1.1):
//! pk-demo-lib and pk-demo-kernel from the security suite, pk-demo-tool, pk-demo-held (held),
//! pk-demo-broken and pk-demo-greedy from the regular suite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "in tests a panic is a failure"
)]

#[path = "support/guest/mod.rs"]
mod guest;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use guest::{Flavour, GuestOptions, TestGuest, run};
use patchkeeper::runner::{RebootPolicy, RunMode, RunnerArgs};
use patchkeeper::summary::{
    Classification, Mode, NotInstalledReason, Outcome, PackageManager, Phase, RunSummary, Severity,
    TERMINATION_MESSAGE_LIMIT,
};

fn update_names(summary: &RunSummary) -> Vec<(&str, Classification)> {
    let mut names: Vec<_> = summary
        .updates
        .iter()
        .map(|u| (u.name.as_str(), u.classification))
        .collect();
    names.sort();
    names
}

fn failure_text(summary: &RunSummary) -> String {
    summary
        .failure
        .as_ref()
        .map(|f| f.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn scan_reports_exactly_the_available_updates_with_their_classification() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(summary.mode, Mode::Scan);
    assert_eq!(summary.package_manager, Some(PackageManager::Apt));
    assert_eq!(summary.os.as_ref().map(|os| os.id.as_str()), Some("debian"));
    assert_eq!(
        update_names(&summary),
        vec![
            ("pk-demo-broken", Classification::Other),
            ("pk-demo-greedy", Classification::Other),
            ("pk-demo-held", Classification::Other),
            ("pk-demo-kernel", Classification::Security),
            ("pk-demo-lib", Classification::Security),
            ("pk-demo-tool", Classification::Other),
        ]
    );
    let lib = summary
        .updates
        .iter()
        .find(|u| u.name == "pk-demo-lib")
        .unwrap();
    assert_eq!(
        (lib.installed.as_str(), lib.candidate.as_str()),
        ("1.0", "1.1")
    );
    assert_eq!(lib.suite.as_deref(), Some("pk-stable-security"));
    assert_eq!(lib.severity, Severity::Unspecified);
    assert_eq!(
        (
            summary.counts.updates.security,
            summary.counts.updates.other
        ),
        (2, 4)
    );
    assert!(
        summary.counts.installed_packages > 100,
        "a whole Debian root is installed"
    );
    assert!(!summary.reboot_required);
}

#[tokio::test]
async fn a_scan_changes_nothing_in_the_guest() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert!(summary.installed.is_empty());
    assert_eq!(
        guest.installed_version("pk-demo-lib").as_deref(),
        Some("1.0")
    );
}

#[tokio::test]
async fn install_applies_only_the_approved_updates() {
    let guest = TestGuest::start();
    let args = guest.install_args(&["pk-demo-lib=1.1", "pk-demo-tool=1.1"]);
    let (summary, message) = run(args).await;
    write_schema_example("install", &message);

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(
        guest.installed_version("pk-demo-lib").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        guest.installed_version("pk-demo-tool").as_deref(),
        Some("1.1")
    );
    for rejected in [
        "pk-demo-kernel",
        "pk-demo-broken",
        "pk-demo-greedy",
        "pk-demo-held",
    ] {
        assert_eq!(
            guest.installed_version(rejected).as_deref(),
            Some("1.0"),
            "{rejected}"
        );
    }
    let installed: Vec<_> = summary
        .installed
        .iter()
        .map(|p| (p.name.as_str(), p.from.as_deref(), p.to.as_str()))
        .collect();
    assert_eq!(
        installed,
        vec![
            ("pk-demo-lib", Some("1.0"), "1.1"),
            ("pk-demo-newdep", None, "1.0"),
            ("pk-demo-tool", Some("1.0"), "1.1"),
        ],
        "the approved packages and the new dependency one of them needs"
    );
    assert_eq!(summary.counts.installed_this_run, 3);
    assert_eq!(summary.counts.failed, 0);
    assert_eq!(
        summary.counts.updates.total, 4,
        "the rejected updates are still available"
    );
}

#[tokio::test]
async fn an_update_needing_a_blocked_package_is_left_out_and_the_others_installed() {
    let guest = TestGuest::start();
    let mut args = guest.install_args(&["pk-demo-lib=1.1", "pk-demo-tool=1.1"]);
    args.blocked = vec!["pk-demo-new*".parse().unwrap()];
    let (summary, _) = run(args).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(
        guest.installed_version("pk-demo-lib").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        guest.installed_version("pk-demo-tool").as_deref(),
        Some("1.0")
    );
    assert_eq!(guest.installed_version("pk-demo-newdep"), None);
    let not_installed: Vec<_> = summary
        .not_installed
        .iter()
        .map(|n| (n.name.as_str(), n.version.as_str(), n.reason))
        .collect();
    assert_eq!(
        not_installed,
        vec![("pk-demo-tool", "1.1", NotInstalledReason::Blocked)]
    );
    assert_eq!(summary.counts.installed_this_run, 1);
}

#[tokio::test]
async fn a_block_on_another_version_of_the_dependency_lets_the_update_through() {
    let guest = TestGuest::start();
    let mut args = guest.install_args(&["pk-demo-tool=1.1"]);
    args.blocked = vec!["pk-demo-newdep=9.9".parse().unwrap()];
    let (summary, _) = run(args).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(
        guest.installed_version("pk-demo-tool").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        guest.installed_version("pk-demo-newdep").as_deref(),
        Some("1.0")
    );
}

#[tokio::test]
async fn a_held_package_stays_held_and_is_reported_not_installed() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.install_args(&["pk-demo-held=1.1", "pk-demo-lib=1.1"])).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(
        guest.installed_version("pk-demo-held").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        guest.installed_version("pk-demo-lib").as_deref(),
        Some("1.1")
    );
    assert_eq!(summary.not_installed.len(), 1);
    assert_eq!(summary.not_installed[0].name, "pk-demo-held");
    assert_eq!(summary.not_installed[0].reason, NotInstalledReason::Held);
    assert_eq!(summary.counts.failed, 1);
    let held = summary
        .updates
        .iter()
        .find(|u| u.name == "pk-demo-held")
        .unwrap();
    assert!(held.held, "the remaining update is marked as held");
}

#[tokio::test]
async fn a_package_asking_for_a_reboot_is_reported_and_not_rebooted_under_never() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.install_args(&["pk-demo-kernel=1.1"])).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert!(summary.reboot_required);
    assert!(!summary.rebooted);
    assert!(guest.guest_has("run/reboot-required"));
}

#[tokio::test]
async fn reboot_if_required_reboots_and_waits_for_a_new_boot_id() {
    let guest = TestGuest::start();
    let mut args = guest.install_args(&["pk-demo-kernel=1.1"]);
    args.reboot = RebootPolicy::IfRequired;
    let (summary, _) = run(args).await;

    assert_eq!(
        summary.outcome,
        Outcome::Succeeded,
        "{:?}\n{}",
        summary.failure,
        guest.sshd_log()
    );
    assert!(summary.rebooted);
    assert!(!summary.reboot_required, "the reboot cleared the request");
    assert!(summary.timings.reboot.is_some());
    assert!(guest.sshd_log().contains("rebooted, boot id"));
}

#[tokio::test]
async fn no_reboot_is_done_when_none_is_required() {
    let guest = TestGuest::start();
    let mut args = guest.install_args(&["pk-demo-lib=1.1"]);
    args.reboot = RebootPolicy::IfRequired;
    let (summary, _) = run(args).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert!(!summary.rebooted);
    assert_eq!(summary.timings.reboot, None);
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_host_and_fingerprint() {
    let guest = TestGuest::start();
    guest.pin_another_host_key();
    let (summary, _) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Failed);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Phase::SshReady);
    assert!(
        failure.message.contains("has changed"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains(&format!("127.0.0.1:{}", guest.port))
    );
    assert!(failure.message.contains("SHA256:"), "{}", failure.message);
    assert!(
        !guest.sshd_log().contains("Accepted publickey"),
        "no login happened"
    );
}

#[tokio::test]
async fn an_unknown_host_key_is_refused() {
    let guest = TestGuest::start();
    guest.forget_host_key();
    let (summary, _) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Failed);
    assert!(
        failure_text(&summary).contains("not in known_hosts"),
        "{}",
        failure_text(&summary)
    );
}

#[tokio::test]
async fn a_broken_repository_fails_the_scan_with_apts_error() {
    let guest = TestGuest::start_with(GuestOptions {
        broken_source: true,
        ..Default::default()
    });
    let (summary, message) = run(guest.args(RunMode::Scan)).await;
    write_schema_example("failed-scan", &message);

    assert_eq!(summary.outcome, Outcome::Failed);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Scan, "apt-get update")
    );
    assert!(
        failure
            .message
            .contains("E: Failed to fetch file:/srv/pk-missing"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_broken_package_fails_the_install_with_dpkgs_error() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.install_args(&["pk-demo-broken=1.1"])).await;

    assert_eq!(summary.outcome, Outcome::Failed);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Install, "apt-get install")
    );
    assert!(
        failure.message.contains("pk-demo-broken"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains("E: Sub-process /usr/bin/dpkg returned an error code")
    );
    assert_eq!(
        summary.not_installed.len(),
        1,
        "the package is not configured at 1.1"
    );
    assert_eq!(summary.not_installed[0].reason, NotInstalledReason::Failed);
}

#[tokio::test]
async fn an_install_that_would_remove_a_package_is_refused() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.install_args(&["pk-demo-greedy=1.1"])).await;

    assert_eq!(summary.outcome, Outcome::Failed);
    assert!(
        failure_text(&summary).contains("remove"),
        "{}",
        failure_text(&summary)
    );
    assert_eq!(
        guest.installed_version("pk-demo-tool").as_deref(),
        Some("1.0")
    );
    assert_eq!(
        guest.installed_version("pk-demo-greedy").as_deref(),
        Some("1.0")
    );
}

#[tokio::test]
async fn a_package_that_is_not_installed_is_not_installed_by_an_upgrade() {
    let guest = TestGuest::start();
    let (summary, _) = run(guest.install_args(&["pk-demo-newdep=1.0"])).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(guest.installed_version("pk-demo-newdep"), None);
    assert_eq!(
        summary.not_installed[0].reason,
        NotInstalledReason::NotPresent
    );
}

#[tokio::test]
async fn a_closed_port_times_out_in_the_connect_phase_within_the_timeout() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = unreachable_args(port, Duration::from_secs(3));
    let scratch = args.known_hosts.with_file_name("");
    let started = Instant::now();
    let (summary, _) = run(args).await;
    let _ = std::fs::remove_dir_all(scratch);

    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(summary.outcome, Outcome::TimedOut);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Phase::Connect);
    assert!(
        failure
            .awaiting
            .contains(&format!("tcp connection to 127.0.0.1:{port}"))
    );
    assert!(failure.awaiting.contains("refused"), "{}", failure.awaiting);
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out_in_the_ssh_ready_phase() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let args = unreachable_args(port, Duration::from_secs(3));
    let scratch = args.known_hosts.with_file_name("");
    let started = Instant::now();
    let (summary, _) = run(args).await;
    let _ = std::fs::remove_dir_all(scratch);
    drop(listener);

    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(summary.outcome, Outcome::TimedOut);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Phase::SshReady);
    assert!(
        failure.awaiting.contains("ssh handshake"),
        "{}",
        failure.awaiting
    );
}

#[tokio::test]
async fn thousands_of_updates_still_fit_in_the_termination_message() {
    let guest = TestGuest::start_with(GuestOptions {
        fake_updates: 3_000,
        ..Default::default()
    });
    let (summary, message) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert!(
        message.len() <= TERMINATION_MESSAGE_LIMIT,
        "{} bytes",
        message.len()
    );
    assert_eq!(summary.counts.updates.total, 3_006, "counts are never cut");
    assert_eq!(
        summary.updates.len() as u32 + summary.truncated.updates,
        3_006
    );
    assert!(summary.truncated.updates > 0);
    let kept_first: Vec<_> = summary
        .updates
        .iter()
        .take(2)
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(
        kept_first,
        vec!["pk-demo-kernel", "pk-demo-lib"],
        "security updates come first"
    );
}

fn dnf_guest() -> TestGuest {
    TestGuest::start_with(GuestOptions {
        flavour: Flavour::Dnf,
        ..Default::default()
    })
}

#[tokio::test]
async fn dnf_scan_classifies_updates_by_their_advisories() {
    let guest = dnf_guest();
    let (summary, _) = run(guest.args(RunMode::Scan)).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(summary.package_manager, Some(PackageManager::Dnf));
    let updates: Vec<_> = summary
        .updates
        .iter()
        .map(|u| {
            (
                u.name.as_str(),
                u.classification,
                u.severity,
                u.advisory.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        updates,
        vec![
            (
                "pk-demo-lib.noarch",
                Classification::Security,
                Severity::Important,
                Some("PKSA-2024:0001")
            ),
            (
                "pk-demo-plain.noarch",
                Classification::Other,
                Severity::Unspecified,
                None
            ),
            (
                "pk-demo-tool.noarch",
                Classification::Bugfix,
                Severity::Unspecified,
                Some("PKBA-2024:0002")
            ),
        ]
    );
    let lib = &summary.updates[0];
    assert_eq!(
        (lib.installed.as_str(), lib.candidate.as_str()),
        ("1.0-1", "1.1-1")
    );
    assert_eq!(lib.suite.as_deref(), Some("pk-updates"));
    assert_eq!(summary.counts.updates.important, 1);
    assert!(!summary.reboot_required);
}

#[tokio::test]
async fn dnf_install_applies_only_the_approved_versions() {
    let guest = dnf_guest();
    let (summary, _) = run(guest.install_args(&["pk-demo-lib.noarch=1.1-1"])).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(guest.rpm_version("pk-demo-lib").as_deref(), Some("1.1-1"));
    assert_eq!(guest.rpm_version("pk-demo-tool").as_deref(), Some("1.0-1"));
    let installed: Vec<_> = summary
        .installed
        .iter()
        .map(|p| (p.name.as_str(), p.from.as_deref(), p.to.as_str()))
        .collect();
    assert_eq!(
        installed,
        vec![("pk-demo-lib.noarch", Some("1.0-1"), "1.1-1")]
    );
    assert_eq!(
        summary.counts.updates.total, 2,
        "the others are still available"
    );
}

#[tokio::test]
async fn dnf_upgrades_a_dependency_an_approved_update_needs() {
    let guest = dnf_guest();
    let (summary, _) = run(guest.install_args(&["pk-demo-tool.noarch=1.1-1"])).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(guest.rpm_version("pk-demo-tool").as_deref(), Some("1.1-1"));
    assert_eq!(guest.rpm_version("pk-demo-plain").as_deref(), Some("1.1-1"));
}

#[tokio::test]
async fn dnf_leaves_out_an_update_needing_a_blocked_package() {
    let guest = dnf_guest();
    let mut args = guest.install_args(&["pk-demo-lib.noarch=1.1-1", "pk-demo-tool.noarch=1.1-1"]);
    args.blocked = vec!["pk-demo-plain".parse().unwrap()];
    let (summary, _) = run(args).await;

    assert_eq!(summary.outcome, Outcome::Succeeded, "{:?}", summary.failure);
    assert_eq!(guest.rpm_version("pk-demo-lib").as_deref(), Some("1.1-1"));
    assert_eq!(guest.rpm_version("pk-demo-tool").as_deref(), Some("1.0-1"));
    assert_eq!(guest.rpm_version("pk-demo-plain").as_deref(), Some("1.0-1"));
    let not_installed: Vec<_> = summary
        .not_installed
        .iter()
        .map(|n| (n.name.as_str(), n.reason))
        .collect();
    assert_eq!(
        not_installed,
        vec![("pk-demo-tool.noarch", NotInstalledReason::Blocked)]
    );
}

#[tokio::test]
async fn dnf_install_of_a_version_no_repository_has_fails_with_dnfs_error() {
    let guest = dnf_guest();
    let (summary, _) = run(guest.install_args(&["pk-demo-tool.noarch=9.9-1"])).await;

    assert_eq!(summary.outcome, Outcome::Failed);
    let failure = summary.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Phase::Install);
    assert!(
        failure.message.contains("pk-demo-tool-9.9-1.noarch"),
        "{}",
        failure.message
    );
    assert_eq!(guest.rpm_version("pk-demo-tool").as_deref(), Some("1.0-1"));
    assert_eq!(summary.not_installed[0].reason, NotInstalledReason::Failed);
}

#[test]
fn the_runner_subcommand_takes_its_settings_from_the_environment() {
    let guest = TestGuest::start();
    let args = guest.args(RunMode::Scan);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
        .arg("runner")
        .env("PATCHKEEPER_HOST", &args.host)
        .env("PATCHKEEPER_PORT", args.port.to_string())
        .env("PATCHKEEPER_PRIVATE_KEY", &args.private_key)
        .env("PATCHKEEPER_KNOWN_HOSTS", &args.known_hosts)
        .env("PATCHKEEPER_MODE", "scan")
        .env(
            "PATCHKEEPER_TERMINATION_MESSAGE_PATH",
            &args.termination_message_path,
        )
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let file = std::fs::read_to_string(&args.termination_message_path).unwrap();
    assert_eq!(
        stdout.trim(),
        file,
        "the summary goes to stdout and the termination message"
    );
    let key = std::fs::read_to_string(&args.private_key).unwrap();
    let secret_line = key.lines().nth(1).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains(secret_line) && !stdout.contains(secret_line),
        "no key material"
    );
}

fn unreachable_args(port: u16, connect_timeout: Duration) -> RunnerArgs {
    let guest_dir = std::env::temp_dir().join(format!("patchkeeper-unreachable-{port}"));
    std::fs::create_dir_all(&guest_dir).unwrap();
    let key = guest_dir.join("client_key");
    if !key.exists() {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(guest_dir.join("known_hosts"), "").unwrap();
    RunnerArgs {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        private_key: key,
        known_hosts: guest_dir.join("known_hosts"),
        mode: RunMode::Scan,
        packages: Vec::new(),
        blocked: Vec::new(),
        reboot: RebootPolicy::Never,
        connect_timeout,
        scan_timeout: Duration::from_secs(10),
        install_timeout: Duration::from_secs(10),
        reboot_timeout: Duration::from_secs(10),
        termination_message_path: guest_dir.join("termination-log"),
    }
}

/// Keeps a real summary as an example for `docs/result-schema.md`, in
/// `target/result-schema-examples/NAME.json`.
fn write_schema_example(name: &str, message: &str) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/result-schema-examples");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.json")), message);
}
