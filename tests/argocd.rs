//! GitOps health: the Argo CD health checks in `charts/patchkeeper/argocd/` run for real in
//! a Lua 5.1 interpreter (the dialect of Argo CD's gopher-lua) against objects the operator
//! wrote on the real control plane, and `kubectl wait --for=condition=Ready` (kstatus, as
//! Flux reads it) sees a usable window become Ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use patchkeeper::operator::conditions::Standing;
use serde_json::{Value, json};
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::doubles::scenario::{BOOT_SECONDS, FAIL, PATCH_SECONDS, UPDATES};
use support::kubevirt::{create_vm, install_kubevirt_crds, labelled, virtual_machine};
use support::{TestNamespace, testbed};

const HEALTH_CHECKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/patchkeeper/argocd");

/// Five seconds before the test windows open.
const CLOCK_START: &str = "2026-12-08T21:59:55Z";

/// The Lua interpreter, from Debian's `lua5.1` package (see scripts/host-packages.sh).
const LUA: &str = "lua5.1";

/// What an Argo CD health check returned.
#[derive(Clone, Debug, PartialEq)]
struct Health {
    status: String,
    message: String,
}

/// Runs `health-<kind>.lua` on `object` as Argo CD does: `obj` is the live object, the
/// script's body is a function whose result is the health.
fn health(kind: &str, object: &Value) -> Health {
    let script = std::fs::read_to_string(format!("{HEALTH_CHECKS}/health-{kind}.lua")).unwrap();
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_value(object)
    );
    let mut lua = Command::new(LUA)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {LUA} ({e}); install it with scripts/host-packages.sh"));
    lua.stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let output = lua.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "health-{kind}.lua failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    Health {
        status: status.into(),
        message: message.into(),
    }
}

/// A JSON value as a Lua table constructor, as Argo CD hands objects to its scripts.
fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua string literal; every byte outside printable ASCII as a three-digit escape.
fn lua_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                literal.push('\\');
                literal.push(byte as char);
            }
            0x20..=0x7e => literal.push(byte as char),
            _ => literal.push_str(&format!("\\{byte:03}")),
        }
    }
    literal.push('"');
    literal
}

/// One test's namespace, its client, and the operator once started.
struct Scene {
    ns: TestNamespace,
    client: Client,
    operator: Option<Child>,
    log: PathBuf,
}

impl Scene {
    async fn new(prefix: &str) -> Self {
        testbed().install_crds();
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let log = testbed()
            .state_dir
            .join(format!("operator-argocd-{}.log", ns.name));
        Self {
            client: testbed().client().await,
            ns,
            operator: None,
            log,
        }
    }

    /// Starts the real operator for this namespace, with its clock at [`CLOCK_START`].
    fn start_operator(&mut self) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
            .args([
                "run",
                "--namespace",
                &self.ns.name,
                "--clock-start",
                CLOCK_START,
            ])
            .args(["--leader-election=false", "--http-addr=127.0.0.1:0"])
            .env("KUBECONFIG", testbed().kubeconfig())
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the patchkeeper binary");
        self.operator = Some(child);
    }

    fn stop_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn apply(&self, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let (group, version) = object["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap();
        let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns.name,
            &ApiResource::from_gvk(&gvk),
        );
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.patch(
            &name,
            &PatchParams::apply("argocd-test"),
            &Patch::Apply(object),
        )
        .await
        .unwrap();
    }

    /// A running VM labelled for the test windows, scripted by `annotations`.
    async fn vm(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        self.vm_run_by(name, "Always", labels, annotations).await;
    }

    /// Creates a VirtualMachine with the given run strategy.
    async fn vm_run_by(
        &self,
        name: &str,
        run_strategy: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) {
        let vm = labelled(virtual_machine(name, run_strategy, annotations), labels);
        create_vm(self.client.clone(), &self.ns.name, &vm).await;
    }

    /// The object as the API server has it now, e.g. `maintenancewindow/nightly`.
    fn get(&self, object: &str) -> Value {
        self.find(object)
            .unwrap_or_else(|| panic!("{object} not found"))
    }

    fn find(&self, object: &str) -> Option<Value> {
        let json = testbed().kubectl(&[
            "get",
            object,
            "-n",
            &self.ns.name,
            "-o",
            "json",
            "--ignore-not-found",
        ]);
        (!json.trim().is_empty()).then(|| serde_json::from_str(&json).unwrap())
    }

    /// Polls the object until its health is `status`; returns that health.
    async fn health_becomes(&self, kind: &str, name: &str, status: &str) -> Health {
        self.health_becomes_with(kind, name, status, "").await
    }

    /// Waits for a health of `status` whose message starts with `message`.
    async fn health_becomes_with(
        &self,
        kind: &str,
        name: &str,
        status: &str,
        message: &str,
    ) -> Health {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let current = self
                .find(&format!("{kind}/{name}"))
                .map(|object| health(kind, &object));
            if let Some(current) = current
                .clone()
                .filter(|c| c.status == status && c.message.starts_with(message))
            {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind} {name} stayed {current:?}, never {status}\noperator log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.stop_operator();
    }
}

