//! What every reconciler shares: the client, the clock, the caches and the settings.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{MaintenanceWindow, ManagedVM, PatchBaseline, PatchException};
use crate::clock::Clock;
use crate::kubevirt::{VirtualMachine, VirtualMachineInstance};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "patchkeeper";

/// How the operator was started.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// The image patch Jobs run when a window names none.
    pub runner_image: String,
    /// The clock decisions are made by.
    pub clock: Clock,
    /// Where `/metrics`, `/livez` and `/readyz` are served; none to serve nothing.
    pub http_addr: Option<std::net::SocketAddr>,
    /// The Lease to hold before acting; none to act at once (a single process).
    pub leader: Option<super::leader::LeaseConfig>,
}

/// The caches the reconcilers read instead of asking the API server.
#[derive(Clone, Debug)]
pub struct Stores {
    pub vms: Store<VirtualMachine>,
    pub vmis: Store<VirtualMachineInstance>,
    pub windows: Store<MaintenanceWindow>,
    pub baselines: Store<PatchBaseline>,
    pub exceptions: Store<PatchException>,
    pub managed_vms: Store<ManagedVM>,
    pub jobs: Store<Job>,
}

/// Whether each cache has had its first list.
#[derive(Debug, Default)]
pub struct Listed(pub Vec<Arc<std::sync::atomic::AtomicBool>>);

impl Listed {
    /// Whether every cache has had its first list.
    pub fn all(&self) -> bool {
        self.0
            .iter()
            .all(|flag| flag.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub stores: Stores,
    /// One recorder for the whole operator, so that a repeated Event becomes a series
    /// (`x3 over 2m`) rather than a new line each time.
    pub recorder: Recorder,
    pub metrics: Arc<super::metrics::Metrics>,
    pub listed: Arc<Listed>,
    /// Scan slots taken by this process, until the caches show them.
    pub scan_slots: Arc<super::assessment::ScanSlots>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn clock(&self) -> Clock {
        self.settings.clock
    }

    /// The PatchExceptions of a namespace, from the cache.
    pub fn exceptions_in(&self, namespace: &str) -> Vec<Arc<PatchException>> {
        self.stores
            .exceptions
            .state()
            .into_iter()
            .filter(|e| e.namespace().as_deref() == Some(namespace))
            .collect()
    }

    /// Publishes an Event on `object`. An Event that cannot be written is logged, never
    /// fatal: Events tell the story, they do not drive it.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, event: Event) {
        let reference = object.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(object = %object.name_any(), reason = %event.reason, error = %error, "event not written");
        }
    }

    /// Publishes the same Event on the ManagedVM and on its VirtualMachine.
    pub async fn publish_on_vm(&self, managed: &ManagedVM, event: Event) {
        let vm_ref = ObjectRef::<VirtualMachine>::new(&managed.name_any())
            .within(&managed.namespace().unwrap_or_default());
        if let Some(vm) = self.stores.vms.get(&vm_ref) {
            self.publish(vm.as_ref(), clone_event(&event)).await;
        }
        self.publish(managed, event).await;
    }
}

/// A Normal Event.
pub fn normal(reason: &str, action: &str, note: impl Into<String>) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: None,
    }
}

/// A Warning Event.
pub fn warning(reason: &str, action: &str, note: impl Into<String>) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: None,
    }
}

fn clone_event(event: &Event) -> Event {
    Event {
        type_: event.type_,
        reason: event.reason.clone(),
        note: event.note.clone(),
        action: event.action.clone(),
        secondary: event.secondary.clone(),
    }
}
