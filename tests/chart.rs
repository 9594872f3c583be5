//! The Helm chart against the real control plane: it lints clean, installs in cluster and in
//! namespaced mode, grants no wildcard and no Secret, and its RBAC is exactly enough: the
//! real operator, authenticated as the chart's ServiceAccount, does its whole job in a
//! namespace that enforces the "restricted" Pod Security Standard, and is refused the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, ObjectMeta};
use kube::{Client, ResourceExt};
use patchkeeper::api::{MaintenanceWindow, ManagedVM};
use serde_json::{Value, json};
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::doubles::scenario::{BOOT_SECONDS, UPDATES};
use support::kubevirt::{install_kubevirt_crds, virtual_machine, vm_api};
use support::{TestNamespace, testbed};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/patchkeeper");

/// The operator's clock in the whole-run test: five seconds before its window opens.
const CLOCK_START: &str = "2026-12-08T21:59:55Z";

/// What scans of a VM with this annotation find; the test baseline approves it.
const SOME_UPDATES: (&str, &str) = (UPDATES, "openssl=3.0.15-1:Security:Critical");

/// Runs helm with the admin kubeconfig; panics with helm's own message when it fails.
fn helm(args: &[&str]) -> String {
    let output = testbed().run("helm", args);
    assert!(
        output.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The manifests `helm template` renders for a release named `release` in `namespace`,
/// with `--set` values.
fn template(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    let rendered = helm(&args);
    serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .filter(|manifest: &Value| !manifest.is_null())
        .collect()
}

fn of_kind<'a>(manifests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifests.iter().filter(|m| m["kind"] == kind).collect()
}

/// Every rule of every Role and ClusterRole, with the role's kind and namespace.
fn rules(manifests: &[Value]) -> Vec<(String, Value)> {
    manifests
        .iter()
        .filter(|m| m["kind"] == "Role" || m["kind"] == "ClusterRole")
        .flat_map(|role| {
            let owner = format!("{} {}", role["kind"], role["metadata"]["name"]);
            let rules = role["rules"].as_array().cloned().unwrap_or_default();
            rules.into_iter().map(move |rule| (owner.clone(), rule))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A Helm release, uninstalled when dropped.
struct Release {
    name: String,
    namespace: String,
    sets: Vec<String>,
}

impl Release {
    fn install(name: &str, namespace: &str, sets: &[&str]) -> Self {
        let mut args = vec!["install", name, CHART, "--namespace", namespace];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(&args);
        Self {
            name: name.into(),
            namespace: namespace.into(),
            sets: sets.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The ServiceAccount's name: the release's full name, which holds the chart's name.
    fn service_account(&self) -> &str {
        &self.name
    }

    /// The user the API server sees when the operator authenticates with its token.
    fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace,
            self.service_account()
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = testbed().run(
            "helm",
            &["uninstall", &self.name, "--namespace", &self.namespace],
        );
    }
}

/// A namespace that enforces the "restricted" Pod Security Standard.
async fn restricted_namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(prefix).await;
    testbed().kubectl(&[
        "label",
        "namespace",
        &ns.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    ns
}

/// A kubeconfig that authenticates with a token minted for the release's ServiceAccount,
/// against the testbed's API server.
fn token_kubeconfig(release: &Release) -> PathBuf {
    let token = testbed().kubectl(&[
        "create",
        "token",
        release.service_account(),
        "--namespace",
        &release.namespace,
        "--duration=1h",
    ]);
    let admin: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(testbed().kubeconfig()).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {
            "server": cluster["server"],
            "certificate-authority": cluster["certificate-authority"],
        }}],
        "users": [{"name": release.service_account(), "user": {"token": token.trim()}}],
        "contexts": [{"name": "operator", "context": {
            "cluster": "testbed",
            "user": release.service_account(),
            "namespace": release.namespace,
        }}],
        "current-context": "operator",
    });
    let path = testbed()
        .state_dir
        .join(format!("kubeconfig-{}", release.namespace));
    std::fs::write(&path, serde_yaml_ng::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// `kubectl auth can-i VERB RESOURCE --as USER -n NS`: whether RBAC allows it.
fn can_i(user: &str, namespace: &str, verb: &str, resource: &str) -> bool {
    let output = testbed().run(
        "kubectl",
        &[
            "auth",
            "can-i",
            verb,
            resource,
            "--as",
            user,
            "--namespace",
            namespace,
        ],
    );
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {verb} {resource}: {answer} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer == "yes"
}

/// The real operator, started as the chart's Deployment starts it (its arguments and the
/// downward-API environment) but authenticated with `kubeconfig`; killed when dropped.
struct ChartOperator {
    child: Child,
    log: PathBuf,
}

impl ChartOperator {
    fn start(release: &Release, kubeconfig: &Path, extra: &[&str]) -> Self {
        let sets: Vec<&str> = release.sets.iter().map(String::as_str).collect();
        let manifests = template(&release.name, &release.namespace, &sets);
        let deployment = of_kind(&manifests, "Deployment")[0];
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = strings(&container["args"]);
        let log = testbed()
            .state_dir
            .join(format!("operator-chart-{}.log", release.namespace));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_patchkeeper"))
            .args(&args)
            // Tests run side by side: each operator serves on a port of its own.
            .arg("--http-addr=127.0.0.1:0")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", format!("{}-0", release.name))
            .env("POD_NAMESPACE", &release.namespace)
            .env("RUST_LOG", "info,kube=warn,patchkeeper=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the patchkeeper binary");
        Self { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChartOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `holds` every 250 ms until it is true; fails after `limit` with `what` and the
/// operator's log.
async fn eventually(
    what: &str,
    operator: &ChartOperator,
    limit: Duration,
    mut holds: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !holds().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen in {limit:?}\noperator log:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Applies a patchkeeper object (server-side, as the admin) in `namespace`.
async fn apply(client: &Client, namespace: &str, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap();
    let gvk = kube::core::GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let resource = kube::core::ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.patch(
        &name,
        &PatchParams::apply("chart-test"),
        &Patch::Apply(object),
    )
    .await
    .unwrap();
}

async fn ssh_secret(client: &Client, namespace: &str) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("patchkeeper-ssh".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            (
                "ssh-privatekey".into(),
                "never read: the kubelet double runs the Jobs".into(),
            ),
            ("known_hosts".into(), String::new()),
        ])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// A VM labelled for the test window, with an owner, an update to install, and a boot
/// that takes a second.
async fn vm(client: &Client, namespace: &str, name: &str, run_strategy: &str) {
    let mut vm = virtual_machine(name, run_strategy, &[SOME_UPDATES, (BOOT_SECONDS, "1")]);
    vm.metadata.labels = Some(BTreeMap::from([
        ("env".into(), "dev".into()),
        ("owner".into(), "team-a".into()),
    ]));
    vm_api(client.clone(), namespace)
        .create(&PostParams::default(), &vm)
        .await
        .unwrap();
}

fn baseline() -> Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
        "metadata": {"name": "dev"},
        "spec": {"approval": {"classifications": ["Security", "Bugfix", "Enhancement", "Other"]}}
    })
}

/// Every night at 22:00 UTC for an hour, over the VMs labelled `env: dev`, waking the
/// dormant ones.
fn nightly_window() -> Value {
    json!({
        "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 22 * * *", "timeZone": "UTC", "duration": "1h", "cutoff": "10m",
            "selector": {"matchLabels": {"env": "dev"}},
            "baselineRef": {"name": "dev"},
            "rollout": {"maxConcurrent": 2},
            "dormant": {"wake": true, "maxAwake": 1},
            "executor": {"sshSecretRef": {"name": "patchkeeper-ssh"}}
        }
    })
}

#[test]
fn the_charts_crds_are_the_repositorys_crds() {
    let repository = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/patchkeeper.io.yaml"
    ))
    .unwrap();
    let chart = std::fs::read_to_string(format!("{CHART}/crds/patchkeeper.io.yaml")).unwrap();
    assert!(
        chart == repository,
        "charts/patchkeeper/crds/ is out of date; refresh it with \
         `cp crds/patchkeeper.io.yaml charts/patchkeeper/crds/`"
    );
}

#[test]
fn the_charts_app_version_is_the_operators_version() {
    let chart: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(format!("{CHART}/Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn helm_lint_is_clean_in_both_modes() {
    for sets in [vec![], vec!["watchNamespaces={team-a,team-b}"]] {
        let mut args = vec!["lint", "--strict", CHART];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let output = helm(&args);
        assert!(output.contains("0 chart(s) failed"), "{output}");
        assert!(!output.contains("[WARNING]"), "{output}");
    }
}

#[test]
fn values_outside_the_schema_are_refused() {
    for set in [
        "replicas=2",
        "logFormat=xml",
        "watchNamespaces={Not_A_Name}",
    ] {
        let output = testbed().run("helm", &["lint", CHART, "--set", set]);
        assert!(!output.status.success(), "--set {set} was accepted");
    }
}

#[test]
fn several_replicas_are_refused_without_leader_election() {
    let sets = [
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
    ];
    let mut args = vec!["template", "patchkeeper", CHART];
    args.extend(sets);
    let output = testbed().run("helm", &args);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs leaderElection.enabled"));
}

#[test]
fn without_leader_election_no_lease_is_granted() {
    let manifests = template(
        "patchkeeper",
        "patchkeeper-system",
        &["leaderElection.enabled=false"],
    );
    assert!(
        rules(&manifests)
            .iter()
            .all(|(_, rule)| !strings(&rule["resources"]).contains(&"leases"))
    );
    let deployment = of_kind(&manifests, "Deployment")[0];
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--leader-election=false"), "{args:?}");
}

#[test]
fn the_service_monitor_scrapes_the_metrics_service_when_enabled() {
    let off = template("patchkeeper", "patchkeeper-system", &[]);
    assert!(of_kind(&off, "ServiceMonitor").is_empty());
    let on = template(
        "patchkeeper",
        "patchkeeper-system",
        &["metrics.serviceMonitor.enabled=true"],
    );
    let monitor = of_kind(&on, "ServiceMonitor")[0];
    let service = of_kind(&on, "Service")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][label], value);
    }
}

