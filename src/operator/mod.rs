//! The operator: watches VirtualMachines and patchkeeper's kinds, keeps the inventory, and
//! runs the maintenance windows.
//!
//! Each reconciler is a pipeline: read from the caches, decide with pure code
//! (`schedule`, `planner`, `policy`), apply, write status.

mod approval_step;
mod assessment;
mod backoff;
pub mod baseline;
mod cache;
pub mod conditions;
mod context;
mod error;
pub mod exception;
mod http;
pub mod inventory;
pub mod job;
pub mod leader;
pub mod members;
mod metrics;
pub mod run;
pub mod scan_wake;
pub mod verdict;
mod vm_run;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{Future, StreamExt, future::BoxFuture};
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

pub use context::{FIELD_MANAGER, Settings};
pub use error::Error;

use crate::api::{MaintenanceWindow, ManagedVM, PatchBaseline, PatchException};
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};
use backoff::Backoff;
use cache::Cache;
use context::{Context, Listed, Stores};
use http::Readiness;
use metrics::Metrics;

/// How many objects of one kind are reconciled at the same time.
const CONCURRENCY: u16 = 8;

/// Runs the operator until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    if let Some(addr) = settings.http_addr {
        let (metrics, readiness) = (metrics.clone(), readiness.clone());
        tokio::spawn(async move {
            if let Err(error) = http::serve(addr, metrics, readiness).await {
                tracing::error!(addr = %addr, error = %error, "cannot serve /metrics, /livez and /readyz");
            }
        });
    }
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown) as BoxFuture<'static, ()>);
    if let Some(lease) = &settings.leader {
        readiness.standing_by();
        tokio::select! {
            acquired = leader::acquire(&client, lease) => acquired?,
            () = shutdown.clone() => return Ok(()),
        }
        readiness.starting();
    }

    // Losing the Lease stops the controllers as a shutdown does, then fails the process so
    // that it starts again as a standby.
    let (lost_sender, lost) = tokio::sync::oneshot::channel::<String>();
    if let Some(lease) = settings.leader.clone() {
        let client = client.clone();
        tokio::spawn(async move {
            let _ = lost_sender.send(leader::hold(&client, &lease).await.to_string());
        });
    }
    let lost = futures::FutureExt::shared(lost);
    let stop = {
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        futures::FutureExt::shared(Box::pin(async move {
            tokio::select! {
                () = shutdown => {}
                Ok(_) = lost => {}
            }
        }) as BoxFuture<'static, ()>)
    };

    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let synced = Arc::new(Synced {
        scopes: scopes.len(),
        done: AtomicUsize::new(0),
        readiness,
    });
    let tasks = scopes.into_iter().map(|scope| {
        let shared = Shared {
            metrics: metrics.clone(),
            synced: synced.clone(),
        };
        run_scope(
            client.clone(),
            settings.clone(),
            scope,
            stop.clone(),
            shared,
        )
    });
    futures::future::join_all(tasks).await;

    if let Some(Ok(reason)) = lost.peek().cloned() {
        return Err(Error::LeaseLost(reason));
    }
    if let Some(lease) = &settings.leader {
        leader::release(&client, lease).await;
    }
    Ok(())
}

/// What every namespace scope shares.
#[derive(Clone, Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    synced: Arc<Synced>,
}

/// Counts the scopes whose caches have listed everything; the operator is ready once all
/// have.
#[derive(Debug)]
struct Synced {
    scopes: usize,
    done: AtomicUsize,
    readiness: Arc<Readiness>,
}

