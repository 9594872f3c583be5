use super::*;
use crate::api::baseline::Severity;
use crate::report::fixtures::*;
use crate::report::fleet::Fleet;

/// Six VMs in two namespaces: one of each situation the report describes.
fn sample_fleet() -> Fleet {
    let mut fleet = fleet_of(vec![
        vm("team-a", "web-1").compliant().keep(),
        vm("team-a", "web-2").non_compliant().keep().pending(
            "openssl",
            Severity::Critical,
            days_ago(20),
        ),
        vm("team-a", "old")
            .stale()
            .retire(&[dormant_reason(), end_of_life_reason()])
            .retired_since(days_ago(3), Some(days_from_now(4))),
        vm("team-b", "db")
            .compliant()
            .keep()
            .pending("glibc", Severity::Critical, days_ago(40)),
        vm("team-b", "loose").uncovered(),
        vm("team-b", "torn").in_window_conflict("nightly", "weekly"),
    ]);
    fleet
        .baselines
        .push(baseline("team-a", "standard", RetirementAction::Stop));
    fleet.exceptions = vec![
        exception("team-b", "db-kernel", days_from_now(2)).covering(1),
        exception("team-a", "legacy", days_ago(5)),
    ];
    fleet
}

fn render_fleet(fleet: &Fleet) -> String {
    render(&FleetReport::build(fleet, now(), days(14)))
}

/// The words of the first line whose words start with `first`.
fn row<'a>(text: &'a str, first: &[&str]) -> Vec<&'a str> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.starts_with(first))
        .unwrap_or_else(|| panic!("no line starts with {first:?} in:\n{text}"))
}

#[test]
fn the_first_line_sums_up_compliance_and_retirement() {
    let text = render_fleet(&sample_fleet());
    assert_eq!(
        text.lines().next(),
        Some(
            "6 VMs in 2 namespaces: 2 compliant, 1 non-compliant, 1 stale, 2 unknown; \
             1 flagged for retirement"
        )
    );
}

#[test]
fn one_vm_in_one_namespace_is_written_in_the_singular() {
    let report = FleetReport::build(&fleet_of(vec![vm("team-a", "web")]), now(), days(14));
    assert!(summary(&report).starts_with("1 VM in 1 namespace: "));
}

#[test]
fn an_empty_fleet_says_that_no_managedvms_were_found() {
    let text = render_fleet(&fleet_of(vec![]));
    assert!(text.starts_with("No ManagedVMs found"), "{text}");
    assert!(text.contains("No VMs to count by namespace.\n"), "{text}");
}

#[test]
fn the_second_line_says_when_the_report_was_made() {
    let text = render_fleet(&sample_fleet());
    assert_eq!(
        text.lines().nth(1),
        Some("Report of 2026-05-01 12:00 UTC (all times are UTC).")
    );
}

#[test]
fn each_namespace_has_a_row_of_counts_and_the_fleet_a_total() {
    let text = render_fleet(&sample_fleet());
    let header = row(&text, &["NAMESPACE", "VMS"]);
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "VMS",
            "COMPLIANT",
            "NON-COMPLIANT",
            "STALE",
            "UNKNOWN",
            "KEEP",
            "RETIRE",
            "NO",
            "VERDICT"
        ]
    );
    assert_eq!(
        row(&text, &["team-a", "3"]),
        ["team-a", "3", "1", "1", "1", "0", "2", "1", "0"]
    );
    assert_eq!(
        row(&text, &["team-b", "3"]),
        ["team-b", "3", "1", "0", "0", "2", "1", "0", "2"]
    );
    assert_eq!(
        row(&text, &["TOTAL"]),
        ["TOTAL", "6", "2", "1", "1", "2", "3", "1", "2"]
    );
}

#[test]
fn each_baseline_has_a_row_with_its_retirement_action() {
    let text = render_fleet(&sample_fleet());
    assert_eq!(
        row(&text, &["team-a/standard"])[..3],
        ["team-a/standard", "Stop", "3"]
    );
    assert_eq!(
        row(&text, &["team-b/standard"])[..3],
        ["team-b/standard", "-", "1"]
    );
    assert_eq!(
        row(&text, &["team-b/(none)"])[..3],
        ["team-b/(none)", "-", "2"]
    );
}

