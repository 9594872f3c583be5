//! Compliance: how one VM stands against its baseline, judged from its last scan.
//!
//! # States
//!
//! - `Unknown`: the VM has never been scanned.
//! - `Stale`: the last scan is `assessment.staleAfter` old or older. Its counts are still
//!   reported, as of `lastScanAt`, but no deadline breach is: a breach is a claim about
//!   now, which an old scan cannot support. A stale VM is never called non-compliant.
//! - `NonCompliant`: the last scan found at least one missing update.
//! - `Compliant`: the last scan found none.
//!
//! # What counts as missing
//!
//! Every available update the baseline approves now or will approve once it has soaked:
//! the updates on the install list and the ones `Soaking`. Not counted are updates whose
//! classification or severity the baseline leaves out, rejected packages, and packages an
//! active PatchException holds back: the baseline, or the exception's owner, decided the
//! VM does without them. A VM whose only updates are still soaking is therefore
//! `NonCompliant`: it lacks updates the baseline wants, it is only not their time yet.
//!
//! # Deadlines
//!
//! A missing update's deadline (from `deadlines`, by its severity) counts from when
//! patchkeeper first saw it, and the update is in breach from the instant the deadline has
//! run out. `Unspecified` updates (every apt update) and severities without a deadline are
//! never in breach.
//!
//! # Dormant VMs
//!
//! A dormant VM is not scanned (unless its baseline wakes VMs to scan), so its last scan is
//! exactly as old as it is: being powered off neither refreshes it nor makes the data any
//! more trustworthy, since updates keep being released while the VM sleeps. The rule is
//! therefore the same for every VM, which is why power state is not an input here: a VM is
//! `Compliant` only while its last scan is younger than `staleAfter`. A VM powered off
//! after its last scan turns `Stale` at that scan plus `staleAfter`, and stays so until a
//! window wakes and scans it.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::approval::Review;
use crate::api::baseline::{Classification, PatchBaselineSpec, Severity};
use crate::api::common::Duration;
use crate::api::managed_vm::{Compliance, ComplianceState, MissingCounts, PendingUpdate};
use crate::schedule::{DurationError, parse_duration};

/// Why a baseline's compliance rules cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplianceError {
    /// `assessment.staleAfter` is not a duration.
    #[error("assessment.staleAfter: {0}")]
    StaleAfter(DurationError),
    /// A deadline is not a duration.
    #[error("deadlines.{field}: {error}")]
    Deadline {
        /// The field, e.g. `critical`.
        field: &'static str,
        /// What is wrong with it.
        error: DurationError,
    },
}

impl ComplianceError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidBaseline"
    }
}

/// The last successful scan of a VM, reviewed against its baseline.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    /// When the scan ran.
    pub at: Timestamp,
    /// The baseline's decision on the updates it found (or on those recorded since).
    pub review: &'a Review,
}

/// A missing update whose deadline has run out.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadlineBreach {
    /// The update, with when it was first seen.
    pub update: PendingUpdate,
    /// The deadline for its severity.
    pub deadline: SignedDuration,
    /// When it was due: first seen plus the deadline.
    pub due: Timestamp,
}

/// A VM's compliance, with the evidence behind its deadline breaches.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceReport {
    /// The VM's compliance, as written to its status.
    pub compliance: Compliance,
    /// Every missing update past its deadline, most severe first, then earliest due.
    pub breaches: Vec<DeadlineBreach>,
    /// The next instant the assessment changes with time alone (the scan turns stale, or a
    /// deadline runs out), so the caller can look again exactly then; `None` if never.
    pub changes_at: Option<Timestamp>,
}

/// A baseline's compliance rules, with their durations parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceRules {
    stale_after: SignedDuration,
    deadlines: BTreeMap<Severity, SignedDuration>,
}

