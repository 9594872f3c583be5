//! Smoke tests proving that the local control plane is a real one: the API server stores,
//! watches, applies and authorizes, and the controller-manager collects garbage and runs
//! the Job controller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::ObjectMeta;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{TestNamespace, Testbed, testbed};

const WAIT: Duration = Duration::from_secs(60);

/// A throwaway kind with a status subresource.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "smoke.testbed.patchkeeper.io",
    version = "v1",
    kind = "Gadget",
    namespaced
)]
#[kube(status = "GadgetStatus")]
struct GadgetSpec {
    size: i32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
struct GadgetStatus {
    observed_size: i32,
}

fn config_map(name: &str, namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: Some([("greeting".to_string(), "hello".to_string())].into()),
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn server_version_is_the_pinned_release() {
    let client = testbed().client().await;
    let info = client.apiserver_version().await.unwrap();
    let pinned = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testbed/versions.env"
    ))
    .unwrap();
    assert!(
        pinned.contains(&format!("KUBERNETES_VERSION={}", info.git_version)),
        "{info:?}"
    );
}

#[tokio::test]
async fn created_objects_read_back() {
    let ns = TestNamespace::create("smoke-create").await;
    let api: Api<ConfigMap> = Api::namespaced(testbed().client().await, &ns.name);
    api.create(&PostParams::default(), &config_map("first", &ns.name))
        .await
        .unwrap();

    let read = api.get("first").await.unwrap();
    assert_eq!(read.data.unwrap()["greeting"], "hello");
}

#[tokio::test]
async fn a_watch_sees_an_object_created_after_it_started() {
    let ns = TestNamespace::create("smoke-watch").await;
    let api: Api<ConfigMap> = Api::namespaced(testbed().client().await, &ns.name);
    let config = watcher::Config::default().fields("metadata.name=watched");
    let mut events = watcher(api.clone(), config).applied_objects().boxed();
    // The watcher lists first; create only once it is running.
    let creator = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        api.create(&PostParams::default(), &config_map("watched", &ns.name))
            .await
            .unwrap();
    };
    let (seen, ()) = tokio::join!(tokio::time::timeout(WAIT, events.try_next()), creator);

    assert_eq!(seen.unwrap().unwrap().unwrap().name_any(), "watched");
}

#[tokio::test]
async fn server_side_apply_merges_and_records_the_field_manager() {
    let ns = TestNamespace::create("smoke-apply").await;
    let api: Api<ConfigMap> = Api::namespaced(testbed().client().await, &ns.name);
    let apply = |data: serde_json::Value| {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": data});
        let api = api.clone();
        async move {
            api.patch(
                "applied",
                &PatchParams::apply("smoke-test"),
                &Patch::Apply(body),
            )
            .await
        }
    };
    apply(json!({"a": "1"})).await.unwrap();
    let updated = apply(json!({"a": "2", "b": "3"})).await.unwrap();

    assert_eq!(
        updated.data.clone().unwrap(),
        [("a".into(), "2".into()), ("b".into(), "3".into())].into()
    );
    let managers: Vec<_> = updated
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["smoke-test"]);
}

#[tokio::test]
async fn the_status_subresource_is_written_separately_from_the_spec() {
    let ns = TestNamespace::create("smoke-status").await;
    let client = testbed().client().await;
    install_gadget_crd(&client).await;
    let api: Api<Gadget> = Api::namespaced(client, &ns.name);
    api.create(
        &PostParams::default(),
        &Gadget::new("one", GadgetSpec { size: 3 }),
    )
    .await
    .unwrap();

    let status = json!({"status": {"observed_size": 3}});
    api.patch_status("one", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    // A status field sent to the main resource is ignored by the API server.
    let spec_and_status = json!({"spec": {"size": 4}, "status": {"observed_size": 99}});
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(spec_and_status),
    )
    .await
    .unwrap();

    let read = api.get("one").await.unwrap();
    assert_eq!(read.spec.size, 4);
    assert_eq!(read.status.unwrap().observed_size, 3);
}

async fn install_gadget_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("smoke-test").force();
    crds.patch(Gadget::crd_name(), &params, &Patch::Apply(Gadget::crd()))
        .await
        .unwrap();
    let established = await_condition(crds, Gadget::crd_name(), conditions::is_crd_established());
    tokio::time::timeout(WAIT, established)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn deleting_an_owner_collects_what_it_owns() {
    let ns = TestNamespace::create("smoke-gc").await;
    let api: Api<ConfigMap> = Api::namespaced(testbed().client().await, &ns.name);
    let owner = api
        .create(&PostParams::default(), &config_map("owner", &ns.name))
        .await
        .unwrap();
    let mut owned = config_map("owned", &ns.name);
    owned.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    let owned = api.create(&PostParams::default(), &owned).await.unwrap();

    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    api.delete("owner", &background).await.unwrap();

    let uid = owned.uid().unwrap();
    let gone = await_condition(api, "owned", conditions::is_deleted(&uid));
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("the garbage collector removed the owned object")
        .unwrap();
}

#[tokio::test]
async fn the_job_controller_creates_a_pod_for_a_job() {
    let ns = TestNamespace::create("smoke-job").await;
    let client = testbed().client().await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "hello", "image": "registry.invalid/hello"}]
        }}}
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods
        .list(&ListParams::default().labels("job-name=hello"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Pod was created for the Job"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rbac_refuses_the_user_until_a_role_grants_access() {
    let ns = TestNamespace::create("smoke-rbac").await;
    let admin = testbed().client().await;
    let as_user: Api<ConfigMap> = Api::namespaced(testbed().user_client().await, &ns.name);

    let refused = as_user.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused:?}"
    );

    grant_config_map_reading(&admin, &ns.name).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while as_user.list(&ListParams::default()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the RoleBinding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still_refused = as_user
        .create(&PostParams::default(), &config_map("nope", &ns.name))
        .await;
    assert!(matches!(still_refused, Err(kube::Error::Api(status)) if status.code == 403));
}

async fn grant_config_map_reading(admin: &kube::Client, namespace: &str) {
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-config".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-config".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "read-config".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: Testbed::USER.into(),
            ..Subject::default()
        }]),
    };
    let pp = PostParams::default();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&pp, &binding)
        .await
        .unwrap();
}
