//! The real control plane that integration tests run against.
//!
//! One control plane per test binary: the first test that asks starts
//! `tests/testbed/testbed.sh up`, which stops everything it started once this process ends.
//! Set `PATCHKEEPER_TESTBED` to the state directory of a control plane that is already
//! running (`tests/testbed/testbed.sh up --state-dir DIR`) to attach to it instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long a cold start may take, including building the binaries on a fresh machine.
const START_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// A running control plane and the ways to reach it.
#[derive(Debug)]
pub struct Testbed {
    pub state_dir: PathBuf,
    pub bin_dir: PathBuf,
}

static TESTBED: OnceLock<Testbed> = OnceLock::new();

/// The control plane for this test binary, started on first use.
pub fn testbed() -> &'static Testbed {
    TESTBED.get_or_init(|| match std::env::var_os("PATCHKEEPER_TESTBED") {
        Some(dir) => attach(PathBuf::from(dir)),
        None => start(),
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn attach(state_dir: PathBuf) -> Testbed {
    assert!(
        state_dir.join("ready").exists(),
        "PATCHKEEPER_TESTBED={} names no running control plane (no `ready` file); start one \
         with `tests/testbed/testbed.sh up --state-dir DIR` or unset the variable",
        state_dir.display()
    );
    Testbed {
        bin_dir: bin_dir_of(&state_dir),
        state_dir,
    }
}

// The control plane outlives this function on purpose: it runs until this process ends,
// when the script notices and stops it, so the child is never waited for.
#[allow(clippy::zombie_processes)]
fn start() -> Testbed {
    let state_dir =
        std::env::temp_dir().join(format!("patchkeeper-testbed-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).expect("create the testbed state directory");
    let log = state_dir.join("testbed.log");
    let log_file = std::fs::File::create(&log).expect("create the testbed log");
    let mut child = Command::new(repo_root().join("tests/testbed/testbed.sh"))
        .args(["up", "--state-dir"])
        .arg(&state_dir)
        .args([
            "--remove-state",
            "--watch-pid",
            &std::process::id().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone the log handle"))
        .stderr(log_file)
        .spawn()
        .expect("run tests/testbed/testbed.sh (bash, go, openssl, curl and python3 are needed)");

    let deadline = Instant::now() + START_TIMEOUT;
    while !state_dir.join("ready").exists() {
        if let Some(status) = child.try_wait().expect("poll the testbed process") {
            panic!(
                "the local control plane failed to start ({status}); its output is in {}:\n{}\n\
                 Build the binaries with `tests/testbed/build.sh` to see the build's own output.",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the control plane was not ready in time; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Testbed {
        bin_dir: bin_dir_of(&state_dir),
        state_dir,
    }
}

fn bin_dir_of(state_dir: &Path) -> PathBuf {
    let env = std::fs::read_to_string(state_dir.join("env")).expect("read the testbed env file");
    env.lines()
        .find_map(|line| line.strip_prefix("export TESTBED_BIN="))
        .map(PathBuf::from)
        .expect("the testbed env file names TESTBED_BIN")
}

impl Testbed {
    /// The admin kubeconfig (group `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// The kubeconfig of a user with no groups: RBAC refuses it everything not granted.
    pub fn user_kubeconfig(&self) -> PathBuf {
        self.state_dir.join("kubeconfig-user")
    }

    /// The user name that `user_kubeconfig` authenticates as, for RoleBindings.
    pub const USER: &'static str = "testbed-user";

    /// A new admin client. Make one per test: a client belongs to the runtime it first ran on.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig()).await
    }

    /// A new client for the unprivileged user.
    pub async fn user_client(&self) -> Client {
        client_from(&self.user_kubeconfig()).await
    }

    /// Runs a control-plane binary (kubectl, helm) with the admin kubeconfig.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(self.bin_dir.join(program))
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program} from {}: {e}", self.bin_dir.display()))
    }

    /// Installs patchkeeper's CRDs from `crds/` (once per test binary) and waits until the
    /// API server serves them.
    pub fn install_crds(&self) {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let crds = repo_root().join("crds");
            let crds = crds.to_str().expect("a UTF-8 repository path");
            self.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]);
            self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                crds,
            ]);
        });
    }

    /// Runs kubectl with the admin kubeconfig and returns its standard output; panics with
    /// kubectl's own message when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = self.run("kubectl", args);
        assert!(
            output.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the testbed kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load the testbed kubeconfig");
    Client::try_from(config).expect("build a client for the testbed")
}
