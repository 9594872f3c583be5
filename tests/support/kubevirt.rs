//! KubeVirt's API on the test control plane: the minimal CRDs from
//! `tests/fixtures/kubevirt-crds.yaml` and VirtualMachine manifests for tests. The behaviour
//! behind them comes from the doubles in `doubles/`.

use std::sync::OnceLock;

use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use serde_json::json;

use super::doubles::kubevirt::{virtual_machine_instances, virtual_machines};
use super::testbed::testbed;

/// Installs the KubeVirt CRDs (once per test binary) and waits until they are served.
pub fn install_kubevirt_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubevirt-crds.yaml"
        );
        let bed = testbed();
        bed.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", fixture]);
        let established = "--for=condition=Established";
        bed.kubectl(&["wait", established, "--timeout=60s", "-f", fixture]);
    });
}

/// The VirtualMachines of a namespace.
pub fn vm_api(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &virtual_machines())
}

/// The VirtualMachineInstances of a namespace.
pub fn vmi_api(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &virtual_machine_instances())
}

/// A small VirtualMachine with the given run strategy and annotations.
pub fn virtual_machine(
    name: &str,
    run_strategy: &str,
    annotations: &[(&str, &str)],
) -> DynamicObject {
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    let manifest = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "runStrategy": run_strategy,
            "template": {
                "metadata": { "labels": { "kubevirt.io/domain": name } },
                "spec": {
                    "domain": {
                        "devices": { "disks": [{ "name": "root", "disk": { "bus": "virtio" } }] },
                        "resources": { "requests": { "memory": "1Gi" } },
                    },
                    "volumes": [{
                        "name": "root",
                        "containerDisk": { "image": "example.invalid/debian:12" },
                    }],
                },
            },
        },
    });
    serde_json::from_value(manifest).expect("a VirtualMachine manifest")
}

/// `vm` with these labels.
pub fn labelled(mut vm: DynamicObject, labels: &[(&str, &str)]) -> DynamicObject {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    vm.metadata.labels = Some(labels.collect());
    vm
}

/// Creates `vm` in `namespace` and returns it as stored.
pub async fn create_vm(client: Client, namespace: &str, vm: &DynamicObject) -> DynamicObject {
    vm_api(client, namespace)
        .create(&PostParams::default(), vm)
        .await
        .expect("create the VirtualMachine")
}
