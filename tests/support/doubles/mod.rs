//! Test doubles for what cannot run beside the local control plane: KubeVirt's controller
//! ([`kubevirt`]) and the kubelet running patchkeeper's patch Pods ([`kubelet`]).
//!
//! Both are plain kube-rs controllers: they watch the cluster and act on what they see, and
//! keep their clocks in the objects themselves wherever the API allows, so the operator (or a
//! double) can restart mid-run. Each VirtualMachine scripts how its guest behaves with
//! annotations under [`ANNOTATION_PREFIX`] (see [`scenario`]). The operator never links this
//! code: it runs only in integration tests and in `examples/doubles.rs`.

pub mod kubelet;
pub mod kubevirt;
pub mod patch_run;
pub mod scenario;

use std::future::Future;

use jiff::Timestamp;
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use tokio::task::JoinHandle;

/// Prefix of the annotations on a VirtualMachine that script its double's behaviour.
pub const ANNOTATION_PREFIX: &str = "double.patchkeeper.io/";

/// A double running in the background; dropping the handle stops it.
#[derive(Debug)]
struct Running {
    task: JoinHandle<()>,
}

impl Running {
    /// Spawns `work` on the current Tokio runtime.
    fn spawn(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Running {
            task: tokio::spawn(work),
        }
    }

    /// Stops the double now; what it already wrote to the cluster stays.
    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The API over a KubeVirt kind in one namespace, or in all namespaces with `None`.
fn scoped(client: Client, namespace: Option<&str>, kind: &ApiResource) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, kind),
        None => Api::all_with(client, kind),
    }
}

/// A time as the API server keeps it in most fields: RFC 3339 in whole seconds.
fn whole_seconds(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
