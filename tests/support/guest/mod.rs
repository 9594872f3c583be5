//! A test guest for the patch runner: the cached Debian root from `tests/guest/build-root.sh`,
//! served by a real OpenSSH server on a free loopback port.
//!
//! Each guest gets its own copy-on-write view of the root (an overlay whose upper layer lives
//! in a temporary folder), its own mount and PID namespaces (so /proc, /dev, /run and the
//! overlay vanish with it), a fresh client key and host key, and a known_hosts file pinning
//! that host key. Inside, `guest-init-double.sh` plays init and `reboot-double.sh` plays
//! reboot(8): see those files for what a reboot means here.
//!
//! Needs root, `unshare` and the tools listed in `tests/guest/host-packages.sh`; when they
//! are missing the test fails and says how to get them.

#![allow(dead_code)]

use std::io::{BufRead, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use patchkeeper::runner::{RebootPolicy, RunMode, RunnerArgs};
use patchkeeper::summary::RunSummary;

const INIT_DOUBLE: &str = include_str!("guest-init-double.sh");
const REBOOT_DOUBLE: &str = include_str!("reboot-double.sh");
const SSHD_CONFIG: &str = "/etc/ssh/pk_test_sshd_config";

/// Which package manager the guest has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// Debian with apt and dpkg.
    #[default]
    Apt,
    /// The RHEL-family stand-in: Debian with dnf and rpm (see `tests/guest/build-root.sh`).
    Dnf,
}

/// Variations of the standard guest.
#[derive(Clone, Debug, Default)]
pub struct GuestOptions {
    /// The package manager.
    pub flavour: Flavour,
    /// Add an apt source whose index files do not exist, so `apt-get update` fails.
    pub broken_source: bool,
    /// Add this many installed packages with an update each (index entries only, no .debs):
    /// enough of them to overflow any termination message.
    pub fake_updates: usize,
}

/// A running test guest; dropping it stops everything and removes its files.
pub struct TestGuest {
    dir: PathBuf,
    server: Child,
    /// The loopback port sshd listens on.
    pub port: u16,
}

impl TestGuest {
    /// Starts the standard guest.
    pub fn start() -> TestGuest {
        Self::start_with(GuestOptions::default())
    }

    /// Starts a guest with the given variations.
    pub fn start_with(options: GuestOptions) -> TestGuest {
        let root = cached_root(options.flavour);
        let dir = fresh_dir();
        let upper = dir.join("upper");
        for sub in [
            "upper",
            "work",
            "merged",
            "upper/etc/ssh",
            "upper/usr/local/sbin",
        ] {
            mkdir(&dir.join(sub));
        }
        let port = free_port();
        install_doubles(&upper);
        write_keys(&dir, &upper, port);
        write_sshd_config(&upper, port);
        if options.broken_source {
            add_broken_source(&upper);
        }
        if options.fake_updates > 0 {
            add_fake_updates(root, &upper, options.fake_updates);
        }
        let server = spawn_server(root, &dir);
        let mut guest = TestGuest { dir, server, port };
        guest.wait_until_listening();
        guest
    }

    /// Runner arguments for this guest with short timeouts, the summary going to a file in
    /// the guest's folder.
    pub fn args(&self, mode: RunMode) -> RunnerArgs {
        RunnerArgs {
            host: "127.0.0.1".to_string(),
            port: self.port,
            user: "root".to_string(),
            private_key: self.dir.join("client_key"),
            known_hosts: self.dir.join("known_hosts"),
            mode,
            packages: Vec::new(),
            reboot: RebootPolicy::Never,
            connect_timeout: Duration::from_secs(20),
            scan_timeout: Duration::from_secs(120),
            install_timeout: Duration::from_secs(180),
            reboot_timeout: Duration::from_secs(60),
            termination_message_path: self.dir.join("termination-log"),
            blocked: Vec::new(),
        }
    }

    /// Runner arguments for an install of the given `name=version` list.
    pub fn install_args(&self, packages: &[&str]) -> RunnerArgs {
        let mut args = self.args(RunMode::Install);
        args.packages = packages
            .iter()
            .map(|p| p.parse().expect("valid package spec"))
            .collect();
        args
    }

    /// Replaces the pinned host key with another, freshly generated one.
    pub fn pin_another_host_key(&self) {
        let other = self.dir.join("other_host_key");
        keygen(&other);
        let key = std::fs::read_to_string(other.with_extension("pub")).expect("read other key");
        let line = known_hosts_line(self.port, &key);
        std::fs::write(self.dir.join("known_hosts"), line).expect("write known_hosts");
    }

