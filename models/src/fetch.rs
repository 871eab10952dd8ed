//! `fetch`: download, verify, join, convert and install every file of a pack.
//!
//! Idempotent and resumable: a file whose stamp still matches is skipped without hashing; a
//! present but unstamped file is hashed once; archives stay in the download cache until every
//! output of the pack verifies; outputs are built under a temporary name and renamed into place
//! only after their sha256 matched, so an interrupted run leaves nothing that looks finished.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::archive::with_member;
use crate::files::{
    copy_hashed, partial_path, presence, remove_stale_partials, remove_stamp, sha256_file,
    stamped_sha256, write_stamp, FetchLock, HashingWriter, Presence,
};
use crate::manifest::{Artefact, Build, FileSpec, Input, Manifest};
use crate::progress::{Progress, Step};
use crate::registry::{archive_path, ensure_archive};
use crate::{cache_dir, ct2_whisper, fix_command};

/// Knobs of [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Download cache; default `$UNDERSTUDY_CACHE_DIR`, else `<models_dir>/.cache`.
    pub cache_dir: Option<PathBuf>,
    /// Keep the downloaded archives after the pack verified (default: delete them).
    pub keep_downloads: bool,
}

/// What [`fetch`] did, per output file.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The pack that was fetched.
    pub pack: String,
    /// The models directory the files were written to.
    pub models_dir: PathBuf,
    /// One entry per output file of the pack, in manifest order.
    pub files: Vec<FetchedFile>,
    /// Packages downloaded by this run (not found in the cache).
    pub downloads: usize,
    /// Wall time of the whole fetch.
    pub elapsed: Duration,
}

/// What [`fetch`] did for one output file.
#[derive(Debug, Clone)]
pub struct FetchedFile {
    /// Name of the manifest artefact the file belongs to.
    pub artefact: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Size of the file, in bytes.
    pub size: u64,
    /// Hex sha256 of the file (equal to the pinned one).
    pub sha256: String,
    /// Whether it was already there, rehashed or built.
    pub action: FetchAction,
}

/// How [`fetch`] came to have a correct file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAction {
    /// Stamp matched: not even hashed.
    AlreadyVerified,
    /// Present without a valid stamp; hashed and found correct.
    Rehashed,
    /// Built by this run (extracted, joined or converted), in this much time.
    Built(Duration),
}

