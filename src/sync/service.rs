//! Sync inside `serve`: a timer task that pulls `[sync] source` every
//! `[sync] interval_s`, and a watcher that notices when the store's active
//! version changes (a pull, or `understudy sync activate/rollback` run by
//! a designer) and swaps the live setup once the new version is prepared.
//! A failing pull or a version that cannot be prepared leaves the serving
//! setup as it is.

use super::live::{self, LiveSetup};
use super::prompt_store::PromptAudio;
use super::{PullOptions, PullResult, SyncAgent};
use crate::config::Config;
use crate::dialog::Nlu;
use crate::engines::Engines;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the store's active pointer is checked.
const WATCH: Duration = Duration::from_secs(2);

/// The on-disk prompt audio cache for the configured voice.
pub fn prompt_audio(config: &Config) -> Option<PromptAudio> {
    let engine = config.engine_config().ok()?;
    let store = super::store::Store::open(&config.sync.store_dir()).ok()?;
    Some(PromptAudio::new(
        &store.prompt_audio_dir(),
        &super::prompt_store::voice_id(&engine.pack.tts_voice),
    ))
}

/// Run the timer and the watcher until the process ends.
pub fn spawn(
    config: Config,
    engines: Engines,
    live: Arc<LiveSetup>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let agent = match SyncAgent::open(&config) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "sync is off: cannot open the bundle store");
                return;
            }
        };
        let audio = prompt_audio(&config);
        let interval = Duration::from_secs(config.sync.interval_s);
        let pulls = config.sync.source.is_some() && !interval.is_zero();
        if pulls {
            tracing::info!(
                source = config.sync.source.as_deref().unwrap_or(""),
                every_s = interval.as_secs(),
                "sync: pulling on a timer"
            );
        }
        let mut last_pull: Option<Instant> = None;
        let mut seen = agent.store.active().ok().flatten();
        loop {
            tokio::time::sleep(WATCH).await;
            if live.current().is_none() {
                continue; // the appliance is still warming up
            }
            if pulls && last_pull.is_none_or(|t| t.elapsed() >= interval) {
                last_pull = Some(Instant::now());
                let opts = PullOptions {
                    activate: config.sync.auto_activate,
                    // As on a call: the LLM decides where rules and
                    // embeddings are unsure (its requests queue with the calls').
                    nlu: Nlu {
                        embed: engines.embed.clone(),
                        llm: engines.llm.clone(),
                        stt: None,
                    },
                    ..Default::default()
                };
                match agent.pull(opts).await {
                    Ok(outcome) => {
                        if let PullResult::Stored {
                            refused: Some(why),
                            id,
                            ..
                        } = &outcome.result
                        {
                            tracing::warn!(version = %id, "sync: not activated: {why}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "sync: pull failed; still serving the active version")
                    }
                }
            }
            let active = match agent.store.active() {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "sync: cannot read the store state");
                    continue;
                }
            };
            if active == seen || active.is_none() || active == live.version() {
                seen = active;
                continue;
            }
            let id = active.clone().unwrap();
            if activate(&agent, &config, &engines, &live, audio.as_ref(), &id).await {
                seen = active;
            }
        }
    })
}

/// Prepare version `id` completely, then swap it in. False (logged) when it cannot be prepared.
async fn activate(
    agent: &SyncAgent,
    config: &Config,
    engines: &Engines,
    live: &LiveSetup,
    audio: Option<&PromptAudio>,
    id: &str,
) -> bool {
    let started = Instant::now();
    let bundle = match agent.store.bundle(id) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(version = id, error = %format!("{e:#}"), "sync: cannot load the activated version; still serving the previous one");
            return false;
        }
    };
    match live::prepare(config, bundle, engines.clone(), audio).await {
        Ok((setup, stats)) => {
            live.install(setup, Some(id.to_string()));
            let ms = started.elapsed().as_secs_f64() * 1e3;
            crate::metrics::observe_ms(
                "understudy_sync_stage_seconds",
                &[("stage", "activate")],
                ms,
            );
            crate::metrics::counter_inc("understudy_sync_activations_total", &[]);
            tracing::info!(
                version = id,
                ms,
                prompts_rendered = stats.rendered,
                prompts_reused = stats.reused,
                "sync: new version live for new calls"
            );
            true
        }
        Err(e) => {
            tracing::error!(version = id, error = %format!("{e:#}"), "sync: cannot prepare the activated version; still serving the previous one");
            false
        }
    }
}