#[test]
fn rbac_has_no_wildcard_and_no_secrets_in_either_mode() {
    for sets in [vec![], vec!["watchNamespaces={team-a,team-b}"]] {
        let manifests = template("patchkeeper", "patchkeeper-system", &sets);
        let rules = rules(&manifests);
        assert!(!rules.is_empty());
        for (role, rule) in &rules {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{role} has a wildcard in {field}: {rule}"
                );
            }
            assert!(
                !strings(&rule["resources"])
                    .iter()
                    .any(|r| r.starts_with("secrets")),
                "{role} grants Secrets: {rule}"
            );
            assert!(rule.get("nonResourceURLs").is_none(), "{role}: {rule}");
        }
    }
}

#[test]
fn namespaced_mode_grants_nothing_cluster_wide() {
    let manifests = template(
        "patchkeeper",
        "patchkeeper-system",
        &["watchNamespaces={team-a,team-b}"],
    );
    assert!(of_kind(&manifests, "ClusterRole").is_empty());
    assert!(of_kind(&manifests, "ClusterRoleBinding").is_empty());
    let role_namespaces = |kind: &str| -> Vec<String> {
        let mut namespaces: Vec<String> = of_kind(&manifests, kind)
            .iter()
            .map(|m| m["metadata"]["namespace"].as_str().unwrap().to_string())
            .collect();
        namespaces.sort();
        namespaces
    };
    assert_eq!(
        role_namespaces("Role"),
        ["patchkeeper-system", "team-a", "team-b"],
        "a Role per watched namespace, and the Lease's in the release namespace"
    );
    assert_eq!(role_namespaces("RoleBinding"), role_namespaces("Role"));
    let deployment = of_kind(&manifests, "Deployment")[0];
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--namespace=team-a") && args.contains(&"--namespace=team-b"));
}

