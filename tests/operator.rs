//! The operator against the real control plane, with the KubeVirt and kubelet doubles
//! standing in for what cannot run here. Every check observes the cluster, never the
//! operator's own counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use patchkeeper::api::managed_vm::PatchPhase;
use patchkeeper::api::window::{RunResult, WindowPhase};
use patchkeeper::api::{MaintenanceWindow, ManagedVM};
use serde_json::json;
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::kubevirt::{install_kubevirt_crds, virtual_machine, vm_api};
use support::operator::{Operator, OperatorConfig};
use support::{TestNamespace, testbed};

/// The instant the operator's clock starts at in these tests: five seconds before 22:00
/// UTC, when the test windows open.
const CLOCK_START: &str = "2026-12-08T21:59:55Z";

/// Everything a test needs in its namespace.
struct Fleet {
    ns: TestNamespace,
    client: Client,
    _kubevirt: KubevirtDouble,
    _kubelet: KubeletDouble,
}

impl Fleet {
    async fn new(prefix: &str) -> Self {
        testbed().install_crds();
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let client = testbed().client().await;
        let kubevirt = KubevirtDouble::start(client.clone(), Some(&ns.name));
        let kubelet = KubeletDouble::start(client.clone(), Some(&ns.name));
        let fleet = Self { ns, client, _kubevirt: kubevirt, _kubelet: kubelet };
        fleet.apply(baseline()).await;
        fleet.ssh_secret().await;
        fleet
    }

    fn operator(&self, name: &str) -> Operator {
        let config = OperatorConfig {
            namespaces: vec![self.ns.name.clone()],
            clock_start: Some(CLOCK_START.into()),
            clock_rate: None,
        };
        Operator::start(&format!("{}-{name}", self.ns.name), &config)
    }

    async fn apply(&self, object: serde_json::Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let kind = object["kind"].as_str().unwrap();
        let (group, version) = object["apiVersion"].as_str().unwrap().split_once('/').unwrap();
        let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns.name, &resource);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.patch(&name, &PatchParams::apply("operator-test"), &Patch::Apply(object)).await.unwrap();
    }

    async fn ssh_secret(&self) {
        let secret = Secret {
            metadata: ObjectMeta { name: Some("patchkeeper-ssh".into()), ..ObjectMeta::default() },
            string_data: Some(BTreeMap::from([
                ("ssh-privatekey".to_string(), "not a real key: the kubelet double never reads it".to_string()),
                ("known_hosts".to_string(), String::new()),
            ])),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), &self.ns.name).create(&PostParams::default(), &secret).await.unwrap();
    }

    async fn vm(&self, name: &str, run_strategy: &str, annotations: &[(&str, &str)]) {
        let mut vm = virtual_machine(name, run_strategy, annotations);
        vm.metadata.labels = Some(BTreeMap::from([("env".to_string(), "dev".to_string()), ("owner".to_string(), "team-a".to_string())]));
        vm_api(self.client.clone(), &self.ns.name).create(&PostParams::default(), &vm).await.unwrap();
    }

    fn windows(&self) -> Api<MaintenanceWindow> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn managed_vms(&self) -> Api<ManagedVM> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Waits until the window's run has ended, and returns the window.
    async fn run_ended(&self, window: &str, operator: &Operator, limit: Duration) -> MaintenanceWindow {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let current = self.windows().get(window).await.unwrap();
            let status = current.status.clone().unwrap_or_default();
            if status.last_run.is_some() && status.current_run.is_none() {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run of {window} did not end in {limit:?}; status: {status:?}\noperator log:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.into_iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).collect()
    }
}

fn baseline() -> serde_json::Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
        "metadata": {"name": "dev"},
        "spec": {"approval": {"classifications": ["Security", "Bugfix", "Enhancement", "Other"]}}
    })
}

fn window(name: &str, rollout: serde_json::Value, dormant: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 22 * * *", "timeZone": "UTC", "duration": "1h", "cutoff": "10m",
            "selector": {"matchLabels": {"env": "dev"}},
            "baselineRef": {"name": "dev"},
            "rollout": rollout,
            "dormant": dormant,
            "executor": {"sshSecretRef": {"name": "patchkeeper-ssh"}}
        }
    })
}

/// Records, by watching the cluster, the most VMs running patch Jobs at once and the most
/// originally-dormant VMs awake at once.
#[derive(Clone, Default)]
struct Watermarks {
    active_jobs: Arc<Mutex<(BTreeSet<String>, usize)>>,
    awake: Arc<Mutex<(BTreeSet<String>, usize)>>,
}

impl Watermarks {
    fn start(client: &Client, namespace: &str, dormant: &[&str]) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let marks = Self::default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let job_marks = marks.active_jobs.clone();
        let job_task = tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(job)) = stream.next().await {
                let vm = job.labels().get("patchkeeper.io/vm").cloned().unwrap_or_default();
                let finished = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                    c.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                });
                let mut marks = job_marks.lock().unwrap();
                if finished { marks.0.remove(&vm); } else { marks.0.insert(vm); }
                marks.1 = marks.1.max(marks.0.len());
            }
        });
        let vms = vm_api(client.clone(), namespace);
        let dormant: BTreeSet<String> = dormant.iter().map(|s| s.to_string()).collect();
        let awake_marks = marks.awake.clone();
        let vm_task = tokio::spawn(async move {
            let mut stream = watcher(vms, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(vm)) = stream.next().await {
                if !dormant.contains(&vm.name_any()) { continue; }
                let running = vm.data["spec"]["runStrategy"] == "Always";
                let mut marks = awake_marks.lock().unwrap();
                if running { marks.0.insert(vm.name_any()); } else { marks.0.remove(&vm.name_any()); }
                marks.1 = marks.1.max(marks.0.len());
            }
        });
        (marks, vec![job_task, vm_task])
    }

    fn most_active_jobs(&self) -> usize {
        self.active_jobs.lock().unwrap().1
    }

    fn most_awake(&self) -> usize {
        self.awake.lock().unwrap().1
    }
}

