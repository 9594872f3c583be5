//! The test doubles, proven against the real control plane: the KubeVirt controller double
//! starts and stops VMs as KubeVirt would, and the kubelet double runs patch Pods to an end
//! that the real Job controller turns into `Complete` or `Failed` Jobs, with a real run
//! summary as the runner's termination message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, PodTemplateSpec};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use patchkeeper::summary::{Classification, Mode, Outcome, Phase, RunSummary, Severity};
use serde_json::{Value, json};
use support::doubles::kubelet::{KubeletDouble, NODE_NAME};
use support::doubles::kubevirt::KubevirtDouble;
use support::doubles::scenario::{self, Scenario};
use support::kubevirt::{create_vm, install_kubevirt_crds, virtual_machine, vm_api, vmi_api};
use support::{TestNamespace, testbed};

const WAIT: Duration = Duration::from_secs(60);

/// A namespace with KubeVirt's CRDs installed, a client, and both doubles watching it.
struct Bed {
    ns: TestNamespace,
    client: Client,
    kubevirt: KubevirtDouble,
    kubelet: KubeletDouble,
}

impl Bed {
    async fn new(prefix: &str) -> Self {
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let client = testbed().client().await;
        Bed {
            kubevirt: KubevirtDouble::start(client.clone(), Some(&ns.name)),
            kubelet: KubeletDouble::start(client.clone(), Some(&ns.name)),
            client,
            ns,
        }
    }

    fn vms(&self) -> Api<DynamicObject> {
        vm_api(self.client.clone(), &self.ns.name)
    }

    fn vmis(&self) -> Api<DynamicObject> {
        vmi_api(self.client.clone(), &self.ns.name)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn create_vm(&self, name: &str, strategy: &str, annotations: &[(&str, &str)]) {
        let vm = virtual_machine(name, strategy, annotations);
        create_vm(self.client.clone(), &self.ns.name, &vm).await;
    }

    /// Waits until the VM's printable status is `printable`.
    async fn vm_reaches(&self, name: &str, printable: &str) -> DynamicObject {
        let reached = |vm: Option<&DynamicObject>| {
            vm.is_some_and(|vm| text(vm, "/status/printableStatus") == Some(printable))
        };
        let waited = tokio::time::timeout(WAIT, await_condition(self.vms(), name, reached));
        let vm = waited
            .await
            .unwrap_or_else(|_| panic!("VM {name} never became {printable}"));
        vm.unwrap().unwrap()
    }

    /// A VM that runs at once with `annotations`; returns its address.
    async fn running_vm(&self, name: &str, annotations: &[(&str, &str)]) -> String {
        let mut annotations = annotations.to_vec();
        annotations.push((scenario::BOOT_SECONDS, "0"));
        self.create_vm(name, "Always", &annotations).await;
        self.vm_reaches(name, "Running").await;
        let vmi = self.vmis().get(name).await.unwrap();
        text(&vmi, "/status/interfaces/0/ipAddress")
            .unwrap_or_default()
            .to_string()
    }

    async fn set_run_strategy(&self, name: &str, strategy: &str) {
        let patch = Patch::Merge(json!({ "spec": { "runStrategy": strategy } }));
        self.vms()
            .patch(name, &PatchParams::default(), &patch)
            .await
            .unwrap();
    }

    /// Creates a patch Job and waits until the Job controller says it is over.
    async fn run_job(&self, job: Job) -> Finished {
        let name = job.name_any();
        self.jobs()
            .create(&PostParams::default(), &job)
            .await
            .unwrap();
        let over = |job: Option<&Job>| {
            job.is_some_and(|j| has_condition(j, "Complete") || has_condition(j, "Failed"))
        };
        let waited = tokio::time::timeout(WAIT, await_condition(self.jobs(), &name, over));
        let job = waited.await.expect("the Job ends").unwrap().unwrap();
        let pods = self.job_pods(&name).await;
        Finished { job, pods }
    }

    /// Waits until the Job's Pod runs, and returns it.
    async fn pod_running(&self, job: &str) -> Pod {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let pods = self.job_pods(job).await;
            if let Some(pod) = pods.into_iter().find(|p| phase(p) == Some("Running")) {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no Pod of Job {job} ever ran");
    }

    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns.name);
        let selector = format!("batch.kubernetes.io/job-name={job}");
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }
}