    /// Empties the known_hosts file: the guest is unknown.
    pub fn forget_host_key(&self) {
        std::fs::write(self.dir.join("known_hosts"), "").expect("write known_hosts");
    }

    /// The version of `package` installed in the guest now, read from dpkg's database.
    pub fn installed_version(&self, package: &str) -> Option<String> {
        let status = std::fs::read_to_string(self.guest_path("var/lib/dpkg/status"))
            .expect("read the guest's dpkg status");
        status.split("\n\n").find_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let installed = field("Status:").is_some_and(|s| s.ends_with(" installed"));
            (field("Package:").as_deref() == Some(package) && installed)
                .then(|| field("Version:"))
                .flatten()
        })
    }

    /// The `version-release` of `package` installed in the dnf guest now, asked of rpm.
    pub fn rpm_version(&self, package: &str) -> Option<String> {
        let output = Command::new("chroot")
            .arg(self.guest_path(""))
            .args(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", package])
            .output()
            .expect("chroot into the guest to ask rpm");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether `path` (relative to the guest's root) exists in the guest now.
    pub fn guest_has(&self, path: &str) -> bool {
        self.guest_path(path).exists()
    }

    /// The guest's sshd log, for failure messages.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.guest_path("var/log/pk-test-sshd.log")).unwrap_or_default()
    }

    /// A path inside the running guest, seen through its init's root.
    fn guest_path(&self, path: &str) -> PathBuf {
        let init = guest_init_pid(self.server.id());
        PathBuf::from(format!("/proc/{init}/root")).join(path)
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.server.try_wait() {
                panic!(
                    "the test guest stopped ({status}): {}",
                    self.startup_errors()
                );
            }
            if ssh_banner(self.port).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the test guest's sshd did not answer within 20s: {}",
            self.startup_errors()
        );
    }

    fn startup_errors(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(pipe) = self.server.stderr.as_mut() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let log = std::fs::read_to_string(self.dir.join("upper/var/log/pk-test-sshd.log"));
        format!("{stderr}\n{}", log.unwrap_or_default())
    }
}

impl Drop for TestGuest {
    fn drop(&mut self) {
        // unshare --kill-child takes the guest's init, and with it the namespace, along.
        let _ = self.server.kill();
        let _ = self.server.wait();
        // The overlay is unmounted with the namespace; wait until it is really gone.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs the runner (as `patchkeeper runner` would) and reads back its termination message.
pub async fn run(args: RunnerArgs) -> (RunSummary, String) {
    let path = args.termination_message_path.clone();
    let _ = patchkeeper::runner::run(args).await;
    let message =
        std::fs::read_to_string(&path).expect("the runner writes its termination message");
    let summary = RunSummary::from_termination_message(&message).expect("a valid summary");
    (summary, message)
}

/// The cached guest root of a flavour, built on first use in this process.
pub fn cached_root(flavour: Flavour) -> &'static Path {
    static APT: OnceLock<PathBuf> = OnceLock::new();
    static DNF: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name) = match flavour {
        Flavour::Apt => (&APT, "apt"),
        Flavour::Dnf => (&DNF, "dnf"),
    };
    cell.get_or_init(|| build_root(name))
}

fn build_root(flavour: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/build-root.sh");
    let output = Command::new(&script)
        .arg(flavour)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {}: {e}", script.display());
        });
    assert!(
        output.status.success(),
        "building the {flavour} guest root failed (install host tools with \
         tests/guest/host-packages.sh as root, then run tests/guest/build-root.sh {flavour} to \
         see the details):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("patchkeeper-guest-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    mkdir(&dir);
    dir
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        mkdir(parent);
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn install_doubles(upper: &Path) {
    write(
        &upper.join("usr/local/sbin/pk-test-guest-init"),
        INIT_DOUBLE,
        0o755,
    );
    write(&upper.join("usr/local/sbin/reboot"), REBOOT_DOUBLE, 0o755);
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "patchkeeper-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (install openssh-client: tests/guest/host-packages.sh)");
    assert!(status.success(), "ssh-keygen failed");
}

fn known_hosts_line(port: u16, public_key: &str) -> String {
    let mut words = public_key.split_whitespace();
    let (kind, blob) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    format!("[127.0.0.1]:{port} {kind} {blob}\n")
}

