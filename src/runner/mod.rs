//! The patch runner: runs in a patch Job, logs in to one VM over SSH, and scans or installs.
//!
//! A run goes through phases, each bounded by its own timeout: `Connect` (TCP to the SSH port,
//! retried while the VM boots) and `SshReady` (handshake with the pinned host key, login, OS
//! detection) share the connect timeout; then `Scan`, or `Install` followed by a scan of what
//! is left; then `Reboot` when the policy calls for one. Whatever happens, the run ends with a
//! [`RunSummary`] written to the termination-message path and to stdout; details go to the
//! log on stderr.

mod apt;
mod dnf;
mod guest;
mod known_hosts;
mod os_release;
mod packages;
mod reboot;
mod ssh;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::time::timeout_at;

pub use self::guest::GuestError;
use self::guest::{Awaiting, Guest};
use self::os_release::OsRelease;
pub use self::packages::{BlockedPackage, PackageSpec, PackageSpecError};
use self::packages::{InstallReport, Inventory};
pub use self::ssh::SshError;
use self::ssh::{SshSession, SshTarget};
use crate::summary::{
    Failure, Mode, Outcome, PackageManager, Phase, RunSummary, UpdateCounts, seconds,
};

/// Arguments of `patchkeeper runner`. Every flag can also come from the environment, which
/// is how the operator passes them to the patch Job.
#[derive(Clone, Debug, Args)]
pub struct RunnerArgs {
    /// Address of the VM's SSH server.
    #[arg(long, env = "PATCHKEEPER_HOST")]
    pub host: String,

    /// SSH port.
    #[arg(long, env = "PATCHKEEPER_PORT", default_value_t = 22)]
    pub port: u16,

    /// Login user; when not root, privileged commands run through `sudo -n` (which must be
    /// allowed without a password).
    #[arg(long, env = "PATCHKEEPER_USER", default_value = "root")]
    pub user: String,

    /// Private key file (OpenSSH format, Ed25519 or ECDSA), mounted from a Secret.
    #[arg(
        long,
        env = "PATCHKEEPER_PRIVATE_KEY",
        default_value = "/etc/patchkeeper/ssh/id"
    )]
    pub private_key: PathBuf,

    /// known_hosts file pinning the VM's host key, mounted from the same Secret.
    #[arg(
        long,
        env = "PATCHKEEPER_KNOWN_HOSTS",
        default_value = "/etc/patchkeeper/ssh/known_hosts"
    )]
    pub known_hosts: PathBuf,

    /// `scan` only reports; `install` installs exactly the `--package` list.
    #[arg(long, env = "PATCHKEEPER_MODE", value_enum)]
    pub mode: RunMode,

    /// A package version to install, `name=version` as the scan reported it; repeat the flag
    /// or separate with commas. Required for `install`.
    #[arg(
        long = "package",
        env = "PATCHKEEPER_PACKAGES",
        value_delimiter = ',',
        required_if_eq("mode", "install")
    )]
    pub packages: Vec<PackageSpec>,

    /// A package the install must not touch, not even as a dependency of a requested one:
    /// `pattern` or `pattern=version` (`*` matches any run of characters); repeat the flag or
    /// separate with commas. A requested package that needs one is not installed.
    #[arg(long = "block", env = "PATCHKEEPER_BLOCKED", value_delimiter = ',')]
    pub blocked: Vec<BlockedPackage>,

    /// When to reboot after an install.
    #[arg(
        long,
        env = "PATCHKEEPER_REBOOT",
        value_enum,
        default_value = "IfRequired",
        ignore_case = true
    )]
    pub reboot: RebootPolicy,

    /// Time to reach the VM and log in (`Connect` and `SshReady`), e.g. `300`, `90s`, `5m`.
    #[arg(long, env = "PATCHKEEPER_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "5m")]
    pub connect_timeout: Duration,

    /// Time to refresh package lists and list updates.
    #[arg(long, env = "PATCHKEEPER_SCAN_TIMEOUT", value_parser = parse_duration, default_value = "10m")]
    pub scan_timeout: Duration,

    /// Time to install.
    #[arg(long, env = "PATCHKEEPER_INSTALL_TIMEOUT", value_parser = parse_duration, default_value = "30m")]
    pub install_timeout: Duration,

    /// Time for the VM to reboot and answer SSH again.
    #[arg(long, env = "PATCHKEEPER_REBOOT_TIMEOUT", value_parser = parse_duration, default_value = "10m")]
    pub reboot_timeout: Duration,

    /// Where the summary is written for Kubernetes to pick up.
    #[arg(
        long,
        env = "PATCHKEEPER_TERMINATION_MESSAGE_PATH",
        default_value = "/dev/termination-log"
    )]
    pub termination_message_path: PathBuf,
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Refresh lists and report available updates; change nothing.
    Scan,
    /// Install the given package versions.
    Install,
}

