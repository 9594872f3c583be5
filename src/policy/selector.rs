//! Kubernetes label selectors evaluated over a VM's labels, the way the API server reads
//! them: every `matchLabels` pair and every `matchExpressions` requirement must hold, and an
//! empty selector (`{}`) selects everything.
//!
//! A selector the API server would refuse (an unknown operator, `In` or `NotIn` without
//! values, `Exists` or `DoesNotExist` with values) selects nothing: [`matches()`] fails closed,
//! and [`validate`] says what is wrong so that the reconciler can report it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Why a label selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The operator is not one of the four Kubernetes knows.
    #[error(
        "matchExpressions: operator {operator:?} on key {key:?} is unknown; use In, NotIn, \
         Exists or DoesNotExist"
    )]
    UnknownOperator {
        /// The label key of the requirement.
        key: String,
        /// The operator as written.
        operator: String,
    },
    /// `In` or `NotIn` with no value to compare with.
    #[error("matchExpressions: operator {operator} on key {key:?} needs at least one value")]
    MissingValues {
        /// The label key of the requirement.
        key: String,
        /// `In` or `NotIn`.
        operator: String,
    },
    /// `Exists` or `DoesNotExist` with values, which they do not take.
    #[error("matchExpressions: operator {operator} on key {key:?} takes no values")]
    UnexpectedValues {
        /// The label key of the requirement.
        key: String,
        /// `Exists` or `DoesNotExist`.
        operator: String,
    },
}

impl SelectorError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidSelector"
    }
}

/// One `matchExpressions` entry, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requirement<'s> {
    In(&'s str, &'s [String]),
    NotIn(&'s str, &'s [String]),
    Exists(&'s str),
    DoesNotExist(&'s str),
}

impl<'s> Requirement<'s> {
    fn parse(requirement: &'s LabelSelectorRequirement) -> Result<Self, SelectorError> {
        let key = requirement.key.as_str();
        let values = requirement.values.as_deref().unwrap_or_default();
        let operator = requirement.operator.as_str();
        let parsed = match operator {
            "In" => Requirement::In(key, values),
            "NotIn" => Requirement::NotIn(key, values),
            "Exists" => Requirement::Exists(key),
            "DoesNotExist" => Requirement::DoesNotExist(key),
            _ => {
                return Err(SelectorError::UnknownOperator {
                    key: key.to_string(),
                    operator: operator.to_string(),
                });
            }
        };

        let takes_values = matches!(parsed, Requirement::In(..) | Requirement::NotIn(..));
        let (key, operator) = (key.to_string(), operator.to_string());
        match (takes_values, values.is_empty()) {
            (true, true) => Err(SelectorError::MissingValues { key, operator }),
            (false, false) => Err(SelectorError::UnexpectedValues { key, operator }),
            _ => Ok(parsed),
        }
    }

    fn holds_for(self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// The selector's requirements, or the first reason it cannot be evaluated.
fn requirements(selector: &LabelSelector) -> Result<Vec<Requirement<'_>>, SelectorError> {
    selector
        .match_expressions
        .iter()
        .flatten()
        .map(Requirement::parse)
        .collect()
}

/// Checks that the selector can be evaluated, as the API server would for a built-in kind.
pub fn validate(selector: &LabelSelector) -> Result<(), SelectorError> {
    requirements(selector)?;
    Ok(())
}

/// Whether the selector selects an object with these labels. An invalid selector selects
/// nothing; [`validate`] says why.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let Ok(requirements) = requirements(selector) else {
        return false;
    };
    let pairs_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    pairs_hold && requirements.into_iter().all(|r| r.holds_for(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        pairs: &[(&str, &str)],
        expressions: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!pairs.is_empty()).then(|| labels(pairs)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    }

    #[test]
    fn selectors_select_as_kubernetes_does() {
        let vm = labels(&[("team", "payments"), ("tier", "db")]);
        let cases = [
            ("empty selects everything", selector(&[], vec![]), true),
            (
                "matching pair",
                selector(&[("team", "payments")], vec![]),
                true,
            ),
            (
                "one pair differs",
                selector(&[("team", "payments"), ("tier", "web")], vec![]),
                false,
            ),
            ("missing pair", selector(&[("owner", "ann")], vec![]), false),
            (
                "in",
                selector(&[], vec![expression("tier", "In", &["db", "web"])]),
                true,
            ),
            (
                "in, other value",
                selector(&[], vec![expression("tier", "In", &["web"])]),
                false,
            ),
            (
                "in, label absent",
                selector(&[], vec![expression("zone", "In", &["a"])]),
                false,
            ),
            (
                "notin",
                selector(&[], vec![expression("tier", "NotIn", &["web"])]),
                true,
            ),
            (
                "notin, listed",
                selector(&[], vec![expression("tier", "NotIn", &["db"])]),
                false,
            ),
            (
                "notin, label absent",
                selector(&[], vec![expression("zone", "NotIn", &["a"])]),
                true,
            ),
            (
                "exists",
                selector(&[], vec![expression("team", "Exists", &[])]),
                true,
            ),
            (
                "exists, absent",
                selector(&[], vec![expression("owner", "Exists", &[])]),
                false,
            ),
            (
                "doesnotexist",
                selector(&[], vec![expression("owner", "DoesNotExist", &[])]),
                true,
            ),
            (
                "doesnotexist, present",
                selector(&[], vec![expression("team", "DoesNotExist", &[])]),
                false,
            ),
            (
                "pairs and expressions together",
                selector(
                    &[("team", "payments")],
                    vec![expression("tier", "NotIn", &["db"])],
                ),
                false,
            ),
        ];
        for (case, selector, expected) in cases {
            assert_eq!(matches(&selector, &vm), expected, "{case}");
        }
    }

    #[test]
    fn an_invalid_selector_selects_nothing_and_says_why() {
        let everything = labels(&[("tier", "db")]);
        let cases = [
            (
                expression("tier", "Equals", &["db"]),
                "InvalidSelector",
                "is unknown",
            ),
            (
                expression("tier", "In", &[]),
                "InvalidSelector",
                "needs at least one value",
            ),
            (
                expression("tier", "NotIn", &[]),
                "InvalidSelector",
                "needs at least one value",
            ),
            (
                expression("tier", "Exists", &["db"]),
                "InvalidSelector",
                "takes no values",
            ),
            (
                expression("tier", "DoesNotExist", &["x"]),
                "InvalidSelector",
                "takes no values",
            ),
        ];
        for (requirement, category, says) in cases {
            let selector = selector(&[], vec![requirement]);
            assert!(!matches(&selector, &everything), "{selector:?}");
            let error = validate(&selector).unwrap_err();
            assert_eq!(error.category(), category);
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn a_valid_selector_validates() {
        let selector = selector(&[("a", "b")], vec![expression("c", "Exists", &[])]);
        assert_eq!(validate(&selector), Ok(()));
    }
}
