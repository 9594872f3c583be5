//! A double of the kubelet together with the patch runner it would run: it takes
//! patchkeeper's patch Pods through their lifecycle so that the real Job controller marks
//! their Jobs complete or failed.
//!
//! What the Job controller needs is only the Pod's phase: `Succeeded` or `Failed`. The rest
//! is for the operator and for people reading `kubectl`: the double binds each Pod to a
//! made-up node (through the `binding` subresource, as a scheduler does), reports it
//! `Running`, and after the VM's `patch-seconds` ends its `runner` container with exit code
//! 0 or 1 and a real [`RunSummary`] as the termination message, built by [`patch_run`] from
//! the Pod's environment and the VM's scenario. A Pod the operator or the Job controller
//! deletes is ended as a kubelet ends it (terminal phase, then deletion without grace).
//!
//! Limitation: a bound Pod deleted while no double runs stays `Terminating`, as it would
//! with its node gone; so does, then, the namespace holding it.
//!
//! [`patch_run`]: super::patch_run

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use patchkeeper::runner::{PackageSpec, RebootPolicy};
use patchkeeper::summary::{Failure, Mode, Outcome, Phase, RunSummary};
use serde_json::{Value, json};

use super::kubevirt::{virtual_machine_instances, virtual_machines};
use super::patch_run::{Request, simulate};
use super::scenario::{INSTALLED, Scenario};
use super::{Running, whole_seconds};

/// The field manager of everything this double writes.
pub const FIELD_MANAGER: &str = "kubelet-double";

/// The node the double binds patch Pods to.
pub const NODE_NAME: &str = "kubelet-double-node";

/// The Pods the double runs: those of patchkeeper's Jobs.
pub const POD_SELECTOR: &str = "app.kubernetes.io/managed-by=patchkeeper";

/// The container that runs the patch runner.
const RUNNER: &str = "runner";

/// How soon a failed reconcile is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// Exit code of a runner killed by SIGTERM, as when its Pod is deleted.
const TERMINATED_BY_SIGNAL: i32 = 143;

/// Exit code of a runner that refused its arguments (clap's usage error).
const USAGE_ERROR: i32 = 2;

/// One patch Pod the double ran to its end, for tests that want to know what was asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Ran {
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub pod: String,
    /// Label `patchkeeper.io/vm`.
    pub vm: Option<String>,
    /// Label `patchkeeper.io/run`.
    pub run: Option<String>,
    /// Label `patchkeeper.io/job`: `scan` or `install`.
    pub job: Option<String>,
    /// `PATCHKEEPER_HOST`.
    pub host: Option<String>,
    /// `PATCHKEEPER_PACKAGES`, split at commas.
    pub packages: Vec<String>,
    /// The runner's exit code.
    pub exit_code: i32,
    /// What the runner reported; `None` when it refused its arguments or was killed.
    pub summary: Option<RunSummary>,
}

/// The kubelet-and-runner double, running until dropped or stopped.
#[derive(Debug)]
pub struct KubeletDouble {
    running: Running,
    ran: Arc<Mutex<Vec<Ran>>>,
}

impl KubeletDouble {
    /// Starts the double for the patch Pods of one namespace, or of all with `None`.
    pub fn start(client: Client, namespace: Option<&str>) -> Self {
        let pods: Api<Pod> = match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        };
        let selector = watcher::Config::default().labels(POD_SELECTOR);
        let context = Arc::new(Context {
            client,
            ran: Arc::default(),
        });
        let ran = context.ran.clone();
        let work = Controller::new(pods, selector)
            .run(reconcile, |_, _, _| Action::requeue(RETRY), context)
            .for_each(|_| futures::future::ready(()));
        KubeletDouble {
            running: Running::spawn(work),
            ran,
        }
    }

    /// The patch Pods ended so far, in the order they ended.
    pub fn ran(&self) -> Vec<Ran> {
        self.ran.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the double; Pods stay as they are.
    pub fn stop(&self) {
        self.running.stop();
    }
}

struct Context {
    client: Client,
    ran: Arc<Mutex<Vec<Ran>>>,
}

impl Context {
    fn record(&self, ran: Ran) {
        self.ran.lock().unwrap_or_else(|p| p.into_inner()).push(ran);
    }
}

/// One patch Pod being reconciled.
struct PatchPod<'a> {
    context: &'a Context,
    pod: &'a Pod,
    pods: Api<Pod>,
    name: String,
}

