//! Which PatchExceptions apply to a VM now, what they exempt it from, and when the next one
//! expires, so that the operator looks again exactly then instead of polling.
//!
//! An exception covers a VM named in its `vmNames`, or whose VirtualMachine labels its
//! `selector` selects; it applies from its creation until just before `expires`. What it
//! exempts the VM from:
//!
//! - with `packages`: those packages are held back, the rest is patched as usual;
//! - with `retirementReasons`: those reasons do not count against the VM;
//! - with neither: the VM is not patched at all, which [`Coverage::held_packages`] writes as
//!   the pattern `*` so that approval holds every package back.
//!
//! An exception whose selector cannot be evaluated covers no VM; it is reported in
//! [`Coverage::invalid`] so that the reconciler can say so on the exception.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::ResourceExt;

use super::selector::{self, SelectorError};
use crate::api::PatchException;
use crate::api::common::PackagePattern;
use crate::api::managed_vm::RetirementReason;

/// The exceptions that apply to one VM now.
#[derive(Debug, Clone, Default)]
pub struct Coverage<'a> {
    /// The active exceptions covering the VM, by name.
    pub active: Vec<&'a PatchException>,
    /// Active exceptions whose selector cannot be evaluated, with why; they cover nothing.
    pub invalid: Vec<(&'a PatchException, SelectorError)>,
    /// The earliest expiry among the active exceptions covering the VM: when the VM's
    /// exemptions next change by themselves.
    pub next_expiry: Option<Timestamp>,
}

impl Coverage<'_> {
    /// The names of the exceptions covering the VM, for its status.
    pub fn names(&self) -> Vec<String> {
        self.active.iter().map(|e| e.name_any()).collect()
    }

    /// Whether an exception exempts the VM from patching altogether.
    pub fn exempts_from_patching(&self) -> bool {
        self.active
            .iter()
            .any(|e| e.spec.packages.is_empty() && e.spec.retirement_reasons.is_empty())
    }

    /// The package patterns held back on the VM, sorted: `*` alone when the VM is exempt
    /// from patching altogether.
    pub fn held_packages(&self) -> Vec<PackagePattern> {
        if self.exempts_from_patching() {
            return vec![PackagePattern::new("*")];
        }
        let mut patterns: Vec<PackagePattern> = self
            .active
            .iter()
            .flat_map(|e| e.spec.packages.iter().cloned())
            .collect();
        patterns.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        patterns.dedup();
        patterns
    }

    /// The retirement reasons waived for the VM, sorted.
    pub fn waived_reasons(&self) -> Vec<RetirementReason> {
        let mut reasons: Vec<RetirementReason> = self
            .active
            .iter()
            .flat_map(|e| e.spec.retirement_reasons.iter().copied())
            .collect();
        reasons.sort();
        reasons.dedup();
        reasons
    }
}

/// Whether the exception still applies at `now`: up to, not including, its expiry.
pub fn is_active(exception: &PatchException, now: Timestamp) -> bool {
    now < exception.spec.expires.0
}

/// Which of the namespace's exceptions cover the VM named `vm_name` with these labels, at
/// `now`.
pub fn covering<'a>(
    exceptions: impl IntoIterator<Item = &'a PatchException>,
    vm_name: &str,
    vm_labels: &BTreeMap<String, String>,
    now: Timestamp,
) -> Coverage<'a> {
    let mut coverage = Coverage::default();
    for exception in exceptions {
        if !is_active(exception, now) {
            continue;
        }
        match covers(exception, vm_name, vm_labels) {
            Ok(false) => {}
            Ok(true) => coverage.active.push(exception),
            Err(error) => coverage.invalid.push((exception, error)),
        }
    }

    coverage.active.sort_by_key(|e| e.name_any());
    coverage.invalid.sort_by_key(|(e, _)| e.name_any());
    coverage.next_expiry = coverage.active.iter().map(|e| e.spec.expires.0).min();
    coverage
}

