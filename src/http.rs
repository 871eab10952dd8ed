//! The appliance's HTTP endpoints: liveness, readiness, status and metrics.

use crate::engines::WorkerHealth;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

/// What `/status` and `/readyz` report.
#[derive(Debug, Clone, Serialize)]
pub struct ApplianceStatus {
    /// Every engine warm and the bot loaded: calls can be answered.
    pub ready: bool,
    /// Name of the bot being served, once it is loaded.
    pub bot: Option<String>,
    /// Why the bot (or an engine it needs) could not be brought up, until that is fixed.
    pub bot_error: Option<String>,
    /// The model pack the engines run.
    pub pack: String,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Bot prompts with pre-synthesised audio ready to play.
    pub prompts_cached: usize,
    /// State of every engine worker.
    pub engines: Vec<WorkerHealth>,
    /// The cloud bot's health and where new calls go (when one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::continuity::CloudStatus>,
}

/// Produces the current status on demand.
pub type StatusSource = Arc<dyn Fn() -> ApplianceStatus + Send + Sync>;

/// The routes: `/healthz` (alive), `/readyz` (503 until ready), `/status` (JSON) and `/metrics`
/// (Prometheus).
pub fn router(status: StatusSource) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/status",
            get(|State(s): State<StatusSource>| async move { Json(s()) }),
        )
        .route("/metrics", get(metrics))
        .with_state(status)
}

async fn readyz(State(status): State<StatusSource>) -> Response {
    let status = status();
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status)).into_response()
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

/// Serve until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, status: StatusSource) -> std::io::Result<()> {
    axum::serve(listener, router(status)).await
}