async fn reconcile(pod: Arc<Pod>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let patch_pod = PatchPod {
        context: &context,
        pod: &pod,
        pods: Api::namespaced(context.client.clone(), &namespace),
        name: pod.name_any(),
    };
    patch_pod.reconcile().await
}

impl PatchPod<'_> {
    async fn reconcile(&self) -> Result<Action, kube::Error> {
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.kill().await?;
        } else if self.ended() {
            // Nothing more happens to a Pod whose containers have all ended.
        } else if !self.bound() {
            self.bind().await?;
        } else if let Some(started) = self.started() {
            return self.run(started).await;
        } else {
            self.start().await?;
        }
        Ok(Action::await_change())
    }

    fn ended(&self) -> bool {
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        matches!(phase, Some("Succeeded" | "Failed"))
    }

    fn bound(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .is_some_and(|s| s.node_name.is_some())
    }

    fn started(&self) -> Option<Timestamp> {
        let status = self.pod.status.as_ref();
        status.and_then(|s| s.start_time.as_ref()).map(|t| t.0)
    }

    /// Binds the Pod to the double's node, as the scheduler would.
    async fn bind(&self) -> Result<(), kube::Error> {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": self.name },
            "target": { "apiVersion": "v1", "kind": "Node", "name": NODE_NAME },
        });
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let bound = self
            .pods
            .create_subresource::<_, Value>("binding", &self.name, &params, &binding);
        ignore_gone(bound.await.map(|_| ()))
    }

    /// Reports the Pod running, from now.
    async fn start(&self) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let statuses: Vec<Value> = self
            .containers()
            .map(|c| {
                container_status(
                    c,
                    true,
                    json!({ "running": { "startedAt": whole_seconds(now) } }),
                )
            })
            .collect();
        let status = json!({
            "phase": "Running",
            "startTime": whole_seconds(now),
            "conditions": self.conditions(true, now),
            "containerStatuses": statuses,
        });
        tracing::info!(pod = %self.name, "patch pod running");
        self.write_status(status).await
    }

    /// Ends the Pod once its time is up.
    async fn run(&self, started: Timestamp) -> Result<Action, kube::Error> {
        let vm = self.vm().await?;
        let scenario = vm
            .as_ref()
            .map(|vm| Scenario::from_annotations(vm.annotations()));
        let patch = match scenario {
            Some(Ok(scenario)) => scenario.patch,
            _ => Scenario::default().patch,
        };
        // startTime has whole seconds: counting from the next one never ends a Pod early.
        let elapsed = Timestamp::now().duration_since(started);
        let elapsed = Duration::try_from(elapsed).unwrap_or_default();
        let deadline = patch + Duration::from_secs(1);
        if let Some(left) = deadline.checked_sub(elapsed).filter(|d| !d.is_zero()) {
            return Ok(Action::requeue(left));
        }

        let (exit_code, summary) = self.outcome(vm.as_ref(), elapsed).await?;
        let message = summary.as_ref().map(RunSummary::to_termination_message);
        self.finish(exit_code, message).await?;
        self.record(exit_code, summary);
        Ok(Action::await_change())
    }

    /// What the runner would exit with and report; records installs in the VM.
    async fn outcome(
        &self,
        vm: Option<&DynamicObject>,
        elapsed: Duration,
    ) -> Result<(i32, Option<RunSummary>), kube::Error> {
        let request = match request(self.runner()) {
            Ok(request) => request,
            Err(problem) => {
                tracing::warn!(pod = %self.name, %problem, "runner refused its arguments");
                return Ok((USAGE_ERROR, None));
            }
        };
        let Some(vm) = vm else {
            let simulated = simulate(&Scenario::default(), &request, false, elapsed);
            return Ok((exit_code(&simulated.summary), Some(simulated.summary)));
        };
        let scenario = match Scenario::from_annotations(vm.annotations()) {
            Ok(scenario) => scenario,
            Err(error) => return Ok((1, Some(invalid_scenario(&request, &error.to_string())))),
        };
        let reachable = self.reachable(vm).await?;
        let simulated = simulate(&scenario, &request, reachable, elapsed);
        if simulated.installed != scenario.installed {
            self.remember_installed(vm, &simulated.installed).await?;
        }
        Ok((exit_code(&simulated.summary), Some(simulated.summary)))
    }

    /// Whether `PATCHKEEPER_HOST` is the address of the VM's running guest.
    async fn reachable(&self, vm: &DynamicObject) -> Result<bool, kube::Error> {
        let host = env(self.runner(), "PATCHKEEPER_HOST").unwrap_or_default();
        let vmis = Api::<DynamicObject>::namespaced_with(
            self.context.client.clone(),
            &vm.namespace().unwrap_or_default(),
            &virtual_machine_instances(),
        );
        let Some(vmi) = vmis.get_opt(&vm.name_any()).await? else {
            return Ok(false);
        };
        let running = vmi.data.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
        let interfaces = vmi
            .data
            .pointer("/status/interfaces")
            .and_then(Value::as_array);
        let mut addresses = interfaces
            .into_iter()
            .flatten()
            .map(|i| i["ipAddress"].as_str());
        Ok(running && !host.is_empty() && addresses.any(|ip| ip == Some(host.as_str())))
    }

    /// Keeps what the guest now has installed in the VM's annotation, for later scans.
    async fn remember_installed(
        &self,
        vm: &DynamicObject,
        installed: &BTreeMap<String, String>,
    ) -> Result<(), kube::Error> {
        let value: Vec<String> = installed.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let patch = json!({ "metadata": { "annotations": { INSTALLED: value.join(",") } } });
        let vms = self.vms(vm);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        vms.patch(&vm.name_any(), &params, &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// Ends a Pod that is being deleted the way a kubelet does: a running runner is stopped
    /// and the Pod marked failed, then the Pod is removed without further grace.
    async fn kill(&self) -> Result<(), kube::Error> {
        if self.started().is_some() && !self.ended() {
            self.finish(TERMINATED_BY_SIGNAL, None).await?;
            self.record(TERMINATED_BY_SIGNAL, None);
        }
        let params = DeleteParams::default().grace_period(0);
        ignore_gone(self.pods.delete(&self.name, &params).await.map(|_| ()))
    }

    /// Reports the runner ended with `exit_code` and `message`.
    async fn finish(&self, exit_code: i32, message: Option<String>) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let started = whole_seconds(self.started().unwrap_or(now));
        let statuses: Vec<Value> = self
            .containers()
            .map(|container| {
                let mut terminated = json!({
                    "exitCode": exit_code,
                    "reason": if exit_code == 0 { "Completed" } else { "Error" },
                    "startedAt": started,
                    "finishedAt": whole_seconds(now),
                });
                if let Some(message) = message.as_ref().filter(|_| container.name == RUNNER) {
                    terminated["message"] = json!(message);
                }
                container_status(container, false, json!({ "terminated": terminated }))
            })
            .collect();
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        tracing::info!(pod = %self.name, phase, exit_code, "patch pod ended");
        let status = json!({
            "phase": phase,
            "conditions": self.conditions(false, now),
            "containerStatuses": statuses,
        });
        self.write_status(status).await
    }

    fn record(&self, exit_code: i32, summary: Option<RunSummary>) {
        let label = |key: &str| self.pod.labels().get(key).cloned();
        let packages = env(self.runner(), "PATCHKEEPER_PACKAGES").unwrap_or_default();
        self.context.record(Ran {
            namespace: self.pod.namespace().unwrap_or_default(),
            pod: self.name.clone(),
            vm: label("patchkeeper.io/vm"),
            run: label("patchkeeper.io/run"),
            job: label("patchkeeper.io/job"),
            host: env(self.runner(), "PATCHKEEPER_HOST"),
            packages: packages
                .split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
            exit_code,
            summary,
        });
    }

    async fn write_status(&self, status: Value) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(json!({ "status": status }));
        ignore_gone(
            self.pods
                .patch_status(&self.name, &params, &patch)
                .await
                .map(|_| ()),
        )
    }

    /// The Pod's conditions while its containers run (`ready`) or after they ended.
    fn conditions(&self, ready: bool, now: Timestamp) -> Vec<Value> {
        let now = whole_seconds(now);
        let scheduled = self.pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let scheduled = scheduled
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled");
        let since = scheduled
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| whole_seconds(t.0));
        let (status, reason) = if ready {
            ("True", None)
        } else {
            ("False", Some("PodCompleted"))
        };
        let condition = |kind: &str, status: &str, reason: Option<&str>, since: &str| {
            let mut condition =
                json!({ "type": kind, "status": status, "lastTransitionTime": since });
            if let Some(reason) = reason {
                condition["reason"] = json!(reason);
            }
            condition
        };
        vec![
            condition("PodReadyToStartContainers", status, None, &now),
            condition("Initialized", "True", None, &now),
            condition("Ready", status, reason, &now),
            condition("ContainersReady", status, reason, &now),
            condition(
                "PodScheduled",
                "True",
                None,
                since.as_deref().unwrap_or(&now),
            ),
        ]
    }

    fn containers(&self) -> impl Iterator<Item = &Container> {
        self.pod.spec.iter().flat_map(|spec| spec.containers.iter())
    }

    fn runner(&self) -> Option<&Container> {
        self.containers().find(|c| c.name == RUNNER)
    }

    /// The VM the Pod patches, from its `patchkeeper.io/vm` label.
    async fn vm(&self) -> Result<Option<DynamicObject>, kube::Error> {
        let Some(name) = self.pod.labels().get("patchkeeper.io/vm") else {
            return Ok(None);
        };
        let vms = Api::<DynamicObject>::namespaced_with(
            self.context.client.clone(),
            &self.pod.namespace().unwrap_or_default(),
            &virtual_machines(),
        );
        vms.get_opt(name).await
    }

    fn vms(&self, vm: &DynamicObject) -> Api<DynamicObject> {
        let namespace = vm.namespace().unwrap_or_default();
        Api::namespaced_with(self.context.client.clone(), &namespace, &virtual_machines())
    }
}

