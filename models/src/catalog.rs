//! `verify` (full sha256 of every file of a pack) and `list` (what exists, what is installed).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::files::{presence, sha256_file, write_stamp, Presence};
use crate::fix_command;
use crate::manifest::{Manifest, Role};
use crate::progress::Progress;

/// Result of [`verify`]: one line per file.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub pack: String,
    pub models_dir: PathBuf,
    pub files: Vec<FileCheck>,
}

#[derive(Debug, Clone)]
pub struct FileCheck {
    pub artefact: String,
    pub path: PathBuf,
    pub expected_size: u64,
    pub expected_sha256: Option<String>,
    pub status: FileStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    Ok,
    Missing,
    WrongSize {
        actual: u64,
    },
    WrongSha256 {
        actual: String,
    },
    /// The manifest pins no sha256 for this file (only while an artefact is being added).
    Unpinned {
        actual: String,
    },
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
    let manifest = Manifest::builtin()?;
    let progress = Progress::new();
    let mut files = Vec::new();
    for artefact in manifest.select(pack)? {
        for file in &artefact.files {
            let path = models_dir.join(&file.path);
            let status = match presence(&path, file.size) {
                Presence::Missing => FileStatus::Missing,
                Presence::WrongSize { actual } => FileStatus::WrongSize { actual },
                Presence::Present => {
                    let step = progress.bytes(format!("sha256 {}", file.path), file.size);
                    let actual = sha256_file(&path, Some(&step))?;
                    let status = match &file.sha256 {
                        Some(pinned) if *pinned == actual => FileStatus::Ok,
                        Some(_) => FileStatus::WrongSha256 {
                            actual: actual.clone(),
                        },
                        None => FileStatus::Unpinned {
                            actual: actual.clone(),
                        },
                    };
                    step.done(if status == FileStatus::Ok {
                        "ok"
                    } else {
                        "MISMATCH"
                    });
                    if status == FileStatus::Ok {
                        write_stamp(models_dir, &file.path, &actual)?;
                    }
                    status
                }
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
    pub models_dir: PathBuf,
    pub packs: Vec<PackInfo>,
    pub artefacts: Vec<ArtefactInfo>,
}

#[derive(Debug, Clone)]
pub struct PackInfo {
    pub name: String,
    pub description: String,
    pub artefacts: Vec<String>,
    /// Bytes of all its files once installed.
    pub size: u64,
    pub installed: bool,
}

#[derive(Debug, Clone)]
pub struct ArtefactInfo {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
    pub size: u64,
    pub licence: String,
    pub upstream: String,
    /// `registry name==version` of each package it is built from.
    pub sources: Vec<String>,
    pub packs: Vec<String>,
    pub state: InstallState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallState {
    Installed,
    /// Some files present, some missing or of the wrong size.
    Partial,
    Missing,
}

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
