//! The operator against the real control plane, with the KubeVirt and kubelet doubles
//! standing in for what cannot run here. Every check observes the cluster, never the
//! operator's own counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use patchkeeper::api::managed_vm::{PatchPhase, RunRecord};
use patchkeeper::api::window::{RunResult, WindowPhase, WindowRun};
use patchkeeper::api::{MaintenanceWindow, ManagedVM, ManagedVMStatus};
use serde_json::json;
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::doubles::scenario::{BOOT_SECONDS, FAIL, NEVER_REACHABLE, PATCH_SECONDS, UPDATES};
use support::kubevirt::{install_kubevirt_crds, virtual_machine, vm_api, vmi_api};
use support::operator::{Operator, OperatorConfig};
use support::{TestNamespace, testbed};

/// The instant the operator's clock starts at in these tests: five seconds before 22:00
/// UTC, when the test windows open.
const CLOCK_START: &str = "2026-12-08T21:59:55Z";

/// The run that the test windows start at 22:00; it names their Jobs.
const RUN: &str = "20261208t2200z";

/// Updates every scan of a VM carrying this annotation finds; the test baseline approves
/// them, so the VM's run installs them.
const SOME_UPDATES: (&str, &str) = (
    UPDATES,
    "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix",
);

/// Installs on a VM carrying this annotation fail in the package manager.
const FAILING_INSTALL: (&str, &str) = (FAIL, "install");

/// The label that puts a VM in the canary wave of [`canary_waves`].
const CANARY: (&str, &str) = ("wave", "canary");

/// How the operator's clock runs in a test: where it starts and how fast it goes.
#[derive(Clone, Copy, Debug)]
struct TestClock {
    start: Timestamp,
    rate: f64,
}

impl TestClock {
    /// A clock starting at [`CLOCK_START`] that runs `rate` times as fast as real time.
    fn at_rate(rate: f64) -> Self {
        Self {
            start: CLOCK_START.parse().unwrap(),
            rate,
        }
    }

    /// The same clock as it reads `elapsed` real time after it started: where a restarted
    /// operator's clock must start for the time it decides by to go on without a jump back.
    fn after(self, elapsed: Duration) -> Self {
        let span = SignedDuration::try_from(elapsed.mul_f64(self.rate)).unwrap();
        Self {
            start: self.start.checked_add(span).unwrap(),
            ..self
        }
    }

