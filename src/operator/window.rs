//! The MaintenanceWindow reconciler: checks what CEL cannot (schedule, time zone, the
//! baseline reference), computes when the window opens next, and drives the run while it
//! is open. An unusable window stalls with a reason and a Warning Event and touches no VM.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::Standing;
use super::context::{Context, FIELD_MANAGER, normal, warning};
use super::error::Error;
use super::run;
use crate::api::window::{MaintenanceWindowStatus, WindowPhase};
use crate::api::{MaintenanceWindow, MaintenanceWindowSpec, PatchBaseline};
use crate::schedule::{Occurrence, WindowTiming};

/// Where a window stands at one instant.
#[derive(Debug)]
pub enum Assessment {
    /// The spec cannot be used; nothing is touched.
    Stalled {
        reason: &'static str,
        message: String,
    },
    /// `suspend: true`; the next opening it would have had.
    Suspended { next: Option<Occurrence> },
    /// Closed until `next` (none when the schedule never fires again).
    Idle { next: Option<Occurrence> },
    /// Open now.
    Open {
        occurrence: Occurrence,
        timing: WindowTiming,
    },
}

/// Where the window stands at `now`.
pub fn assess(spec: &MaintenanceWindowSpec, baseline_exists: bool, now: Timestamp) -> Assessment {
    let timing = match spec.timing() {
        Ok(timing) => timing,
        Err(error) => {
            return Assessment::Stalled {
                reason: error.category(),
                message: error.to_string(),
            };
        }
    };
    if !baseline_exists {
        let message = format!(
            "spec.baselineRef: PatchBaseline {:?} does not exist in this namespace; no VM is patched until it does",
            spec.baseline_ref.name
        );
        return Assessment::Stalled {
            reason: "BaselineNotFound",
            message,
        };
    }
    let next = timing.next_occurrence_after(now);
    if spec.suspend {
        return Assessment::Suspended { next };
    }
    match timing.open_at(now) {
        Some(occurrence) => Assessment::Open { occurrence, timing },
        None => Assessment::Idle { next },
    }
}

/// Reconciles one window.
pub async fn reconcile(cached: Arc<MaintenanceWindow>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cached.namespace().ok_or(Error::MissingNamespace)?;
    // The run's bookkeeping lives in the window's status: read it fresh, not from a cache
    // that may not have this reconciler's last write yet. Windows are few.
    let api: Api<MaintenanceWindow> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(window) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let window = Arc::new(window);
    let baseline_ref =
        ObjectRef::<PatchBaseline>::new(&window.spec.baseline_ref.name).within(&namespace);
    let baseline = ctx.stores.baselines.get(&baseline_ref);
    let now = ctx.clock().now();

    let assessment = assess(&window.spec, baseline.is_some(), now);
    let previous = window.status.clone().unwrap_or_default();
    let unfinished = previous.current_run.as_ref();
    let (status, requeue) = match (&assessment, baseline, unfinished) {
        (Assessment::Open { occurrence, timing }, Some(baseline), _) => {
            run::step(&ctx, &window, &baseline, occurrence, Some(timing), now).await?
        }
        (_, baseline, Some(current)) => {
            // The window closed, was suspended or became unusable during a run: the run
            // ends now and puts back every VM it woke.
            let baseline =
                baseline.unwrap_or_else(|| Arc::new(PatchBaseline::new("", Default::default())));
            let occurrence = run::winding_down(current, now);
            let (mut status, requeue) =
                run::step(&ctx, &window, &baseline, &occurrence, None, now).await?;
            let closed = closed_status(&window, &assessment, &previous, now);
            status.next_start = closed.next_start;
            if status.current_run.is_none() {
                status.phase = closed.phase;
                status.conditions = closed.conditions;
            }
            (status, requeue.or(closed_requeue(&assessment, now)))
        }
        _ => (
            closed_status(&window, &assessment, &previous, now),
            closed_requeue(&assessment, now),
        ),
    };

    announce(&ctx, &window, &previous, &status).await;
    apply_status(&ctx, &window, &status).await?;
    Ok(match requeue {
        Some(at) => Action::requeue(
            ctx.clock()
                .real_delay(at.duration_since(now))
                .max(MIN_REQUEUE),
        ),
        None => Action::await_change(),
    })
}

/// Never spin: even a moment that is already due waits this long.
const MIN_REQUEUE: std::time::Duration = std::time::Duration::from_millis(200);

fn closed_status(
    window: &MaintenanceWindow,
    assessment: &Assessment,
    previous: &MaintenanceWindowStatus,
    now: Timestamp,
) -> MaintenanceWindowStatus {
    let (phase, standing, next) = match assessment {
        Assessment::Stalled { reason, message } => (
            WindowPhase::Stalled,
            Standing::stalled(reason, message.clone()),
            None,
        ),
        Assessment::Suspended { next } => (
            WindowPhase::Suspended,
            Standing::ready("Suspended", "spec.suspend is true: no run starts"),
            next.as_ref(),
        ),
        Assessment::Idle { next } => (
            WindowPhase::Idle,
            idle_standing(next.as_ref()),
            next.as_ref(),
        ),
        Assessment::Open { .. } => (WindowPhase::Idle, Standing::ready("Idle", ""), None),
    };
    MaintenanceWindowStatus {
        observed_generation: window.metadata.generation,
        conditions: standing.conditions(&previous.conditions, window.metadata.generation, now),
        phase: Some(phase),
        next_start: next.map(|o| Time(o.opens.timestamp())),
        selected_vms: previous.selected_vms,
        current_run: None,
        last_run: previous.last_run.clone(),
    }
}

fn idle_standing(next: Option<&Occurrence>) -> Standing {
    match next {
        Some(next) => Standing::ready("Idle", format!("next window opens {}", next.opens)),
        None => Standing::ready("NeverOpens", "the schedule has no further opening"),
    }
}

fn closed_requeue(assessment: &Assessment, _now: Timestamp) -> Option<Timestamp> {
    match assessment {
        Assessment::Idle { next: Some(next) } | Assessment::Suspended { next: Some(next) } => {
            Some(next.opens.timestamp())
        }
        _ => None,
    }
}

async fn announce(
    ctx: &Context,
    window: &MaintenanceWindow,
    previous: &MaintenanceWindowStatus,
    status: &MaintenanceWindowStatus,
) {
    let stalled = |s: &MaintenanceWindowStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    match (stalled(previous), stalled(status)) {
        (old, Some((reason, message))) if old.as_ref().map(|o| &o.0) != Some(&reason) => {
            tracing::warn!(window = %window.name_any(), reason = %reason, message = %message, "window stalled");
            ctx.publish(window, warning(&reason, "Validate", message))
                .await;
        }
        (Some(_), None) => {
            tracing::info!(window = %window.name_any(), "window usable again");
            ctx.publish(
                window,
                normal("Recovered", "Validate", "the window's spec is usable again"),
            )
            .await;
        }
        _ => {}
    }
}

async fn apply_status(
    ctx: &Context,
    window: &MaintenanceWindow,
    status: &MaintenanceWindowStatus,
) -> Result<(), Error> {
    let namespace = window.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<MaintenanceWindow> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": MaintenanceWindow::api_version(&()),
        "kind": MaintenanceWindow::kind(&()),
        "status": status,
    });
    api.patch_status(
        &window.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}
