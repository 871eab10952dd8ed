//! `understudy serve`: the appliance daemon.
//!
//! Starts the engine workers and keeps them supervised, loads the bot and
//! pre-renders its prompts, serves health, readiness and metrics over
//! HTTP, and answers calls by SIP (`crate::transport::sip`, docs/sip.md), by
//! WebSocket media streams and by AudioSocket (docs/ingress.md); every
//! ingress shares one admission (readiness and capacity). Readiness is
//! true only when every engine is warm and the bot is loaded; an engine that
//! cannot load its model keeps the appliance up but not ready, with the
//! reason in `/readyz`.

mod reload;

use crate::config::{CloudMode, Config};
use crate::continuity::{CloudSettings, Continuity};
use crate::engines::{EngineSet, Engines};
use crate::http::{self, ApplianceStatus};
use crate::session::admission::{Admission, SessionSource};
use crate::session::SessionSetup;
use crate::transport::stream::StreamContext;
use crate::update::slots::{self, Slots, TrialStart};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `understudy serve` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address for health (/healthz), readiness (/readyz), status (/status) and metrics (/metrics).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Address for SIP calls, UDP and TCP on one port (default 0.0.0.0:5060; `off` disables SIP).
    #[arg(long)]
    pub sip_listen: Option<String>,
    /// Address for Asterisk AudioSocket calls over TCP (default 127.0.0.1:9092; `off` disables it).
    #[arg(long)]
    pub audiosocket_listen: Option<String>,
    /// What to serve: a bundle file, a cloud bot export (imported on the fly) or a stored sync
    /// version (id, prefix, `active`). Default: the active synced version, else `[bot] bundle`,
    /// else the built-in demo bot; the first line printed names the bot.
    #[arg(long, value_name = "PATH|VERSION")]
    pub bundle: Option<String>,
}

/// What the appliance is serving; shared with the HTTP handlers.
pub struct Appliance {
    /// The supervised engine workers.
    pub engines: Engines,
    /// The bot calls start with; swapped when sync activates a version (src/sync/live.rs).
    pub setup: Arc<crate::sync::live::LiveSetup>,
    /// Why the bot is not loaded, if it failed.
    pub bot_error: std::sync::Mutex<Option<String>>,
    /// The model pack the engines run.
    pub pack: String,
    /// When the appliance started (for uptime).
    pub started: Instant,
    /// The cloud bot's health (when `[cloud]` names one).
    pub cloud: Option<Arc<Continuity>>,
    /// Readiness and capacity, shared by every ingress (set once at start).
    pub admission: std::sync::OnceLock<Arc<Admission>>,
}

impl Appliance {
    /// The setup for a call starting now: a call keeps this `Arc` for its whole
    /// life, so a sync activation never changes a call in progress.
    pub fn current_setup(&self) -> Option<Arc<SessionSetup>> {
        self.setup.current()
    }

    /// What `/status` and `/readyz` report now (ready: the bot loaded, every engine ready).
    pub fn status(&self) -> ApplianceStatus {
        let engines = self.engines.health();
        let setup = self.current_setup();
        let bot_loaded = setup.is_some();
        let ready = bot_loaded && self.engines.all_ready();
        ApplianceStatus {
            ready,
            bot: setup.as_ref().map(|s| s.bot.bundle().name().to_string()),
            bot_error: self.bot_error.lock().unwrap().clone(),
            pack: self.pack.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            software: http::Software {
                version: env!("CARGO_PKG_VERSION").into(),
                slot: crate::update::slots::running_slot(),
            },
            prompts_cached: setup.as_ref().map(|s| s.prompts.len()).unwrap_or(0),
            engines,
            calls: self
                .admission
                .get()
                .map(|a| http::CallsStatus::of(a))
                .unwrap_or_default(),
            cloud: self.cloud.as_ref().map(|c| c.status()),
        }
    }
}