    /// The real time that `span` of this clock's time takes.
    fn real(self, span: SignedDuration) -> Duration {
        Duration::try_from(span).unwrap().div_f64(self.rate)
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::at_rate(1.0)
    }
}

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
        let fleet = Self {
            ns,
            client,
            _kubevirt: kubevirt,
            _kubelet: kubelet,
        };
        fleet.apply(baseline("dev")).await;
        fleet.ssh_secret().await;
        fleet
    }

    /// Starts the operator with its clock at [`CLOCK_START`], running at real speed.
    fn operator(&self, name: &str) -> Operator {
        self.operator_with(name, TestClock::default())
    }

    fn operator_with(&self, name: &str, clock: TestClock) -> Operator {
        let config = OperatorConfig {
            namespaces: vec![self.ns.name.clone()],
            clock_start: Some(clock.start.to_string()),
            clock_rate: Some(clock.rate),
            ..OperatorConfig::default()
        };
        Operator::start(&format!("{}-{name}", self.ns.name), &config)
    }

    async fn apply(&self, object: serde_json::Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let kind = object["kind"].as_str().unwrap();
        let (group, version) = object["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap();
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let resource = kube::core::ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns.name, &resource);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let params = PatchParams::apply("operator-test");
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .unwrap();
    }

    async fn ssh_secret(&self) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("patchkeeper-ssh".into()),
                ..ObjectMeta::default()
            },
            string_data: Some(BTreeMap::from([
                (
                    "ssh-privatekey".to_string(),
                    "not a real key: the kubelet double never reads it".to_string(),
                ),
                ("known_hosts".to_string(), String::new()),
            ])),
            ..Secret::default()
        };
        let secrets = Api::<Secret>::namespaced(self.client.clone(), &self.ns.name);
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Creates a VM that the test windows select (label `env: dev`).
    async fn vm(&self, name: &str, run_strategy: &str, annotations: &[(&str, &str)]) {
        self.labelled_vm(name, run_strategy, annotations, &[("env", "dev")])
            .await;
    }

    /// Creates a VM with `labels` (and an owner label) instead of the ones windows select.
    async fn labelled_vm(
        &self,
        name: &str,
        run_strategy: &str,
        annotations: &[(&str, &str)],
        labels: &[(&str, &str)],
    ) {
        let vm = with_labels(virtual_machine(name, run_strategy, annotations), labels);
        self.create_vm(&vm).await;
    }

    async fn create_vm(&self, vm: &DynamicObject) {
        let vms = vm_api(self.client.clone(), &self.ns.name);
        vms.create(&PostParams::default(), vm).await.unwrap();
    }

    async fn delete_vm(&self, name: &str) {
        let vms = vm_api(self.client.clone(), &self.ns.name);
        vms.delete(name, &DeleteParams::background()).await.unwrap();
    }

    /// The VM's spec as stored now.
    async fn vm_spec(&self, name: &str) -> serde_json::Value {
        let vm = vm_api(self.client.clone(), &self.ns.name)
            .get(name)
            .await
            .unwrap();
        vm.data["spec"].clone()
    }

    /// Whether the VM is powered off: KubeVirt says `Stopped` and no instance exists.
    async fn is_stopped(&self, name: &str) -> bool {
        let vm = vm_api(self.client.clone(), &self.ns.name)
            .get(name)
            .await
            .unwrap();
        let vmi = vmi_api(self.client.clone(), &self.ns.name)
            .get_opt(name)
            .await
            .unwrap();
        vm.data["status"]["printableStatus"] == "Stopped" && vmi.is_none()
    }

    fn windows(&self) -> Api<MaintenanceWindow> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn managed_vms(&self) -> Api<ManagedVM> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn managed_status(&self, name: &str) -> ManagedVMStatus {
        self.managed_vms()
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    /// The VM's record of the run, once the run is over for it.
    async fn last_record(&self, name: &str) -> RunRecord {
        let status = self.managed_status(name).await;
        let record = status.history.first();
        record
            .unwrap_or_else(|| panic!("{name} has no run in its history: {status:?}"))
            .clone()
    }

    /// The Jobs of the windows' run [`RUN`]; scans between windows are not part of it.
    async fn run_jobs(&self) -> Vec<Job> {
        let jobs = Api::<Job>::namespaced(self.client.clone(), &self.ns.name);
        jobs.list(&ListParams::default().labels(&run_jobs_selector()))
            .await
            .unwrap()
            .items
    }

    /// Waits until the window's run has ended, and returns the window.
    async fn run_ended(
        &self,
        window: &str,
        operator: &Operator,
        limit: Duration,
    ) -> MaintenanceWindow {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let current = self.windows().get(window).await.unwrap();
            let status = current.status.clone().unwrap_or_default();
            if status.last_run.is_some() && status.current_run.is_none() {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the run of {window} did not end in {limit:?}; status: {status:?}\n\
                 operator log:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `holds` is true, polling; fails with `what` after `limit`.
    async fn until(
        &self,
        what: &str,
        operator: &Operator,
        limit: Duration,
        mut holds: impl AsyncFnMut(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !holds(self).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen in {limit:?}\noperator log:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect()
    }

    /// Whether an Event with `reason` was published about the object `name`.
    async fn has_event(&self, name: &str, reason: &str) -> bool {
        let events = self.events_for(name).await;
        events.iter().any(|e| e.reason.as_deref() == Some(reason))
    }

    /// When the VM's part in the run began, if it began.
    async fn started_at(&self, name: &str) -> Option<Timestamp> {
        let patch = self.managed_status(name).await.patch?;
        patch.started_at.map(|t| t.0)
    }

    /// Whether the VM's run failed because the window closed while it was patching.
    async fn interrupted_by_the_close(&self, name: &str) -> bool {
        let history = self.managed_status(name).await.history;
        let closed = |r: &RunRecord| {
            r.reason
                .as_ref()
                .is_some_and(|r| r.contains("window closed"))
        };
        history.iter().any(|r| r.result == "Failed" && closed(r))
    }

    /// Whether a Warning Event with `reason` was published about the object `name`.
    async fn has_warning(&self, name: &str, reason: &str) -> bool {
        let events = self.events_for(name).await;
        events
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
    }
}

fn baseline(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
        "metadata": {"name": name},
        "spec": {"approval": {"classifications": ["Security", "Bugfix", "Enhancement", "Other"]}}
    })
}

/// A window opening at 22:00 for an hour (cutoff 10m) over the VMs labelled `env: dev`,
/// against baseline `dev`.
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

/// The window with the given top-level spec fields replaced.
fn amended(mut window: serde_json::Value, spec: serde_json::Value) -> serde_json::Value {
    for (field, value) in spec.as_object().unwrap() {
        window["spec"][field] = value.clone();
    }
    window
}

/// Waves: the VMs labelled [`CANARY`] first, soaking `soak` if given, then the rest.
fn canary_waves(soak: Option<&str>) -> serde_json::Value {
    let mut canary = json!({"name": "canary", "selector": {"matchLabels": {CANARY.0: CANARY.1}}});
    if let Some(soak) = soak {
        canary["soak"] = json!(soak);
    }
    json!([canary])
}

/// The VM with exactly these labels, plus an owner label.
fn with_labels(mut vm: DynamicObject, labels: &[(&str, &str)]) -> DynamicObject {
    let mut all = BTreeMap::from([("owner".to_string(), "team-a".to_string())]);
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vm.metadata.labels = Some(all);
    vm
}

/// A VM declared with the deprecated `spec.running` instead of a run strategy.
fn legacy_vm(name: &str, running: bool, annotations: &[(&str, &str)]) -> DynamicObject {
    let mut vm = virtual_machine(name, "Halted", annotations);
    let spec = vm.data["spec"].as_object_mut().unwrap();
    spec.remove("runStrategy");
    spec.insert("running".into(), json!(running));
    with_labels(vm, &[("env", "dev")])
}

/// Selects the Jobs of the run [`RUN`].
fn run_jobs_selector() -> String {
    format!("patchkeeper.io/run={RUN}")
}

/// The VM a Job patches, from its label.
fn job_vm(job: &Job) -> String {
    job.labels()
        .get("patchkeeper.io/vm")
        .cloned()
        .unwrap_or_default()
}

/// `scan` or `install`, from the Job's label.
fn job_step(job: &Job) -> String {
    job.labels()
        .get("patchkeeper.io/job")
        .cloned()
        .unwrap_or_default()
}

fn job_created(job: &Job) -> Timestamp {
    job.metadata.creation_timestamp.as_ref().unwrap().0
}

/// When the Job ended (`Complete` or `Failed`) and whether it failed; `None` while it runs.
fn job_end(job: &Job) -> Option<(Timestamp, bool)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let ended = conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    Some((
        ended.last_transition_time.as_ref()?.0,
        ended.type_ == "Failed",
    ))
}