impl ComplianceRules {
    /// Reads `assessment.staleAfter` and `deadlines` from a baseline.
    pub fn from_baseline(baseline: &PatchBaselineSpec) -> Result<Self, ComplianceError> {
        let stale_after = parse_duration(baseline.assessment.stale_after.as_str())
            .map_err(ComplianceError::StaleAfter)?;
        let mut deadlines = BTreeMap::new();
        if let Some(given) = &baseline.deadlines {
            let fields: [(Severity, &'static str, &Option<Duration>); 4] = [
                (Severity::Critical, "critical", &given.critical),
                (Severity::Important, "important", &given.important),
                (Severity::Moderate, "moderate", &given.moderate),
                (Severity::Low, "low", &given.low),
            ];
            for (severity, field, text) in fields {
                let Some(text) = text else { continue };
                let deadline = parse_duration(text.as_str())
                    .map_err(|error| ComplianceError::Deadline { field, error })?;
                deadlines.insert(severity, deadline);
            }
        }
        Ok(ComplianceRules {
            stale_after,
            deadlines,
        })
    }

    /// How old a scan may be before it is no longer trusted.
    pub fn stale_after(&self) -> SignedDuration {
        self.stale_after
    }

    /// The deadline for updates of this severity, if the baseline sets one.
    pub fn deadline(&self, severity: Severity) -> Option<SignedDuration> {
        self.deadlines.get(&severity).copied()
    }

    /// The compliance of a VM whose last successful scan is `scan` (`None` if never).
    pub fn assess(&self, scan: Option<Scan<'_>>, now: Timestamp) -> ComplianceReport {
        let Some(scan) = scan else {
            return ComplianceReport {
                compliance: Compliance::default(),
                breaches: Vec::new(),
                changes_at: None,
            };
        };
        let missing: Vec<&PendingUpdate> = scan
            .review
            .updates
            .iter()
            .filter(|reviewed| reviewed.is_wanted())
            .map(|reviewed| &reviewed.update)
            .collect();
        let compliance = Compliance {
            state: ComplianceState::Stale,
            last_scan_at: Some(Time(scan.at)),
            missing: count(&missing),
            oldest_missing_since: missing.iter().map(|u| u.first_seen.clone()).min(),
            deadline_breaches: Vec::new(),
            pending_updates: scan.review.pending_updates(),
        };

        let stale_at = scan
            .at
            .checked_add(self.stale_after)
            .unwrap_or(Timestamp::MAX);
        if now >= stale_at {
            return ComplianceReport {
                compliance,
                breaches: Vec::new(),
                changes_at: None,
            };
        }
        self.judge_fresh(compliance, &missing, stale_at, now)
    }

    /// The report for a scan younger than `staleAfter`.
    fn judge_fresh(
        &self,
        mut compliance: Compliance,
        missing: &[&PendingUpdate],
        stale_at: Timestamp,
        now: Timestamp,
    ) -> ComplianceReport {
        let dated: Vec<DeadlineBreach> = missing
            .iter()
            .filter_map(|update| self.due_date(update))
            .collect();
        let next_due = dated.iter().map(|d| d.due).filter(|due| *due > now).min();
        let mut breaches: Vec<DeadlineBreach> =
            dated.into_iter().filter(|d| d.due <= now).collect();
        breaches.sort_by_key(|b| (b.update.severity, b.due));

        compliance.state = if missing.is_empty() {
            ComplianceState::Compliant
        } else {
            ComplianceState::NonCompliant
        };
        compliance.deadline_breaches = breaches.iter().map(|b| b.update.severity).collect();
        compliance.deadline_breaches.dedup();
        ComplianceReport {
            compliance,
            breaches,
            changes_at: next_due.into_iter().chain([stale_at]).min(),
        }
    }

    /// The update with its due date, if its severity has a deadline.
    fn due_date(&self, update: &PendingUpdate) -> Option<DeadlineBreach> {
        let deadline = self.deadline(update.severity)?;
        let due = update.first_seen.0.checked_add(deadline).ok()?;
        Some(DeadlineBreach {
            update: update.clone(),
            deadline,
            due,
        })
    }
}

/// Missing updates counted by severity, and how many of them are security fixes.
fn count(missing: &[&PendingUpdate]) -> MissingCounts {
    let mut counts = MissingCounts::default();
    for update in missing {
        let by_severity = match update.severity {
            Severity::Critical => &mut counts.critical,
            Severity::Important => &mut counts.important,
            Severity::Moderate => &mut counts.moderate,
            Severity::Low => &mut counts.low,
            Severity::Unspecified => &mut counts.unspecified,
        };
        *by_severity = by_severity.saturating_add(1);
        if update.classification == Classification::Security {
            counts.security = counts.security.saturating_add(1);
        }
        counts.total = counts.total.saturating_add(1);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::baseline::{Approval, Deadlines, PackageMatch};
    use crate::api::common::PackagePattern;
    use crate::policy::approval::review_scan;
    use crate::summary::{self, AvailableUpdate};

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn hours(hours: i64) -> SignedDuration {
        SignedDuration::from_hours(hours)
    }

    fn days_ago(days: i64) -> Timestamp {
        now() - hours(24 * days)
    }

    fn update(
        name: &str,
        classification: summary::Classification,
        severity: summary::Severity,
    ) -> AvailableUpdate {
        AvailableUpdate {
            name: name.to_string(),
            installed: "1".to_string(),
            candidate: "2".to_string(),
            classification,
            severity,
            suite: None,
            origin: None,
            advisory: None,
            held: false,
        }
    }

    fn critical(name: &str) -> AvailableUpdate {
        use summary::{Classification, Severity};
        update(name, Classification::Security, Severity::Critical)
    }

    fn unrated(name: &str) -> AvailableUpdate {
        use summary::{Classification, Severity};
        update(name, Classification::Other, Severity::Unspecified)
    }

    /// Stale after 72 hours (the default); critical updates due within a week, important
    /// ones within 30 days.
    fn baseline() -> PatchBaselineSpec {
        PatchBaselineSpec {
            deadlines: Some(Deadlines {
                critical: Some(Duration::new("168h")),
                important: Some(Duration::new("720h")),
                ..Deadlines::default()
            }),
            ..PatchBaselineSpec::default()
        }
    }

    fn rules() -> ComplianceRules {
        ComplianceRules::from_baseline(&baseline()).unwrap()
    }

    /// The review of updates first seen the given number of days ago.
    fn reviewed(approval: &Approval, updates: &[(AvailableUpdate, i64)]) -> Review {
        reviewed_holding(approval, updates, &[])
    }

    fn reviewed_holding(
        approval: &Approval,
        updates: &[(AvailableUpdate, i64)],
        held_back: &[&str],
    ) -> Review {
        let available: Vec<AvailableUpdate> = updates.iter().map(|(u, _)| u.clone()).collect();
        let seen: Vec<PendingUpdate> = updates
            .iter()
            .map(|(u, days)| PendingUpdate {
                name: u.name.clone(),
                version: u.candidate.clone(),
                classification: u.classification.into(),
                severity: u.severity.into(),
                first_seen: Time(days_ago(*days)),
            })
            .collect();
        let held_back: Vec<PackagePattern> =
            held_back.iter().map(|p| PackagePattern::new(p)).collect();
        review_scan(approval, &available, &seen, &held_back, now()).unwrap()
    }

    fn state(review: Option<&Review>, scanned_hours_ago: i64) -> ComplianceState {
        let scan = review.map(|review| Scan {
            at: now() - hours(scanned_hours_ago),
            review,
        });
        rules().assess(scan, now()).compliance.state
    }

    #[test]
    fn the_state_follows_the_last_scan_and_what_it_found() {
        use ComplianceState::*;
        let week_soak = Approval {
            approve_after: Some(Duration::new("168h")),
            ..Approval::default()
        };
        let only_security = Approval {
            classifications: vec![Classification::Security],
            ..Approval::default()
        };
        let rejecting = Approval {
            rejected_packages: vec![PackageMatch {
                name: PackagePattern::new("curl"),
                version: None,
            }],
            ..Approval::default()
        };
        let all = Approval::default();
        let nothing = reviewed(&all, &[]);
        let approved = reviewed(&all, &[(critical("openssl"), 1)]);
        let soaking = reviewed(&week_soak, &[(critical("openssl"), 1)]);
        let excluded = reviewed(&only_security, &[(unrated("tzdata"), 40)]);
        let rejected = reviewed(&rejecting, &[(critical("curl"), 40)]);
        let excepted = reviewed_holding(&all, &[(critical("curl"), 40)], &["curl"]);
        let cases = [
            ("never scanned", None, 0, Unknown),
            ("nothing available", Some(&nothing), 1, Compliant),
            ("an approved update", Some(&approved), 1, NonCompliant),
            ("only a soaking update", Some(&soaking), 1, NonCompliant),
            (
                "only an unapproved classification",
                Some(&excluded),
                1,
                Compliant,
            ),
            ("only a rejected package", Some(&rejected), 1, Compliant),
            ("only an excepted package", Some(&excepted), 1, Compliant),
            (
                "just younger than staleAfter",
                Some(&approved),
                71,
                NonCompliant,
            ),
            ("exactly staleAfter old", Some(&approved), 72, Stale),
            ("old scan that found something", Some(&approved), 100, Stale),
            ("old scan that found nothing", Some(&nothing), 100, Stale),
        ];
        for (case, review, scanned_hours_ago, expected) in cases {
            assert_eq!(state(review, scanned_hours_ago), expected, "{case}");
        }
    }

    #[test]
    fn a_dormant_vm_turns_stale_once_its_last_scan_is_older_than_stale_after() {
        // Scanned clean, powered off an hour later, never scanned again while it sleeps.
        let review = reviewed(&Approval::default(), &[]);
        let scan = Scan {
            at: days_ago(10),
            review: &review,
        };
        let powered_off = scan.at + hours(1);
        let cases = [
            (powered_off, ComplianceState::Compliant),
            (scan.at + hours(71), ComplianceState::Compliant),
            (scan.at + hours(72), ComplianceState::Stale),
            (now(), ComplianceState::Stale),
        ];
        for (at, expected) in cases {
            assert_eq!(
                rules().assess(Some(scan), at).compliance.state,
                expected,
                "{at}"
            );
        }
    }

    #[test]
    fn missing_updates_are_counted_by_severity_and_security() {
        use summary::{Classification as C, Severity as S};
        let approval = Approval {
            severities: vec![
                Severity::Critical,
                Severity::Important,
                Severity::Unspecified,
            ],
            ..Approval::default()
        };
        let review = reviewed(
            &approval,
            &[
                (update("openssl", C::Security, S::Critical), 1),
                (update("glibc", C::Security, S::Important), 1),
                (update("bash", C::Bugfix, S::Important), 1),
                (update("tzdata", C::Other, S::Unspecified), 1),
                (update("vim", C::Security, S::Low), 1),
            ],
        );
        let scan = Scan {
            at: now(),
            review: &review,
        };
        let missing = rules().assess(Some(scan), now()).compliance.missing;
        let expected = MissingCounts {
            critical: 1,
            important: 2,
            moderate: 0,
            low: 0,
            unspecified: 1,
            security: 2,
            total: 4,
        };
        assert_eq!(missing, expected);
    }

    #[test]
    fn the_oldest_missing_update_is_dated_by_its_first_sighting() {
        let approval = Approval {
            classifications: vec![Classification::Security],
            ..Approval::default()
        };
        let review = reviewed(
            &approval,
            &[
                (critical("openssl"), 3),
                (critical("glibc"), 5),
                (unrated("tzdata"), 50),
            ],
        );
        let scan = Scan {
            at: now(),
            review: &review,
        };
        let compliance = rules().assess(Some(scan), now()).compliance;
        assert_eq!(compliance.oldest_missing_since, Some(Time(days_ago(5))));
        assert_eq!(compliance.last_scan_at, Some(Time(now())));
        assert_eq!(compliance.pending_updates, review.pending_updates());
    }

    #[test]
    fn deadlines_run_from_the_first_sighting_for_each_severity() {
        use summary::{Classification as C, Severity as S};
        let week_soak = Approval {
            approve_after: Some(Duration::new("168h")),
            ..Approval::default()
        };
        let only_security = Approval {
            classifications: vec![Classification::Security],
            ..Approval::default()
        };
        let all = Approval::default();
        let important = update("glibc", C::Security, S::Important);
        let moderate = update("glibc", C::Security, S::Moderate);
        let bugfix = update("bash", C::Bugfix, S::Critical);
        let cases: [(&str, &Approval, AvailableUpdate, i64, &[Severity]); 9] = [
            (
                "critical, 8 days",
                &all,
                critical("openssl"),
                8,
                &[Severity::Critical],
            ),
            (
                "critical, exactly 7 days",
                &all,
                critical("openssl"),
                7,
                &[Severity::Critical],
            ),
            ("critical, 6 days", &all, critical("openssl"), 6, &[]),
            (
                "important, 31 days",
                &all,
                important.clone(),
                31,
                &[Severity::Important],
            ),
            ("important, 29 days", &all, important, 29, &[]),
            ("moderate has no deadline", &all, moderate, 400, &[]),
            (
                "unspecified never has one",
                &all,
                unrated("tzdata"),
                400,
                &[],
            ),
            (
                "a soaking update counts",
                &week_soak,
                critical("openssl"),
                8,
                &[Severity::Critical],
            ),
            (
                "an excluded update does not",
                &only_security,
                bugfix,
                30,
                &[],
            ),
        ];
        for (case, approval, update, days, expected) in cases {
            let review = reviewed(approval, &[(update, days)]);
            let scan = Scan {
                at: now(),
                review: &review,
            };
            let report = rules().assess(Some(scan), now());
            assert_eq!(report.compliance.deadline_breaches, expected, "{case}");
            assert_eq!(report.breaches.len(), expected.len(), "{case}");
        }
    }

    #[test]
    fn a_breach_carries_its_evidence_most_severe_first() {
        use summary::{Classification as C, Severity as S};
        let review = reviewed(
            &Approval::default(),
            &[
                (update("glibc", C::Security, S::Important), 40),
                (critical("openssl"), 9),
                (critical("curl"), 20),
            ],
        );
        let scan = Scan {
            at: now(),
            review: &review,
        };
        let report = rules().assess(Some(scan), now());
        let evidence: Vec<(&str, Timestamp)> = report
            .breaches
            .iter()
            .map(|b| (b.update.name.as_str(), b.due))
            .collect();
        let expected = [
            ("curl", days_ago(13)),
            ("openssl", days_ago(2)),
            ("glibc", days_ago(10)),
        ];
        assert_eq!(evidence, expected);
        assert_eq!(report.breaches[0].deadline, hours(168));
        assert_eq!(
            report.compliance.deadline_breaches,
            [Severity::Critical, Severity::Important]
        );
    }

    #[test]
    fn a_stale_scan_keeps_its_counts_but_claims_no_breach() {
        let review = reviewed(&Approval::default(), &[(critical("openssl"), 30)]);
        let scan = Scan {
            at: days_ago(5),
            review: &review,
        };
        let report = rules().assess(Some(scan), now());
        assert_eq!(report.compliance.state, ComplianceState::Stale);
        assert_eq!(report.compliance.missing.critical, 1);
        assert!(report.compliance.deadline_breaches.is_empty());
        assert!(report.breaches.is_empty());
        assert_eq!(report.changes_at, None);
    }

    #[test]
    fn the_report_says_when_it_changes_next() {
        let nothing = reviewed(&Approval::default(), &[]);
        let due_soon = reviewed(&Approval::default(), &[(critical("openssl"), 6)]);
        let due_later = reviewed(&Approval::default(), &[(critical("openssl"), 1)]);
        let cases = [
            ("turns stale", &nothing, now() + hours(60)),
            ("deadline runs out first", &due_soon, now() + hours(24)),
            (
                "turns stale before the deadline",
                &due_later,
                now() + hours(60),
            ),
        ];
        for (case, review, expected) in cases {
            let scan = Scan {
                at: now() - hours(12),
                review,
            };
            let changes_at = rules().assess(Some(scan), now()).changes_at;
            assert_eq!(changes_at, Some(expected), "{case}");
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_the_field_named() {
        let mut bad_stale = baseline();
        bad_stale.assessment.stale_after = Duration::new("3d");
        let mut bad_deadline = baseline();
        bad_deadline.deadlines = Some(Deadlines {
            low: Some(Duration::new("soon")),
            ..Deadlines::default()
        });
        let cases = [
            (bad_stale, "assessment.staleAfter: "),
            (bad_deadline, "deadlines.low: "),
        ];
        for (baseline, field) in cases {
            let error = ComplianceRules::from_baseline(&baseline).unwrap_err();
            assert_eq!(error.category(), "InvalidBaseline");
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }
}