/// `serve`'s own command-line overrides, applied to `config`.
fn apply_overrides(args: &ServeArgs, config: &mut Config) {
    if let Some(listen) = &args.http_listen {
        config.http.listen = listen.clone();
    }
    if let Some(listen) = &args.sip_listen {
        config.sip.listen = listen.clone();
    }
    if let Some(listen) = &args.audiosocket_listen {
        config.calls.audiosocket_listen = listen.clone();
    }
}

/// What the dashboard shows besides the status: the sync store's versions
/// and the model pack's files, each read when the page asks.
fn dashboard_sources(
    config: &Config,
    status: http::StatusSource,
) -> http::dashboard::DashboardSources {
    let sync: http::dashboard::Section = {
        let config = config.clone();
        Arc::new(move || {
            let status = crate::sync::SyncAgent::open(&config)?.local_status()?;
            Ok(serde_json::to_value(status)?)
        })
    };
    let models: http::dashboard::Section = {
        let (dir, pack) = (config.models.dir.clone(), config.models.pack.clone());
        Arc::new(move || {
            let report = understudy_models::inspect(&dir, &pack)?;
            let files: Vec<serde_json::Value> = report
                .files
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "artefact": f.artefact,
                        "path": f.path.strip_prefix(&dir).unwrap_or(&f.path),
                        "size": f.expected_size,
                        "check": model_check(&f.status),
                    })
                })
                .collect();
            Ok(serde_json::json!({ "pack": pack, "dir": dir, "files": files }))
        })
    };
    http::dashboard::DashboardSources {
        status,
        sync,
        models,
    }
}

/// A model file's check in a word or two, for the dashboard.
fn model_check(status: &understudy_models::FileStatus) -> String {
    use understudy_models::FileStatus::*;
    match status {
        Ok => "sha256 ok".into(),
        NotHashed => "size ok, not hashed since it changed".into(),
        Missing => "MISSING".into(),
        WrongSize { actual } => format!("WRONG SIZE ({actual} bytes)"),
        WrongSha256 { .. } => "SHA256 MISMATCH".into(),
        Unpinned { .. } => "not pinned in the manifest".into(),
    }
}

/// Count this start against a switched-to version on trial (once per
/// start: in the process that hands over to the active slot, not in the
/// slot's own). Past its starts the version before is active again.
pub fn count_trial_start(slots: &Slots, max_starts: u32) {
    if std::env::var_os(slots::SLOT_ENV).is_some() {
        return;
    }
    match slots.count_start(max_starts) {
        Ok(TrialStart::NoTrial) => {}
        Ok(TrialStart::Counted(n)) => tracing::warn!(
            start = n,
            of = max_starts,
            "update: the switched-to version is on trial until it is ready once"
        ),
        Ok(TrialStart::FellBack(to)) => tracing::error!(
            to = %to.display(),
            starts = max_starts,
            "update: the switched-to version was never ready; the version before runs again"
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "update: cannot count this start against the version on trial")
        }
    }
}