/// When each failed Job failed, earliest first.
fn failure_times(jobs: &[Job]) -> Vec<Timestamp> {
    let mut failed: Vec<Timestamp> = jobs
        .iter()
        .filter_map(job_end)
        .filter(|(_, failed)| *failed)
        .map(|(at, _)| at)
        .collect();
    failed.sort();
    failed
}

/// When the last of the VM's Jobs ended.
fn last_job_end(jobs: &[Job], vm: &str) -> Option<Timestamp> {
    jobs.iter()
        .filter(|j| job_vm(j) == vm)
        .filter_map(job_end)
        .map(|(at, _)| at)
        .max()
}

/// How many Jobs each VM has for each step.
fn jobs_per_step(jobs: &[Job]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for job in jobs {
        *counts.entry((job_vm(job), job_step(job))).or_default() += 1;
    }
    counts
}

/// The condition of `type_`, if the status has it.
fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The names of the VMs that have at least one Job.
fn vms_with_jobs(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter().map(job_vm).collect()
}

/// The window's last run, once it has ended.
fn last_run(window: &MaintenanceWindow) -> WindowRun {
    window
        .status
        .as_ref()
        .and_then(|s| s.last_run.clone())
        .unwrap()
}

/// One watermark: what is in a set now, everything that ever was, and its largest size.
#[derive(Debug, Default)]
struct Mark {
    now: BTreeSet<String>,
    ever: BTreeSet<String>,
    most: usize,
}

impl Mark {
    fn set(&mut self, name: String, present: bool) {
        if present {
            self.ever.insert(name.clone());
            self.now.insert(name);
        } else {
            self.now.remove(&name);
        }
        self.most = self.most.max(self.now.len());
    }
}

/// Records, by watching the cluster, the most VMs running patch Jobs of [`RUN`] at once and the most
/// originally-dormant VMs awake at once, and which dormant VMs were ever woken.
#[derive(Clone, Default)]
struct Watermarks {
    active_jobs: Arc<Mutex<Mark>>,
    awake: Arc<Mutex<Mark>>,
}

impl Watermarks {
    fn start(
        client: &Client,
        namespace: &str,
        dormant: &[&str],
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let marks = Self::default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let job_marks = marks.active_jobs.clone();
        let job_task = tokio::spawn(async move {
            let config = watcher::Config::default().labels(&run_jobs_selector());
            let mut stream = watcher(jobs, config).applied_objects().boxed();
            while let Some(Ok(job)) = stream.next().await {
                job_marks
                    .lock()
                    .unwrap()
                    .set(job_vm(&job), job_end(&job).is_none());
            }
        });
        let vms = vm_api(client.clone(), namespace);
        let dormant: BTreeSet<String> = dormant.iter().map(|s| s.to_string()).collect();
        let awake_marks = marks.awake.clone();
        let vm_task = tokio::spawn(async move {
            let mut stream = watcher(vms, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(vm)) = stream.next().await {
                if dormant.contains(&vm.name_any()) {
                    let running = vm.data["spec"]["runStrategy"] == "Always";
                    awake_marks.lock().unwrap().set(vm.name_any(), running);
                }
            }
        });
        (marks, vec![job_task, vm_task])
    }

