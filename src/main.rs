//! The `patchkeeper` command: the operator, its CRD generator, the patch runner, and the fleet
//! report.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use patchkeeper::clock::Clock;
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
        let settings = Settings { namespaces: args.namespaces, runner_image: args.runner_image, clock };
        tracing::info!(namespaces = ?settings.namespaces, clock_start = %clock.now(), "starting");
        operator::run(client, settings, shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
