//! The SSH connection to the guest, with `russh` (pure Rust, so the runner image needs no
//! OpenSSH client and no C crypto library beyond `ring`, which the operator links anyway).
//!
//! The host key must be pinned in the known_hosts file: an unknown, changed or revoked key
//! ends the handshake before any credential is sent. Only key authentication is offered.
//! Limitation: client and host keys must be Ed25519 or ECDSA; RSA support is left out of the
//! build to keep the runner's compile time and size down.

use std::path::Path;
use std::sync::Arc;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, client};
use tokio::net::TcpStream;

use super::known_hosts::{self, KnownHosts, KnownHostsError, Verdict};

/// Most output kept per stream of one command; the rest is counted and dropped.
const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// Errors talking SSH to the guest.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The client key could not be read or decoded. The path is named, the content never.
    #[error("cannot load the ssh client key {path}")]
    ClientKey {
        /// The key file.
        path: String,
        /// Why.
        #[source]
        source: russh::keys::Error,
    },

    /// The known_hosts file could not be read.
    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),

    /// The host key is not listed for this host.
    #[error("host key {fingerprint} offered by {host} is not in known_hosts; refusing it")]
    HostKeyUnknown {
        /// `host:port` as dialled.
        host: String,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
    },

    /// Another key of the same type is listed for this host.
    #[error("host key of {host} has changed: offered {fingerprint}, known_hosts lists another")]
    HostKeyChanged {
        /// `host:port` as dialled.
        host: String,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
    },

    /// The key is listed as revoked.
    #[error("host key {fingerprint} offered by {host} is revoked in known_hosts")]
    HostKeyRevoked {
        /// `host:port` as dialled.
        host: String,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
    },

    /// The server refused the client key.
    #[error("{host} refused key authentication as user {user}")]
    AuthRefused {
        /// `host:port` as dialled.
        host: String,
        /// The login user.
        user: String,
    },

    /// The SSH protocol failed: handshake, channel, or a dropped connection.
    #[error("ssh session with {host} failed")]
    Protocol {
        /// `host:port` as dialled.
        host: String,
        /// Why.
        #[source]
        source: russh::Error,
    },
}

impl SshError {
    /// A short stable name for this kind of error, used as Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            SshError::ClientKey { .. } => "ClientKeyUnreadable",
            SshError::KnownHosts(error) => error.category(),
            SshError::HostKeyUnknown { .. } => "HostKeyUnknown",
            SshError::HostKeyChanged { .. } => "HostKeyChanged",
            SshError::HostKeyRevoked { .. } => "HostKeyRevoked",
            SshError::AuthRefused { .. } => "AuthRefused",
            SshError::Protocol { .. } => "SshFailed",
        }
    }

    /// True for errors a new attempt cannot fix (keys), false for transport trouble.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, SshError::Protocol { .. })
    }
}

/// Where and as whom to log in, with the credentials loaded.
#[derive(Clone)]
pub struct SshTarget {
    host: String,
    port: u16,
    user: String,
    key: Arc<PrivateKey>,
    known_hosts: Arc<KnownHosts>,
}

impl std::fmt::Debug for SshTarget {
    // Written by hand so that no debug print can ever include the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SshTarget {
    /// Loads the client key and the pinned host keys.
    pub fn load(
        host: &str,
        port: u16,
        user: &str,
        key_path: &Path,
        known_hosts_path: &Path,
    ) -> Result<Self, SshError> {
        let key =
            russh::keys::load_secret_key(key_path, None).map_err(|source| SshError::ClientKey {
                path: key_path.display().to_string(),
                source,
            })?;
        Ok(SshTarget {
            host: host.to_string(),
            port,
            user: user.to_string(),
            key: Arc::new(key),
            known_hosts: Arc::new(KnownHosts::load(known_hosts_path)?),
        })
    }

