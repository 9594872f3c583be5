//! Approval: which of a VM's available updates its baseline lets patchkeeper install now,
//! and why each of the others waits.
//!
//! # The rules, in order
//!
//! 1. A package in `rejectedPackages` is never approved (`Rejected`). Rejection wins over
//!    every other rule, `approvedPackages` included.
//! 2. A package held back by an active PatchException is not approved (`Excepted`).
//! 3. A package in `approvedPackages` is approved, whatever its classification, severity
//!    or age.
//! 4. Any other update needs its classification listed (`Classification`), then its
//!    severity listed (`Severity`), then to have soaked for `approveAfter` (`Soaking`).
//!
//! A package pattern's `*` matches any run of characters. A pattern is compared with the
//! name as the scan reports it and with the name without its architecture (`libc6:i386` on
//! apt, `openssl.x86_64` on dnf), so that `openssl` names the package on every
//! architecture. A version, when given, must equal the candidate version exactly.
//!
//! # Age counts from the first sighting
//!
//! apt repositories give no release date, so an update's age counts from when patchkeeper
//! first saw it. The caller passes the sightings it recorded (the ManagedVM's
//! `compliance.pendingUpdates`); [`review_scan`] keeps the date of every update still
//! available, dates the new ones `now`, and drops the ones no longer available. The dates
//! live in status, so a restarted operator never resets a soak. A new candidate version of
//! a package is a new update with its own sighting: each version soaks on its own.
//!
//! Limitation: because of that, an update replaced by a newer version before it was
//! installed restarts both its soak and its compliance deadline, although the VM has lacked
//! a fix for that package since the first version appeared.
//!
//! Limitation: status keeps at most [`MAX_PENDING_UPDATES`] sightings, the oldest. On a VM
//! with more updates available, the newest are dated anew at every scan and do not soak
//! until older ones are installed.
//!
//! # Rejected packages and dependencies
//!
//! The runner installs exactly the [`Review::install`] list, and the package manager
//! resolves dependencies itself: apt or dnf may upgrade or add other packages, rejected
//! ones included, when an approved update needs them. Under `rejectedAction:
//! AllowAsDependency` that is what the baseline allows: a rejected package is never on the
//! list, yet an approved update that needs it installs, and the runner reports it among the
//! installed packages. Under `Block` (the default) the rejected packages are also listed in
//! [`Review::blocked`], which the runner is given with the install list: it simulates the
//! install and leaves out every approved update whose transaction would install or upgrade
//! a blocked package, reporting it as `Blocked`, so that a rejected package never comes in
//! as a dependency. The packages a PatchException holds back are blocked the same way.
//!
//! Limitation: the runner's update list may be cut to fit the termination message (most
//! important first). Updates left out are not reviewed, tracked or counted until a later
//! scan lists them.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::baseline::{self, Approval, PackageMatch, RejectedAction};
use crate::api::common::PackagePattern;
use crate::api::managed_vm::PendingUpdate;
use crate::runner::PackageSpec;
use crate::schedule::{DurationError, parse_duration};
use crate::summary::{self, AvailableUpdate};

/// The most sightings kept in a ManagedVM's status (the schema's limit); the oldest are kept.
pub const MAX_PENDING_UPDATES: usize = 500;

/// Architectures that may end a dnf package name (`openssl.x86_64`).
const RPM_ARCHITECTURES: &[&str] = &[
    "x86_64", "noarch", "aarch64", "i686", "i386", "ppc64le", "ppc64", "s390x", "armv7hl",
    "riscv64",
];

/// Why a baseline's approval rules cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// `approveAfter` is not a duration.
    #[error("approval.approveAfter: {0}")]
    ApproveAfter(DurationError),
}

impl ApprovalError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidBaseline"
    }
}

