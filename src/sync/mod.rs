//! The sync agent: keeps the local bot matched to the cloud bot.
//!
//! ```text
//!  source (path / URL, ETag)  ->  import (CX, ES, Lex V2, Rasa -> bundle, warnings)
//!    -> validate (schema, dangling references, missing prompts, unreachable states)
//!    -> store (content-addressed version, atomic)
//!    -> parity (the bundle's test conversations, replayed; pass rate >= [sync] min_pass_rate)
//!    -> activate (store pointer; `serve` swaps the live setup after pre-rendering prompt audio)
//! ```
//!
//! - [`import`]: the four importers and the shared export reader.
//! - [`source`]: local paths and HTTP(S) with conditional requests.
//! - [`store`]: versions on disk, the active pointer, rollback, pruning.
//! - [`acceptance`], [`parity`], [`diff`]: the checks and the drift report.
//! - [`live`], [`prompt_store`], [`service`]: the serving side inside `serve`.
//!
//! Whatever fails (an unreachable source, a corrupt or truncated export,
//! dangling references, a parity score below the threshold), the active
//! version is left as it was: it keeps serving.

pub mod acceptance;
pub mod choice;
pub mod diff;
pub mod import;
pub mod live;
pub mod parity;
pub mod prompt_store;
pub mod service;
pub mod source;
pub mod store;

use crate::config::{Config, SyncConfig};
use crate::dialog::{Bundle, Nlu};
use crate::metrics;
use anyhow::{bail, Context, Result};
use import::Imported;
use parity::ParityReport;
use source::{Fetched, Source};
use std::path::Path;
use store::{now, PullRecord, Store, VersionMeta};

/// What a pull did.
#[derive(Debug)]
pub enum PullResult {
    /// The server answered 304: the export did not change since the last pull.
    NotModified,
    /// The export imports to the version already active.
    Unchanged {
        /// The active version's id.
        id: String,
    },
    /// A version was stored (or was already stored) and tested.
    Stored {
        /// The version's id.
        id: String,
        /// Whether this pull stored it (`false`: it was already in the store).
        new: bool,
        /// The import: bundle, format, warnings and counts.
        imported: Box<Imported>,
        /// The parity test's result for this version.
        parity: ParityReport,
        /// Whether it is now the active version.
        activated: bool,
        /// Why it was not activated.
        refused: Option<String>,
    },
}

/// What a pull did, and from which source.
#[derive(Debug)]
pub struct PullOutcome {
    /// The source as the store names it (a canonical path, or the URL).
    pub source: String,
    /// What the pull did.
    pub result: PullResult,
}

/// How to pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// A path or URL instead of `[sync] source`.
    pub from: Option<String>,
    /// Activate the version when it passes (else only store it).
    pub activate: bool,
    /// Download even if the server says it is unchanged.
    pub force: bool,
    /// Engines for the parity replay (rules only when empty).
    pub nlu: Nlu,
}

/// The state `sync status` reports.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// The store's folder.
    pub store: String,
    /// The active version's metadata; `None` before the first activation.
    pub active: Option<VersionMeta>,
    /// When the active version was last activated, in Unix seconds (from the activation log).
    pub activated_at: Option<u64>,
    /// The last-good version: the most recent one that served and was replaced.
    pub last_good: Option<String>,
    /// The configured `[sync] source`, as the store names it; `None` when unset.
    pub source: Option<String>,
    /// The last pull of that source (with none configured, the latest pull of any source).
    pub last_pull: Option<PullRecord>,
    /// The version the source held at its last successful pull or check.
    pub latest: Option<String>,
    /// `in sync`, `differs`, or why it is unknown.
    pub drift: String,
    /// Every stored version, oldest first.
    pub versions: Vec<VersionMeta>,
}

/// The sync agent: the versioned store and the `[sync]` settings.
pub struct SyncAgent {
    /// The versioned bundle store.
    pub store: Store,
    /// The `[sync]` configuration.
    pub config: SyncConfig,
}

