//! Downloading packages with each registry's own client (`pip download`, `npm pack`,
//! `apt-get download`). The clients use the host's configured index or mirror; this crate never
//! names a registry host. Archives land in the download cache, verified by sha256.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::files::{partial_path, remove_stale_partials, sha256_file};
use crate::manifest::{Package, Registry};
use crate::progress::Progress;

/// Where the archive of `package` is kept in the download cache.
pub(crate) fn archive_path(cache_dir: &Path, package: &Package) -> PathBuf {
    cache_dir
        .join("downloads")
        .join(package.registry.to_string())
        .join(&package.file)
}

/// Makes sure the verified archive of `package` is in the cache; returns its path and whether
/// it had to be downloaded.
pub(crate) fn ensure_archive(
    cache_dir: &Path,
    package: &Package,
    progress: &Progress,
) -> Result<(PathBuf, bool)> {
    let path = archive_path(cache_dir, package);
    if path.is_file() {
        match check_archive(&path, package) {
            Ok(()) => return Ok((path, false)),
            Err(e) => {
                tracing::warn!("{e:#}; downloading it again");
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }

    // The client writes into a private directory; only a complete, verified archive is moved
    // into the cache, so an interrupted download never looks finished.
    let staging_base = cache_dir
        .join("downloads")
        .join(format!("{}-{}", package.registry, package.name));
    remove_stale_partials(&staging_base);
    let staging = partial_path(&staging_base);
    fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let step = progress.spinner(format!(
        "download {} ({})",
        package.spec(),
        package.registry
    ));
    run_client(package, &staging)?;
    let downloaded = staging.join(&package.file);
    if !downloaded.is_file() {
        let got: Vec<String> = fs::read_dir(&staging)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        bail!(
            "{} {} saved {:?}, not {:?}: the registry serves a different build of this version; \
             update `file` and `sha256` of the package in models/manifest.toml after checking it",
            package.registry,
            package.spec(),
            got,
            package.file
        );
    }
    check_archive(&downloaded, package)?;
    fs::create_dir_all(path.parent().expect("archive path has a parent"))?;
    fs::rename(&downloaded, &path)?;
    fs::remove_dir_all(&staging)?;
    let size = fs::metadata(&path)?.len();
    step.done(&format!("{:.1} MB", size as f64 / 1e6));
    Ok((path, true))
}

/// Size and sha256 of a downloaded archive against the manifest.
fn check_archive(path: &Path, package: &Package) -> Result<()> {
    let size = fs::metadata(path)?.len();
    if let Some(expected) = package.size {
        if size != expected {
            bail!(
                "{} is {size} bytes, the manifest pins {expected}",
                path.display()
            );
        }
    }
    let actual = sha256_file(path, None)?;
    match &package.sha256 {
        Some(expected) if *expected != actual => bail!(
            "sha256 mismatch for package {} ({}): expected {expected}, got {actual}; \
             the registry served different bytes for a pinned version: do not use it, check your index/mirror",
            package.spec(),
            path.display()
        ),
        Some(_) => Ok(()),
        None => {
            tracing::warn!(package = %package.spec(), sha256 = %actual, "package archive is not pinned in the manifest");
            Ok(())
        }
    }
}

fn run_client(package: &Package, dir: &Path) -> Result<()> {
    let (program, mut args, install_hint) = match package.registry {
        Registry::Pypi => {
            let (program, mut args) = pip_command();
            args.extend(
                [
                    "download",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    "--dest",
                ]
                .map(OsString::from),
            );
            args.push(dir.into());
            if let (Some(platform), Some(python)) = (&package.platform, &package.python_version) {
                args.extend(
                    ["--platform", platform, "--python-version", python].map(OsString::from),
                );
            }
            (program, args, "pip is not installed: apt-get install python3-pip (or set UNDERSTUDY_PIP to a pip command)")
        }
        Registry::Npm => (
            OsString::from("npm"),
            ["pack", "--silent"].map(OsString::from).to_vec(),
            "npm is not installed: apt-get install npm",
        ),
        Registry::Debian => (
            OsString::from("apt-get"),
            vec![OsString::from("download")],
            "apt-get is not available: Debian packages can only be fetched on a Debian-based host",
        ),
    };
    args.push(package.spec().into());

    let output = Command::new(&program)
        .args(&args)
        .current_dir(dir)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("{install_hint}"),
            _ => anyhow::Error::new(e).context(format!("cannot run {}", program.to_string_lossy())),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if package.registry == Registry::Pypi && stderr.contains("No module named pip") {
        bail!("{install_hint}");
    }
    let tail: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = tail[tail.len().saturating_sub(12)..].join("\n    ");
    let hint = match package.registry {
        Registry::Pypi => "check that pip reaches its index (pip config list) and that the version still exists",
        Registry::Npm => "check that npm reaches its registry (npm config get registry)",
        Registry::Debian => "run `apt-get update`; Debian mirrors drop superseded versions, in which case pin the current one",
    };
    bail!(
        "{} {} failed ({}):\n    {tail}\n  {hint}",
        package.registry,
        package.spec(),
        output.status
    )
}

/// `$UNDERSTUDY_PIP` (e.g. `pip3` or `/opt/venv/bin/pip`), else `python3 -m pip`.
fn pip_command() -> (OsString, Vec<OsString>) {
    match std::env::var("UNDERSTUDY_PIP") {
        Ok(custom) if !custom.trim().is_empty() => {
            let mut words = custom.split_whitespace().map(OsString::from);
            let program = words.next().expect("non-empty");
            (program, words.collect())
        }
        _ => (
            OsString::from("python3"),
            vec![OsString::from("-m"), OsString::from("pip")],
        ),
    }
}
