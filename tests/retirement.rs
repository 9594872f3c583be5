//! Keep or retire against the real control plane: verdicts with their reasons, the label
//! and Events that make them visible, revocation, and exceptions that waive reasons until
//! they expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use patchkeeper::api::managed_vm::{Decision, ManagedVMStatus, RetirementReason};
use patchkeeper::api::{ManagedVM, PatchException};
use serde_json::json;
use support::doubles::kubelet::KubeletDouble;
use support::doubles::kubevirt::KubevirtDouble;
use support::kubevirt::{install_kubevirt_crds, virtual_machine, vm_api};
use support::operator::{Operator, OperatorConfig};
use support::{TestNamespace, testbed};

/// The operator's clock in these tests.
const CLOCK_START: &str = "2026-12-08T10:00:00Z";

struct Setup {
    ns: TestNamespace,
    client: Client,
    _kubevirt: KubevirtDouble,
    _kubelet: KubeletDouble,
    clock_rate: Option<f64>,
}

impl Setup {
    async fn new(prefix: &str, retirement: serde_json::Value) -> Self {
        Self::with_baseline(prefix, json!({"retirement": retirement}), None).await
    }

    async fn with_baseline(prefix: &str, spec: serde_json::Value, clock_rate: Option<f64>) -> Self {
        testbed().install_crds();
        install_kubevirt_crds();
        let ns = TestNamespace::create(prefix).await;
        let client = testbed().client().await;
        let kubevirt = KubevirtDouble::start(client.clone(), Some(&ns.name));
        let kubelet = KubeletDouble::start(client.clone(), Some(&ns.name));
        let setup = Self { ns, client, _kubevirt: kubevirt, _kubelet: kubelet, clock_rate };
        setup
            .apply(json!({
                "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchBaseline",
                "metadata": {"name": "prod"}, "spec": spec
            }))
            .await;
        setup
            .apply(json!({
                "apiVersion": "patchkeeper.io/v1alpha1", "kind": "MaintenanceWindow",
                "metadata": {"name": "monthly"},
                "spec": {"schedule": "0 22 * * TUE#2", "duration": "4h", "selector": {},
                         "baselineRef": {"name": "prod"}, "executor": {"sshSecretRef": {"name": "ssh"}}}
            }))
            .await;
        setup
    }

    fn operator(&self) -> Operator {
        let config = OperatorConfig {
            namespaces: vec![self.ns.name.clone()],
            clock_start: Some(CLOCK_START.into()),
            clock_rate: self.clock_rate,
        };
        Operator::start(&self.ns.name, &config)
    }

    async fn apply(&self, object: serde_json::Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let (group, version) = object["apiVersion"].as_str().unwrap().split_once('/').unwrap();
        let gvk = kube::core::GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns.name, &kube::core::ApiResource::from_gvk(&gvk));
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.patch(&name, &PatchParams::apply("retirement-test"), &Patch::Apply(object)).await.unwrap();
    }

    async fn vm(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let mut vm = virtual_machine(name, "Always", annotations);
        vm.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        vm_api(self.client.clone(), &self.ns.name).create(&PostParams::default(), &vm).await.unwrap();
    }

    async fn label_vm(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"labels": {key: value}}});
        vm_api(self.client.clone(), &self.ns.name).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }

    /// Waits until the ManagedVM's status satisfies `check`, and returns it.
    async fn managed_until(
        &self,
        name: &str,
        operator: &Operator,
        what: &str,
        check: impl Fn(&ManagedVM) -> bool,
    ) -> ManagedVM {
        let api: Api<ManagedVM> = Api::namespaced(self.client.clone(), &self.ns.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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

    async fn event_reasons(&self, name: &str, kind: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name) && e.involved_object.kind.as_deref() == Some(kind))
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn verdict(managed: &ManagedVM) -> Option<(Decision, Vec<RetirementReason>)> {
    let verdict = managed.status.as_ref()?.verdict.as_ref()?;
    Some((verdict.decision, verdict.reasons.iter().map(|r| r.reason).collect()))
}

fn is_retired_for(reason: RetirementReason) -> impl Fn(&ManagedVM) -> bool {
    move |m| verdict(m).is_some_and(|(d, reasons)| d == Decision::Retire && reasons.contains(&reason))
}

fn is_kept(managed: &ManagedVM) -> bool {
    verdict(managed).is_some_and(|(d, _)| d == Decision::Keep)
}

fn retire_condition(status: &ManagedVMStatus) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == "Retire" && c.status == "True")
}

#[tokio::test]
async fn a_vm_without_an_owner_is_flagged_and_kept_again_once_it_has_one() {
    let setup = Setup::new("ret-owner", json!({"reasons": {"missingOwnerLabel": "owner"}})).await;
    setup.vm("orphan", &[("env", "prod")], &[]).await;
    let operator = setup.operator();

    let flagged = setup.managed_until("orphan", &operator, "flagged", is_retired_for(RetirementReason::MissingOwner)).await;
    assert_eq!(flagged.labels().get("patchkeeper.io/verdict").map(String::as_str), Some("retire"));
    let status = flagged.status.unwrap();
    let condition = retire_condition(&status).expect("a Retire condition");
    assert!(condition.message.contains("owner"), "{condition:?}");
    let retired = Api::<ManagedVM>::namespaced(setup.client.clone(), &setup.ns.name)
        .list(&ListParams::default().labels("patchkeeper.io/verdict=retire"))
        .await
        .unwrap();
    assert_eq!(retired.items.iter().map(|m| m.name_any()).collect::<Vec<_>>(), ["orphan"]);
    assert!(setup.event_reasons("orphan", "VirtualMachine").await.contains(&"RetirementFlagged".to_string()));

    setup.label_vm("orphan", "owner", "team-a").await;
    let kept = setup.managed_until("orphan", &operator, "kept", is_kept).await;
    assert!(!kept.labels().contains_key("patchkeeper.io/verdict"));
    assert!(retire_condition(kept.status.as_ref().unwrap()).is_none());
    assert!(setup.event_reasons("orphan", "ManagedVM").await.contains(&"RetirementRevoked".to_string()));
}