/// Why an available update is not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApproved {
    /// Its classification is not among the baseline's `classifications`.
    Classification,
    /// Its severity is not among the baseline's `severities`.
    Severity,
    /// It is approved once it has soaked, at `until`.
    Soaking {
        /// When the update will have been known for `approveAfter`.
        until: Timestamp,
    },
    /// The package is in the baseline's `rejectedPackages`.
    Rejected,
    /// An active PatchException holds the package back.
    Excepted,
}

impl NotApproved {
    /// Whether only time stands between the update and its approval.
    pub fn is_soaking(self) -> bool {
        matches!(self, NotApproved::Soaking { .. })
    }
}

impl fmt::Display for NotApproved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotApproved::Classification => f.write_str("its classification is not approved"),
            NotApproved::Severity => f.write_str("its severity is not approved"),
            NotApproved::Soaking { until } => write!(f, "soaking until {until}"),
            NotApproved::Rejected => f.write_str("the package is rejected by the baseline"),
            NotApproved::Excepted => f.write_str("the package is held back by a PatchException"),
        }
    }
}

/// One available update, with its first sighting and the baseline's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewedUpdate {
    /// The update: package, candidate version, classification, severity, first sighting.
    pub update: PendingUpdate,
    /// Why it is not installed; `None` when it is approved.
    pub not_approved: Option<NotApproved>,
}

impl ReviewedUpdate {
    /// Whether the update is approved for installation now.
    pub fn is_approved(&self) -> bool {
        self.not_approved.is_none()
    }

    /// Whether the baseline wants the update, now or once it has soaked.
    pub fn is_wanted(&self) -> bool {
        self.not_approved.is_none_or(NotApproved::is_soaking)
    }
}

/// The baseline's decision on every available update of one VM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Review {
    /// Every available update, by package name then version.
    pub updates: Vec<ReviewedUpdate>,
    /// Rejected packages that must not be installed even as a dependency: the baseline's
    /// `rejectedPackages` under `Block`, nothing under `AllowAsDependency`.
    pub blocked: Vec<PackageMatch>,
}

impl Review {
    /// Exactly what to install: the approved package versions, sorted.
    pub fn install(&self) -> Vec<PackageSpec> {
        let mut specs: Vec<PackageSpec> = self
            .updates
            .iter()
            .filter(|reviewed| reviewed.is_approved())
            .map(|reviewed| PackageSpec {
                name: reviewed.update.name.clone(),
                version: reviewed.update.version.clone(),
            })
            .collect();
        specs.sort();
        specs
    }

    /// Every update not installed, with the reason.
    pub fn not_approved(&self) -> impl Iterator<Item = (&PendingUpdate, NotApproved)> {
        self.updates
            .iter()
            .filter_map(|reviewed| Some((&reviewed.update, reviewed.not_approved?)))
    }

    /// The sightings to record in status for the next review: oldest first, at most
    /// [`MAX_PENDING_UPDATES`].
    pub fn pending_updates(&self) -> Vec<PendingUpdate> {
        let mut pending: Vec<PendingUpdate> =
            self.updates.iter().map(|r| r.update.clone()).collect();
        pending.sort_by(|a, b| {
            (&a.first_seen, &a.name, &a.version).cmp(&(&b.first_seen, &b.name, &b.version))
        });
        pending.truncate(MAX_PENDING_UPDATES);
        pending
    }
}

/// Reviews the updates a scan found. `previously_seen` is the list recorded by the last
/// review (empty the first time); `held_back` the package patterns of the VM's active
/// PatchExceptions.
pub fn review_scan(
    approval: &Approval,
    available: &[AvailableUpdate],
    previously_seen: &[PendingUpdate],
    held_back: &[PackagePattern],
    now: Timestamp,
) -> Result<Review, ApprovalError> {
    let sightings = first_sightings(available, previously_seen, now);
    review_pending(approval, &sightings, held_back, now)
}

