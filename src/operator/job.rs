//! The patch Jobs: one per VM, run and step (scan, then install), with a deterministic name
//! so that a restarted operator or a repeated event never creates a second one.
//!
//! Jobs run the patch runner from the window's executor image under the "restricted" pod
//! security standard, with the window's SSH Secret mounted read-only. The operator never
//! reads that Secret itself.

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

use crate::api::baseline::RebootPolicy;
use crate::api::window::Executor;

/// Label: the VM a Job patches.
pub const VM_LABEL: &str = "patchkeeper.io/vm";
/// Label: the window run a Job belongs to.
pub const RUN_LABEL: &str = "patchkeeper.io/run";
/// Label: the window a Job belongs to.
pub const WINDOW_LABEL: &str = "patchkeeper.io/window";
/// Label: `scan` or `install`.
pub const STEP_LABEL: &str = "patchkeeper.io/job";
/// Label on everything the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "patchkeeper");

/// Where the SSH Secret is mounted in the runner's container.
const SSH_DIR: &str = "/etc/patchkeeper/ssh";
/// The user the runner runs as: not root, as the restricted standard requires.
const RUNNER_UID: i64 = 65532;

/// What a Job does on its VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// List installed packages and available updates; change nothing.
    Scan,
    /// Install exactly the approved list.
    Install,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scan => "scan",
            Self::Install => "install",
        }
    }
}

/// Everything a patch Job is built from.
#[derive(Clone, Debug)]
pub struct JobRequest<'a> {
    pub window: &'a str,
    pub run: &'a str,
    pub vm: &'a str,
    pub step: Step,
    /// The VM's address, from its running instance.
    pub host: &'a str,
    pub executor: &'a Executor,
    /// Used when the executor names no image.
    pub default_image: &'a str,
    pub reboot: RebootPolicy,
    /// `name=version` pairs, for an install.
    pub packages: &'a [String],
    /// Package patterns (`pattern` or `pattern=version`) the install must not touch, not
    /// even as a dependency.
    pub blocked: &'a [String],
    /// The Job must end before this: the time left in the window.
    pub deadline: SignedDuration,
    /// The ManagedVM, so that the Job goes when the VM goes.
    pub owner: OwnerReference,
}

