//! The files of an export, however it arrived: a zip (from disk or an HTTP
//! download), a directory, or one bundle file. Real exports are messy, so
//! this is where they are cleaned up once for every importer:
//! - junk entries (`__MACOSX/`, `.DS_Store`, `._*`, folders) are skipped and listed;
//! - URL-encoded names (`Default%20Welcome%20Intent.json`) are decoded;
//! - the export is re-rooted at its own top folder (a zip of `my-agent/agent.json`
//!   reads as `agent.json`), found by the marker file of each format;
//! - unsafe names (`../x`, absolute paths) never leave the archive, and the
//!   total size is bounded so a zip bomb cannot fill the appliance.

use super::ImportError;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Most bytes an export may unpack to (real bots are a few MB).
const MAX_UNPACKED: u64 = 256 << 20;

/// Files that mark an export's top folder, most specific first.
const ROOT_MARKERS: &[&str] = &["Manifest.json", "agent.json", "domain.yml", "domain.yaml"];

/// An export's files by path from its top folder, with the junk entries it skipped.
#[derive(Debug, Clone)]
pub struct ExportFiles {
    origin: String,
    files: BTreeMap<String, Vec<u8>>,
    skipped: Vec<String>,
}

impl ExportFiles {
    /// A zip file, a directory, or a single bundle file.
    pub fn open(path: &Path) -> Result<ExportFiles, ImportError> {
        let origin = path.display().to_string();
        let read_err = |e: std::io::Error| ImportError::Read {
            origin: origin.clone(),
            detail: format!("{e} (check the path given to --from or [sync] source)"),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.is_dir() {
            let mut files = BTreeMap::new();
            let mut skipped = vec![];
            read_dir(path, path, &mut files, &mut skipped, &mut 0).map_err(read_err)?;
            return Ok(ExportFiles::rooted(origin, files, skipped));
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        ExportFiles::from_bytes(&bytes, &origin)
    }

    /// A zip archive or a bundle file, in memory.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<ExportFiles, ImportError> {
        if bytes.starts_with(b"PK") {
            return ExportFiles::from_zip(bytes, origin);
        }
        let name = origin
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(origin)
            .to_string();
        let looks_like_bundle =
            std::str::from_utf8(bytes).is_ok_and(|t| t.contains("understudy-bundle/"));
        if looks_like_bundle {
            let mut files = BTreeMap::new();
            files.insert(name, bytes.to_vec());
            return Ok(ExportFiles {
                origin: origin.into(),
                files,
                skipped: vec![],
            });
        }
        if bytes.is_empty() {
            return Err(ImportError::Corrupt {
                origin: origin.into(),
                detail: "the file is empty".into(),
            });
        }
        // Dialogflow CX's agents.export writes a protobuf "blob" unless asked
        // for a JSON package; it starts with the agent's resource name.
        let head = &bytes[..bytes.len().min(512)];
        let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
        if has(b"projects/") && has(b"/agents/") {
            return Err(ImportError::UnknownFormat {
                origin: origin.into(),
                detail: "it is a Dialogflow CX agent in the binary (protobuf) BLOB format, which only Dialogflow itself reads. Export the agent as a JSON package instead (console: Agent settings > Export > JSON package; API: agents.export with dataFormat JSON_PACKAGE)".into(),
            });
        }
        Err(ImportError::Corrupt {
            origin: origin.into(),
            detail: "it does not start like a zip archive (no PK signature) and is not an understudy bundle".into(),
        })
    }

    fn from_zip(bytes: &[u8], origin: &str) -> Result<ExportFiles, ImportError> {
        let corrupt = |detail: String| ImportError::Corrupt {
            origin: origin.into(),
            detail,
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
            corrupt(match e {
                zip::result::ZipError::InvalidArchive(m) if m.contains("central directory") => {
                    format!("{m}: the end of the archive is missing, as in a truncated download")
                }
                other => other.to_string(),
            })
        })?;
        let mut files = BTreeMap::new();
        let mut skipped = vec![];
        let mut total = 0u64;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| corrupt(format!("entry {i}: {e}")))?;
            let raw = entry.name().to_string();
            if entry.is_dir() {
                continue;
            }
            let Some(name) = clean_name(&raw) else {
                skipped.push(raw);
                continue;
            };
            total += entry.size();
            if total > MAX_UNPACKED {
                return Err(corrupt(format!(
                    "it unpacks to more than {} MiB; a bot export is far smaller",
                    MAX_UNPACKED >> 20
                )));
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| corrupt(format!("{raw}: {e} (damaged entry; CRC or data error)")))?;
            files.insert(name, data);
        }
        Ok(ExportFiles::rooted(origin.into(), files, skipped))
    }

    /// Keep only the files under the export's own top folder.
    fn rooted(
        origin: String,
        files: BTreeMap<String, Vec<u8>>,
        mut skipped: Vec<String>,
    ) -> ExportFiles {
        // The shallowest marker of any kind: a Rasa project may carry a
        // Dialogflow export inside its data/ as training data.
        let root = files
            .keys()
            .filter(|p| {
                p.rsplit('/')
                    .next()
                    .is_some_and(|f| ROOT_MARKERS.iter().any(|m| f.eq_ignore_ascii_case(m)))
            })
            .min_by_key(|p| p.matches('/').count())
            .map(|p| p[..p.len() - p.rsplit('/').next().unwrap().len()].to_string());
        let files = match root {
            Some(prefix) if !prefix.is_empty() => {
                let mut kept = BTreeMap::new();
                for (path, data) in files {
                    match path.strip_prefix(&prefix) {
                        Some(rest) => {
                            kept.insert(rest.to_string(), data);
                        }
                        None => skipped.push(path),
                    }
                }
                kept
            }
            _ => files,
        };
        ExportFiles {
            origin,
            files,
            skipped,
        }
    }

    /// The path or URL the export came from, as messages name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Entries that were not part of the bot.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// A file's bytes by its exact path from the export's top folder.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// A top-level file by case-insensitive name.
    pub fn get_ci(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, d)| d.as_slice())
    }

    /// Every file's path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Paths under `dir/` (recursively), sorted.
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.files
            .keys()
            .filter(move |p| p.starts_with(&prefix))
            .map(String::as_str)
    }

    /// The bundle file when the export is one understudy bundle.
    pub fn single_bundle(&self) -> Option<(&str, &[u8])> {
        if self.files.len() != 1 {
            return None;
        }
        let (p, d) = self.files.iter().next()?;
        let ext_ok = [".yaml", ".yml", ".json"].iter().any(|e| p.ends_with(e));
        let head = &d[..d.len().min(4096)];
        (ext_ok && String::from_utf8_lossy(head).contains("understudy-bundle/"))
            .then_some((p.as_str(), d.as_slice()))
    }
}

