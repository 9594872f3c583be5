//! The patchkeeper API, group `patchkeeper.io`, version `v1alpha1`. These Rust types are
//! the source of truth: the CRDs in `crds/` are generated from them.

// Each `printcolumn(...)` of kube's derive repeats the same keys, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
pub mod baseline;
pub mod common;
#[allow(clippy::duplicated_attributes)]
pub mod exception;
#[allow(clippy::duplicated_attributes)]
pub mod managed_vm;
#[allow(clippy::duplicated_attributes)]
pub mod window;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use baseline::{PatchBaseline, PatchBaselineSpec, PatchBaselineStatus};
pub use exception::{PatchException, PatchExceptionSpec, PatchExceptionStatus};
pub use managed_vm::{ManagedVM, ManagedVMSpec, ManagedVMStatus};
pub use window::{MaintenanceWindow, MaintenanceWindowSpec, MaintenanceWindowStatus};

/// Every CustomResourceDefinition of the API, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        PatchBaseline::crd(),
        MaintenanceWindow::crd(),
        ManagedVM::crd(),
        PatchException::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(validation) = &mut version.schema
                && let Some(schema) = &mut validation.open_api_v3_schema
            {
                unwrap_descriptions(schema);
            }
        }
    }
    crds
}

/// Doc comments are wrapped for source code; `kubectl explain` wraps text itself, so the
/// descriptions keep only their paragraph breaks.
fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = &mut schema.description {
        *description = description
            .split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    let children = schema.properties.iter_mut().flat_map(|p| p.values_mut());
    let items = schema.items.iter_mut().filter_map(|items| match items {
        JSONSchemaPropsOrArray::Schema(schema) => Some(schema.as_mut()),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    });
    let additional = schema
        .additional_properties
        .iter_mut()
        .filter_map(|a| match a {
            JSONSchemaPropsOrBool::Schema(schema) => Some(schema.as_mut()),
            JSONSchemaPropsOrBool::Bool(_) => None,
        });
    let combined = [&mut schema.any_of, &mut schema.all_of, &mut schema.one_of];
    let combined = combined
        .into_iter()
        .flat_map(|list| list.iter_mut().flatten());
    for child in children.chain(items).chain(additional).chain(combined) {
        unwrap_descriptions(child);
    }
}

/// The CRDs as one YAML stream, as written to `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let documents: Result<Vec<_>, _> = crds().iter().map(serde_yaml_ng::to_string).collect();
    Ok(documents?
        .into_iter()
        .map(|doc| format!("---\n{doc}"))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn crds_folder_matches_the_rust_types() {
        let committed = include_str!("../../crds/patchkeeper.io.yaml");
        let generated = super::crds_yaml().unwrap();
        assert!(
            committed == generated,
            "crds/patchkeeper.io.yaml is out of date; regenerate it with \
             `cargo run -q -- crd > crds/patchkeeper.io.yaml`"
        );
    }
}
