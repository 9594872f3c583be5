//! `patchkeeper report`: how the fleet stands, in one page.
//!
//! The report reads ManagedVMs, PatchExceptions, MaintenanceWindows and PatchBaselines from
//! the cluster of the current kubeconfig and answers the questions a platform team asks
//! before and after a patch night: how compliant are the VMs, per namespace and per
//! baseline; which VMs are flagged for retirement and what will happen to them; which
//! critical updates have been missing longest; which exceptions run out soon or already
//! have; and which VMs no window patches at all.
//!
//! Reading ([`cluster`]) is kept apart from deciding: [`FleetReport::build`] is a pure
//! function of the objects and the time, and [`text`] renders its result for people while
//! `-o json` serializes it for pipelines.

pub mod cluster;
mod coverage;
mod critical;
pub mod error;
mod exceptions;
mod fleet;
mod retirement;
mod table;
mod tally;
pub mod text;

#[cfg(test)]
mod fixtures;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use jiff::{SignedDuration, Timestamp};

pub use self::coverage::{CoverageReport, UncoveredVm, WindowConflict};
pub use self::critical::{CriticalUpdates, MissingCriticalUpdate};
pub use self::error::Error;
pub use self::exceptions::{ExceptionEntry, ExceptionReport};
pub use self::fleet::{Fleet, FleetReport};
pub use self::retirement::RetirementCandidate;
pub use self::tally::{BaselineTally, ComplianceCounts, NamespaceTally, Tally, VerdictCounts};
use crate::schedule::parse_duration;

/// Arguments of `patchkeeper report`.
#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// Report on this namespace only; repeat or separate with commas for several.
    /// Default: all namespaces.
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NS",
        value_delimiter = ',',
        conflicts_with = "all_namespaces"
    )]
    pub namespaces: Vec<String>,

    /// Report on all namespaces (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// List the exceptions that expire within this long, as a Kubernetes duration
    /// (`336h` is 14 days).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = parse_duration)]
    pub expiring_within: SignedDuration,

    /// `text` for people, `json` (the whole report) for pipelines.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// How the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables under headings, after a one-line summary.
    Text,
    /// The report as pretty-printed JSON.
    Json,
}

impl ReportArgs {
    /// The namespaces to read.
    pub fn scope(&self) -> cluster::Scope {
        if self.all_namespaces || self.namespaces.is_empty() {
            cluster::Scope::All
        } else {
            cluster::Scope::Namespaces(self.namespaces.clone())
        }
    }
}

/// Entry point of `patchkeeper report`: writes the report to standard output, or the reason
/// there is none to standard error.
pub fn main(args: ReportArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(&args)),
        Err(error) => {
            eprintln!("patchkeeper report: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match outcome {
        Ok(output) => write_out(&output),
        Err(error) => {
            eprintln!("patchkeeper report: {}", error::describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Reads the fleet and writes the report as `args` ask.
pub async fn run(args: &ReportArgs) -> Result<String, Error> {
    let client = cluster::connect().await?;
    let fleet = cluster::read_fleet(&client, &args.scope()).await?;
    let report = FleetReport::build(&fleet, Timestamp::now(), args.expiring_within);
    render(&report, args.output)
}

/// The report in the format asked for, ending with a newline.
pub fn render(report: &FleetReport, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Text => Ok(text::render(report)),
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(report).map_err(Error::Json)?;
            Ok(json + "\n")
        }
    }
}

/// Writes to standard output; a reader that went away (`| head`) is no failure.
fn write_out(output: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("patchkeeper report: cannot write the report: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::report::fixtures::*;

    fn json_of(fleet: &Fleet) -> Value {
        let report = FleetReport::build(fleet, now(), days(14));
        let json = render(&report, OutputFormat::Json).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn json_output_has_one_camel_case_key_per_section() {
        let json = json_of(&fleet_of(vec![vm("team-a", "web").compliant()]));
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "byBaseline",
                "byNamespace",
                "coverage",
                "criticalUpdates",
                "exceptions",
                "generatedAt",
                "namespaces",
                "retirementCandidates",
                "totals"
            ]
        );
        assert_eq!(json["generatedAt"], "2026-05-01T12:00:00Z");
        assert_eq!(json["totals"]["compliance"]["nonCompliant"], 0);
        assert_eq!(json["byNamespace"][0]["namespace"], "team-a");
        assert_eq!(json["byNamespace"][0]["vms"], 1);
    }

    #[test]
    fn a_candidate_in_json_carries_reasons_as_written_in_the_vm_status() {
        let fleet = fleet_of(vec![vm("team-a", "old").retire(&[dormant_reason()])]);
        let candidate = &json_of(&fleet)["retirementCandidates"][0];
        assert_eq!(candidate["vm"], "old");
        assert_eq!(candidate["reasons"][0]["reason"], "Dormant");
        assert!(candidate["gracePeriodEndsAt"].is_null());
    }

    #[test]
    fn the_namespace_flags_choose_the_scope() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ReportArgs,
        }
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).map(|cli| cli.args);
        let all = parse(&["report"]).unwrap();
        assert_eq!(all.scope(), cluster::Scope::All);
        let some = parse(&["report", "--namespace", "a", "-n", "b,c"]).unwrap();
        let expected = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(some.scope(), cluster::Scope::Namespaces(expected));
        assert!(parse(&["report", "-A", "-n", "a"]).is_err());
    }

    #[test]
    fn the_expiry_horizon_is_read_as_a_kubernetes_duration() {
        use clap::Parser;

        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ReportArgs,
        }
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).map(|cli| cli.args);
        assert_eq!(parse(&["report"]).unwrap().expiring_within, days(14));
        let week = parse(&["report", "--expiring-within", "168h"]).unwrap();
        assert_eq!(week.expiring_within, days(7));
        let refused = parse(&["report", "--expiring-within", "7d"]).unwrap_err();
        assert!(refused.to_string().contains("168h"), "{refused}");
    }
}
