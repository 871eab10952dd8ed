//! `understudy-tts`: the text-to-speech worker (Piper voices through piper-rs
//! and ONNX Runtime, phonemes from espeak-ng).
//!
//! Speaks the framed protocol of `understudy-ipc` on stdin/stdout, logs to
//! stderr. Serves `synthesize`: text (plain, or a small SSML subset) split into
//! sentences, normalised for speech, synthesised sentence by sentence; with
//! `stream` each sentence goes out as soon as it is ready.

mod engine;
mod espeak_data;
mod espeak_fingerprint;
// The VAD worker's checked loader: ort rc.12 deadlocks on a library it cannot
// load (missing, not a library, too old), so the file is opened and checked first.
#[path = "../../vad/src/onnxruntime.rs"]
mod onnxruntime;
mod text;

use clap::Parser;
use engine::TtsEngine;
use ort::session::Session;
use piper_rs::{ModelConfig, Piper};
use std::path::{Path, PathBuf};
use std::time::Instant;
use understudy_ipc::worker::{self, ReadyInfo};

#[derive(Parser, Debug)]
#[command(
    name = "understudy-tts",
    version,
    about = "Understudy TTS worker: Piper voices over the worker protocol (stdin/stdout)",
    long_about = "Understudy TTS worker: Piper voices over the worker protocol.\n\n\
        Loads a Piper voice, sends `ready` on stdout, then serves `synthesize` requests (framed \
        JSON, see docs/ipc.md) until stdin closes; audio is s16le mono at the voice's sample \
        rate (22050 Hz for medium voices). Logs go to stderr; set UNDERSTUDY_LOG to change the level."
)]
struct Args {
    /// Piper voice model (e.g. en_US-joe-medium.onnx); its config `<voice>.json` must sit beside it.
    #[arg(long, value_name = "PATH")]
    voice: PathBuf,

    /// ONNX Runtime shared library (libonnxruntime.so.1.x, version 1.24 or newer).
    #[arg(long, value_name = "PATH")]
    ort_lib: PathBuf,

    /// espeak-ng data: the `espeak-ng-data` directory or the one holding it
    /// [default: $PIPER_ESPEAKNG_DATA_DIRECTORY, then `espeak-ng-data` beside this executable,
    /// then the system's copy if it is the same espeak-ng version].
    #[arg(long, value_name = "DIR")]
    espeak_data: Option<PathBuf>,

    /// ONNX Runtime threads for one synthesis.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
}

fn main() {
    worker::init_logging("tts");
    let args = Args::parse();
    worker::serve(|| load(&args))
}

fn load(args: &Args) -> Result<(TtsEngine, ReadyInfo), String> {
    let config_path = voice_config_path(&args.voice);
    for (path, what) in [
        (&args.voice, "Piper voice"),
        (&config_path, "Piper voice config"),
    ] {
        if !path.is_file() {
            return Err(format!(
                "the {what} {} does not exist; pass --voice with a Piper `.onnx` whose `.onnx.json` \
                 sits beside it, or run `understudy models fetch`",
                path.display()
            ));
        }
    }
    let config: ModelConfig = std::fs::File::open(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| e.to_string())
        })
        .map_err(|e| {
            format!(
                "cannot read the Piper voice config {}: {e}",
                config_path.display()
            )
        })?;
    let sample_rate = config.audio.sample_rate;
    let espeak_voice = config.espeak.voice.clone();

    let espeak = espeak_data::locate(args.espeak_data.as_deref(), &espeak_voice)?;
    espeak.activate();
    tracing::info!(dir = %espeak.dir.display(), source = espeak.source, "espeak-ng data");

    let ort_version = onnxruntime::init(&args.ort_lib)?;
    let session = Session::builder()
        .and_then(|b| {
            b.with_intra_threads(args.threads as usize)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(&args.voice))
        .map_err(|e| {
            format!(
                "ONNX Runtime cannot load the Piper voice {}: {e}",
                args.voice.display()
            )
        })?;

    let mut engine = TtsEngine::new(Piper::from_session(session, config), sample_rate);
    let warm_started = Instant::now();
    let warm_audio_ms = engine.warm_up().map_err(|e| {
        format!(
            "the Piper voice {} failed its test phrase: {e}",
            args.voice.display()
        )
    })?;
    let warm_up_ms = warm_started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(
        warm_up_ms = format!("{warm_up_ms:.0}"),
        audio_ms = format!("{warm_audio_ms:.0}"),
        "warmed up"
    );

    let mut info = serde_json::Map::new();
    info.insert("sample_rate".into(), engine.sample_rate().into());
    info.insert("threads".into(), args.threads.into());
    info.insert("espeak_voice".into(), espeak_voice.into());
    info.insert(
        "espeak_data".into(),
        espeak.dir.display().to_string().into(),
    );
    info.insert("ort_lib".into(), args.ort_lib.display().to_string().into());
    info.insert("onnxruntime".into(), ort_version.into());
    info.insert("warm_up_ms".into(), warm_up_ms.into());
    Ok((
        engine,
        ReadyInfo {
            engine: "piper",
            model: args.voice.display().to_string(),
            info,
        },
    ))
}

/// Piper's convention: `voice.onnx` is configured by `voice.onnx.json`.
fn voice_config_path(voice: &Path) -> PathBuf {
    let mut name = voice.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}
