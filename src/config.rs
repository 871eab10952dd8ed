//! The appliance configuration: one TOML file, every field optional.
//!
//! Looked up at `--config PATH`, else `$UNDERSTUDY_CONFIG`, else
//! `/etc/understudy/understudy.toml` when it exists; otherwise the defaults
//! below apply (the demo bot with the default model pack). `docs/config.md`
//! documents every field; `understudy config` prints the effective one.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod calls;
mod engines;
mod network;
mod session;
mod update;

pub use calls::*;
pub use engines::*;
pub use network::*;
pub use session::*;
pub use update::*;

/// Keys kept for configurations written before they were renamed
/// (`sip.capacity` is now `calls.capacity`).
const RENAMED: &[&str] = &["sip.capacity"];

/// The configuration file read when neither `--config` nor `$UNDERSTUDY_CONFIG` names one.
pub const SYSTEM_CONFIG: &str = "/etc/understudy/understudy.toml";

/// The whole configuration file; each field is one TOML table (`[models]`, `[sip]`...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which model pack the engines load, and from where.
    pub models: ModelsConfig,
    /// Worker processes: threads, deadlines, GPU, context size.
    pub engines: EnginesConfig,
    /// Which bot bundle to serve.
    pub bot: BotConfig,
    /// Turn-taking: end of speech, barge-in, deadlines.
    pub session: SessionConfig,
    /// The health, readiness, status and metrics endpoint.
    pub http: HttpConfig,
    /// What every ingress shares (capacity), WebSocket and AudioSocket calls.
    pub calls: CallsConfig,
    /// Calls by SIP/RTP.
    pub sip: SipConfig,
    /// Where bot versions are pulled from and kept.
    pub sync: SyncConfig,
    /// The cloud bot, its health probes, and takeover.
    pub cloud: CloudConfig,
    /// Signed A/B software updates.
    pub update: UpdateConfig,
}

/// Where the appliance keeps its state: `$UNDERSTUDY_DATA_DIR`, else
/// `~/.local/share/understudy`, else `/var/lib/understudy`.
pub fn data_dir() -> PathBuf {
    if let Some(data) = std::env::var_os("UNDERSTUDY_DATA_DIR") {
        return PathBuf::from(data);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/understudy"),
        None => PathBuf::from("/var/lib/understudy"),
    }
}

/// Which bot to serve (`[bot]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// A bot bundle file; unset means the built-in demo bot.
    pub bundle: Option<PathBuf>,
}

impl Config {
    /// The optional settings left unset (`section.key`), which TOML cannot
    /// print: `understudy config` lists them so that none goes unnoticed.
    pub fn unset_keys(&self) -> Vec<String> {
        fn walk(path: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Null => out.push(path.to_string()),
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        let path = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        walk(&path, value, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = vec![];
        walk(
            "",
            &serde_json::to_value(self).expect("the configuration serializes"),
            &mut out,
        );
        // Older names still honoured are not settings to discover.
        out.retain(|key| !RENAMED.contains(&key.as_str()));
        out
    }

    /// The file [`Config::load`] reads: `path`, else `$UNDERSTUDY_CONFIG`,
    /// else the system file if present; `None`: built-in defaults.
    pub fn file(path: Option<&Path>) -> Option<PathBuf> {
        path.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("UNDERSTUDY_CONFIG").map(PathBuf::from))
            .or_else(|| {
                Path::new(SYSTEM_CONFIG)
                    .exists()
                    .then(|| PathBuf::from(SYSTEM_CONFIG))
            })
    }

    /// Load the configuration: `path`, else `$UNDERSTUDY_CONFIG`, else the
    /// system file if present, else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = Config::file(path) else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "configuration file {} is invalid: {e}\n(see docs/config.md; `understudy config` prints a valid file)",
                path.display()
            )
        })?;
        config.session.validate().map_err(|e| {
            anyhow::anyhow!("configuration file {} is invalid: {e}", path.display())
        })?;
        Ok(config)
    }

    /// What the engine supervisor needs; checks that the pack is installed.
    pub fn engine_config(&self) -> Result<EngineConfig> {
        let pack = understudy_models::resolve(&self.models.dir, &self.models.pack)?;
        Ok(EngineConfig {
            worker_dir: self
                .engines
                .worker_dir
                .clone()
                .unwrap_or_else(default_worker_dir),
            pack,
            threads: self.engines.threads.clone(),
            timeouts: self.engines.timeouts_ms.clone(),
            startup_timeout: Duration::from_secs(self.engines.startup_timeout_s),
            llm_ctx: self.engines.llm_ctx,
            stt_held_utterances: self.engines.stt_held_utterances,
            gpu: self.engines.gpu,
            espeak_data: self.engines.espeak_data.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