/// When to reboot after an install.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RebootPolicy {
    /// Reboot when the guest says it needs one.
    #[value(name = "IfRequired")]
    IfRequired,
    /// Never reboot; a needed reboot is reported in the summary.
    #[value(name = "Never")]
    Never,
    /// Reboot after every install that changed a package.
    #[value(name = "Always")]
    Always,
}

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A phase ran out of time.
    #[error("no answer within {}s while awaiting {awaiting}", limit.as_secs())]
    TimedOut {
        /// The phase.
        phase: Phase,
        /// What the runner was waiting for.
        awaiting: String,
        /// The phase's timeout.
        limit: Duration,
    },

    /// A phase failed.
    #[error("{source}")]
    Failed {
        /// The phase.
        phase: Phase,
        /// What the runner was waiting for.
        awaiting: String,
        /// Why.
        #[source]
        source: GuestError,
    },
}

impl RunnerError {
    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            RunnerError::TimedOut { .. } => "TimedOut",
            RunnerError::Failed { source, .. } => source.category(),
        }
    }

    fn failure(&self) -> Failure {
        let (phase, awaiting) = match self {
            RunnerError::TimedOut {
                phase, awaiting, ..
            } => (*phase, awaiting),
            RunnerError::Failed {
                phase, awaiting, ..
            } => (*phase, awaiting),
        };
        Failure {
            phase,
            awaiting: awaiting.clone(),
            message: chain(self),
        }
    }
}

/// The error and its sources, joined as `error: cause: cause`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Parses a duration: plain seconds, or a number with `s`, `m` or `h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((at, unit @ ('s' | 'm' | 'h'))) => (&text[..at], unit),
        _ => (text, 's'),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 5m or 1h"))?;
    let factor = match unit {
        'h' => 3600,
        'm' => 60,
        _ => 1,
    };
    Ok(Duration::from_secs(value.saturating_mul(factor)))
}

/// Entry point of `patchkeeper runner`: sets up logging to stderr and a runtime, then runs.
pub fn main(args: RunnerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(error) => {
            tracing::error!(error = %error, "cannot start the async runtime");
            ExitCode::FAILURE
        }
    }
}

/// Runs the patch run, publishes the summary, and exits 0 only when the run succeeded.
pub async fn run(args: RunnerArgs) -> ExitCode {
    let summary = execute(&args).await;
    publish(&summary, &args.termination_message_path).await;
    if summary.outcome == Outcome::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every phase and returns the summary; never fails, failures are in the summary.
pub async fn execute(args: &RunnerArgs) -> RunSummary {
    let started = Instant::now();
    let mode = match args.mode {
        RunMode::Scan => Mode::Scan,
        RunMode::Install => Mode::Install,
    };
    let mut run = Run {
        args,
        summary: RunSummary::new(mode),
        awaiting: Awaiting::default(),
    };
    if let Err(error) = run.phases().await {
        run.summary.outcome = match error {
            RunnerError::TimedOut { .. } => Outcome::TimedOut,
            RunnerError::Failed { .. } => Outcome::Failed,
        };
        run.summary.failure = Some(error.failure());
        tracing::warn!(category = error.category(), error = %chain(&error), "run did not succeed");
    }
    run.summary.timings.total = seconds(started.elapsed());
    let summary = run.summary;
    tracing::info!(
        host = %args.host, mode = ?summary.mode, outcome = ?summary.outcome,
        updates = summary.counts.updates.total, installed = summary.counts.installed_this_run,
        failed = summary.counts.failed, reboot_required = summary.reboot_required,
        rebooted = summary.rebooted, seconds = summary.timings.total, "run finished"
    );
    summary
}

/// Writes the termination message and prints it on stdout.
async fn publish(summary: &RunSummary, path: &Path) {
    let message = summary.to_termination_message();
    if let Err(error) = tokio::fs::write(path, &message).await {
        tracing::warn!(path = %path.display(), error = %error, "cannot write the termination message");
    }
    println!("{message}");
}

/// One run in progress.
struct Run<'a> {
    args: &'a RunnerArgs,
    summary: RunSummary,
    awaiting: Awaiting,
}

