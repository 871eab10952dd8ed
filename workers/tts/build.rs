//! Build script of the TTS worker.
//!
//! 1. espeak-rs-sys builds espeak-ng against the system's libsonic (Debian's
//!    libsonic-dev) when it is installed, but does not link it: link it here.
//! 2. Ship espeak-ng's data beside the binary. espeak-rs-sys installs the data
//!    its espeak-ng needs (phoneme tables and dictionaries, ~9 MB, version
//!    specific) into its own OUT_DIR, a path that exists only on the build
//!    machine. This script copies it to `<target>/<profile>/espeak-ng-data`,
//!    next to `understudy-tts`, where the worker looks first; packaging copies
//!    that directory along with the binary.
//!
//! espeak-rs-sys declares no `links` key, so cargo would not wait for its build
//! script before running this one. It is therefore also a build-dependency of
//! this crate: cargo then finishes one complete espeak-rs-sys build (for the
//! host; the data is architecture independent) before this script runs. Among
//! the espeak-rs-sys builds in the build directory the newest finished one
//! (cargo writes its `output` file at the end) is copied.
//!
//! The data's fingerprint is compiled into the worker, which refuses data
//! from another espeak-ng version (Debian's 1.51 data with this 1.52 library
//! would load without error and mispronounce).

#[path = "src/espeak_fingerprint.rs"]
mod espeak_fingerprint;

use espeak_fingerprint::fingerprint;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const DATA_DIR_NAME: &str = "espeak-ng-data";

fn main() {
    println!("cargo:rustc-link-lib=static=sonic");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/espeak_fingerprint.rs");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/understudy-tts-<hash>/out.
    let Some(build_dir) = out_dir.ancestors().nth(2) else {
        return;
    };
    let Some(profile_dir) = build_dir.parent() else {
        return;
    };

    let Some(source) = newest_espeak_data(build_dir) else {
        println!(
            "cargo:warning=espeak-ng data not found under {}/espeak-rs-sys-*/out/share; \
             understudy-tts will need --espeak-data",
            build_dir.display()
        );
        return;
    };
    let fingerprint = fingerprint(&source).expect("espeak-ng data was just checked");
    println!("cargo:rustc-env=UNDERSTUDY_ESPEAK_DATA_FINGERPRINT={fingerprint:016x}");
    println!(
        "cargo:rerun-if-changed={}",
        source.join("phondata").display()
    );

    let dest = profile_dir.join(DATA_DIR_NAME);
    if fingerprint_of_existing(&dest) == Some(fingerprint) {
        return;
    }
    // Copy beside, then swap in, so a worker starting meanwhile never sees half a copy.
    let staging = profile_dir.join(format!(".{DATA_DIR_NAME}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    copy_dir(&source, &staging)
        .unwrap_or_else(|e| panic!("copying {} failed: {e}", source.display()));
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&staging, &dest)
        .unwrap_or_else(|e| panic!("installing {} failed: {e}", dest.display()));
}

/// The data directory of the most recently finished espeak-rs-sys build.
fn newest_espeak_data(build_dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(build_dir).ok()?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("espeak-rs-sys-")
        {
            continue;
        }
        let data = entry.path().join("out").join("share").join(DATA_DIR_NAME);
        let finished = entry
            .path()
            .join("output")
            .metadata()
            .and_then(|m| m.modified());
        if let (Ok(when), true) = (finished, data.join("phondata").is_file()) {
            if best.as_ref().is_none_or(|(t, _)| when > *t) {
                best = Some((when, data));
            }
        }
    }
    best.map(|(_, data)| data)
}

fn fingerprint_of_existing(dir: &Path) -> Option<u64> {
    dir.join("phondata")
        .is_file()
        .then(|| fingerprint(dir).ok())
        .flatten()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
