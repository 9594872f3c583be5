//! Prometheus metrics: reconciles and errors per controller, the fleet by compliance and
//! verdict, window runs and VM outcomes, phase durations, and VMs woken.

use std::sync::Mutex;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::ManagedVM;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetLabels {
    pub namespace: String,
    pub compliance: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    managed_vms: Family<FleetLabels, Gauge>,
    pub window_runs: Family<ResultLabels, Counter>,
    pub vm_outcomes: Family<ResultLabels, Counter>,
    pub phase_seconds: Family<PhaseLabels, Histogram>,
    pub vms_woken: Counter,
    fleet: Mutex<Vec<Store<ManagedVM>>>,
}

fn phase_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("patchkeeper");
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            managed_vms: Family::default(),
            window_runs: Family::default(),
            vm_outcomes: Family::default(),
            phase_seconds: Family::new_with_constructor(phase_histogram),
            vms_woken: Counter::default(),
            fleet: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles, per controller",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, per controller and error category",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "managed_vms",
            "Managed VMs by namespace, compliance and verdict",
            metrics.managed_vms.clone(),
        );
        registry.register(
            "window_runs",
            "Window runs that ended, by result",
            metrics.window_runs.clone(),
        );
        registry.register(
            "vm_runs",
            "VM runs that ended, by outcome",
            metrics.vm_outcomes.clone(),
        );
        registry.register(
            "phase_duration_seconds",
            "Time VMs spent in each run phase",
            metrics.phase_seconds.clone(),
        );
        registry.register(
            "vms_woken",
            "Dormant VMs woken for patching",
            metrics.vms_woken.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts the fleet in this cache at every scrape.
    pub fn watch_fleet(&self, store: Store<ManagedVM>) {
        self.fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(store);
    }

    pub fn reconciled(&self, controller: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    pub fn failed(&self, controller: &str, category: &str) {
        let labels = ErrorLabels {
            controller: controller.into(),
            category: category.into(),
        };
        self.reconcile_errors.get_or_create(&labels).inc();
    }

    pub fn phase_ended(&self, phase: &str, seconds: f64) {
        self.phase_seconds
            .get_or_create(&PhaseLabels {
                phase: phase.into(),
            })
            .observe(seconds.max(0.0));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.count_fleet();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    fn count_fleet(&self) {
        self.managed_vms.clear();
        let stores = self.fleet.lock().unwrap_or_else(|e| e.into_inner());
        for managed in stores.iter().flat_map(Store::state) {
            let status = managed.status.clone().unwrap_or_default();
            let compliance = status
                .compliance
                .map(|c| format!("{:?}", c.state))
                .unwrap_or_else(|| "Unknown".into());
            let verdict = status
                .verdict
                .map(|v| format!("{:?}", v.decision))
                .unwrap_or_else(|| "None".into());
            let namespace = kube::ResourceExt::namespace(managed.as_ref()).unwrap_or_default();
            self.managed_vms
                .get_or_create(&FleetLabels {
                    namespace,
                    compliance,
                    verdict,
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_carry_the_prefix_and_labels() {
        let metrics = Metrics::default();
        metrics.reconciled("window");
        metrics.failed("window", "ApiError");
        metrics.vms_woken.inc();
        let text = metrics.render();
        assert!(
            text.contains("patchkeeper_reconciles_total{controller=\"window\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "patchkeeper_reconcile_errors_total{controller=\"window\",category=\"ApiError\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("patchkeeper_vms_woken_total 1"), "{text}");
    }
}