#[tokio::test]
async fn dormant_vms_are_woken_patched_and_put_back_to_sleep_right_after_their_own_run() {
    let fleet = Fleet::new("op-dormant").await;
    let updates = ("double.patchkeeper.io/updates", "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix");
    for name in ["run-a", "run-b"] {
        fleet.vm(name, "Always", &[updates]).await;
    }
    for name in ["sleepy-a", "sleepy-b", "sleepy-c"] {
        fleet.vm(name, "Halted", &[updates, ("double.patchkeeper.io/boot-seconds", "2")]).await;
    }
    let (marks, _watchers) = Watermarks::start(&fleet.client, &fleet.ns.name, &["sleepy-a", "sleepy-b", "sleepy-c"]);
    fleet.apply(window("nightly", json!({"maxConcurrent": 2}), json!({"wake": true, "maxAwake": 2}))).await;

    let operator = fleet.operator("main");
    let window = fleet.run_ended("nightly", &operator, Duration::from_secs(120)).await;

    let last = window.status.unwrap().last_run.unwrap();
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!((last.counts.succeeded, last.counts.failed), (5, 0), "{last:?}");
    for name in ["sleepy-a", "sleepy-b", "sleepy-c"] {
        let vm = vm_api(fleet.client.clone(), &fleet.ns.name).get(name).await.unwrap();
        assert_eq!(vm.data["spec"]["runStrategy"], "Halted", "{name} was put back to sleep");
        let managed = fleet.managed_vms().get(name).await.unwrap().status.unwrap();
        assert_eq!(managed.patch.unwrap().phase, PatchPhase::Done);
        let record = &managed.history[0];
        assert!(record.woken && record.result == "Succeeded", "{record:?}");
        // Put back right after its own run: well before the window's end at 23:00.
        assert!(record.finished_at.as_ref().unwrap().0 < "2026-12-08T22:30:00Z".parse().unwrap());
    }
    assert!(marks.most_active_jobs() <= 2, "{} VMs patched at once", marks.most_active_jobs());
    assert!(marks.most_awake() <= 2, "{} dormant VMs awake at once", marks.most_awake());
    assert!(marks.most_awake() >= 1, "no dormant VM was ever woken");
    let reasons: Vec<_> = fleet.events_for("sleepy-a").await.into_iter().filter_map(|e| e.reason).collect();
    for reason in ["Waking", "Booted", "Scanning", "Installing", "Restoring", "Patched"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} Event on sleepy-a: {reasons:?}");
    }
}

#[tokio::test]
async fn an_invalid_window_stalls_with_a_warning_and_touches_nothing() {
    let fleet = Fleet::new("op-invalid").await;
    fleet.vm("sleepy", "Halted", &[]).await;
    let operator = fleet.operator("main");
    for file in ["window-bad-cron", "window-unknown-time-zone", "window-missing-baseline", "window-cron-prefix"] {
        let path = format!("{}/tests/invalid-for-operator/{file}.yaml", env!("CARGO_MANIFEST_DIR"));
        let mut manifest: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        manifest["spec"]["selector"] = json!({"matchLabels": {"env": "dev"}});
        fleet.apply(manifest).await;
    }
    let expected = [
        ("window-bad-cron", "InvalidSchedule", "hour"),
        ("window-unknown-time-zone", "UnknownTimeZone", "Europe/Atlantis"),
        ("window-missing-baseline", "BaselineNotFound", "does-not-exist"),
        ("window-cron-prefix", "UnsupportedSchedule", "timeZone"),
    ];
    for (name, reason, mentions) in expected {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let stalled = loop {
            let status = fleet.windows().get(name).await.unwrap().status.unwrap_or_default();
            if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True") {
                assert_eq!(status.phase, Some(WindowPhase::Stalled));
                break c.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} never stalled\n{}", operator.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(stalled.reason, reason, "{name}: {stalled:?}");
        assert!(stalled.message.contains(mentions), "{name}: {}", stalled.message);
        let events = fleet.events_for(name).await;
        assert!(
            events.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)),
            "{name}: no Warning Event {reason}: {events:?}"
        );
    }
    // Past the time every one of these windows would have opened: still nothing touched.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let vm = vm_api(fleet.client.clone(), &fleet.ns.name).get("sleepy").await.unwrap();
    assert_eq!(vm.data["spec"]["runStrategy"], "Halted");
    let jobs = Api::<Job>::namespaced(fleet.client.clone(), &fleet.ns.name).list(&ListParams::default()).await.unwrap();
    assert!(jobs.items.is_empty(), "jobs were created: {:?}", jobs.items.iter().map(|j| j.name_any()).collect::<Vec<_>>());
}
