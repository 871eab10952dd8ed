//! File plumbing shared by fetch, verify and resolve: sha256 with progress, the cheap
//! existence/size check, "verified" stamps that let a re-run skip hashing, and the fetch lock.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::progress::Step;

const BUFFER: usize = 1 << 20;

/// sha256 (lowercase hex) of a file, reporting bytes read to `step`.
pub(crate) fn sha256_file(path: &Path, step: Option<&Step>) -> Result<String> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (sha, _) = copy_hashed(
        &mut BufReader::with_capacity(BUFFER, file),
        &mut io::sink(),
        step,
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(sha)
}

/// Copies `reader` into `writer`; returns the sha256 and length of what went through.
pub(crate) fn copy_hashed(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    step: Option<&Step>,
) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        writer.write_all(&buffer[..n])?;
        total += n as u64;
        if let Some(step) = step {
            step.inc(n as u64);
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// A writer that hashes and counts what it passes on.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// Flushes and returns (inner, sha256, bytes written).
    pub fn finish(mut self) -> io::Result<(W, String, u64)> {
        self.inner.flush()?;
        Ok((
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        ))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The cheap check: does the file exist with the expected size?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    Missing,
    WrongSize { actual: u64 },
}

pub(crate) fn presence(path: &Path, expected_size: u64) -> Presence {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == expected_size => Presence::Present,
        Ok(meta) if meta.is_file() => Presence::WrongSize { actual: meta.len() },
        _ => Presence::Missing,
    }
}

/// Record that `path` (relative to `models_dir`) hashed to `sha256`, with the size and mtime it
/// had then: while those do not change, a later fetch trusts the file without re-hashing it.
/// `verify` always re-hashes.
pub(crate) fn write_stamp(models_dir: &Path, rel: &str, sha256: &str) -> Result<()> {
    let meta = fs::metadata(models_dir.join(rel))?;
    let stamp = stamp_path(models_dir, rel);
    fs::create_dir_all(stamp.parent().expect("stamp has a parent"))?;
    let body = format!("{sha256} {} {}\n", meta.len(), mtime_nanos(&meta));
    write_atomically(&stamp, body.as_bytes())
}

/// The sha256 a valid stamp records for `rel`, if the file still has the stamped size and mtime.
pub(crate) fn stamped_sha256(models_dir: &Path, rel: &str) -> Option<String> {
    let body = fs::read_to_string(stamp_path(models_dir, rel)).ok()?;
    let meta = fs::metadata(models_dir.join(rel)).ok()?;
    let mut fields = body.split_whitespace();
    let (sha, size, mtime) = (fields.next()?, fields.next()?, fields.next()?);
    (size == meta.len().to_string() && mtime == mtime_nanos(&meta).to_string())
        .then(|| sha.to_string())
}

pub(crate) fn remove_stamp(models_dir: &Path, rel: &str) {
    let _ = fs::remove_file(stamp_path(models_dir, rel));
}

fn stamp_path(models_dir: &Path, rel: &str) -> PathBuf {
    models_dir.join(".verified").join(format!("{rel}.sha256"))
}

fn mtime_nanos(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Writes a small file through a temporary name and a rename, so readers never see half of it.
pub(crate) fn write_atomically(path: &Path, body: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// The temporary name an output is built under before the atomic rename.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("file path").to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

/// Removes what killed runs left of `path` (`<name>.partial-<pid>`); callers hold the fetch lock.
pub(crate) fn remove_stale_partials(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.partial-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let stale = entry.path();
            tracing::debug!("removing {} left by an interrupted fetch", stale.display());
            let _ = if stale.is_dir() {
                fs::remove_dir_all(&stale)
            } else {
                fs::remove_file(&stale)
            };
        }
    }
}

/// An exclusive claim on a models directory for one fetch, released on drop. The lock file
/// holds the owner's pid; a lock whose process is gone (a killed fetch) is taken over.
pub(crate) struct FetchLock {
    path: PathBuf,
}

impl FetchLock {
    pub fn acquire(models_dir: &Path) -> Result<FetchLock> {
        let path = models_dir.join(".fetch.lock");
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())?;
                    return Ok(FetchLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim();
                    let alive = owner
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if alive {
                        bail!(
                            "another fetch (pid {owner}) is writing to {}: wait for it to finish",
                            models_dir.display()
                        );
                    }
                    tracing::warn!(
                        "removing stale lock {} (pid {owner:?} is gone)",
                        path.display()
                    );
                    fs::remove_file(&path)?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
        bail!("cannot lock {}", path.display())
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("stt")).unwrap();
        fs::write(dir.path().join("stt/a.bin"), b"abc").unwrap();
        assert_eq!(stamped_sha256(dir.path(), "stt/a.bin"), None);
        write_stamp(dir.path(), "stt/a.bin", "00ff").unwrap();
        assert_eq!(
            stamped_sha256(dir.path(), "stt/a.bin").as_deref(),
            Some("00ff")
        );
        // Any rewrite (new size or mtime) invalidates the stamp.
        fs::write(dir.path().join("stt/a.bin"), b"abcd").unwrap();
        assert_eq!(stamped_sha256(dir.path(), "stt/a.bin"), None);
    }

    #[test]
    fn hashes_known_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path, None).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        let (bytes, sha, n) = writer.finish().unwrap();
        assert_eq!(
            (bytes.as_slice(), sha.as_str(), n),
            (
                &b"abc"[..],
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                3
            )
        );
    }

    #[test]
    fn lock_is_exclusive_and_recovers_from_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FetchLock::acquire(dir.path()).unwrap();
        let err = FetchLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(err.contains("another fetch"), "{err}");
        drop(lock);
        // A lock left by a process that no longer exists is taken over.
        fs::write(dir.path().join(".fetch.lock"), "999999999\n").unwrap();
        let _lock = FetchLock::acquire(dir.path()).unwrap();
    }
}
