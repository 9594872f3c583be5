//! Runs the test doubles — KubeVirt's controller and the kubelet running patch Pods — against
//! any cluster, for demos where neither exists:
//!
//! ```text
//! kubectl apply --server-side -f tests/fixtures/kubevirt-crds.yaml
//! cargo run --example doubles -- --namespace demo [--namespace more ...]
//! ```
//!
//! Without `--namespace` the doubles act in every namespace. The cluster comes from the usual
//! kubeconfig (`KUBECONFIG`, or `~/.kube/config`); Ctrl-C stops them. Annotations on each
//! VirtualMachine script its guest: see `tests/support/doubles/scenario.rs`.

#[allow(dead_code)]
#[path = "../tests/support/doubles/mod.rs"]
mod doubles;

use clap::Parser;
use doubles::kubelet::KubeletDouble;
use doubles::kubevirt::KubevirtDouble;
use tracing_subscriber::EnvFilter;

/// Play KubeVirt and the kubelet for patchkeeper on a cluster that has neither.
#[derive(Debug, Parser)]
struct Args {
    /// A namespace to act in; repeat for more. Every namespace when none is given.
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let args = Args::parse();
    let client = kube::Client::try_default().await?;

    let scopes: Vec<Option<&str>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    let running: Vec<_> = scopes
        .iter()
        .map(|scope| {
            let kubevirt = KubevirtDouble::start(client.clone(), *scope);
            (kubevirt, KubeletDouble::start(client.clone(), *scope))
        })
        .collect();
    tracing::info!(namespaces = ?args.namespaces, "doubles running; Ctrl-C stops them");

    tokio::signal::ctrl_c().await?;
    drop(running);
    Ok(())
}
