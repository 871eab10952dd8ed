//! Start-up shared by the commands: configuration, engines, the bot, and the
//! session setup that calls share.

use super::GlobalArgs;
use crate::config::{Config, EngineConfig};
use crate::dialog::Bundle;
use crate::engines::{EngineSet, Engines};
use crate::session::SessionSetup;
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The configuration file with the command line's overrides applied.
pub fn load_config(global: &GlobalArgs) -> Result<Config> {
    let mut config = Config::load(global.config.as_deref())?;
    if let Some(dir) = &global.models_dir {
        config.models.dir = dir.clone();
    }
    if let Some(pack) = &global.pack {
        config.models.pack = pack.clone();
    }
    Ok(config)
}

/// Start the engines in `set` and wait until they are ready; a model that
/// cannot load fails here with the worker's own explanation.
pub async fn start_engines(config: &Config, set: EngineSet) -> Result<(Engines, EngineConfig)> {
    let engine_config = config.engine_config()?;
    let started = Instant::now();
    let engines = Engines::start(&engine_config, set);
    if let Err(e) = engines.wait_ready(engine_config.startup_timeout).await {
        engines.shutdown();
        anyhow::bail!(
            "{e}\n(check the model files with `understudy models verify --pack {}`; \
             re-fetch with `understudy models fetch --pack {}`)",
            config.models.pack,
            config.models.pack
        );
    }
    tracing::info!(ms = started.elapsed().as_millis() as u64, pack = %config.models.pack, "engines ready");
    Ok((engines, engine_config))
}

/// Everything a call needs: engines, the bot chosen as every command
/// chooses it (`--bundle`, else the active synced version, else `[bot]
/// bundle`, else the demo; its first line printed), pre-rendered prompts,
/// settings.
pub async fn session_setup(config: &Config, bundle: Option<&Path>) -> Result<Arc<SessionSetup>> {
    let spec = bundle.map(|p| p.to_string_lossy().into_owned());
    let chosen = crate::sync::choice::choose_bot(config, spec.as_deref())?;
    eprintln!("{chosen}");
    let (engines, _) = start_engines(config, EngineSet::ALL).await?;
    prepare_session(config, chosen.bundle, engines).await
}

/// The bot and its prompt audio, on engines that are already running.
pub async fn prepare_session(
    config: &Config,
    bundle: Bundle,
    engines: Engines,
) -> Result<Arc<SessionSetup>> {
    crate::sync::live::prepare(config, bundle, engines, None)
        .await
        .map(|(setup, _)| setup)
}
