//! Operational endpoints every Sentinel process serves: `GET /healthz` (alive),
//! `GET /readyz` (log and database reachable, not shutting down) and `GET /metrics`
//! (Prometheus text format).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sentinel_log::EventLog;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Buckets for every `_seconds` histogram: 1 ms to 1 h (handler durations up to time-to-merge).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle. A second
/// call (several `start`s in one test process) returns the first handle.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program chose its own): render an
            // unattached recorder so /metrics still answers, empty.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Spawns the recorder's upkeep (drains histogram buckets) until `shutdown`.
pub fn spawn_upkeep(shutdown: CancellationToken) {
    let handle = prometheus();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// The projection database, when this process uses one.
    pub store: Option<sentinel_projections::Store>,
    /// Cancelled when the process is shutting down or a stage died.
    pub shutdown: CancellationToken,
}

/// The operational routes of a process that does not serve the API (which has its own).
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(r): State<Readiness>) -> Response {
    let log = match tokio::time::timeout(
        Duration::from_secs(2),
        r.log.partitions(sentinel_runtime::EVENTS_TOPIC),
    )
    .await
    {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "unreachable: timed out after 2s".to_owned(),
    };
    let database = match &r.store {
        None => "not used".to_owned(),
        Some(store) => match tokio::time::timeout(Duration::from_secs(2), store.begin()).await {
            Ok(Ok(_tx)) => "ok".to_owned(),
            Ok(Err(e)) => format!("unreachable: {e}"),
            Err(_) => "unreachable: timed out after 2s".to_owned(),
        },
    };
    let stages = if r.shutdown.is_cancelled() {
        "stopping"
    } else {
        "running"
    };
    let ready = log == "ok" && (database == "ok" || database == "not used") && stages == "running";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "log": log,
            "database": database,
            "stages": stages,
        })),
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus().render(),
    )
        .into_response()
}
