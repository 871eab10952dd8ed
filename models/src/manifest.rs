//! The model manifest (`models/manifest.toml`): packs, artefacts, the registry packages they
//! come from and the sha256/size every output must have. The file is compiled into the crate,
//! so an installed `understudy` binary carries the manifest it was built with.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The manifest shipped with this build (`models/manifest.toml`).
pub const BUILTIN_MANIFEST: &str = include_str!("../manifest.toml");

const SCHEMA_VERSION: u32 = 1;

/// The parsed `models/manifest.toml`: every pack and every artefact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version of the file; only the current one is accepted.
    pub schema: u32,
    /// The `[[pack]]` tables.
    #[serde(rename = "pack")]
    pub packs: Vec<Pack>,
    /// The `[[artefact]]` tables.
    #[serde(rename = "artefact")]
    pub artefacts: Vec<Artefact>,
}

/// A named set of artefacts installed together ("test", "default"...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// Pack name, as passed to `--pack`.
    pub name: String,
    /// One-line description for `models list`.
    pub description: String,
    /// Names of the artefacts it installs.
    pub artefacts: Vec<String>,
    /// One of `artefacts`: a smaller Whisper beside the pack's own, for clean
    /// bot speech (the cloud bot's last prompt at a takeover), where speed
    /// matters more than the last word. The one-artefact-per-role rule does
    /// not count it.
    #[serde(default)]
    pub fast_stt: Option<String>,
}

/// One model (or other asset) as the engines see it: a role and a path, made of one or more
/// output files built from registry packages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefact {
    /// Unique artefact name, referenced by packs.
    pub name: String,
    /// Which engine input it provides.
    pub role: Role,
    /// What [`crate::resolve`] returns for the role, relative to the models directory.
    pub path: String,
    /// Licence of the model (SPDX id or name).
    pub licence: String,
    /// The original model it is derived from (upstream project and model name).
    pub upstream: String,
    /// One-line description for `models list`.
    pub description: String,
    /// The registry packages its files are built from (`[[artefact.package]]`).
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    /// The output files it consists of (`[[artefact.file]]`).
    #[serde(rename = "file")]
    pub files: Vec<FileSpec>,
}

/// What the engines use an artefact for; one per pack at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Whisper model in whisper.cpp's ggml format (STT worker).
    SttModel,
    /// Silero VAD in whisper.cpp's format: the STT worker's speech gate.
    SttVadModel,
    /// Silero VAD as ONNX, for the streaming VAD worker.
    VadModel,
    /// Smart Turn v3 end-of-turn classifier (ONNX, run by the VAD worker).
    TurnModel,
    /// GGUF chat model (LLM worker).
    LlmModel,
    /// Piper voice: `.onnx` model with its `.onnx.json` config beside it (TTS worker).
    TtsVoice,
    /// ONNX Runtime shared library the VAD and TTS workers load.
    OnnxruntimeLib,
    /// Directory with a sentence-embedding model's weights, tokenizer and config (embedding
    /// worker).
    EmbedDir,
    /// Speech recording the tests transcribe.
    TestAudio,
    /// Speech clips with reference transcripts for STT accuracy benchmarks.
    EvalAudio,
}

impl Role {
    /// The snake_case name the manifest uses (`role = "..."`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SttModel => "stt_model",
            Role::SttVadModel => "stt_vad_model",
            Role::VadModel => "vad_model",
            Role::TurnModel => "turn_model",
            Role::LlmModel => "llm_model",
            Role::TtsVoice => "tts_voice",
            Role::OnnxruntimeLib => "onnxruntime_lib",
            Role::EmbedDir => "embed_dir",
            Role::TestAudio => "test_audio",
            Role::EvalAudio => "eval_audio",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Package registry a [`Package`] is downloaded from, with that registry's own client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registry {
    /// The Python Package Index (pip).
    Pypi,
    /// The npm registry (npm).
    Npm,
    /// Debian archives (apt-get download).
    Debian,
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Registry::Pypi => "pypi",
            Registry::Npm => "npm",
            Registry::Debian => "debian",
        })
    }
}