/// The logged-in guest: its session, and how to run privileged commands there.
struct Login {
    session: SshSession,
    sudo: bool,
    manager: PackageManager,
}

impl Run<'_> {
    async fn phases(&mut self) -> Result<(), RunnerError> {
        let started = Instant::now();
        let (target, login) = self.log_in().await?;
        self.summary.timings.connect = Some(seconds(started.elapsed()));

        let login = match self.args.mode {
            RunMode::Scan => {
                self.scan(&login, true).await?;
                login
            }
            RunMode::Install => self.install_and_rescan(&target, login).await?,
        };
        login.session.close().await;
        Ok(())
    }

    /// `Connect` and `SshReady`: reach the port, log in, learn the OS.
    async fn log_in(&mut self) -> Result<(SshTarget, Login), RunnerError> {
        let args = self.args;
        self.awaiting.set("ssh client key and known_hosts");
        let target = SshTarget::load(
            &args.host,
            args.port,
            &args.user,
            &args.private_key,
            &args.known_hosts,
        )
        .map_err(|error| self.failed(Phase::SshReady, error.into()))?;

        let deadline = tokio::time::Instant::now() + args.connect_timeout;
        let limit = args.connect_timeout;
        let dial = dial_until_answered(&target, &self.awaiting);
        let stream = timeout_at(deadline, dial)
            .await
            .map_err(|_| self.timed_out(Phase::Connect, limit))?;

        self.awaiting
            .set(format!("ssh handshake and login at {}", target.address()));
        let login = timeout_at(deadline, self.ready(&target, stream))
            .await
            .map_err(|_| self.timed_out(Phase::SshReady, limit))?
            .map_err(|error| self.failed(Phase::SshReady, error))?;
        tracing::info!(host = %target.address(), os = ?self.summary.os, sudo = login.sudo, "logged in");
        Ok((target, login))
    }

    /// Handshake and login, then who we are and which OS this is.
    async fn ready(
        &mut self,
        target: &SshTarget,
        stream: tokio::net::TcpStream,
    ) -> Result<Login, GuestError> {
        let session = target.open(stream).await?;
        let guest = Guest::new(&session, false, self.awaiting.clone());
        let uid = guest.run_unprivileged("id -u", "id -u").await?;
        let sudo = uid.stdout.trim() != "0";
        let release = guest
            .run_unprivileged("/etc/os-release", os_release::READ_COMMAND)
            .await?;
        let release = OsRelease::parse(&release.stdout);
        let manager = release.package_manager();
        self.summary.os = Some(release.info.clone());
        self.summary.package_manager = manager;
        let manager = manager.ok_or(GuestError::UnsupportedOs {
            id: release.info.id,
        })?;
        Ok(Login {
            session,
            sudo,
            manager,
        })
    }

    /// `Scan`: refresh (unless just done) and record installed packages and updates.
    async fn scan(&mut self, login: &Login, refresh: bool) -> Result<(), RunnerError> {
        let started = Instant::now();
        let guest = Guest::new(&login.session, login.sudo, self.awaiting.clone());
        let work = async {
            let inventory = match login.manager {
                PackageManager::Apt => {
                    if refresh {
                        apt::refresh(&guest).await?;
                    }
                    apt::inventory(&guest).await?
                }
                PackageManager::Dnf => {
                    dnf::inventory(&guest, if refresh { "--refresh" } else { "" }).await?
                }
            };
            Ok::<_, GuestError>((inventory, reboot_required(&guest, login.manager).await?))
        };
        let (inventory, reboot_required) = self
            .bounded(Phase::Scan, self.args.scan_timeout, work)
            .await?;
        self.record_inventory(inventory);
        self.summary.reboot_required = reboot_required;
        let elapsed = seconds(started.elapsed()) + self.summary.timings.scan.unwrap_or(0.0);
        self.summary.timings.scan = Some(elapsed);
        Ok(())
    }

    /// `Install`, then a scan of what is left, then `Reboot` when the policy says so.
    async fn install_and_rescan(
        &mut self,
        target: &SshTarget,
        login: Login,
    ) -> Result<Login, RunnerError> {
        let started = Instant::now();
        let guest = Guest::new(&login.session, login.sudo, self.awaiting.clone());
        let work = async {
            match login.manager {
                PackageManager::Apt => {
                    apt::install(&guest, &self.args.packages, &self.args.blocked).await
                }
                PackageManager::Dnf => {
                    dnf::install(&guest, &self.args.packages, &self.args.blocked).await
                }
            }
        };
        let limit = self.args.install_timeout;
        let report = self.bounded(Phase::Install, limit, work).await?;
        self.summary.timings.install = Some(seconds(started.elapsed()));
        let install_failure = self.record_install(report);

        // Even after a failed install, what is installed now is worth reporting.
        let scanned = self.scan(&login, false).await;
        if let Some(error) = install_failure {
            return Err(error);
        }
        scanned?;
        if self.wants_reboot() {
            self.reboot(target, login).await
        } else {
            Ok(login)
        }
    }

    fn wants_reboot(&self) -> bool {
        match self.args.reboot {
            RebootPolicy::Never => false,
            RebootPolicy::IfRequired => self.summary.reboot_required,
            RebootPolicy::Always => self.summary.counts.installed_this_run > 0,
        }
    }

    /// `Reboot`: reboot, wait for a new boot id, and ask again whether a reboot is needed.
    async fn reboot(&mut self, target: &SshTarget, login: Login) -> Result<Login, RunnerError> {
        let started = Instant::now();
        let Login {
            session,
            sudo,
            manager,
        } = login;
        let awaiting = self.awaiting.clone();
        let work = async {
            let session = reboot::reboot(target, session, sudo, &awaiting).await?;
            let guest = Guest::new(&session, sudo, awaiting.clone());
            let still_required = reboot_required(&guest, manager).await?;
            Ok::<_, GuestError>((session, still_required))
        };
        let (session, still_required) = self
            .bounded(Phase::Reboot, self.args.reboot_timeout, work)
            .await?;
        self.summary.rebooted = true;
        self.summary.reboot_required = still_required;
        self.summary.timings.reboot = Some(seconds(started.elapsed()));
        Ok(Login {
            session,
            sudo,
            manager,
        })
    }

    fn record_inventory(&mut self, inventory: Inventory) {
        self.summary.counts.installed_packages = count(inventory.installed.len());
        self.summary.counts.updates = UpdateCounts::of(&inventory.updates);
        self.summary.updates = inventory.updates;
        tracing::info!(
            installed = self.summary.counts.installed_packages,
            updates = self.summary.counts.updates.total,
            security = self.summary.counts.updates.security,
            "inventory taken"
        );
    }

    /// Records what the install did; returns its failure, if any, as the run's error.
    fn record_install(&mut self, report: InstallReport) -> Option<RunnerError> {
        self.summary.counts.installed_this_run = count(report.installed.len());
        self.summary.counts.failed = count(report.not_installed.len());
        for skipped in &report.not_installed {
            tracing::warn!(package = %skipped.name, version = %skipped.version, reason = ?skipped.reason, "not installed");
        }
        self.summary.installed = report.installed;
        self.summary.not_installed = report.not_installed;
        report
            .failure
            .map(|error| self.failed(Phase::Install, error))
    }

    /// Runs `work` within `limit`, turning an expiry into `TimedOut` and an error into
    /// `Failed`, both naming what was awaited at that moment.
    ///
    /// Limitation: on expiry the SSH channel is dropped, but a command already running in the
    /// guest is not killed: an `apt-get install` may still finish, or leave dpkg to be
    /// repaired by the next run's package manager.
    async fn bounded<T>(
        &self,
        phase: Phase,
        limit: Duration,
        work: impl Future<Output = Result<T, GuestError>>,
    ) -> Result<T, RunnerError> {
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(phase, error)),
            Err(_) => Err(self.timed_out(phase, limit)),
        }
    }

    fn failed(&self, phase: Phase, source: GuestError) -> RunnerError {
        // A failed command is what was awaited, even if other commands ran after it.
        let awaiting = source
            .command()
            .map_or_else(|| self.awaiting.get(), String::from);
        RunnerError::Failed {
            phase,
            awaiting,
            source,
        }
    }

    fn timed_out(&self, phase: Phase, limit: Duration) -> RunnerError {
        RunnerError::TimedOut {
            phase,
            awaiting: self.awaiting.get(),
            limit,
        }
    }
}

