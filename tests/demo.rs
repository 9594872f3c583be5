//! The one-command demo as a newcomer runs it: `scripts/demo.sh --short` must tell the whole
//! story in its ending (a dormant VM woken, patched and put back to sleep, VMs flagged for
//! retirement with their reasons, an exception honoured, the fleet report) and leave no
//! process behind. The demo starts its own control plane, so this test needs no other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Long enough for a demo that has to build patchkeeper first on a busy machine.
const LIMIT: Duration = Duration::from_secs(20 * 60);

/// What one run of the demo printed.
#[derive(Debug)]
struct Demo {
    succeeded: bool,
    stdout: String,
    stderr: String,
}

impl Demo {
    /// The demo, run once for all the tests of this file.
    fn run() -> &'static Demo {
        static DEMO: OnceLock<Demo> = OnceLock::new();
        DEMO.get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
            let child = Command::new(&script)
                .arg("--short")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
            finish(child)
        })
    }

    /// The demo's output, or a failure that shows it when the demo failed.
    fn output() -> &'static str {
        let demo = Self::run();
        assert!(
            demo.succeeded,
            "scripts/demo.sh --short failed\n--- stdout\n{}\n--- stderr\n{}",
            demo.stdout, demo.stderr
        );
        &demo.stdout
    }

    /// The part of the ending under the heading that starts with `title`, without the
    /// heading.
    fn section(title: &str) -> &'static str {
        let output = Self::output();
        let start = output
            .find(&format!("--- {title}"))
            .unwrap_or_else(|| panic!("no section {title:?} in the demo's output:\n{output}"));
        let rest = &output[start..];
        let rest = rest.split_once('\n').map_or("", |(_, after)| after);
        let end = ["\n--- ", "\n==> "]
            .iter()
            .filter_map(|next| rest.find(next))
            .min()
            .unwrap_or(rest.len());
        &rest[..end]
    }
}

/// Waits for the demo within [`LIMIT`], collecting what it printed; kills it when it takes
/// longer (what it started dies with it).
fn finish(mut child: Child) -> Demo {
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let mut stderr = stderr.join().unwrap();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed: the demo ran longer than {LIMIT:?})"));
    }
    Demo {
        succeeded: status.is_some_and(|s| s.success()),
        stdout: stdout.join().unwrap(),
        stderr,
    }
}

fn collect(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
}

/// The words of the first line of a table in `text` that holds `word`, commands (`$ ...`)
/// left out.
fn row<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| !line.starts_with('$'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.contains(&word))
        .unwrap_or_else(|| panic!("no row for {word:?} in:\n{text}"))
}

/// The value after `field:` in `kubectl describe` output, e.g. `Phase` → `Done`.
fn described<'a>(text: &'a str, field: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix(&format!("{field}:")))
        .map(str::trim)
        .collect()
}

/// The process ids the demo printed on lines starting with `pid N`.
fn printed_pids(output: &str) -> Vec<u32> {
    output
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("pid "))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The state directory the demo printed as `state: DIR`.
fn state_dir(output: &str) -> &str {
    let line = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("state: "))
        .unwrap_or_else(|| panic!("the demo did not print its state directory:\n{output}"));
    line.trim()
}

#[test]
fn a_dormant_vm_is_woken_patched_and_stopped_again() {
    let fleet = Demo::section("Managed VMs");
    let batch = row(fleet, "batch-1");
    assert!(batch.contains(&"Stopped"), "{batch:?}");
    assert!(batch.contains(&"Compliant"), "{batch:?}");

    let story = Demo::section("A dormant VM");
    assert_eq!(described(story, "Phase"), ["Done"], "{story}");
    assert_eq!(described(story, "Woken"), ["true"], "{story}");
    assert_eq!(described(story, "State"), ["Stopped"], "{story}");
    for event in ["Waking", "Patched", "BackToSleep"] {
        assert!(
            story.contains(&format!("Normal  {event}")),
            "no {event} Event:\n{story}"
        );
    }
}

#[test]
fn vms_not_worth_patching_are_flagged_for_retirement_with_their_reasons() {
    let flagged = Demo::section("Flagged for retirement");
    let old = row(flagged, "wiki-old");
    assert!(old.contains(&"EndOfLife"), "{old:?}");
    assert!(flagged.contains("support for debian 9 ended"), "{flagged}");
    let orphan = row(flagged, "tmp-loadtest");
    assert!(orphan.contains(&"MissingOwner"), "{orphan:?}");
}

#[test]
fn the_exceptions_are_honoured() {
    let exceptions = Demo::section("Exceptions");
    let freeze = row(exceptions, "payments-change-freeze");
    assert_eq!(
        freeze[freeze.len() - 3..freeze.len() - 1],
        ["Active", "1"],
        "{freeze:?}"
    );

    let frozen = row(exceptions, "payments-1");
    assert!(frozen.contains(&"[payments-change-freeze]"), "{frozen:?}");
    assert!(
        frozen.contains(&"<none>"),
        "payments-1 has a run: {frozen:?}"
    );
    let erp = row(exceptions, "legacy-erp");
    assert!(erp.contains(&"Keep"), "{erp:?}");
    assert!(erp.last().unwrap().contains("postgresql-11"), "{erp:?}");
}

#[test]
fn both_windows_runs_end_with_their_results() {
    let windows = Demo::section("Windows");
    let production = row(windows, "production-patch-tuesday");
    assert!(production.contains(&"PartiallySucceeded"), "{production:?}");
    let dev = row(windows, "dev-nightly");
    assert!(dev.contains(&"Succeeded"), "{dev:?}");
}

#[test]
fn the_failing_vm_shows_its_failure() {
    let failures = Demo::section("A VM whose every run fails");
    let search = row(failures, "search-1");
    assert_eq!(search[1..], ["Failed", "Failed", "1"], "{search:?}");
    assert!(failures.contains("PatchFailed"), "{failures}");
}

#[test]
fn the_fleet_report_ends_the_demo() {
    let report = Demo::section("The fleet report");
    assert!(report.contains("10 VMs in 2 namespaces:"), "{report}");
    assert!(report.contains("Retirement candidates (2)"), "{report}");
}

#[test]
fn nothing_the_demo_started_is_left_running() {
    let output = Demo::output();
    let pids = printed_pids(output);
    assert_eq!(pids.len(), 3, "control plane, doubles, operator:\n{output}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }

    let state = state_dir(output);
    let pgrep = Command::new("pgrep").args(["-f", state]).output().unwrap();
    let left = String::from_utf8_lossy(&pgrep.stdout);
    assert!(
        left.trim().is_empty(),
        "processes still use {state}: {left}"
    );
    assert!(!Path::new(state).exists(), "{state} was not removed");
}
