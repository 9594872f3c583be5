//! The patchkeeper API as users meet it: samples that apply and read back, manifests the API
//! server refuses with a clear message, documentation in `kubectl explain`, and columns in
//! `kubectl get`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use kube::api::{Api, Patch, PatchParams};
use patchkeeper::api::{MaintenanceWindow, ManagedVM, PatchBaseline, PatchException};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{TestNamespace, testbed};

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn yaml_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_path(folder))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn read_yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Applies a file with `kubectl apply --server-side` and returns kubectl's result.
fn kubectl_apply(namespace: &str, path: &Path) -> std::process::Output {
    let path = path.to_str().unwrap();
    testbed().run(
        "kubectl",
        &["apply", "--server-side", "-n", namespace, "-f", path],
    )
}

/// True when every field of `expected` is in `actual` with the same value.
fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => expected
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|other| is_subset(value, other))),
        (Value::Array(expected), Value::Array(actual)) => {
            expected.len() == actual.len()
                && expected.iter().zip(actual).all(|(e, a)| is_subset(e, a))
        }
        _ => expected == actual,
    }
}

fn read_back<K: DeserializeOwned>(namespace: &str, kind: &str, name: &str) -> (Value, K) {
    let json = testbed().kubectl(&["get", kind, name, "-n", namespace, "-o", "json"]);
    let value: Value = serde_json::from_str(&json).unwrap();
    let typed = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{kind}/{name} does not read into the Rust type: {e}"));
    (value, typed)
}

#[tokio::test]
async fn every_sample_applies_and_reads_back_unchanged() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-samples").await;
    let samples = yaml_files("samples");
    assert!(
        samples.len() >= 5,
        "samples/ holds {} manifests",
        samples.len()
    );

    for sample in samples {
        let output = kubectl_apply(&ns.name, &sample);
        assert!(
            output.status.success(),
            "{}: {}",
            sample.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = read_yaml(&sample);
        let kind = expected["kind"].as_str().unwrap();
        let name = expected["metadata"]["name"].as_str().unwrap();
        let actual = match kind {
            "PatchBaseline" => read_back::<PatchBaseline>(&ns.name, kind, name).0,
            "MaintenanceWindow" => read_back::<MaintenanceWindow>(&ns.name, kind, name).0,
            "PatchException" => read_back::<PatchException>(&ns.name, kind, name).0,
            other => panic!("unexpected kind {other} in {}", sample.display()),
        };
        assert!(
            is_subset(&expected["spec"], &actual["spec"]),
            "{}: read back {}",
            sample.display(),
            actual["spec"]
        );
    }
}

#[tokio::test]
async fn defaults_are_filled_in_by_the_api_server() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-defaults").await;
    let window = json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": "minimal"},
        "spec": {"schedule": "@weekly", "duration": "2h", "selector": {},
                 "baselineRef": {"name": "b"}, "executor": {"sshSecretRef": {"name": "s"}}}
    });
    let api: Api<MaintenanceWindow> = Api::namespaced(testbed().client().await, &ns.name);
    let applied = api
        .patch(
            "minimal",
            &PatchParams::apply("api-test"),
            &Patch::Apply(window),
        )
        .await
        .unwrap();

    let spec = applied.spec;
    assert_eq!(spec.time_zone, "UTC");
    assert!(spec.dormant.wake);
    assert_eq!(spec.dormant.max_awake, 2);
    assert_eq!(spec.executor.ssh_user, "root");
    assert_eq!(spec.executor.timeouts.install.as_str(), "30m");
}

