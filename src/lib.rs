//! patchkeeper keeps a fleet of KubeVirt virtual machines patched: it wakes dormant VMs in
//! their maintenance window, patches them against a baseline, puts them back to sleep, and
//! flags for retirement the VMs that are not worth patching.

pub mod api;
pub mod calendar;
pub mod clock;
pub mod kubevirt;
pub mod operator;
pub mod planner;
pub mod policy;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod summary;
