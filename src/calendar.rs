//! `patchkeeper windows`: when maintenance windows open next, read from manifests, so that
//! a schedule can be checked before it reaches the cluster (in review, in a pipeline), on
//! the days the clocks change too. The openings are computed by the same code the operator
//! uses, from the same fields.
//!
//! Input is YAML: one or more documents, or a `kind: List` as `kubectl get -o yaml`
//! prints, so `kubectl get mw -A -o yaml | patchkeeper windows -f -` shows the windows of a
//! cluster. Documents of other kinds are passed over.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use kube::ResourceExt;
use serde::Deserialize;

use crate::api::MaintenanceWindow;
use crate::schedule::to_compact_string;

/// Arguments of `patchkeeper windows`.
#[derive(Clone, Debug, Args)]
pub struct WindowsArgs {
    /// A manifest with MaintenanceWindows; `-` reads standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// How many openings to show for each window.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub count: u16,

    /// Show the openings after this instant (RFC 3339) instead of after now.
    #[arg(long, value_name = "TIME")]
    pub after: Option<Timestamp>,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: {error}")]
    Read {
        file: String,
        #[source]
        error: std::io::Error,
    },
    /// A document is not YAML.
    #[error("{file}: not YAML: {error}")]
    Yaml {
        file: String,
        #[source]
        error: serde_yaml_ng::Error,
    },
    /// A MaintenanceWindow document does not match the API.
    #[error("{file}: MaintenanceWindow {name:?}: {error}")]
    Window {
        file: String,
        name: String,
        #[source]
        error: serde_json::Error,
    },
}

/// Entry point: prints each window's next openings; exits 1 when a manifest cannot be read
/// or a window's timing is refused, after printing everything else.
pub fn main(args: WindowsArgs) -> ExitCode {
    let after = args.after.unwrap_or_else(Timestamp::now);
    let mut failed = false;
    let mut out = String::new();
    for file in &args.files {
        let windows = read(file).and_then(|(source, text)| windows_in(&source, &text));
        match windows {
            Ok(windows) => {
                for window in &windows {
                    match render(window, after, usize::from(args.count)) {
                        Ok(text) => out.push_str(&text),
                        Err(error) => {
                            failed = true;
                            eprintln!("patchkeeper windows: {}: {error}", title(window));
                        }
                    }
                }
            }
            Err(error) => {
                failed = true;
                eprintln!("patchkeeper windows: {error}");
            }
        }
    }
    print!("{out}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn read(file: &Path) -> Result<(String, String), ManifestError> {
    let source = file.display().to_string();
    let mut text = String::new();
    let result = if source == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|read| text = read)
    };
    match result {
        Ok(()) => Ok((source, text)),
        Err(error) => Err(ManifestError::Read {
            file: source,
            error,
        }),
    }
}

/// The MaintenanceWindows in a YAML stream, in order.
pub fn windows_in(source: &str, text: &str) -> Result<Vec<MaintenanceWindow>, ManifestError> {
    let mut windows = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value =
            serde_json::Value::deserialize(document).map_err(|error| ManifestError::Yaml {
                file: source.to_string(),
                error,
            })?;
        let objects = match value.get("kind").and_then(|k| k.as_str()) {
            Some("List") => value
                .get("items")
                .and_then(|items| items.as_array())
                .cloned()
                .unwrap_or_default(),
            _ => vec![value],
        };
        for object in objects {
            if object.get("kind").and_then(|k| k.as_str()) != Some("MaintenanceWindow") {
                continue;
            }
            let name = object
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            let window = serde_json::from_value(object).map_err(|error| ManifestError::Window {
                file: source.to_string(),
                name,
                error,
            })?;
            windows.push(window);
        }
    }
    Ok(windows)
}

fn title(window: &MaintenanceWindow) -> String {
    match window.namespace() {
        Some(namespace) => format!("{namespace}/{}", window.name_any()),
        None => window.name_any(),
    }
}

