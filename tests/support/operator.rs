//! The operator as users run it: the real `patchkeeper run` binary, started against the
//! test control plane, killed and restarted at will.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::testbed::testbed;

/// The Lease duration test operators use, in seconds.
pub const LEASE_SECONDS: u64 = 6;

/// A running `patchkeeper run` process; dropping it kills the process.
#[derive(Debug)]
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

/// How to start the operator.
#[derive(Clone, Debug, Default)]
pub struct OperatorConfig {
    /// The namespaces to watch; empty for all.
    pub namespaces: Vec<String>,
    /// The instant the operator's clock starts at (RFC 3339), e.g. a moment before a
    /// window opens.
    pub clock_start: Option<String>,
    /// How much faster than real time the clock runs.
    pub clock_rate: Option<f64>,
    /// Leader election; none runs a single process without it.
    pub leader: Option<Leader>,
}

/// How a test operator takes part in leader election.
#[derive(Clone, Debug)]
pub struct Leader {
    /// The namespace of the Lease.
    pub namespace: String,
    /// This process's identity in the Lease and in its Events (as `POD_NAME` in a cluster).
    pub identity: String,
}

impl Operator {
    /// Starts the operator with the admin kubeconfig; its log goes to a file named after
    /// `name` in the testbed's state directory.
    pub fn start(name: &str, config: &OperatorConfig) -> Self {
        let log = testbed().state_dir.join(format!("operator-{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the operator log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_patchkeeper"));
        command
            .arg("run")
            .env("KUBECONFIG", testbed().kubeconfig())
            .env("RUST_LOG", "info,kube=warn,patchkeeper=debug");
        for namespace in &config.namespaces {
            command.args(["--namespace", namespace]);
        }
        if let Some(start) = &config.clock_start {
            command.args(["--clock-start", start]);
        }
        if let Some(rate) = config.clock_rate {
            command.args(["--clock-rate", &rate.to_string()]);
        }
        command.args(["--http-addr", "127.0.0.1:0"]);
        match &config.leader {
            Some(leader) => command
                .args([
                    "--lease-namespace",
                    &leader.namespace,
                    "--lease-seconds",
                    &LEASE_SECONDS.to_string(),
                ])
                .env("POD_NAME", &leader.identity),
            None => command.arg("--leader-election=false"),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log handle"))
            .stderr(file)
            .spawn()
            .expect("start the patchkeeper binary");
        Self { child, log }
    }

    /// Kills the process at once, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop, as Kubernetes does before killing a Pod, and waits.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for the operator")
    }

    /// The address the operator serves /metrics, /livez and /readyz on, from its log.
    pub fn http_addr(&self) -> Option<String> {
        let log = self.log_text();
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let start = line.find("addr=")? + "addr=".len();
        Some(
            line[start..]
                .split_whitespace()
                .next()?
                .trim_matches(|c: char| !c.is_ascii_graphic())
                .to_string(),
        )
    }

    /// The operator's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