/// Reviews the updates recorded in status again, without a new scan: for when time passes
/// (a soak ends), the baseline changes or an exception expires.
pub fn review_pending(
    approval: &Approval,
    pending: &[PendingUpdate],
    held_back: &[PackagePattern],
    now: Timestamp,
) -> Result<Review, ApprovalError> {
    let rules = Rules::new(approval, held_back)?;
    let mut pending = pending.to_vec();
    // Sorting by sighting last makes the earliest sighting of a duplicate the one kept.
    pending.sort_by(|a, b| {
        (&a.name, &a.version, &a.first_seen).cmp(&(&b.name, &b.version, &b.first_seen))
    });
    pending.dedup_by(|later, kept| later.name == kept.name && later.version == kept.version);

    let updates = pending
        .into_iter()
        .map(|update| ReviewedUpdate {
            not_approved: rules.judge(&update, now),
            update,
        })
        .collect();
    Ok(Review {
        updates,
        blocked: rules.blocked(),
    })
}

/// The scan's updates, each dated by its earliest recorded sighting, or `now` if new. A
/// recorded sighting later than `now` (a clock that went back) counts as `now`.
fn first_sightings(
    available: &[AvailableUpdate],
    previously_seen: &[PendingUpdate],
    now: Timestamp,
) -> Vec<PendingUpdate> {
    let mut earliest: BTreeMap<(&str, &str), Timestamp> = BTreeMap::new();
    for seen in previously_seen {
        let key = (seen.name.as_str(), seen.version.as_str());
        let date = earliest.entry(key).or_insert(seen.first_seen.0);
        *date = (*date).min(seen.first_seen.0);
    }

    available
        .iter()
        .map(|update| {
            let key = (update.name.as_str(), update.candidate.as_str());
            let first_seen = earliest.get(&key).map_or(now, |date| (*date).min(now));
            PendingUpdate {
                name: update.name.clone(),
                version: update.candidate.clone(),
                classification: update.classification.into(),
                severity: update.severity.into(),
                first_seen: Time(first_seen),
            }
        })
        .collect()
}

/// A baseline's approval rules, with its soak time parsed.
struct Rules<'a> {
    approval: &'a Approval,
    soak: SignedDuration,
    held_back: &'a [PackagePattern],
}

impl<'a> Rules<'a> {
    fn new(approval: &'a Approval, held_back: &'a [PackagePattern]) -> Result<Self, ApprovalError> {
        let soak = match &approval.approve_after {
            Some(text) => parse_duration(text.as_str()).map_err(ApprovalError::ApproveAfter)?,
            None => SignedDuration::ZERO,
        };
        Ok(Rules {
            approval,
            soak,
            held_back,
        })
    }

    /// Why the update is not approved now, or `None` when it is.
    fn judge(&self, update: &PendingUpdate, now: Timestamp) -> Option<NotApproved> {
        let listed = |entries: &[PackageMatch]| entries.iter().any(|e| entry_matches(e, update));
        if listed(&self.approval.rejected_packages) {
            return Some(NotApproved::Rejected);
        }
        if self
            .held_back
            .iter()
            .any(|p| name_matches(p.as_str(), &update.name))
        {
            return Some(NotApproved::Excepted);
        }
        if listed(&self.approval.approved_packages) {
            return None;
        }
        if !self
            .approval
            .classifications
            .contains(&update.classification)
        {
            return Some(NotApproved::Classification);
        }
        if !self.approval.severities.contains(&update.severity) {
            return Some(NotApproved::Severity);
        }

        let until = update
            .first_seen
            .0
            .checked_add(self.soak)
            .unwrap_or(Timestamp::MAX);
        (now < until).then_some(NotApproved::Soaking { until })
    }

    fn blocked(&self) -> Vec<PackageMatch> {
        match self.approval.rejected_action {
            RejectedAction::Block => self.approval.rejected_packages.clone(),
            RejectedAction::AllowAsDependency => Vec::new(),
        }
    }
}

