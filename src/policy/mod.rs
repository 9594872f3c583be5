//! The pure decisions about a VM's patches and its future: which exceptions apply, what may
//! be installed, how compliant it is, and whether it is worth keeping. Nothing here talks
//! to Kubernetes: inputs are the API types and the runner's summary, and the time is passed
//! in, so that every rule is tested on plain values.
//!
//! A reconciler uses them in this order:
//!
//! 1. [`exceptions::covering`]: the PatchExceptions covering the VM now, the packages they
//!    hold back, the retirement reasons they waive, and when the next one expires.
//! 2. [`approval::review_scan`] after a scan, or [`approval::review_pending`] between scans:
//!    what to install, why not the rest, and the first sightings to record.
//! 3. [`compliance::ComplianceRules::assess`]: the VM's compliance and deadline breaches.
//! 4. [`verdict::RetirementRule::judge`]: keep or retire, with the evidence, and which
//!    action is due; [`end_of_life`] holds the operating system table it consults.
//!
//! [`selector`] evaluates label selectors, for exceptions and for anything else that
//! selects VMs by label.

pub mod approval;
pub mod compliance;
pub mod end_of_life;
pub mod exceptions;
pub mod selector;
pub mod verdict;