/// Whether the exception names or selects the VM. One that gives both `vmNames` and a
/// `selector` (which the API refuses) needs both to agree; one that gives neither covers
/// nothing.
fn covers(
    exception: &PatchException,
    vm_name: &str,
    vm_labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let spec = &exception.spec;
    let named = spec
        .vm_names
        .as_ref()
        .map(|names| names.iter().any(|n| n == vm_name));
    let selected = match &spec.selector {
        Some(selector) => {
            selector::validate(selector)?;
            Some(selector::matches(selector, vm_labels))
        }
        None => None,
    };
    Ok(match (named, selected) {
        (None, None) => false,
        (named, selected) => named.unwrap_or(true) && selected.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement, Time,
    };

    use super::*;
    use crate::api::PatchExceptionSpec;

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn in_days(days: i64) -> Timestamp {
        now() + jiff::SignedDuration::from_hours(24 * days)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn exception(name: &str, expires_in_days: i64) -> PatchException {
        let spec = PatchExceptionSpec {
            owner: "ops@example.com".to_string(),
            reason: "vendor application certified on this release only".to_string(),
            expires: Time(in_days(expires_in_days)),
            selector: None,
            vm_names: None,
            packages: Vec::new(),
            retirement_reasons: Vec::new(),
        };
        PatchException::new(name, spec)
    }

    fn naming(name: &str, vms: &[&str]) -> PatchException {
        let mut exception = exception(name, 30);
        exception.spec.vm_names = Some(vms.iter().map(|v| v.to_string()).collect());
        exception
    }

    fn selecting(name: &str, pairs: &[(&str, &str)]) -> PatchException {
        let mut exception = exception(name, 30);
        exception.spec.selector = Some(LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        });
        exception
    }

    #[test]
    fn exceptions_cover_the_vms_they_name_or_select() {
        let vm_labels = labels(&[("team", "payments")]);
        let mut expired = naming("expired", &["db-1"]);
        expired.spec.expires = Time(now());
        let mut both = naming("both-disagree", &["db-1"]);
        both.spec.selector = selecting("", &[("team", "search")]).spec.selector;
        let cases = [
            ("named", naming("by-name", &["web-1", "db-1"]), true),
            ("another vm named", naming("by-name", &["web-1"]), false),
            (
                "selected",
                selecting("by-label", &[("team", "payments")]),
                true,
            ),
            (
                "not selected",
                selecting("by-label", &[("team", "search")]),
                false,
            ),
            ("empty selector selects all", selecting("all", &[]), true),
            ("neither names nor selects", exception("nothing", 30), false),
            ("expired at this instant", expired, false),
            ("names and selector must agree", both, false),
        ];
        for (case, exception, expected) in cases {
            let exceptions = [exception];
            let coverage = covering(&exceptions, "db-1", &vm_labels, now());
            assert_eq!(coverage.active.len() == 1, expected, "{case}");
        }
    }

    #[test]
    fn the_next_expiry_is_the_earliest_among_those_covering_the_vm() {
        let mut soon = naming("soon", &["db-1"]);
        soon.spec.expires = Time(in_days(2));
        let mut later = naming("later", &["db-1"]);
        later.spec.expires = Time(in_days(9));
        let mut elsewhere = naming("elsewhere", &["web-1"]);
        elsewhere.spec.expires = Time(in_days(1));
        let mut gone = naming("gone", &["db-1"]);
        gone.spec.expires = Time(in_days(-1));
        let exceptions = [later, elsewhere, soon, gone];

        let coverage = covering(&exceptions, "db-1", &BTreeMap::new(), now());
        assert_eq!(coverage.names(), ["later", "soon"]);
        assert_eq!(coverage.next_expiry, Some(in_days(2)));

        let after_the_first = covering(&exceptions, "db-1", &BTreeMap::new(), in_days(2));
        assert_eq!(after_the_first.names(), ["later"]);
        assert_eq!(after_the_first.next_expiry, Some(in_days(9)));
    }

    #[test]
    fn nothing_covering_the_vm_means_no_expiry_to_wait_for() {
        let exceptions = [naming("other", &["web-1"])];
        let coverage = covering(&exceptions, "db-1", &BTreeMap::new(), now());
        assert!(coverage.active.is_empty());
        assert_eq!(coverage.next_expiry, None);
        assert!(coverage.held_packages().is_empty());
    }

    #[test]
    fn what_an_exception_exempts_depends_on_what_it_lists() {
        use RetirementReason::*;
        let package_list =
            |patterns: &[&str]| patterns.iter().map(|p| PackagePattern::new(p)).collect();
        let mut packages = naming("packages", &["db-1"]);
        packages.spec.packages = package_list(&["postgresql*", "libpq5"]);
        let mut more_packages = naming("more-packages", &["db-1"]);
        more_packages.spec.packages = package_list(&["libpq5", "openssl"]);
        let mut reasons = naming("reasons", &["db-1"]);
        reasons.spec.retirement_reasons = vec![EndOfLife, Dormant];
        let whole_vm = naming("whole-vm", &["db-1"]);

        let cases = [
            (
                "packages only",
                vec![packages.clone(), more_packages],
                Exempts::packages(&["libpq5", "openssl", "postgresql*"]),
            ),
            (
                "reasons only",
                vec![reasons.clone()],
                Exempts::reasons(&[Dormant, EndOfLife]),
            ),
            (
                "packages and reasons",
                vec![packages, reasons],
                Exempts {
                    whole_vm: false,
                    held: &["libpq5", "postgresql*"],
                    waived: &[Dormant, EndOfLife],
                },
            ),
            (
                "neither: the whole vm",
                vec![whole_vm],
                Exempts {
                    whole_vm: true,
                    held: &["*"],
                    waived: &[],
                },
            ),
        ];
        for (case, exceptions, expected) in cases {
            let coverage = covering(&exceptions, "db-1", &BTreeMap::new(), now());
            let held: Vec<String> = coverage
                .held_packages()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect();
            assert_eq!(
                coverage.exempts_from_patching(),
                expected.whole_vm,
                "{case}"
            );
            assert_eq!(held, expected.held, "{case}");
            assert_eq!(coverage.waived_reasons(), expected.waived, "{case}");
        }
    }

    /// What a VM is expected to be exempt from.
    struct Exempts {
        whole_vm: bool,
        held: &'static [&'static str],
        waived: &'static [RetirementReason],
    }

    impl Exempts {
        fn packages(held: &'static [&'static str]) -> Self {
            Exempts {
                whole_vm: false,
                held,
                waived: &[],
            }
        }

        fn reasons(waived: &'static [RetirementReason]) -> Self {
            Exempts {
                whole_vm: false,
                held: &[],
                waived,
            }
        }
    }

    #[test]
    fn an_exception_with_an_invalid_selector_covers_nothing_and_is_reported() {
        let mut broken = exception("broken", 30);
        broken.spec.selector = Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".to_string(),
                operator: "Matches".to_string(),
                values: None,
            }]),
        });
        let exceptions = [broken];
        let coverage = covering(&exceptions, "db-1", &labels(&[("team", "x")]), now());
        assert!(coverage.active.is_empty());
        let reported: Vec<(String, &str)> = coverage
            .invalid
            .iter()
            .map(|(e, error)| (e.name_any(), error.category()))
            .collect();
        assert_eq!(reported, [("broken".to_string(), "InvalidSelector")]);
    }
}