/// A registry package, pinned by version and by the sha256 of the archive its client saves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Registry to download it from.
    pub registry: Registry,
    /// Package name in that registry.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// File name of the archive the client saves (wheel, npm tarball, .deb).
    pub file: String,
    /// Hex sha256 of the saved archive; a mismatch aborts the fetch.
    pub sha256: Option<String>,
    /// Size of the saved archive, in bytes, checked before hashing.
    pub size: Option<u64>,
    /// pip `--platform` for platform wheels (with `python_version`).
    pub platform: Option<String>,
    /// pip `--python-version`.
    pub python_version: Option<String>,
}

impl Package {
    /// `name==version` / `name@version` / `name=version`, as the registry's client spells it.
    pub fn spec(&self) -> String {
        match self.registry {
            Registry::Pypi => format!("{}=={}", self.name, self.version),
            Registry::Npm => format!("{}@{}", self.name, self.version),
            Registry::Debian => format!("{}={}", self.name, self.version),
        }
    }
}

/// How an output file is made from its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Build {
    /// The single input, as is.
    Copy,
    /// The inputs concatenated in order.
    Join,
    /// The inputs concatenated into a CTranslate2 Whisper `model.bin`, converted to ggml.
    Ct2WhisperGgml,
}

/// One output file of an artefact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Relative to the models directory.
    pub path: String,
    /// Of the final file. Every file of the shipped manifest is pinned (a test checks it); a
    /// missing value only happens while adding an artefact, and fetch then prints the hash.
    pub sha256: Option<String>,
    /// Size of the final file, in bytes.
    pub size: u64,
    /// How the file is made from its inputs.
    pub build: Build,
    /// The archive members it is made from, in order.
    pub inputs: Vec<Input>,
    /// `vocabulary.txt` of a CTranslate2 Whisper model (build = "ct2-whisper-ggml").
    pub vocabulary: Option<Input>,
}

impl FileSpec {
    /// Every package this file reads from, in first-use order, without repeats.
    pub fn package_names(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.inputs
            .iter()
            .chain(self.vocabulary.iter())
            .map(|input| input.package.as_str())
            .filter(|name| seen.insert(*name))
            .collect()
    }
}

/// A member of a package archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Name of a package of the same artefact.
    pub package: String,
    /// Path inside the archive (wheel, npm tarball, or the data of a .deb without the leading `./`).
    pub member: String,
    /// Size of the member, in bytes, checked when it is extracted.
    pub size: Option<u64>,
    /// Hex sha256 of the member, checked when it is extracted.
    pub sha256: Option<String>,
}

impl Manifest {
    /// The manifest compiled into this build.
    pub fn builtin() -> Result<Manifest> {
        Manifest::parse(BUILTIN_MANIFEST).context("the built-in models/manifest.toml is invalid")
    }

