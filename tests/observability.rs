//! Running more than one operator, and watching one run: leader election with a Lease, and
//! the Prometheus metrics and health endpoints, against the real control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use patchkeeper::api::MaintenanceWindow;
use serde_json::json;
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::kubevirt::{install_kubevirt_crds, virtual_machine, vm_api};
use support::operator::{LEASE_SECONDS, Leader, Operator, OperatorConfig};
use support::{TestNamespace, testbed};

/// Five seconds before the daily window used here opens.
const CLOCK_START: &str = "2026-12-08T21:59:55Z";

struct Cluster {
    ns: TestNamespace,
    client: Client,
    _kubevirt: KubevirtDouble,
    _kubelet: KubeletDouble,
}

impl Cluster {
    async fn new(prefix: &str) -> Self {
        testbed().install_crds();
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let client = testbed().client().await;
        let kubevirt = KubevirtDouble::start(client.clone(), Some(&ns.name));
        let kubelet = KubeletDouble::start(client.clone(), Some(&ns.name));
        Self {
            ns,
            client,
            _kubevirt: kubevirt,
            _kubelet: kubelet,
        }
    }

    fn operator(&self, identity: &str, leader: bool) -> Operator {
        let config = OperatorConfig {
            namespaces: vec![self.ns.name.clone()],
            clock_start: Some(CLOCK_START.into()),
            clock_rate: None,
            leader: leader.then(|| Leader {
                namespace: self.ns.name.clone(),
                identity: identity.into(),
            }),
        };
        Operator::start(&format!("{}-{identity}", self.ns.name), &config)
    }

    async fn apply(&self, object: serde_json::Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let (group, version) = object["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap();
        let gvk =
            kube::core::GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
        let resource = kube::core::ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns.name, &resource);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.patch(
            &name,
            &PatchParams::apply("observability-test"),
            &Patch::Apply(object),
        )
        .await
        .unwrap();
    }