impl SyncAgent {
    /// Open (creating) the store at `[sync] store`, or its default folder.
    pub fn open(config: &Config) -> Result<SyncAgent> {
        let store = Store::open(&config.sync.store_dir())?;
        Ok(SyncAgent {
            store,
            config: config.sync.clone(),
        })
    }

    fn source(&self, from: Option<&str>) -> Result<Source> {
        match from.or(self.config.source.as_deref()) {
            Some(s) => Ok(Source::parse(s)),
            None => bail!("no source to pull from: give --from PATH|URL or set [sync] source in the configuration"),
        }
    }

    /// Fetch, import, validate, store, test and (optionally) activate. On
    /// any error the store's active version is untouched, and the failure is
    /// recorded for `sync status`.
    pub async fn pull(&self, opts: PullOptions) -> Result<PullOutcome> {
        let source = self.source(opts.from.as_deref())?;
        let key = source.key();
        let span = tracing::info_span!("sync_pull", source = %key);
        let result =
            tracing::Instrument::instrument(self.pull_inner(&source, &key, &opts), span).await;
        let record = |result: &str, detail: String, version: Option<String>| PullRecord {
            at: now(),
            at_ms: store::now_ms(),
            result: result.into(),
            detail,
            version,
        };
        let (rec, success) = match &result {
            Ok(PullResult::NotModified) => (
                record("not_modified", "the source did not change".into(), None),
                true,
            ),
            Ok(PullResult::Unchanged { id }) => (
                record(
                    "unchanged",
                    format!("same as the active version {id}"),
                    Some(id.clone()),
                ),
                true,
            ),
            Ok(PullResult::Stored {
                id,
                refused: Some(why),
                ..
            }) => (record("refused", why.clone(), Some(id.clone())), true),
            Ok(PullResult::Stored {
                id, activated, new, ..
            }) => {
                let what = match (new, activated) {
                    (_, true) => format!("version {id} activated"),
                    (true, false) => format!("version {id} stored (not activated)"),
                    (false, false) => format!("version {id} was already stored (not activated)"),
                };
                (record("ok", what, Some(id.clone())), true)
            }
            Err(e) => (record("failed", format!("{e:#}"), None), false),
        };
        metrics::counter_inc(
            "understudy_sync_pulls_total",
            &[("result", rec.result.as_str())],
        );
        let _lock = self.store.lock()?;
        self.store.record_source(&key, |s| {
            if success && rec.result != "not_modified" {
                s.last_success = Some(rec.clone());
            }
            s.last_pull = Some(rec.clone());
        })?;
        match &result {
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "pull failed; the active version keeps serving")
            }
            Ok(_) => tracing::info!(result = %rec.result, detail = %rec.detail, "pull done"),
        }
        result.map(|result| PullOutcome {
            source: key,
            result,
        })
    }

    async fn pull_inner(
        &self,
        source: &Source,
        key: &str,
        opts: &PullOptions,
    ) -> Result<PullResult> {
        let state = self.store.source_state(key)?;
        let fetched = source.fetch(&state, !opts.force).await?;
        let Some((imported, validators)) = import_fetched(fetched, key).await? else {
            return Ok(PullResult::NotModified);
        };
        let id = store::version_id(&imported.bundle);
        if let Some((etag, last_modified)) = validators {
            let _lock = self.store.lock()?;
            self.store.record_source(key, |s| {
                s.etag = etag;
                s.last_modified = last_modified;
            })?;
        }
        if self.store.active()?.as_deref() == Some(id.as_str()) {
            return Ok(PullResult::Unchanged { id });
        }
        let meta = VersionMeta {
            id: id.clone(),
            created: now(),
            source: key.to_string(),
            format: imported.format,
            bot_name: imported.bundle.bot.name.clone(),
            bot_version: imported.bundle.bot.version.clone(),
            stats: imported.stats.clone(),
            warnings: imported.warnings.clone(),
            validation: acceptance::check(&imported.bundle).warnings,
            parity: None,
            import_ms: imported.ms,
        };
        let (id, new) = {
            let _lock = self.store.lock()?;
            self.store.put(&imported.bundle, &meta)?
        };
        let parity = self.test_version(&id, opts.nlu.clone()).await?;
        let mut activated = false;
        let mut refused = None;
        if opts.activate {
            if parity.allows(self.config.min_pass_rate) {
                let _lock = self.store.lock()?;
                self.store.activate(&id, "pull")?;
                self.store.prune(self.config.keep)?;
                activated = true;
            } else {
                refused = Some(format!(
                    "parity {} is below [sync] min_pass_rate {:.0}%; the active version keeps serving. Failing conversations:\n{}",
                    parity.summary(),
                    self.config.min_pass_rate * 100.0,
                    parity.failures_text()
                ));
            }
        }
        Ok(PullResult::Stored {
            id,
            new,
            imported: Box::new(imported),
            parity,
            activated,
            refused,
        })
    }

    /// Replay a stored version's test conversations and keep the result in its metadata.
    pub async fn test_version(&self, id: &str, nlu: Nlu) -> Result<ParityReport> {
        let bundle = self.store.bundle(id)?;
        let report = parity::run(&bundle, nlu).await?;
        let _lock = self.store.lock()?;
        let mut meta = self.store.meta(id)?;
        meta.parity = Some(report.clone());
        self.store.update_meta(&meta)?;
        Ok(report)
    }

    /// Activate a stored version by id or prefix. A version whose last
    /// parity run is below the threshold needs `force`.
    pub fn activate(&self, spec: &str, force: bool) -> Result<String> {
        let id = self.store.resolve(spec)?;
        let meta = self.store.meta(&id)?;
        if let Some(p) = &meta.parity {
            if !force && !p.allows(self.config.min_pass_rate) {
                bail!(
                    "version {id} failed its parity test ({}); fix the bot, or activate it anyway with --force\n{}",
                    p.summary(),
                    p.failures_text()
                );
            }
        }
        let _lock = self.store.lock()?;
        self.store.activate(&id, "activate")?;
        Ok(id)
    }

    /// Go back to the version that was active before, under the store lock; returns its id.
    pub fn rollback(&self) -> Result<String> {
        let _lock = self.store.lock()?;
        self.store.rollback()
    }

    /// The active bundle, if any version was activated.
    pub fn active_bundle(&self) -> Result<Option<(String, Bundle)>> {
        match self.store.active()? {
            Some(id) => Ok(Some((id.clone(), self.store.bundle(&id)?))),
            None => Ok(None),
        }
    }

    /// Where things stand; with `check`, ask the source whether it changed.
    pub async fn status(&self, check: bool) -> Result<Status> {
        let mut status = self.local_status()?;
        if !check || status.source.is_none() {
            return Ok(status);
        }
        match self.latest_version().await {
            Ok(latest) => {
                if latest.is_some() {
                    status.latest = latest;
                }
                let active = status.active.as_ref().map(|m| &m.id);
                status.drift = match &status.latest {
                    Some(l) if Some(l) == active => "in sync: the cloud's latest export is the active version".into(),
                    Some(l) => format!("differs: the cloud's latest export is version {l} (`understudy sync diff` shows what changed)"),
                    None => "unknown: never pulled".into(),
                };
            }
            Err(e) => status.drift = format!("unknown: {e:#}"),
        }
        Ok(status)
    }

    /// Where things stand from the store alone, without asking the source
    /// (the dashboard's view; `drift` says it was not checked).
    pub fn local_status(&self) -> Result<Status> {
        let state = self.store.state()?;
        let active = state
            .active
            .as_deref()
            .map(|id| self.store.meta(id))
            .transpose()?;
        let source = self.config.source.clone().map(|s| Source::parse(&s).key());
        let (last_pull, latest) = match &source {
            Some(k) => {
                let s = self.store.source_state(k)?;
                (s.last_pull, s.last_success.and_then(|r| r.version))
            }
            // No configured source: the most recent pull of any (`--from`).
            None => (
                self.store
                    .sources()?
                    .into_values()
                    .filter_map(|s| s.last_pull)
                    .max_by_key(|p| p.at_ms),
                None,
            ),
        };
        let drift = match &source {
            None => "unknown: no [sync] source configured".to_string(),
            Some(_) => "not checked (--offline)".to_string(),
        };
        let activated_at = state
            .log
            .iter()
            .rev()
            .find(|a| Some(&a.id) == state.active.as_ref())
            .map(|a| a.at);
        Ok(Status {
            store: self.store.root().display().to_string(),
            active,
            activated_at,
            last_good: state.last_good,
            source,
            last_pull,
            latest,
            drift,
            versions: self.store.versions()?,
        })
    }

    /// The version the configured source holds now (`None` when the server says unchanged
    /// and it was never imported). Imports without storing.
    async fn latest_version(&self) -> Result<Option<String>> {
        let source = self.source(None)?;
        let key = source.key();
        let state = self.store.source_state(&key)?;
        let Some((imported, _)) = import_fetched(source.fetch(&state, true).await?, &key).await?
        else {
            return Ok(state.last_success.and_then(|r| r.version));
        };
        let bundle = imported.bundle;
        Ok(Some(store::version_id(&bundle)))
    }

    /// A bundle named on the command line: a stored version (id or prefix),
    /// `active`, or a path/URL to import without storing.
    pub async fn bundle_for(&self, spec: &str) -> Result<(String, Bundle)> {
        if spec == "active" {
            return self
                .active_bundle()?
                .context("no version is active (run `understudy sync pull`)");
        }
        if spec.starts_with("http://") || spec.starts_with("https://") || Path::new(spec).exists() {
            let source = Source::parse(spec);
            let key = source.key();
            let (imported, _) =
                import_fetched(source.fetch(&Default::default(), false).await?, &key)
                    .await?
                    .context("an unconditional fetch always brings the export")?;
            let bundle = imported.bundle;
            return Ok((spec.to_string(), bundle));
        }
        let id = self.store.resolve(spec)?;
        Ok((id.clone(), self.store.bundle(&id)?))
    }
}

