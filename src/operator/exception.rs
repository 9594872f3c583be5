//! PatchException status: which VMs it covers, and its expiry, which the operator enforces
//! by itself — it wakes exactly at the expiry, no polling, and announces it with an Event.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::Standing;
use super::context::{Context, FIELD_MANAGER, normal, warning};
use super::error::Error;
use crate::api::PatchException;
use crate::api::exception::{ExceptionState, PatchExceptionStatus};
use crate::policy::exceptions::{covering, is_active};

/// At most this many covered VMs are listed by name in status.
const LISTED: usize = 100;

/// Reconciles one exception's status.
pub async fn reconcile(exception: Arc<PatchException>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = exception.namespace().ok_or(Error::MissingNamespace)?;
    let now = ctx.clock().now();
    let active = is_active(&exception, now);
    let mut covered: Vec<String> = ctx
        .stores
        .vms
        .state()
        .into_iter()
        .filter(|vm| vm.namespace().as_deref() == Some(&namespace))
        .filter(|vm| {
            !covering([exception.as_ref()], &vm.name_any(), vm.labels(), now)
                .active
                .is_empty()
        })
        .map(|vm| vm.name_any())
        .collect();
    covered.sort();
    let previous = exception.status.clone().unwrap_or_default();
    let status = PatchExceptionStatus {
        observed_generation: exception.metadata.generation,
        conditions: standing(&exception, active, covered.len()).conditions(
            &previous.conditions,
            exception.metadata.generation,
            now,
        ),
        state: Some(if active {
            ExceptionState::Active
        } else {
            ExceptionState::Expired
        }),
        covered_count: i32::try_from(covered.len()).unwrap_or(i32::MAX),
        covered_vms: covered.into_iter().take(LISTED).collect(),
    };
    announce(&ctx, &exception, &previous, &status).await;

    let api: Api<PatchException> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({"apiVersion": PatchException::api_version(&()), "kind": PatchException::kind(&()), "status": status});
    api.patch_status(
        &exception.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(if active {
        let left = exception.spec.expires.0.duration_since(now);
        Action::requeue(
            ctx.clock()
                .real_delay(left)
                .max(std::time::Duration::from_millis(200)),
        )
    } else {
        Action::await_change()
    })
}

fn standing(exception: &PatchException, active: bool, covered: usize) -> Standing {
    let expires = exception.spec.expires.0;
    if active {
        Standing::ready(
            "Active",
            format!(
                "covers {covered} VMs until {expires}; owner {}",
                exception.spec.owner
            ),
        )
    } else {
        Standing::ready(
            "Expired",
            format!("expired at {expires}; it no longer applies"),
        )
    }
}

async fn announce(
    ctx: &Context,
    exception: &PatchException,
    previous: &PatchExceptionStatus,
    status: &PatchExceptionStatus,
) {
    let was_active = previous.state == Some(ExceptionState::Active);
    match status.state {
        Some(ExceptionState::Expired) if was_active || previous.state.is_none() => {
            let note = format!(
                "expired at {}: the {} VMs it covered are patched and judged as usual again (owner {})",
                exception.spec.expires.0, status.covered_count, exception.spec.owner
            );
            tracing::info!(exception = %exception.name_any(), "exception expired");
            ctx.publish(exception, warning("Expired", "Expire", note))
                .await;
        }
        Some(ExceptionState::Active) if previous.state.is_none() => {
            let note = format!(
                "covers {} VMs until {}",
                status.covered_count, exception.spec.expires.0
            );
            ctx.publish(exception, normal("Active", "Expire", note))
                .await;
        }
        _ => {}
    }
}
