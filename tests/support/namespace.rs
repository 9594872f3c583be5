//! A namespace per test, deleted when the test ends, passed or failed.

use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;

use super::testbed::testbed;

/// A namespace of its own for one test. Dropping it starts the namespace's deletion, which
/// the controller-manager completes in the background.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates a namespace whose name starts with `prefix` and is unique in this run.
    pub async fn create(prefix: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api: Api<Namespace> = Api::all(testbed().client().await);
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await; kubectl needs no runtime and returns at once with --wait=false.
        let _ = testbed().run(
            "kubectl",
            &["delete", "namespace", &self.name, "--wait=false"],
        );
    }
}
