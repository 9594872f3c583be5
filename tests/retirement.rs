//! Keep or retire against the real control plane: verdicts with their reasons, the label
//! and Events that make them visible, revocation, exceptions that waive reasons until they
//! expire, the `Stop` and `Delete` actions after their grace period, and the evidence the
//! verdict stands on (dormancy, failed runs, missed deadlines, soaking updates), which
//! survives a restart of the operator and never comes from an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use patchkeeper::api::managed_vm::{
    ComplianceState, Decision, ManagedVMStatus, PendingUpdate, PowerState, RetirementReason,
};
use patchkeeper::api::{ManagedVM, PatchBaseline, PatchException};
use serde_json::json;
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::doubles::scenario::{FAIL, NEVER_REACHABLE, OS, UPDATES};
use support::kubevirt::{create_vm, install_kubevirt_crds, labelled, virtual_machine, vm_api};
use support::operator::{Operator, OperatorConfig};
use support::{TestNamespace, testbed};

/// The operator's clock in most tests: 10:00 UTC on the second Tuesday of December, hours
/// before [`MONTHLY`] opens.
const CLOCK_START: &str = "2026-12-08T10:00:00Z";

/// Five seconds before [`NIGHTLY`] opens.
const BEFORE_NIGHTLY: &str = "2026-12-08T21:59:55Z";

/// The second Tuesday of the month at 22:00 UTC: never open during a test.
const MONTHLY: &str = "0 22 * * TUE#2";

/// Every night at 22:00 UTC.
const NIGHTLY: &str = "0 22 * * *";

/// The label that names a VM's owner; the VMs of these tests carry it unless a test is
/// about owners.
const OWNER: (&str, &str) = ("owner", "team-a");

/// The guest of a VM with this annotation runs Debian 9, whose support ended in 2022.
const STRETCH: (&str, &str) = (OS, "debian 9 Debian GNU/Linux 9 (stretch)");

/// What scans of a VM with this annotation find: a critical security update.
const CRITICAL_UPDATE: (&str, &str) = (UPDATES, "openssl=3.0.15-1:Security:Critical");

/// What scans of a VM with this annotation find: an update as apt reports it, with neither
/// classification nor severity.
const APT_UPDATE: (&str, &str) = (UPDATES, "curl=7.88.1-10");

/// How the operator's clock runs in a test: where it starts and how fast it goes.
#[derive(Clone, Copy, Debug)]
struct TestClock {
    start: Timestamp,
    rate: f64,
}

impl TestClock {
    /// A clock starting at `start` (RFC 3339) that runs `rate` times as fast as real time.
    fn new(start: &str, rate: f64) -> Self {
        Self {
            start: start.parse().unwrap(),
            rate,
        }
    }

    /// What the clock reads `elapsed` real time after it started.
    fn after(self, elapsed: Duration) -> Timestamp {
        let span = SignedDuration::try_from(elapsed.mul_f64(self.rate)).unwrap();
        self.start.checked_add(span).unwrap()
    }
}

/// The real operator binary, running, with the clock it was started with.
struct RunningOperator {
    process: Operator,
    clock: TestClock,
    /// Taken just before the process started, so that [`RunningOperator::now`] is never
    /// behind the operator's own clock.
    started: Instant,
}

impl RunningOperator {
    /// What the operator's clock reads now, or a moment later: never earlier. An operator
    /// that acted while this read before some instant certainly acted before it.
    fn now(&self) -> Timestamp {
        self.clock.after(self.started.elapsed())
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }
}

/// A namespace with the KubeVirt and kubelet doubles, a baseline `prod` and a window
/// `patching` over every VM in it.
struct Setup {
    ns: TestNamespace,
    client: Client,
    clock: TestClock,
    _kubevirt: KubevirtDouble,
    _kubelet: KubeletDouble,
}

impl Setup {
    /// The baseline retires VMs as `retirement` says; the window never opens; the clock
    /// runs at real speed from [`CLOCK_START`].
    async fn new(prefix: &str, retirement: serde_json::Value) -> Self {
        let clock = TestClock::new(CLOCK_START, 1.0);
        Self::build(prefix, retiring(retirement), never_open(), clock).await
    }

    /// The baseline has `baseline` for its spec, the window is `window`, and the operator
    /// will start with `clock`.
    async fn build(
        prefix: &str,
        baseline: serde_json::Value,
        window: serde_json::Value,
        clock: TestClock,
    ) -> Self {
        testbed().install_crds();
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let client = testbed().client().await;
        let setup = Self {
            _kubevirt: KubevirtDouble::start(client.clone(), Some(&ns.name)),
            _kubelet: KubeletDouble::start(client.clone(), Some(&ns.name)),
            ns,
            client,
            clock,
        };
        setup
            .apply(manifest("PatchBaseline", "prod", baseline))
            .await;
        setup.apply(window).await;
        setup
    }

    /// Starts the operator with the setup's clock.
    fn operator(&self) -> RunningOperator {
        self.operator_with(self.clock)
    }