    /// Parse and validate a manifest (schema, names, pins, paths).
    pub fn parse(text: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).context("cannot parse the model manifest")?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The pack called `name`, or an error listing the packs.
    pub fn pack(&self, name: &str) -> Result<&Pack> {
        self.packs.iter().find(|p| p.name == name).with_context(|| {
            format!(
                "unknown model pack {name:?}; packs: {}",
                self.packs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The artefact called `name`, or an error listing the artefacts.
    pub fn artefact(&self, name: &str) -> Result<&Artefact> {
        self.artefacts
            .iter()
            .find(|a| a.name == name)
            .with_context(|| {
                format!(
                    "unknown artefact {name:?}; artefacts: {}",
                    self.artefacts
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// The artefacts of `pack`, in manifest order.
    pub fn select(&self, pack: &str) -> Result<Vec<&Artefact>> {
        self.pack(pack)?
            .artefacts
            .iter()
            .map(|name| self.artefact(name))
            .collect()
    }

    /// Packs that include `artefact`.
    pub fn packs_with(&self, artefact: &str) -> Vec<&str> {
        self.packs
            .iter()
            .filter(|p| p.artefacts.iter().any(|a| a == artefact))
            .map(|p| p.name.as_str())
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.schema != SCHEMA_VERSION {
            bail!(
                "manifest schema {} is not supported (expected {SCHEMA_VERSION})",
                self.schema
            );
        }
        let mut names = HashSet::new();
        let mut output_paths = HashSet::new();
        for artefact in &self.artefacts {
            let ctx = || format!("manifest artefact {:?}", artefact.name);
            if !names.insert(artefact.name.as_str()) {
                bail!("{}: duplicate name", ctx());
            }
            check_relative(&artefact.path).with_context(ctx)?;
            if artefact.files.is_empty() {
                bail!("{}: has no [[artefact.file]]", ctx());
            }
            let packages: HashSet<&str> =
                artefact.packages.iter().map(|p| p.name.as_str()).collect();
            for package in &artefact.packages {
                check_sha256(package.sha256.as_deref()).with_context(ctx)?;
                if package.platform.is_some() != package.python_version.is_some() {
                    bail!(
                        "{}: package {} needs both platform and python_version",
                        ctx(),
                        package.name
                    );
                }
            }
            for file in &artefact.files {
                let fctx = || format!("{}, file {:?}", ctx(), file.path);
                check_relative(&file.path).with_context(fctx)?;
                // The artefact's path is either one of its files (a Piper voice with its
                // config beside it) or the directory that holds them all.
                let is_main_file = artefact.files.iter().any(|f| f.path == artefact.path);
                if !is_main_file && !Path::new(&file.path).starts_with(&artefact.path) {
                    bail!(
                        "{}: not under the artefact path {:?}",
                        fctx(),
                        artefact.path
                    );
                }
                if !output_paths.insert(file.path.as_str()) {
                    bail!("{}: two artefacts write this path", fctx());
                }
                check_sha256(file.sha256.as_deref()).with_context(fctx)?;
                let inputs_ok = match file.build {
                    Build::Copy => file.inputs.len() == 1,
                    Build::Join | Build::Ct2WhisperGgml => !file.inputs.is_empty(),
                };
                if !inputs_ok {
                    bail!(
                        "{}: build {:?} with {} inputs",
                        fctx(),
                        file.build,
                        file.inputs.len()
                    );
                }
                if (file.build == Build::Ct2WhisperGgml) != file.vocabulary.is_some() {
                    bail!(
                        "{}: a vocabulary goes with build = \"ct2-whisper-ggml\" and only there",
                        fctx()
                    );
                }
                for input in file.inputs.iter().chain(file.vocabulary.iter()) {
                    if !packages.contains(input.package.as_str()) {
                        bail!(
                            "{}: input package {:?} is not a package of this artefact",
                            fctx(),
                            input.package
                        );
                    }
                    check_sha256(input.sha256.as_deref()).with_context(fctx)?;
                }
            }
        }
        let mut pack_names = HashSet::new();
        for pack in &self.packs {
            if !pack_names.insert(pack.name.as_str()) {
                bail!("manifest pack {:?}: duplicate name", pack.name);
            }
            if let Some(fast) = &pack.fast_stt {
                let ctx = || format!("manifest pack {:?}: fast_stt {fast:?}", pack.name);
                if !pack.artefacts.contains(fast) {
                    bail!("{}: not one of the pack's artefacts", ctx());
                }
                if self.artefact(fast).with_context(ctx)?.role != Role::SttModel {
                    bail!("{}: not a Whisper model (role stt_model)", ctx());
                }
            }
            let mut roles = BTreeSet::new();
            for name in pack
                .artefacts
                .iter()
                .filter(|&n| Some(n) != pack.fast_stt.as_ref())
            {
                let artefact = self
                    .artefact(name)
                    .with_context(|| format!("manifest pack {:?}", pack.name))?;
                if !roles.insert(artefact.role) {
                    bail!(
                        "manifest pack {:?}: two artefacts for role {}",
                        pack.name,
                        artefact.role
                    );
                }
            }
        }
        Ok(())
    }
}

fn check_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("path {path:?} must be relative, without `..` or `.`");
    }
    Ok(())
}

fn check_sha256(sha: Option<&str>) -> Result<()> {
    match sha {
        Some(s)
            if s.len() != 64
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            bail!("sha256 {s:?} is not 64 lowercase hex digits")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
