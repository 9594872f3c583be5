//! Commands in the guest: run as root (through `sudo -n` when the login user is not root),
//! in the C locale, with each command's label recorded so that a timeout can say what it
//! was waiting for.

use std::sync::{Arc, Mutex};

use super::ssh::{CommandOutput, SshError, SshSession};

/// Most lines of a failed command's error output carried into the summary.
const MAX_ERROR_LINES: usize = 12;

/// Errors from commands in the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The SSH session failed while a command ran.
    #[error(transparent)]
    Ssh(#[from] SshError),

    /// A command exited unsuccessfully; `detail` holds its own error lines.
    #[error("`{label}` exited with {status}: {detail}")]
    CommandFailed {
        /// Short name of the command, e.g. `apt-get update`.
        label: String,
        /// Exit status, or `signal` when it had none.
        status: String,
        /// The command's error lines.
        detail: String,
    },

    /// The package manager's answer could not be understood.
    #[error("cannot understand the output of `{label}`: {detail}")]
    Unreadable {
        /// Short name of the command.
        label: String,
        /// What was wrong with it.
        detail: String,
    },

    /// The guest's operating system has no package manager the runner drives.
    #[error(
        "unsupported operating system {id:?} (supported: Debian and Ubuntu families with apt, RHEL and Fedora families with dnf)"
    )]
    UnsupportedOs {
        /// `ID` from os-release.
        id: String,
    },
}

impl GuestError {
    /// The command that failed, for errors that come from one.
    pub fn command(&self) -> Option<&str> {
        match self {
            GuestError::CommandFailed { label, .. } | GuestError::Unreadable { label, .. } => {
                Some(label)
            }
            GuestError::Ssh(_) | GuestError::UnsupportedOs { .. } => None,
        }
    }

    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            GuestError::Ssh(error) => error.category(),
            GuestError::CommandFailed { .. } => "CommandFailed",
            GuestError::Unreadable { .. } => "OutputUnreadable",
            GuestError::UnsupportedOs { .. } => "UnsupportedOs",
        }
    }
}

/// Something that runs shell commands in the guest: the SSH session, or a fake in tests.
pub trait Shell: Sync {
    /// Runs `command` with the login user's shell.
    fn exec(&self, command: &str) -> impl Future<Output = Result<CommandOutput, SshError>> + Send;
}

impl Shell for SshSession {
    async fn exec(&self, command: &str) -> Result<CommandOutput, SshError> {
        SshSession::exec(self, command).await
    }
}

/// What the runner is waiting for right now, readable when a phase's time runs out.
#[derive(Clone, Debug, Default)]
pub struct Awaiting(Arc<Mutex<String>>);

impl Awaiting {
    /// Records what is awaited from now on.
    pub fn set(&self, what: impl Into<String>) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = what.into();
    }

    /// What was last recorded.
    pub fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A logged-in guest that runs commands as root.
#[derive(Debug)]
pub struct Guest<'a, S> {
    shell: &'a S,
    sudo: bool,
    awaiting: Awaiting,
}

impl<'a, S: Shell> Guest<'a, S> {
    /// Wraps a shell; `sudo` prefixes privileged commands with `sudo -n`.
    pub fn new(shell: &'a S, sudo: bool, awaiting: Awaiting) -> Self {
        Guest {
            shell,
            sudo,
            awaiting,
        }
    }

    /// Runs a command as the login user; the result is returned whatever the exit status.
    pub async fn run_unprivileged(
        &self,
        label: &str,
        command: &str,
    ) -> Result<CommandOutput, GuestError> {
        self.awaiting.set(label);
        let output = self.shell.exec(command).await?;
        tracing::debug!(command = label, status = ?output.status, "guest command finished");
        Ok(output)
    }

    /// Runs a simple command (no shell syntax: wrap that in `sh -c`) as root in the C locale;
    /// the result is returned whatever the status.
    pub async fn run(&self, label: &str, command: &str) -> Result<CommandOutput, GuestError> {
        let sudo = if self.sudo { "sudo -n " } else { "" };
        let command = format!("{sudo}env LC_ALL=C LANG=C {command}");
        self.run_unprivileged(label, &command).await
    }

    /// Runs a command as root and requires it to succeed.
    pub async fn run_ok(&self, label: &str, command: &str) -> Result<CommandOutput, GuestError> {
        let output = self.run(label, command).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(command_failed(label, &output))
        }
    }
}

/// The error for a failed command, carrying its own error lines.
pub fn command_failed(label: &str, output: &CommandOutput) -> GuestError {
    GuestError::CommandFailed {
        label: label.to_string(),
        status: output
            .status
            .map_or_else(|| "signal".to_string(), |s| s.to_string()),
        detail: error_lines(output),
    }
}

/// The lines of a command's output that explain a failure: apt's and dnf's `E:`/`Error:`
/// lines, dpkg's complaints and dnf's unmatched arguments when there are any, otherwise the
/// last lines of stderr.
pub fn error_lines(output: &CommandOutput) -> String {
    let all = output.stderr.lines().chain(output.stdout.lines());
    let explained: Vec<&str> = all
        .map(str::trim)
        .filter(|line| {
            line.starts_with("E:")
                || line.starts_with("Error:")
                || line.starts_with("dpkg: error")
                || line.contains("returned error exit status")
                || line.starts_with("Problem:")
                || line.starts_with("No match for argument")
        })
        .collect();
    let lines: Vec<&str> = if explained.is_empty() {
        let stderr: Vec<&str> = output
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        stderr[stderr.len().saturating_sub(MAX_ERROR_LINES)..].to_vec()
    } else {
        explained
    };
    let mut kept: Vec<&str> = Vec::new();
    for line in lines {
        if !kept.contains(&line) && kept.len() < MAX_ERROR_LINES {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// Quotes a word for a POSIX shell. Package names and versions are validated before they
/// get here; quoting keeps that a second line of defence rather than the only one.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_error_lines_are_preferred_over_the_rest_of_the_output() {
        let output = CommandOutput {
            status: Some(100),
            stdout: "Reading package lists...\n".into(),
            stderr: "W: something minor\nE: Unable to locate package nope\n".into(),
        };
        assert_eq!(error_lines(&output), "E: Unable to locate package nope");
    }

    #[test]
    fn without_error_lines_the_tail_of_stderr_explains_the_failure() {
        let stderr: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let output = CommandOutput {
            status: Some(1),
            stdout: String::new(),
            stderr,
        };
        let detail = error_lines(&output);
        assert!(detail.starts_with("line 18"));
        assert!(detail.ends_with("line 29"));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