fn baseline(name: &str, retirement: Value) -> Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
        "metadata": {"name": name},
        "spec": {
            "approval": {"classifications": ["Security", "Bugfix", "Enhancement", "Other"]},
            "retirement": retirement,
        }
    })
}

/// Every night at 22:00 UTC for an hour over the VMs labelled `env: dev`, against
/// `baseline`, with the given rollout.
fn window(name: &str, baseline: &str, rollout: Value) -> Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 22 * * *", "timeZone": "UTC", "duration": "1h", "cutoff": "10m",
            "selector": {"matchLabels": {"env": "dev"}},
            "baselineRef": {"name": baseline},
            "rollout": rollout,
            "executor": {"sshSecretRef": {"name": "patchkeeper-ssh"}}
        }
    })
}

fn exception(name: &str, expires: &str) -> Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchException",
        "metadata": {"name": name},
        "spec": {
            "owner": "erp-team@example.com",
            "reason": "vendor certifies only this release",
            "expires": expires,
            "vmNames": ["legacy-erp"],
        }
    })
}

#[test]
fn the_argocd_config_map_holds_each_health_check_unchanged() {
    let config_map: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{HEALTH_CHECKS}/argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    for kind in [
        "MaintenanceWindow",
        "PatchBaseline",
        "ManagedVM",
        "PatchException",
    ] {
        let key = format!("resource.customizations.health.patchkeeper.io_{kind}");
        let script = std::fs::read_to_string(format!("{HEALTH_CHECKS}/health-{kind}.lua")).unwrap();
        assert_eq!(
            config_map["data"][&key].as_str(),
            Some(script.as_str()),
            "argocd-cm.yaml's {key} differs from health-{kind}.lua"
        );
    }
}

#[tokio::test]
async fn a_window_with_a_usable_baseline_becomes_ready_for_kubectl_wait_and_healthy() {
    let mut scene = Scene::new("argo-ready").await;
    scene.apply(baseline("dev", json!({}))).await;
    scene.apply(window("nightly", "dev", json!({}))).await;
    scene.vm("vm-a", &[("env", "dev")], &[]).await;
    scene.start_operator();

    testbed().kubectl(&[
        "wait",
        "--for=condition=Ready",
        "maintenancewindow/nightly",
        "-n",
        &scene.ns.name,
        "--timeout=60s",
    ]);
    let window = health("MaintenanceWindow", &scene.get("maintenancewindow/nightly"));
    assert_eq!(window.status, "Healthy", "{window:?}");
    assert!(window.message.contains("next window opens"), "{window:?}");
    let baseline = scene
        .health_becomes("PatchBaseline", "dev", "Healthy")
        .await;
    assert!(
        baseline.message.contains("used by 1 windows"),
        "{baseline:?}"
    );
    let vm = scene.health_becomes("ManagedVM", "vm-a", "Healthy").await;
    assert!(vm.message.contains("nightly"), "{vm:?}");
}