    fn most_active_jobs(&self) -> usize {
        self.active_jobs.lock().unwrap().most
    }

    fn most_awake(&self) -> usize {
        self.awake.lock().unwrap().most
    }

    /// The dormant VMs that are awake now.
    fn awake_now(&self) -> BTreeSet<String> {
        self.awake.lock().unwrap().now.clone()
    }

    /// The dormant VMs that were ever woken.
    fn ever_awake(&self) -> BTreeSet<String> {
        self.awake.lock().unwrap().ever.clone()
    }
}

#[tokio::test]
async fn dormant_vms_are_woken_patched_and_put_back_to_sleep_right_after_their_own_run() {
    let fleet = Fleet::new("op-dormant").await;
    let updates = (
        "double.patchkeeper.io/updates",
        "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix",
    );
    for name in ["run-a", "run-b"] {
        fleet.vm(name, "Always", &[updates]).await;
    }
    for name in ["sleepy-a", "sleepy-b", "sleepy-c"] {
        fleet
            .vm(
                name,
                "Halted",
                &[updates, ("double.patchkeeper.io/boot-seconds", "2")],
            )
            .await;
    }
    let (marks, _watchers) = Watermarks::start(
        &fleet.client,
        &fleet.ns.name,
        &["sleepy-a", "sleepy-b", "sleepy-c"],
    );
    fleet
        .apply(window(
            "nightly",
            json!({"maxConcurrent": 2}),
            json!({"wake": true, "maxAwake": 2}),
        ))
        .await;

    let operator = fleet.operator("main");
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(120))
        .await;

    let last = window.status.unwrap().last_run.unwrap();
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!(
        (last.counts.succeeded, last.counts.failed),
        (5, 0),
        "{last:?}"
    );
    for name in ["sleepy-a", "sleepy-b", "sleepy-c"] {
        let vm = vm_api(fleet.client.clone(), &fleet.ns.name)
            .get(name)
            .await
            .unwrap();
        assert_eq!(
            vm.data["spec"]["runStrategy"], "Halted",
            "{name} was put back to sleep"
        );
        let managed = fleet.managed_vms().get(name).await.unwrap().status.unwrap();
        assert_eq!(managed.patch.unwrap().phase, PatchPhase::Done);
        let record = &managed.history[0];
        assert!(record.woken && record.result == "Succeeded", "{record:?}");
        // Put back right after its own run: well before the window's end at 23:00.
        assert!(record.finished_at.as_ref().unwrap().0 < "2026-12-08T22:30:00Z".parse().unwrap());
    }
    assert!(
        marks.most_active_jobs() <= 2,
        "{} VMs patched at once",
        marks.most_active_jobs()
    );
    assert!(
        marks.most_awake() <= 2,
        "{} dormant VMs awake at once",
        marks.most_awake()
    );
    assert!(marks.most_awake() >= 1, "no dormant VM was ever woken");
    let reasons: Vec<_> = fleet
        .events_for("sleepy-a")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "Waking",
        "Booted",
        "Scanning",
        "Installing",
        "Restoring",
        "Patched",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event on sleepy-a: {reasons:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_window_stalls_with_a_warning_and_touches_nothing() {
    let fleet = Fleet::new("op-invalid").await;
    fleet.vm("sleepy", "Halted", &[]).await;
    let operator = fleet.operator("main");
    for file in [
        "window-bad-cron",
        "window-unknown-time-zone",
        "window-missing-baseline",
        "window-cron-prefix",
    ] {
        let path = format!(
            "{}/tests/invalid-for-operator/{file}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut manifest: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        manifest["spec"]["selector"] = json!({"matchLabels": {"env": "dev"}});
        fleet.apply(manifest).await;
    }
    let expected = [
        ("window-bad-cron", "InvalidSchedule", "hour"),
        (
            "window-unknown-time-zone",
            "UnknownTimeZone",
            "Europe/Atlantis",
        ),
        (
            "window-missing-baseline",
            "BaselineNotFound",
            "does-not-exist",
        ),
        ("window-cron-prefix", "UnsupportedSchedule", "timeZone"),
    ];
    for (name, reason, mentions) in expected {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let stalled = loop {
            let status = fleet
                .windows()
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap_or_default();
            if let Some(c) = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Stalled" && c.status == "True")
            {
                assert_eq!(status.phase, Some(WindowPhase::Stalled));
                break c.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never stalled\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(stalled.reason, reason, "{name}: {stalled:?}");
        assert!(
            stalled.message.contains(mentions),
            "{name}: {}",
            stalled.message
        );
        let events = fleet.events_for(name).await;
        assert!(
            events
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)),
            "{name}: no Warning Event {reason}: {events:?}"
        );
    }
    // Past the time every one of these windows would have opened: still nothing touched.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let vm = vm_api(fleet.client.clone(), &fleet.ns.name)
        .get("sleepy")
        .await
        .unwrap();
    assert_eq!(vm.data["spec"]["runStrategy"], "Halted");
    let jobs = Api::<Job>::namespaced(fleet.client.clone(), &fleet.ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        jobs.items.is_empty(),
        "jobs were created: {:?}",
        jobs.items.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn max_concurrent_and_max_awake_are_never_exceeded() {
    let fleet = Fleet::new("op-limits").await;
    let dormant = [
        "sleepy-1", "sleepy-2", "sleepy-3", "sleepy-4", "sleepy-5", "sleepy-6",
    ];
    let running = ["busy-1", "busy-2", "busy-3", "busy-4", "busy-5", "busy-6"];
    for (i, name) in running.iter().enumerate() {
        let patch = (PATCH_SECONDS, if i % 2 == 0 { "1" } else { "2" });
        fleet.vm(name, "Always", &[patch]).await;
    }
    for (i, name) in dormant.iter().enumerate() {
        let patch = (PATCH_SECONDS, if i % 2 == 0 { "2" } else { "1" });
        fleet.vm(name, "Halted", &[patch]).await;
    }
    let (marks, _watchers) = Watermarks::start(&fleet.client, &fleet.ns.name, &dormant);
    let limits = window(
        "nightly",
        json!({"maxConcurrent": 3}),
        json!({"maxAwake": 2}),
    );
    fleet.apply(limits).await;

    let operator = fleet.operator("main");
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(150))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!(last.counts.succeeded, 12, "{last:?}");
    assert_eq!(marks.most_active_jobs(), 3, "most VMs patched at once");
    assert_eq!(marks.most_awake(), 2, "most dormant VMs awake at once");
    assert_eq!(marks.ever_awake().len(), 6, "every dormant VM was woken");
    assert!(
        marks.awake_now().is_empty(),
        "still awake: {:?}",
        marks.awake_now()
    );
}

#[tokio::test]
async fn the_failure_budget_halts_the_run() {
    let fleet = Fleet::new("op-budget").await;
    // Name order is start order: the two failing VMs and a slow one start first, and the
    // slow one is still patching when the second failure spends the budget.
    fleet
        .vm("a-fails", "Always", &[SOME_UPDATES, FAILING_INSTALL])
        .await;
    fleet
        .vm("b-fails", "Always", &[SOME_UPDATES, FAILING_INSTALL])
        .await;
    fleet
        .vm("c-slow", "Always", &[SOME_UPDATES, (PATCH_SECONDS, "25")])
        .await;
    for name in ["d-waits", "e-waits", "f-waits"] {
        fleet.vm(name, "Always", &[SOME_UPDATES]).await;
    }
    let rollout = json!({"maxConcurrent": 3, "maxFailures": 2});
    fleet.apply(window("nightly", rollout, json!({}))).await;

    let operator = fleet.operator("main");
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(150))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Halted), "{last:?}");
    assert!(last.halted, "{last:?}");
    let status = window.status.unwrap();
    assert_eq!(status.phase, Some(WindowPhase::Halted));
    let why = last.message.clone().unwrap_or_default();
    assert!(
        why.contains("failure budget is 2"),
        "the run says why it halted: {why:?}"
    );
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert!(ready.message.contains("failure budget"), "{ready:?}");
    assert!(
        fleet.has_warning("nightly", "Halted").await,
        "no Warning Event Halted"
    );

    let jobs = fleet.run_jobs().await;
    let budget_spent = failure_times(&jobs)[1];
    for scan in jobs.iter().filter(|j| job_step(j) == "scan") {
        assert!(
            job_created(scan) <= budget_spent,
            "{} started at {} after the budget ran out at {budget_spent}",
            job_vm(scan),
            job_created(scan)
        );
    }
    assert!(
        last_job_end(&jobs, "c-slow").unwrap() >= budget_spent,
        "c-slow was still patching at the halt"
    );
    assert_eq!(
        fleet.last_record("c-slow").await.result,
        "Succeeded",
        "patching VMs finish"
    );
    let started = vms_with_jobs(&jobs);
    assert!(
        !started.contains("f-waits"),
        "a VM started after the halt: {started:?}"
    );
    assert!(fleet.managed_status("f-waits").await.patch.is_none());
}

