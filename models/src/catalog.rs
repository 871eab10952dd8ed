//! `verify` (full sha256 of every file of a pack) and `list` (what exists, what is installed).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::files::{presence, sha256_file, stamped_sha256, write_stamp, Presence};
use crate::fix_command;
use crate::manifest::{FileSpec, Manifest, Role};
use crate::progress::Progress;

/// Result of [`verify`]: one line per file.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The pack that was verified (e.g. `test` or `default`).
    pub pack: String,
    /// The models directory the files were looked up in.
    pub models_dir: PathBuf,
    /// One check per file of every artefact in the pack, in manifest order.
    pub files: Vec<FileCheck>,
}

/// The verdict on one file of a pack.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// Name of the manifest artefact the file belongs to.
    pub artefact: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Size the manifest pins, in bytes.
    pub expected_size: u64,
    /// Hex sha256 the manifest pins; `None` while an artefact is being added.
    pub expected_sha256: Option<String>,
    /// What the check found.
    pub status: FileStatus,
}

/// What [`verify`] found for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Present with the pinned size and sha256.
    Ok,
    /// Not on disk.
    Missing,
    /// On disk but not of the pinned size (an interrupted download or build); not hashed.
    WrongSize {
        /// Size found on disk, in bytes.
        actual: u64,
    },
    /// Right size but a different sha256 (corrupt or a different build).
    WrongSha256 {
        /// Hex sha256 of the file on disk.
        actual: String,
    },
    /// The manifest pins no sha256 for this file (only while an artefact is being added).
    Unpinned {
        /// Hex sha256 of the file on disk, to paste into the manifest.
        actual: String,
    },
    /// Present with the pinned size, but not hashed since it last changed
    /// (only [`inspect`] says this; [`verify`] hashes).
    NotHashed,
}

impl VerifyReport {
    /// True when every file is present and matches its pinned sha256.
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(|f| f.status == FileStatus::Ok)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.files {
            let status = match &check.status {
                FileStatus::Ok => "ok".to_string(),
                FileStatus::Missing => "MISSING".to_string(),
                FileStatus::WrongSize { actual } => format!(
                    "WRONG SIZE ({actual} bytes, expected {})",
                    check.expected_size
                ),
                FileStatus::WrongSha256 { actual } => format!(
                    "SHA256 MISMATCH (got {actual}, expected {})",
                    check.expected_sha256.as_deref().unwrap_or("-")
                ),
                FileStatus::Unpinned { actual } => {
                    format!("NOT PINNED in the manifest (sha256 {actual})")
                }
                FileStatus::NotHashed => {
                    "right size, not hashed since it changed (`understudy models verify`)".into()
                }
            };
            let path = check
                .path
                .strip_prefix(&self.models_dir)
                .unwrap_or(&check.path);
            writeln!(f, "{:<48} {status}", path.display())?;
        }
        let bad = self
            .files
            .iter()
            .filter(|c| c.status != FileStatus::Ok)
            .count();
        if bad == 0 {
            write!(
                f,
                "pack {}: all {} files verified in {}",
                self.pack,
                self.files.len(),
                self.models_dir.display()
            )
        } else {
            write!(
                f,
                "pack {}: {bad} of {} files failed in {}; run `{}` (it rebuilds missing or corrupt files)",
                self.pack,
                self.files.len(),
                self.models_dir.display(),
                fix_command(&self.models_dir, &self.pack)
            )
        }
    }
}

/// Hashes every file of `pack` in `models_dir` and compares with the manifest. Never modifies
/// models; files that verify get a fresh stamp so the next fetch skips them without hashing.
pub fn verify(models_dir: &Path, pack: &str) -> Result<VerifyReport> {
    let progress = Progress::new();
    check_files(models_dir, pack, |file, path| {
        let step = progress.bytes(format!("sha256 {}", file.path), file.size);
        let actual = sha256_file(path, Some(&step))?;
        let ok = file.sha256.as_ref() == Some(&actual);
        step.done(if ok { "ok" } else { "MISMATCH" });
        if ok {
            write_stamp(models_dir, &file.path, &actual)?;
        }
        Ok(Some(actual))
    })
}

/// What `pack`'s files are known to be without hashing them (for a status
/// page): presence and size, and the sha256 a fetch or [`verify`] recorded
/// while the file has not changed since; `NotHashed` where none is recorded.
pub fn inspect(models_dir: &Path, pack: &str) -> Result<VerifyReport> {
    check_files(models_dir, pack, |file, _| {
        Ok(stamped_sha256(models_dir, &file.path))
    })
}

/// One check per file of `pack`: missing and wrong-size files without
/// hashing; for the rest, the sha256 `hash(file, path)` gives (`None`: not
/// hashed) compared with the manifest's.
fn check_files(
    models_dir: &Path,
    pack: &str,
    mut hash: impl FnMut(&FileSpec, &Path) -> Result<Option<String>>,
) -> Result<VerifyReport> {
    let manifest = Manifest::builtin()?;
    let mut files = Vec::new();
    for artefact in manifest.select(pack)? {
        for file in &artefact.files {
            let path = models_dir.join(&file.path);
            let status = match presence(&path, file.size) {
                Presence::Missing => FileStatus::Missing,
                Presence::WrongSize { actual } => FileStatus::WrongSize { actual },
                Presence::Present => match hash(file, &path)? {
                    None => FileStatus::NotHashed,
                    Some(actual) => match &file.sha256 {
                        Some(pinned) if *pinned == actual => FileStatus::Ok,
                        Some(_) => FileStatus::WrongSha256 { actual },
                        None => FileStatus::Unpinned { actual },
                    },
                },
            };
            files.push(FileCheck {
                artefact: artefact.name.clone(),
                path,
                expected_size: file.size,
                expected_sha256: file.sha256.clone(),
                status,
            });
        }
    }
    Ok(VerifyReport {
        pack: pack.to_string(),
        models_dir: models_dir.to_path_buf(),
        files,
    })
}

