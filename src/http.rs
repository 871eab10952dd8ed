//! The appliance's HTTP endpoints: liveness, readiness, status and metrics,
//! the outcome of streamed calls (`/calls/{id}`), the WebSocket media
//! streams (`crate::transport::websocket`) when they are on, and the admin
//! API (`admin`).

pub mod admin;
pub mod dashboard;
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

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
fn bears_token(headers: &axum::http::HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

/// The address a request came from, over plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// Who may read `/status`, `/metrics` and `/readyz`'s reasons without the
/// admin token (`[http] status_open_to`).
#[derive(Clone)]
pub struct ReadAccess {
    open_to: Arc<Vec<ipnet::IpNet>>,
    token: Option<Arc<str>>,
}

impl ReadAccess {
    /// From `[http]`: the networks, and the admin token that opens the rest.
    pub fn new(config: &crate::config::HttpConfig) -> anyhow::Result<ReadAccess> {
        Ok(ReadAccess {
            open_to: Arc::new(crate::net::parse_networks(
                "http.status_open_to",
                &config.status_open_to,
            )?),
            token: config.admin_token()?.map(Arc::from),
        })
    }

    fn allows(&self, request: &axum::extract::Request) -> bool {
        // No peer address: the router is called in-process, not over the network.
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<Peer>>()
            .map(|c| c.0 .0.ip().to_canonical());
        peer.is_none_or(|ip| self.open_to.iter().any(|net| net.contains(&ip)))
            || self
                .token
                .as_deref()
                .is_some_and(|token| bears_token(request.headers(), token))
    }
}

/// `/status` and `/metrics` from a peer outside `[http] status_open_to`
/// without the token: 401. `/readyz`: its status code, without the reasons.
async fn guard_reads(
    State(access): State<ReadAccess>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if access.allows(&request) {
        return next.run(request).await;
    }
    if request.uri().path() == "/readyz" {
        let code = next.run(request).await.status();
        let body = if code == StatusCode::OK {
            "ready\n"
        } else {
            "not ready\n"
        };
        return (code, body).into_response();
    }
    tracing::warn!(path = %request.uri().path(), "HTTP: a read from outside http.status_open_to without the token");
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "this address may not read the appliance's status: send the admin token as `Authorization: Bearer <token>`, or add its network to [http] status_open_to\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
    response
}

/// Produces the current status on demand.
pub type StatusSource = Arc<dyn Fn() -> ApplianceStatus + Send + Sync>;

/// The routes: `/healthz` (alive), `/readyz` (503 until ready), `/status` (JSON) and `/metrics`
/// (Prometheus), the last three guarded by `access`; with `streams`, `/calls/{id}` and `/calls/{id}/transfer` (how a streamed call
/// ended) and, when `websocket` is on, the media-stream WebSocket.
pub fn router(status: StatusSource, access: ReadAccess, calls: Option<CallRoutes>) -> Router {
    let mut router = Router::new()
        .route("/readyz", get(readyz))
        .route(
            "/status",
            get(|State(s): State<StatusSource>| async move { Json(s()) }),
        )
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(access, guard_reads))
        .route("/healthz", get(|| async { "ok\n" }))
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
    // The peer's address reaches the handlers (`ReadAccess`).
    let service = router.into_make_service_with_connect_info::<Peer>();
    match tls {
        Some(config) => axum::serve(tls::TlsListener::new(listener, config)?, service).await,
        None => axum::serve(listener, service).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcde"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(bears_token(&headers, "0123456789abcdef"));
        assert!(!bears_token(&headers, "0123456789abcdeF"));
    }
}