#[tokio::test]
async fn a_failing_canary_wave_stops_promotion() {
    let fleet = Fleet::new("op-canary-fails").await;
    for name in ["canary-1", "canary-2"] {
        let failing = [SOME_UPDATES, FAILING_INSTALL];
        fleet
            .labelled_vm(name, "Always", &failing, &[("env", "dev"), CANARY])
            .await;
    }
    for name in ["rest-1", "rest-2", "rest-3"] {
        fleet.vm(name, "Always", &[SOME_UPDATES]).await;
    }
    // No soak: the next wave would start the moment the canary wave is done.
    let rollout = json!({"maxConcurrent": 2, "maxFailures": 1, "waves": canary_waves(None)});
    fleet.apply(window("nightly", rollout, json!({}))).await;

    let operator = fleet.operator("main");
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(150))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Halted), "{last:?}");
    assert_eq!(last.wave.as_deref(), Some("canary"), "{last:?}");
    let started = vms_with_jobs(&fleet.run_jobs().await);
    assert_eq!(
        started,
        BTreeSet::from(["canary-1".into(), "canary-2".into()])
    );
    for name in ["rest-1", "rest-2", "rest-3"] {
        assert!(
            fleet.managed_status(name).await.patch.is_none(),
            "{name} was started"
        );
    }
}