#[test]
fn leases_are_granted_only_in_the_release_namespace() {
    let manifests = template("patchkeeper", "patchkeeper-system", &[]);
    for role in of_kind(&manifests, "Role")
        .into_iter()
        .chain(of_kind(&manifests, "ClusterRole"))
    {
        let grants_leases = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| strings(&rule["resources"]).contains(&"leases"));
        if grants_leases {
            assert_eq!(role["kind"], "Role", "{role}");
            assert_eq!(role["metadata"]["namespace"], "patchkeeper-system");
        }
    }
}

#[tokio::test]
async fn helm_install_succeeds_in_cluster_mode() {
    testbed().install_crds();
    install_kubevirt_crds();
    let ns = TestNamespace::create("chart-cluster").await;
    let release = Release::install("patchkeeper-cluster", &ns.name, &[]);
    testbed().kubectl(&["get", "clusterrole,clusterrolebinding", &release.name]);
    testbed().kubectl(&[
        "get",
        "deployment,serviceaccount",
        &release.name,
        "-n",
        &ns.name,
    ]);
    testbed().kubectl(&[
        "get",
        "service",
        &format!("{}-metrics", release.name),
        "-n",
        &ns.name,
    ]);
    assert!(can_i(
        &release.user(),
        "default",
        "list",
        "virtualmachines.kubevirt.io"
    ));
}