    /// A daily window at 22:00 UTC, its baseline and SSH Secret, and VMs: `running` ones and
    /// `dormant` ones, each with two updates.
    async fn fleet(&self, running: &[&str], dormant: &[&str]) {
        self.apply(
            json!({"apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
                          "metadata": {"name": "dev"}, "spec": {}}),
        )
        .await;
        self.apply(json!({
            "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 22 * * *", "duration": "1h", "selector": {},
                     "baselineRef": {"name": "dev"}, "rollout": {"maxConcurrent": 3},
                     "executor": {"sshSecretRef": {"name": "patchkeeper-ssh"}}}
        }))
        .await;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("patchkeeper-ssh".into()),
                ..ObjectMeta::default()
            },
            string_data: Some(BTreeMap::from([(
                "ssh-privatekey".into(),
                "unused by the doubles".into(),
            )])),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), &self.ns.name)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let updates = (
            "double.patchkeeper.io/updates",
            "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix",
        );
        for (names, strategy) in [(running, "Always"), (dormant, "Halted")] {
            for name in names {
                let vm = virtual_machine(name, strategy, &[updates]);
                vm_api(self.client.clone(), &self.ns.name)
                    .create(&PostParams::default(), &vm)
                    .await
                    .unwrap();
            }
        }
    }

    async fn lease_holder(&self) -> Option<String> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), &self.ns.name)
            .get_opt("patchkeeper")
            .await
            .unwrap()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    async fn until_holder(&self, wanted: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.lease_holder().await.as_deref() != Some(wanted) {
            assert!(
                started.elapsed() < limit,
                "{wanted} did not take the lease within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    async fn run_ended(&self, operator: &Operator) -> MaintenanceWindow {
        let api: Api<MaintenanceWindow> = Api::namespaced(self.client.clone(), &self.ns.name);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let window = api.get("nightly").await.unwrap();
            let status = window.status.clone().unwrap_or_default();
            if status.last_run.is_some() && status.current_run.is_none() {
                return window;
            }
            assert!(
                Instant::now() < deadline,
                "the run did not end: {status:?}\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The reporting instances of every Event written in the namespace, seen by watching.
fn watch_event_writers(client: &Client, namespace: &str) -> Arc<Mutex<BTreeSet<String>>> {
    let writers = Arc::new(Mutex::new(BTreeSet::new()));
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let seen = writers.clone();
    tokio::spawn(async move {
        let mut stream = watcher(events, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(event)) = stream.next().await {
            if event.reporting_component.as_deref() == Some("patchkeeper") {
                seen.lock()
                    .unwrap()
                    .insert(event.reporting_instance.unwrap_or_default());
            }
        }
    });
    writers
}

fn curl(url: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is needed (scripts/host-packages.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test]
async fn exactly_one_operator_acts_and_a_killed_leader_hands_over_within_the_lease() {
    let cluster = Cluster::new("obs-leader").await;
    cluster.fleet(&["web-1", "web-2"], &["batch-1"]).await;
    let writers = watch_event_writers(&cluster.client, &cluster.ns.name);

    let first = cluster.operator("first", true);
    cluster.until_holder("first", Duration::from_secs(30)).await;
    let second = cluster.operator("second", true);
    cluster.run_ended(&first).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.lease_holder().await.as_deref(), Some("first"));
    assert_eq!(
        *writers.lock().unwrap(),
        BTreeSet::from(["first".to_string()]),
        "the standby wrote Events"
    );
    assert!(
        second
            .log_text()
            .lines()
            .all(|l| !l.contains("vm run step")),
        "the standby acted:\n{}",
        second.log_text()
    );

    first.kill();
    let handover = cluster
        .until_holder("second", Duration::from_secs(LEASE_SECONDS * 3))
        .await;
    // The Lease is renewed every third of its duration, so it can expire at most one
    // duration (plus a standby's retry) after the kill.
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 3),
        "handover took {handover:?}"
    );
}

#[tokio::test]
async fn a_gracefully_stopped_leader_releases_the_lease_at_once() {
    let cluster = Cluster::new("obs-release").await;
    let first = cluster.operator("first", true);
    cluster.until_holder("first", Duration::from_secs(30)).await;
    let second = cluster.operator("second", true);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopped = Instant::now();
    assert!(first.terminate().success(), "a graceful stop exits 0");
    let handover = cluster
        .until_holder("second", Duration::from_secs(LEASE_SECONDS * 2))
        .await;
    assert!(
        handover < Duration::from_secs(LEASE_SECONDS),
        "took {:?}: the lease was not released",
        stopped.elapsed()
    );
    drop(second);
}

#[tokio::test]
async fn metrics_after_a_run_match_what_happened() {
    let cluster = Cluster::new("obs-metrics").await;
    cluster
        .fleet(&["web-1", "web-2"], &["batch-1", "batch-2"])
        .await;
    let operator = cluster.operator("solo", false);
    let addr = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = operator.http_addr() {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "no http address in the log:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    cluster.run_ended(&operator).await;
    // The verdict reconciler records compliance shortly after the run.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(curl(&format!("http://{addr}/livez")).0, 200);
    let (ready, body) = curl(&format!("http://{addr}/readyz"));
    assert_eq!(ready, 200, "{body}");
    let (code, metrics) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, 200);
    let ns = &cluster.ns.name;
    for line in [
        "patchkeeper_vms_woken_total 2".to_string(),
        "patchkeeper_window_runs_total{result=\"Succeeded\"} 1".to_string(),
        "patchkeeper_vm_runs_total{result=\"Succeeded\"} 4".to_string(),
        format!(
            "patchkeeper_managed_vms{{namespace=\"{ns}\",compliance=\"Compliant\",verdict=\"Keep\"}} 4"
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("patchkeeper_reconciles_total{controller=\"window\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("patchkeeper_phase_duration_seconds_count{phase=\"Patching\"}"),
        "{metrics}"
    );
    let names: Vec<String> = vm_api(cluster.client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|v| v.name_any())
        .collect();
    assert_eq!(names.len(), 4);
}
