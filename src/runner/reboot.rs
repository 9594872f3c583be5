//! Rebooting the guest and waiting for it to come back.
//!
//! The guest is back when SSH answers again, with the same pinned host key, and the kernel's
//! boot id (`/proc/sys/kernel/random/boot_id`, new on every boot) differs from the one read
//! before the reboot. An SSH server that answers with the old boot id has not rebooted yet.

use std::time::Duration;

use super::guest::{Awaiting, Guest, GuestError};
use super::ssh::{SshError, SshSession, SshTarget};

/// Reads the kernel's boot id.
pub const BOOT_ID_COMMAND: &str = "cat /proc/sys/kernel/random/boot_id";

/// Asks the init system to reboot, detached and delayed so the SSH command returns first.
/// Without systemd running, `reboot` from `PATH` is used.
const REBOOT_COMMAND: &str = "nohup sh -c 'sleep 2; if [ -d /run/systemd/system ]; \
     then systemctl reboot; else reboot; fi' >/dev/null 2>&1 </dev/null &";

/// Pause between attempts to reach the rebooting guest.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Longest single attempt to connect and log in while the guest comes back.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads the current boot id.
pub async fn boot_id<S: super::guest::Shell>(guest: &Guest<'_, S>) -> Result<String, GuestError> {
    let output = guest.run_unprivileged("boot id", BOOT_ID_COMMAND).await?;
    let id = output.stdout.trim().to_string();
    if !output.success() || id.is_empty() {
        return Err(super::guest::command_failed("boot id", &output));
    }
    Ok(id)
}

/// Reboots the guest behind `session` and returns a new session once it is back. Runs until
/// the guest is back or a permanent error (a refused host key) occurs: the caller bounds it.
pub async fn reboot(
    target: &SshTarget,
    session: SshSession,
    sudo: bool,
    awaiting: &Awaiting,
) -> Result<SshSession, GuestError> {
    let guest = Guest::new(&session, sudo, awaiting.clone());
    let before = boot_id(&guest).await?;
    guest.run_ok("reboot command", REBOOT_COMMAND).await?;
    tracing::info!(host = %target.address(), boot_id = %before, "reboot requested");
    session.close().await;

    let mut last_error = String::from("not tried yet");
    loop {
        awaiting.set(format!(
            "guest back with a new boot id (last attempt: {last_error})"
        ));
        tokio::time::sleep(POLL_INTERVAL).await;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(target)).await {
            Ok(Ok((session, id))) if id != before => {
                tracing::info!(host = %target.address(), boot_id = %id, "guest back after reboot");
                return Ok(session);
            }
            Ok(Ok((session, _))) => {
                last_error = "still the old boot id".to_string();
                session.close().await;
            }
            Ok(Err(AttemptError::Ssh(error))) if error.is_permanent() => return Err(error.into()),
            Ok(Err(error)) => last_error = error.to_string(),
            Err(_) => last_error = format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
        }
    }
}

/// Why one attempt to reach the rebooting guest failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Dial(std::io::Error),
    #[error("{0}")]
    Ssh(SshError),
    #[error("{0}")]
    Guest(GuestError),
}

async fn attempt(target: &SshTarget) -> Result<(SshSession, String), AttemptError> {
    let stream = target.dial().await.map_err(AttemptError::Dial)?;
    let session = target.open(stream).await.map_err(AttemptError::Ssh)?;
    let id = boot_id(&Guest::new(&session, false, Awaiting::default())).await;
    match id {
        Ok(id) => Ok((session, id)),
        Err(error) => {
            session.close().await;
            Err(AttemptError::Guest(error))
        }
    }
}
