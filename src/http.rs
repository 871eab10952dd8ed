//! The appliance's HTTP endpoints: liveness, readiness, status and metrics,
//! the outcome of streamed calls (`/calls/{id}`), the WebSocket media
//! streams (`crate::transport::websocket`) when they are on, and the admin
//! API (`admin`).

pub mod admin;
pub mod tls;

use crate::engines::WorkerHealth;
use crate::transport::stream::{CallOutcomes, StreamContext};
use axum::extract::{Path, State};
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
    /// The version running, and the install it runs from.
    pub software: Software,
    /// Bot prompts with pre-synthesised audio ready to play.
    pub prompts_cached: usize,
    /// State of every engine worker.
    pub engines: Vec<WorkerHealth>,
    /// Calls in progress against the capacity every ingress shares.
    pub calls: CallsStatus,
    /// The cloud bot's health and where new calls go (when one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::continuity::CloudStatus>,
}

/// The version running, and from which install (`understudy update`).
#[derive(Debug, Clone, Serialize)]
pub struct Software {
    /// `understudy --version`'s version.
    pub version: String,
    /// The update slot it runs from (`a`, `b`), or `packaged`.
    pub slot: String,
}

/// Calls in progress, by the way they came.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallsStatus {
    /// Concurrent calls allowed, every ingress together.
    pub capacity: usize,
    /// Calls in progress.
    pub active: usize,
    /// Calls in progress by ingress.
    pub by_ingress: Vec<crate::session::admission::IngressCalls>,
    /// New calls refused while these finish (the admin API's drain).
    pub draining: bool,
}

impl CallsStatus {
    /// What `admission` holds now.
    pub fn of(admission: &crate::session::admission::Admission) -> Self {
        CallsStatus {
            capacity: admission.capacity(),
            active: admission.active(),
            by_ingress: admission.active_by_ingress(),
            draining: admission.draining(),
        }
    }
}

/// Produces the current status on demand.
pub type StatusSource = Arc<dyn Fn() -> ApplianceStatus + Send + Sync>;

/// The routes: `/healthz` (alive), `/readyz` (503 until ready), `/status` (JSON) and `/metrics`
/// (Prometheus); with `streams`, `/calls/{id}` and `/calls/{id}/transfer` (how a streamed call
/// ended) and, when `websocket` is on, the media-stream WebSocket.
pub fn router(status: StatusSource, calls: Option<CallRoutes>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/status",
            get(|State(s): State<StatusSource>| async move { Json(s()) }),
        )
        .route("/metrics", get(metrics))
        .with_state(status);
    if let Some(calls) = calls {
        router = router.merge(
            Router::new()
                .route("/calls/{id}", get(call_outcome))
                .route("/calls/{id}/transfer", get(call_transfer))
                .with_state(calls.streams.outcomes.clone()),
        );
        if let Some(addresses) = calls.webrtc {
            let ctx =
                crate::transport::webrtc::WebrtcContext::new(calls.streams.clone(), addresses);
            router = router.merge(crate::transport::webrtc::routes(Arc::new(ctx)));
        }
        if calls.websocket {
            router = router.merge(crate::transport::websocket::routes(calls.streams));
        }
    }
    router
}

/// The calls the HTTP listener takes besides its status routes.
pub struct CallRoutes {
    /// What streamed calls share (admission, outcomes, limits).
    pub streams: Arc<StreamContext>,
    /// Twilio-shaped media streams at `/media-stream`.
    pub websocket: bool,
    /// WebRTC at `/webrtc` and the softphone at `/phone`, with media on
    /// these addresses; `None`: off.
    pub webrtc: Option<Vec<std::net::IpAddr>>,
}

/// How a streamed call stands, as JSON (404 when it is unknown or long gone).
async fn call_outcome(
    State(outcomes): State<Arc<CallOutcomes>>,
    Path(id): Path<String>,
) -> Response {
    match outcomes.get(&id) {
        Some(outcome) => Json(outcome).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such call (or it ended long ago)\n",
        )
            .into_response(),
    }
}

/// Where the bot sent a streamed call, as plain text for a dialplan's
/// `CURL()`: the target (200), nothing (204) when the call was not
/// transferred, 404 when it is unknown.
async fn call_transfer(
    State(outcomes): State<Arc<CallOutcomes>>,
    Path(id): Path<String>,
) -> Response {
    match outcomes.get(&id) {
        Some(outcome) => match outcome.transfer_target {
            Some(target) => target.into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
        None => (
            StatusCode::NOT_FOUND,
            "no such call (or it ended long ago)\n",
        )
            .into_response(),
    }
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
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(),
    )
        .into_response()
}

/// Serve until the listener fails: HTTPS with `tls` (a server
/// configuration from [`crate::net::tls::Identity`]), else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    router: Router,
) -> std::io::Result<()> {
    match tls {
        Some(config) => axum::serve(tls::TlsListener::new(listener, config)?, router).await,
        None => axum::serve(listener, router).await,
    }
}
