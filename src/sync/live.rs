//! The serving side of activation: the session setup calls start with,
//! swappable while calls run.
//!
//! A call takes `LiveSetup::current()` once, when it starts, and keeps
//! that `Arc<SessionSetup>` (bot, prompts, settings) for its whole life;
//! activating a version builds a complete new setup first (bot loaded,
//! phrases embedded, prompt audio ready) and then swaps the pointer in one
//! step. So a call in progress finishes on the version it started with, a
//! new call gets the new one, and no call ever sees half a bundle. The old
//! setup is freed when its last call ends.

use super::prompt_store::{PrerenderStats, PromptAudio};
use crate::config::{Config, SessionConfig};
use crate::dialog::{Bot, Bundle, Nlu};
use crate::engines::Engines;
use crate::session::{self, speech::PromptCache, SessionSetup};
use anyhow::{Context, Result};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The setup new calls start with, swapped in one step on activation (see the module comment).
#[derive(Default)]
pub struct LiveSetup {
    slot: RwLock<Option<(Arc<SessionSetup>, Option<String>)>>,
    /// `[session]` as last reloaded (`None`: as `serve` started); every
    /// setup installed from then on uses it.
    session: RwLock<Option<SessionConfig>>,
}

impl LiveSetup {
    /// The setup a call starting now uses (`None` until the first bot is ready).
    pub fn current(&self) -> Option<Arc<SessionSetup>> {
        self.slot.read().unwrap().as_ref().map(|(s, _)| s.clone())
    }

    /// The store version being served (`None`: a bundle file or the demo).
    pub fn version(&self) -> Option<String> {
        self.slot
            .read()
            .unwrap()
            .as_ref()
            .and_then(|(_, v)| v.clone())
    }

    /// Serve `setup` to every call that starts from now on.
    pub fn install(&self, setup: Arc<SessionSetup>, version: Option<String>) {
        let setup = match self.session.read().unwrap().as_ref() {
            Some(session) => with_session(&setup, session),
            None => setup,
        };
        let name = setup.bot.bundle().name().to_string();
        *self.slot.write().unwrap() = Some((setup, version.clone()));
        tracing::info!(bot = %name, version = version.as_deref().unwrap_or("-"), "serving");
    }
}

impl LiveSetup {
    /// Calls that start from now on follow `session` (a reloaded `[session]`),
    /// on the bot they would get anyway; calls in progress keep theirs.
    pub fn reload_session(&self, session: SessionConfig) {
        let mut slot = self.slot.write().unwrap();
        if let Some((setup, version)) = slot.as_ref() {
            *slot = Some((with_session(setup, &session), version.clone()));
        }
        *self.session.write().unwrap() = Some(session);
    }
}

/// `setup` with its session settings made from `session`.
fn with_session(setup: &SessionSetup, session: &SessionConfig) -> Arc<SessionSetup> {
    Arc::new(SessionSetup {
        bot: setup.bot.clone(),
        engines: setup.engines.clone(),
        prompts: setup.prompts.clone(),
        settings: session::settings_for(&setup.bot, session),
    })
}

/// Everything a call needs for `bundle` on running engines: the bot
/// (phrases embedded) and its static prompts' audio, read from the disk
/// cache or rendered now.
pub async fn prepare(
    config: &Config,
    bundle: Bundle,
    engines: Engines,
    audio: Option<&PromptAudio>,
) -> Result<(Arc<SessionSetup>, PrerenderStats)> {
    let started = Instant::now();
    let nlu = Nlu {
        embed: engines.embed.clone(),
        llm: engines.llm.clone(),
        stt: engines.stt.clone(),
    };
    let bot = Arc::new(
        Bot::load(bundle, nlu)
            .await
            .context("cannot prepare the bot")?,
    );
    let settings = session::settings_for(&bot, &config.session);
    let prompts = Arc::new(PromptCache::default());
    let mut texts = bot.static_prompts();
    texts.extend(settings.fixed_prompts());
    let tts = engines
        .tts
        .as_ref()
        .context("the TTS engine is not running")?;
    let stats = match audio {
        Some(audio) => audio.prerender(tts, &texts, &prompts).await,
        None => prompts
            .prerender(tts, &texts)
            .await
            .map(|rendered| PrerenderStats {
                rendered,
                ..Default::default()
            }),
    }
    .context("cannot pre-render the bot's prompts")?;
    crate::metrics::observe_ms(
        "understudy_sync_stage_seconds",
        &[("stage", "prepare")],
        started.elapsed().as_secs_f64() * 1e3,
    );
    Ok((
        Arc::new(SessionSetup {
            bot,
            engines,
            prompts,
            settings,
        }),
        stats,
    ))
}