/// A patch Job that the Job controller has finished.
struct Finished {
    job: Job,
    pods: Vec<Pod>,
}

impl Finished {
    fn complete(&self) -> bool {
        has_condition(&self.job, "Complete")
    }

    fn failed(&self) -> bool {
        has_condition(&self.job, "Failed")
    }

    /// The runner's terminated state in the Job's only Pod.
    fn terminated(&self) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
        assert_eq!(self.pods.len(), 1, "one Pod per patch Job");
        let statuses = self.pods[0]
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap();
        let runner = statuses.iter().find(|s| s.name == "runner").unwrap();
        runner
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .expect("the runner terminated")
    }

    fn summary(&self) -> RunSummary {
        let message = self.terminated().message.expect("a termination message");
        RunSummary::from_termination_message(&message).unwrap()
    }
}

fn has_condition(job: &Job, kind: &str) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn text<'a>(object: &'a DynamicObject, pointer: &str) -> Option<&'a str> {
    object.data.pointer(pointer).and_then(Value::as_str)
}

fn condition_status<'a>(object: &'a DynamicObject, kind: &str) -> Option<&'a str> {
    let conditions = object.data.pointer("/status/conditions")?.as_array()?;
    let found = conditions.iter().find(|c| c["type"] == kind)?;
    found["status"].as_str()
}

/// A Job as patchkeeper makes one: one Pod, no retries, labels naming VM, run and kind.
fn patch_job(name: &str, vm: &str, mode: &str, host: &str, packages: &str) -> Job {
    let labels = [
        ("app.kubernetes.io/managed-by", "patchkeeper"),
        ("patchkeeper.io/vm", vm),
        ("patchkeeper.io/run", "run-1"),
        ("patchkeeper.io/job", mode),
    ];
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.collect()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            containers: vec![runner(mode, host, packages)],
            ..PodSpec::default()
        }),
    };
    let spec = JobSpec {
        backoff_limit: Some(0),
        template,
        ..JobSpec::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Job::default()
    }
}

/// The patch runner's container with its environment; empty values are left out.
fn runner(mode: &str, host: &str, packages: &str) -> Container {
    let env = [
        ("PATCHKEEPER_HOST", host),
        ("PATCHKEEPER_MODE", mode),
        ("PATCHKEEPER_PACKAGES", packages),
    ];
    let env = env
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| EnvVar {
            name: k.to_string(),
            value: Some(v.to_string()),
            ..EnvVar::default()
        });
    Container {
        name: "runner".into(),
        image: Some("example.invalid/patchkeeper:test".into()),
        args: Some(vec!["runner".into()]),
        env: Some(env.collect()),
        ..Container::default()
    }
}

fn in_documentation_range(ip: &str) -> bool {
    ["192.0.2.", "198.51.100.", "203.0.113."]
        .iter()
        .any(|net| ip.starts_with(net))
}

// The KubeVirt controller double.

