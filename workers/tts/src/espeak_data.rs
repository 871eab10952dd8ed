//! Finding the espeak-ng data (phoneme tables, dictionaries) Piper's
//! phonemizer needs.
//!
//! Without help espeak-ng reads the data from its compile-time install path,
//! the build machine's cargo OUT_DIR, which does not exist on an appliance.
//! build.rs copies the data beside the binary; this module picks, in order:
//! `--espeak-data`, `$PIPER_ESPEAKNG_DATA_DIRECTORY`, `<exe dir>/espeak-ng-data`,
//! then the distribution's copy. Every candidate must carry the same phoneme
//! tables the binary was built with: another espeak-ng version's data loads
//! without error but mispronounces.

use crate::espeak_fingerprint::fingerprint;
use std::path::{Path, PathBuf};

pub const DATA_DIR_NAME: &str = "espeak-ng-data";
/// The variable espeak-rs reads: the directory that *contains* `espeak-ng-data`.
pub const ENV_VAR: &str = "PIPER_ESPEAKNG_DATA_DIRECTORY";
/// Fingerprint of the data this binary was built with (absent when build.rs
/// could not find it; then any complete data directory is accepted).
const BUILT_FINGERPRINT: Option<&str> = option_env!("UNDERSTUDY_ESPEAK_DATA_FINGERPRINT");
/// Where Debian's `espeak-ng-data` package puts it.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/espeak-ng-data",
    "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
    "/usr/share/espeak-ng-data",
];

/// An espeak-ng data directory that passed the checks.
#[derive(Debug, Clone)]
pub struct EspeakData {
    /// The `espeak-ng-data` directory itself.
    pub dir: PathBuf,
    /// Which rule found it, for the ready message.
    pub source: &'static str,
}

impl EspeakData {
    /// Make espeak-rs use this directory (it reads the variable on first use).
    pub fn activate(&self) {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        std::env::set_var(ENV_VAR, parent);
    }
}

/// Find the data for `language` (the voice's espeak voice, e.g. `en-us`).
/// An explicit `flag` must be valid; other candidates are skipped with a log
/// line when they are not.
pub fn locate(flag: Option<&Path>, language: &str) -> Result<EspeakData, String> {
    if let Some(dir) = flag {
        let dir = data_dir_of(dir);
        return match check(&dir, language) {
            Ok(()) => Ok(EspeakData {
                dir,
                source: "--espeak-data",
            }),
            Err(why) => Err(format!("--espeak-data {}: {why}", dir.display())),
        };
    }
    let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(dir) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        candidates.push((
            data_dir_of(Path::new(&dir)),
            "$PIPER_ESPEAKNG_DATA_DIRECTORY",
        ));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push((exe_dir.join(DATA_DIR_NAME), "beside the executable"));
    }
    candidates.extend(SYSTEM_DIRS.iter().map(|d| (PathBuf::from(d), "system")));

    let mut rejected = Vec::new();
    for (dir, source) in candidates {
        match check(&dir, language) {
            Ok(()) => return Ok(EspeakData { dir, source }),
            Err(why) => {
                if dir.exists() {
                    tracing::warn!(dir = %dir.display(), %why, "skipping espeak-ng data");
                }
                rejected.push(format!("{} ({why})", dir.display()));
            }
        }
    }
    Err(format!(
        "no usable espeak-ng data: tried {}. Pass --espeak-data with the `{DATA_DIR_NAME}` directory \
         built with this binary (cargo puts it beside `understudy-tts` in target/<profile>/)",
        rejected.join("; ")
    ))
}

/// Accept either the `espeak-ng-data` directory or the directory holding it.
fn data_dir_of(path: &Path) -> PathBuf {
    let inner = path.join(DATA_DIR_NAME);
    if inner.is_dir() {
        inner
    } else {
        path.to_path_buf()
    }
}

fn check(dir: &Path, language: &str) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let dict = format!(
        "{}_dict",
        language.split(['-', '_']).next().unwrap_or(language)
    );
    for file in ["phontab", "phonindex", "phondata", dict.as_str()] {
        if !dir.join(file).is_file() {
            return Err(format!("`{file}` is missing"));
        }
    }
    if let Some(expected) = BUILT_FINGERPRINT {
        let found = fingerprint(dir).map_err(|e| format!("cannot read the phoneme tables: {e}"))?;
        if format!("{found:016x}") != expected {
            return Err("its phoneme tables are from another espeak-ng version than the one built into this binary".into());
        }
    }
    Ok(())
}
