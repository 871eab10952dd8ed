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
    pub bot: Option<String>,
    pub bot_error: Option<String>,
    pub pack: String,
    pub uptime_s: u64,
    pub prompts_cached: usize,
    pub engines: Vec<WorkerHealth>,
    /// The cloud bot's health and where new calls go (when one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::continuity::CloudStatus>,
}

/// Produces the current status on demand.
pub type StatusSource = Arc<dyn Fn() -> ApplianceStatus + Send + Sync>;

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
