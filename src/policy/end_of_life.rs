//! When operating system releases stop being supported: a table shipped with patchkeeper,
//! which a baseline's `endOfLifeOverrides` correct or extend.
//!
//! # The shipped table
//!
//! Compiled on 2026-12-03 from the vendors' own lifecycle pages: the Debian LTS wiki, the
//! Ubuntu release cycle page, the Red Hat Enterprise Linux life cycle, the CentOS, Rocky
//! Linux and AlmaLinux release pages, Oracle's Linux support policies, SUSE's product
//! lifecycle and the openSUSE Lifetime page. It must be refreshed as releases come and
//! vendors move dates: a release missing from it is unknown, and an unknown release is never
//! a reason to retire a VM, so a stale table retires too few VMs, never too many.
//!
//! Each date is the last day of the support that comes with the release at no extra
//! charge: Debian's LTS, Ubuntu's standard support (not ESM), RHEL's maintenance support
//! (not Extended Life Cycle Support), Oracle's premier support, SUSE's general support (not
//! LTSS). Where a vendor gives only a month, the table uses its last day; where a date is an
//! estimate or sources disagree, the later date, so that a VM is never retired while its
//! vendor still supports it. Dates marked `estimate` below are the vendor's announced plans.
//!
//! # Lookup
//!
//! By `/etc/os-release` `ID` and `VERSION_ID`. Distributions supported per major release
//! (Debian, RHEL and its rebuilds `centos`, `rocky`, `almalinux` and `ol`) are looked up by
//! the major version: `rhel` `9.4` is RHEL 9. Ubuntu, SLES and openSUSE Leap are supported
//! per release and looked up by major and minor: `ubuntu` `22.04`, `sles` `15.5` (15 SP5).
//! An override names a release the same way, or exactly as the VM reports it (`rhel` `9.4`,
//! for a minor release with its own date); the exact override wins, then the override by
//! release, then the shipped table.
//!
//! Support ends at the end of the last day, in UTC: a release is past its end of life from
//! midnight UTC after it.

use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;

use crate::api::baseline::EndOfLifeOverride;

/// The day the shipped table was compiled; dates after it may have moved since.
pub const COMPILED_ON: Date = date(2026, 12, 3);

/// Why a baseline's end-of-life overrides cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndOfLifeError {
    /// An override's date is not a day of the calendar (such as `2026-02-30`).
    #[error(
        "retirement.endOfLifeOverrides: {date:?} for {distribution} {version} is not a day of \
         the calendar; write it as YYYY-MM-DD"
    )]
    InvalidDate {
        /// The override's distribution.
        distribution: String,
        /// The override's version.
        version: String,
        /// The date as written.
        date: String,
        /// What the date parser said.
        #[source]
        source: jiff::Error,
    },
}

impl EndOfLifeError {
    /// A short, stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        "InvalidBaseline"
    }
}

/// Where an end-of-life date comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The table shipped with patchkeeper.
    Shipped,
    /// The baseline's `endOfLifeOverrides`.
    Override,
}

/// The end of support of one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOfLife {
    /// The release as looked up, e.g. `rhel 9` or `ubuntu 22.04`.
    pub release: String,
    /// The last day of support.
    pub last_day: Date,
    /// Where the date comes from.
    pub source: Source,
}

impl EndOfLife {
    /// The first instant without support: midnight UTC after the last day. `None` when
    /// that is past the end of time.
    pub fn ends_at(&self) -> Option<Timestamp> {
        let day_after = self.last_day.tomorrow().ok()?;
        Some(day_after.to_zoned(TimeZone::UTC).ok()?.timestamp())
    }

    /// Whether the release is past its end of life at `now`.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.ends_at().is_some_and(|end| now >= end)
    }
}

/// One row of the shipped table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    distribution: &'static str,
    release: &'static str,
    last_day: Date,
}

const fn row(distribution: &'static str, release: &'static str, last_day: Date) -> Row {
    Row {
        distribution,
        release,
        last_day,
    }
}

