//! The pinned host keys: an OpenSSH `known_hosts` file, mounted from the VM's Secret.
//!
//! The runner never learns a key: a host key is accepted only when the file lists it for the
//! host being dialled. Plain, wildcard (`*`, `?`), negated (`!`) and hashed (`|1|`) host
//! patterns are understood, as are `[host]:port` entries for ports other than 22.
//! `@revoked` entries refuse a key; `@cert-authority` entries are not supported and ignored.

use std::path::Path;

use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts as Parser, Marker};
use russh::keys::{Algorithm, HashAlg, PublicKey};

/// Errors reading the known_hosts file.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// The file could not be read.
    #[error("cannot read known_hosts file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl KnownHostsError {
    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            KnownHostsError::Read { .. } => "KnownHostsUnreadable",
        }
    }
}

/// What the known_hosts file says about a key a server offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key is listed for this host.
    Trusted,
    /// No key of this type is listed for this host.
    Unknown,
    /// A different key of the same type is listed for this host.
    Changed,
    /// The key is listed as `@revoked`.
    Revoked,
}

/// The parsed known_hosts file.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads the file. Lines that do not parse are skipped with a warning, like OpenSSH does.
    pub fn load(path: &Path) -> Result<Self, KnownHostsError> {
        let text = std::fs::read_to_string(path).map_err(|source| KnownHostsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses known_hosts text.
    pub fn parse(text: &str) -> Self {
        let entries = Parser::new(text)
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                Ok(entry) => Some(entry),
                Err(error) => {
                    tracing::warn!(entry = index + 1, error = %error, "skipping known_hosts entry");
                    None
                }
            })
            .collect();
        KnownHosts { entries }
    }

    /// Judges the key that `host` offered on `port`.
    pub fn verdict(&self, host: &str, port: u16, offered: &PublicKey) -> Verdict {
        let name = lookup_name(host, port);
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| host_matches(entry.host_patterns(), &name))
            .collect();
        let same_key = |entry: &&&Entry| entry.public_key().key_data() == offered.key_data();

        if matching
            .iter()
            .filter(|e| e.marker() == Some(&Marker::Revoked))
            .any(|e| same_key(&e))
        {
            return Verdict::Revoked;
        }
        let pinned: Vec<&&Entry> = matching.iter().filter(|e| e.marker().is_none()).collect();
        if pinned.iter().any(same_key) {
            Verdict::Trusted
        } else if pinned
            .iter()
            .any(|e| e.public_key().algorithm() == offered.algorithm())
        {
            Verdict::Changed
        } else {
            Verdict::Unknown
        }
    }

    /// The key types pinned for the host, so that the server is asked for one of those.
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for entry in &self.entries {
            let algorithm = entry.public_key().algorithm();
            if entry.marker().is_none()
                && host_matches(entry.host_patterns(), &name)
                && !algorithms.contains(&algorithm)
            {
                algorithms.push(algorithm);
            }
        }
        algorithms
    }
}

/// The SHA-256 fingerprint of a key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name OpenSSH looks a host up by: bare on port 22, `[host]:port` otherwise.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn host_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
            ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for pattern in patterns {
                if let Some(negated) = pattern.strip_prefix('!') {
                    if glob_matches(negated, name) {
                        return false;
                    }
                } else if glob_matches(pattern, name) {
                    matched = true;
                }
            }
            matched
        }
    }
}

/// Matches OpenSSH host patterns: `*` is any run of characters, `?` any one character.
/// Host names compare without regard to case.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            last_star = Some((p, n));
            p += 1;
        } else if let Some((star, star_n)) = last_star {
            p = star + 1;
            n = star_n + 1;
            last_star = Some((star, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKjZN60i2BXM9OgwS4IuRVh44kiTiZWGqcFo/MisqUQf";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFnLDlssrobbIMdzRI9mJS60tBxDrO5ARreaXmrzWx+4";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    #[test]
    fn a_listed_key_is_trusted() {
        let known = KnownHosts::parse(&format!("vm1.example {KEY_A}\n"));
        assert_eq!(
            known.verdict("vm1.example", 22, &key(KEY_A)),
            Verdict::Trusted
        );
    }

    #[test]
    fn another_key_of_the_same_type_is_a_changed_key() {
        let known = KnownHosts::parse(&format!("vm1.example {KEY_A}\n"));
        assert_eq!(
            known.verdict("vm1.example", 22, &key(KEY_B)),
            Verdict::Changed
        );
    }

    #[test]
    fn a_host_without_entries_is_unknown() {
        let known = KnownHosts::parse(&format!("vm1.example {KEY_A}\n"));
        assert_eq!(
            known.verdict("vm2.example", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_port_other_than_22_needs_a_bracketed_entry() {
        let known = KnownHosts::parse(&format!("[10.0.0.5]:2222 {KEY_A}\n10.0.0.5 {KEY_B}\n"));
        assert_eq!(
            known.verdict("10.0.0.5", 2222, &key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            known.verdict("10.0.0.5", 2222, &key(KEY_B)),
            Verdict::Changed
        );
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_also_listed() {
        let known = KnownHosts::parse(&format!("@revoked * {KEY_A}\nvm1 {KEY_A}\n"));
        assert_eq!(known.verdict("vm1", 22, &key(KEY_A)), Verdict::Revoked);
    }

    #[test]
    fn wildcards_and_negations_follow_openssh() {
        let known = KnownHosts::parse(&format!("*.prod.example,!db?.prod.example {KEY_A}\n"));
        assert_eq!(
            known.verdict("web1.prod.example", 22, &key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            known.verdict("db1.prod.example", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_host_names_are_matched() {
        // The `ssh-keygen -H` form of "vm1.example": HMAC-SHA1 of the name keyed by a salt.
        let salt = b"0123456789abcdefghij";
        let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&hmac_key, b"vm1.example");
        let hashed = HostPatterns::HashedName {
            salt: salt.to_vec(),
            hash: tag.as_ref().try_into().unwrap(),
        };
        let known = KnownHosts::parse(&format!("{} {KEY_A}\n", hashed.to_string()));
        assert_eq!(
            known.verdict("vm1.example", 22, &key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            known.verdict("vm2.example", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn comments_and_broken_lines_are_skipped() {
        let known = KnownHosts::parse(&format!("# pinned\nnot a key line\nvm1 {KEY_A}\n"));
        assert_eq!(known.verdict("vm1", 22, &key(KEY_A)), Verdict::Trusted);
    }

    #[test]
    fn pinned_algorithms_are_listed_once_per_type() {
        let known = KnownHosts::parse(&format!("vm1 {KEY_A}\nvm1 {KEY_B}\n"));
        assert_eq!(known.algorithms_for("vm1", 22), vec![Algorithm::Ed25519]);
    }
}