#[tokio::test]
async fn a_window_the_operator_has_not_read_yet_is_progressing() {
    let mut scene = Scene::new("argo-unread").await;
    scene.apply(baseline("dev", json!({}))).await;
    scene.apply(window("nightly", "dev", json!({}))).await;
    let fresh = health("MaintenanceWindow", &scene.get("maintenancewindow/nightly"));
    assert_eq!(fresh.status, "Progressing", "no status yet: {fresh:?}");

    scene.start_operator();
    scene
        .health_becomes("MaintenanceWindow", "nightly", "Healthy")
        .await;
    scene.stop_operator();
    scene
        .apply(window("nightly", "dev", json!({"maxConcurrent": 3})))
        .await;
    let changed = health("MaintenanceWindow", &scene.get("maintenancewindow/nightly"));
    assert_eq!(
        changed,
        Health {
            status: "Progressing".into(),
            message: "the operator has not yet read generation 2".into(),
        }
    );
}

#[tokio::test]
async fn a_window_whose_baseline_is_missing_is_degraded() {
    let mut scene = Scene::new("argo-stalled").await;
    scene
        .apply(window("nightly", "does-not-exist", json!({})))
        .await;
    scene.start_operator();
    let stalled = scene
        .health_becomes("MaintenanceWindow", "nightly", "Degraded")
        .await;
    assert!(stalled.message.contains("does-not-exist"), "{stalled:?}");
}

#[tokio::test]
async fn a_suspended_window_is_suspended() {
    let mut scene = Scene::new("argo-suspended").await;
    scene.apply(baseline("dev", json!({}))).await;
    let mut suspended = window("nightly", "dev", json!({}));
    suspended["spec"]["suspend"] = json!(true);
    scene.apply(suspended).await;
    scene.start_operator();
    let health = scene
        .health_becomes("MaintenanceWindow", "nightly", "Suspended")
        .await;
    assert!(health.message.contains("suspend"), "{health:?}");
}

#[tokio::test]
async fn a_running_window_is_progressing_until_its_failures_halt_it_and_it_is_degraded() {
    let mut scene = Scene::new("argo-halted").await;
    let _kubevirt = KubevirtDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let _kubelet = KubeletDouble::start(scene.client.clone(), Some(&scene.ns.name));
    scene.apply(baseline("dev", json!({}))).await;
    for name in ["vm-a", "vm-b", "vm-c"] {
        let failing = [
            (UPDATES, "openssl=3.0.15-1:Security:Critical"),
            (FAIL, "install"),
            (PATCH_SECONDS, "2"),
        ];
        scene.vm(name, &[("env", "dev")], &failing).await;
    }
    let rollout = json!({"maxConcurrent": 1, "maxFailures": 1});
    scene.apply(window("nightly", "dev", rollout)).await;
    scene.start_operator();

    let running = scene
        .health_becomes("MaintenanceWindow", "nightly", "Progressing")
        .await;
    assert!(!running.message.is_empty(), "{running:?}");
    let halted = scene
        .health_becomes("MaintenanceWindow", "nightly", "Degraded")
        .await;
    assert_eq!(
        scene.get("maintenancewindow/nightly")["status"]["phase"],
        "Halted"
    );
    assert!(halted.message.contains("fail"), "{halted:?}");
}

#[tokio::test]
async fn a_vm_being_patched_is_progressing() {
    let mut scene = Scene::new("argo-patching").await;
    let _kubevirt = KubevirtDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let _kubelet = KubeletDouble::start(scene.client.clone(), Some(&scene.ns.name));
    scene.apply(baseline("dev", json!({}))).await;
    let slow = [
        (UPDATES, "openssl=3.0.15-1:Security:Critical"),
        (PATCH_SECONDS, "8"),
    ];
    scene.vm("vm-a", &[("env", "dev")], &slow).await;
    scene.apply(window("nightly", "dev", json!({}))).await;
    scene.start_operator();

    // Before its first inventory a ManagedVM is Progressing too; wait for the run's own.
    let patching = scene
        .health_becomes_with("ManagedVM", "vm-a", "Progressing", "patch run")
        .await;
    assert!(
        patching.message.starts_with("patch run 20261208t2200z"),
        "{patching:?}"
    );
    scene.health_becomes("ManagedVM", "vm-a", "Healthy").await;
}