#[tokio::test]
async fn helm_install_succeeds_in_namespaced_mode() {
    testbed().install_crds();
    install_kubevirt_crds();
    let ns = TestNamespace::create("chart-ns").await;
    let team_a = TestNamespace::create("chart-team-a").await;
    let team_b = TestNamespace::create("chart-team-b").await;
    let watch = format!("watchNamespaces={{{},{}}}", team_a.name, team_b.name);
    let release = Release::install("patchkeeper-namespaced", &ns.name, &[&watch]);
    for watched in [&team_a.name, &team_b.name] {
        testbed().kubectl(&["get", "role,rolebinding", &release.name, "-n", watched]);
        assert!(can_i(
            &release.user(),
            watched,
            "patch",
            "virtualmachines.kubevirt.io"
        ));
        assert!(can_i(&release.user(), watched, "create", "jobs.batch"));
    }
    assert!(!can_i(
        &release.user(),
        "default",
        "list",
        "virtualmachines.kubevirt.io"
    ));
    assert!(!can_i(
        &release.user(),
        &ns.name,
        "list",
        "virtualmachines.kubevirt.io"
    ));
    assert!(can_i(
        &release.user(),
        &ns.name,
        "create",
        "leases.coordination.k8s.io"
    ));
}

#[tokio::test]
async fn the_operator_is_refused_secrets() {
    testbed().install_crds();
    let ns = restricted_namespace("chart-secrets").await;
    let release = Release::install("patchkeeper-secrets", &ns.name, &[]);
    let admin = testbed().client().await;
    ssh_secret(&admin, &ns.name).await;

    for verb in ["get", "list", "watch"] {
        assert!(
            !can_i(&release.user(), &ns.name, verb, "secrets"),
            "{verb} secrets"
        );
    }
    let operator = client_from(&token_kubeconfig(&release)).await;
    let refused = Api::<Secret>::namespaced(operator, &ns.name)
        .get("patchkeeper-ssh")
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test]
async fn the_operators_pod_is_admitted_under_the_restricted_standard() {
    let ns = restricted_namespace("chart-psa").await;
    let _release = Release::install("patchkeeper-psa", &ns.name, &[]);
    let manifests = template("patchkeeper-psa", &ns.name, &[]);
    let template = &of_kind(&manifests, "Deployment")[0]["spec"]["template"];
    let pods: Api<Pod> = Api::namespaced(testbed().client().await, &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "patchkeeper-dry-run", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }))
    .unwrap();
    pods.create(&dry_run, &pod).await.unwrap();

    // The same Pod without the container's hardening is refused: enforcement is on.
    let mut loose = pod.clone();
    loose.spec.as_mut().unwrap().containers[0].security_context = None;
    let refused = pods.create(&dry_run, &loose).await.unwrap_err();
    assert!(
        refused.to_string().contains("violates PodSecurity"),
        "{refused}"
    );
}