/// A container's status; the container id is derived from its name so that it is stable.
fn container_status(container: &Container, running: bool, state: Value) -> Value {
    json!({
        "name": container.name,
        "image": container.image.clone().unwrap_or_default(),
        "imageID": "",
        "containerID": format!("containerd://kubelet-double-{}", container.name),
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    })
}

/// The runner's request, read from its environment as `patchkeeper runner` reads it.
fn request(runner: Option<&Container>) -> Result<Request, String> {
    let mode = match env(runner, "PATCHKEEPER_MODE").as_deref() {
        Some("scan") => Mode::Scan,
        Some("install") => Mode::Install,
        other => {
            return Err(format!(
                "PATCHKEEPER_MODE is {other:?}, not scan or install"
            ));
        }
    };
    let packages = env(runner, "PATCHKEEPER_PACKAGES").unwrap_or_default();
    let packages: Vec<PackageSpec> = packages
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|e| format!("PATCHKEEPER_PACKAGES: {e}")))
        .collect::<Result<_, _>>()?;
    if mode == Mode::Install && packages.is_empty() {
        return Err("install needs PATCHKEEPER_PACKAGES".into());
    }
    Ok(Request {
        mode,
        packages,
        reboot: reboot_policy(env(runner, "PATCHKEEPER_REBOOT").as_deref())?,
        connect_timeout: timeout(runner, "PATCHKEEPER_CONNECT_TIMEOUT", 300)?,
        install_timeout: timeout(runner, "PATCHKEEPER_INSTALL_TIMEOUT", 1800)?,
    })
}