#[test]
fn a_retirement_candidate_shows_action_dates_and_one_line_per_reason() {
    let text = render_fleet(&sample_fleet());
    assert!(text.contains("\nRetirement candidates (1)\n"), "{text}");
    let first = row(&text, &["team-a", "old"]);
    assert_eq!(
        first[..9],
        [
            "team-a",
            "old",
            "Stop",
            "2026-04-28",
            "12:00",
            "2026-05-05",
            "12:00",
            "Dormant",
            "powered"
        ]
    );
    let second = text.lines().find(|l| l.contains("EndOfLife")).unwrap();
    assert!(
        second.trim_start().starts_with("EndOfLife  debian 10"),
        "{second}"
    );
    assert!(second.starts_with(&" ".repeat(20)), "{second}");
}

#[test]
fn long_evidence_is_cut_with_an_ellipsis() {
    let fleet = fleet_of(vec![vm("team-a", "old").retire(&[long_dormant_reason()])]);
    let text = render_fleet(&fleet);
    let line = text.lines().find(|l| l.contains("Dormant")).unwrap();
    assert!(line.ends_with('…'), "{line}");
    assert!(!line.contains("TAIL"), "{line}");
}

#[test]
fn missing_critical_updates_are_listed_oldest_first_with_their_age() {
    let text = render_fleet(&sample_fleet());
    assert!(
        text.contains("\nOldest missing critical updates (2)\n"),
        "{text}"
    );
    let glibc = text.lines().position(|l| l.contains("glibc")).unwrap();
    let openssl = text.lines().position(|l| l.contains("openssl")).unwrap();
    assert!(glibc < openssl);
    assert_eq!(row(&text, &["team-b", "db", "glibc"]).last(), Some(&"40d"));
}

#[test]
fn a_heading_says_when_only_the_oldest_critical_updates_are_listed() {
    let mut web = vm("team-a", "web");
    for day in 1..=12 {
        web = web.pending(&format!("pkg-{day}"), Severity::Critical, days_ago(day));
    }
    let text = render_fleet(&fleet_of(vec![web]));
    assert!(
        text.contains("\nOldest missing critical updates (10 of 12)\n"),
        "{text}"
    );
}

#[test]
fn an_exception_expiring_soon_shows_owner_time_left_and_covered_vms() {
    let text = render_fleet(&sample_fleet());
    assert!(
        text.contains("\nExceptions expiring in the next 14 days (1)\n"),
        "{text}"
    );
    let words = row(&text, &["team-b", "db-kernel"]);
    assert_eq!(
        words[..7],
        [
            "team-b",
            "db-kernel",
            "dba@example.com",
            "2026-05-03",
            "12:00",
            "2d",
            "1"
        ]
    );
}

#[test]
fn an_expired_exception_says_how_long_ago_it_expired() {
    let text = render_fleet(&sample_fleet());
    assert!(text.contains("\nExpired exceptions (1)\n"), "{text}");
    assert_eq!(row(&text, &["team-a", "legacy"])[5..8], ["5d", "ago", "0"]);
}

#[test]
fn vms_without_a_window_and_in_conflict_are_listed_apart() {
    let text = render_fleet(&sample_fleet());
    assert!(
        text.contains(
            "\nVMs no window covers, never patched (1)\n  NAMESPACE  VM\n  team-b     loose\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nVMs in window conflict, not patched (1)\n"),
        "{text}"
    );
    assert_eq!(
        row(&text, &["team-b", "torn"])[2..4],
        ["windows", "nightly,"]
    );
}

#[test]
fn each_empty_section_says_so_in_one_line() {
    let text = render_fleet(&fleet_of(vec![vm("team-a", "web").compliant().keep()]));
    for line in [
        "No retirement candidates.",
        "No missing critical updates.",
        "No exceptions expire in the next 14 days.",
        "No expired exceptions.",
        "No VMs without a window.",
        "No window conflicts.",
    ] {
        assert!(
            text.contains(&format!("\n{line}\n")),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[test]
fn a_horizon_of_no_whole_days_is_written_as_given() {
    let report = FleetReport::build(&fleet_of(vec![]), now(), SignedDuration::from_hours(36));
    assert!(render(&report).contains("No exceptions expire in the next 36h."));
}

#[test]
fn no_line_ends_with_a_space() {
    let text = render_fleet(&sample_fleet());
    assert!(text.lines().all(|l| !l.ends_with(' ')), "{text}");
}

/// A dormancy reason whose evidence is far longer than a table cell, ending in `TAIL`.
fn long_dormant_reason() -> crate::api::managed_vm::VerdictReason {
    let mut reason = dormant_reason();
    reason.message = format!("{} TAIL", "powered off for a very long time ".repeat(5));
    reason
}
