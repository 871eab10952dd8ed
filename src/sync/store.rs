//! The versioned bundle store: content-addressed versions on disk, one
//! active pointer, rollback, pruning that never drops the active or the
//! last-good version.
//!
//! ```text
//! <store>/
//!   versions/<id>/bundle.yaml   the canonical bundle (never changed once written)
//!   versions/<id>/meta.json     where it came from, counts, warnings, parity result
//!   state.json                  active version, rollback stack, activation log
//!   sources.json                per source: ETag, Last-Modified, last pull and its result
//!   prompt-audio/<voice>/...    rendered static prompts, shared by every version
//!   tmp/                        staging; emptied on open
//!   lock                        one writer at a time (serve's timer, the CLI)
//! ```
//!
//! Crash safety: a version is written into `tmp/`, fsynced, then renamed
//! into `versions/` in one step; `state.json` and `sources.json` are
//! replaced the same way (write temp, fsync, rename, fsync the folder). A
//! power cut leaves either the old or the new file, never half of one, and
//! `state.json` only ever names versions that are complete.

mod files;
pub use files::*;

use super::import::{ExportFormat, ImportStats, ImportWarning};
use super::parity::ParityReport;
use crate::dialog::Bundle;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Versions kept besides the active one, the last-good one and the rollback stack.
pub const DEFAULT_KEEP: usize = 10;

/// What is known about a stored version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Content address of the bundle ([`version_id`]), also its directory name.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The path or URL it was pulled from.
    pub source: String,
    /// The export format it was imported from.
    pub format: ExportFormat,
    /// The bot's name from the bundle.
    pub bot_name: String,
    /// The bot's own version label, when the export has one.
    #[serde(default)]
    pub bot_version: Option<String>,
    /// What the import found (intents, states, phrases...).
    pub stats: ImportStats,
    /// What the import could not carry over exactly.
    #[serde(default)]
    pub warnings: Vec<ImportWarning>,
    /// Validation warnings (errors refuse the import before it is stored).
    #[serde(default)]
    pub validation: Vec<String>,
    /// The last parity run on this version.
    #[serde(default)]
    pub parity: Option<ParityReport>,
    /// Import time, ms.
    #[serde(default)]
    pub import_ms: f64,
}

/// One activation, for `sync status` and the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activation {
    /// The version that became active.
    pub id: String,
    /// When, in Unix seconds.
    pub at: u64,
    /// `pull`, `activate`, `rollback`, `startup`...
    pub reason: String,
}

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreState {
    /// The version being served; `None` before the first activation.
    pub active: Option<String>,
    /// Versions that were active before, most recent last: `rollback` pops it.
    #[serde(default)]
    pub previous: Vec<String>,
    /// The most recent version that served and was replaced by a newer one:
    /// known to work, never pruned.
    #[serde(default)]
    pub last_good: Option<String>,
    /// Every activation, oldest first.
    #[serde(default)]
    pub log: Vec<Activation>,
}

/// The outcome of one pull, kept per source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullRecord {
    /// When the pull ran, in Unix seconds.
    pub at: u64,
    /// Milliseconds, to order pulls within one second.
    #[serde(default)]
    pub at_ms: u128,
    /// `ok`, `unchanged`, `not_modified`, `refused` or `failed`.
    pub result: String,
    /// Human-readable detail (the error, or what changed).
    pub detail: String,
    /// The version the source held (when it could be imported).
    #[serde(default)]
    pub version: Option<String>,
}

/// `sources.json` entry: conditional-request validators and the last pull.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceState {
    /// The `ETag` of the last successful fetch, for `If-None-Match`.
    #[serde(default)]
    pub etag: Option<String>,
    /// The `Last-Modified` of the last successful fetch, for `If-Modified-Since`.
    #[serde(default)]
    pub last_modified: Option<String>,
    /// The most recent pull, whatever its result.
    #[serde(default)]
    pub last_pull: Option<PullRecord>,
    /// The last pull that reached the source and imported (its version is the cloud's latest).
    #[serde(default)]
    pub last_success: Option<PullRecord>,
}

/// The versioned bundle store on disk (layout and crash safety in the module comment).
pub struct Store {
    root: PathBuf,
}

