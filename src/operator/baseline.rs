//! PatchBaseline status: whether its rules can be used, and which windows use it. A
//! baseline whose rules cannot be read stalls; the windows using it then approve nothing.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::Standing;
use super::context::{Context, FIELD_MANAGER, warning};
use super::error::Error;
use crate::api::baseline::PatchBaselineStatus;
use crate::api::{PatchBaseline, PatchBaselineSpec};
use crate::policy::compliance::ComplianceRules;
use crate::policy::verdict::RetirementRule;

/// Whether the baseline's rules can be read: every check the API server cannot make.
pub fn check(spec: &PatchBaselineSpec) -> Result<(), (&'static str, String)> {
    let empty: [crate::api::common::PackagePattern; 0] = [];
    crate::policy::approval::review_pending(
        &spec.approval,
        &[],
        &empty,
        jiff::Timestamp::UNIX_EPOCH,
    )
    .map_err(|e| (e.category(), e.to_string()))?;
    ComplianceRules::from_baseline(spec).map_err(|e| (e.category(), e.to_string()))?;
    RetirementRule::from_baseline(&spec.retirement).map_err(|e| (e.category(), e.to_string()))?;
    Ok(())
}

/// Reconciles one baseline's status.
pub async fn reconcile(baseline: Arc<PatchBaseline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = baseline.namespace().ok_or(Error::MissingNamespace)?;
    let mut windows: Vec<String> = ctx
        .stores
        .windows
        .state()
        .into_iter()
        .filter(|w| {
            w.namespace().as_deref() == Some(&namespace)
                && w.spec.baseline_ref.name == baseline.name_any()
        })
        .map(|w| w.name_any())
        .collect();
    windows.sort();
    let standing = match check(&baseline.spec) {
        Ok(()) => Standing::ready("Valid", format!("used by {} windows", windows.len())),
        Err((reason, message)) => Standing::stalled(reason, message),
    };
    let previous = baseline.status.clone().unwrap_or_default();
    let was_stalled = previous
        .conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True");
    if let (Standing::Stalled { reason, message }, false) = (&standing, was_stalled) {
        ctx.publish(
            baseline.as_ref(),
            warning(reason, "Validate", message.clone()),
        )
        .await;
    }
    let now = ctx.clock().now();
    let status = PatchBaselineStatus {
        observed_generation: baseline.metadata.generation,
        conditions: standing.conditions(&previous.conditions, baseline.metadata.generation, now),
        windows,
    };
    let api: Api<PatchBaseline> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({"apiVersion": PatchBaseline::api_version(&()), "kind": PatchBaseline::kind(&()), "status": status});
    api.patch_status(
        &baseline.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(Action::await_change())
}
