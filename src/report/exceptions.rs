//! Exceptions that run out soon, and those that already have: either the work they put off
//! is due, or someone must renew them.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::PatchException;
use crate::schedule::to_compact_string;

/// Exceptions that expire soon or have expired.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionReport {
    /// How far ahead "soon" looks, as a Kubernetes duration (`336h`).
    pub expiring_within: String,
    /// Exceptions still in force that expire within that time, soonest first.
    pub expiring_soon: Vec<ExceptionEntry>,
    /// Exceptions past their expiry, most recently expired first.
    pub expired: Vec<ExceptionEntry>,
}

/// One exception.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionEntry {
    pub namespace: String,
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    /// Why it was granted.
    pub reason: String,
    pub expires: Timestamp,
    /// How many VMs it covers, as the operator last counted.
    pub covered_count: i32,
}

/// The exceptions that expire within `within` of `now`, and those expired by then.
pub(super) fn report(
    exceptions: &[PatchException],
    now: Timestamp,
    within: SignedDuration,
) -> ExceptionReport {
    let horizon = now.saturating_add(within).unwrap_or(Timestamp::MAX);
    let (mut expired, mut expiring_soon): (Vec<_>, Vec<_>) = exceptions
        .iter()
        .map(entry)
        .filter(|e| e.expires <= horizon)
        .partition(|e| e.expires <= now);
    expiring_soon.sort_by(by_expiry);
    expired.sort_by(|a, b| by_expiry(b, a));
    ExceptionReport {
        expiring_within: to_compact_string(within),
        expiring_soon,
        expired,
    }
}

fn by_expiry(a: &ExceptionEntry, b: &ExceptionEntry) -> std::cmp::Ordering {
    (a.expires, &a.namespace, &a.name).cmp(&(b.expires, &b.namespace, &b.name))
}

fn entry(exception: &PatchException) -> ExceptionEntry {
    ExceptionEntry {
        namespace: exception.namespace().unwrap_or_default(),
        name: exception.name_any(),
        owner: exception.spec.owner.clone(),
        reason: exception.spec.reason.clone(),
        expires: exception.spec.expires.0,
        covered_count: exception.status.as_ref().map_or(0, |s| s.covered_count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::*;

    fn names(entries: &[ExceptionEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn an_exception_expiring_within_the_horizon_is_listed_soonest_first() {
        let exceptions = [
            exception("team-a", "late", days_from_now(10)),
            exception("team-a", "early", days_from_now(1)),
        ];
        let report = report(&exceptions, now(), days(14));
        assert_eq!(names(&report.expiring_soon), ["early", "late"]);
        assert!(report.expired.is_empty());
    }

    #[test]
    fn an_exception_expiring_beyond_the_horizon_is_left_out() {
        let exceptions = [exception("team-a", "far", days_from_now(30))];
        let report = report(&exceptions, now(), days(14));
        assert!(report.expiring_soon.is_empty());
        assert!(report.expired.is_empty());
    }

    #[test]
    fn an_exception_past_its_expiry_is_expired_most_recent_first() {
        let exceptions = [
            exception("team-a", "long-gone", days_ago(40)),
            exception("team-a", "just-gone", days_ago(1)),
        ];
        let report = report(&exceptions, now(), days(14));
        assert_eq!(names(&report.expired), ["just-gone", "long-gone"]);
        assert!(report.expiring_soon.is_empty());
    }

    #[test]
    fn an_exception_expiring_this_instant_counts_as_expired() {
        let exceptions = [exception("team-a", "now", at(now()))];
        let report = report(&exceptions, now(), days(14));
        assert_eq!(names(&report.expired), ["now"]);
    }

    #[test]
    fn an_entry_keeps_owner_reason_and_covered_count() {
        let exceptions = [exception("team-a", "db", days_from_now(2)).covering(3)];
        let report = report(&exceptions, now(), days(14));
        let entry = &report.expiring_soon[0];
        assert_eq!(entry.owner, "dba@example.com");
        assert_eq!(entry.reason, "vendor certifies only this kernel");
        assert_eq!(entry.covered_count, 3);
    }

    #[test]
    fn the_horizon_is_written_as_a_kubernetes_duration() {
        let report = report(&[], now(), days(14));
        assert_eq!(report.expiring_within, "336h");
    }
}