/// Holds the store's lock; dropped, it releases it.
pub struct StoreLock {
    _file: std::fs::File,
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The content address of a bundle: its canonical YAML without `bot.source`
/// (the same bot pulled from a file or a URL is the same version).
pub fn version_id(bundle: &Bundle) -> String {
    let mut b = bundle.clone();
    b.bot.source.clear();
    let digest = Sha256::digest(b.to_yaml().as_bytes());
    hex::encode(&digest[..8])
}

impl Store {
    /// Open (creating) the store at `root`, and clear what an interrupted write left in tmp/.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["versions", "tmp", "prompt-audio"] {
            std::fs::create_dir_all(root.join(dir)).with_context(|| {
                format!(
                    "cannot create the bundle store at {} (set [sync] store to a writable folder)",
                    root.display()
                )
            })?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        // Every write happens under the lock: when nobody holds it, what
        // tmp/ and stray temp files hold was left by a write that died.
        if let Some(_lock) = store.try_lock() {
            store.clear_leftovers();
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where rendered static prompts are kept, shared by every version.
    pub fn prompt_audio_dir(&self) -> PathBuf {
        self.root.join("prompt-audio")
    }

    fn lock_file(&self) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))
            .with_context(|| format!("cannot open {}/lock", self.root.display()))
    }

    /// Exclusive access for a change (blocks while another process changes the store).
    pub fn lock(&self) -> Result<StoreLock> {
        let file = self.lock_file()?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock the bundle store {}: {}",
                self.root.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(StoreLock { _file: file })
    }

    /// The lock if nobody holds it now.
    fn try_lock(&self) -> Option<StoreLock> {
        let file = self.lock_file().ok()?;
        // SAFETY: as above.
        (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0)
            .then_some(StoreLock { _file: file })
    }

    /// Remove what an interrupted write left: staged versions, temp files of a replace.
    fn clear_leftovers(&self) {
        if let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let _ = if e.path().is_dir() {
                    std::fs::remove_dir_all(e.path())
                } else {
                    std::fs::remove_file(e.path())
                };
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    fn version_dir(&self, id: &str) -> PathBuf {
        self.root.join("versions").join(id)
    }

    /// Store a bundle; returns its id and whether it was new.
    pub fn put(&self, bundle: &Bundle, meta: &VersionMeta) -> Result<(String, bool)> {
        let id = version_id(bundle);
        let dir = self.version_dir(&id);
        if dir.join("meta.json").exists() {
            return Ok((id, false));
        }
        let stage = self
            .root
            .join("tmp")
            .join(format!("{id}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&stage)?;
        let mut meta = meta.clone();
        meta.id = id.clone();
        write_synced(&stage.join("bundle.yaml"), bundle.to_yaml().as_bytes())?;
        write_synced(
            &stage.join("meta.json"),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
        sync_dir(&stage)?;
        match std::fs::rename(&stage, &dir) {
            Ok(()) => {}
            // Another writer stored the same content first: same bytes, keep theirs.
            Err(_) if dir.join("meta.json").exists() => {
                let _ = std::fs::remove_dir_all(&stage);
                return Ok((id, false));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot move the new version into {}", dir.display()))
            }
        }
        sync_dir(&self.root.join("versions"))?;
        tracing::info!(version = %id, bot = %meta.bot_name, "stored a new bundle version");
        Ok((id, true))
    }

    /// Replace a version's metadata (the parity result), atomically.
    pub fn update_meta(&self, meta: &VersionMeta) -> Result<()> {
        replace_file(
            &self.version_dir(&meta.id).join("meta.json"),
            serde_json::to_string_pretty(meta)?.as_bytes(),
        )
    }

    /// The full id of a version given by a unique prefix (`3f2a` for `3f2a91c0...`).
    pub fn resolve(&self, spec: &str) -> Result<String> {
        let spec = spec.trim();
        let all = self.ids()?;
        let matches: Vec<&String> = all.iter().filter(|id| id.starts_with(spec)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] if all.is_empty() => bail!(
                "no version `{spec}`: the store {} is empty (run `understudy sync pull`)",
                self.root.display()
            ),
            [] => bail!(
                "no version `{spec}` in the store (kept: {}); `understudy sync status` lists them",
                all.join(", ")
            ),
            many => bail!(
                "`{spec}` matches several versions ({}); give more characters",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn ids(&self) -> Result<Vec<String>> {
        let mut out = vec![];
        for e in std::fs::read_dir(self.root.join("versions"))? {
            let e = e?;
            if e.path().join("meta.json").is_file() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The metadata of version `id`.
    pub fn meta(&self, id: &str) -> Result<VersionMeta> {
        let path = self.version_dir(id).join("meta.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Path of version `id`'s canonical bundle file.
    pub fn bundle_path(&self, id: &str) -> PathBuf {
        self.version_dir(id).join("bundle.yaml")
    }

    /// Load version `id`'s bundle.
    pub fn bundle(&self, id: &str) -> Result<Bundle> {
        Bundle::load(&self.bundle_path(id))
            .with_context(|| format!("stored version {id} cannot be loaded"))
    }

    /// Every stored version, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionMeta>> {
        let mut out: Vec<VersionMeta> = self
            .ids()?
            .iter()
            .filter_map(|id| self.meta(id).ok())
            .collect();
        out.sort_by_key(|m| (m.created, m.id.clone()));
        Ok(out)
    }

    /// The active pointer, rollback stack and log (`state.json`; empty when there is none yet).
    pub fn state(&self) -> Result<StoreState> {
        read_json(&self.root.join("state.json"))
    }

    fn write_state(&self, state: &StoreState) -> Result<()> {
        replace_file(
            &self.root.join("state.json"),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )
    }

    /// The active version's id, if one was activated.
    pub fn active(&self) -> Result<Option<String>> {
        Ok(self.state()?.active)
    }

    /// Make `id` the active version (the caller holds the lock).
    pub fn activate(&self, id: &str, reason: &str) -> Result<()> {
        if !self.version_dir(id).join("meta.json").is_file() {
            bail!("version {id} is not in the store");
        }
        let mut state = self.state()?;
        if state.active.as_deref() == Some(id) {
            return Ok(());
        }
        if let Some(old) = state.active.take() {
            state.previous.retain(|p| *p != old);
            state.previous.push(old.clone());
            state.last_good = Some(old);
        }
        state.active = Some(id.to_string());
        self.log(&mut state, id, reason);
        self.write_state(&state)?;
        tracing::info!(version = id, reason, "activated");
        Ok(())
    }

    /// Go back to the version that was active before; returns it.
    pub fn rollback(&self) -> Result<String> {
        let mut state = self.state()?;
        let current = state.active.clone();
        let Some(prev) = state
            .previous
            .iter()
            .rev()
            .find(|p| Some(*p) != current.as_ref())
            .cloned()
        else {
            bail!(
                "nothing to roll back to: no version was active before {}",
                current.as_deref().unwrap_or("(none)")
            );
        };
        state
            .previous
            .retain(|p| *p != prev && Some(p) != current.as_ref());
        state.active = Some(prev.clone());
        // The version rolled back from is not known good; the one before `prev` is.
        state.last_good = state.previous.last().cloned().or(Some(prev.clone()));
        self.log(
            &mut state,
            &prev,
            &format!("rollback from {}", current.as_deref().unwrap_or("-")),
        );
        self.write_state(&state)?;
        tracing::info!(version = %prev, "rolled back");
        Ok(prev)
    }

    fn log(&self, state: &mut StoreState, id: &str, reason: &str) {
        state.log.push(Activation {
            id: id.to_string(),
            at: now(),
            reason: reason.to_string(),
        });
        let excess = state.log.len().saturating_sub(100);
        state.log.drain(..excess);
    }

    /// Delete old versions beyond the newest `keep`; never the active, the
    /// last-good or one on the rollback stack. Returns the deleted ids.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>> {
        let state = self.state()?;
        let mut protected: Vec<String> = state.previous.iter().rev().take(keep).cloned().collect();
        protected.extend(state.active.clone());
        protected.extend(state.last_good.clone());
        let versions = self.versions()?;
        let newest: Vec<String> = versions
            .iter()
            .rev()
            .take(keep)
            .map(|m| m.id.clone())
            .collect();
        let mut removed = vec![];
        for m in versions {
            if protected.contains(&m.id) || newest.contains(&m.id) {
                continue;
            }
            // Rename first so a crash never leaves a half-deleted version in versions/.
            let doomed = self
                .root
                .join("tmp")
                .join(format!("prune-{}-{}", m.id, nanos()));
            std::fs::rename(self.version_dir(&m.id), &doomed)?;
            std::fs::remove_dir_all(&doomed)?;
            removed.push(m.id);
        }
        if !removed.is_empty() {
            sync_dir(&self.root.join("versions"))?;
            tracing::info!(removed = ?removed, "pruned old bundle versions");
        }
        Ok(removed)
    }

    /// What is known about every source pulled so far (`sources.json`), by source.
    pub fn sources(&self) -> Result<BTreeMap<String, SourceState>> {
        read_json(&self.root.join("sources.json"))
    }

    /// What is known about `source`; empty if it was never pulled.
    pub fn source_state(&self, source: &str) -> Result<SourceState> {
        Ok(self.sources()?.remove(source).unwrap_or_default())
    }

    /// Record what a pull of `source` found (the caller holds the lock).
    pub fn record_source(&self, source: &str, update: impl FnOnce(&mut SourceState)) -> Result<()> {
        let mut all = self.sources()?;
        update(all.entry(source.to_string()).or_default());
        replace_file(
            &self.root.join("sources.json"),
            serde_json::to_string_pretty(&all)?.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests;
