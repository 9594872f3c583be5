//! The keep-or-retire verdict: whether a VM is worth patching, why not, and what is done
//! about it.
//!
//! # Reasons
//!
//! A baseline's `retirement.reasons` enables each reason; a reason it leaves out never
//! counts. Each reason found carries a message stating its evidence.
//!
//! - `Dormant`: powered off for longer than `dormantLongerThan`.
//! - `EndOfLife`: the operating system is past its end of life (see [`super::end_of_life`];
//!   the baseline's overrides take precedence over the shipped table).
//! - `ConsecutiveFailures`: at least that many patch runs in a row failed.
//! - `MissingOwner`: the VirtualMachine has no label with the given key, or an empty one.
//! - `CriticalPastDeadline`: a missing critical update is past the baseline's critical
//!   deadline (so this reason needs `deadlines.critical`).
//!
//! An active PatchException's `retirementReasons` waive those reasons: they are reported
//! apart, in [`Judgement::waived`], so that status can show what was waived.
//!
//! # No verdict on an error path
//!
//! Only evidence retires a VM. What is unknown never produces a reason: a VM whose power
//! history is unknown is not dormant, an unknown operating system or one missing from the
//! end-of-life table is not past its end of life, an unread VirtualMachine does not lack an
//! owner, and a compliance that is `Unknown` or `Stale`, could not be assessed, or whose last
//! scan failed, is past no deadline. Recorded failed runs are evidence, which is what
//! `ConsecutiveFailures` counts. A baseline whose retirement rule cannot be read (a bad
//! duration or override date) gives no [`RetirementRule`] at all: the caller reports the
//! error, leaves the verdict as it stands and takes no action.
//!
//! Evidence that turns unknown withdraws its reason like evidence that goes away, and may
//! revoke a verdict: the rule errs towards keeping a VM. The caller therefore passes the
//! last known operating system (from status) rather than only what the guest agent says now.
//!
//! # Actions
//!
//! - `Flag`: the verdict itself (the caller writes the condition, the label and an Event).
//! - `Stop` and `Delete`: after the grace period. When a VM is first retired under such a
//!   baseline, the grace period starts and [`DueAction::Announce`] says when the action
//!   will happen, for the caller's Event; once it has ended, [`DueAction::Stop`] or
//!   [`DueAction::Delete`] is due, on every judgement until the reasons go away (both are
//!   meant to be idempotent).
//! - `Delete` is only ever due with `allowDelete: true`, and `Stop` and `Delete` only with a
//!   grace period; otherwise the VM is only flagged, and [`Judgement::fallback`] says why.
//!
//! The verdict keeps its `since` while the decision stands, and the grace period's end
//! once set; when the reasons go away the verdict is revoked, back to `Keep`, and the grace
//! period with it.
//!
//! Limitation: the verdict does not record which action its grace period was announced
//! for, so a baseline changed from `Stop` to `Delete` while a VM is retired lets `Delete`
//! act at the end already announced for `Stop`, without a new announcement.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::compliance::ComplianceReport;
use super::end_of_life::{EndOfLifeError, EndOfLifeTable, Source};
use crate::api::baseline::{Retirement, RetirementAction, Severity};
use crate::api::common::Duration;
use crate::api::managed_vm::{
    ComplianceState, Decision, OperatingSystem, RetirementReason, Verdict, VerdictReason,
};
use crate::schedule::{DurationError, parse_duration, to_compact_string};

const SECONDS_PER_DAY: i64 = 24 * 60 * 60;

/// Why a baseline's retirement rule cannot be applied. No verdict is reached then.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// `retirement.reasons.dormantLongerThan` is not a duration.
    #[error("retirement.reasons.dormantLongerThan: {0}")]
    DormantLongerThan(DurationError),
    /// `retirement.gracePeriod` is not a duration.
    #[error("retirement.gracePeriod: {0}")]
    GracePeriod(DurationError),
    /// An end-of-life override cannot be read.
    #[error(transparent)]
    EndOfLife(#[from] EndOfLifeError),
}

impl VerdictError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidBaseline"
    }
}

/// What is known about a VM, for its verdict. `None` and `false` mean unknown or absent,
/// and never count against the VM.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// Since when the VM has been powered off; `None` while it runs or when its power
    /// history is unknown.
    pub dormant_since: Option<Timestamp>,
    /// The guest's operating system, from the guest agent or the last scan.
    pub os: Option<&'a OperatingSystem>,
    /// Patch runs in a row that failed, as recorded in the VM's status.
    pub consecutive_failures: i32,
    /// The VirtualMachine's labels; `None` when the VirtualMachine could not be read.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The VM's compliance; `None` when it could not be assessed.
    pub compliance: Option<&'a ComplianceReport>,
    /// The VM's most recent scan failed, so its compliance says nothing about now.
    pub scan_failed: bool,
    /// Reasons waived by the active PatchExceptions covering the VM.
    pub waived: &'a [RetirementReason],
}