/// The shipped table, compiled on [`COMPILED_ON`].
#[rustfmt::skip]
const SHIPPED: &[Row] = &[
    // Debian: end of LTS.
    row("debian", "9", date(2022, 6, 30)),
    row("debian", "10", date(2024, 6, 30)),
    row("debian", "11", date(2026, 8, 31)),
    row("debian", "12", date(2028, 6, 30)),
    row("debian", "13", date(2030, 6, 30)), // estimate
    // Ubuntu: end of standard support; interim releases get nine months.
    row("ubuntu", "16.04", date(2021, 4, 30)),
    row("ubuntu", "16.10", date(2017, 7, 20)),
    row("ubuntu", "17.04", date(2018, 1, 13)),
    row("ubuntu", "17.10", date(2018, 7, 19)),
    row("ubuntu", "18.04", date(2023, 5, 31)),
    row("ubuntu", "18.10", date(2019, 7, 18)),
    row("ubuntu", "19.04", date(2020, 1, 23)),
    row("ubuntu", "19.10", date(2020, 7, 17)),
    row("ubuntu", "20.04", date(2025, 5, 31)),
    row("ubuntu", "20.10", date(2021, 7, 22)),
    row("ubuntu", "21.04", date(2022, 1, 20)),
    row("ubuntu", "21.10", date(2022, 7, 14)),
    row("ubuntu", "22.04", date(2027, 5, 31)),
    row("ubuntu", "22.10", date(2023, 7, 20)),
    row("ubuntu", "23.04", date(2024, 1, 25)),
    row("ubuntu", "23.10", date(2024, 7, 11)),
    // The vendor announces LTS ends by month (April); 18.04 and 20.04 ran to the end of May.
    row("ubuntu", "24.04", date(2029, 5, 31)), // estimate
    row("ubuntu", "24.10", date(2025, 7, 10)),
    row("ubuntu", "25.04", date(2026, 1, 31)),
    row("ubuntu", "25.10", date(2026, 7, 31)),
    row("ubuntu", "26.04", date(2031, 5, 31)), // estimate
    // Red Hat Enterprise Linux: end of maintenance support.
    row("rhel", "7", date(2024, 6, 30)),
    row("rhel", "8", date(2029, 5, 31)),
    row("rhel", "9", date(2032, 5, 31)),
    row("rhel", "10", date(2035, 5, 31)),
    // CentOS: 7 is CentOS Linux; 8 was both CentOS Linux (ended 2021-12-31) and CentOS
    // Stream, which share the ID, so the later Stream date; 9 and 10 are CentOS Stream,
    // which ends with RHEL's full support phase, long before RHEL's maintenance support.
    row("centos", "7", date(2024, 6, 30)),
    row("centos", "8", date(2024, 5, 31)),
    row("centos", "9", date(2027, 5, 31)),
    row("centos", "10", date(2030, 1, 1)), // estimate
    // Rocky Linux: end of security support.
    row("rocky", "8", date(2029, 5, 31)),
    row("rocky", "9", date(2032, 5, 31)),
    row("rocky", "10", date(2035, 5, 31)),
    // AlmaLinux: end of security support.
    row("almalinux", "8", date(2029, 3, 1)),
    row("almalinux", "9", date(2032, 5, 31)),
    row("almalinux", "10", date(2035, 5, 31)),
    // Oracle Linux: end of premier support.
    row("ol", "7", date(2024, 12, 31)),
    row("ol", "8", date(2029, 7, 31)),
    row("ol", "9", date(2032, 6, 30)),
    row("ol", "10", date(2035, 6, 30)), // estimate
    // SUSE Linux Enterprise Server: end of general support of each service pack.
    row("sles", "12", date(2016, 6, 30)),
    row("sles", "12.1", date(2017, 5, 31)),
    row("sles", "12.2", date(2018, 3, 31)),
    row("sles", "12.3", date(2019, 6, 30)),
    row("sles", "12.4", date(2020, 6, 30)),
    row("sles", "12.5", date(2024, 10, 31)),
    row("sles", "15", date(2019, 12, 31)),
    row("sles", "15.1", date(2021, 1, 31)),
    row("sles", "15.2", date(2021, 12, 31)),
    row("sles", "15.3", date(2022, 12, 31)),
    row("sles", "15.4", date(2023, 12, 31)),
    row("sles", "15.5", date(2024, 12, 31)),
    row("sles", "15.6", date(2025, 12, 31)),
    row("sles", "15.7", date(2031, 7, 31)),
    // openSUSE Leap: end of maintenance.
    row("opensuse-leap", "15.0", date(2019, 12, 3)),
    row("opensuse-leap", "15.1", date(2021, 2, 2)),
    row("opensuse-leap", "15.2", date(2022, 1, 4)),
    row("opensuse-leap", "15.3", date(2022, 12, 31)),
    row("opensuse-leap", "15.4", date(2023, 12, 31)),
    row("opensuse-leap", "15.5", date(2024, 12, 31)),
    row("opensuse-leap", "15.6", date(2026, 4, 30)),
];

