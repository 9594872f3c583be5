//! The `patchkeeper` command: the operator, its CRD generator, the patch runner, and the fleet
//! report.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use patchkeeper::clock::Clock;
use patchkeeper::operator::leader::LeaseConfig;
use patchkeeper::operator::{self, Settings};

#[derive(Debug, Parser)]
#[command(name = "patchkeeper", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run one patch run in one VM over SSH (used by the patch Jobs).
    Runner(Box<patchkeeper::runner::RunnerArgs>),
    /// Report how the fleet stands: compliance, retirement candidates, missing critical
    /// updates, exceptions running out, and VMs no window patches.
    Report(patchkeeper::report::ReportArgs),
    /// Show when the MaintenanceWindows in manifests open next, in their time zones.
    Windows(patchkeeper::calendar::WindowsArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Watch only this namespace; repeat for several. Default: all namespaces.
    #[arg(
        long = "namespace",
        env = "PATCHKEEPER_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// The image patch Jobs run when a window's executor names none.
    #[arg(long, env = "PATCHKEEPER_RUNNER_IMAGE", default_value = concat!("patchkeeper:", env!("CARGO_PKG_VERSION")))]
    runner_image: String,

    /// Start the operator's clock at this instant (RFC 3339) instead of now, e.g. a moment
    /// before a window opens. For demos and tests.
    #[arg(long, env = "PATCHKEEPER_CLOCK_START")]
    clock_start: Option<Timestamp>,

    /// Run the operator's clock this many times as fast as real time. For demos and tests.
    #[arg(long, env = "PATCHKEEPER_CLOCK_RATE", default_value_t = 1.0)]
    clock_rate: f64,

    /// Log as human-readable text or as JSON lines.
    #[arg(long, env = "PATCHKEEPER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Where to serve /metrics, /livez and /readyz (port 0 picks a free port).
    #[arg(long, env = "PATCHKEEPER_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,

    /// Hold a Lease before acting, so that of several replicas exactly one acts.
    #[arg(long, env = "PATCHKEEPER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// The Lease's name.
    #[arg(long, env = "PATCHKEEPER_LEASE_NAME", default_value = "patchkeeper")]
    lease_name: String,

    /// The Lease's namespace. Default: the operator's own (POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// How long a Lease not renewed stays held, in seconds; a standby takes over after it.
    #[arg(long, env = "PATCHKEEPER_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
}

impl RunArgs {
    /// The Lease to hold, if leader election is on.
    fn lease(&self) -> Result<Option<LeaseConfig>, String> {
        if !self.leader_election {
            return Ok(None);
        }
        let namespace = self.lease_namespace.clone().ok_or(
            "leader election needs the Lease's namespace: set --lease-namespace or POD_NAMESPACE, \
             or run a single process with --leader-election=false",
        )?;
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "patchkeeper".into());
            format!("{host}-{}", std::process::id())
        });
        let duration = std::time::Duration::from_secs(self.lease_seconds.max(3));
        Ok(Some(LeaseConfig {
            name: self.lease_name.clone(),
            namespace,
            identity,
            renew_every: duration / 3,
            retry_every: duration / 5,
            duration,
        }))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_operator(args),
        Command::Crd => print_crds(),
        Command::Runner(args) => patchkeeper::runner::main(*args),
        Command::Report(args) => patchkeeper::report::main(args),
        Command::Windows(args) => patchkeeper::calendar::main(args),
    }
}

fn run_operator(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(error = %error, "cannot reach the Kubernetes API; check KUBECONFIG or the in-cluster service account");
                return ExitCode::FAILURE;
            }
        };
        let clock = match args.clock_start {
            Some(start) => Clock::starting_at(start, args.clock_rate),
            None if args.clock_rate != 1.0 => Clock::starting_at(Timestamp::now(), args.clock_rate),
            None => Clock::system(),
        };
        let leader = match args.lease() {
            Ok(leader) => leader,
            Err(message) => {
                tracing::error!("{message}");
                return ExitCode::FAILURE;
            }
        };
        let settings = Settings {
            namespaces: args.namespaces,
            runner_image: args.runner_image,
            clock,
            http_addr: Some(args.http_addr),
            leader,
        };
        tracing::info!(namespaces = ?settings.namespaces, clock_start = %clock.now(), "starting");
        match operator::run(client, settings, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(error = %error, "stopped");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // Colours only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_crds() -> ExitCode {
    match patchkeeper::api::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("patchkeeper: cannot render the CRDs: {error}");
            ExitCode::FAILURE
        }
    }
}
