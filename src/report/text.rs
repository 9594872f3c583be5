//! The fleet report as text for people: a one-line summary, then one section per question,
//! each a heading over an aligned table, or one line when there is nothing to show.

use jiff::{SignedDuration, Timestamp};

use super::exceptions::ExceptionEntry;
use super::fleet::FleetReport;
use super::retirement::RetirementCandidate;
use super::table::{Align, Table, truncate};
use super::tally::Tally;
use crate::api::baseline::RetirementAction;
use crate::schedule::parse_duration;

/// How long a reason's or message's text may run before it is cut.
const DETAIL_WIDTH: usize = 60;
/// How long an owner may run before it is cut.
const OWNER_WIDTH: usize = 32;
/// How long an exception's reason may run before it is cut.
const REASON_WIDTH: usize = 48;

const LEFT: Align = Align::Left;
const RIGHT: Align = Align::Right;

/// The whole report as text, ending with a newline.
pub fn render(report: &FleetReport) -> String {
    let sections = [
        header(report),
        by_namespace(report),
        by_baseline(report),
        retirement_candidates(report),
        critical_updates(report),
        expiring_exceptions(report),
        expired_exceptions(report),
        uncovered_vms(report),
        window_conflicts(report),
    ];
    sections.join("\n")
}

/// The first line: how many VMs, where, how compliant, and how many are flagged.
pub fn summary(report: &FleetReport) -> String {
    let totals = &report.totals;
    if totals.vms == 0 {
        return "No ManagedVMs found: is the operator running and watching these namespaces?"
            .into();
    }
    let compliance = &totals.compliance;
    format!(
        "{} in {}: {} compliant, {} non-compliant, {} stale, {} unknown; {} flagged for \
         retirement",
        count(totals.vms, "VM", "VMs"),
        count(report.namespaces.len(), "namespace", "namespaces"),
        compliance.compliant,
        compliance.non_compliant,
        compliance.stale,
        compliance.unknown,
        report.flagged(),
    )
}

fn header(report: &FleetReport) -> String {
    format!(
        "{}\nReport of {} UTC (all times are UTC).\n",
        summary(report),
        time(report.generated_at)
    )
}

fn by_namespace(report: &FleetReport) -> String {
    if report.by_namespace.is_empty() {
        return "No VMs to count by namespace.\n".into();
    }
    let mut table = Table::new(&tally_columns("NAMESPACE"));
    for namespace in &report.by_namespace {
        table.row(tally_row(namespace.namespace.clone(), &namespace.tally));
    }
    table.row(tally_row("TOTAL".into(), &report.totals));
    section("VMs by namespace", &table)
}

fn by_baseline(report: &FleetReport) -> String {
    if report.by_baseline.is_empty() {
        return "No VMs to count by baseline.\n".into();
    }
    let mut columns = vec![("BASELINE", LEFT), ("ACTION", LEFT)];
    columns.extend_from_slice(&tally_columns("")[1..]);
    let mut table = Table::new(&columns);
    for baseline in &report.by_baseline {
        let name = baseline.baseline.as_deref().unwrap_or("(none)");
        let mut row = vec![
            format!("{}/{name}", baseline.namespace),
            action(baseline.retirement_action),
        ];
        row.extend(
            tally_row(String::new(), &baseline.tally)
                .into_iter()
                .skip(1),
        );
        table.row(row);
    }
    section("VMs by baseline", &table)
}

fn tally_columns(first: &'static str) -> [(&'static str, Align); 9] {
    [
        (first, LEFT),
        ("VMS", RIGHT),
        ("COMPLIANT", RIGHT),
        ("NON-COMPLIANT", RIGHT),
        ("STALE", RIGHT),
        ("UNKNOWN", RIGHT),
        ("KEEP", RIGHT),
        ("RETIRE", RIGHT),
        ("NO VERDICT", RIGHT),
    ]
}

fn tally_row(first: String, tally: &Tally) -> Vec<String> {
    let compliance = &tally.compliance;
    let verdict = &tally.verdict;
    let numbers = [
        tally.vms,
        compliance.compliant,
        compliance.non_compliant,
        compliance.stale,
        compliance.unknown,
        verdict.keep,
        verdict.retire,
        verdict.undecided,
    ];
    std::iter::once(first)
        .chain(numbers.iter().map(usize::to_string))
        .collect()
}

fn retirement_candidates(report: &FleetReport) -> String {
    let candidates = &report.retirement_candidates;
    if candidates.is_empty() {
        return "No retirement candidates.\n".into();
    }
    let mut table = Table::new(&[
        ("NAMESPACE", LEFT),
        ("VM", LEFT),
        ("ACTION", LEFT),
        ("SINCE", LEFT),
        ("GRACE ENDS", LEFT),
        ("REASON", LEFT),
        ("EVIDENCE", LEFT),
    ]);
    for candidate in candidates {
        for row in candidate_rows(candidate) {
            table.row(row);
        }
    }
    let heading = format!("Retirement candidates ({})", candidates.len());
    section(&heading, &table)
}

/// One row per reason; the VM's own columns are written on the first only.
fn candidate_rows(candidate: &RetirementCandidate) -> Vec<Vec<String>> {
    let vm_columns = vec![
        candidate.namespace.clone(),
        candidate.vm.clone(),
        action(candidate.action),
        candidate.since.map_or_else(none, time),
        candidate.grace_period_ends_at.map_or_else(none, time),
    ];
    if candidate.reasons.is_empty() {
        let label_only = ["-".into(), "flagged by the verdict label only".into()];
        return vec![vm_columns.into_iter().chain(label_only).collect()];
    }
    let blank_columns = vec![String::new(); vm_columns.len()];
    let reasons = candidate.reasons.iter().enumerate().map(|(index, reason)| {
        let leading = if index == 0 {
            &vm_columns
        } else {
            &blank_columns
        };
        let evidence = [
            format!("{:?}", reason.reason),
            truncate(&reason.message, DETAIL_WIDTH),
        ];
        leading.iter().cloned().chain(evidence).collect()
    });
    reasons.collect()
}

