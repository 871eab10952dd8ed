//! The admin API: what changes the appliance's state (drain before an
//! update, sync activate and rollback) under `/admin/`, each request with
//! the bearer token of `[http] admin_token_file`, with the dashboard's data
//! (`super::dashboard`); and `/openapi.json`, the description of every route
//! (docs/admin.md).

use crate::config::HttpConfig;
use crate::session::admission::Admission;
use anyhow::Result;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A change of the active bot version.
#[derive(Debug, Clone)]
pub enum VersionChange {
    /// Activate this stored version (id or unique prefix); `force` past a
    /// failed parity test.
    Activate {
        /// Id or unique prefix.
        version: String,
        /// Activate even though its parity test failed.
        force: bool,
    },
    /// Back to the version active before.
    Rollback,
}

/// Carries out a [`VersionChange`] on the bundle store (the sync agent,
/// given by whoever serves): the id now active, or why not.
pub type Versions = Arc<dyn Fn(VersionChange) -> Result<String> + Send + Sync>;

/// What a configuration reload did: the settings applied to new calls, and
/// the changed ones that wait for a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Applied now (`session`, `calls.capacity`); calls in progress keep theirs.
    pub applied: Vec<String>,
    /// Changed in the file, applied at the next restart (`sip`, `models`...).
    pub needs_restart: Vec<String>,
}

/// Reads the configuration file again and applies what can change while
/// calls run (given by whoever serves); an error when the file is invalid,
/// and then nothing changes.
pub type ConfigReload = Arc<dyn Fn() -> Result<ReloadReport> + Send + Sync>;

/// What the admin routes act on.
pub struct AdminContext {
    /// The bearer token; `None`: the admin API is off.
    token: Option<String>,
    admission: Arc<Admission>,
    versions: Versions,
    reload: ConfigReload,
    dashboard: super::dashboard::DashboardSources,
}

impl AdminContext {
    /// Read the token from `[http] admin_token_file` (when set); an error
    /// names the file when it cannot be read or the token is too short.
    pub fn new(
        config: &HttpConfig,
        admission: Arc<Admission>,
        versions: Versions,
        reload: ConfigReload,
        dashboard: super::dashboard::DashboardSources,
    ) -> Result<AdminContext> {
        let token = config.admin_token()?;
        Ok(AdminContext {
            token,
            admission,
            versions,
            reload,
            dashboard,
        })
    }
}

/// `/admin/...` (token required), `/openapi.json` and the dashboard's page (open).
pub fn routes(ctx: Arc<AdminContext>) -> Router {
    let admin = Router::new()
        .route("/admin/dashboard", get(dashboard))
        .route(
            "/admin/drain",
            get(drain_state).post(drain_on).delete(drain_off),
        )
        .route("/admin/sync/activate/{version}", post(sync_activate))
        .route("/admin/sync/rollback", post(sync_rollback))
        .route("/admin/config/reload", post(config_reload))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), authorized))
        .with_state(ctx);
    admin
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(super::dashboard::page_routes())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn authorized(
    State(ctx): State<Arc<AdminContext>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &ctx.token else {
        return error(
            StatusCode::FORBIDDEN,
            "the admin API is off: set [http] admin_token_file to a file holding a token",
        );
    };
    match super::bears_token(request.headers(), token) {
        true => next.run(request).await,
        false => {
            tracing::warn!(path = %request.uri().path(), "admin API: request without the right token");
            crate::metrics::counter_inc("understudy_admin_refused_total", &[]);
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "send the token of [http] admin_token_file as `Authorization: Bearer <token>`",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
            r
        }
    }
}