    /// `host:port`, as named in messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TCP connection to the SSH port.
    pub async fn dial(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Runs the SSH handshake over `stream`, checks the host key, and logs in.
    pub async fn open(&self, stream: TcpStream) -> Result<SshSession, SshError> {
        let checker = PinnedHostKey {
            target: self.clone(),
        };
        let handle = client::connect_stream(Arc::new(self.client_config()), stream, checker)
            .await
            .map_err(|error| error.into_ssh_error(&self.address()))?;
        let mut session = SshSession {
            handle,
            address: self.address(),
        };
        session.authenticate(&self.user, self.key.clone()).await?;
        Ok(session)
    }

    fn client_config(&self) -> client::Config {
        let mut config = client::Config::default();
        let pinned = self.known_hosts.algorithms_for(&self.host, self.port);
        // Ask for the key types that are pinned, as OpenSSH does, so that a server holding
        // several host keys offers one we can check.
        if !pinned.is_empty() {
            let preferred: Vec<_> = config
                .preferred
                .key
                .iter()
                .filter(|a| pinned.contains(a))
                .cloned()
                .collect();
            if !preferred.is_empty() {
                config.preferred.key = preferred.into();
            }
        }
        config
    }
}

/// An authenticated SSH connection.
pub struct SshSession {
    handle: client::Handle<PinnedHostKey>,
    address: String,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// What a remote command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` when the command was killed by a signal or the status was lost.
    pub status: Option<u32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// True when the command exited with status zero.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

impl SshSession {
    async fn authenticate(&mut self, user: &str, key: Arc<PrivateKey>) -> Result<(), SshError> {
        let hash = self
            .handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| self.protocol(e))?;
        let key = PrivateKeyWithHashAlg::new(key, hash.flatten());
        let result = self
            .handle
            .authenticate_publickey(user, key)
            .await
            .map_err(|e| self.protocol(e))?;
        if result.success() {
            Ok(())
        } else {
            Err(SshError::AuthRefused {
                host: self.address.clone(),
                user: user.to_string(),
            })
        }
    }

    /// Runs `command` through the login user's shell and collects its output.
    pub async fn exec(&self, command: &str) -> Result<CommandOutput, SshError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.protocol(e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.protocol(e))?;

        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut status = None;
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => append_capped(&mut stdout, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => append_capped(&mut stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        Ok(CommandOutput {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Says goodbye to the server; errors are irrelevant at this point and ignored.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    fn protocol(&self, source: russh::Error) -> SshError {
        SshError::Protocol {
            host: self.address.clone(),
            source,
        }
    }
}

fn append_capped(buffer: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT_BYTES.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// Checks the server's key against known_hosts during the handshake.
struct PinnedHostKey {
    target: SshTarget,
}

/// Why a handshake ended: the protocol, or a host key refused by the pin.
#[derive(Debug)]
enum HandshakeError {
    Protocol(russh::Error),
    Refused(SshError),
}

impl From<russh::Error> for HandshakeError {
    fn from(error: russh::Error) -> Self {
        HandshakeError::Protocol(error)
    }
}

impl HandshakeError {
    fn into_ssh_error(self, address: &str) -> SshError {
        match self {
            HandshakeError::Protocol(source) => SshError::Protocol {
                host: address.to_string(),
                source,
            },
            HandshakeError::Refused(error) => error,
        }
    }
}

impl client::Handler for PinnedHostKey {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A certificate is judged by the key it certifies: only plain pins are supported.
        let key: PublicKey = match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let target = &self.target;
        let verdict = target.known_hosts.verdict(&target.host, target.port, &key);
        let (host, fingerprint) = (target.address(), known_hosts::fingerprint(&key));
        tracing::debug!(host = %host, fingerprint = %fingerprint, ?verdict, "host key checked");
        match verdict {
            Verdict::Trusted => Ok(true),
            Verdict::Unknown => Err(SshError::HostKeyUnknown { host, fingerprint }),
            Verdict::Changed => Err(SshError::HostKeyChanged { host, fingerprint }),
            Verdict::Revoked => Err(SshError::HostKeyRevoked { host, fingerprint }),
        }
        .map_err(HandshakeError::Refused)
    }
}