#[tokio::test]
async fn a_vm_that_should_run_is_starting_until_its_boot_delay_is_over() {
    let bed = Bed::new("dbl-boot").await;
    let began = Instant::now();
    bed.create_vm("web", "Always", &[(scenario::BOOT_SECONDS, "2")])
        .await;

    let starting = bed.vm_reaches("web", "Starting").await;
    assert_eq!(starting.data["status"]["ready"], false);
    let vmi = bed.vmis().get("web").await.unwrap();
    assert_eq!(text(&vmi, "/status/phase"), Some("Scheduling"));

    bed.vm_reaches("web", "Running").await;
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_booted_vm_has_an_address_guest_os_info_and_a_connected_agent() {
    let bed = Bed::new("dbl-booted").await;
    bed.create_vm("web", "Always", &[]).await;
    let vm = bed.vm_reaches("web", "Running").await;

    assert_eq!(vm.data["status"]["ready"], true);
    assert_eq!(text(&vm, "/status/runStrategy"), Some("Always"));
    assert_eq!(condition_status(&vm, "Ready"), Some("True"));
    let vmi = bed.vmis().get("web").await.unwrap();
    assert_eq!(text(&vmi, "/status/phase"), Some("Running"));
    let ip = text(&vmi, "/status/interfaces/0/ipAddress").unwrap();
    assert!(in_documentation_range(ip), "{ip}");
    assert_eq!(
        vmi.data["status"]["interfaces"][0]["ipAddresses"],
        json!([ip])
    );
    assert_eq!(text(&vmi, "/status/guestOSInfo/id"), Some("debian"));
    assert_eq!(text(&vmi, "/status/guestOSInfo/versionId"), Some("12"));
    assert_eq!(
        text(&vmi, "/status/guestOSInfo/prettyName"),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(condition_status(&vmi, "AgentConnected"), Some("True"));
}

#[tokio::test]
async fn a_vmi_is_owned_by_its_vm_and_written_by_the_double_s_field_manager() {
    let bed = Bed::new("dbl-owner").await;
    bed.create_vm("web", "Always", &[(scenario::BOOT_SECONDS, "0")])
        .await;
    let vm = bed.vm_reaches("web", "Running").await;

    let vmi = bed.vmis().get("web").await.unwrap();
    let owner = &vmi.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("VirtualMachine", vm.uid().unwrap().as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let managers = vm
        .managed_fields()
        .iter()
        .map(|f| f.manager.clone().unwrap_or_default());
    assert!(managers.into_iter().any(|m| m == "kubevirt-double"));
}

#[tokio::test]
async fn the_os_annotation_sets_the_guest_os_info() {
    let bed = Bed::new("dbl-os").await;
    let os = "ubuntu 24.04 Ubuntu 24.04.1 LTS";
    bed.running_vm("web", &[(scenario::OS, os)]).await;

    let vmi = bed.vmis().get("web").await.unwrap();
    assert_eq!(text(&vmi, "/status/guestOSInfo/id"), Some("ubuntu"));
    assert_eq!(text(&vmi, "/status/guestOSInfo/versionId"), Some("24.04"));
    assert_eq!(text(&vmi, "/status/guestOSInfo/name"), Some("Ubuntu"));
    assert_eq!(
        text(&vmi, "/status/guestOSInfo/prettyName"),
        Some("Ubuntu 24.04.1 LTS")
    );
}

#[tokio::test]
async fn the_deprecated_running_field_starts_a_vm_too() {
    let bed = Bed::new("dbl-running").await;
    let mut vm = virtual_machine("old", "Always", &[(scenario::BOOT_SECONDS, "0")]);
    vm.data["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runStrategy");
    vm.data["spec"]["running"] = json!(true);
    create_vm(bed.client.clone(), &bed.ns.name, &vm).await;

    let vm = bed.vm_reaches("old", "Running").await;
    assert_eq!(text(&vm, "/status/runStrategy"), Some("Always"));
}

#[tokio::test]
async fn halting_a_running_vm_stops_it_after_its_stop_delay() {
    let bed = Bed::new("dbl-halt").await;
    bed.running_vm("web", &[(scenario::STOP_SECONDS, "2")])
        .await;

    let began = Instant::now();
    bed.set_run_strategy("web", "Halted").await;
    bed.vm_reaches("web", "Stopping").await;
    assert!(
        bed.vmis().get_opt("web").await.unwrap().is_some(),
        "the VMI runs while stopping"
    );
    let vm = bed.vm_reaches("web", "Stopped").await;

    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(vm.data["status"]["ready"], false);
    assert_eq!(text(&vm, "/status/runStrategy"), Some("Halted"));
    assert!(bed.vmis().get_opt("web").await.unwrap().is_none());
}

#[tokio::test]
async fn a_restarted_vm_gets_a_new_address() {
    let bed = Bed::new("dbl-restart").await;
    let first = bed
        .running_vm("web", &[(scenario::STOP_SECONDS, "0")])
        .await;
    let first_uid = bed.vmis().get("web").await.unwrap().uid();
    bed.set_run_strategy("web", "Halted").await;
    bed.vm_reaches("web", "Stopped").await;

    bed.set_run_strategy("web", "Always").await;
    bed.vm_reaches("web", "Running").await;
    let vmi = bed.vmis().get("web").await.unwrap();
    assert_ne!(vmi.uid(), first_uid);
    let second = text(&vmi, "/status/interfaces/0/ipAddress").unwrap();
    assert!(in_documentation_range(second) && in_documentation_range(&first));
}

#[tokio::test]
async fn a_halted_vm_is_reported_stopped_and_never_started() {
    let bed = Bed::new("dbl-halted").await;
    bed.create_vm("cold", "Halted", &[]).await;

    let vm = bed.vm_reaches("cold", "Stopped").await;
    assert_eq!(condition_status(&vm, "Ready"), Some("False"));
    assert!(bed.vmis().get_opt("cold").await.unwrap().is_none());
}

#[tokio::test]
async fn a_manual_vm_without_an_instance_stays_stopped() {
    let bed = Bed::new("dbl-manual").await;
    bed.create_vm("hand", "Manual", &[(scenario::BOOT_SECONDS, "0")])
        .await;

    bed.vm_reaches("hand", "Stopped").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(bed.vmis().get_opt("hand").await.unwrap().is_none());
}

#[tokio::test]
async fn a_never_reachable_vm_runs_without_an_address_or_a_connected_agent() {
    let bed = Bed::new("dbl-dark").await;
    let ip = bed
        .running_vm("dark", &[(scenario::NEVER_REACHABLE, "true")])
        .await;

    assert_eq!(ip, "");
    let vmi = bed.vmis().get("dark").await.unwrap();
    assert_eq!(text(&vmi, "/status/phase"), Some("Running"));
    assert!(vmi.data["status"].get("guestOSInfo").is_none());
    assert_ne!(condition_status(&vmi, "AgentConnected"), Some("True"));
}

#[tokio::test]
async fn a_misspelt_double_annotation_is_reported_on_the_vm() {
    let bed = Bed::new("dbl-typo").await;
    bed.create_vm(
        "typo",
        "Always",
        &[("double.patchkeeper.io/boot-second", "1")],
    )
    .await;

    let vm = bed.vm_reaches("typo", "Unknown").await;
    assert_eq!(condition_status(&vm, "Failure"), Some("True"));
    let conditions = vm.data["status"]["conditions"].to_string();
    assert!(conditions.contains("boot-second"), "{conditions}");
}

#[tokio::test]
async fn a_vm_keeps_booting_when_the_double_restarts() {
    let mut bed = Bed::new("dbl-vrestart").await;
    bed.create_vm("web", "Always", &[(scenario::BOOT_SECONDS, "2")])
        .await;
    bed.vm_reaches("web", "Starting").await;

    bed.kubevirt.stop();
    bed.kubevirt = KubevirtDouble::start(bed.client.clone(), Some(&bed.ns.name));
    bed.vm_reaches("web", "Running").await;
}

// The kubelet-and-runner double, with the real Job controller.

#[tokio::test]
async fn a_job_whose_pod_succeeds_ends_complete_and_one_whose_pod_fails_ends_failed() {
    let bed = Bed::new("dbl-jobs").await;
    let updates = (scenario::UPDATES, "openssl=3.0.15-1");
    let ip = bed
        .running_vm("web", &[updates, (scenario::FAIL, "install")])
        .await;

    let scan = bed.run_job(patch_job("scan", "web", "scan", &ip, "")).await;
    let install = bed
        .run_job(patch_job(
            "install",
            "web",
            "install",
            &ip,
            "openssl=3.0.15-1",
        ))
        .await;

    assert!(scan.complete() && !scan.failed());
    assert_eq!(scan.job.status.as_ref().unwrap().succeeded, Some(1));
    assert!(install.failed() && !install.complete());
    assert_eq!(install.job.status.as_ref().unwrap().failed, Some(1));
}

#[tokio::test]
async fn a_patch_pod_is_bound_to_the_double_s_node_and_ends_with_the_runner_s_exit_code() {
    let bed = Bed::new("dbl-pod").await;
    let ip = bed.running_vm("web", &[]).await;
    let done = bed.run_job(patch_job("scan", "web", "scan", &ip, "")).await;

    let pod = &done.pods[0];
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(NODE_NAME)
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let terminated = done.terminated();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(bed.kubelet.ran().len(), 1);
    assert_eq!(bed.kubelet.ran()[0].host.as_deref(), Some(ip.as_str()));
}

#[tokio::test]
async fn a_scan_reports_the_annotated_updates_in_the_termination_message() {
    let bed = Bed::new("dbl-scan").await;
    let updates = "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Other:Unspecified";
    let ip = bed.running_vm("web", &[(scenario::UPDATES, updates)]).await;
    let summary = bed
        .run_job(patch_job("scan", "web", "scan", &ip, ""))
        .await
        .summary();

    assert_eq!(
        (summary.mode, summary.outcome),
        (Mode::Scan, Outcome::Succeeded)
    );
    assert_eq!(summary.counts.updates.total, 2);
    assert_eq!(summary.counts.updates.security, 1);
    let openssl = summary
        .updates
        .iter()
        .find(|u| u.name == "openssl")
        .unwrap();
    assert_eq!(openssl.candidate, "3.0.15-1");
    assert_eq!(
        (openssl.classification, openssl.severity),
        (Classification::Security, Severity::Critical)
    );
    assert_eq!(
        summary.os.unwrap().pretty_name,
        "Debian GNU/Linux 12 (bookworm)"
    );
}

#[tokio::test]
async fn a_patch_pod_runs_for_its_patch_seconds() {
    let bed = Bed::new("dbl-slow").await;
    let ip = bed
        .running_vm("web", &[(scenario::PATCH_SECONDS, "3")])
        .await;
    let began = Instant::now();
    let summary = bed
        .run_job(patch_job("scan", "web", "scan", &ip, ""))
        .await
        .summary();

    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert!(summary.timings.total >= 3.0, "{:?}", summary.timings);
}

#[tokio::test]
async fn a_failing_install_ends_failed_with_the_package_manager_error() {
    let bed = Bed::new("dbl-fail").await;
    let updates = "openssl=3.0.15-1:Security:Critical";
    let ip = bed
        .running_vm(
            "web",
            &[(scenario::UPDATES, updates), (scenario::FAIL, "install")],
        )
        .await;
    let done = bed
        .run_job(patch_job(
            "install",
            "web",
            "install",
            &ip,
            "openssl=3.0.15-1",
        ))
        .await;

    assert!(done.failed());
    assert_eq!(done.terminated().exit_code, 1);
    let summary = done.summary();
    assert_eq!(summary.outcome, Outcome::Failed);
    let failure = summary.failure.unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Install, "apt-get install")
    );
    assert!(
        failure
            .message
            .contains("E: Sub-process /usr/bin/dpkg returned an error code (1)")
    );
    assert_eq!(summary.not_installed[0].name, "openssl");
    assert_eq!(summary.counts.updates.total, 1, "nothing was installed");
}

#[tokio::test]
async fn a_failing_scan_names_the_refresh_that_failed() {
    let bed = Bed::new("dbl-scanfail").await;
    let ip = bed.running_vm("web", &[(scenario::FAIL, "always")]).await;
    let done = bed.run_job(patch_job("scan", "web", "scan", &ip, "")).await;

    assert!(done.failed());
    let failure = done.summary().failure.unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Scan, "apt-get update")
    );
    assert!(
        failure.message.contains("Temporary failure resolving"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn an_installed_package_is_gone_from_the_next_scan() {
    let bed = Bed::new("dbl-install").await;
    let updates = "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10";
    let ip = bed.running_vm("web", &[(scenario::UPDATES, updates)]).await;
    let install = bed
        .run_job(patch_job(
            "install",
            "web",
            "install",
            &ip,
            "openssl=3.0.15-1",
        ))
        .await;
    let scan = bed.run_job(patch_job("scan", "web", "scan", &ip, "")).await;

    let installed = install.summary();
    assert_eq!(installed.outcome, Outcome::Succeeded);
    assert_eq!(
        (
            installed.installed[0].name.as_str(),
            installed.installed[0].to.as_str()
        ),
        ("openssl", "3.0.15-1")
    );
    let names: Vec<String> = scan.summary().updates.into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["curl"]);
    let vm = bed.vms().get("web").await.unwrap();
    assert_eq!(
        vm.annotations()
            .get(scenario::INSTALLED)
            .map(String::as_str),
        Some("openssl=3.0.15-1")
    );
}

#[tokio::test]
async fn an_install_that_times_out_says_it_awaited_apt_get_install() {
    let bed = Bed::new("dbl-timeout").await;
    let ip = bed
        .running_vm(
            "web",
            &[
                (scenario::UPDATES, "curl=7.88.1-10"),
                (scenario::TIMEOUT, "true"),
            ],
        )
        .await;
    let done = bed
        .run_job(patch_job(
            "install",
            "web",
            "install",
            &ip,
            "curl=7.88.1-10",
        ))
        .await;

    assert!(done.failed());
    let summary = done.summary();
    assert_eq!(summary.outcome, Outcome::TimedOut);
    let failure = summary.failure.unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Install, "apt-get install to finish")
    );
}