fn critical_updates(report: &FleetReport) -> String {
    let critical = &report.critical_updates;
    if critical.oldest.is_empty() {
        return "No missing critical updates.\n".into();
    }
    let mut table = Table::new(&[
        ("NAMESPACE", LEFT),
        ("VM", LEFT),
        ("PACKAGE", LEFT),
        ("VERSION", LEFT),
        ("FIRST SEEN", LEFT),
        ("AGE", RIGHT),
    ]);
    for update in &critical.oldest {
        table.row(vec![
            update.namespace.clone(),
            update.vm.clone(),
            update.package.clone(),
            update.version.clone(),
            time(update.first_seen),
            span(SignedDuration::from_secs(update.age_seconds)),
        ]);
    }
    let shown = critical.oldest.len();
    let heading = if shown < critical.total {
        format!(
            "Oldest missing critical updates ({shown} of {})",
            critical.total
        )
    } else {
        format!("Oldest missing critical updates ({shown})")
    };
    section(&heading, &table)
}

fn expiring_exceptions(report: &FleetReport) -> String {
    let exceptions = &report.exceptions;
    let horizon = horizon_in_words(&exceptions.expiring_within);
    if exceptions.expiring_soon.is_empty() {
        return format!("No exceptions expire in the next {horizon}.\n");
    }
    let table = exception_table(&exceptions.expiring_soon, "EXPIRES IN", |expires| {
        span(expires.duration_since(report.generated_at))
    });
    let heading = format!(
        "Exceptions expiring in the next {horizon} ({})",
        exceptions.expiring_soon.len()
    );
    section(&heading, &table)
}

fn expired_exceptions(report: &FleetReport) -> String {
    let expired = &report.exceptions.expired;
    if expired.is_empty() {
        return "No expired exceptions.\n".into();
    }
    let table = exception_table(expired, "EXPIRED", |expires| {
        format!("{} ago", span(report.generated_at.duration_since(expires)))
    });
    section(&format!("Expired exceptions ({})", expired.len()), &table)
}

fn exception_table(
    entries: &[ExceptionEntry],
    relative_header: &'static str,
    relative: impl Fn(Timestamp) -> String,
) -> Table {
    let mut table = Table::new(&[
        ("NAMESPACE", LEFT),
        ("NAME", LEFT),
        ("OWNER", LEFT),
        ("EXPIRES", LEFT),
        (relative_header, LEFT),
        ("VMS", RIGHT),
        ("REASON", LEFT),
    ]);
    for entry in entries {
        table.row(vec![
            entry.namespace.clone(),
            entry.name.clone(),
            truncate(&entry.owner, OWNER_WIDTH),
            time(entry.expires),
            relative(entry.expires),
            entry.covered_count.to_string(),
            truncate(&entry.reason, REASON_WIDTH),
        ]);
    }
    table
}

fn uncovered_vms(report: &FleetReport) -> String {
    let uncovered = &report.coverage.uncovered;
    if uncovered.is_empty() {
        return "No VMs without a window.\n".into();
    }
    let mut table = Table::new(&[("NAMESPACE", LEFT), ("VM", LEFT)]);
    for vm in uncovered {
        table.row(vec![vm.namespace.clone(), vm.vm.clone()]);
    }
    let heading = format!("VMs no window covers, never patched ({})", uncovered.len());
    section(&heading, &table)
}

fn window_conflicts(report: &FleetReport) -> String {
    let conflicts = &report.coverage.conflicts;
    if conflicts.is_empty() {
        return "No window conflicts.\n".into();
    }
    let mut table = Table::new(&[("NAMESPACE", LEFT), ("VM", LEFT), ("MESSAGE", LEFT)]);
    for conflict in conflicts {
        table.row(vec![
            conflict.namespace.clone(),
            conflict.vm.clone(),
            truncate(&conflict.message, DETAIL_WIDTH + 20),
        ]);
    }
    let heading = format!("VMs in window conflict, not patched ({})", conflicts.len());
    section(&heading, &table)
}

fn section(heading: &str, table: &Table) -> String {
    format!("{heading}\n{}", table.render())
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn action(action: Option<RetirementAction>) -> String {
    action.map_or_else(none, |a| format!("{a:?}"))
}

fn none() -> String {
    "-".into()
}

/// An instant to the minute, in UTC.
fn time(instant: Timestamp) -> String {
    instant.strftime("%Y-%m-%d %H:%M").to_string()
}

/// A length of time in its largest whole unit: `23d`, `5h`, `12m`.
fn span(length: SignedDuration) -> String {
    let seconds = length.as_secs().max(0);
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s => format!("{}m", s / 60),
    }
}

/// A Kubernetes duration as a span to come: `14 days` for `336h`, `day` for `24h`, and as
/// written when it is no whole number of days.
fn horizon_in_words(duration: &str) -> String {
    let whole_days = parse_duration(duration)
        .ok()
        .filter(|d| d.as_secs() > 0 && d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0)
        .map(|d| d.as_secs() / 86_400);
    match whole_days {
        Some(1) => "day".into(),
        Some(days) => format!("{days} days"),
        None => duration.to_owned(),
    }
}

#[cfg(test)]
mod tests;