/// A baseline's correction of, or addition to, the shipped table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Override {
    distribution: String,
    version: String,
    last_day: Date,
}

/// The shipped table with a baseline's overrides on top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndOfLifeTable {
    overrides: Vec<Override>,
}

impl EndOfLifeTable {
    /// The shipped table alone.
    pub fn shipped() -> Self {
        Self::default()
    }

    /// The shipped table with these overrides, whose dates must all be real days.
    pub fn with_overrides(overrides: &[EndOfLifeOverride]) -> Result<Self, EndOfLifeError> {
        let overrides = overrides
            .iter()
            .map(|o| {
                let last_day =
                    o.date
                        .parse::<Date>()
                        .map_err(|source| EndOfLifeError::InvalidDate {
                            distribution: o.distribution.clone(),
                            version: o.version.clone(),
                            date: o.date.clone(),
                            source,
                        })?;
                Ok(Override {
                    distribution: o.distribution.trim().to_lowercase(),
                    version: o.version.trim().to_string(),
                    last_day,
                })
            })
            .collect::<Result<_, EndOfLifeError>>()?;
        Ok(EndOfLifeTable { overrides })
    }

    /// The end of life of the release with this `ID` and `VERSION_ID`; `None` when the
    /// release is unknown, which never counts against a VM.
    pub fn lookup(&self, distribution: &str, version_id: &str) -> Option<EndOfLife> {
        let distribution = distribution.trim().to_lowercase();
        let version_id = version_id.trim();
        if distribution.is_empty() || version_id.is_empty() {
            return None;
        }
        let release = release_of(&distribution, version_id);

        let (version, last_day, source) = self
            .overridden(&distribution, version_id)
            .map(|day| (version_id, day, Source::Override))
            .or_else(|| {
                let day = self.overridden(&distribution, release)?;
                Some((release, day, Source::Override))
            })
            .or_else(|| Some((release, shipped(&distribution, release)?, Source::Shipped)))?;
        Some(EndOfLife {
            release: format!("{distribution} {version}"),
            last_day,
            source,
        })
    }

    fn overridden(&self, distribution: &str, version: &str) -> Option<Date> {
        self.overrides
            .iter()
            .find(|o| o.distribution == distribution && o.version == version)
            .map(|o| o.last_day)
    }
}

fn shipped(distribution: &str, release: &str) -> Option<Date> {
    SHIPPED
        .iter()
        .find(|row| row.distribution == distribution && row.release == release)
        .map(|row| row.last_day)
}