#[tokio::test]
async fn an_oversized_scan_survives_truncation_of_the_termination_message() {
    let bed = Bed::new("dbl-oversized").await;
    let ip = bed
        .running_vm("web", &[(scenario::OVERSIZED, "true")])
        .await;
    let done = bed.run_job(patch_job("scan", "web", "scan", &ip, "")).await;

    let message = done.terminated().message.unwrap();
    assert!(message.len() <= patchkeeper::summary::TERMINATION_MESSAGE_LIMIT);
    let summary = RunSummary::from_termination_message(&message).unwrap();
    assert_eq!(summary.outcome, Outcome::Succeeded);
    assert!(summary.counts.updates.total >= 1000, "{:?}", summary.counts);
    assert!(summary.truncated.updates > 0);
    let listed = u32::try_from(summary.updates.len()).unwrap();
    assert_eq!(
        listed + summary.truncated.updates,
        summary.counts.updates.total
    );
}

#[tokio::test]
async fn an_install_on_a_guest_that_asks_for_a_reboot_reboots_it() {
    let bed = Bed::new("dbl-reboot").await;
    let annotations = [
        (scenario::UPDATES, "linux-image-amd64=6.1.119-1"),
        (scenario::REBOOT_REQUIRED, "true"),
    ];
    let ip = bed.running_vm("web", &annotations).await;
    let scan = bed
        .run_job(patch_job("scan", "web", "scan", &ip, ""))
        .await
        .summary();
    let install = bed
        .run_job(patch_job(
            "install",
            "web",
            "install",
            &ip,
            "linux-image-amd64=6.1.119-1",
        ))
        .await;

    assert!(scan.reboot_required && !scan.rebooted);
    let install = install.summary();
    assert!(install.rebooted && !install.reboot_required);
    assert!(install.timings.reboot.is_some());
}