/// While the running slot is on trial: confirm it once ready, or exit when
/// it is not ready within `timeout`, so the supervisor starts it again and
/// the start is counted (`count_trial_start`).
async fn watch_trial(slots: Slots, appliance: Arc<Appliance>, timeout: Duration) {
    let Some(running) = std::env::var_os(slots::SLOT_ENV).map(PathBuf::from) else {
        return;
    };
    if slots.trial().is_none_or(|t| t.slot != running) {
        return;
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if appliance.status().ready {
            slots.end_trial();
            tracing::info!(slot = %slots::label(&running), "update: the new version is ready; the switch is confirmed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::error!(
        slot = %slots::label(&running),
        timeout_s = timeout.as_secs(),
        "update: the version on trial was not ready in time; exiting so that it is started again (the version before runs after [update] trial_starts starts)"
    );
    std::process::exit(75);
}

/// Keep calls in progress over time for the dashboard's plot.
async fn sample_calls(admission: Arc<Admission>) {
    let mut tick = tokio::time::interval(crate::metrics::recent::CALL_SAMPLE_EVERY);
    loop {
        tick.tick().await;
        crate::metrics::recent::record_calls(admission.active(), admission.capacity());
    }
}

/// Run `understudy serve` until SIGTERM or Ctrl-C. `read_config` reads the
/// configuration again (file and global overrides) for a reload.
pub async fn run(
    args: ServeArgs,
    mut config: Config,
    read_config: impl Fn() -> Result<Config> + Send + Sync + 'static,
) -> Result<()> {
    apply_overrides(&args, &mut config);
    let capacity = config.call_capacity()?;
    // A wrong certificate or key stops here, naming the file, before any engine starts.
    let https = http::tls::server_config(&config.http)?;
    let read_access = http::ReadAccess::new(&config.http)?;
    // The same choice as chat, converse and bench (src/sync/choice.rs).
    let chosen = crate::sync::choice::choose_bot(&config, args.bundle.as_deref())?;
    eprintln!("{chosen}");
    let version = chosen.version().map(str::to_string);
    let bundle = chosen.bundle;
    let engine_config = config.engine_config()?;
    let cloud_settings = CloudSettings::from_config(&config.cloud)?;
    let watch_cloud = cloud_settings.mode == CloudMode::InPath
        || cloud_settings.uri.is_some()
        || cloud_settings.health_url.is_some();
    let cloud = watch_cloud.then(|| Continuity::new(cloud_settings));
    let engines = Engines::start(&engine_config, EngineSet::ALL);
    let appliance = Arc::new(Appliance {
        engines: engines.clone(),
        setup: Default::default(),
        bot_error: Default::default(),
        pack: config.models.pack.clone(),
        started: Instant::now(),
        cloud: cloud.clone(),
        admission: Default::default(),
    });
    if let Some(cloud) = &cloud {
        tracing::info!(mode = ?cloud.settings.mode, uri = cloud.settings.uri.as_deref().unwrap_or("-"), "cloud: watching the cloud bot");
        cloud.spawn_probes();
    }

    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (in use? set --http-listen)",
                config.http.listen
            )
        })?;
    // `understudy update` finds this listener here, wherever it was moved.
    let slots = Slots::new(config.update.slots_dir.clone());
    if let Err(e) = listener
        .local_addr()
        .map_err(anyhow::Error::from)
        .and_then(|a| slots.record_listener(a))
    {
        tracing::debug!(error = %format!("{e:#}"), "cannot record the HTTP listener for `understudy update`");
    }
    let scheme = if https.is_some() { "HTTPS" } else { "HTTP" };
    tracing::info!(addr = %config.http.listen, "{scheme}: /healthz /readyz /status /metrics");
    // Every ingress listens from the start and refuses calls until the
    // appliance is ready (SIP 503, a WebSocket close, an AudioSocket error).
    let sessions: SessionSource = {
        let appliance = appliance.clone();
        Arc::new(move || {
            if appliance.status().ready {
                appliance.current_setup()
            } else {
                None
            }
        })
    };
    let admission = Arc::new(Admission::new(capacity, sessions));
    let _ = appliance.admission.set(admission.clone());
    let versions: http::admin::Versions = {
        let config = config.clone();
        Arc::new(move |change| {
            let agent = crate::sync::SyncAgent::open(&config)?;
            match change {
                http::admin::VersionChange::Activate { version, force } => {
                    agent.activate(&version, force)
                }
                http::admin::VersionChange::Rollback => agent.rollback(),
            }
        })
    };
    let reloader = {
        let args = args.clone();
        let read: reload::ReadConfig = Box::new(move || {
            let mut config = read_config()?;
            apply_overrides(&args, &mut config);
            Ok(config)
        });
        Arc::new(reload::Reloader::new(
            read,
            config.clone(),
            appliance.setup.clone(),
            admission.clone(),
        ))
    };
    let config_reload: http::admin::ConfigReload = {
        let reloader = reloader.clone();
        Arc::new(move || reloader.reload())
    };
    tokio::spawn(reload_on_hangup(reloader));
    let status: http::StatusSource = {
        let appliance = appliance.clone();
        Arc::new(move || appliance.status())
    };
    let admin = Arc::new(http::admin::AdminContext::new(
        &config.http,
        admission.clone(),
        versions,
        config_reload,
        dashboard_sources(&config, status.clone()),
    )?);
    tokio::spawn(sample_calls(admission.clone()));
    tokio::spawn(watch_trial(
        slots.clone(),
        appliance.clone(),
        Duration::from_secs(config.update.ready_timeout_s),
    ));
    let sip = crate::transport::sip::start(&config.sip, admission.clone(), cloud).await?;
    let streams = Arc::new(StreamContext {
        admission,
        outcomes: Default::default(),
        max_message: config.calls.websocket_max_message,
    });
    let audiosocket =
        crate::transport::audiosocket::start(&config.calls.audiosocket_listen, streams.clone())
            .await?;
    if config.calls.websocket {
        tracing::info!(
            path = crate::transport::websocket::PATH,
            "WebSocket media streams: on the HTTP listener"
        );
    }
    let webrtc = config
        .calls
        .webrtc
        .then(|| config.calls.webrtc_addresses.clone());
    if let Some(addresses) = &webrtc {
        tracing::info!(
            offers = crate::transport::webrtc::OFFER_PATH,
            softphone = crate::transport::webrtc::PHONE_PATH,
            media = ?addresses,
            "WebRTC: on the HTTP listener"
        );
    }
    let router = http::router(
        status,
        read_access,
        Some(http::CallRoutes {
            streams,
            websocket: config.calls.websocket,
            webrtc,
        }),
    );
    let router = router.merge(http::admin::routes(admin));
    let http_task = tokio::spawn(http::serve(listener, https, router));

    // Bring the bot up once the engines are warm.
    let warmup = {
        let appliance = appliance.clone();
        let config = config.clone();
        async move {
            if let Err(e) = appliance
                .engines
                .wait_ready(engine_config.startup_timeout)
                .await
            {
                tracing::error!(error = %e, "an engine is not ready; serving not-ready until it is fixed");
                *appliance.bot_error.lock().unwrap() = Some(e.to_string());
                return;
            }
            let audio = crate::sync::service::prompt_audio(&config);
            match crate::sync::live::prepare(
                &config,
                bundle,
                appliance.engines.clone(),
                audio.as_ref(),
            )
            .await
            {
                Ok((setup, _)) => {
                    let name = setup.bot.bundle().name().to_string();
                    appliance.setup.install(setup, version);
                    *appliance.bot_error.lock().unwrap() = None;
                    tracing::info!(bot = %name, ms = appliance.started.elapsed().as_millis() as u64, "ready for calls");
                    crate::systemd::notify_status(&format!("ready: serving {name}"));
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot load the bot");
                    *appliance.bot_error.lock().unwrap() = Some(format!("{e:#}"));
                }
            }
        }
    };
    tokio::spawn(warmup);
    // Sync: pull [sync] source on a timer, and swap in versions activated
    // by a pull or by `understudy sync activate/rollback` (src/sync/service.rs).
    crate::sync::service::spawn(config.clone(), engines.clone(), appliance.setup.clone());
    // Started (health and readiness answer); ready for calls comes later,
    // and an engine that cannot load keeps us up and saying why.
    crate::systemd::notify_ready("started: loading engines and the bot");
    crate::systemd::spawn_watchdog();

    tokio::select! {
        r = http_task => r.context("HTTP server task")?.context("HTTP server")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    crate::systemd::notify_stopping();
    slots.forget_listener();
    if let Some(audiosocket) = audiosocket {
        audiosocket.shutdown();
    }
    if let Some(sip) = sip {
        sip.shutdown().await;
    }
    engines.shutdown();
    Ok(())
}

/// SIGHUP reloads the configuration (as `POST /admin/config/reload` does).
async fn reload_on_hangup(reloader: Arc<reload::Reloader>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("no SIGHUP handler: reload the configuration through the admin API");
        return;
    };
    while hangup.recv().await.is_some() {
        let reloader = reloader.clone();
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "configuration reload refused; nothing changed")
            }
            Err(e) => tracing::error!(error = %e, "configuration reload failed"),
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
