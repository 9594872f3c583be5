//! The guest's identity from `/etc/os-release`, and the package manager that goes with it.

use crate::summary::{OsInfo, PackageManager};

/// The command that prints the os-release file (`/usr/lib/os-release` is the fallback the
/// os-release specification names).
pub const READ_COMMAND: &str = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release";

/// The fields of os-release the runner uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, `VERSION_ID` and `PRETTY_NAME`.
    pub info: OsInfo,
    /// `ID_LIKE`, split on spaces.
    pub id_like: Vec<String>,
}

impl OsRelease {
    /// Parses os-release text: `KEY=value` lines, values optionally quoted.
    pub fn parse(text: &str) -> Self {
        let mut release = OsRelease::default();
        for line in text.lines() {
            let Some((key, raw)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(raw.trim());
            match key.trim() {
                "ID" => release.info.id = value,
                "VERSION_ID" => release.info.version_id = value,
                "PRETTY_NAME" => release.info.pretty_name = value,
                "ID_LIKE" => release.id_like = value.split_whitespace().map(String::from).collect(),
                _ => {}
            }
        }
        release
    }

    /// The package manager for this family, if the runner drives one.
    pub fn package_manager(&self) -> Option<PackageManager> {
        let family =
            std::iter::once(self.info.id.as_str()).chain(self.id_like.iter().map(String::as_str));
        for id in family {
            match id {
                "debian" | "ubuntu" => return Some(PackageManager::Apt),
                "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" => {
                    return Some(PackageManager::Dnf);
                }
                _ => {}
            }
        }
        None
    }
}

/// Removes shell-style quotes and backslash escapes, as the os-release format allows.
fn unquote(raw: &str) -> String {
    let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
    let inner = match quote {
        Some(q) => raw
            .strip_prefix(q)
            .and_then(|r| r.strip_suffix(q))
            .unwrap_or(raw),
        None => raw,
    };
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && quote != Some('\'') {
            value.extend(chars.next());
        } else {
            value.push(c);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"#;

    const ROCKY: &str = r#"NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
"#;

    #[test]
    fn debian_is_read_and_uses_apt() {
        let release = OsRelease::parse(DEBIAN);
        assert_eq!(release.info.id, "debian");
        assert_eq!(release.info.version_id, "12");
        assert_eq!(release.info.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(release.package_manager(), Some(PackageManager::Apt));
    }

    #[test]
    fn a_rhel_rebuild_is_recognised_by_id_like_and_uses_dnf() {
        let release = OsRelease::parse(ROCKY);
        assert_eq!(release.info.version_id, "9.4");
        assert_eq!(release.package_manager(), Some(PackageManager::Dnf));
    }

    #[test]
    fn ubuntu_derivatives_use_apt_through_id_like() {
        let release = OsRelease::parse("ID=pop\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(release.package_manager(), Some(PackageManager::Apt));
    }

    #[test]
    fn an_unknown_family_has_no_package_manager() {
        assert_eq!(OsRelease::parse("ID=alpine\n").package_manager(), None);
    }

    #[test]
    fn escaped_quotes_are_unescaped() {
        let release = OsRelease::parse(r#"PRETTY_NAME="A \"quoted\" name""#);
        assert_eq!(release.info.pretty_name, r#"A "quoted" name"#);
    }
}