#[tokio::test]
async fn an_unreachable_guest_times_out_waiting_for_ssh() {
    let bed = Bed::new("dbl-unreach").await;
    let ip = bed
        .running_vm("web", &[(scenario::UNREACHABLE, "true")])
        .await;
    let summary = bed
        .run_job(patch_job("scan", "web", "scan", &ip, ""))
        .await
        .summary();

    assert_eq!(summary.outcome, Outcome::TimedOut);
    let failure = summary.failure.unwrap();
    assert_eq!(
        (failure.phase, failure.awaiting.as_str()),
        (Phase::Connect, "SSH on port 22")
    );
    assert!(summary.os.is_none());
}

#[tokio::test]
async fn a_pod_for_a_vm_without_an_address_times_out_connecting() {
    let bed = Bed::new("dbl-noip").await;
    bed.running_vm("dark", &[(scenario::NEVER_REACHABLE, "true")])
        .await;
    let summary = bed
        .run_job(patch_job("scan", "dark", "scan", "192.0.2.77", ""))
        .await
        .summary();

    assert_eq!(summary.outcome, Outcome::TimedOut);
    assert_eq!(summary.failure.unwrap().phase, Phase::Connect);
}

#[tokio::test]
async fn a_pod_for_a_vm_that_does_not_exist_times_out_connecting() {
    let bed = Bed::new("dbl-ghost").await;
    let done = bed
        .run_job(patch_job("scan", "ghost", "scan", "198.51.100.7", ""))
        .await;

    assert!(done.failed());
    let summary = done.summary();
    assert_eq!(summary.outcome, Outcome::TimedOut);
    assert_eq!(summary.failure.unwrap().phase, Phase::Connect);
}

