//! Which bot a command talks to. `chat`, `converse`, `bench` and `serve`
//! all choose the same way, so a designer's first test reaches the bot that
//! calls reach: the bundle named on the command line, else the sync
//! store's active version, else `[bot] bundle`, else the built-in demo bot.

use super::SyncAgent;
use crate::config::Config;
use crate::dialog::Bundle;
use anyhow::{Context, Result};
use std::fmt;

/// Where the chosen bot came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotOrigin {
    /// `--bundle`: a file, an export imported on the fly, or a stored version.
    CommandLine(String),
    /// The sync store's active version (its id).
    Active(String),
    /// `[bot] bundle` in the configuration.
    Configured(String),
    /// No bot chosen anywhere: the built-in demo bot.
    Demo,
}

/// The bot a command talks to, with where it came from.
#[derive(Debug, Clone)]
pub struct ChosenBot {
    /// The bundle the command talks to.
    pub bundle: Bundle,
    /// Where the bundle was chosen from.
    pub origin: BotOrigin,
}

impl ChosenBot {
    /// The store version, when the bot is the active synced one.
    pub fn version(&self) -> Option<&str> {
        match &self.origin {
            BotOrigin::Active(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for ChosenBot {
    /// `using bot "Order Flowers" (version 3f2a..., the active synced version)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.bundle.name();
        let version = self
            .bundle
            .bot
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        match &self.origin {
            BotOrigin::CommandLine(spec) => write!(f, "using bot \"{name}\"{version} (--bundle {spec})"),
            BotOrigin::Active(id) => write!(
                f,
                "using bot \"{name}\"{version} (version {id}, the active synced version)"
            ),
            BotOrigin::Configured(path) => {
                write!(f, "using bot \"{name}\"{version} ([bot] bundle {path})")
            }
            BotOrigin::Demo => write!(
                f,
                "using bot \"{name}\"{version} (the built-in demo: no synced version is active and no [bot] bundle is set)"
            ),
        }
    }
}

/// The bot for a command: `explicit` (`--bundle`: a bundle file, an export,
/// a stored version id or `active`), else the store's active version, else
/// `[bot] bundle`, else the demo. A store that cannot be read is logged and
/// skipped; a named bundle that cannot be loaded is an error.
pub fn choose_bot(config: &Config, explicit: Option<&str>) -> Result<ChosenBot> {
    if let Some(spec) = explicit {
        return Ok(ChosenBot {
            bundle: super::resolve_bundle(spec, config)?,
            origin: BotOrigin::CommandLine(spec.to_string()),
        });
    }
    // Opening a store creates it: only look where one exists.
    if config.sync.store_dir().is_dir() {
        match SyncAgent::open(config).and_then(|a| a.active_bundle()) {
            Ok(Some((id, bundle))) => {
                tracing::info!(version = %id, bot = %bundle.name(), store = %config.sync.store_dir().display(), "the sync store's active version");
                return Ok(ChosenBot {
                    bundle,
                    origin: BotOrigin::Active(id),
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the bundle store; using the configured bundle")
            }
        }
    }
    match &config.bot.bundle {
        Some(path) => Ok(ChosenBot {
            bundle: Bundle::load(path)
                .with_context(|| format!("cannot load the bot bundle {}", path.display()))?,
            origin: BotOrigin::Configured(path.display().to_string()),
        }),
        None => Ok(ChosenBot {
            bundle: Bundle::demo(),
            origin: BotOrigin::Demo,
        }),
    }
}