#[tokio::test]
async fn a_dormant_vm_woken_to_be_scanned_is_progressing() {
    let mut scene = Scene::new("argo-scan-wake").await;
    let _kubevirt = KubevirtDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let _kubelet = KubeletDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let mut wakes = baseline("dev", json!({}));
    wakes["spec"]["assessment"] = json!({"wakeToScan": true});
    scene.apply(wakes).await;
    let slow = [(BOOT_SECONDS, "8")];
    scene
        .vm_run_by("vm-a", "Halted", &[("env", "dev")], &slow)
        .await;
    // New Year's morning: far from the operator's clock, so the window is not about to open.
    let mut yearly = window("yearly", "dev", json!({}));
    yearly["spec"]["schedule"] = json!("0 3 1 1 *");
    scene.apply(yearly).await;
    scene.start_operator();

    let woken = scene
        .health_becomes_with("ManagedVM", "vm-a", "Progressing", "woken between windows")
        .await;
    assert_eq!(
        woken.message,
        "woken between windows to be scanned: Scanning"
    );
    scene.health_becomes("ManagedVM", "vm-a", "Healthy").await;
}

#[test]
fn a_vm_put_back_before_it_was_patched_is_out_of_the_run() {
    // The status the operator leaves on a woken VM that a halted run put back unpatched.
    let put_back = json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "ManagedVM",
        "metadata": {"name": "vm-a", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Covered",
                            "message": "patched by window nightly against baseline dev"}],
            "patch": {"run": "20261208t2200z", "phase": "Waiting", "outcome": "NotPatched",
                      "message": "back to its original power state"},
        }
    });
    let vm = health("ManagedVM", &put_back);
    assert_eq!(vm.status, "Healthy", "{vm:?}");
}

#[tokio::test]
async fn a_vm_flagged_for_retirement_is_degraded() {
    let mut scene = Scene::new("argo-retire").await;
    let _kubevirt = KubevirtDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let _kubelet = KubeletDouble::start(scene.client.clone(), Some(&scene.ns.name));
    let owners = json!({"reasons": {"missingOwnerLabel": "owner"}});
    scene.apply(baseline("dev", owners)).await;
    scene.apply(window("nightly", "dev", json!({}))).await;
    scene.vm("orphan", &[("env", "dev")], &[]).await;
    scene.start_operator();

    let flagged = scene
        .health_becomes("ManagedVM", "orphan", "Degraded")
        .await;
    assert!(
        flagged.message.starts_with("flagged for retirement"),
        "{flagged:?}"
    );
}

#[tokio::test]
async fn an_active_exception_is_healthy_and_an_expired_one_degraded() {
    let mut scene = Scene::new("argo-exception").await;
    scene
        .apply(exception("active", "2027-01-31T00:00:00Z"))
        .await;
    scene
        .apply(exception("expired", "2026-12-01T00:00:00Z"))
        .await;
    scene.start_operator();

    scene
        .health_becomes("PatchException", "active", "Healthy")
        .await;
    let expired = scene
        .health_becomes("PatchException", "expired", "Degraded")
        .await;
    assert!(
        expired.message.ends_with("remove it from Git"),
        "{expired:?}"
    );
}

/// No baseline that the API server admits is unusable to the operator today, so the
/// Stalled baseline is the live Ready one with the conditions the operator's own code
/// writes for an unusable baseline.
#[tokio::test]
async fn a_baseline_the_operator_cannot_use_is_degraded() {
    let mut scene = Scene::new("argo-baseline").await;
    scene.apply(baseline("dev", json!({}))).await;
    scene.start_operator();
    scene
        .health_becomes("PatchBaseline", "dev", "Healthy")
        .await;
    let mut sample = scene.get("patchbaseline/dev");

    let standing = Standing::stalled("InvalidApproveAfter", "approval.approveAfter: bad duration");
    let conditions = standing.conditions(&[], Some(1), "2026-12-08T22:00:00Z".parse().unwrap());
    sample["status"]["conditions"] = serde_json::to_value(conditions).unwrap();
    let stalled = health("PatchBaseline", &sample);
    assert_eq!(
        stalled,
        Health {
            status: "Degraded".into(),
            message: "approval.approveAfter: bad duration".into(),
        }
    );
}
