//! `patchkeeper report` against the real API server: the binary reads the objects of a
//! namespace and reports them as text for people and as JSON for pipelines, and says
//! plainly when it cannot read the cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use patchkeeper::api::{ManagedVM, PatchException};
use serde_json::{Value, json};
use support::{TestNamespace, testbed};

const MANAGER: &str = "report-test";

/// Runs `patchkeeper report` with these arguments against the cluster of `kubeconfig`.
fn run_report(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
        .arg("report")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run the patchkeeper binary")
}

/// The report's standard output; panics with its standard error when it failed.
fn report_of(args: &[&str]) -> String {
    let output = run_report(&testbed().kubeconfig(), args);
    assert!(
        output.status.success(),
        "patchkeeper report {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// An instant this many days from now (negative: ago), to the second.
fn days_from_now(days: i64) -> String {
    let instant = Timestamp::now() + SignedDuration::from_hours(24 * days);
    instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Creates a ManagedVM as the operator does, then writes `status` through the status
/// subresource.
async fn managed_vm(api: &Api<ManagedVM>, name: &str, labels: Value, status: Value) {
    let body = json!({
        "apiVersion": "patchkeeper.io/v1alpha1",
        "kind": "ManagedVM",
        "metadata": {"name": name, "labels": labels},
        "spec": {"virtualMachineName": name},
    });
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(body))
        .await
        .unwrap();
    let status = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn covered() -> Value {
    json!({"window": "nightly", "baseline": "standard"})
}

fn with(mut base: Value, extra: Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

/// Four VMs: one compliant and kept, one stale and flagged for retirement with a critical
/// update missing for a month, one no window covers, and one in window conflict.
async fn create_fleet(namespace: &str) {
    let api: Api<ManagedVM> = Api::namespaced(testbed().client().await, namespace);
    let compliant = json!({"compliance": {"state": "Compliant"}, "verdict": {"decision": "Keep"}});
    managed_vm(&api, "web", json!({}), with(covered(), compliant)).await;
    managed_vm(
        &api,
        "old",
        json!({"patchkeeper.io/verdict": "retire"}),
        with(covered(), flagged()),
    )
    .await;
    managed_vm(&api, "loose", json!({}), json!({})).await;
    managed_vm(
        &api,
        "torn",
        json!({}),
        json!({"conditions": [window_conflict()]}),
    )
    .await;
}

fn flagged() -> Value {
    json!({
        "compliance": {
            "state": "Stale",
            "pendingUpdates": [{
                "name": "openssl",
                "version": "3.0.15-1",
                "classification": "Security",
                "severity": "Critical",
                "firstSeen": days_from_now(-30),
            }],
        },
        "verdict": {
            "decision": "Retire",
            "reasons": [{"reason": "Dormant", "message": "powered off for 120 days"}],
            "since": days_from_now(-2),
        },
    })
}

fn window_conflict() -> Value {
    json!({
        "type": "Stalled",
        "status": "True",
        "reason": "WindowConflict",
        "message": "windows nightly, weekly select this VM with different baselines",
        "lastTransitionTime": days_from_now(-1),
    })
}

/// An exception for `old` that runs out in three days.
async fn create_exception(namespace: &str) {
    let api: Api<PatchException> = Api::namespaced(testbed().client().await, namespace);
    let body = json!({
        "apiVersion": "patchkeeper.io/v1alpha1",
        "kind": "PatchException",
        "metadata": {"name": "old-kernel"},
        "spec": {
            "owner": "legacy-team@example.com",
            "reason": "the vendor certifies only this kernel",
            "expires": days_from_now(3),
            "vmNames": ["old"],
        },
    });
    let params = PatchParams::apply(MANAGER);
    api.patch("old-kernel", &params, &Patch::Apply(body))
        .await
        .unwrap();
    let status = json!({"status": {"state": "Active", "coveredCount": 1}});
    api.patch_status("old-kernel", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_text_report_of_a_namespace_sums_up_and_lists_each_finding() {
    testbed().install_crds();
    let ns = TestNamespace::create("report-text").await;
    create_fleet(&ns.name).await;
    create_exception(&ns.name).await;

    let text = report_of(&["--namespace", &ns.name]);

    assert_eq!(
        text.lines().next(),
        Some(
            "4 VMs in 1 namespace: 1 compliant, 0 non-compliant, 1 stale, 2 unknown; \
             1 flagged for retirement"
        ),
        "{text}"
    );
    let line_with = |needle: &str| {
        let found = text.lines().find(|line| line.contains(needle));
        found.unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    assert!(line_with(" old ").contains("Dormant  powered off for 120 days"));
    assert!(line_with("openssl").contains("30d"));
    assert!(line_with("old-kernel").contains("legacy-team@example.com"));
    assert!(text.contains("VMs no window covers, never patched (1)\n"));
    assert!(line_with(" torn ").contains("windows nightly, weekly"));
}

#[tokio::test]
async fn the_json_report_gives_pipelines_every_section() {
    testbed().install_crds();
    let ns = TestNamespace::create("report-json").await;
    create_fleet(&ns.name).await;
    create_exception(&ns.name).await;

    let json = report_of(&["--namespace", &ns.name, "-o", "json"]);
    let report: Value = serde_json::from_str(&json).unwrap();

    assert_eq!(report["namespaces"], json!([ns.name]));
    assert_eq!(report["totals"]["vms"], 4);
    assert_eq!(report["totals"]["verdict"]["retire"], 1);
    assert_eq!(report["retirementCandidates"][0]["vm"], "old");
    assert_eq!(
        report["retirementCandidates"][0]["reasons"][0]["reason"],
        "Dormant"
    );
    assert_eq!(report["criticalUpdates"]["oldest"][0]["package"], "openssl");
    assert_eq!(
        report["exceptions"]["expiringSoon"][0]["name"],
        "old-kernel"
    );
    assert_eq!(report["exceptions"]["expiringSoon"][0]["coveredCount"], 1);
    assert_eq!(
        report["coverage"]["uncovered"],
        json!([{"namespace": ns.name, "vm": "loose"}])
    );
    assert_eq!(report["coverage"]["conflicts"][0]["vm"], "torn");
}

#[tokio::test]
async fn a_namespace_report_leaves_other_namespaces_out() {
    testbed().install_crds();
    let mine = TestNamespace::create("report-mine").await;
    let other = TestNamespace::create("report-other").await;
    create_fleet(&other.name).await;

    let json = report_of(&["--namespace", &mine.name, "-o", "json"]);
    let report: Value = serde_json::from_str(&json).unwrap();

    assert_eq!(report["totals"]["vms"], 0);
    let text = report_of(&["--namespace", &mine.name]);
    assert!(text.starts_with("No ManagedVMs found"), "{text}");
}

#[tokio::test]
async fn an_exception_beyond_the_horizon_is_not_listed() {
    testbed().install_crds();
    let ns = TestNamespace::create("report-horizon").await;
    create_exception(&ns.name).await;

    let json = report_of(&["-n", &ns.name, "--expiring-within", "48h", "-o", "json"]);
    let report: Value = serde_json::from_str(&json).unwrap();

    assert_eq!(report["exceptions"]["expiringWithin"], "48h");
    assert_eq!(report["exceptions"]["expiringSoon"], json!([]));
}

#[tokio::test]
async fn a_user_who_may_not_list_the_kinds_is_told_which_permission_is_missing() {
    testbed().install_crds();

    let output = run_report(&testbed().user_kubeconfig(), &["-A"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not allowed to list managedvms.patchkeeper.io"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_cluster_is_reported_naming_kubeconfig() {
    let dir = std::env::temp_dir().join(format!("report-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, UNREACHABLE_KUBECONFIG).unwrap();

    let output = run_report(&kubeconfig, &[]);
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("patchkeeper report: cannot reach"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("KUBECONFIG={}", kubeconfig.display())),
        "{stderr}"
    );
}

/// A kubeconfig whose API server listens nowhere: port 1 on loopback refuses connections.
const UNREACHABLE_KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: nobody
  user:
    token: not-a-token
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: nobody
current-context: nowhere
";

/// Runs `patchkeeper windows` with these arguments and this standard input.
fn run_windows(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
        .arg("windows")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the patchkeeper binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn windows_shows_the_next_openings_of_what_kubectl_reads_from_the_cluster() {
    testbed().install_crds();
    let ns = TestNamespace::create("windows-cli").await;
    for sample in [
        "samples/window-dev-nightly.yaml",
        "samples/window-production-patch-tuesday.yaml",
    ] {
        testbed().kubectl(&["apply", "--server-side", "-n", &ns.name, "-f", sample]);
    }
    let listed = testbed().kubectl(&["get", "maintenancewindows", "-n", &ns.name, "-o", "yaml"]);

    let output = run_windows(
        &["-f", "-", "--count", "2", "--after", "2026-12-01T00:00:00Z"],
        &listed,
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(&format!("{}/dev-nightly", ns.name)), "{text}");
    assert!(text.contains("Tue 2026-12-08 22:00 EST -05:00"), "{text}");
    assert!(text.contains("Tue 2027-01-12 22:00 EST -05:00"), "{text}");
    assert!(text.contains("Tue 2026-12-01 02:00 CET +01:00"), "{text}");
}

#[test]
fn windows_fails_naming_the_field_of_a_timing_the_operator_would_refuse() {
    let output = run_windows(
        &[
            "-f",
            "tests/invalid-for-operator/window-unknown-time-zone.yaml",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("timeZone: unknown time zone \"Europe/Atlantis\""),
        "{stderr}"
    );
}
