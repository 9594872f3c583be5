//! The operator's image, built where no container engine runs: `scripts/build-image.sh`
//! writes an OCI image archive, read back here as a runtime reads it (index.json, then the
//! manifest, then the config and the layer), every blob checked against its digest.
//!
//! To keep the suite's time bounded the archive is built from the debug profile's static
//! binary (`--profile dev`); the release image differs only in the binary's optimisation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(REPOSITORY)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A scratch folder of this test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(REPOSITORY).join("target/image-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An unpacked OCI image layout.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn unpack(archive: &Path, dir: PathBuf) -> Self {
        run(
            "tar",
            &[
                "-xf",
                archive.to_str().unwrap(),
                "-C",
                dir.to_str().unwrap(),
            ],
        );
        Self { dir }
    }

    fn json(&self, file: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join(file)).unwrap()).unwrap()
    }

    /// The blob a descriptor points at, checked against the descriptor's digest and size.
    fn blob(&self, descriptor: &Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap();
        let data = std::fs::read(self.dir.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(sha256(&data), digest, "blob {digest} holds something else");
        assert_eq!(descriptor["size"], data.len(), "blob {digest}'s size");
        data
    }
}

#[test]
fn the_image_archive_holds_the_static_binary_run_as_65532() {
    let work = scratch("static");
    let archive = work.join("patchkeeper-oci.tar");
    let output = archive.to_str().unwrap();
    run(
        "scripts/build-image.sh",
        &["--profile", "dev", "--output", output],
    );

    let layout = Layout::unpack(&archive, scratch("layout"));
    assert_eq!(layout.json("oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = layout.json("index.json");
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        version
    );
    let manifest: Value = serde_json::from_slice(&layout.blob(entry)).unwrap();
    let config: Value = serde_json::from_slice(&layout.blob(&manifest["config"])).unwrap();

    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/patchkeeper"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["run"]));
    assert_eq!(
        (&config["os"], &config["architecture"]),
        (&"linux".into(), &"amd64".into())
    );

    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = work.join("layer.tar.gz");
    std::fs::write(&compressed, layout.blob(&layers[0])).unwrap();
    let root = run("gzip", &["-dc", compressed.to_str().unwrap()]).stdout;
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256(&root),
        "the layer's diff id"
    );

    let rootfs = scratch("rootfs");
    run(
        "tar",
        &[
            "-xzf",
            compressed.to_str().unwrap(),
            "-C",
            rootfs.to_str().unwrap(),
        ],
    );
    assert_root_file_system(&rootfs);
}

/// The layer holds the static binary, executable by anyone, and the host's CA bundle.
fn assert_root_file_system(rootfs: &Path) {
    let binary = rootfs.join("patchkeeper");
    let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "/patchkeeper's mode");
    let linkage = Command::new("ldd").arg(&binary).output().unwrap();
    let linkage = String::from_utf8_lossy(&linkage.stdout).to_string()
        + &String::from_utf8_lossy(&linkage.stderr);
    assert!(
        linkage.contains("not a dynamic executable") || linkage.contains("statically linked"),
        "/patchkeeper is not static: {linkage}"
    );
    let version = run(binary.to_str().unwrap(), &["--version"]).stdout;
    assert!(String::from_utf8_lossy(&version).contains(env!("CARGO_PKG_VERSION")));

    let bundle = std::fs::read(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert_eq!(
        bundle,
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap()
    );
    let mut entries: Vec<String> = std::fs::read_dir(rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["etc", "patchkeeper"], "nothing else in the image");
}

#[test]
fn the_image_builder_refuses_a_dynamically_linked_binary() {
    let work = scratch("dynamic");
    let output = Command::new("python3")
        .arg("scripts/oci-image.py")
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_patchkeeper"),
            "--version",
            "0.0.0",
        ])
        .arg("--output")
        .arg(work.join("refused.tar"))
        .current_dir(REPOSITORY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("dynamically linked"), "{message}");
    assert!(!work.join("refused.tar").exists());
}