#[tokio::test]
async fn with_only_the_charts_rbac_the_operator_patches_a_fleet_and_puts_a_dormant_vm_back() {
    testbed().install_crds();
    install_kubevirt_crds();
    let ns = restricted_namespace("chart-rbac").await;
    let release = Release::install("patchkeeper-rbac", &ns.name, &[]);
    let admin = testbed().client().await;
    let _kubevirt = KubevirtDouble::start(admin.clone(), Some(&ns.name));
    let _kubelet = KubeletDouble::start(admin.clone(), Some(&ns.name));
    ssh_secret(&admin, &ns.name).await;
    apply(&admin, &ns.name, baseline()).await;
    vm(&admin, &ns.name, "awake", "Always").await;
    vm(&admin, &ns.name, "sleepy", "Halted").await;
    apply(&admin, &ns.name, nightly_window()).await;

    let kubeconfig = token_kubeconfig(&release);
    let operator = ChartOperator::start(
        &release,
        &kubeconfig,
        &["--clock-start", CLOCK_START, "--clock-rate", "2"],
    );

    let windows: Api<MaintenanceWindow> = Api::namespaced(admin.clone(), &ns.name);
    eventually(
        "the window's run ending",
        &operator,
        Duration::from_secs(120),
        async || {
            let status = windows
                .get("nightly")
                .await
                .unwrap()
                .status
                .unwrap_or_default();
            status.last_run.is_some() && status.current_run.is_none()
        },
    )
    .await;

    let status = windows.get("nightly").await.unwrap().status.unwrap();
    let last = status.last_run.unwrap();
    assert_eq!(
        (last.counts.succeeded, last.counts.failed),
        (2, 0),
        "{last:?}"
    );
    let managed: Api<ManagedVM> = Api::namespaced(admin.clone(), &ns.name);
    let sleepy = managed.get("sleepy").await.unwrap().status.unwrap();
    assert!(sleepy.history[0].woken, "{:?}", sleepy.history);
    let vm = vm_api(admin.clone(), &ns.name).get("sleepy").await.unwrap();
    assert_eq!(
        vm.data["spec"]["runStrategy"], "Halted",
        "sleepy was put back"
    );
    assert_eq!(
        managed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    assert_patch_pods_were_admitted(&admin, &ns.name).await;
    assert_operator_events_were_written(&admin, &ns.name).await;
    // The operator watches every namespace: other tests' namespaces being deleted refuse new
    // objects with Forbidden too, which says nothing about RBAC.
    let log = operator.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden") && !l.contains("NamespaceTerminating"))
        .collect();
    assert!(
        refused.is_empty(),
        "the operator was refused something:\n{}",
        refused.join("\n")
    );
}

/// Every patch Job of the namespace got its Pod: none was refused by Pod Security.
async fn assert_patch_pods_were_admitted(client: &Client, namespace: &str) {
    let jobs = Api::<Job>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(!jobs.is_empty(), "no patch Job was created");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for job in &jobs {
        let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
        let created = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        assert!(
            !created.items.is_empty(),
            "Job {} has no Pod",
            job.name_any()
        );
    }
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .map(|e| e.message.clone().unwrap_or_default())
        .collect();
    assert!(refused.is_empty(), "Pods were refused: {refused:?}");
}

/// The operator's Events (events.k8s.io) are there, written under its own identity.
async fn assert_operator_events_were_written(client: &Client, namespace: &str) {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e.reporting_component.as_deref() == Some("patchkeeper"))
        .filter_map(|e| e.reason.as_deref())
        .collect();
    for reason in ["Waking", "Patched", "Restoring"] {
        assert!(reasons.contains(&reason), "no {reason} Event: {reasons:?}");
    }
}

#[tokio::test]
async fn in_namespaced_mode_the_operator_holds_its_lease_and_inventories_with_roles_only() {
    testbed().install_crds();
    install_kubevirt_crds();
    let ns = restricted_namespace("chart-lease").await;
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let release = Release::install("patchkeeper-lease", &ns.name, &[&watch]);
    let admin = testbed().client().await;
    vm(&admin, &ns.name, "inventoried", "Halted").await;
    let operator = ChartOperator::start(&release, &token_kubeconfig(&release), &[]);

    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns.name);
    let holder = format!("{}-0", release.name);
    eventually(
        "the Lease being held",
        &operator,
        Duration::from_secs(30),
        async || {
            let lease = leases.get_opt("patchkeeper").await.unwrap();
            lease
                .and_then(|l| l.spec?.holder_identity)
                .is_some_and(|h| h == holder)
        },
    )
    .await;
    let managed: Api<ManagedVM> = Api::namespaced(admin.clone(), &ns.name);
    eventually(
        "the VM being inventoried",
        &operator,
        Duration::from_secs(30),
        async || {
            let record = managed.get_opt("inventoried").await.unwrap();
            record
                .and_then(|m| m.status)
                .is_some_and(|s| s.power.is_some())
        },
    )
    .await;
    assert!(!can_i(
        &release.user(),
        "default",
        "list",
        "virtualmachines.kubevirt.io"
    ));
    let log = operator.log_text();
    assert!(!log.to_lowercase().contains("forbidden"), "refused:\n{log}");
}