impl std::fmt::Display for FetchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self
            .files
            .iter()
            .filter(|f| matches!(f.action, FetchAction::Built(_)))
            .count();
        let bytes: u64 = self.files.iter().map(|f| f.size).sum();
        write!(
            f,
            "pack {}: {} files ({:.1} MB) verified in {}, {built} built, {} packages downloaded, {:.1} s",
            self.pack,
            self.files.len(),
            bytes as f64 / 1e6,
            self.models_dir.display(),
            self.downloads,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Installs `pack` into `models_dir`. See the module documentation.
pub fn fetch(models_dir: &Path, pack: &str, options: &FetchOptions) -> Result<FetchReport> {
    fetch_from(&Manifest::builtin()?, models_dir, pack, options)
}

fn fetch_from(
    manifest: &Manifest,
    models_dir: &Path,
    pack: &str,
    options: &FetchOptions,
) -> Result<FetchReport> {
    let started = Instant::now();
    let artefacts = manifest.select(pack)?;
    fs::create_dir_all(models_dir).with_context(|| {
        format!(
            "cannot create the models directory {}",
            models_dir.display()
        )
    })?;
    let _lock = FetchLock::acquire(models_dir)?;
    let cache = options
        .cache_dir
        .clone()
        .unwrap_or_else(|| cache_dir(models_dir));
    let progress = Progress::new();
    let mut fetcher = Fetcher {
        models_dir,
        cache: &cache,
        pack,
        progress: &progress,
        downloads: 0,
    };

    let mut files = Vec::new();
    let mut failures = Vec::new();
    for (index, artefact) in artefacts.iter().enumerate() {
        progress.note(&format!(
            "[{}/{}] {} ({})",
            index + 1,
            artefacts.len(),
            artefact.name,
            artefact.role
        ));
        for file in &artefact.files {
            match fetcher.install(artefact, file) {
                Ok(done) => files.push(done),
                // Keep going: one unreachable package should not hold back the rest, and the
                // next run resumes from whatever was finished.
                Err(e) => failures.push(format!("{}: {e:#}", file.path)),
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of the pack's files could not be installed (downloads are kept; fix the cause and run `{}` again):\n  {}",
            failures.len(),
            fix_command(models_dir, pack),
            failures.join("\n  ")
        );
    }

    if !options.keep_downloads {
        remove_downloads(&cache, &artefacts);
    }
    let report = FetchReport {
        pack: pack.to_string(),
        models_dir: models_dir.to_path_buf(),
        files,
        downloads: fetcher.downloads,
        elapsed: started.elapsed(),
    };
    progress.note(&report.to_string());
    Ok(report)
}

struct Fetcher<'a> {
    models_dir: &'a Path,
    cache: &'a Path,
    pack: &'a str,
    progress: &'a Progress,
    downloads: usize,
}

impl Fetcher<'_> {
    fn install(&mut self, artefact: &Artefact, file: &FileSpec) -> Result<FetchedFile> {
        let path = self.models_dir.join(&file.path);
        let done = |sha256: String, action| FetchedFile {
            artefact: artefact.name.clone(),
            path: path.clone(),
            size: file.size,
            sha256,
            action,
        };

        if let Some(existing) = self.check_existing(file, &path)? {
            return Ok(done(existing.0, existing.1));
        }

        for name in file.package_names() {
            let package = artefact
                .packages
                .iter()
                .find(|p| p.name == name)
                .expect("validated manifest");
            let (_, downloaded) = ensure_archive(self.cache, package, self.progress)?;
            self.downloads += usize::from(downloaded);
        }

        let started = Instant::now();
        let sha256 = self.build(artefact, file, &path)?;
        Ok(done(sha256, FetchAction::Built(started.elapsed())))
    }

    /// `Some` when the installed file is already correct.
    fn check_existing(
        &self,
        file: &FileSpec,
        path: &Path,
    ) -> Result<Option<(String, FetchAction)>> {
        match presence(path, file.size) {
            Presence::Missing => return Ok(None),
            Presence::WrongSize { actual } => {
                tracing::warn!(
                    "{} is {actual} bytes instead of {}; rebuilding it",
                    path.display(),
                    file.size
                );
                return Ok(None);
            }
            Presence::Present => {}
        }
        if let Some(stamped) = stamped_sha256(self.models_dir, &file.path) {
            if file.sha256.as_ref().is_none_or(|pinned| *pinned == stamped) {
                self.progress
                    .note(&format!("  {}: verified earlier", file.path));
                return Ok(Some((stamped, FetchAction::AlreadyVerified)));
            }
        }
        let step = self
            .progress
            .bytes(format!("verify {}", file.path), file.size);
        let actual = sha256_file(path, Some(&step))?;
        if file.sha256.as_ref().is_some_and(|pinned| *pinned != actual) {
            step.done("sha256 mismatch: rebuilding");
            remove_stamp(self.models_dir, &file.path);
            return Ok(None);
        }
        write_stamp(self.models_dir, &file.path, &actual)?;
        step.done("ok");
        Ok(Some((actual, FetchAction::Rehashed)))
    }

    /// Builds `file` under a temporary name, checks it, renames it into place; returns its sha256.
    fn build(&self, artefact: &Artefact, file: &FileSpec, path: &Path) -> Result<String> {
        fs::create_dir_all(path.parent().expect("output under the models dir"))?;
        remove_stale_partials(path);
        let partial = partial_path(path);
        let result = self.write_output(artefact, file, &partial);
        let (sha256, size) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&partial);
                return Err(e);
            }
        };
        let mismatch = if size != file.size {
            Some(format!(
                "size mismatch for {}: expected {} bytes, got {size}",
                file.path, file.size
            ))
        } else {
            match &file.sha256 {
                Some(pinned) if *pinned != sha256 => Some(format!(
                    "sha256 mismatch for {}: expected {pinned}, got {sha256}",
                    file.path
                )),
                _ => None,
            }
        };
        if let Some(mismatch) = mismatch {
            let _ = fs::remove_file(&partial);
            bail!(
                "{mismatch}; its inputs came from {}: delete that directory and run `{}`",
                self.cache.join("downloads").display(),
                fix_command(self.models_dir, self.pack)
            );
        }
        if file.sha256.is_none() {
            self.progress.note(&format!(
                "  {}: sha256 {sha256}, size {size}: not pinned in models/manifest.toml yet, add it",
                file.path
            ));
        }
        fs::rename(&partial, path)
            .with_context(|| format!("cannot move {} into place", partial.display()))?;
        write_stamp(self.models_dir, &file.path, &sha256)?;
        Ok(sha256)
    }

    fn write_output(
        &self,
        artefact: &Artefact,
        file: &FileSpec,
        partial: &Path,
    ) -> Result<(String, u64)> {
        let out = File::create(partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
        match file.build {
            Build::Copy | Build::Join => {
                let step = self
                    .progress
                    .bytes(format!("extract {}", file.path), file.size);
                for input in &file.inputs {
                    self.read_input(artefact, input, Some(&step), &mut out)?;
                }
                step.done(if file.inputs.len() > 1 {
                    "joined"
                } else {
                    "extracted"
                });
            }
            Build::Ct2WhisperGgml => {
                let expected: u64 = file.inputs.iter().filter_map(|i| i.size).sum();
                let step = self.progress.bytes(
                    format!("read CTranslate2 model for {}", file.path),
                    expected,
                );
                let mut model = Vec::with_capacity(expected as usize);
                for input in &file.inputs {
                    self.read_input(artefact, input, Some(&step), &mut model)?;
                }
                let vocabulary_input = file.vocabulary.as_ref().expect("validated manifest");
                let mut vocabulary = Vec::new();
                self.read_input(artefact, vocabulary_input, None, &mut vocabulary)?;
                let vocabulary =
                    String::from_utf8(vocabulary).context("vocabulary.txt is not UTF-8")?;
                step.done(&format!("{:.1} MB", model.len() as f64 / 1e6));

                let step = self
                    .progress
                    .spinner(format!("convert to ggml {}", file.path));
                let hp =
                    ct2_whisper::convert(&model, &vocabulary, &mut out).with_context(|| {
                        format!("cannot convert the CTranslate2 model of {}", artefact.name)
                    })?;
                step.done(&format!(
                    "{} encoder + {} decoder layers, width {}, {} tokens",
                    hp.n_audio_layer, hp.n_text_layer, hp.n_audio_state, hp.n_vocab
                ));
            }
        }
        let (buffered, sha256, size) = out.finish()?;
        buffered
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok((sha256, size))
    }

    /// Streams one archive member into `out`, checking its pinned size and sha256.
    fn read_input(
        &self,
        artefact: &Artefact,
        input: &Input,
        step: Option<&Step>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let package = artefact
            .packages
            .iter()
            .find(|p| p.name == input.package)
            .expect("validated manifest");
        let archive = archive_path(self.cache, package);
        let (sha256, size) = with_member(
            &archive,
            package.registry,
            &input.member,
            |reader: &mut dyn Read| Ok(copy_hashed(reader, out, step)?),
        )
        .with_context(|| format!("cannot extract {} from {}", input.member, package.spec()))?;
        if input.size.is_some_and(|expected| expected != size)
            || input.sha256.as_ref().is_some_and(|s| *s != sha256)
        {
            bail!(
                "{} in {} is {size} bytes with sha256 {sha256}; the manifest pins {} bytes, sha256 {}: \
                 delete {} and run `{}`",
                input.member,
                package.spec(),
                input.size.map_or("any".into(), |s| s.to_string()),
                input.sha256.as_deref().unwrap_or("any"),
                archive.display(),
                fix_command(self.models_dir, self.pack)
            );
        }
        Ok(())
    }
}

/// Deletes the archives of the pack's packages: all its outputs verified, they are not needed.
fn remove_downloads(cache: &Path, artefacts: &[&Artefact]) {
    let archives: BTreeSet<PathBuf> = artefacts
        .iter()
        .flat_map(|a| a.packages.iter())
        .map(|p| archive_path(cache, p))
        .collect();
    for archive in archives {
        if archive.exists() {
            match fs::remove_file(&archive) {
                Ok(()) => tracing::debug!("removed {}", archive.display()),
                Err(e) => tracing::warn!("cannot remove {}: {e}", archive.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
