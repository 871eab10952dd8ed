//! Update bundles: a gzip'd tar whose first member is `manifest.json` (the
//! version, the architecture, and every file with its size and sha256),
//! followed by those files; beside it, `<bundle>.minisig`, a minisign
//! signature of the whole file. `minisign -Vm BUNDLE -p KEY.pub` checks one
//! by hand.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The manifest's name, the bundle's first member.
pub const MANIFEST: &str = "manifest.json";
/// The bundle format this build reads and writes.
pub const FORMAT: u32 = 1;
/// The product every bundle must name.
pub const PRODUCT: &str = "understudy";
/// The file a slot must hold to be started.
pub const MAIN_BINARY: &str = "understudy";

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format ([`FORMAT`]).
    pub format: u32,
    /// Always [`PRODUCT`].
    pub product: String,
    /// The version the files are (`understudy --version`'s second word).
    pub version: String,
    /// The CPU architecture they run on (Rust's names: `x86_64`, `aarch64`).
    pub architecture: String,
    /// Every file, in the order of the tar.
    pub files: Vec<FileEntry>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path inside the slot, relative, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Installed with mode 0755 (else 0644).
    pub executable: bool,
}

impl Manifest {
    /// Check what this appliance needs before anything is installed: the
    /// format, the product, the architecture, safe paths and the main binary.
    pub fn check(&self, architecture: &str) -> Result<()> {
        if self.format != FORMAT || self.product != PRODUCT {
            bail!(
                "this is not an Understudy update bundle of format {FORMAT} (it says {} format {})",
                self.product,
                self.format
            );
        }
        if self.architecture != architecture {
            bail!(
                "this bundle is built for {}, and this appliance is {architecture}: get the {architecture} bundle of version {}",
                self.architecture,
                self.version
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for file in &self.files {
            if !is_safe(&file.path) {
                bail!("the manifest names an unsafe path {:?}", file.path);
            }
            if !seen.insert(file.path.as_str()) {
                bail!("the manifest names {} twice", file.path);
            }
        }
        if !seen.contains(MAIN_BINARY) {
            bail!("the bundle has no `{MAIN_BINARY}` binary");
        }
        Ok(())
    }
}

/// A relative path of plain names: nothing a tar could use to write outside the slot.
fn is_safe(path: &str) -> bool {
    !path.is_empty()
        && path != MANIFEST
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Where a bundle's signature is: beside it, `.minisig` appended.
pub fn signature_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Every file under `dir`, relative and sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in
            std::fs::read_dir(&at).with_context(|| format!("cannot read {}", at.display()))?
        {
            let path = entry?.path();
            let kind = std::fs::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            } else {
                bail!(
                    "{} is neither a file nor a folder: a bundle holds plain files",
                    path.display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256_of(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hash = Sha256::new();
    let size = std::io::copy(&mut file, &mut hash)?;
    Ok((size, hex::encode(hash.finalize())))
}

/// What to pack.
pub struct PackRequest<'a> {
    /// The folder holding the new version's files (`understudy` at its top).
    pub from: &'a Path,
    /// The version they are.
    pub version: &'a str,
    /// The architecture they run on.
    pub architecture: &'a str,
    /// The minisign secret key to sign with (asks for its password when it has one).
    pub secret_key: &'a Path,
    /// The bundle to write; its signature goes beside it.
    pub out: &'a Path,
}

/// Pack and sign a bundle; returns its manifest.
pub fn pack(request: &PackRequest) -> Result<Manifest> {
    let mut files = vec![];
    for rel in files_under(request.from)? {
        let path = request.from.join(&rel);
        let (size, sha256) = sha256_of(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode();
        let Some(name) = rel.to_str() else {
            bail!("{} is not a UTF-8 name", rel.display());
        };
        files.push(FileEntry {
            path: name.to_string(),
            size,
            sha256,
            executable: mode & 0o111 != 0,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        product: PRODUCT.into(),
        version: request.version.into(),
        architecture: request.architecture.into(),
        files,
    };
    manifest.check(request.architecture)?;
    let secret = secret_key(request.secret_key)?;

    let out = File::create(request.out)
        .with_context(|| format!("cannot write {}", request.out.display()))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::default(),
    ));
    let json = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())?;
    for file in &manifest.files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.size);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_cksum();
        let content = File::open(request.from.join(&file.path))?;
        tar.append_data(&mut header, &file.path, content)?;
    }
    tar.into_inner()?.finish()?.sync_all()?;

    let comment = format!("{PRODUCT} {} {}", manifest.version, manifest.architecture);
    let signature = minisign::sign(
        None,
        &secret,
        File::open(request.out)?,
        Some(&comment),
        None,
    )
    .map_err(|e| anyhow::anyhow!("cannot sign {}: {e}", request.out.display()))?;
    std::fs::write(signature_path(request.out), signature.to_string())?;
    Ok(manifest)
}

/// A minisign secret key; its password is asked for when it has one.
fn secret_key(path: &Path) -> Result<minisign::SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret key {}", path.display()))?;
    let key = minisign::SecretKey::from_unencrypted_box(text.clone().into())
        .or_else(|_| minisign::SecretKey::from_box(text.into(), None));
    key.map_err(|e| anyhow::anyhow!("cannot use the secret key {}: {e}", path.display()))
}

/// The public keys in `dir` (`*.pub`, minisign format), with their files.
fn trusted_keys(dir: &Path) -> Result<Vec<(PathBuf, minisign::PublicKey)>> {
    let mut keys = vec![];
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the trusted keys in {}: put the vendor's update key (a minisign .pub file) there",
            dir.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pub") {
            let key = minisign::PublicKey::from_file(&path).map_err(|e| {
                anyhow::anyhow!("{} is not a minisign public key: {e}", path.display())
            })?;
            keys.push((path, key));
        }
    }
    if keys.is_empty() {
        bail!(
            "no trusted update keys in {}: put the vendor's update key (a minisign .pub file) there",
            dir.display()
        );
    }
    Ok(keys)
}

fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// Check `bundle` against its signature and the keys in `keys_dir`, then
/// read its manifest and check it against this appliance's `architecture`.
/// Nothing is written.
pub fn verify(bundle: &Path, keys_dir: &Path, architecture: &str) -> Result<Manifest> {
    let sig_path = signature_path(bundle);
    let signature = minisign::SignatureBox::from_file(&sig_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the signature {} ({e}): an update bundle comes with its .minisig file; fetch both",
            sig_path.display()
        )
    })?;
    let keys = trusted_keys(keys_dir)?;
    let Some((_, key)) = keys.iter().find(|(_, k)| k.keynum() == signature.keynum()) else {
        bail!(
            "{} is signed by key {}, which is not trusted here (trusted, in {}: {}); refused",
            bundle.display(),
            key_id(signature.keynum()),
            keys_dir.display(),
            keys.iter()
                .map(|(p, k)| format!("{} {}", key_id(k.keynum()), p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let file = File::open(bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    minisign::verify(key, &signature, file, true, false, false).map_err(|e| {
        anyhow::anyhow!(
            "{} does not match its signature ({e}): it is damaged (cut short in transfer?) or was changed after signing; refused, fetch the bundle and its .minisig again",
            bundle.display()
        )
    })?;
    let manifest = read_manifest(bundle)?;
    manifest.check(architecture)?;
    Ok(manifest)
}

fn read_manifest(bundle: &Path) -> Result<Manifest> {
    let mut tar = open(bundle)?;
    let mut entries = tar.entries()?;
    let Some(first) = entries.next() else {
        bail!("{} is empty", bundle.display());
    };
    let mut first = first?;
    if first.path()?.as_ref() != Path::new(MANIFEST) {
        bail!("{} does not start with {MANIFEST}", bundle.display());
    }
    let mut text = String::new();
    first.read_to_string(&mut text)?;
    serde_json::from_str(&text)
        .with_context(|| format!("{MANIFEST} in {} is invalid", bundle.display()))
}

fn open(bundle: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<File>>> {
    let file = File::open(bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

/// Write the bundle's files into `dest` (created, must not exist), checking
/// each against `manifest` (verified by [`verify`]): sizes, sha256s, no file
/// the manifest does not list, none missing.
pub fn unpack(bundle: &Path, manifest: &Manifest, dest: &Path) -> Result<()> {
    let expected: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut written = std::collections::BTreeSet::new();
    std::fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut tar = open(bundle)?;
    for (i, entry) in tar.entries()?.enumerate() {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if i == 0 {
            continue; // the manifest, read by `verify`
        }
        let Some(file) = expected.get(name.as_str()) else {
            bail!("the bundle holds {name}, which its manifest does not list");
        };
        if !entry.header().entry_type().is_file() || !written.insert(file.path.as_str()) {
            bail!("the bundle's entry {name} is not one plain file");
        }
        let path = dest.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out =
            File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            size += n as u64;
        }
        if size != file.size || hex::encode(hash.finalize()) != file.sha256 {
            bail!("{name} in the bundle does not match its manifest (size or sha256)");
        }
        out.sync_all()?;
        let mode = if file.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some(missing) = manifest
        .files
        .iter()
        .find(|f| !written.contains(f.path.as_str()))
    {
        bail!(
            "the bundle lacks {}, which its manifest lists",
            missing.path
        );
    }
    std::fs::write(dest.join(MANIFEST), serde_json::to_vec_pretty(manifest)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_slot_are_unsafe() {
        for bad in ["", "../x", "/etc/passwd", "a/../../b", MANIFEST, "./x/.."] {
            assert!(!is_safe(bad), "{bad:?}");
        }
        for good in ["understudy", "espeak-ng-data/phontab"] {
            assert!(is_safe(good), "{good:?}");
        }
    }

    #[test]
    fn a_manifest_for_another_machine_is_refused_by_name() {
        let manifest = Manifest {
            format: FORMAT,
            product: PRODUCT.into(),
            version: "9.9.9".into(),
            architecture: "aarch64".into(),
            files: vec![FileEntry {
                path: MAIN_BINARY.into(),
                size: 1,
                sha256: "00".into(),
                executable: true,
            }],
        };
        let err = manifest.check("x86_64").unwrap_err().to_string();
        assert!(
            err.contains("built for aarch64") && err.contains("x86_64 bundle"),
            "{err}"
        );
        assert!(manifest.check("aarch64").is_ok());
    }
}