/// An action the baseline takes on a retired VM after its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Power the VM off.
    Stop,
    /// Delete the VM.
    Delete,
}

/// What the caller does now about a VM's verdict, besides writing it to status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueAction {
    /// Nothing beyond the verdict.
    None,
    /// A grace period has just started: an Event should say that `enforcement` happens at
    /// `at` unless the reasons go away first.
    Announce {
        /// What will happen.
        enforcement: Enforcement,
        /// When: the end of the grace period.
        at: Timestamp,
    },
    /// The grace period is over: power the VM off.
    Stop,
    /// The grace period is over and the baseline allows it: delete the VM.
    Delete,
}

/// How the decision moved since the previous verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Same decision as before, or a first `Keep`.
    Unchanged,
    /// Newly `Retire`.
    Retired,
    /// Back from `Retire` to `Keep`: the reasons went away.
    Revoked,
}

/// A VM's verdict, with what was waived and what is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The verdict to write to status.
    pub verdict: Verdict,
    /// Reasons that hold but that an exception waives.
    pub waived: Vec<VerdictReason>,
    /// How the decision moved.
    pub change: Change,
    /// What is due now.
    pub action: DueAction,
    /// Why a retired VM is only flagged although the baseline asks for more.
    pub fallback: Option<String>,
}

/// What happens to a retired VM, as the baseline allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Flag,
    After {
        enforcement: Enforcement,
        grace: SignedDuration,
    },
}

/// A baseline's retirement rule, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetirementRule {
    dormant_limit: Option<SignedDuration>,
    end_of_life: Option<EndOfLifeTable>,
    failure_limit: Option<i32>,
    owner_label: Option<String>,
    critical_past_deadline: bool,
    plan: Plan,
    fallback: Option<String>,
}

impl RetirementRule {
    /// Reads a baseline's `retirement`.
    pub fn from_baseline(retirement: &Retirement) -> Result<Self, VerdictError> {
        let reasons = &retirement.reasons;
        let dormant_limit =
            optional(&reasons.dormant_longer_than).map_err(VerdictError::DormantLongerThan)?;
        let grace = optional(&retirement.grace_period).map_err(VerdictError::GracePeriod)?;
        let table = EndOfLifeTable::with_overrides(&retirement.end_of_life_overrides)?;
        let (plan, fallback) = plan(retirement, grace);
        Ok(RetirementRule {
            dormant_limit,
            end_of_life: reasons.end_of_life.then_some(table),
            // The API refuses limits below one; one is the cautious reading of such a limit.
            failure_limit: reasons.consecutive_failures.map(|limit| limit.max(1)),
            owner_label: reasons.missing_owner_label.clone(),
            critical_past_deadline: reasons.critical_past_deadline,
            plan,
            fallback,
        })
    }

    /// The VM's verdict at `now`, following on from `previous`.
    pub fn judge(
        &self,
        evidence: &Evidence<'_>,
        previous: Option<&Verdict>,
        now: Timestamp,
    ) -> Judgement {
        let (waived, counted): (Vec<VerdictReason>, Vec<VerdictReason>) = self
            .reasons(evidence, now)
            .into_iter()
            .partition(|r| evidence.waived.contains(&r.reason));
        let (verdict, change, action) = self.timeline(counted, previous, now);
        let fallback = self
            .fallback
            .clone()
            .filter(|_| verdict.decision == Decision::Retire);
        Judgement {
            verdict,
            waived,
            change,
            action,
            fallback,
        }
    }