#[tokio::test]
async fn a_successful_canary_is_promoted_after_its_soak() {
    let fleet = Fleet::new("op-canary-soaks").await;
    fleet
        .labelled_vm("canary", "Always", &[], &[("env", "dev"), CANARY])
        .await;
    for name in ["rest-1", "rest-2"] {
        fleet.vm(name, "Always", &[]).await;
    }
    let rollout = json!({"maxConcurrent": 2, "waves": canary_waves(Some("2m"))});
    fleet.apply(window("nightly", rollout, json!({}))).await;
    let clock = TestClock::at_rate(30.0);
    let soak = SignedDuration::from_mins(2);

    let operator = fleet.operator_with("main", clock);
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(90))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!(last.counts.succeeded, 3, "{last:?}");
    // In the operator's own time, from the VMs' records.
    let canary_done = fleet.last_record("canary").await.finished_at.unwrap().0;
    for name in ["rest-1", "rest-2"] {
        let started = fleet.last_record(name).await.started_at.0;
        assert!(
            started >= canary_done + soak,
            "{name} started at {started}, canary done at {canary_done}"
        );
    }
    // In real time, from the Jobs: the soak takes 4 s at this rate.
    let jobs = fleet.run_jobs().await;
    let canary_job_done = last_job_end(&jobs, "canary").unwrap();
    let least = SignedDuration::try_from(clock.real(soak)).unwrap() - SignedDuration::from_secs(1);
    for job in jobs.iter().filter(|j| job_vm(j) != "canary") {
        let waited = job_created(job).duration_since(canary_job_done);
        assert!(
            waited >= least,
            "{} came {waited} after the canary",
            job_vm(job)
        );
    }
    assert!(
        fleet.has_event("nightly", "WavePromoted").await,
        "no WavePromoted Event"
    );
}

#[tokio::test]
async fn closing_the_window_mid_run_puts_every_woken_vm_back_to_sleep() {
    let fleet = Fleet::new("op-closing").await;
    let dormant = ["sleepy-1", "sleepy-2", "sleepy-3", "sleepy-4"];
    for name in dormant {
        fleet.vm(name, "Halted", &[(PATCH_SECONDS, "120")]).await;
    }
    let (marks, _watchers) = Watermarks::start(&fleet.client, &fleet.ns.name, &dormant);
    let rollout = json!({"maxConcurrent": 1, "maxFailures": 10});
    let short = amended(
        window("nightly", rollout, json!({"maxAwake": 2})),
        json!({"duration": "2m", "cutoff": "1m"}),
    );
    fleet.apply(short).await;

    // Ten times real speed: the cutoff comes 6 s and the end 12 s after the opening.
    let operator = fleet.operator_with("main", TestClock::at_rate(10.0));
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(60))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Incomplete), "{last:?}");
    assert!(
        !marks.ever_awake().is_empty(),
        "no dormant VM was ever woken"
    );
    assert!(
        marks.awake_now().is_empty(),
        "still awake: {:?}",
        marks.awake_now()
    );
    for name in dormant {
        assert_eq!(
            fleet.vm_spec(name).await["runStrategy"],
            "Halted",
            "{name} is back"
        );
        assert!(fleet.is_stopped(name).await, "{name} is powered off");
    }
    let cutoff = last.last_start_at.0;
    let with_jobs = vms_with_jobs(&fleet.run_jobs().await);
    let mut interrupted = Vec::new();
    for name in dormant {
        match fleet.started_at(name).await {
            Some(at) => assert!(at < cutoff, "{name} started at {at}, after the cutoff"),
            None => assert!(
                !with_jobs.contains(name),
                "{name} has a Job but never started"
            ),
        }
        if fleet.interrupted_by_the_close(name).await {
            interrupted.push(name);
        }
    }
    assert_eq!(
        interrupted.len(),
        1,
        "one VM was patching when the window closed"
    );
}