#[tokio::test]
async fn a_deleted_running_pod_is_ended_as_a_kubelet_ends_it() {
    let bed = Bed::new("dbl-kill").await;
    let ip = bed
        .running_vm("web", &[(scenario::PATCH_SECONDS, "600")])
        .await;
    let job = patch_job("long", "web", "scan", &ip, "");
    bed.jobs()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let pod = bed.pod_running("long").await;

    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.ns.name);
    pods.delete(&pod.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let failed = |job: Option<&Job>| job.is_some_and(|j| has_condition(j, "Failed"));
    tokio::time::timeout(WAIT, await_condition(bed.jobs(), "long", failed))
        .await
        .unwrap()
        .unwrap();
    let gone = |pod: Option<&Pod>| pod.is_none();
    tokio::time::timeout(WAIT, await_condition(pods, &pod.name_any(), gone))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_patch_pod_started_before_the_double_restarted_still_ends() {
    let mut bed = Bed::new("dbl-krestart").await;
    let ip = bed
        .running_vm("web", &[(scenario::PATCH_SECONDS, "2")])
        .await;
    let job = patch_job("scan", "web", "scan", &ip, "");
    bed.jobs()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    bed.pod_running("scan").await;

    bed.kubelet.stop();
    bed.kubelet = KubeletDouble::start(bed.client.clone(), Some(&bed.ns.name));
    let complete = |job: Option<&Job>| job.is_some_and(|j| has_condition(j, "Complete"));
    tokio::time::timeout(WAIT, await_condition(bed.jobs(), "scan", complete))
        .await
        .unwrap()
        .unwrap();
}

// The scenario annotations themselves.

#[test]
fn a_vm_without_double_annotations_boots_debian_12_in_a_second() {
    let scenario = Scenario::from_annotations(&Default::default()).unwrap();
    assert_eq!(scenario.boot, Duration::from_secs(1));
    assert_eq!(scenario.os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    assert!(scenario.updates.is_empty());
}

#[test]
fn updates_default_to_other_and_unspecified() {
    let annotations = [(
        scenario::UPDATES.to_string(),
        "curl=7.88.1-10, openssl=3.0.15-1:security".to_string(),
    )];
    let scenario = Scenario::from_annotations(&annotations.into()).unwrap();
    let curl = &scenario.updates[0];
    assert_eq!(
        (curl.classification, curl.severity),
        (Classification::Other, Severity::Unspecified)
    );
    assert_eq!(scenario.updates[1].classification, Classification::Security);
}

#[test]
fn a_malformed_update_is_refused_naming_the_annotation() {
    let annotations = [(
        scenario::UPDATES.to_string(),
        "openssl:Security".to_string(),
    )];
    let error = Scenario::from_annotations(&annotations.into()).unwrap_err();
    assert_eq!(error.annotation, scenario::UPDATES);
}