    /// Every enabled reason the evidence supports, waived ones included.
    pub fn reasons(&self, evidence: &Evidence<'_>, now: Timestamp) -> Vec<VerdictReason> {
        [
            self.dormant(evidence, now),
            self.past_end_of_life(evidence, now),
            self.failing(evidence),
            self.ownerless(evidence),
            self.past_critical_deadline(evidence, now),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn dormant(&self, evidence: &Evidence<'_>, now: Timestamp) -> Option<VerdictReason> {
        let limit = self.dormant_limit?;
        let since = evidence.dormant_since?;
        let dormant_for = now.duration_since(since);
        (dormant_for > limit).then(|| VerdictReason {
            reason: RetirementReason::Dormant,
            message: format!(
                "powered off since {}, {}; the limit is {}",
                day(since),
                days(dormant_for),
                span(limit)
            ),
        })
    }

    fn past_end_of_life(&self, evidence: &Evidence<'_>, now: Timestamp) -> Option<VerdictReason> {
        let table = self.end_of_life.as_ref()?;
        let os = evidence.os?;
        let found = table.lookup(os.id.as_deref()?, os.version_id.as_deref()?)?;
        let ended = found.ends_at().filter(|ended| now >= *ended)?;
        let source = match found.source {
            Source::Shipped => "patchkeeper's end-of-life table",
            Source::Override => "the baseline's endOfLifeOverrides",
        };
        Some(VerdictReason {
            reason: RetirementReason::EndOfLife,
            message: format!(
                "support for {} ended on {}, {} ago (per {source})",
                found.release,
                found.last_day,
                days(now.duration_since(ended))
            ),
        })
    }

    fn failing(&self, evidence: &Evidence<'_>) -> Option<VerdictReason> {
        let limit = self.failure_limit?;
        let failures = evidence.consecutive_failures;
        (failures >= limit).then(|| VerdictReason {
            reason: RetirementReason::ConsecutiveFailures,
            message: format!("{failures} patch runs in a row failed; the limit is {limit}"),
        })
    }

    fn ownerless(&self, evidence: &Evidence<'_>) -> Option<VerdictReason> {
        let key = self.owner_label.as_deref()?;
        let message = match evidence.labels?.get(key).map(|value| value.trim()) {
            None => format!("the VirtualMachine has no {key:?} label to say who owns it"),
            Some("") => format!("the VirtualMachine's {key:?} label is empty: it names no owner"),
            Some(_) => return None,
        };
        Some(VerdictReason {
            reason: RetirementReason::MissingOwner,
            message,
        })
    }

    fn past_critical_deadline(
        &self,
        evidence: &Evidence<'_>,
        now: Timestamp,
    ) -> Option<VerdictReason> {
        if !self.critical_past_deadline {
            return None;
        }
        let report = evidence.compliance.filter(|_| !evidence.scan_failed)?;
        if report.compliance.state != ComplianceState::NonCompliant {
            return None;
        }
        let mut critical = report
            .breaches
            .iter()
            .filter(|b| b.update.severity == Severity::Critical);
        let first = critical.next()?;
        let others = critical.count();
        let since = first.update.first_seen.0;
        let more = match others {
            0 => String::new(),
            1 => " (and 1 more)".to_string(),
            n => format!(" (and {n} more)"),
        };
        Some(VerdictReason {
            reason: RetirementReason::CriticalPastDeadline,
            message: format!(
                "critical update {} {} missing since {}, {}; the deadline is {}{more}",
                first.update.name,
                first.update.version,
                day(since),
                days(now.duration_since(since)),
                span(first.deadline)
            ),
        })
    }

    /// The new verdict from the counted reasons, how it moved, and what is due.
    fn timeline(
        &self,
        reasons: Vec<VerdictReason>,
        previous: Option<&Verdict>,
        now: Timestamp,
    ) -> (Verdict, Change, DueAction) {
        let decision = if reasons.is_empty() {
            Decision::Keep
        } else {
            Decision::Retire
        };
        let standing = previous.filter(|v| v.decision == decision);
        let change = match (previous.map(|v| v.decision), decision) {
            (Some(Decision::Retire), Decision::Keep) => Change::Revoked,
            (Some(Decision::Retire), Decision::Retire) | (_, Decision::Keep) => Change::Unchanged,
            (_, Decision::Retire) => Change::Retired,
        };
        let since = standing.and_then(|v| v.since.clone()).unwrap_or(Time(now));

        let (grace_end, action) = match (decision, self.plan) {
            (Decision::Retire, Plan::After { enforcement, grace }) => {
                let announced = standing.and_then(|v| v.grace_period_ends_at.as_ref());
                enforce(enforcement, grace, announced.map(|t| t.0), now)
            }
            _ => (None, DueAction::None),
        };
        let verdict = Verdict {
            decision,
            reasons,
            since: Some(since),
            grace_period_ends_at: grace_end.map(Time),
        };
        (verdict, change, action)
    }
}

/// The grace period's end and what is due: the end already announced if there is one,
/// otherwise a new one from `now`, to be announced.
fn enforce(
    enforcement: Enforcement,
    grace: SignedDuration,
    announced_end: Option<Timestamp>,
    now: Timestamp,
) -> (Option<Timestamp>, DueAction) {
    let end = announced_end.unwrap_or_else(|| now.checked_add(grace).unwrap_or(Timestamp::MAX));
    let action = if now >= end {
        match enforcement {
            Enforcement::Stop => DueAction::Stop,
            Enforcement::Delete => DueAction::Delete,
        }
    } else if announced_end.is_none() {
        DueAction::Announce {
            enforcement,
            at: end,
        }
    } else {
        DueAction::None
    };
    (Some(end), action)
}

/// What the baseline's action comes to, and why it is only flagging when it asks for more.
fn plan(retirement: &Retirement, grace: Option<SignedDuration>) -> (Plan, Option<String>) {
    let action = retirement.action;
    let enforcement = match action {
        RetirementAction::Flag => return (Plan::Flag, None),
        RetirementAction::Stop => Enforcement::Stop,
        RetirementAction::Delete => Enforcement::Delete,
    };
    if enforcement == Enforcement::Delete && retirement.allow_delete != Some(true) {
        let why = "retirement.action is Delete but retirement.allowDelete is not true; deleting \
                   VMs needs that explicit opt-in, so the VM is only flagged";
        return (Plan::Flag, Some(why.to_string()));
    }
    let Some(grace) = grace else {
        let why = format!(
            "retirement.action is {action:?} but retirement.gracePeriod is not set; the VM is \
             only flagged until a grace period is given"
        );
        return (Plan::Flag, Some(why));
    };
    (Plan::After { enforcement, grace }, None)
}

fn optional(text: &Option<Duration>) -> Result<Option<SignedDuration>, DurationError> {
    text.as_ref()
        .map(|d| parse_duration(d.as_str()))
        .transpose()
}

/// The UTC day of an instant, as `2026-08-01`.
fn day(instant: Timestamp) -> Date {
    instant.to_zoned(TimeZone::UTC).date()
}

/// Whole days elapsed, as `124 days`.
fn days(elapsed: SignedDuration) -> String {
    match elapsed.as_secs() / SECONDS_PER_DAY {
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

/// A configured length: in days when it is a whole number of them, otherwise as written in
/// hours and minutes.
fn span(length: SignedDuration) -> String {
    let whole_days = length.as_secs() % SECONDS_PER_DAY == 0 && length.subsec_nanos() == 0;
    if whole_days && length.is_positive() {
        days(length)
    } else {
        to_compact_string(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::baseline::{
        Approval, Deadlines, EndOfLifeOverride, PatchBaselineSpec, RetirementReasons,
    };
    use crate::api::managed_vm::PendingUpdate;
    use crate::policy::approval::review_scan;
    use crate::policy::compliance::{ComplianceRules, DeadlineBreach, Scan};
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

    /// Every reason enabled: dormant beyond 90 days, end of life, three failures, an
    /// `owner` label, critical updates past their deadline; the action is `Flag`.
    fn every_reason() -> Retirement {
        Retirement {
            reasons: RetirementReasons {
                dormant_longer_than: Some(Duration::new("2160h")),
                end_of_life: true,
                consecutive_failures: Some(3),
                missing_owner_label: Some("owner".to_string()),
                critical_past_deadline: true,
            },
            ..Retirement::default()
        }
    }

    fn rule(retirement: &Retirement) -> RetirementRule {
        RetirementRule::from_baseline(retirement).unwrap()
    }

    fn os(id: Option<&str>, version_id: Option<&str>) -> OperatingSystem {
        OperatingSystem {
            id: id.map(str::to_string),
            version_id: version_id.map(str::to_string),
            ..OperatingSystem::default()
        }
    }

    fn owned() -> BTreeMap<String, String> {
        BTreeMap::from([("owner".to_string(), "team-db".to_string())])
    }

    /// Compliance of a VM scanned today, missing `openssl 3.0.15` (critical, first seen
    /// `days` ago) under a week's critical deadline.
    fn missing_critical_for(days: i64) -> ComplianceReport {
        let update = AvailableUpdate {
            name: "openssl".to_string(),
            installed: "3.0.14".to_string(),
            candidate: "3.0.15".to_string(),
            classification: summary::Classification::Security,
            severity: summary::Severity::Critical,
            suite: None,
            origin: None,
            advisory: None,
            held: false,
        };
        let seen = PendingUpdate {
            name: update.name.clone(),
            version: update.candidate.clone(),
            classification: update.classification.into(),
            severity: update.severity.into(),
            first_seen: Time(days_ago(days)),
        };
        let review = review_scan(&Approval::default(), &[update], &[seen], &[], now()).unwrap();
        let baseline = PatchBaselineSpec {
            deadlines: Some(Deadlines {
                critical: Some(Duration::new("168h")),
                ..Deadlines::default()
            }),
            ..PatchBaselineSpec::default()
        };
        let scan = Scan {
            at: now(),
            review: &review,
        };
        ComplianceRules::from_baseline(&baseline)
            .unwrap()
            .assess(Some(scan), now())
    }

    fn reasons_of(judgement: &Judgement) -> Vec<(RetirementReason, &str)> {
        judgement
            .verdict
            .reasons
            .iter()
            .map(|r| (r.reason, r.message.as_str()))
            .collect()
    }

    #[test]
    fn each_enabled_reason_retires_with_its_evidence() {
        use RetirementReason::*;
        let debian_10 = os(Some("debian"), Some("10"));
        let unowned = BTreeMap::from([("team".to_string(), "db".to_string())]);
        let empty_owner = BTreeMap::from([("owner".to_string(), " ".to_string())]);
        let past_deadline = missing_critical_for(63);
        let owners = owned();
        let base = Evidence {
            labels: Some(&owners),
            ..Evidence::default()
        };
        let cases = [
            (
                Evidence {
                    dormant_since: Some("2026-08-01T00:00:00Z".parse().unwrap()),
                    ..base
                },
                Dormant,
                "powered off since 2026-08-01, 124 days; the limit is 90 days",
            ),
            (
                Evidence {
                    os: Some(&debian_10),
                    ..base
                },
                EndOfLife,
                "support for debian 10 ended on 2024-06-30, 885 days ago (per patchkeeper's \
                 end-of-life table)",
            ),
            (
                Evidence {
                    consecutive_failures: 3,
                    ..base
                },
                ConsecutiveFailures,
                "3 patch runs in a row failed; the limit is 3",
            ),
            (
                Evidence {
                    labels: Some(&unowned),
                    ..base
                },
                MissingOwner,
                "the VirtualMachine has no \"owner\" label to say who owns it",
            ),
            (
                Evidence {
                    labels: Some(&empty_owner),
                    ..base
                },
                MissingOwner,
                "the VirtualMachine's \"owner\" label is empty: it names no owner",
            ),
            (
                Evidence {
                    compliance: Some(&past_deadline),
                    ..base
                },
                CriticalPastDeadline,
                "critical update openssl 3.0.15 missing since 2026-10-01, 63 days; the \
                 deadline is 7 days",
            ),
        ];
        for (evidence, reason, message) in cases {
            let judgement = rule(&every_reason()).judge(&evidence, None, now());
            assert_eq!(judgement.verdict.decision, Decision::Retire, "{reason:?}");
            assert_eq!(reasons_of(&judgement), [(reason, message)]);
        }
    }

    /// Evidence for every reason at once.
    fn damning<'a>(
        debian_10: &'a OperatingSystem,
        unowned: &'a BTreeMap<String, String>,
        compliance: &'a ComplianceReport,
    ) -> Evidence<'a> {
        Evidence {
            dormant_since: Some(days_ago(200)),
            os: Some(debian_10),
            consecutive_failures: 9,
            labels: Some(unowned),
            compliance: Some(compliance),
            scan_failed: false,
            waived: &[],
        }
    }

    #[test]
    fn a_reason_the_baseline_does_not_enable_never_counts() {
        let debian_10 = os(Some("debian"), Some("10"));
        let unowned = BTreeMap::new();
        let past = missing_critical_for(63);
        let evidence = damning(&debian_10, &unowned, &past);
        let everything = rule(&every_reason()).judge(&evidence, None, now());
        assert_eq!(everything.verdict.reasons.len(), 5);

        let nothing_enabled = rule(&Retirement::default()).judge(&evidence, None, now());
        assert_eq!(nothing_enabled.verdict.decision, Decision::Keep);
        assert!(nothing_enabled.verdict.reasons.is_empty());
    }

    #[test]
    fn evidence_within_the_limits_keeps_the_vm() {
        let debian_12 = os(Some("debian"), Some("12"));
        let owners = owned();
        let within_deadline = missing_critical_for(6);
        let evidence = Evidence {
            dormant_since: Some(days_ago(90)),
            os: Some(&debian_12),
            consecutive_failures: 2,
            labels: Some(&owners),
            compliance: Some(&within_deadline),
            scan_failed: false,
            waived: &[],
        };
        let judgement = rule(&every_reason()).judge(&evidence, None, now());
        assert_eq!(judgement.verdict.decision, Decision::Keep);
        assert!(judgement.verdict.reasons.is_empty());
    }

    #[test]
    fn what_is_unknown_never_retires() {
        let owners = owned();
        let known = Evidence {
            labels: Some(&owners),
            ..Evidence::default()
        };
        let (no_version, gentoo, no_id) = (
            os(Some("debian"), None),
            os(Some("gentoo"), Some("2.17")),
            os(None, Some("10")),
        );
        let past = missing_critical_for(63);
        let mut stale = missing_critical_for(63);
        stale.compliance.state = ComplianceState::Stale;
        let mut unknown = missing_critical_for(63);
        unknown.compliance.state = ComplianceState::Unknown;
        let cases = [
            ("no power history", known),
            (
                "os version unknown",
                Evidence {
                    os: Some(&no_version),
                    ..known
                },
            ),
            (
                "os id unknown",
                Evidence {
                    os: Some(&no_id),
                    ..known
                },
            ),
            (
                "os missing from the table",
                Evidence {
                    os: Some(&gentoo),
                    ..known
                },
            ),
            (
                "virtual machine not read",
                Evidence {
                    labels: None,
                    ..known
                },
            ),
            (
                "compliance not assessed",
                Evidence {
                    compliance: None,
                    ..known
                },
            ),
            (
                "compliance stale",
                Evidence {
                    compliance: Some(&stale),
                    ..known
                },
            ),
            (
                "compliance unknown",
                Evidence {
                    compliance: Some(&unknown),
                    ..known
                },
            ),
            (
                "last scan failed",
                Evidence {
                    compliance: Some(&past),
                    scan_failed: true,
                    ..known
                },
            ),
        ];
        for (case, evidence) in cases {
            let judgement = rule(&every_reason()).judge(&evidence, None, now());
            assert_eq!(judgement.verdict.decision, Decision::Keep, "{case}");
            assert!(judgement.verdict.reasons.is_empty(), "{case}");
        }
    }

    #[test]
    fn a_retirement_rule_that_cannot_be_read_gives_no_verdict() {
        let bad_dormant = Retirement {
            reasons: RetirementReasons {
                dormant_longer_than: Some(Duration::new("90d")),
                ..RetirementReasons::default()
            },
            ..Retirement::default()
        };
        let bad_grace = Retirement {
            action: RetirementAction::Stop,
            grace_period: Some(Duration::new("a week")),
            ..Retirement::default()
        };
        let bad_override = Retirement {
            end_of_life_overrides: vec![EndOfLifeOverride {
                distribution: "debian".to_string(),
                version: "12".to_string(),
                date: "2028-13-01".to_string(),
            }],
            ..Retirement::default()
        };
        let cases = [
            (bad_dormant, "retirement.reasons.dormantLongerThan: "),
            (bad_grace, "retirement.gracePeriod: "),
            (bad_override, "retirement.endOfLifeOverrides: "),
        ];
        for (retirement, field) in cases {
            let error = RetirementRule::from_baseline(&retirement).unwrap_err();
            assert_eq!(error.category(), "InvalidBaseline");
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }

    #[test]
    fn an_override_moves_the_end_of_life() {
        let mut retirement = every_reason();
        retirement.end_of_life_overrides = vec![EndOfLifeOverride {
            distribution: "debian".to_string(),
            version: "12".to_string(),
            date: "2026-11-30".to_string(),
        }];
        let debian_12 = os(Some("debian"), Some("12"));
        let evidence = Evidence {
            os: Some(&debian_12),
            ..Evidence::default()
        };
        let judgement = rule(&retirement).judge(&evidence, None, now());
        let expected = "support for debian 12 ended on 2026-11-30, 2 days ago (per the \
                        baseline's endOfLifeOverrides)";
        assert_eq!(
            reasons_of(&judgement),
            [(RetirementReason::EndOfLife, expected)]
        );
    }

    type Reasons = &'static [RetirementReason];

    #[test]
    fn waived_reasons_are_reported_apart_and_do_not_retire() {
        use RetirementReason::*;
        let debian_10 = os(Some("debian"), Some("10"));
        let owners = owned();
        let evidence = Evidence {
            dormant_since: Some(days_ago(200)),
            os: Some(&debian_10),
            labels: Some(&owners),
            ..Evidence::default()
        };
        let cases: [(Reasons, Decision, Reasons, Reasons); 3] = [
            (&[], Decision::Retire, &[Dormant, EndOfLife], &[]),
            (&[EndOfLife], Decision::Retire, &[Dormant], &[EndOfLife]),
            (
                &[EndOfLife, Dormant, MissingOwner],
                Decision::Keep,
                &[],
                &[Dormant, EndOfLife],
            ),
        ];
        for (waived, decision, counted, reported_waived) in cases {
            let evidence = Evidence { waived, ..evidence };
            let judgement = rule(&every_reason()).judge(&evidence, None, now());
            let counted_now: Vec<_> = judgement.verdict.reasons.iter().map(|r| r.reason).collect();
            let waived_now: Vec<_> = judgement.waived.iter().map(|r| r.reason).collect();
            assert_eq!(judgement.verdict.decision, decision, "{waived:?}");
            assert_eq!(counted_now, counted, "{waived:?}");
            assert_eq!(waived_now, reported_waived, "{waived:?}");
        }
    }

    /// A retirement rule that retires for any failed run, with the given action.
    fn acting(
        action: RetirementAction,
        grace: Option<&str>,
        allow_delete: Option<bool>,
    ) -> RetirementRule {
        rule(&Retirement {
            action,
            grace_period: grace.map(Duration::new),
            allow_delete,
            reasons: RetirementReasons {
                consecutive_failures: Some(1),
                ..RetirementReasons::default()
            },
            ..Retirement::default()
        })
    }

    const FAILING: Evidence<'static> = Evidence {
        dormant_since: None,
        os: None,
        consecutive_failures: 1,
        labels: None,
        compliance: None,
        scan_failed: false,
        waived: &[],
    };

    const HEALTHY: Evidence<'static> = Evidence {
        consecutive_failures: 0,
        ..FAILING
    };

    /// Judges the evidence at each instant in turn, each time following on from the last
    /// verdict, and returns what was due each time.
    fn over_time(rule: &RetirementRule, steps: &[(Evidence<'_>, Timestamp)]) -> Vec<Judgement> {
        let mut previous: Option<Verdict> = None;
        steps
            .iter()
            .map(|(evidence, at)| {
                let judgement = rule.judge(evidence, previous.as_ref(), *at);
                previous = Some(judgement.verdict.clone());
                judgement
            })
            .collect()
    }

    #[test]
    fn flag_retires_without_any_action() {
        let [first, later] = over_time(
            &acting(RetirementAction::Flag, Some("168h"), None),
            &[(FAILING, now()), (FAILING, now() + hours(1000))],
        )
        .try_into()
        .unwrap();
        assert_eq!(first.change, Change::Retired);
        assert_eq!(first.verdict.since, Some(Time(now())));
        assert_eq!(first.verdict.grace_period_ends_at, None);
        assert_eq!(
            (first.action, later.action),
            (DueAction::None, DueAction::None)
        );
        assert_eq!(later.change, Change::Unchanged);
        assert_eq!(later.verdict.since, Some(Time(now())));
        assert_eq!(first.fallback, None);
    }

    #[test]
    fn stop_and_delete_are_announced_then_due_once_the_grace_period_ends() {
        let cases = [
            (RetirementAction::Stop, Enforcement::Stop, DueAction::Stop),
            (
                RetirementAction::Delete,
                Enforcement::Delete,
                DueAction::Delete,
            ),
        ];
        for (action, enforcement, due) in cases {
            let grace_end = now() + hours(168);
            let judgements = over_time(
                &acting(action, Some("168h"), Some(true)),
                &[
                    (FAILING, now()),
                    (FAILING, now() + hours(24)),
                    (FAILING, grace_end - hours(1)),
                    (FAILING, grace_end),
                    (FAILING, grace_end + hours(24)),
                ],
            );
            let actions: Vec<DueAction> = judgements.iter().map(|j| j.action).collect();
            let announce = DueAction::Announce {
                enforcement,
                at: grace_end,
            };
            assert_eq!(
                actions,
                [announce, DueAction::None, DueAction::None, due, due],
                "{action:?}"
            );
            for judgement in &judgements {
                assert_eq!(
                    judgement.verdict.grace_period_ends_at,
                    Some(Time(grace_end))
                );
                assert_eq!(judgement.verdict.since, Some(Time(now())));
            }
        }
    }

    #[test]
    fn without_its_opt_in_or_grace_period_an_action_only_flags_and_says_why() {
        let cases = [
            (
                acting(RetirementAction::Delete, Some("168h"), None),
                "allowDelete is not true",
            ),
            (
                acting(RetirementAction::Delete, Some("168h"), Some(false)),
                "allowDelete is not true",
            ),
            (
                acting(RetirementAction::Stop, None, None),
                "gracePeriod is not set",
            ),
            (
                acting(RetirementAction::Delete, None, Some(true)),
                "gracePeriod is not set",
            ),
        ];
        for (rule, why) in cases {
            let later = now() + hours(10_000);
            let judgements = over_time(&rule, &[(FAILING, now()), (FAILING, later)]);
            for judgement in &judgements {
                assert_eq!(judgement.verdict.decision, Decision::Retire);
                assert_eq!(judgement.action, DueAction::None, "{why}");
                assert_eq!(judgement.verdict.grace_period_ends_at, None);
                let fallback = judgement.fallback.as_deref().unwrap_or_default();
                assert!(fallback.contains(why), "{fallback}");
            }
        }
    }

    #[test]
    fn a_kept_vm_is_never_told_about_a_fallback() {
        let rule = acting(RetirementAction::Delete, Some("168h"), None);
        let judgement = rule.judge(&HEALTHY, None, now());
        assert_eq!(judgement.fallback, None);
    }

    #[test]
    fn the_verdict_is_revoked_when_the_reasons_go_away() {
        let rule = acting(RetirementAction::Stop, Some("168h"), None);
        let recovered = now() + hours(200);
        let judgements = over_time(&rule, &[(FAILING, now()), (HEALTHY, recovered)]);
        let revoked = &judgements[1];
        assert_eq!(revoked.change, Change::Revoked);
        assert_eq!(revoked.action, DueAction::None);
        let expected = Verdict {
            decision: Decision::Keep,
            reasons: Vec::new(),
            since: Some(Time(recovered)),
            grace_period_ends_at: None,
        };
        assert_eq!(revoked.verdict, expected);
    }

    #[test]
    fn a_new_retirement_after_a_revocation_starts_a_new_grace_period() {
        let rule = acting(RetirementAction::Stop, Some("168h"), None);
        let again = now() + hours(48);
        let judgements = over_time(
            &rule,
            &[
                (FAILING, now()),
                (HEALTHY, now() + hours(24)),
                (FAILING, again),
            ],
        );
        let last = &judgements[2];
        assert_eq!(last.change, Change::Retired);
        assert_eq!(last.verdict.since, Some(Time(again)));
        let at = again + hours(168);
        assert_eq!(
            last.action,
            DueAction::Announce {
                enforcement: Enforcement::Stop,
                at
            }
        );
    }

    #[test]
    fn since_stands_while_the_decision_does() {
        let rule = acting(RetirementAction::Flag, None, None);
        let judgements = over_time(
            &rule,
            &[
                (HEALTHY, now()),
                (HEALTHY, now() + hours(5)),
                (HEALTHY, now() + hours(9)),
            ],
        );
        for judgement in &judgements {
            assert_eq!(judgement.change, Change::Unchanged);
            assert_eq!(judgement.verdict.since, Some(Time(now())));
        }
    }

    #[test]
    fn a_grace_period_ends_when_the_baseline_goes_back_to_flag() {
        let stop = acting(RetirementAction::Stop, Some("168h"), None);
        let flag = acting(RetirementAction::Flag, None, None);
        let first = stop.judge(&FAILING, None, now());
        let then = flag.judge(&FAILING, Some(&first.verdict), now() + hours(1));
        assert_eq!(then.verdict.grace_period_ends_at, None);
        assert_eq!(then.action, DueAction::None);

        let stop_again = stop.judge(&FAILING, Some(&then.verdict), now() + hours(2));
        let at = now() + hours(2 + 168);
        let expected = DueAction::Announce {
            enforcement: Enforcement::Stop,
            at,
        };
        assert_eq!(stop_again.action, expected);
    }

    #[test]
    fn lengths_read_as_days_when_whole() {
        let cases = [
            (hours(2160), "90 days"),
            (hours(24), "1 day"),
            (hours(36), "36h"),
            (SignedDuration::from_mins(90), "1h30m"),
        ];
        for (length, expected) in cases {
            assert_eq!(span(length), expected);
        }
    }

    #[test]
    fn several_critical_breaches_are_summed_up() {
        let mut report = missing_critical_for(63);
        let extra = DeadlineBreach {
            update: PendingUpdate {
                name: "curl".to_string(),
                ..report.breaches[0].update.clone()
            },
            ..report.breaches[0].clone()
        };
        report.breaches.push(extra.clone());
        report.breaches.push(extra);
        let evidence = Evidence {
            compliance: Some(&report),
            ..Evidence::default()
        };
        let judgement = rule(&every_reason()).judge(&evidence, None, now());
        let message = &judgement.verdict.reasons[0].message;
        assert!(
            message.ends_with("the deadline is 7 days (and 2 more)"),
            "{message}"
        );
    }
}