    fn operator_with(&self, clock: TestClock) -> RunningOperator {
        let config = OperatorConfig {
            namespaces: vec![self.ns.name.clone()],
            clock_start: Some(clock.start.to_string()),
            clock_rate: Some(clock.rate),
            ..OperatorConfig::default()
        };
        let started = Instant::now();
        let process = Operator::start(&self.ns.name, &config);
        RunningOperator {
            process,
            clock,
            started,
        }
    }

    /// Kills the operator, as a crash would, and starts another whose clock goes on from
    /// where the first one's is now, so that time neither jumps back nor stands still.
    fn restart(&self, running: RunningOperator) -> RunningOperator {
        let RunningOperator {
            process,
            clock,
            started,
        } = running;
        process.kill();
        let resumed = TestClock {
            start: clock.after(started.elapsed()),
            ..clock
        };
        self.operator_with(resumed)
    }

    async fn apply(&self, object: serde_json::Value) {
        apply(&self.client, &self.ns.name, object).await.unwrap();
    }

    /// Creates a VirtualMachine with the given run strategy, labels and scenario.
    async fn vm(
        &self,
        name: &str,
        run_strategy: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) {
        let vm = labelled(virtual_machine(name, run_strategy, annotations), labels);
        create_vm(self.client.clone(), &self.ns.name, &vm).await;
    }

    async fn patch_vm(&self, name: &str, patch: serde_json::Value) {
        let vms = vm_api(self.client.clone(), &self.ns.name);
        vms.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn label_vm(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"labels": {key: value}}});
        self.patch_vm(name, patch).await;
    }

    /// Sets one annotation of a VM's scenario, or removes it with `None`.
    async fn script_vm(&self, name: &str, annotation: &str, value: Option<&str>) {
        let patch = json!({"metadata": {"annotations": {annotation: value}}});
        self.patch_vm(name, patch).await;
    }

    /// The VirtualMachine as stored now; `None` once it is deleted.
    async fn stored_vm(&self, name: &str) -> Option<DynamicObject> {
        let vms = vm_api(self.client.clone(), &self.ns.name);
        vms.get_opt(name).await.unwrap()
    }

    fn managed_vms(&self) -> Api<ManagedVM> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Waits until the ManagedVM's status satisfies `check`, and returns it.
    async fn managed_until(
        &self,
        name: &str,
        operator: &RunningOperator,
        what: &str,
        check: impl Fn(&ManagedVM) -> bool,
    ) -> ManagedVM {
        let api = self.managed_vms();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(managed) = api.get(name).await
                && check(&managed)
            {
                return managed;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: never {what}; last: {:?}\noperator log:\n{}",
                api.get(name).await.ok().and_then(|m| m.status),
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The Events about the object `name` of `kind`.
    async fn events(&self, name: &str, kind: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .filter(|e| e.involved_object.kind.as_deref() == Some(kind))
            .collect()
    }

    /// Waits for an Event with `reason` about the object `name` of `kind`, and returns its
    /// message. The operator writes status first and tells the story after, so an Event
    /// may follow the status it explains by a moment.
    async fn event(
        &self,
        name: &str,
        kind: &str,
        reason: &str,
        operator: &RunningOperator,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.events(name, kind).await;
            if let Some(event) = events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
                return event.message.clone().unwrap_or_default();
            }
            let reasons: Vec<_> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {reason} Event about {kind} {name}, only {reasons:?}\noperator log:\n{}",
                operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The patch Jobs that install on a VM.
    async fn install_jobs(&self) -> Vec<Job> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.ns.name);
        let installs = ListParams::default().labels("patchkeeper.io/job=install");
        jobs.list(&installs).await.unwrap().items
    }
}

/// Applies `object` server-side, as `kubectl apply --server-side` does.
async fn apply(
    client: &Client,
    namespace: &str,
    object: serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap();
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk));
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    let params = PatchParams::apply("retirement-test");
    api.patch(&name, &params, &Patch::Apply(object)).await
}

/// A patchkeeper object of `kind` named `name`.
fn manifest(kind: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec
    })
}

/// A baseline spec with only a retirement rule.
fn retiring(retirement: serde_json::Value) -> serde_json::Value {
    json!({ "retirement": retirement })
}

/// The window `patching`: every VM of the namespace, against baseline `prod`, opening on
/// `schedule` (UTC) for `duration`, with room for every VM to fail.
fn window(schedule: &str, duration: &str) -> serde_json::Value {
    manifest(
        "MaintenanceWindow",
        "patching",
        json!({
            "schedule": schedule, "timeZone": "UTC", "duration": duration, "selector": {},
            "baselineRef": {"name": "prod"},
            "rollout": {"maxConcurrent": 5, "maxFailures": 10},
            "executor": {"sshSecretRef": {"name": "ssh"}}
        }),
    )
}

/// A window that never opens while a test runs from [`CLOCK_START`].
fn never_open() -> serde_json::Value {
    window(MONTHLY, "4h")
}

/// An exception for the VM `vm` waiving `reason` until `expires`.
fn waiver(vm: &str, reason: &str, expires: &str) -> serde_json::Value {
    manifest(
        "PatchException",
        &format!("{vm}-waiver"),
        json!({
            "owner": "team-a@example.com", "reason": "the guest was repaired",
            "expires": expires, "vmNames": [vm], "retirementReasons": [reason]
        }),
    )
}