/// The window's next `count` openings after `after`, as a small table; the error of a
/// timing the operator would refuse, which names the field.
pub fn render(
    window: &MaintenanceWindow,
    after: Timestamp,
    count: usize,
) -> Result<String, crate::schedule::WindowError> {
    let spec = &window.spec;
    let timing = spec.timing()?;
    let mut text = String::new();
    let cutoff = match timing.cutoff() {
        zero if zero.is_zero() => String::new(),
        cutoff => format!(", no new VM in its last {}", to_compact_string(cutoff)),
    };
    let _ = writeln!(text, "{}", title(window));
    let _ = writeln!(
        text,
        "  {} in {}, open {}{cutoff}{}",
        spec.schedule,
        spec.time_zone,
        to_compact_string(timing.duration()),
        if spec.suspend { " (suspended)" } else { "" },
    );
    let _ = writeln!(text, "  {:<32} {:<32} CLOSES", "OPENS", "LAST START");
    let occurrences: Vec<_> = timing.occurrences_after(after).take(count).collect();
    if occurrences.is_empty() {
        let _ = writeln!(
            text,
            "  the schedule names no date that exists: it never opens"
        );
    }
    for occurrence in occurrences {
        let _ = writeln!(
            text,
            "  {:<32} {:<32} {}",
            occurrence.opens.strftime(FORMAT).to_string(),
            occurrence.last_start.strftime(FORMAT).to_string(),
            occurrence.closes.strftime(FORMAT)
        );
    }
    text.push('\n');
    Ok(text)
}

/// Wall-clock time in the window's zone, with the zone's abbreviation and UTC offset, so
/// that a change of the clocks is seen.
const FORMAT: &str = "%a %Y-%m-%d %H:%M %Z %:z";

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH_TUESDAY: &str = include_str!("../samples/window-production-patch-tuesday.yaml");

    fn window(schedule: &str, zone: &str, duration: &str) -> String {
        format!(
            "apiVersion: patchkeeper.io/v1alpha1\nkind: MaintenanceWindow\n\
             metadata: {{name: w, namespace: ops}}\n\
             spec:\n  schedule: {schedule:?}\n  timeZone: {zone}\n  duration: {duration}\n  \
             selector: {{}}\n  baselineRef: {{name: b}}\n  \
             executor: {{sshSecretRef: {{name: ssh}}}}\n"
        )
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().map(str::trim_end).collect()
    }

    #[test]
    fn the_sample_opens_on_the_second_tuesday_of_each_month_in_new_york_time() {
        let windows = windows_in("sample", PATCH_TUESDAY).unwrap();
        let after: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let text = render(&windows[0], after, 3).unwrap();
        assert_eq!(
            lines(&text),
            [
                "production-patch-tuesday",
                "  0 22 * * TUE#2 in America/New_York, open 6h, no new VM in its last 1h",
                "  OPENS                            LAST START                       CLOSES",
                "  Tue 2026-12-08 22:00 EST -05:00  Wed 2026-12-09 03:00 EST -05:00  Wed 2026-12-09 04:00 EST -05:00",
                "  Tue 2027-01-12 22:00 EST -05:00  Wed 2027-01-13 03:00 EST -05:00  Wed 2027-01-13 04:00 EST -05:00",
                "  Tue 2027-02-09 22:00 EST -05:00  Wed 2027-02-10 03:00 EST -05:00  Wed 2027-02-10 04:00 EST -05:00",
                "",
            ]
        );
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_opens_once_after_it() {
        let text = window("30 2 * * *", "Europe/Berlin", "1h");
        let windows = windows_in("w.yaml", &text).unwrap();
        let after: Timestamp = "2027-03-27T12:00:00Z".parse().unwrap();
        let table = render(&windows[0], after, 2).unwrap();
        let openings: Vec<&str> = lines(&table)[3..5]
            .iter()
            .map(|l| l.trim().get(..30).unwrap_or_default())
            .collect();
        assert_eq!(
            openings,
            [
                "Sun 2027-03-28 03:30 CEST +02:",
                "Mon 2027-03-29 02:30 CEST +02:"
            ]
        );
    }

    #[test]
    fn windows_are_found_in_lists_and_other_kinds_are_passed_over() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n---\napiVersion: v1\nkind: ConfigMap\n\
             metadata: {{name: c}}\n",
            serde_json::to_string(
                &serde_yaml_ng::from_str::<serde_json::Value>(&window("@daily", "UTC", "2h"))
                    .unwrap()
            )
            .unwrap()
        );
        let windows = windows_in("list", &list).unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!(title(&windows[0]), "ops/w");
    }

    #[test]
    fn a_timing_the_operator_refuses_is_an_error_naming_the_field() {
        let text = window("0 22 * * TUE", "Mars/Olympus_Mons", "2h");
        let windows = windows_in("w.yaml", &text).unwrap();
        let error = render(&windows[0], Timestamp::UNIX_EPOCH, 1).unwrap_err();
        assert!(error.to_string().starts_with("timeZone:"), "{error}");
    }

    #[test]
    fn a_window_missing_a_required_field_is_an_error_naming_it() {
        let text = window("@daily", "UTC", "2h").replace("  baselineRef: {name: b}\n", "");
        let error = windows_in("w.yaml", &text).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("w.yaml: MaintenanceWindow \"w\":")
                && message.contains("baselineRef"),
            "{message}"
        );
    }
}