fn reboot_policy(value: Option<&str>) -> Result<RebootPolicy, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("ifrequired") => Ok(RebootPolicy::IfRequired),
        Some("never") => Ok(RebootPolicy::Never),
        Some("always") => Ok(RebootPolicy::Always),
        Some(other) => Err(format!("PATCHKEEPER_REBOOT is {other:?}")),
    }
}

/// A timeout variable: plain seconds, or a number with `s`, `m` or `h`.
fn timeout(runner: Option<&Container>, name: &str, default: u64) -> Result<Duration, String> {
    let Some(text) = env(runner, name) else {
        return Ok(Duration::from_secs(default));
    };
    let (number, factor) = match text.trim().char_indices().last() {
        Some((at, 'h')) => (&text[..at], 3600),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 's')) => (&text[..at], 1),
        _ => (text.trim(), 1),
    };
    let seconds: u64 = number.parse().map_err(|_| format!("{name} is {text:?}"))?;
    Ok(Duration::from_secs(seconds.saturating_mul(factor)))
}

/// A literal environment variable of the runner container.
fn env(runner: Option<&Container>, name: &str) -> Option<String> {
    let vars = runner.and_then(|c| c.env.as_ref());
    let var = vars.into_iter().flatten().find(|var| var.name == name)?;
    var.value.clone()
}

fn exit_code(summary: &RunSummary) -> i32 {
    i32::from(summary.outcome != Outcome::Succeeded)
}

/// The summary of a run whose VM carries annotations the double cannot use.
fn invalid_scenario(request: &Request, problem: &str) -> RunSummary {
    let mut summary = RunSummary::new(request.mode);
    summary.outcome = Outcome::Failed;
    summary.failure = Some(Failure {
        phase: Phase::Connect,
        awaiting: "a valid double scenario".into(),
        message: format!("invalid double scenario: {problem}"),
    });
    summary
}

/// Treats "the Pod is gone" as done: a deleted Pod needs nothing more.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        other => other,
    }
}