fn status(managed: &ManagedVM) -> ManagedVMStatus {
    managed.status.clone().unwrap_or_default()
}

fn verdict(managed: &ManagedVM) -> Option<(Decision, Vec<RetirementReason>)> {
    let verdict = managed.status.as_ref()?.verdict.as_ref()?;
    Some((
        verdict.decision,
        verdict.reasons.iter().map(|r| r.reason).collect(),
    ))
}

fn is_retired_for(reason: RetirementReason) -> impl Fn(&ManagedVM) -> bool {
    move |m| {
        verdict(m).is_some_and(|(d, reasons)| d == Decision::Retire && reasons.contains(&reason))
    }
}

fn is_kept(managed: &ManagedVM) -> bool {
    verdict(managed).is_some_and(|(d, _)| d == Decision::Keep)
}

/// The message of the verdict's first reason.
fn first_reason(managed: &ManagedVM) -> String {
    let verdict = status(managed).verdict.unwrap();
    verdict.reasons[0].message.clone()
}

fn retire_condition(status: &ManagedVMStatus) -> Option<&Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Retire" && c.status == "True")
}

fn dormant_since(managed: &ManagedVM) -> Option<Timestamp> {
    let power = managed.status.as_ref()?.power.as_ref()?;
    power.dormant_since.as_ref().map(|t| t.0)
}

fn compliance_state(managed: &ManagedVM) -> Option<ComplianceState> {
    Some(managed.status.as_ref()?.compliance.as_ref()?.state)
}

fn last_scan_at(managed: &ManagedVM) -> Option<Timestamp> {
    let compliance = managed.status.as_ref()?.compliance.as_ref()?;
    compliance.last_scan_at.as_ref().map(|t| t.0)
}

/// The update to `package` as the VM's scans recorded it, with its first sighting.
fn pending(managed: &ManagedVM, package: &str) -> Option<PendingUpdate> {
    let compliance = managed.status.as_ref()?.compliance.as_ref()?;
    let update = compliance
        .pending_updates
        .iter()
        .find(|u| u.name == package);
    update.cloned()
}

/// The grace period's end, once a retired VM's verdict has one.
fn grace_period_end(managed: &ManagedVM) -> Option<Timestamp> {
    let verdict = managed.status.as_ref()?.verdict.as_ref()?;
    verdict.grace_period_ends_at.as_ref().map(|t| t.0)
}