/// A fresh client key, a fresh host key in the guest, and known_hosts pinning the latter.
fn write_keys(dir: &Path, upper: &Path, port: u16) {
    keygen(&dir.join("client_key"));
    let host_key = upper.join("etc/ssh/pk_test_host_key");
    keygen(&host_key);
    let client_public = std::fs::read_to_string(dir.join("client_key.pub")).expect("client key");
    write(
        &upper.join("etc/ssh/pk_test_authorized_keys"),
        &client_public,
        0o644,
    );
    let host_public = std::fs::read_to_string(host_key.with_extension("pub")).expect("host key");
    write(
        &dir.join("known_hosts"),
        &known_hosts_line(port, &host_public),
        0o644,
    );
}

fn write_sshd_config(upper: &Path, port: u16) {
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/pk_test_host_key\n\
         AuthorizedKeysFile /etc/ssh/pk_test_authorized_keys\nPermitRootLogin prohibit-password\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
         PidFile /run/sshd.pid\nPrintMotd no\nLogLevel VERBOSE\n"
    );
    write(
        &upper.join(SSHD_CONFIG.trim_start_matches('/')),
        &config,
        0o644,
    );
}

fn add_broken_source(upper: &Path) {
    let line = "deb [trusted=yes] file:/srv/pk-missing pk-gone main\n";
    write(
        &upper.join("etc/apt/sources.list.d/pk-broken.list"),
        line,
        0o644,
    );
}

/// Installed-looking packages (dpkg status entries only) with a newer version in a suite of
/// their own. Scans see them as updates; nothing ever installs them.
fn add_fake_updates(root: &Path, upper: &Path, count: usize) {
    let name = |i: usize| format!("pk-fake-{i:05}-with-a-rather-long-package-name-for-size-tests");
    let mut status =
        std::fs::read_to_string(root.join("var/lib/dpkg/status")).expect("dpkg status");
    let mut packages = String::new();
    for i in 0..count {
        status.push_str(&format!(
            "\nPackage: {}\nStatus: install ok installed\nPriority: optional\nSection: misc\n\
             Maintainer: tests <t@patchkeeper.invalid>\nArchitecture: all\nVersion: 1.0\n\
             Description: fake package for size tests\n",
            name(i)
        ));
        packages.push_str(&format!(
            "Package: {}\nVersion: 1.1\nArchitecture: all\nMaintainer: t <t@patchkeeper.invalid>\n\
             Filename: pool/none.deb\nSize: 1\nSHA256: {}\nDescription: fake\n\n",
            name(i),
            "0".repeat(64)
        ));
    }
    write(&upper.join("var/lib/dpkg/status"), &status, 0o644);
    let dists = upper.join("srv/pk-fake/dists/pk-fake");
    write(&dists.join("main/binary-amd64/Packages"), &packages, 0o644);
    let release = Command::new("apt-ftparchive")
        .args(["-o", "APT::FTPArchive::Release::Suite=pk-fake", "release"])
        .arg(&dists)
        .output()
        .expect("apt-ftparchive (install apt-utils: tests/guest/host-packages.sh)");
    assert!(release.status.success(), "apt-ftparchive release failed");
    std::fs::write(dists.join("Release"), release.stdout).expect("write Release");
    let line = "deb [trusted=yes] file:/srv/pk-fake pk-fake main\n";
    write(
        &upper.join("etc/apt/sources.list.d/pk-fake.list"),
        line,
        0o644,
    );
}

/// Starts the guest: new mount and PID namespaces, the overlay, /proc, /dev, tmpfs /run and
/// /tmp, then the init double chrooted in the merged root.
fn spawn_server(root: &Path, dir: &Path) -> Child {
    let merged = dir.join("merged");
    let setup = format!(
        "set -e\n\
         mount -t overlay overlay -o lowerdir={root},upperdir={upper},workdir={work} {m}\n\
         mount -t proc proc {m}/proc\n\
         mount --rbind /dev {m}/dev\n\
         mount -t tmpfs tmpfs {m}/run\n\
         mount -t tmpfs tmpfs {m}/tmp\n\
         exec chroot {m} /usr/local/sbin/pk-test-guest-init {config}\n",
        root = root.display(),
        upper = dir.join("upper").display(),
        work = dir.join("work").display(),
        m = merged.display(),
        config = SSHD_CONFIG,
    );
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
        ])
        .args(["sh", "-c", &setup])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) must be installed, and the tests run as root")
}

/// The guest's init: the one child of the `unshare` process.
fn guest_init_pid(unshare_pid: u32) -> u32 {
    let children = format!("/proc/{unshare_pid}/task/{unshare_pid}/children");
    let text = std::fs::read_to_string(&children).expect("the test guest is running");
    text.split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the guest's init")
}

fn ssh_banner(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("SSH-").then_some(line)
}
