//! Reading the fleet from the cluster of the current kubeconfig, with failures told in
//! terms of what the person running the report can do about them.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::error::Error;
use super::fleet::Fleet;
use crate::api::{MaintenanceWindow, ManagedVM, PatchBaseline, PatchException};

/// Which namespaces the report reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// Only these.
    Namespaces(Vec<String>),
}

/// A client for the current kubeconfig, or the in-cluster service account.
pub async fn connect() -> Result<Client, Error> {
    Client::try_default()
        .await
        .map_err(|source| Error::NoKubeconfig {
            kubeconfig: kubeconfig_in_use(),
            source,
        })
}

/// Every ManagedVM, PatchException, MaintenanceWindow and PatchBaseline in `scope`.
pub async fn read_fleet(client: &Client, scope: &Scope) -> Result<Fleet, Error> {
    // ManagedVMs first, alone: when they fail, so would the rest, for the same reason.
    let managed_vms = list::<ManagedVM>(client, scope).await?;
    let (exceptions, windows, baselines) = futures::try_join!(
        list::<PatchException>(client, scope),
        list::<MaintenanceWindow>(client, scope),
        list::<PatchBaseline>(client, scope),
    )?;
    Ok(Fleet {
        managed_vms,
        exceptions,
        windows,
        baselines,
    })
}

async fn list<K>(client: &Client, scope: &Scope) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    K: Clone + Debug + DeserializeOwned,
{
    let namespaces = match scope {
        Scope::All => return list_in(Api::<K>::all(client.clone())).await,
        Scope::Namespaces(namespaces) => namespaces,
    };
    let mut objects = Vec::new();
    for namespace in namespaces {
        objects.extend(list_in(Api::<K>::namespaced(client.clone(), namespace)).await?);
    }
    Ok(objects)
}

async fn list_in<K>(api: Api<K>) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    // Limitation: one unpaged list per kind and namespace; a fleet of many thousands of VMs
    // is held in memory at once.
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(error) => Err(classify(K::plural(&()).into_owned(), error)),
    }
}

/// The failure to list one kind, told by what it means for the person running the report.
fn classify(plural: String, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(status) if status.code == 404 => Error::CrdsNotInstalled,
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => Error::Forbidden {
            plural,
            message: status.message,
        },
        error @ (kube::Error::Api(_) | kube::Error::SerdeError(_)) => Error::List {
            plural,
            source: error,
        },
        source => Error::Unreachable {
            kubeconfig: kubeconfig_in_use(),
            source,
        },
    }
}

/// Which kubeconfig a client made now would use, in words.
fn kubeconfig_in_use() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() => format!("KUBECONFIG={path}"),
        _ => "KUBECONFIG is not set, so ~/.kube/config or the in-cluster service account".into(),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, "Reason").with_code(code).boxed())
    }

    #[test]
    fn not_found_means_the_crds_are_not_installed() {
        let error = classify(
            "managedvms".into(),
            api_error(404, "the server could not find"),
        );
        assert!(matches!(error, Error::CrdsNotInstalled));
    }

    #[test]
    fn forbidden_names_the_kind_and_the_permissions_needed() {
        let error = classify("patchbaselines".into(), api_error(403, "user cannot list"));
        let text = error.to_string();
        assert!(
            text.contains("patchbaselines.patchkeeper.io: user cannot list"),
            "{text}"
        );
        assert!(text.contains("the report needs `list`"), "{text}");
    }

    #[test]
    fn a_failure_to_connect_names_kubeconfig() {
        let io = std::io::Error::other("connection refused");
        let error = classify("managedvms".into(), kube::Error::ReadEvents(io));
        assert!(error.to_string().contains("KUBECONFIG"), "{error}");
        assert!(matches!(error, Error::Unreachable { .. }));
    }

    #[test]
    fn another_api_failure_is_a_list_failure() {
        let error = classify("managedvms".into(), api_error(500, "etcd is down"));
        assert!(matches!(error, Error::List { plural, .. } if plural == "managedvms"));
    }
}