#[tokio::test]
async fn every_invalid_manifest_is_refused_with_a_message_naming_the_problem() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-invalid").await;
    let files = yaml_files("tests/invalid");
    assert!(
        files.len() >= 40,
        "tests/invalid holds only {} manifests",
        files.len()
    );

    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let wrong = text.lines().find_map(|l| l.strip_prefix("# Wrong: "));
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: "));
        let (Some(_), Some(expect)) = (wrong, expect) else {
            problems.push(format!(
                "{}: needs '# Wrong:' and '# expect:' lines",
                file.display()
            ));
            continue;
        };
        let output = kubectl_apply(&ns.name, file);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            problems.push(format!("{}: accepted", file.display()));
        } else if !stderr.contains(expect) {
            problems.push(format!(
                "{}: refused without {expect:?}: {stderr}",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn mistakes_only_the_operator_can_catch_pass_the_api_server() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-operator-checks").await;
    for file in yaml_files("tests/invalid-for-operator") {
        let output = kubectl_apply(&ns.name, &file);
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn a_managed_vm_cannot_be_moved_to_another_virtual_machine() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-immutable").await;
    let api: Api<ManagedVM> = Api::namespaced(testbed().client().await, &ns.name);
    let apply = |vm: &str| {
        let body = json!({"apiVersion": "patchkeeper.io/v1alpha1", "kind": "ManagedVM",
                          "metadata": {"name": "web-1"}, "spec": {"virtualMachineName": vm}});
        let api = api.clone();
        async move {
            api.patch(
                "web-1",
                &PatchParams::apply("api-test"),
                &Patch::Apply(body),
            )
            .await
        }
    };
    apply("web-1").await.unwrap();

    let refused = apply("web-2").await.unwrap_err().to_string();
    assert!(
        refused.contains("virtualMachineName is immutable"),
        "{refused}"
    );
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_documentation() {
    testbed().install_crds();
    let spec = testbed().kubectl(&["explain", "maintenancewindow.spec"]);
    assert!(
        spec.contains("When the window opens, in cron syntax as a Kubernetes CronJob"),
        "{spec}"
    );
    assert!(spec.contains("second Tuesday"), "{spec}");
    let cutoff = testbed().kubectl(&["explain", "maintenancewindow.spec.cutoff"]);
    assert!(
        cutoff.contains("No VM starts patching this close to the end of the window"),
        "{cutoff}"
    );
    let approve = testbed().kubectl(&["explain", "patchbaseline.spec.approval.approveAfter"]);
    assert!(approve.contains("first saw the update"), "{approve}");
}

#[tokio::test]
async fn kubectl_get_patchkeeper_lists_every_kind_with_its_columns() {
    testbed().install_crds();
    let ns = TestNamespace::create("api-category").await;
    for sample in yaml_files("samples") {
        assert!(kubectl_apply(&ns.name, &sample).status.success());
    }
    let vm = json!({"apiVersion": "patchkeeper.io/v1alpha1", "kind": "ManagedVM",
                    "metadata": {"name": "web-1"}, "spec": {"virtualMachineName": "web-1"}});
    let api: Api<ManagedVM> = Api::namespaced(testbed().client().await, &ns.name);
    api.patch("web-1", &PatchParams::apply("api-test"), &Patch::Apply(vm))
        .await
        .unwrap();

    let table = testbed().kubectl(&["get", "patchkeeper", "-n", &ns.name]);
    for expected in [
        "patchbaseline.patchkeeper.io/production-security",
        "maintenancewindow.patchkeeper.io/production-patch-tuesday",
        "patchexception.patchkeeper.io/legacy-erp-migration",
        "managedvm.patchkeeper.io/web-1",
        "SCHEDULE",
        "TIME ZONE",
        "NEXT START",
        "LAST RESULT",
        "POWER",
        "COMPLIANCE",
        "CRITICAL",
        "LAST PATCHED",
        "VERDICT",
        "OWNER",
        "EXPIRES",
    ] {
        assert!(table.contains(expected), "no {expected:?} in:\n{table}");
    }
    let wide = testbed().kubectl(&["get", "managedvms", "-n", &ns.name, "-o", "wide"]);
    assert!(
        wide.contains("FAILURES") && wide.contains("REASONS"),
        "{wide}"
    );
}