impl Synced {
    fn one_done(&self) {
        if self.done.fetch_add(1, Ordering::SeqCst) + 1 >= self.scopes {
            self.readiness.ready();
            tracing::info!("caches synced; ready");
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The watches and controllers of one namespace (or of all).
async fn run_scope(
    client: Client,
    settings: Settings,
    namespace: Option<String>,
    shutdown: futures::future::Shared<BoxFuture<'static, ()>>,
    shared: Shared,
) {
    let ns = namespace.as_deref();
    let mut vms = Cache::<VirtualMachine>::new();
    let mut vmis = Cache::<VirtualMachineInstance>::new();
    let mut windows = Cache::<MaintenanceWindow>::new();
    let mut baselines = Cache::<PatchBaseline>::new();
    let mut exceptions = Cache::<PatchException>::new();
    let mut managed = Cache::<ManagedVM>::new();
    let mut jobs = Cache::<Job>::new();

    let stores = Stores {
        vms: vms.store(),
        vmis: vmis.store(),
        windows: windows.store(),
        baselines: baselines.store(),
        exceptions: exceptions.store(),
        managed_vms: managed.store(),
        jobs: jobs.store(),
    };
    shared.metrics.watch_fleet(stores.managed_vms.clone());
    let listed = Arc::new(Listed(vec![
        vms.listed(),
        vmis.listed(),
        windows.listed(),
        baselines.listed(),
        exceptions.listed(),
        managed.listed(),
        jobs.listed(),
    ]));
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: Arc::new(settings),
        stores: stores.clone(),
        metrics: shared.metrics.clone(),
        listed: listed.clone(),
        scan_slots: Arc::default(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "patchkeeper".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
    });
    let backoff = Arc::new(Backoff::default());
    let ready = {
        let (listed, synced) = (listed.clone(), shared.synced.clone());
        async move {
            while !listed.all() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            synced.one_done();
        }
    };
    tokio::spawn(ready);

    let inventory = Controller::for_stream(vms.subscribe(), stores.vms.clone())
        .watches_stream(
            vmis.subscribe(),
            same_name::<VirtualMachineInstance, VirtualMachine>,
        )
        .watches_stream(managed.subscribe(), same_name::<ManagedVM, VirtualMachine>)
        .watches_stream(
            windows.subscribe(),
            in_namespace_of(stores.vms.clone(), any),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            resetting(backoff.clone(), "inventory", inventory::reconcile),
            error_policy(backoff.clone(), "inventory"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let managed_by = format!("{}={}", job::MANAGED_BY.0, job::MANAGED_BY.1);
    let windows_ctl = Controller::for_stream(windows.subscribe(), stores.windows.clone())
        .watches_stream(
            managed.subscribe(),
            in_namespace_of(stores.windows.clone(), running),
        )
        .watches_stream(
            vms.subscribe(),
            in_namespace_of(stores.windows.clone(), running),
        )
        .watches_stream(
            vmis.subscribe(),
            in_namespace_of(stores.windows.clone(), running),
        )
        .watches_stream(jobs.subscribe(), window_of_job)
        .watches_stream(
            baselines.subscribe(),
            windows_of_baseline(stores.windows.clone()),
        )
        .watches_stream(
            exceptions.subscribe(),
            in_namespace_of(stores.windows.clone(), any),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            resetting(backoff.clone(), "window", window::reconcile),
            error_policy(backoff.clone(), "window"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let verdicts = Controller::for_stream(managed.subscribe(), stores.managed_vms.clone())
        .watches_stream(vms.subscribe(), same_name::<VirtualMachine, ManagedVM>)
        .watches_stream(
            baselines.subscribe(),
            in_namespace_of(stores.managed_vms.clone(), any),
        )
        .watches_stream(
            exceptions.subscribe(),
            in_namespace_of(stores.managed_vms.clone(), any),
        )
        .watches_stream(jobs.subscribe(), managed_vm_of_job)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            resetting(backoff.clone(), "verdict", verdict::reconcile),
            error_policy(backoff.clone(), "verdict"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let exceptions_ctl = Controller::for_stream(exceptions.subscribe(), stores.exceptions.clone())
        .watches_stream(
            vms.subscribe(),
            in_namespace_of(stores.exceptions.clone(), any),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            resetting(backoff.clone(), "exception", exception::reconcile),
            error_policy(backoff.clone(), "exception"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let baselines_ctl = Controller::for_stream(baselines.subscribe(), stores.baselines.clone())
        .watches_stream(windows.subscribe(), baseline_of_window)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            resetting(backoff.clone(), "baseline", baseline::reconcile),
            error_policy(backoff.clone(), "baseline"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    let plain = watcher::Config::default();
    let watches = futures::future::join_all(vec![
        Box::pin(vms.watch(api(&client, ns), plain.clone())) as BoxFuture<'static, ()>,
        Box::pin(vmis.watch(api(&client, ns), plain.clone())),
        Box::pin(windows.watch(api(&client, ns), plain.clone())),
        Box::pin(baselines.watch(api(&client, ns), plain.clone())),
        Box::pin(exceptions.watch(api(&client, ns), plain.clone())),
        Box::pin(managed.watch(api(&client, ns), plain.clone())),
        Box::pin(jobs.watch(
            api(&client, ns),
            watcher::Config::default().labels(&managed_by),
        )),
    ]);
    tracing::info!(namespace = ns.unwrap_or("<all>"), "watching");
    tokio::select! {
        _ = futures::future::join5(inventory, windows_ctl, verdicts, exceptions_ctl, baselines_ctl) => {}
        _ = watches => {}
    }
}

/// Wraps a reconciler so that it waits for the caches, counts its reconciles, and a success
/// forgets the object's earlier failures.
fn resetting<K, F, Fut>(
    backoff: Arc<Backoff>,
    controller: &'static str,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>
where
    K: ResourceExt + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |object, ctx| {
        let backoff = backoff.clone();
        let key = format!(
            "{controller}:{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        Box::pin(async move {
            // Decisions read the caches: before every cache has listed, a missing baseline
            // or window only means "not listed yet", never "absent".
            if !ctx.listed.all() {
                return Ok(Action::requeue(std::time::Duration::from_millis(250)));
            }
            ctx.metrics.reconciled(controller);
            let result = reconcile(object, ctx).await;
            if result.is_ok() {
                backoff.succeeded(&key);
            }
            result
        })
    }
}

fn error_policy<K>(
    backoff: Arc<Backoff>,
    controller: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action
where
    K: Resource + ResourceExt,
{
    move |object, error, ctx| {
        ctx.metrics.failed(controller, error.category());
        let key = format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        let wait = backoff.failed(&format!("{controller}:{key}"));
        tracing::warn!(controller, object = %key, error = %error, category = error.category(), retry_in = ?wait, "reconcile failed");
        Action::requeue(wait)
    }
}

/// Maps an object to the object of another kind with the same name and namespace.
fn same_name<From: Resource + ResourceExt, To: Resource<DynamicType = ()>>(
    object: From,
) -> Option<ObjectRef<To>> {
    Some(ObjectRef::new(&object.name_any()).within(&object.namespace()?))
}

/// Maps a change to a VM (or its instance or record) to the windows of its namespace that
/// have a run in progress; idle windows do not care.
/// Maps a change of anything in a namespace to every object of the store's kind in that
/// namespace, selected by `keep`.
fn in_namespace_of<K, O>(
    store: kube::runtime::reflector::Store<O>,
    keep: fn(&O) -> bool,
) -> impl Fn(K) -> Vec<ObjectRef<O>>
where
    K: ResourceExt,
    O: Resource<DynamicType = ()> + Clone + 'static,
{
    move |object| {
        let namespace = object.namespace();
        store
            .state()
            .iter()
            .filter(|o| o.namespace() == namespace && keep(o))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

fn any<O>(_: &O) -> bool {
    true
}

/// A window with a run in progress: idle windows do not care about VM changes.
fn running(window: &MaintenanceWindow) -> bool {
    window
        .status
        .as_ref()
        .is_some_and(|s| s.current_run.is_some())
}

fn baseline_of_window(window: MaintenanceWindow) -> Option<ObjectRef<PatchBaseline>> {
    Some(ObjectRef::new(&window.spec.baseline_ref.name).within(&window.namespace()?))
}

fn managed_vm_of_job(job: Job) -> Option<ObjectRef<ManagedVM>> {
    let vm = job.labels().get(job::VM_LABEL)?;
    Some(ObjectRef::new(vm).within(&job.namespace()?))
}

fn window_of_job(job: Job) -> Option<ObjectRef<MaintenanceWindow>> {
    let window = job.labels().get(job::WINDOW_LABEL)?;
    Some(ObjectRef::new(window).within(&job.namespace()?))
}

fn windows_of_baseline(
    windows: kube::runtime::reflector::Store<MaintenanceWindow>,
) -> impl Fn(PatchBaseline) -> Vec<ObjectRef<MaintenanceWindow>> {
    move |baseline| {
        let namespace = baseline.namespace();
        windows
            .state()
            .iter()
            .filter(|w| {
                w.namespace() == namespace && w.spec.baseline_ref.name == baseline.name_any()
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect()
    }
}