#[tokio::test]
async fn a_restarted_operator_creates_no_duplicate_job_and_leaves_no_vm_awake() {
    let fleet = Fleet::new("op-restart").await;
    let patching = [SOME_UPDATES, (PATCH_SECONDS, "2"), (BOOT_SECONDS, "2")];
    let dormant = ["sleepy-1", "sleepy-2", "sleepy-3"];
    for name in ["busy-1", "busy-2"] {
        fleet.vm(name, "Always", &patching).await;
    }
    for name in dormant {
        fleet.vm(name, "Halted", &patching).await;
    }
    let (marks, _watchers) = Watermarks::start(&fleet.client, &fleet.ns.name, &dormant);
    let limits = window(
        "nightly",
        json!({"maxConcurrent": 2}),
        json!({"maxAwake": 2}),
    );
    fleet.apply(limits).await;

    let clock = TestClock::default();
    let started = Instant::now();
    let first = fleet.operator_with("first", clock);
    let awake = marks.clone();
    fleet
        .until(
            "a VM patching while a dormant one is awake",
            &first,
            Duration::from_secs(60),
            async |fleet| !fleet.run_jobs().await.is_empty() && !awake.awake_now().is_empty(),
        )
        .await;
    first.kill();
    // Jobs end and VMs boot while no operator runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = fleet.operator_with("second", clock.after(started.elapsed()));
    let window = fleet
        .run_ended("nightly", &second, Duration::from_secs(120))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!(last.counts.succeeded, 5, "{last:?}");
    let per_step = jobs_per_step(&fleet.run_jobs().await);
    assert_eq!(
        per_step.len(),
        10,
        "a scan and an install for each VM: {per_step:?}"
    );
    assert!(
        per_step.values().all(|&n| n == 1),
        "duplicate Jobs: {per_step:?}"
    );
    assert_eq!(marks.ever_awake().len(), 3);
    assert!(
        marks.awake_now().is_empty(),
        "still awake: {:?}",
        marks.awake_now()
    );
    for name in dormant {
        assert_eq!(
            fleet.vm_spec(name).await["runStrategy"],
            "Halted",
            "{name} is back"
        );
    }
}

#[tokio::test]
async fn a_vm_deleted_mid_run_does_not_stop_the_run() {
    let fleet = Fleet::new("op-deleted").await;
    fleet.vm("doomed", "Always", &[(PATCH_SECONDS, "30")]).await;
    for name in ["keep-1", "keep-2"] {
        fleet.vm(name, "Always", &[SOME_UPDATES]).await;
    }
    fleet
        .apply(window("nightly", json!({"maxConcurrent": 3}), json!({})))
        .await;

    let operator = fleet.operator("main");
    fleet
        .until(
            "doomed patching",
            &operator,
            Duration::from_secs(30),
            async |fleet| vms_with_jobs(&fleet.run_jobs().await).contains("doomed"),
        )
        .await;
    fleet.delete_vm("doomed").await;
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(60))
        .await;

    let last = last_run(&window);
    assert_eq!(last.result, Some(RunResult::Succeeded), "{last:?}");
    assert_eq!(last.counts.succeeded, 2, "{last:?}");
    for name in ["keep-1", "keep-2"] {
        assert_eq!(fleet.last_record(name).await.result, "Succeeded", "{name}");
    }
    fleet
        .until(
            "doomed's ManagedVM collected",
            &operator,
            Duration::from_secs(30),
            async |fleet| {
                fleet
                    .managed_vms()
                    .get_opt("doomed")
                    .await
                    .unwrap()
                    .is_none()
            },
        )
        .await;
}

#[tokio::test]
async fn a_guest_that_never_becomes_reachable_fails_with_the_boot_timeout_and_is_put_back() {
    let fleet = Fleet::new("op-unreachable").await;
    fleet
        .vm("silent", "Halted", &[(NEVER_REACHABLE, "true")])
        .await;
    let dormant = json!({"maxAwake": 1, "bootTimeout": "1m"});
    fleet.apply(window("nightly", json!({}), dormant)).await;

    // Thirty times real speed: the boot timeout is 2 s.
    let operator = fleet.operator_with("main", TestClock::at_rate(30.0));
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(60))
        .await;

    assert_eq!(last_run(&window).counts.failed, 1);
    let record = fleet.last_record("silent").await;
    assert_eq!(record.result, "Failed", "{record:?}");
    assert!(record.woken, "{record:?}");
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("boot") && reason.contains("IP address"),
        "{reason:?}"
    );
    assert!(
        reason.contains("1m"),
        "the reason names the timeout: {reason:?}"
    );
    assert_eq!(fleet.vm_spec("silent").await["runStrategy"], "Halted");
    fleet
        .until(
            "silent powered off",
            &operator,
            Duration::from_secs(10),
            async |fleet| fleet.is_stopped("silent").await,
        )
        .await;
    assert!(
        fleet.run_jobs().await.is_empty(),
        "a Job was created for an unreachable VM"
    );
    assert!(
        fleet.has_warning("silent", "PatchFailed").await,
        "no Warning Event PatchFailed"
    );
}

