//! `/metrics`, `/livez` and `/readyz` on one port. `/readyz` answers 200 only once the
//! operator leads and its caches have listed everything, or while it stands by.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::metrics::Metrics;

/// Where the operator stands, for `/readyz`.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const STARTING: u8 = 0;
const STANDING_BY: u8 = 1;
const READY: u8 = 2;

impl Readiness {
    pub fn standing_by(&self) {
        self.0.store(STANDING_BY, Ordering::SeqCst);
    }

    pub fn starting(&self) {
        self.0.store(STARTING, Ordering::SeqCst);
    }

    pub fn ready(&self) {
        self.0.store(READY, Ordering::SeqCst);
    }

    fn answer(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::SeqCst) {
            READY => (StatusCode::OK, "ok: leading, caches synced\n"),
            STANDING_BY => (StatusCode::OK, "ok: standing by for the leader lease\n"),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: caches are still listing\n",
            ),
        }
    }
}

#[derive(Clone, Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Serves the endpoints until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Shared { metrics, readiness });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /livez and /readyz");
    axum::serve(listener, router).await
}

async fn render_metrics(
    State(shared): State<Shared>,
) -> ([(&'static str, &'static str); 1], String) {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([("content-type", content_type)], shared.metrics.render())
}

async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    shared.readiness.answer()
}