/// The name an entry has inside the export, or `None` for junk and unsafe names.
fn clean_name(raw: &str) -> Option<String> {
    let raw = raw.replace('\\', "/");
    let mut parts = vec![];
    for part in raw.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        let decoded = percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == ".." || decoded.contains('/') || decoded == "__MACOSX" {
            return None;
        }
        parts.push(decoded);
    }
    let file = parts.last()?;
    let junk = file == ".DS_Store"
        || file == "Thumbs.db"
        || file == "desktop.ini"
        || file.starts_with("._");
    (!junk).then(|| parts.join("/"))
}

fn read_dir(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, Vec<u8>>,
    skipped: &mut Vec<String>,
    total: &mut u64,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            // Version control and virtual environments are never part of a bot.
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || name == "__MACOSX"
                || name == "node_modules"
                || name == "venv"
            {
                continue;
            }
            read_dir(root, &path, files, skipped, total)?;
        } else if kind.is_file() {
            match clean_name(&rel) {
                Some(name) => {
                    *total += entry.metadata()?.len();
                    if *total > MAX_UNPACKED {
                        return Err(std::io::Error::other(format!(
                            "more than {} MiB of files: is this a bot export?",
                            MAX_UNPACKED >> 20
                        )));
                    }
                    files.insert(name, std::fs::read(&path)?);
                }
                None => skipped.push(rel),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            for (name, body) in entries {
                z.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                z.write_all(body.as_bytes()).unwrap();
            }
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn junk_is_skipped_names_decoded_and_the_root_found() {
        let bytes = zip_of(&[
            ("__MACOSX/agent/._agent.json", "x"),
            ("my%20agent/.DS_Store", "x"),
            ("my%20agent/agent.json", "{}"),
            ("my%20agent/intents/Default%20Welcome%20Intent.json", "{}"),
            ("../../etc/passwd", "x"),
        ]);
        let f = ExportFiles::from_bytes(&bytes, "a.zip").unwrap();
        let paths: Vec<&str> = f.paths().collect();
        assert_eq!(
            paths,
            vec!["agent.json", "intents/Default Welcome Intent.json"]
        );
        assert_eq!(f.skipped().len(), 3, "{:?}", f.skipped());
    }

    #[test]
    fn truncated_and_garbage_archives_say_so() {
        let bytes = zip_of(&[("agent.json", "{}")]);
        let err = ExportFiles::from_bytes(&bytes[..bytes.len() / 2], "cut.zip")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.zip") && err.contains("corrupt or was cut off"),
            "{err}"
        );
        let err = ExportFiles::from_bytes(b"<html>503</html>", "page.zip")
            .unwrap_err()
            .to_string();
        assert!(err.contains("PK signature"), "{err}");
    }
}