/// An instant as the API server keeps it, to the second and without a zone: the form in
/// which an Event's message can be searched for it.
fn to_the_second(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

fn run_strategy(vm: &DynamicObject) -> String {
    vm.data["spec"]["runStrategy"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn job_env(job: &Job, name: &str) -> Option<String> {
    let spec = job.spec.as_ref()?.template.spec.as_ref()?;
    let env = spec.containers[0].env.as_ref()?;
    env.iter().find(|e| e.name == name)?.value.clone()
}

#[tokio::test]
async fn a_vm_without_an_owner_is_flagged_and_kept_again_once_it_has_one() {
    let reasons = json!({"reasons": {"missingOwnerLabel": "owner"}});
    let setup = Setup::new("ret-owner", reasons).await;
    setup.vm("orphan", "Always", &[("env", "prod")], &[]).await;
    let operator = setup.operator();

    let flagged = setup
        .managed_until(
            "orphan",
            &operator,
            "flagged",
            is_retired_for(RetirementReason::MissingOwner),
        )
        .await;
    assert_eq!(
        flagged
            .labels()
            .get("patchkeeper.io/verdict")
            .map(String::as_str),
        Some("retire")
    );
    let status = flagged.status.unwrap();
    let condition = retire_condition(&status).expect("a Retire condition");
    assert!(condition.message.contains("owner"), "{condition:?}");
    let retired = setup
        .managed_vms()
        .list(&ListParams::default().labels("patchkeeper.io/verdict=retire"))
        .await
        .unwrap();
    let names: Vec<String> = retired.items.iter().map(|m| m.name_any()).collect();
    assert_eq!(names, ["orphan"]);
    setup
        .event("orphan", "VirtualMachine", "RetirementFlagged", &operator)
        .await;

    setup.label_vm("orphan", "owner", "team-a").await;
    let kept = setup
        .managed_until("orphan", &operator, "kept", is_kept)
        .await;
    assert!(!kept.labels().contains_key("patchkeeper.io/verdict"));
    assert!(retire_condition(kept.status.as_ref().unwrap()).is_none());
    setup
        .event("orphan", "ManagedVM", "RetirementRevoked", &operator)
        .await;
}

#[tokio::test]
async fn a_vm_past_its_operating_systems_end_of_life_is_flagged() {
    let setup = Setup::new("ret-eol", json!({"reasons": {"endOfLife": true}})).await;
    setup.vm("old", "Always", &[OWNER], &[STRETCH]).await;
    setup.vm("current", "Always", &[OWNER], &[]).await;
    let operator = setup.operator();

    let old = setup
        .managed_until(
            "old",
            &operator,
            "flagged",
            is_retired_for(RetirementReason::EndOfLife),
        )
        .await;
    let message = first_reason(&old);
    assert!(message.contains("debian 9"), "{message}");
    setup
        .managed_until("current", &operator, "kept", is_kept)
        .await;
}

#[tokio::test]
async fn an_exception_waives_a_reason_until_it_expires_and_the_expiry_is_announced() {
    let setup = Setup::new("ret-exception", json!({"reasons": {"endOfLife": true}})).await;
    setup
        .vm("legacy-erp", "Always", &[("owner", "erp")], &[STRETCH])
        .await;
    let exception = json!({
        "owner": "erp-team@example.com", "reason": "Migration to the new ERP is planned",
        "expires": "2026-12-08T10:00:12Z", "vmNames": ["legacy-erp"],
        "retirementReasons": ["EndOfLife"]
    });
    setup
        .apply(manifest("PatchException", "erp-migration", exception))
        .await;
    let operator = setup.operator();

    let waived = setup
        .managed_until("legacy-erp", &operator, "kept under the exception", |m| {
            is_kept(m) && status(m).exceptions == ["erp-migration"]
        })
        .await;
    assert!(retire_condition(&status(&waived)).is_none());

    // The exception expires 12 s after the operator starts: the reason counts again.
    setup
        .managed_until(
            "legacy-erp",
            &operator,
            "flagged after expiry",
            is_retired_for(RetirementReason::EndOfLife),
        )
        .await;
    let exceptions: Api<PatchException> = Api::namespaced(setup.client.clone(), &setup.ns.name);
    let exception = exceptions.get("erp-migration").await.unwrap();
    let state = exception.status.unwrap().state.unwrap();
    assert_eq!(format!("{state:?}"), "Expired");
    setup
        .event("erp-migration", "PatchException", "Expired", &operator)
        .await;
}

#[tokio::test]
async fn running_vms_are_scanned_between_windows_and_nothing_is_installed() {
    let spec = json!({"assessment": {"interval": "1h", "staleAfter": "72h"}});
    let clock = TestClock::new(CLOCK_START, 1.0);
    let setup = Setup::build("ret-assess", spec, never_open(), clock).await;
    let updates = (
        UPDATES,
        "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix",
    );
    setup.vm("web", "Always", &[OWNER], &[updates]).await;
    let operator = setup.operator();

    let scanned = setup
        .managed_until("web", &operator, "assessed NonCompliant", |m| {
            let compliance = status(m).compliance.unwrap_or_default();
            compliance.state == ComplianceState::NonCompliant
                && compliance.missing.critical == 1
                && compliance.missing.total == 2
        })
        .await;
    let compliance = status(&scanned).compliance.unwrap();
    assert_eq!(compliance.pending_updates.len(), 2);
    let jobs: Api<Job> = Api::namespaced(setup.client.clone(), &setup.ns.name);
    let jobs = jobs.list(&ListParams::default()).await.unwrap();
    let steps: Vec<_> = jobs
        .items
        .iter()
        .filter_map(|j| j.labels().get("patchkeeper.io/job").cloned())
        .collect();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s == "scan"),
        "{steps:?}"
    );
    let vm = setup.stored_vm("web").await.unwrap();
    assert!(
        !vm.annotations()
            .contains_key("double.patchkeeper.io/installed"),
        "an assessment scan installed something"
    );
    setup.event("web", "ManagedVM", "Scanned", &operator).await;
}

#[tokio::test]
async fn a_dormant_vms_compliance_turns_stale_and_never_compliant_on_old_data() {
    // The clock runs 20 times as fast: the 3-minute freshness limit passes in 9 s.
    let spec = json!({"assessment": {"interval": "24h", "staleAfter": "3m"}});
    let clock = TestClock::new(CLOCK_START, 20.0);
    let setup = Setup::build("ret-stale", spec, never_open(), clock).await;
    setup.vm("quiet", "Always", &[OWNER], &[]).await;
    let operator = setup.operator();

    setup
        .managed_until("quiet", &operator, "Compliant after its scan", |m| {
            compliance_state(m) == Some(ComplianceState::Compliant)
        })
        .await;
    let halt = json!({"spec": {"runStrategy": "Halted"}});
    setup.patch_vm("quiet", halt).await;
    setup
        .managed_until("quiet", &operator, "Stale once dormant and old", |m| {
            compliance_state(m) == Some(ComplianceState::Stale)
        })
        .await;
}

#[tokio::test]
async fn dormant_vms_are_woken_to_be_scanned_one_at_a_time_and_put_back_when_asked() {
    let spec = json!({"assessment": {
        "interval": "1h", "staleAfter": "72h", "wakeToScan": true, "maxConcurrentScans": 1
    }});
    let clock = TestClock::new(CLOCK_START, 1.0);
    let setup = Setup::build("ret-wake-scan", spec, never_open(), clock).await;
    let updates = (UPDATES, "openssl=3.0.15-1:Security:Critical");
    setup.vm("sleeper-a", "Manual", &[OWNER], &[updates]).await;
    setup.vm("sleeper-b", "Halted", &[OWNER], &[updates]).await;
    let operator = setup.operator();

    // Sampled until both are scanned and back: never two awake for scans at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let back = |m: &ManagedVM| {
        let status = status(m);
        status.scan_wake.is_none()
            && status.power.is_some_and(|p| p.state == PowerState::Stopped)
            && status.compliance.is_some_and(|c| c.last_scan_at.is_some())
    };
    loop {
        let list = setup
            .managed_vms()
            .list(&ListParams::default())
            .await
            .unwrap();
        let awake = list
            .items
            .iter()
            .filter(|m| status(m).scan_wake.is_some())
            .count();
        assert!(awake <= 1, "{awake} VMs awake for scans, the limit is 1");
        if list.items.len() == 2 && list.items.iter().all(back) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never both scanned and back; last: {:?}\noperator log:\n{}",
            list.items
                .iter()
                .map(|m| (m.name_any(), &m.status))
                .collect::<Vec<_>>(),
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (name, original) in [("sleeper-a", "Manual"), ("sleeper-b", "Halted")] {
        let vm = setup.stored_vm(name).await.unwrap();
        assert_eq!(
            run_strategy(&vm),
            original,
            "{name} got its run strategy back"
        );
        let managed = setup.managed_vms().get(name).await.unwrap();
        let compliance = status(&managed).compliance.unwrap();
        assert_eq!(compliance.missing.critical, 1, "{name} was scanned");
        assert!(dormant_since(&managed).is_some(), "{name} is still dormant");
        assert!(
            !vm.annotations()
                .contains_key("double.patchkeeper.io/installed"),
            "a scan wake installed something on {name}"
        );
        let woken = setup
            .event(name, "ManagedVM", "WakingToScan", &operator)
            .await;
        assert!(
            woken.contains(&format!("run strategy was {original}")),
            "{woken}"
        );
        setup
            .event(name, "ManagedVM", "BackToSleep", &operator)
            .await;
    }
    assert!(setup.install_jobs().await.is_empty());
}

#[tokio::test]
async fn a_dormant_vm_that_never_boots_is_put_back_unscanned() {
    let spec = json!({"assessment": {"interval": "1h", "wakeToScan": true}});
    // At 30 times real speed the window's default 10-minute boot timeout passes in 20 s.
    let clock = TestClock::new(CLOCK_START, 30.0);
    let setup = Setup::build("ret-wake-fail", spec, never_open(), clock).await;
    setup
        .vm("mute", "Halted", &[OWNER], &[(NEVER_REACHABLE, "true")])
        .await;
    let operator = setup.operator();

    setup
        .managed_until("mute", &operator, "woken to be scanned", |m| {
            status(m).scan_wake.is_some()
        })
        .await;
    setup
        .managed_until("mute", &operator, "back to sleep", |m| {
            let status = status(m);
            status.scan_wake.is_none()
                && status.power.is_some_and(|p| p.state == PowerState::Stopped)
        })
        .await;
    let note = setup
        .event("mute", "ManagedVM", "ScanWakeFailed", &operator)
        .await;
    assert!(note.contains("did not boot"), "{note}");
    let vm = setup.stored_vm("mute").await.unwrap();
    assert_eq!(run_strategy(&vm), "Halted");
    let managed = setup.managed_vms().get("mute").await.unwrap();
    assert!(
        status(&managed)
            .compliance
            .and_then(|c| c.last_scan_at)
            .is_none(),
        "nothing was scanned"
    );
    assert!(
        is_kept(&managed),
        "a VM that did not boot for a scan is not retired for it"
    );
}

#[tokio::test]
async fn a_vm_dormant_longer_than_the_limit_is_flagged() {
    // At 60 times real speed the ten-minute limit passes in 10 s.
    let clock = TestClock::new(CLOCK_START, 60.0);
    let rule = retiring(json!({"reasons": {"dormantLongerThan": "10m"}}));
    let setup = Setup::build("ret-dormant", rule, never_open(), clock).await;
    setup.vm("idle", "Halted", &[OWNER], &[]).await;
    let operator = setup.operator();

    let within_limit = setup
        .managed_until("idle", &operator, "kept while within the limit", |m| {
            is_kept(m) && dormant_since(m).is_some()
        })
        .await;
    let since = dormant_since(&within_limit).unwrap();
    assert!(
        since >= clock.start && since <= operator.now(),
        "dormancy counts from when the operator first saw the VM stopped: {since}"
    );

    let flagged = setup
        .managed_until(
            "idle",
            &operator,
            "flagged as dormant",
            is_retired_for(RetirementReason::Dormant),
        )
        .await;
    let decided = status(&flagged).verdict.unwrap().since.unwrap().0;
    let limit = SignedDuration::from_mins(10);
    assert!(
        decided >= since + limit,
        "retired at {decided}, before the limit ran out at {}",
        since + limit
    );
    let message = first_reason(&flagged);
    let evidence = format!("powered off since {}", since.strftime("%Y-%m-%d"));
    assert!(
        message.contains(&evidence) && message.contains("the limit is 10m"),
        "{message}"
    );
}

#[tokio::test]
async fn a_vm_whose_runs_keep_failing_is_flagged() {
    let rule = retiring(json!({"reasons": {"consecutiveFailures": 1}}));
    let clock = TestClock::new(BEFORE_NIGHTLY, 1.0);
    let setup = Setup::build("ret-failing", rule, window(NIGHTLY, "1h"), clock).await;
    setup
        .vm("broken", "Always", &[OWNER], &[(FAIL, "always")])
        .await;
    let operator = setup.operator();

    let flagged = setup
        .managed_until(
            "broken",
            &operator,
            "flagged for its failed run",
            is_retired_for(RetirementReason::ConsecutiveFailures),
        )
        .await;
    let status = status(&flagged);
    assert_eq!(status.consecutive_failures, 1);
    let run = &status.history[0];
    assert_eq!(
        (run.window.as_str(), run.result.as_str()),
        ("patching", "Failed"),
        "{run:?}"
    );
    let message = first_reason(&flagged);
    assert!(
        message.contains("1 patch runs in a row failed; the limit is 1"),
        "{message}"
    );
    setup
        .event("broken", "VirtualMachine", "RetirementFlagged", &operator)
        .await;
}

#[tokio::test]
async fn a_successful_run_under_an_exception_revokes_the_failures_verdict_for_good() {
    // A retired VM is never patched, so only an exception waiving the failures lets it
    // prove itself in a run. At 30 times real speed, windows open every 8 s from 22:00.
    let rule = retiring(json!({"reasons": {"consecutiveFailures": 1}}));
    let mut windows = window("*/4 22 * * *", "3m");
    windows["spec"]["dormant"] = json!({"bootTimeout": "2m"});
    let clock = TestClock::new(BEFORE_NIGHTLY, 30.0);
    let setup = Setup::build("ret-recover", rule, windows, clock).await;
    setup
        .vm("revived", "Halted", &[OWNER], &[(NEVER_REACHABLE, "true")])
        .await;
    let operator = setup.operator();

    setup
        .managed_until(
            "revived",
            &operator,
            "flagged once its boot timed out",
            is_retired_for(RetirementReason::ConsecutiveFailures),
        )
        .await;
    setup.script_vm("revived", NEVER_REACHABLE, None).await;
    let waiver = waiver("revived", "ConsecutiveFailures", "2026-12-08T22:09:00Z");
    setup.apply(waiver).await;
    setup
        .managed_until("revived", &operator, "kept under the exception", |m| {
            is_kept(m) && !status(m).exceptions.is_empty()
        })
        .await;

    let recovered = setup
        .managed_until(
            "revived",
            &operator,
            "kept once the exception expired",
            |m| is_kept(m) && status(m).exceptions.is_empty(),
        )
        .await;
    let status = status(&recovered);
    assert_eq!(status.consecutive_failures, 0);
    let results: Vec<&str> = status.history.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(results, ["Succeeded", "Failed"]);
    setup
        .event("revived", "ManagedVM", "RetirementRevoked", &operator)
        .await;
}

/// A baseline whose critical, important, moderate and low updates are due within ten
/// minutes, which retires VMs missing a critical update past that, and scans every
/// `interval`.
fn ten_minute_deadlines(interval: &str) -> serde_json::Value {
    json!({
        "deadlines": {"critical": "10m", "important": "10m", "moderate": "10m", "low": "10m"},
        "assessment": {"interval": interval},
        "retirement": {"reasons": {"criticalPastDeadline": true}}
    })
}

#[tokio::test]
async fn a_vm_missing_a_critical_update_past_its_deadline_is_flagged() {
    // At 60 times real speed the ten-minute deadline passes in 10 s.
    let clock = TestClock::new(CLOCK_START, 60.0);
    let baseline = ten_minute_deadlines("24h");
    let setup = Setup::build("ret-deadline", baseline, never_open(), clock).await;
    setup
        .vm("exposed", "Always", &[OWNER], &[CRITICAL_UPDATE])
        .await;
    let operator = setup.operator();

    let scanned = setup
        .managed_until("exposed", &operator, "scanned", |m| {
            pending(m, "openssl").is_some()
        })
        .await;
    let first_seen = pending(&scanned, "openssl").unwrap().first_seen.0;
    assert!(is_kept(&scanned), "retired before the deadline ran out");

    let flagged = setup
        .managed_until(
            "exposed",
            &operator,
            "flagged past the deadline",
            is_retired_for(RetirementReason::CriticalPastDeadline),
        )
        .await;
    let status = status(&flagged);
    let decided = status.verdict.as_ref().unwrap().since.as_ref().unwrap().0;
    let due = first_seen + SignedDuration::from_mins(10);
    assert!(decided >= due, "retired at {decided}, due at {due}");
    let compliance = status.compliance.unwrap();
    assert_eq!(format!("{:?}", compliance.deadline_breaches), "[Critical]");
    let message = first_reason(&flagged);
    let evidence = format!(
        "critical update openssl 3.0.15-1 missing since {}",
        first_seen.strftime("%Y-%m-%d")
    );
    assert!(
        message.contains(&evidence) && message.contains("the deadline is 10m"),
        "{message}"
    );
}

#[tokio::test]
async fn an_update_without_a_severity_is_never_past_a_deadline() {
    // Every rated severity is due within ten minutes; the rescan after twelve (12 s at 60
    // times real speed) judges the apt update once every deadline has passed.
    let clock = TestClock::new(CLOCK_START, 60.0);
    let baseline = ten_minute_deadlines("12m");
    let setup = Setup::build("ret-unrated", baseline, never_open(), clock).await;
    setup.vm("apt", "Always", &[OWNER], &[APT_UPDATE]).await;
    let operator = setup.operator();

    let scanned = setup
        .managed_until("apt", &operator, "scanned", |m| {
            pending(m, "curl").is_some()
        })
        .await;
    let first_seen = pending(&scanned, "curl").unwrap().first_seen.0;
    let deadline_passed = first_seen + SignedDuration::from_mins(10);

    let rescanned = setup
        .managed_until("apt", &operator, "scanned after the deadlines", |m| {
            last_scan_at(m).is_some_and(|at| at > deadline_passed)
        })
        .await;
    assert!(is_kept(&rescanned), "{:?}", rescanned.status);
    let compliance = status(&rescanned).compliance.unwrap();
    assert_eq!(compliance.state, ComplianceState::NonCompliant);
    assert_eq!(compliance.missing.unspecified, 1);
    assert!(
        compliance.deadline_breaches.is_empty(),
        "{:?}",
        compliance.deadline_breaches
    );
}

/// A baseline that retires VMs without an owner, and takes `action` ten minutes after
/// flagging them.
fn acting_after_ten_minutes(action: &str) -> serde_json::Value {
    let mut retirement = json!({
        "action": action, "gracePeriod": "10m",
        "reasons": {"missingOwnerLabel": "owner"}
    });
    if action == "Delete" {
        retirement["allowDelete"] = json!(true);
    }
    retiring(retirement)
}

#[tokio::test]
async fn stop_acts_only_after_the_grace_period_and_is_announced_first() {
    // At 60 times real speed the ten-minute grace period passes in 10 s.
    let clock = TestClock::new(CLOCK_START, 60.0);
    let baseline = acting_after_ten_minutes("Stop");
    let setup = Setup::build("ret-stop", baseline, never_open(), clock).await;
    setup.vm("orphan", "Always", &[("env", "prod")], &[]).await;
    let operator = setup.operator();

    let flagged = setup
        .managed_until("orphan", &operator, "flagged with a grace period", |m| {
            is_retired_for(RetirementReason::MissingOwner)(m) && grace_period_end(m).is_some()
        })
        .await;
    let end = grace_period_end(&flagged).unwrap();
    let since = status(&flagged).verdict.unwrap().since.unwrap().0;
    assert_eq!(end, since + SignedDuration::from_mins(10));
    let announced = setup
        .event("orphan", "VirtualMachine", "RetirementScheduled", &operator)
        .await;
    assert!(
        announced.contains("will be stopped") && announced.contains(&to_the_second(end)),
        "{announced}"
    );

    loop {
        let before_end = operator.now() < end;
        let strategy = run_strategy(&setup.stored_vm("orphan").await.unwrap());
        if before_end {
            assert_eq!(strategy, "Always", "stopped before the grace period ended");
        } else if strategy == "Halted" {
            break;
        }
        assert!(
            operator.now() < end + SignedDuration::from_mins(10),
            "still not stopped long after the grace period\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup
        .event("orphan", "VirtualMachine", "RetiredStopped", &operator)
        .await;
    setup
        .managed_until("orphan", &operator, "powered off", |m| {
            status(m)
                .power
                .is_some_and(|p| p.state == PowerState::Stopped)
        })
        .await;
}

#[tokio::test]
async fn delete_acts_only_after_the_grace_period_with_opt_in() {
    // At 60 times real speed the ten-minute grace period passes in 10 s.
    let clock = TestClock::new(CLOCK_START, 60.0);
    let baseline = acting_after_ten_minutes("Delete");
    let setup = Setup::build("ret-delete", baseline, never_open(), clock).await;
    setup.vm("orphan", "Always", &[("env", "prod")], &[]).await;
    let operator = setup.operator();

    let flagged = setup
        .managed_until("orphan", &operator, "flagged with a grace period", |m| {
            grace_period_end(m).is_some()
        })
        .await;
    let end = grace_period_end(&flagged).unwrap();
    let announced = setup
        .event("orphan", "VirtualMachine", "RetirementScheduled", &operator)
        .await;
    assert!(
        announced.contains("will be deleted") && announced.contains(&to_the_second(end)),
        "{announced}"
    );

    loop {
        let before_end = operator.now() < end;
        let exists = setup.stored_vm("orphan").await.is_some();
        if before_end {
            assert!(exists, "deleted before the grace period ended");
        } else if !exists {
            break;
        }
        assert!(
            operator.now() < end + SignedDuration::from_mins(10),
            "still not deleted long after the grace period\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup
        .event("orphan", "VirtualMachine", "RetiredDeleted", &operator)
        .await;
}

#[tokio::test]
async fn delete_without_opt_in_is_refused_by_the_api_server() {
    testbed().install_crds();
    let ns = TestNamespace::create("ret-no-opt-in").await;
    let client = testbed().client().await;
    let reckless = retiring(json!({
        "action": "Delete", "gracePeriod": "168h",
        "reasons": {"missingOwnerLabel": "owner"}
    }));

    let refused = apply(
        &client,
        &ns.name,
        manifest("PatchBaseline", "reckless", reckless),
    )
    .await
    .expect_err("a baseline that deletes VMs without allowDelete was accepted");
    let kube::Error::Api(status) = refused else {
        panic!("not refused by the API server: {refused}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("allowDelete: true"), "{status:?}");
    let baselines: Api<PatchBaseline> = Api::namespaced(client, &ns.name);
    assert!(baselines.get_opt("reckless").await.unwrap().is_none());
}

#[tokio::test]
async fn an_apt_updates_soak_survives_an_operator_restart() {
    // A 20-minute soak, scans every 8 minutes, and the nightly window at 22:00: at 60 times
    // real speed the clock reaches the window 22 s after 21:38. The update is first seen at
    // 21:38, so it has soaked by 22:00; had the restart reset its first sighting to the
    // next scan, at 21:46, it would still be soaking then.
    let baseline = json!({"approval": {"approveAfter": "20m"}, "assessment": {"interval": "8m"}});
    let clock = TestClock::new("2026-12-08T21:38:00Z", 60.0);
    let setup = Setup::build("ret-soak", baseline, window(NIGHTLY, "1h"), clock).await;
    setup.vm("web", "Always", &[OWNER], &[APT_UPDATE]).await;
    let first = setup.operator();

    let seen = setup
        .managed_until("web", &first, "scanned", |m| pending(m, "curl").is_some())
        .await;
    let sighting = pending(&seen, "curl").unwrap().first_seen.0;
    let restarted = setup.restart(first);
    let resumed_at = restarted.clock.start;

    let rescanned = setup
        .managed_until("web", &restarted, "scanned by the new operator", |m| {
            last_scan_at(m).is_some_and(|at| at > resumed_at)
        })
        .await;
    assert_eq!(pending(&rescanned, "curl").unwrap().first_seen.0, sighting);
    let soaking = setup.event("web", "ManagedVM", "Scanned", &restarted).await;
    assert!(soaking.contains("0 approved now"), "{soaking}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let install = loop {
        if let Some(job) = setup.install_jobs().await.into_iter().next() {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the soaked update was never installed\n{}",
            restarted.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let run = install.labels().get("patchkeeper.io/run").cloned();
    assert_eq!(run.as_deref(), Some("20261208t2200z"));
    let packages = job_env(&install, "PATCHKEEPER_PACKAGES");
    assert_eq!(packages.as_deref(), Some("curl=7.88.1-10"));
}

#[tokio::test]
async fn a_vm_whose_latest_scan_failed_is_not_retired_on_its_earlier_scan() {
    // At 30 times real speed: the critical update is due 4 s after its first sighting and
    // the next scan starts 4 s later; that scan fails, which takes the Job controller's
    // retries some 30 s of real time.
    let baseline = json!({
        "deadlines": {"critical": "2m"}, "assessment": {"interval": "4m"},
        "retirement": {"reasons": {"criticalPastDeadline": true}}
    });
    let clock = TestClock::new(CLOCK_START, 30.0);
    let setup = Setup::build("ret-scan-fails", baseline, never_open(), clock).await;
    setup
        .vm("unreadable", "Always", &[OWNER], &[CRITICAL_UPDATE])
        .await;
    let operator = setup.operator();

    setup
        .managed_until(
            "unreadable",
            &operator,
            "flagged on its successful scan",
            is_retired_for(RetirementReason::CriticalPastDeadline),
        )
        .await;
    setup.script_vm("unreadable", FAIL, Some("scan")).await;

    let kept = setup
        .managed_until(
            "unreadable",
            &operator,
            "kept once its next scan failed",
            is_kept,
        )
        .await;
    setup
        .event("unreadable", "ManagedVM", "ScanFailed", &operator)
        .await;
    setup
        .event("unreadable", "ManagedVM", "RetirementRevoked", &operator)
        .await;
    assert!(retire_condition(&status(&kept)).is_none());
}

#[tokio::test]
async fn a_vm_whose_operating_system_is_unknown_is_kept() {
    let setup = Setup::new("ret-unknown-os", json!({"reasons": {"endOfLife": true}})).await;
    setup
        .vm(
            "silent",
            "Always",
            &[OWNER],
            &[STRETCH, (NEVER_REACHABLE, "true")],
        )
        .await;
    let operator = setup.operator();

    setup
        .managed_until("silent", &operator, "kept while running", |m| {
            is_kept(m)
                && status(m)
                    .power
                    .is_some_and(|p| p.state == PowerState::Running)
        })
        .await;
    // The guest runs Debian 9, but never says so: what is unknown never retires a VM.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let managed = setup.managed_vms().get("silent").await.unwrap();
    assert!(is_kept(&managed), "{:?}", managed.status);
    assert!(status(&managed).os.is_none());
}