async fn dashboard(State(ctx): State<Arc<AdminContext>>) -> Response {
    let sources = ctx.dashboard.clone();
    // The sync store and the model files are read from disk.
    match tokio::task::spawn_blocking(move || super::dashboard::data(&sources)).await {
        Ok(data) => Json(data).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn drain_json(a: &Admission) -> Json<Value> {
    Json(json!({ "draining": a.draining(), "active_calls": a.active() }))
}

async fn drain_state(State(ctx): State<Arc<AdminContext>>) -> Json<Value> {
    drain_json(&ctx.admission)
}

async fn drain_on(State(ctx): State<Arc<AdminContext>>) -> Json<Value> {
    ctx.admission.set_draining(true);
    drain_json(&ctx.admission)
}

async fn drain_off(State(ctx): State<Arc<AdminContext>>) -> Json<Value> {
    ctx.admission.set_draining(false);
    drain_json(&ctx.admission)
}

/// `?force=true` activates a version whose parity test failed.
#[derive(Deserialize)]
struct Force {
    #[serde(default)]
    force: bool,
}

async fn sync_activate(
    State(ctx): State<Arc<AdminContext>>,
    Path(version): Path<String>,
    Query(q): Query<Force>,
) -> Response {
    let versions = ctx.versions.clone();
    let change = VersionChange::Activate {
        version,
        force: q.force,
    };
    let done = tokio::task::spawn_blocking(move || versions(change)).await;
    sync_answer(done, "activate")
}

async fn sync_rollback(State(ctx): State<Arc<AdminContext>>) -> Response {
    let versions = ctx.versions.clone();
    let done = tokio::task::spawn_blocking(move || versions(VersionChange::Rollback)).await;
    sync_answer(done, "rollback")
}

fn sync_answer(done: Result<Result<String>, tokio::task::JoinError>, what: &str) -> Response {
    match done {
        Ok(Ok(id)) => {
            tracing::info!(version = %id, "admin API: sync {what}");
            Json(json!({ "active": id, "note": "new calls use it within seconds" })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::CONFLICT, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn config_reload(State(ctx): State<Arc<AdminContext>>) -> Response {
    let reload = ctx.reload.clone();
    match tokio::task::spawn_blocking(move || reload()).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e:#}; nothing was changed"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The OpenAPI 3.1 description of the HTTP API.
pub fn openapi() -> Value {
    let ok = |what: &str| json!({ "200": { "description": what } });
    let admin = |summary: &str, what: &str| {
        json!({
            "summary": summary,
            "security": [{ "bearer": [] }],
            "responses": {
                "200": { "description": what },
                "401": { "description": "no token, or the wrong one" },
                "403": { "description": "the admin API is off ([http] admin_token_file unset)" }
            }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Understudy appliance",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Health, status and metrics (open), and the admin API (bearer token from [http] admin_token_file). docs/admin.md"
        },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/healthz": { "get": { "summary": "the process is alive", "responses": ok("ok") } },
            "/readyz": { "get": { "summary": "ready for calls (503 until then, with why)", "responses": ok("ready") } },
            "/status": { "get": { "summary": "engines, bot, calls (by ingress, draining), the cloud bot", "responses": ok("the status, JSON") } },
            "/metrics": { "get": { "summary": "Prometheus text exposition", "responses": ok("metrics") } },
            "/calls/{id}": { "get": { "summary": "how a streamed call ended (404 when unknown)", "responses": ok("the outcome, JSON") } },
            "/dashboard": { "get": { "summary": "the NOC dashboard (HTML; it signs in with the admin token and reads /admin/dashboard)", "responses": ok("the page") } },
            "/admin/dashboard": {
                "get": admin("everything the dashboard shows: status, per-stage latency percentiles of the last turns, recent turns and calls over time, bot versions, model files and their checks", "the dashboard's data, JSON")
            },
            "/admin/drain": {
                "get": admin("whether new calls are refused, and the calls in progress", "{draining, active_calls}"),
                "post": admin("refuse new calls (OPTIONS and INVITE 503, streams refused) while the calls in progress finish", "{draining: true, active_calls}"),
                "delete": admin("take new calls again", "{draining: false, active_calls}")
            },
            "/admin/sync/activate/{version}": {
                "post": admin("make a stored bot version active for new calls (?force=true when its parity failed); 409 with why when refused", "{active}")
            },
            "/admin/sync/rollback": {
                "post": admin("go back to the version active before; 409 when there is none", "{active}")
            },
            "/admin/config/reload": {
                "post": admin("read the configuration file again: [session] and [calls] capacity apply to new calls at once, other changed sections are listed for a restart; 422 with why when the file is invalid (nothing changes). SIGHUP does the same", "{applied, needs_restart}")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_missing_token_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n").unwrap();
        let mut config = HttpConfig {
            admin_token_file: Some(file.clone()),
            ..Default::default()
        };
        let admission = Arc::new(Admission::new(1, Arc::new(|| None)));
        let versions: Versions = Arc::new(|_| anyhow::bail!("no store"));
        let reload: ConfigReload = Arc::new(|| Ok(ReloadReport::default()));
        let empty: super::super::dashboard::Section = Arc::new(|| Ok(Value::Null));
        let sources = super::super::dashboard::DashboardSources {
            status: Arc::new(|| unreachable!("no request is made")),
            sync: empty.clone(),
            models: empty,
        };
        let e = AdminContext::new(
            &config,
            admission.clone(),
            versions.clone(),
            reload.clone(),
            sources.clone(),
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("at least 16 characters"), "{e:#}");
        config.admin_token_file = Some(dir.path().join("missing"));
        let e = AdminContext::new(&config, admission, versions, reload, sources)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    }

    #[test]
    fn the_description_lists_every_admin_route() {
        let doc = openapi();
        for path in [
            "/admin/drain",
            "/admin/sync/activate/{version}",
            "/admin/sync/rollback",
            "/admin/config/reload",
            "/admin/dashboard",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
    }
}