#[tokio::test]
async fn a_vm_past_its_operating_systems_end_of_life_is_flagged() {
    let setup = Setup::new("ret-eol", json!({"reasons": {"endOfLife": true}})).await;
    let stretch = ("double.patchkeeper.io/os", "debian 9 Debian GNU/Linux 9 (stretch)");
    setup.vm("old", &[("owner", "a")], &[stretch]).await;
    setup.vm("current", &[("owner", "a")], &[]).await;
    let operator = setup.operator();

    let old = setup.managed_until("old", &operator, "flagged", is_retired_for(RetirementReason::EndOfLife)).await;
    let message = &old.status.unwrap().verdict.unwrap().reasons[0].message;
    assert!(message.contains("9"), "{message}");
    setup.managed_until("current", &operator, "kept", is_kept).await;
}

#[tokio::test]
async fn an_exception_waives_a_reason_until_it_expires_and_the_expiry_is_announced() {
    let setup = Setup::new("ret-exception", json!({"reasons": {"endOfLife": true}})).await;
    let stretch = ("double.patchkeeper.io/os", "debian 9 Debian GNU/Linux 9 (stretch)");
    setup.vm("legacy-erp", &[("owner", "erp")], &[stretch]).await;
    setup
        .apply(json!({
            "apiVersion": "patchkeeper.io/v1alpha1", "kind": "PatchException",
            "metadata": {"name": "erp-migration"},
            "spec": {"owner": "erp-team@example.com", "reason": "Migration to the new ERP is planned",
                     "expires": "2026-12-08T10:00:20Z", "vmNames": ["legacy-erp"],
                     "retirementReasons": ["EndOfLife"]}
        }))
        .await;
    let operator = setup.operator();

    let waived = setup
        .managed_until("legacy-erp", &operator, "kept under the exception", |m| {
            is_kept(m) && m.status.as_ref().is_some_and(|s| s.exceptions == ["erp-migration"])
        })
        .await;
    assert!(retire_condition(waived.status.as_ref().unwrap()).is_none());

    // The exception expires 20 s after the operator starts: the reason counts again.
    setup.managed_until("legacy-erp", &operator, "flagged after expiry", is_retired_for(RetirementReason::EndOfLife)).await;
    let exception = Api::<PatchException>::namespaced(setup.client.clone(), &setup.ns.name).get("erp-migration").await.unwrap();
    let status = exception.status.unwrap();
    assert_eq!(format!("{:?}", status.state.unwrap()), "Expired");
    assert!(setup.event_reasons("erp-migration", "PatchException").await.contains(&"Expired".to_string()));
}

#[tokio::test]
async fn running_vms_are_scanned_between_windows_and_nothing_is_installed() {
    let spec = json!({"assessment": {"interval": "1h", "staleAfter": "72h"}});
    let setup = Setup::with_baseline("ret-assess", spec, None).await;
    let updates = ("double.patchkeeper.io/updates", "openssl=3.0.15-1:Security:Critical,curl=7.88.1-10:Bugfix");
    setup.vm("web", &[("owner", "a")], &[updates]).await;
    let operator = setup.operator();

    let scanned = setup
        .managed_until("web", &operator, "assessed NonCompliant", |m| {
            m.status.as_ref().and_then(|s| s.compliance.as_ref()).is_some_and(|c| {
                format!("{:?}", c.state) == "NonCompliant" && c.missing.critical == 1 && c.missing.total == 2
            })
        })
        .await;
    let compliance = scanned.status.unwrap().compliance.unwrap();
    assert_eq!(compliance.pending_updates.len(), 2);
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(setup.client.clone(), &setup.ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let steps: Vec<_> = jobs.items.iter().filter_map(|j| j.labels().get("patchkeeper.io/job").cloned()).collect();
    assert!(!steps.is_empty() && steps.iter().all(|s| s == "scan"), "{steps:?}");
    let vm = vm_api(setup.client.clone(), &setup.ns.name).get("web").await.unwrap();
    assert!(!vm.annotations().contains_key("double.patchkeeper.io/installed"), "an assessment scan installed something");
    assert!(setup.event_reasons("web", "ManagedVM").await.contains(&"Scanned".to_string()));
}

#[tokio::test]
async fn a_dormant_vms_compliance_turns_stale_and_never_compliant_on_old_data() {
    // The clock runs 10 times as fast: the 3-minute freshness limit passes in 18 s.
    let spec = json!({"assessment": {"interval": "24h", "staleAfter": "3m"}});
    let setup = Setup::with_baseline("ret-stale", spec, Some(10.0)).await;
    setup.vm("quiet", &[("owner", "a")], &[]).await;
    let operator = setup.operator();

    setup
        .managed_until("quiet", &operator, "Compliant after its scan", |m| {
            m.status.as_ref().and_then(|s| s.compliance.as_ref()).is_some_and(|c| format!("{:?}", c.state) == "Compliant")
        })
        .await;
    let halt = json!({"spec": {"runStrategy": "Halted"}});
    vm_api(setup.client.clone(), &setup.ns.name).patch("quiet", &PatchParams::default(), &Patch::Merge(halt)).await.unwrap();
    setup
        .managed_until("quiet", &operator, "Stale once dormant and old", |m| {
            m.status.as_ref().and_then(|s| s.compliance.as_ref()).is_some_and(|c| format!("{:?}", c.state) == "Stale")
        })
        .await;
}
