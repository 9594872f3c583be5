//! The `patchkeeper` command: the operator, its CRD generator, and the patch runner.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "patchkeeper", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run one patch run in one VM over SSH (used by the patch Jobs).
    Runner(Box<patchkeeper::runner::RunnerArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_crds(),
        Command::Runner(args) => patchkeeper::runner::main(*args),
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