/// Everything the manifest offers and what of it `models_dir` holds (cheap check: existence
/// and size; `verify` hashes).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The models directory that was inspected.
    pub models_dir: PathBuf,
    /// Every pack of the manifest, with its install state.
    pub packs: Vec<PackInfo>,
    /// Every artefact of the manifest, with its install state.
    pub artefacts: Vec<ArtefactInfo>,
}

/// One pack of the manifest as [`list`] reports it.
#[derive(Debug, Clone)]
pub struct PackInfo {
    /// Pack name, as passed to `--pack`.
    pub name: String,
    /// One-line description from the manifest.
    pub description: String,
    /// Names of the artefacts the pack installs.
    pub artefacts: Vec<String>,
    /// Bytes of all its files once installed.
    pub size: u64,
    /// True when every artefact of the pack is fully installed (existence and size, not hashed).
    pub installed: bool,
}

/// One artefact of the manifest as [`list`] reports it.
#[derive(Debug, Clone)]
pub struct ArtefactInfo {
    /// Artefact name from the manifest.
    pub name: String,
    /// Which engine input it provides.
    pub role: Role,
    /// Absolute path [`crate::resolve`] returns for it.
    pub path: PathBuf,
    /// Bytes of all its files once installed.
    pub size: u64,
    /// Licence of the model (SPDX id or name).
    pub licence: String,
    /// The original model it is derived from (upstream project and model name).
    pub upstream: String,
    /// `registry name==version` of each package it is built from.
    pub sources: Vec<String>,
    /// Names of the packs that include it.
    pub packs: Vec<String>,
    /// How much of it is on disk.
    pub state: InstallState,
}

/// How much of an artefact is on disk (existence and size only, not hashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallState {
    /// Every file present with the pinned size.
    Installed,
    /// Some files present, some missing or of the wrong size.
    Partial,
    /// No file present.
    Missing,
}

/// Everything the manifest offers and what of it `models_dir` holds (existence and size only;
/// [`verify`] hashes).
pub fn list(models_dir: &Path) -> Result<Catalog> {
    let manifest = Manifest::builtin()?;
    let artefacts: Vec<ArtefactInfo> = manifest
        .artefacts
        .iter()
        .map(|a| {
            let present = a
                .files
                .iter()
                .filter(|f| presence(&models_dir.join(&f.path), f.size) == Presence::Present)
                .count();
            let state = match present {
                0 => InstallState::Missing,
                n if n == a.files.len() => InstallState::Installed,
                _ => InstallState::Partial,
            };
            ArtefactInfo {
                name: a.name.clone(),
                role: a.role,
                path: models_dir.join(&a.path),
                size: a.files.iter().map(|f| f.size).sum(),
                licence: a.licence.clone(),
                upstream: a.upstream.clone(),
                sources: a
                    .packages
                    .iter()
                    .map(|p| format!("{} {}", p.registry, p.spec()))
                    .collect(),
                packs: manifest
                    .packs_with(&a.name)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                state,
            }
        })
        .collect();
    let packs = manifest
        .packs
        .iter()
        .map(|p| {
            let members: Vec<&ArtefactInfo> = artefacts
                .iter()
                .filter(|a| p.artefacts.contains(&a.name))
                .collect();
            PackInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                artefacts: p.artefacts.clone(),
                size: members.iter().map(|a| a.size).sum(),
                installed: members.iter().all(|a| a.state == InstallState::Installed),
            }
        })
        .collect();
    Ok(Catalog {
        models_dir: models_dir.to_path_buf(),
        packs,
        artefacts,
    })
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Models directory: {}", self.models_dir.display())?;
        writeln!(f, "\nPacks:")?;
        for pack in &self.packs {
            writeln!(
                f,
                "  {:<13} {:>9}  {:<13} {}",
                pack.name,
                megabytes(pack.size),
                if pack.installed {
                    "installed"
                } else {
                    "not installed"
                },
                pack.description
            )?;
        }
        writeln!(f, "\nArtefacts:")?;
        for a in &self.artefacts {
            let state = match a.state {
                InstallState::Installed => "installed",
                InstallState::Partial => "partial",
                InstallState::Missing => "-",
            };
            writeln!(
                f,
                "  {:<36} {:<15} {:>9}  {:<9}  packs: {}",
                a.name,
                a.role.as_str(),
                megabytes(a.size),
                state,
                a.packs.join(", ")
            )?;
            writeln!(f, "  {:<36} from {}", "", a.sources.join(", "))?;
            writeln!(f, "  {:<36} licence: {}", "", a.licence)?;
        }
        Ok(())
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
