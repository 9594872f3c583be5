//! Waking dormant VMs between windows to scan them, when their baseline asks for it
//! (`assessment.wakeToScan`). Without it a powered-off VM's compliance turns `Stale` and
//! stays so until a window wakes it for patching.
//!
//! A scan wake is recorded in the ManagedVM's `status.scanWake`, with the VM's original run
//! strategy, *before* the VM is started, so that a restarted operator still puts it back.
//! It goes `Scanning → Restoring → (cleared)`: the VM is started with `Always`, scanned by
//! the usual scan-only Job (nothing is installed), and put back as soon as that Job ends,
//! or once it has not become reachable within the window's boot timeout plus the Job's
//! own time.
//!
//! Only a VM that is off by its own run strategy, in no window's run, outside an open
//! window (and not about to enter one), without a `Retire` verdict and not exempted by a
//! PatchException is woken; woken VMs count against `assessment.maxConcurrentScans`. A
//! window run skips a VM while its scan wake lasts.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::assessment::Target;
use super::context::{Context, normal, warning};
use super::error::Error;
use super::vm_run::set_run_strategy;
use crate::api::ManagedVM;
use crate::api::managed_vm::{Decision, PatchPhase, ScanWake, ScanWakePhase};
use crate::kubevirt::{RUN_STRATEGY_ALWAYS, RunStrategy};
use crate::schedule::parse_duration;

/// The field manager of `status.scanWake`.
pub const SCAN_WAKE_MANAGER: &str = "patchkeeper-scan-wake";

/// Time added to the boot timeout and the scan Job's own deadline before a scan wake is
/// ended whatever the Job is doing: room for the Pod to be scheduled and report.
const SLACK: SignedDuration = SignedDuration::from_mins(5);

/// What the scan Job of a scan wake has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanJob {
    /// Not created yet.
    None,
    /// Created, not finished.
    Running,
    /// Finished, successfully or not; its result is recorded by the assessment.
    Finished,
}

/// What one look at a VM in a scan wake sees.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The VM's address, once it runs and reports one.
    pub address: Option<String>,
    pub job: ScanJob,
    /// Whether the VM is off, with no instance left.
    pub stopped: bool,
    /// The VM's run strategy now.
    pub run_strategy: RunStrategy,
    /// How long the VM may take to become reachable.
    pub boot_timeout: SignedDuration,
    /// How long the scan Job may take.
    pub job_deadline: SignedDuration,
}

/// What to do next about a scan wake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WakeStep {
    /// Start the scan Job, at this address.
    Scan(String),
    /// Nothing yet: look again by this instant.
    Wait(Timestamp),
    /// Put the VM back; `unscanned` when it was not scanned.
    Restore { unscanned: Option<String> },
    /// The VM, stopped with `Halted`, gets its original run strategy back.
    GiveBack(RunStrategy),
    /// The VM is back as it was: the scan wake is over.
    Done,
}

/// Decides the next step of a scan wake. Pure.
pub fn next_step(wake: &ScanWake, seen: &Seen, now: Timestamp) -> WakeStep {
    let since = wake.since.0;
    match wake.phase {
        ScanWakePhase::Scanning => {
            let boot_ends = since.saturating_add(seen.boot_timeout).unwrap_or(since);
            let hard_end = boot_ends
                .saturating_add(seen.job_deadline + SLACK)
                .unwrap_or(boot_ends);
            match (seen.job, &seen.address) {
                (ScanJob::Finished, _) => WakeStep::Restore { unscanned: None },
                (ScanJob::Running, _) if now >= hard_end => WakeStep::Restore {
                    unscanned: Some(format!(
                        "the scan did not end within {}",
                        friendly(hard_end.duration_since(since))
                    )),
                },
                (ScanJob::Running, _) => WakeStep::Wait(hard_end.min(now + MINUTE)),
                (ScanJob::None, Some(address)) => WakeStep::Scan(address.clone()),
                (ScanJob::None, None) if now >= boot_ends => WakeStep::Restore {
                    unscanned: Some(format!(
                        "the VM did not boot and report an IP address within {}",
                        friendly(seen.boot_timeout)
                    )),
                },
                (ScanJob::None, None) => {
                    WakeStep::Wait((now + SignedDuration::from_secs(15)).min(boot_ends))
                }
            }
        }
        ScanWakePhase::Restoring => {
            let original = RunStrategy::from_status_string(&wake.original_run_strategy);
            if !seen.stopped {
                WakeStep::Wait(now + MINUTE)
            } else if seen.run_strategy != original {
                WakeStep::GiveBack(original)
            } else {
                WakeStep::Done
            }
        }
    }
}

const MINUTE: SignedDuration = SignedDuration::from_mins(1);

fn friendly(duration: SignedDuration) -> String {
    let minutes = duration.as_secs() / 60;
    if minutes > 0 && duration.as_secs() % 60 == 0 {
        format!("{minutes}m")
    } else {
        format!("{}s", duration.as_secs())
    }
}