/// Whether an approved or rejected entry names this update.
fn entry_matches(entry: &PackageMatch, update: &PendingUpdate) -> bool {
    name_matches(entry.name.as_str(), &update.name)
        && entry.version.as_ref().is_none_or(|v| *v == update.version)
}

/// Whether a package pattern names the package, with or without its architecture.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    glob_matches(pattern, name)
        || without_architecture(name).is_some_and(|n| glob_matches(pattern, n))
}

/// The package name without the architecture: `libc6` for apt's `libc6:i386`, `openssl`
/// for dnf's `openssl.x86_64`; `None` when the name carries no architecture.
fn without_architecture(name: &str) -> Option<&str> {
    if let Some((base, _)) = name.split_once(':') {
        return Some(base);
    }
    let (base, architecture) = name.rsplit_once('.')?;
    RPM_ARCHITECTURES.contains(&architecture).then_some(base)
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and the position in `name` it is currently taken to reach.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => {
                // Let the last star swallow one more character and try again from there.
                let Some((star_p, star_n)) = star else {
                    return false;
                };
                star = Some((star_p, star_n + 1));
                p = star_p + 1;
                n = star_n + 1;
            }
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl From<summary::Classification> for baseline::Classification {
    fn from(classification: summary::Classification) -> Self {
        match classification {
            summary::Classification::Security => baseline::Classification::Security,
            summary::Classification::Bugfix => baseline::Classification::Bugfix,
            summary::Classification::Enhancement => baseline::Classification::Enhancement,
            summary::Classification::Other => baseline::Classification::Other,
        }
    }
}

impl From<summary::Severity> for baseline::Severity {
    fn from(severity: summary::Severity) -> Self {
        match severity {
            summary::Severity::Critical => baseline::Severity::Critical,
            summary::Severity::Important => baseline::Severity::Important,
            summary::Severity::Moderate => baseline::Severity::Moderate,
            summary::Severity::Low => baseline::Severity::Low,
            summary::Severity::Unspecified => baseline::Severity::Unspecified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::baseline::{Classification, Severity};
    use crate::api::common::Duration;

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn hours(hours: i64) -> SignedDuration {
        SignedDuration::from_hours(hours)
    }

    fn days_ago(days: i64) -> Timestamp {
        now() - hours(24 * days)
    }

    fn available(
        name: &str,
        candidate: &str,
        classification: summary::Classification,
        severity: summary::Severity,
    ) -> AvailableUpdate {
        AvailableUpdate {
            name: name.to_string(),
            installed: "0".to_string(),
            candidate: candidate.to_string(),
            classification,
            severity,
            suite: None,
            origin: None,
            advisory: None,
            held: false,
        }
    }

    /// A security fix rated critical, which the default baseline approves.
    fn security(name: &str, candidate: &str) -> AvailableUpdate {
        use summary::{Classification, Severity};
        available(
            name,
            candidate,
            Classification::Security,
            Severity::Critical,
        )
    }

    fn seen(update: &AvailableUpdate, days: i64) -> PendingUpdate {
        PendingUpdate {
            name: update.name.clone(),
            version: update.candidate.clone(),
            classification: update.classification.into(),
            severity: update.severity.into(),
            first_seen: Time(days_ago(days)),
        }
    }

    fn package(name: &str, version: Option<&str>) -> PackageMatch {
        PackageMatch {
            name: PackagePattern::new(name),
            version: version.map(str::to_string),
        }
    }

    /// Every classification and severity, approved after a week.
    fn week_soak() -> Approval {
        Approval {
            approve_after: Some(Duration::new("168h")),
            ..Approval::default()
        }
    }

    fn with(change: impl FnOnce(&mut Approval)) -> Approval {
        let mut approval = week_soak();
        change(&mut approval);
        approval
    }

    fn patterns(texts: &[&str]) -> Vec<PackagePattern> {
        texts.iter().map(|t| PackagePattern::new(t)).collect()
    }

    /// The decision on one update first seen `days` ago.
    fn decide(
        approval: &Approval,
        held_back: &[&str],
        update: AvailableUpdate,
        days: i64,
    ) -> Option<NotApproved> {
        let previously = [seen(&update, days)];
        let review = review_scan(
            approval,
            &[update],
            &previously,
            &patterns(held_back),
            now(),
        )
        .unwrap();
        review.updates[0].not_approved
    }

    #[test]
    fn an_update_soaks_for_approve_after_from_its_first_sighting() {
        let soaking = |days: i64| {
            let until = days_ago(days) + hours(168);
            Some(NotApproved::Soaking { until })
        };
        let cases = [(0, soaking(0)), (2, soaking(2)), (7, None), (8, None)];
        for (days, expected) in cases {
            let decision = decide(&week_soak(), &[], security("openssl", "3.1"), days);
            assert_eq!(decision, expected, "first seen {days} days ago");
        }
    }

    #[test]
    fn without_approve_after_an_update_is_approved_at_once() {
        let decision = decide(&Approval::default(), &[], security("openssl", "3.1"), 0);
        assert_eq!(decision, None);
    }

    #[test]
    fn classification_then_severity_must_be_listed_before_any_soak() {
        use summary::{Classification as C, Severity as S};
        let strict = with(|a| {
            a.classifications = vec![Classification::Security];
            a.severities = vec![Severity::Critical];
        });
        let cases = [
            (C::Security, S::Critical, None),
            (C::Bugfix, S::Critical, Some(NotApproved::Classification)),
            (C::Security, S::Low, Some(NotApproved::Severity)),
            (C::Bugfix, S::Low, Some(NotApproved::Classification)),
        ];
        for (classification, severity, expected) in cases {
            let update = available("curl", "8.5", classification, severity);
            assert_eq!(decide(&strict, &[], update.clone(), 30), expected);
            if expected.is_some() {
                assert_eq!(
                    decide(&strict, &[], update, 0),
                    expected,
                    "first seen today"
                );
            }
        }
    }

    #[test]
    fn rejection_wins_over_everything_then_exceptions_then_approved_packages() {
        use NotApproved::{Excepted, Rejected};
        let curl = || package("curl", None);
        let approved = with(|a| {
            a.classifications = vec![Classification::Security];
            a.approved_packages = vec![curl()];
        });
        let rejected = with(|a| a.rejected_packages = vec![curl()]);
        let both = with(|a| {
            a.rejected_packages = vec![curl()];
            a.approved_packages = vec![curl()];
        });
        let cases: [(&str, &Approval, &[&str], Option<NotApproved>); 6] = [
            (
                "approved skips classification and soak",
                &approved,
                &[],
                None,
            ),
            ("rejected", &rejected, &[], Some(Rejected)),
            ("rejected though approved", &both, &[], Some(Rejected)),
            (
                "rejected though excepted",
                &rejected,
                &["curl"],
                Some(Rejected),
            ),
            ("excepted", &week_soak(), &["cu*"], Some(Excepted)),
            (
                "excepted though approved",
                &approved,
                &["curl"],
                Some(Excepted),
            ),
        ];
        for (case, approval, held_back, expected) in cases {
            let update = available(
                "curl",
                "8.5",
                summary::Classification::Bugfix,
                summary::Severity::Low,
            );
            assert_eq!(decide(approval, held_back, update, 0), expected, "{case}");
        }
    }

    #[test]
    fn package_entries_match_by_pattern_version_and_architecture() {
        let cases = [
            ("openssl", None, "openssl", "3.1", true),
            ("openssl", Some("3.1"), "openssl", "3.1", true),
            ("openssl", Some("3.0"), "openssl", "3.1", false),
            (
                "linux-image-*",
                None,
                "linux-image-6.1.0-28-amd64",
                "6.1.119-1",
                true,
            ),
            ("openssl", None, "openssl.x86_64", "1:3.0.7-27.el9", true),
            ("libc6", None, "libc6:i386", "2.36-9", true),
            (
                "openssl",
                None,
                "openssl-libs.x86_64",
                "1:3.0.7-27.el9",
                false,
            ),
        ];
        for (pattern, version, name, candidate, expected) in cases {
            let approval = with(|a| a.rejected_packages = vec![package(pattern, version)]);
            let decision = decide(&approval, &[], security(name, candidate), 30);
            let rejected = decision == Some(NotApproved::Rejected);
            assert_eq!(
                rejected, expected,
                "{pattern} {version:?} ~ {name}={candidate}"
            );
        }
    }

    #[test]
    fn the_install_list_is_exactly_the_approved_versions_sorted() {
        let approval = with(|a| a.rejected_packages = vec![package("bash", None)]);
        let updates = [
            security("zlib1g", "1.3"),
            security("bash", "5.2"),
            security("curl", "8.5"),
            security("apt", "2.6"),
        ];
        let previously: Vec<_> = updates.iter().map(|u| seen(u, 10)).collect();
        let review = review_scan(&approval, &updates, &previously, &[], now()).unwrap();
        let install: Vec<String> = review.install().iter().map(ToString::to_string).collect();
        assert_eq!(install, ["apt=2.6", "curl=8.5", "zlib1g=1.3"]);
    }

    #[test]
    fn every_update_not_installed_says_why() {
        let approval = with(|a| a.rejected_packages = vec![package("bash", None)]);
        let updates = [security("bash", "5.2"), security("curl", "8.5")];
        let review = review_scan(&approval, &updates, &[], &[], now()).unwrap();
        let reasons: Vec<(&str, NotApproved)> = review
            .not_approved()
            .map(|(update, why)| (update.name.as_str(), why))
            .collect();
        let soaking = NotApproved::Soaking {
            until: now() + hours(168),
        };
        assert_eq!(
            reasons,
            [("bash", NotApproved::Rejected), ("curl", soaking)]
        );
        assert!(review.install().is_empty());
    }

    #[test]
    fn sightings_survive_a_restart_new_ones_start_now_and_vanished_ones_go() {
        let kept = security("openssl", "3.1");
        let vanished = security("curl", "8.5");
        let new = security("bash", "5.2");
        let previously = [seen(&kept, 3), seen(&vanished, 5)];
        let review = review_scan(&week_soak(), &[kept, new], &previously, &[], now()).unwrap();
        let sightings: Vec<(&str, Timestamp)> = review
            .updates
            .iter()
            .map(|r| (r.update.name.as_str(), r.update.first_seen.0))
            .collect();
        assert_eq!(sightings, [("bash", now()), ("openssl", days_ago(3))]);
    }

    #[test]
    fn a_new_candidate_version_is_a_new_sighting() {
        let previously = [seen(&security("openssl", "3.1"), 10)];
        let update = security("openssl", "3.2");
        let review = review_scan(&week_soak(), &[update], &previously, &[], now()).unwrap();
        assert_eq!(review.updates[0].update.first_seen.0, now());
    }

    #[test]
    fn a_sighting_is_never_dated_after_now() {
        let update = security("openssl", "3.1");
        let previously = [seen(&update, -2)];
        let review = review_scan(&week_soak(), &[update], &previously, &[], now()).unwrap();
        assert_eq!(review.updates[0].update.first_seen.0, now());
    }

    #[test]
    fn a_duplicate_sighting_keeps_the_earliest_date() {
        let update = security("openssl", "3.1");
        let previously = [seen(&update, 1), seen(&update, 9)];
        let review = review_scan(&week_soak(), &[update], &previously, &[], now()).unwrap();
        assert_eq!(review.updates.len(), 1);
        assert_eq!(review.updates[0].update.first_seen.0, days_ago(9));
    }

    #[test]
    fn a_soaking_update_is_approved_once_soaked_without_a_new_scan() {
        let update = security("openssl", "3.1");
        let review = review_scan(&week_soak(), &[update], &[], &[], now()).unwrap();
        assert!(review.install().is_empty());

        let pending = review.pending_updates();
        let later = now() + hours(168);
        let again = review_pending(&week_soak(), &pending, &[], later).unwrap();
        let install: Vec<String> = again.install().iter().map(ToString::to_string).collect();
        assert_eq!(install, ["openssl=3.1"]);
    }

    #[test]
    fn the_recorded_sightings_are_oldest_first_and_capped() {
        let updates: Vec<AvailableUpdate> = (0..MAX_PENDING_UPDATES + 20)
            .map(|i| security(&format!("pkg{i:04}"), "1"))
            .collect();
        let previously: Vec<PendingUpdate> = updates
            .iter()
            .enumerate()
            .map(|(i, u)| seen(u, i64::try_from(i).unwrap() % 7))
            .collect();
        let review = review_scan(&week_soak(), &updates, &previously, &[], now()).unwrap();
        let pending = review.pending_updates();
        assert_eq!(pending.len(), MAX_PENDING_UPDATES);
        assert!(pending.is_sorted_by_key(|p| p.first_seen.clone()));
        assert_eq!(pending[0].first_seen.0, days_ago(6));
    }

    #[test]
    fn rejected_packages_are_blocked_as_dependencies_only_under_block() {
        let rejected = vec![package("telnet*", None)];
        let cases = [
            (RejectedAction::Block, rejected.clone()),
            (RejectedAction::AllowAsDependency, Vec::new()),
        ];
        for (action, blocked) in cases {
            let approval = with(|a| {
                a.rejected_packages = rejected.clone();
                a.rejected_action = action;
            });
            let review = review_scan(&approval, &[], &[], &[], now()).unwrap();
            assert_eq!(review.blocked, blocked, "{action:?}");
        }
    }

    #[test]
    fn a_malformed_approve_after_is_refused_with_the_field_named() {
        let approval = Approval {
            approve_after: Some(Duration::new("7d")),
            ..Approval::default()
        };
        let error = review_scan(&approval, &[], &[], &[], now()).unwrap_err();
        assert_eq!(error.category(), "InvalidBaseline");
        assert!(
            error.to_string().starts_with("approval.approveAfter: "),
            "{error}"
        );
        assert!(error.to_string().contains("168h"), "{error}");
    }

    #[test]
    fn package_patterns_match_like_globs() {
        let cases = [
            ("openssl", "openssl", true),
            ("openssl", "openssl-libs", false),
            ("openssl*", "openssl-libs", true),
            ("*", "anything", true),
            ("*-dev", "libssl-dev", true),
            ("*-dev", "libssl-dev-doc", false),
            ("lib*-dev", "libssl-dev", true),
            ("lib*-dev", "lib-dev", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("**", "", true),
            ("", "x", false),
            ("python3", "python3.11", false),
            ("python3.11", "python3.11.x86_64", true),
            ("kernel", "kernel.noarch", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(name_matches(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn summary_enums_map_to_the_api_one_to_one() {
        use summary::{Classification as C, Severity as S};
        let classifications = [
            (C::Security, Classification::Security),
            (C::Bugfix, Classification::Bugfix),
            (C::Enhancement, Classification::Enhancement),
            (C::Other, Classification::Other),
        ];
        for (from, to) in classifications {
            assert_eq!(Classification::from(from), to);
        }
        let severities = [
            (S::Critical, Severity::Critical),
            (S::Important, Severity::Important),
            (S::Moderate, Severity::Moderate),
            (S::Low, Severity::Low),
            (S::Unspecified, Severity::Unspecified),
        ];
        for (from, to) in severities {
            assert_eq!(Severity::from(from), to);
        }
    }
}