/// The release a `VERSION_ID` belongs to, as the table names it: the major version where
/// support is per major release, major and minor where it is per release, and the
/// `VERSION_ID` as it is for distributions the table does not know.
fn release_of<'v>(distribution: &str, version_id: &'v str) -> &'v str {
    let components = match distribution {
        "debian" | "rhel" | "centos" | "rocky" | "almalinux" | "ol" => 1,
        "ubuntu" | "sles" | "opensuse-leap" => 2,
        _ => return version_id,
    };
    match version_id.match_indices('.').nth(components - 1) {
        Some((dot, _)) => &version_id[..dot],
        None => version_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn end(distribution: &str, version_id: &str) -> Option<(String, Date)> {
        let found = EndOfLifeTable::shipped().lookup(distribution, version_id)?;
        Some((found.release, found.last_day))
    }

    fn overriding(entries: &[(&str, &str, &str)]) -> Vec<EndOfLifeOverride> {
        entries
            .iter()
            .map(|(distribution, version, date)| EndOfLifeOverride {
                distribution: distribution.to_string(),
                version: version.to_string(),
                date: date.to_string(),
            })
            .collect()
    }

    #[test]
    fn releases_are_found_by_os_release_id_and_version_id() {
        let cases = [
            ("debian", "12", Some(("debian 12", date(2028, 6, 30)))),
            ("debian", "10", Some(("debian 10", date(2024, 6, 30)))),
            ("ubuntu", "22.04", Some(("ubuntu 22.04", date(2027, 5, 31)))),
            ("ubuntu", "23.10", Some(("ubuntu 23.10", date(2024, 7, 11)))),
            ("ubuntu", "26.04", Some(("ubuntu 26.04", date(2031, 5, 31)))),
            ("rhel", "9.4", Some(("rhel 9", date(2032, 5, 31)))),
            ("rhel", "10.0", Some(("rhel 10", date(2035, 5, 31)))),
            ("rocky", "8.10", Some(("rocky 8", date(2029, 5, 31)))),
            ("almalinux", "9.5", Some(("almalinux 9", date(2032, 5, 31)))),
            ("ol", "7.9", Some(("ol 7", date(2024, 12, 31)))),
            ("centos", "9", Some(("centos 9", date(2027, 5, 31)))),
            ("sles", "15.5", Some(("sles 15.5", date(2024, 12, 31)))),
            ("sles", "15", Some(("sles 15", date(2019, 12, 31)))),
            ("sles", "12.5", Some(("sles 12.5", date(2024, 10, 31)))),
            (
                "opensuse-leap",
                "15.6",
                Some(("opensuse-leap 15.6", date(2026, 4, 30))),
            ),
            ("Debian", " 12 ", Some(("debian 12", date(2028, 6, 30)))),
            ("ubuntu", "12.04", None),
            ("debian", "", None),
            ("", "12", None),
            ("arch", "", None),
            ("fedora", "41", None),
            ("gentoo", "2.17", None),
        ];
        for (distribution, version_id, expected) in cases {
            let expected = expected.map(|(release, day)| (release.to_string(), day));
            assert_eq!(
                end(distribution, version_id),
                expected,
                "{distribution} {version_id}"
            );
        }
    }

    #[test]
    fn support_ends_at_midnight_utc_after_the_last_day() {
        let debian_10 = EndOfLifeTable::shipped().lookup("debian", "10").unwrap();
        assert_eq!(debian_10.ends_at(), Some(at("2024-07-01T00:00:00Z")));
        assert!(!debian_10.has_ended(at("2024-06-30T23:59:59Z")));
        assert!(debian_10.has_ended(at("2024-07-01T00:00:00Z")));
    }

    #[test]
    fn overrides_take_precedence_exact_version_first() {
        let table = EndOfLifeTable::with_overrides(&overriding(&[
            ("rhel", "9", "2030-01-31"),
            ("rhel", "9.2", "2025-05-31"),
            ("Fedora", "41", "2025-12-15"),
        ]))
        .unwrap();
        let cases = [
            ("rhel", "9.4", "rhel 9", date(2030, 1, 31), Source::Override),
            (
                "rhel",
                "9.2",
                "rhel 9.2",
                date(2025, 5, 31),
                Source::Override,
            ),
            (
                "fedora",
                "41",
                "fedora 41",
                date(2025, 12, 15),
                Source::Override,
            ),
            ("rhel", "8.10", "rhel 8", date(2029, 5, 31), Source::Shipped),
        ];
        for (distribution, version_id, release, last_day, source) in cases {
            let expected = EndOfLife {
                release: release.to_string(),
                last_day,
                source,
            };
            let found = table.lookup(distribution, version_id);
            assert_eq!(found, Some(expected), "{distribution} {version_id}");
        }
    }

    #[test]
    fn an_override_that_is_not_a_real_day_is_refused() {
        let error = EndOfLifeTable::with_overrides(&overriding(&[("debian", "12", "2028-02-30")]))
            .unwrap_err();
        assert_eq!(error.category(), "InvalidBaseline");
        let message = error.to_string();
        assert!(
            message.starts_with("retirement.endOfLifeOverrides: "),
            "{message}"
        );
        assert!(message.contains("debian 12"), "{message}");
    }

    #[test]
    fn the_shipped_table_names_each_release_once() {
        for (i, row) in SHIPPED.iter().enumerate() {
            let twin = SHIPPED[i + 1..].iter().find(|other| {
                other.distribution == row.distribution && other.release == row.release
            });
            assert_eq!(
                twin, None,
                "{} {} is listed twice",
                row.distribution, row.release
            );
        }
    }

    #[test]
    fn the_shipped_table_covers_the_major_distributions() {
        let expected = [
            ("debian", &["9", "10", "11", "12", "13"][..]),
            ("rhel", &["7", "8", "9", "10"]),
            ("centos", &["7", "8", "9", "10"]),
            ("rocky", &["8", "9", "10"]),
            ("almalinux", &["8", "9", "10"]),
            ("ol", &["7", "8", "9", "10"]),
            (
                "opensuse-leap",
                &["15.0", "15.1", "15.2", "15.3", "15.4", "15.5", "15.6"],
            ),
        ];
        for (distribution, releases) in expected {
            for release in releases {
                assert!(
                    shipped(distribution, release).is_some(),
                    "{distribution} {release}"
                );
            }
        }
        for year in 16..=26 {
            for month in ["04", "10"] {
                let release = format!("{year}.{month}");
                if release != "26.10" {
                    assert!(shipped("ubuntu", &release).is_some(), "ubuntu {release}");
                }
            }
        }
    }
}