/// Why a dormant VM may not be woken to be scanned now, if it may not. Pure.
pub fn refusal(target: &Target<'_>, excepted: bool, now: Timestamp) -> Option<&'static str> {
    let spec = &target.baseline.spec.assessment;
    let strategy = target.vm.run_strategy();
    let window = target.window.status.as_ref();
    let in_run = target.status.patch.as_ref().is_some_and(|p| {
        !matches!(
            p.phase,
            PatchPhase::Done | PatchPhase::Failed | PatchPhase::Waiting
        )
    });
    let retired = target
        .status
        .verdict
        .as_ref()
        .is_some_and(|v| v.decision == Decision::Retire);
    let opens_soon = window
        .and_then(|w| w.next_start.as_ref())
        .is_some_and(|start| start.0 <= now.saturating_add(budget(target)).unwrap_or(now));
    if !spec.wake_to_scan {
        Some("the baseline does not wake VMs to scan them")
    } else if !stopped(target) || strategy.wants_running() {
        Some("the VM is not off by its own run strategy")
    } else if target.vm.metadata.deletion_timestamp.is_some() {
        Some("the VM is being deleted")
    } else if in_run || window.is_some_and(|w| w.current_run.is_some()) || opens_soon {
        Some("its window is running or about to open, and scans it then")
    } else if retired {
        Some("its verdict is Retire")
    } else if excepted {
        Some("a PatchException exempts it from patching")
    } else {
        None
    }
}

fn stopped(target: &Target<'_>) -> bool {
    target.vm.printable_status() == "Stopped" && target.vmi.is_none()
}

/// The longest a scan wake can last: the boot, then the scan Job.
fn budget(target: &Target<'_>) -> SignedDuration {
    let (boot, scan) = timeouts(target);
    boot + scan + SLACK
}

/// The window's boot timeout, and the scan Job's deadline.
fn timeouts(target: &Target<'_>) -> (SignedDuration, SignedDuration) {
    let spec = &target.window.spec;
    let boot =
        parse_duration(spec.dormant.boot_timeout.as_str()).unwrap_or(SignedDuration::from_mins(10));
    (boot, super::assessment::scan_deadline(&spec.executor))
}

/// Records the scan wake, then starts the VM.
pub async fn wake(ctx: &Context, target: &Target<'_>, now: Timestamp) -> Result<(), Error> {
    let original = target.vm.run_strategy().to_status_string();
    let wake = ScanWake {
        phase: ScanWakePhase::Scanning,
        since: Time(now),
        original_run_strategy: original.clone(),
    };
    write(ctx, target.managed, Some(&wake)).await?;
    let always = RunStrategy::Strategy(RUN_STRATEGY_ALWAYS.into());
    set_run_strategy(ctx, target.vm, &always).await?;
    ctx.metrics.vms_woken.inc();
    tracing::info!(vm = %target.vm.name_any(), original = %original, "woken to be scanned");
    let note = format!(
        "starting the VM to scan it (run strategy was {original}); it is put back once the \
         scan ends"
    );
    ctx.publish_on_vm(target.managed, normal("WakingToScan", "Assess", note))
        .await;
    Ok(())
}

/// Takes a scan wake one step further. Returns when to look again.
pub async fn follow(
    ctx: &Context,
    target: &Target<'_>,
    wake: &ScanWake,
    job: ScanJob,
    now: Timestamp,
) -> Result<Option<Timestamp>, Error> {
    let (boot_timeout, job_deadline) = timeouts(target);
    let seen = Seen {
        address: target
            .vmi
            .filter(|vmi| vmi.is_running())
            .and_then(|vmi| vmi.ip_address())
            .map(str::to_string),
        job,
        stopped: stopped(target),
        run_strategy: target.vm.run_strategy(),
        boot_timeout,
        job_deadline,
    };
    match next_step(wake, &seen, now) {
        WakeStep::Scan(address) => {
            super::assessment::start(ctx, target, &address, now).await?;
            Ok(Some(now + MINUTE))
        }
        WakeStep::Wait(at) => Ok(Some(at)),
        WakeStep::Restore { unscanned } => {
            restore(ctx, target, wake, unscanned).await?;
            Ok(Some(now + MINUTE))
        }
        WakeStep::GiveBack(original) => {
            set_run_strategy(ctx, target.vm, &original).await?;
            Ok(Some(now + MINUTE))
        }
        WakeStep::Done => {
            write(ctx, target.managed, None).await?;
            tracing::info!(vm = %target.vm.name_any(), "back to sleep after its scan");
            let note = "back to its original power state".to_string();
            ctx.publish_on_vm(target.managed, normal("BackToSleep", "Assess", note))
                .await;
            Ok(None)
        }
    }
}

async fn restore(
    ctx: &Context,
    target: &Target<'_>,
    wake: &ScanWake,
    unscanned: Option<String>,
) -> Result<(), Error> {
    let original = RunStrategy::from_status_string(&wake.original_run_strategy);
    let restoring = ScanWake {
        phase: ScanWakePhase::Restoring,
        ..wake.clone()
    };
    write(ctx, target.managed, Some(&restoring)).await?;
    set_run_strategy(ctx, target.vm, &original.stopping()).await?;
    let event = match unscanned {
        Some(why) => {
            tracing::warn!(vm = %target.vm.name_any(), reason = %why, "not scanned; putting it back");
            let note = format!("{why}; putting it back unscanned");
            warning("ScanWakeFailed", "Assess", note)
        }
        None => {
            let note = format!(
                "scan done; putting the VM back to run strategy {}",
                wake.original_run_strategy
            );
            normal("Restoring", "Assess", note)
        }
    };
    ctx.publish_on_vm(target.managed, event).await;
    Ok(())
}

/// Writes `status.scanWake`, or removes it.
async fn write(ctx: &Context, managed: &ManagedVM, wake: Option<&ScanWake>) -> Result<(), Error> {
    let namespace = managed.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ManagedVM> = Api::namespaced(ctx.client.clone(), &namespace);
    // Fields this manager leaves out of an apply are removed: `{}` clears the record.
    let status = match wake {
        Some(wake) => json!({"scanWake": wake}),
        None => json!({}),
    };
    let body = json!({
        "apiVersion": ManagedVM::api_version(&()),
        "kind": ManagedVM::kind(&()),
        "status": status,
    });
    api.patch_status(
        &managed.name_any(),
        &PatchParams::apply(SCAN_WAKE_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_mins(minutes)
    }

    fn wake(phase: ScanWakePhase) -> ScanWake {
        ScanWake {
            phase,
            since: Time(at(0)),
            original_run_strategy: "Manual".into(),
        }
    }

    fn seen(job: ScanJob, address: Option<&str>) -> Seen {
        Seen {
            address: address.map(str::to_string),
            job,
            stopped: false,
            run_strategy: RunStrategy::Strategy("Always".into()),
            boot_timeout: SignedDuration::from_mins(10),
            job_deadline: SignedDuration::from_mins(15),
        }
    }

    #[test]
    fn a_booted_vm_is_scanned_once_and_put_back_when_the_scan_ends() {
        let scanning = wake(ScanWakePhase::Scanning);
        assert_eq!(
            next_step(&scanning, &seen(ScanJob::None, Some("10.0.0.7")), at(2)),
            WakeStep::Scan("10.0.0.7".into())
        );
        assert!(matches!(
            next_step(&scanning, &seen(ScanJob::Running, Some("10.0.0.7")), at(5)),
            WakeStep::Wait(_)
        ));
        assert_eq!(
            next_step(&scanning, &seen(ScanJob::Finished, Some("10.0.0.7")), at(6)),
            WakeStep::Restore { unscanned: None }
        );
    }

    #[test]
    fn a_vm_that_does_not_boot_in_time_is_put_back_unscanned() {
        let scanning = wake(ScanWakePhase::Scanning);
        assert!(matches!(
            next_step(&scanning, &seen(ScanJob::None, None), at(9)),
            WakeStep::Wait(by) if by <= at(10)
        ));
        let step = next_step(&scanning, &seen(ScanJob::None, None), at(10));
        assert_eq!(
            step,
            WakeStep::Restore {
                unscanned: Some("the VM did not boot and report an IP address within 10m".into())
            }
        );
    }

    #[test]
    fn a_scan_that_never_ends_does_not_keep_the_vm_awake() {
        let scanning = wake(ScanWakePhase::Scanning);
        assert!(matches!(
            next_step(&scanning, &seen(ScanJob::Running, Some("10.0.0.7")), at(29)),
            WakeStep::Wait(_)
        ));
        assert!(matches!(
            next_step(&scanning, &seen(ScanJob::Running, Some("10.0.0.7")), at(30)),
            WakeStep::Restore { unscanned: Some(_) }
        ));
    }

    #[test]
    fn a_vm_stopped_with_halted_gets_its_original_strategy_back_then_the_wake_ends() {
        let restoring = wake(ScanWakePhase::Restoring);
        assert!(matches!(
            next_step(&restoring, &seen(ScanJob::Finished, None), at(7)),
            WakeStep::Wait(_)
        ));
        let halted = Seen {
            stopped: true,
            run_strategy: RunStrategy::Strategy("Halted".into()),
            ..seen(ScanJob::Finished, None)
        };
        assert_eq!(
            next_step(&restoring, &halted, at(8)),
            WakeStep::GiveBack(RunStrategy::Strategy("Manual".into()))
        );
        let manual = Seen {
            run_strategy: RunStrategy::Strategy("Manual".into()),
            ..halted
        };
        assert_eq!(next_step(&restoring, &manual, at(9)), WakeStep::Done);
    }
}
