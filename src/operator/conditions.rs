//! kstatus conditions: `Ready`, `Reconciling` and `Stalled`, written so that a condition
//! keeps its `lastTransitionTime` until its status really changes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::common::{READY, RECONCILING, STALLED};

/// Where an object stands, as kstatus reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The desired state is reached.
    Ready { reason: String, message: String },
    /// The operator is working on it.
    Reconciling { reason: String, message: String },
    /// The operator cannot go on without a change from a person.
    Stalled { reason: String, message: String },
}

impl Standing {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn reconciling(reason: &str, message: impl Into<String>) -> Self {
        Self::Reconciling {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The three kstatus conditions for this standing, merged into `previous` so that
    /// unchanged conditions keep their transition time. Other condition types in
    /// `previous` are kept as they are.
    pub fn conditions(
        &self,
        previous: &[Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Vec<Condition> {
        let (reason, message) = match self {
            Self::Ready { reason, message }
            | Self::Reconciling { reason, message }
            | Self::Stalled { reason, message } => (reason.as_str(), message.as_str()),
        };
        let states = [
            (READY, matches!(self, Self::Ready { .. })),
            (RECONCILING, matches!(self, Self::Reconciling { .. })),
            (STALLED, matches!(self, Self::Stalled { .. })),
        ];
        let mut conditions: Vec<Condition> = previous
            .iter()
            .filter(|c| !states.iter().any(|(t, _)| *t == c.type_))
            .cloned()
            .collect();
        for (type_, on) in states {
            let desired = condition(type_, on, reason, message, generation, now);
            conditions.push(keep_transition_time(desired, previous));
        }
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        conditions
    }
}

/// A condition with the given state; `reason` and `message` describe the standing.
pub fn condition(
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Sets one condition in a list, keeping its transition time if its status is unchanged.
pub fn set_condition(conditions: &mut Vec<Condition>, desired: Condition) {
    let desired = keep_transition_time(desired, conditions);
    conditions.retain(|c| c.type_ != desired.type_);
    conditions.push(desired);
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Removes a condition type from a list.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

fn keep_transition_time(mut desired: Condition, previous: &[Condition]) -> Condition {
    if let Some(old) = previous.iter().find(|c| c.type_ == desired.type_)
        && old.status == desired.status
    {
        desired.last_transition_time = old.last_transition_time.clone();
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_stalled_object_is_neither_ready_nor_reconciling() {
        let standing = Standing::stalled("InvalidSchedule", "hour: 25 is out of range 0-23");
        let conditions = standing.conditions(&[], Some(3), at("2026-12-03T10:00:00Z"));
        let status: Vec<_> = conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            status,
            [
                ("Ready", "False"),
                ("Reconciling", "False"),
                ("Stalled", "True")
            ]
        );
        assert!(
            conditions
                .iter()
                .all(|c| c.reason == "InvalidSchedule" && c.observed_generation == Some(3))
        );
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let first = Standing::ready("Idle", "next start 2026-12-08").conditions(
            &[],
            None,
            at("2026-12-03T10:00:00Z"),
        );
        let again = Standing::ready("Idle", "next start 2026-12-09").conditions(
            &first,
            None,
            at("2026-12-04T10:00:00Z"),
        );
        let ready = again.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Time(at("2026-12-03T10:00:00Z")));
        assert_eq!(ready.message, "next start 2026-12-09");
    }

    #[test]
    fn other_condition_types_are_kept() {
        let mut previous = Vec::new();
        set_condition(
            &mut previous,
            condition(
                "Retire",
                true,
                "EndOfLife",
                "",
                None,
                at("2026-12-01T00:00:00Z"),
            ),
        );
        let conditions =
            Standing::ready("Idle", "").conditions(&previous, None, at("2026-12-03T10:00:00Z"));
        assert!(conditions.iter().any(|c| c.type_ == "Retire"));
    }
}
