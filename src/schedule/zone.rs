//! Time zones named the IANA way (`Europe/Berlin`, `America/New_York`, `UTC`).
//!
//! Names are looked up in the time zone database bundled into the binary, never in the
//! host's `/usr/share/zoneinfo`, so that a window behaves the same on every node and in a
//! container image without time zone data. The lookup ignores ASCII case
//! (`america/new_york` is `America/New_York`), as jiff's lookup does.
//!
//! Whatever the database names is accepted, and nothing else. This includes the few
//! legacy names that look like abbreviations because the database still carries them as
//! zones or links: `EST`, `MST`, `HST`, `CET`, `EET`, `MET`, `WET` and the `EST5EDT` family.
//! They are accepted, with the rules the database gives them (`CET` follows central European
//! summer time, `EST` never does). Abbreviations the database does not name, such as `PST`
//! or `CEST`, are refused. Prefer a city name: it says which rules apply.

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// Why a time zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// No name was given.
    #[error("time zone is empty; write an IANA name such as Europe/Berlin or UTC")]
    Empty,
    /// The bundled database has no zone with that name.
    #[error("unknown time zone {name:?}; write an IANA name such as Europe/Berlin or UTC")]
    Unknown {
        /// The name as written.
        name: String,
    },
}

impl ZoneError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            ZoneError::Empty => "InvalidTimeZone",
            ZoneError::Unknown { .. } => "UnknownTimeZone",
        }
    }
}

/// Looks up an IANA time zone name in the bundled database.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, ZoneError> {
    if name.is_empty() {
        return Err(ZoneError::Empty);
    }
    TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| ZoneError::Unknown {
            name: name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_are_found_in_the_bundled_database() {
        for name in [
            "UTC",
            "Etc/UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Sydney",
        ] {
            assert!(parse_time_zone(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn utc_names_give_a_zone_without_transitions() {
        for name in ["UTC", "Etc/UTC", "utc"] {
            let Ok(zone) = parse_time_zone(name) else {
                panic!("{name} was refused")
            };
            assert!(
                zone.following(jiff::Timestamp::UNIX_EPOCH).next().is_none(),
                "{name}"
            );
        }
    }

    #[test]
    fn names_are_matched_without_regard_to_case() {
        let Ok(zone) = parse_time_zone("america/new_york") else {
            panic!("refused")
        };
        assert_eq!(zone.iana_name(), Some("America/New_York"));
    }

    #[test]
    fn legacy_abbreviation_names_in_the_database_are_accepted() {
        for name in ["EST", "CET", "EST5EDT"] {
            assert!(parse_time_zone(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_name_in_the_message() {
        for name in [
            "America/Neww_York",
            "PST",
            "CEST",
            "Local",
            " UTC",
            "+02:00",
        ] {
            let Err(error) = parse_time_zone(name) else {
                panic!("{name:?} was accepted")
            };
            assert!(error.to_string().contains(&format!("{name:?}")), "{error}");
            assert_eq!(error.category(), "UnknownTimeZone");
        }
    }

    #[test]
    fn an_empty_name_is_refused() {
        assert_eq!(parse_time_zone(""), Err(ZoneError::Empty));
    }
}