#[tokio::test]
async fn a_vm_selected_by_two_windows_with_different_baselines_is_not_patched() {
    let fleet = Fleet::new("op-conflict").await;
    fleet.apply(baseline("prod")).await;
    fleet
        .labelled_vm(
            "contested",
            "Always",
            &[],
            &[("env", "dev"), ("tier", "db")],
        )
        .await;
    fleet.vm("plain", "Always", &[]).await;
    fleet.apply(window("nightly", json!({}), json!({}))).await;
    let databases = amended(
        window("databases", json!({}), json!({})),
        json!({"selector": {"matchLabels": {"tier": "db"}}, "baselineRef": {"name": "prod"}}),
    );
    fleet.apply(databases).await;

    let operator = fleet.operator("main");
    let nightly = fleet
        .run_ended("nightly", &operator, Duration::from_secs(60))
        .await;
    let databases = fleet
        .run_ended("databases", &operator, Duration::from_secs(30))
        .await;

    let status = fleet.managed_status("contested").await;
    let stalled = condition(&status.conditions, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "WindowConflict"),
        "{stalled:?}"
    );
    assert!(status.patch.is_none(), "{status:?}");
    assert_eq!(
        vms_with_jobs(&fleet.run_jobs().await),
        BTreeSet::from(["plain".to_string()])
    );
    let nightly = last_run(&nightly);
    assert_eq!(
        (nightly.counts.succeeded, nightly.counts.skipped),
        (1, 1),
        "{nightly:?}"
    );
    let databases = last_run(&databases);
    assert_eq!(
        (databases.counts.total, databases.counts.skipped),
        (1, 1),
        "{databases:?}"
    );
    assert!(fleet.has_warning("contested", "WindowConflict").await);
}

#[tokio::test]
async fn a_vm_no_window_selects_is_inventoried_and_says_so() {
    let fleet = Fleet::new("op-uncovered").await;
    fleet.apply(window("nightly", json!({}), json!({}))).await;
    fleet
        .labelled_vm("stray", "Always", &[], &[("env", "test")])
        .await;

    let operator = fleet.operator("main");
    fleet
        .until(
            "stray inventoried",
            &operator,
            Duration::from_secs(30),
            async |fleet| {
                let managed = fleet.managed_vms().get_opt("stray").await.unwrap();
                managed.is_some_and(|m| m.status.is_some_and(|s| !s.conditions.is_empty()))
            },
        )
        .await;

    let vm = vm_api(fleet.client.clone(), &fleet.ns.name)
        .get("stray")
        .await
        .unwrap();
    let managed = fleet.managed_vms().get("stray").await.unwrap();
    let owner = &managed.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("VirtualMachine", "stray")
    );
    assert_eq!(Some(&owner.uid), vm.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    let status = managed.status.unwrap();
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "NotCovered"),
        "{ready:?}"
    );
    assert!(status.window.is_none(), "{status:?}");
}

#[tokio::test]
async fn the_original_run_strategy_is_restored_exactly() {
    let fleet = Fleet::new("op-strategy").await;
    fleet.vm("manual", "Manual", &[SOME_UPDATES]).await;
    fleet
        .create_vm(&legacy_vm("legacy", false, &[SOME_UPDATES]))
        .await;
    let limits = window(
        "nightly",
        json!({"maxConcurrent": 2}),
        json!({"maxAwake": 2}),
    );
    fleet.apply(limits).await;

    let operator = fleet.operator("main");
    let window = fleet
        .run_ended("nightly", &operator, Duration::from_secs(60))
        .await;

    assert_eq!(last_run(&window).result, Some(RunResult::Succeeded));
    let manual = fleet.vm_spec("manual").await;
    assert_eq!(
        (&manual["runStrategy"], manual.get("running")),
        (&json!("Manual"), None)
    );
    let legacy = fleet.vm_spec("legacy").await;
    assert_eq!(
        (&legacy["running"], legacy.get("runStrategy")),
        (&json!(false), None)
    );
    for name in ["manual", "legacy"] {
        assert!(fleet.last_record(name).await.woken, "{name} was not woken");
        assert!(fleet.is_stopped(name).await, "{name} is still running");
    }
}