/// The Job's name: stable for a VM, run and step, within the 63 characters a label value
/// (the Job controller copies it into one) may have.
pub fn job_name(vm: &str, run: &str, step: Step) -> String {
    let suffix = format!("-{run}-{}", step.as_str());
    let room = 63 - suffix.len();
    if vm.len() <= room {
        return format!("{vm}{suffix}");
    }
    // Long VM names are cut and made unique again by a hash of the whole name.
    let hash = format!("{:08x}", fnv1a(vm.as_bytes()));
    let keep = vm
        .char_indices()
        .take_while(|(i, _)| *i < room - 9)
        .map(|(_, c)| c)
        .collect::<String>();
    format!("{}-{hash}{suffix}", keep.trim_end_matches('-'))
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Builds the Job.
pub fn build(request: &JobRequest<'_>) -> Job {
    let name = job_name(request.vm, request.run, request.step);
    let labels: BTreeMap<String, String> = [
        (MANAGED_BY.0, MANAGED_BY.1),
        (VM_LABEL, request.vm),
        (RUN_LABEL, request.run),
        (WINDOW_LABEL, request.window),
        (STEP_LABEL, request.step.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let deadline = request.deadline.as_secs().max(1);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels.clone()),
            owner_references: Some(vec![request.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(deadline),
            ttl_seconds_after_finished: Some(7 * 24 * 3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(request)),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(request: &JobRequest<'_>) -> PodSpec {
    let executor = request.executor;
    PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: executor.service_account_name.clone(),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            fs_group: Some(RUNNER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![runner_container(request)],
        volumes: Some(vec![Volume {
            name: "ssh".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(executor.ssh_secret_ref.name.clone()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    }
}

fn runner_container(request: &JobRequest<'_>) -> Container {
    let executor = request.executor;
    Container {
        name: "runner".into(),
        image: Some(
            executor
                .image
                .clone()
                .unwrap_or_else(|| request.default_image.to_string()),
        ),
        args: Some(vec!["runner".into()]),
        env: Some(runner_env(request)),
        resources: executor.resources.clone(),
        termination_message_policy: Some("File".into()),
        volume_mounts: Some(vec![VolumeMount {
            name: "ssh".into(),
            mount_path: SSH_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn runner_env(request: &JobRequest<'_>) -> Vec<EnvVar> {
    let executor = request.executor;
    let timeouts = &executor.timeouts;
    let reboot = match request.reboot {
        RebootPolicy::IfRequired => "IfRequired",
        RebootPolicy::Never => "Never",
        RebootPolicy::Always => "Always",
    };
    let mut env = vec![
        ("PATCHKEEPER_HOST", request.host.to_string()),
        ("PATCHKEEPER_PORT", executor.ssh_port.to_string()),
        ("PATCHKEEPER_USER", executor.ssh_user.clone()),
        (
            "PATCHKEEPER_PRIVATE_KEY",
            format!("{SSH_DIR}/ssh-privatekey"),
        ),
        ("PATCHKEEPER_KNOWN_HOSTS", format!("{SSH_DIR}/known_hosts")),
        ("PATCHKEEPER_MODE", request.step.as_str().to_string()),
        ("PATCHKEEPER_REBOOT", reboot.to_string()),
        (
            "PATCHKEEPER_CONNECT_TIMEOUT",
            timeouts.ssh_ready.to_string(),
        ),
        ("PATCHKEEPER_SCAN_TIMEOUT", timeouts.scan.to_string()),
        ("PATCHKEEPER_INSTALL_TIMEOUT", timeouts.install.to_string()),
        ("PATCHKEEPER_REBOOT_TIMEOUT", timeouts.reboot.to_string()),
    ];
    if request.step == Step::Install {
        env.push(("PATCHKEEPER_PACKAGES", request.packages.join(",")));
        if !request.blocked.is_empty() {
            env.push(("PATCHKEEPER_BLOCKED", request.blocked.join(",")));
        }
    }
    env.into_iter()
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::LocalRef;
    use crate::api::window::PhaseTimeouts;

    fn executor() -> Executor {
        Executor {
            ssh_secret_ref: LocalRef {
                name: "patchkeeper-ssh".into(),
            },
            ssh_user: "root".into(),
            ssh_port: 22,
            image: None,
            service_account_name: None,
            resources: None,
            timeouts: PhaseTimeouts::default(),
        }
    }

    fn request<'a>(executor: &'a Executor, packages: &'a [String]) -> JobRequest<'a> {
        const BLOCKED: &[String] = &[];
        JobRequest {
            window: "nightly",
            run: "20261208t2200z",
            vm: "web-1",
            step: Step::Install,
            host: "192.0.2.10",
            executor,
            default_image: "patchkeeper:dev",
            reboot: RebootPolicy::IfRequired,
            packages,
            blocked: BLOCKED,
            deadline: SignedDuration::from_mins(90),
            owner: OwnerReference::default(),
        }
    }

    #[test]
    fn the_same_vm_run_and_step_always_get_the_same_name() {
        assert_eq!(
            job_name("web-1", "20261208t2200z", Step::Scan),
            "web-1-20261208t2200z-scan"
        );
        assert_eq!(
            job_name("web-1", "20261208t2200z", Step::Scan),
            job_name("web-1", "20261208t2200z", Step::Scan)
        );
    }

    #[test]
    fn long_vm_names_are_cut_to_63_characters_and_stay_distinct() {
        let long_a = format!("{}-a", "x".repeat(70));
        let long_b = format!("{}-b", "x".repeat(70));
        let a = job_name(&long_a, "20261208t2200z", Step::Install);
        let b = job_name(&long_b, "20261208t2200z", Step::Install);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_job_meets_the_restricted_pod_security_standard() {
        let executor = executor();
        let job = build(&request(&executor, &[]));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }

    #[test]
    fn an_install_job_is_told_exactly_what_to_install() {
        let executor = executor();
        let packages = vec!["openssl=3.0.15-1".to_string(), "curl=7.88.1-10".to_string()];
        let job = build(&request(&executor, &packages));
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let packages = env
            .iter()
            .find(|e| e.name == "PATCHKEEPER_PACKAGES")
            .unwrap();
        assert_eq!(
            packages.value.as_deref(),
            Some("openssl=3.0.15-1,curl=7.88.1-10")
        );
    }

    #[test]
    fn an_install_job_is_told_what_it_must_not_touch() {
        let executor = executor();
        let packages = vec!["openssl=3.0.15-1".to_string()];
        let blocked = vec!["linux-image-*".to_string(), "curl=7.88.1-10".to_string()];
        let job = build(&JobRequest {
            blocked: &blocked,
            ..request(&executor, &packages)
        });
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let blocked = env
            .iter()
            .find(|e| e.name == "PATCHKEEPER_BLOCKED")
            .unwrap();
        assert_eq!(
            blocked.value.as_deref(),
            Some("linux-image-*,curl=7.88.1-10")
        );
    }

    #[test]
    fn the_ssh_secret_is_mounted_read_only_and_never_in_the_environment() {
        let executor = executor();
        let job = build(&request(&executor, &[]));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("patchkeeper-ssh")
        );
        assert_eq!(
            pod.containers[0].volume_mounts.as_ref().unwrap()[0].read_only,
            Some(true)
        );
        assert!(
            pod.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .all(|e| e.value_from.is_none())
        );
    }
}