/// ETag and Last-Modified of a download, to send with the next pull.
type Validators = (Option<String>, Option<String>);

/// Import what a fetch brought (`None`: the server said it had not changed).
async fn import_fetched(
    fetched: Fetched,
    origin: &str,
) -> Result<Option<(Imported, Option<Validators>)>> {
    let origin = origin.to_string();
    Ok(match fetched {
        Fetched::NotModified => None,
        Fetched::Path(p) => Some((
            tokio::task::spawn_blocking(move || import::import_path(&p)).await??,
            None,
        )),
        Fetched::Download {
            bytes,
            etag,
            last_modified,
        } => {
            let imported =
                tokio::task::spawn_blocking(move || import::import_bytes(&bytes, &origin))
                    .await??;
            Some((imported, Some((etag, last_modified))))
        }
    })
}

/// The bundle `understudy chat --bundle X` talks to: a bundle file, an
/// export (zip/folder, imported on the fly, warnings logged), or a stored
/// version id (or `active`).
pub fn resolve_bundle(spec: &str, config: &Config) -> Result<Bundle> {
    let path = Path::new(spec);
    let is_zip = || std::fs::read(path).is_ok_and(|b| b.starts_with(b"PK"));
    if path.is_dir() || (path.is_file() && is_zip()) {
        let imported =
            import::import_path(path).with_context(|| format!("cannot import {spec}"))?;
        for w in &imported.warnings {
            tracing::warn!("import: {w}");
        }
        tracing::info!(
            format = imported.format.label(),
            warnings = imported.warnings.len(),
            "imported {spec} for this chat (not stored; `understudy sync pull --from {spec}` stores it)"
        );
        return Ok(imported.bundle);
    }
    if path.is_file() {
        return Ok(Bundle::load(path)?);
    }
    let agent = SyncAgent::open(config)?;
    if spec == "active" {
        return agent
            .active_bundle()?
            .map(|(_, b)| b)
            .context("no version is active (run `understudy sync pull`)");
    }
    let id = agent
        .store
        .resolve(spec)
        .with_context(|| format!("`{spec}` is neither a file nor a stored version"))?;
    agent.store.bundle(&id)
}