/// Dials until the SSH port accepts a connection; the caller bounds the time. Refusals are
/// expected while a VM boots, so they are retried, and the last one is kept for the message.
async fn dial_until_answered(target: &SshTarget, awaiting: &Awaiting) -> tokio::net::TcpStream {
    let mut attempts = 0u32;
    awaiting.set(format!("tcp connection to {}", target.address()));
    loop {
        attempts += 1;
        match target.dial().await {
            Ok(stream) => return stream,
            Err(error) => {
                awaiting.set(format!(
                    "tcp connection to {} (last error: {error})",
                    target.address()
                ));
                if attempts == 1 {
                    tracing::info!(host = %target.address(), error = %error, "ssh port not reachable yet, retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn reboot_required<S: guest::Shell>(
    guest: &Guest<'_, S>,
    manager: PackageManager,
) -> Result<bool, GuestError> {
    match manager {
        PackageManager::Apt => {
            let (required, packages) = apt::reboot_required(guest).await?;
            if required {
                tracing::info!(packages = ?packages, "guest asks for a reboot");
            }
            Ok(required)
        }
        PackageManager::Dnf => dnf::reboot_required(guest).await,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_plain_seconds_or_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunnerArgs,
    }

    fn parse(flags: &[&str]) -> Result<RunnerArgs, clap::Error> {
        use clap::Parser;
        let argv = ["runner", "--host", "10.0.0.5"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn an_install_needs_a_package_list() {
        assert!(parse(&["--mode", "install"]).is_err());
        let args = parse(&[
            "--mode",
            "install",
            "--package",
            "a=1,b=2",
            "--package",
            "c=3",
        ]);
        assert_eq!(args.unwrap().packages.len(), 3);
    }

    #[test]
    fn a_package_spec_with_shell_characters_is_refused_at_parse_time() {
        assert!(parse(&["--mode", "install", "--package", "a=1;reboot"]).is_err());
    }

    #[test]
    fn defaults_suit_a_patch_job() {
        let args = parse(&["--mode", "scan", "--reboot", "always"]).unwrap();
        assert_eq!(
            args.reboot,
            RebootPolicy::Always,
            "policy names are case-insensitive"
        );
        assert_eq!((args.port, args.user.as_str()), (22, "root"));
        assert_eq!(
            args.termination_message_path,
            PathBuf::from("/dev/termination-log")
        );
        assert_eq!(args.connect_timeout, Duration::from_secs(300));
    }

    #[test]
    fn an_error_chain_reads_as_one_line() {
        let error = RunnerError::Failed {
            phase: Phase::Scan,
            awaiting: "apt-get update".into(),
            source: GuestError::UnsupportedOs {
                id: "alpine".into(),
            },
        };
        assert!(chain(&error).starts_with("unsupported operating system \"alpine\""));
        assert_eq!(error.failure().phase, Phase::Scan);
    }
}
