//! Types shared by every patchkeeper kind: references, durations, counts and conditions.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The API group of every patchkeeper kind.
pub const GROUP: &str = "patchkeeper.io";

/// kstatus condition: the object's desired state is achieved.
pub const READY: &str = "Ready";
/// kstatus condition: the operator is working towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// kstatus condition: the operator cannot make progress without a change from a person.
pub const STALLED: &str = "Stalled";

/// The conditions of an object, one per type. Declared as a map list so that server-side
/// apply merges them by `type`.
pub type Conditions = Vec<Condition>;

/// A reference to another object in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalRef {
    /// Name of the object, in the same namespace as the object that refers to it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A span of time written as Kubernetes writes durations: a sequence of numbers with units
/// `h`, `m`, `s` or `ms`, such as `30m`, `4h` or `1h30m`. Days are written in hours (`168h`
/// is a week), so that CEL rules in the API server can compare durations.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Duration(pub String);

impl Duration {
    pub fn new(text: &str) -> Self {
        Self(text.to_string())
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The CEL expression that accepts a positive Kubernetes duration string.
pub(crate) const POSITIVE_DURATION_RULE: &str =
    "self.matches('^([0-9]+(\\\\.[0-9]+)?(h|m|s|ms))+$') && duration(self) > duration('0s')";

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": POSITIVE_DURATION_RULE,
                "message": "must be a positive duration such as 45s, 30m, 4h or 1h30m \
                            (units h, m, s, ms; write days as hours, e.g. 168h)"
            }]
        })
    }
}

/// A number of VMs, or a percentage of the VMs concerned (`"10%"`).
///
/// A percentage is rounded down, but never below one VM.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CountOrPercent {
    /// An absolute number of VMs, at least 1.
    Count(i32),
    /// A percentage from `1%` to `100%`.
    Percent(String),
}

impl CountOrPercent {
    /// The number of VMs this stands for, out of `total`; never below one.
    ///
    /// Malformed text (which the API server refuses) counts as one VM: the cautious reading.
    pub fn of(&self, total: usize) -> usize {
        match self {
            Self::Count(count) => usize::try_from(*count).unwrap_or(1).max(1),
            Self::Percent(text) => {
                let percent: usize = text
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (total * percent.min(100) / 100).max(1)
            }
        }
    }
}

impl JsonSchema for CountOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "CountOrPercent".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // maxLength applies to the string form only, and bounds the rule's CEL cost.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 4,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int ? self >= 1 : \
                         self.matches('^(100|[1-9][0-9]?)%$')",
                "message": "must be a count of at least 1, or a percentage from 1% to 100%"
            }]
        })
    }
}

/// A package name pattern: letters, digits, `.`, `+`, `-`, `_`, and `*` matching any run
/// of characters (`linux-image-*`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct PackagePattern(pub String);

impl PackagePattern {
    pub fn new(text: &str) -> Self {
        Self(text.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for PackagePattern {
    fn schema_name() -> Cow<'static, str> {
        "PackagePattern".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[A-Za-z0-9.+_*-]+$')",
                "message": "must be a package name pattern: letters, digits, '.', '+', '-', '_' \
                            and '*' for any run of characters"
            }]
        })
    }
}

/// The kstatus conditions schema: a list keyed by `type`.
pub(crate) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema.insert("maxItems".into(), 16.into());
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_rounds_down_but_never_below_one_vm() {
        let ten_percent = CountOrPercent::Percent("10%".into());
        assert_eq!(ten_percent.of(95), 9);
        assert_eq!(ten_percent.of(5), 1);
        assert_eq!(CountOrPercent::Percent("100%".into()).of(7), 7);
    }

    #[test]
    fn a_count_is_taken_as_it_is() {
        assert_eq!(CountOrPercent::Count(3).of(100), 3);
        assert_eq!(CountOrPercent::Count(3).of(1), 3);
    }

    #[test]
    fn counts_and_percentages_read_from_yaml() {
        let parsed: Vec<CountOrPercent> = serde_json::from_str(r#"[2, "25%"]"#).unwrap();
        assert_eq!(
            parsed,
            [
                CountOrPercent::Count(2),
                CountOrPercent::Percent("25%".into())
            ]
        );
    }
}
