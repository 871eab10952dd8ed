//! `understudy-stt`: the speech-to-text worker.
//!
//! whisper.cpp (through whisper-rs) gated by Silero VAD, behind the worker
//! protocol of `understudy-ipc`. A `transcribe` request carries one caller
//! utterance as s16le 16 kHz mono; Silero finds the speech first, and Whisper
//! runs only on that stretch, with its window shrunk to the audio.

mod model_file;
mod speech_gate;
mod transcriber;
mod whisper_log;

use clap::Parser;
use model_file::ModelKind;
use speech_gate::{SpeechGate, SAMPLE_RATE};
use std::path::{Path, PathBuf};
use std::time::Instant;
use transcriber::{Settings, Transcriber};
use understudy_ipc::worker::{self, CancelToken, Engine, ReadyInfo, Responder};
use understudy_ipc::{ErrorCode, Request, Response, WorkerTimings};

/// Speech-to-text worker (whisper.cpp, gated by Silero VAD).
///
/// Speaks the Understudy worker protocol on stdin/stdout (see docs/ipc.md) and
/// logs to stderr (filter with UNDERSTUDY_LOG, e.g. `debug` to see
/// whisper.cpp's own lines). The call plane starts it; run it by hand only to
/// check a model pack.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Whisper model in whisper.cpp ggml format (e.g. ggml-tiny.en.bin from the
    /// model pack).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,

    /// A smaller Whisper model for requests marked `fast` (clean bot speech:
    /// the cloud bot's last prompt at a takeover). Without it those requests
    /// use `--model`.
    #[arg(long, value_name = "PATH")]
    fast_model: Option<PathBuf>,

    /// Silero VAD model in whisper.cpp ggml format (ggml-silero-v6.2.0.bin).
    #[arg(long, value_name = "PATH")]
    vad_model: PathBuf,

    /// Whisper threads. Measure on the target box: 2 is ~1.8x faster than 1
    /// on an idle 2-core machine, but jitters when the cores are shared.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Silero VAD threads. 2 threads made its time erratic (3 ms to 1.9 s) on a
    /// shared 2-core box; 1 is steady.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    vad_threads: u16,

    /// Spoken language (Whisper code, e.g. en, de). English-only models
    /// (*.en) accept only `en`.
    #[arg(long, default_value = "en", value_name = "CODE")]
    language: String,

    /// Domain words that bias recognition (Whisper's initial prompt), e.g. the
    /// bot's product names. A request's own prompt replaces it.
    #[arg(long, value_name = "TEXT")]
    initial_prompt: Option<String>,

    /// How many transcribed utterances to hold (their encoded audio) for
    /// `score` requests, newest kept. Each holds a Whisper state (~50 MB
    /// with base); 0 (the default) holds none, so `score` always fails.
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_utterances: usize,

    /// Run Whisper on the GPU (needs a build with `--features cuda`, see
    /// docs/gpu.md); Silero stays on the CPU, where its few milliseconds do not
    /// pay for a transfer. Without it, or in a CPU build, Whisper runs on the CPU.
    #[arg(long)]
    gpu: bool,
}

fn main() {
    let args = Args::parse();
    worker::init_logging("stt");
    whisper_log::install();
    worker::serve(|| load(&args));
}

/// Whether this build has a GPU backend (feature `cuda`).
const GPU_BUILD: bool = cfg!(feature = "cuda");

fn load(args: &Args) -> Result<(SttEngine, ReadyInfo), String> {
    if args.gpu && !GPU_BUILD {
        tracing::warn!("--gpu: this build has no GPU backend (build with `--features cuda`); running on the CPU");
    }
    let use_gpu = args.gpu && GPU_BUILD;
    model_file::check(&args.model, ModelKind::Whisper)?;
    model_file::check(&args.vad_model, ModelKind::SileroVad)?;
    let gate = SpeechGate::load(&args.vad_model, args.vad_threads, false)?;
    let mut settings = Settings {
        threads: args.threads,
        keep: args.keep_utterances,
        language: &args.language,
        initial_prompt: args.initial_prompt.as_deref(),
        use_gpu,
    };
    let whisper = Transcriber::load(&args.model, &settings)?;
    // Clean bot speech is never scored.
    settings.keep = 0;
    let fast = match &args.fast_model {
        Some(path) => {
            model_file::check(path, ModelKind::Whisper)?;
            Some(Transcriber::load(path, &settings)?)
        }
        None => None,
    };

    let mut info = serde_json::Map::new();
    info.insert("threads".into(), args.threads.into());
    info.insert("vad_threads".into(), args.vad_threads.into());
    info.insert("model_type".into(), whisper.model_type().into());
    info.insert("multilingual".into(), whisper.is_multilingual().into());
    if let Some(fast) = &fast {
        info.insert("fast_model_type".into(), fast.model_type().into());
    }
    info.insert("language".into(), args.language.clone().into());
    info.insert("keep_utterances".into(), args.keep_utterances.into());
    info.insert(
        "initial_prompt".into(),
        args.initial_prompt.is_some().into(),
    );
    info.insert("gpu".into(), use_gpu.into());
    info.insert(
        "vad_model".into(),
        args.vad_model.display().to_string().into(),
    );
    info.insert("whisper_cpp".into(), whisper_rs::WHISPER_CPP_VERSION.into());
    let ready = ReadyInfo {
        engine: "whisper.cpp",
        model: args.model.display().to_string(),
        info,
    };
    Ok((
        SttEngine {
            gate,
            whisper,
            fast,
        },
        ready,
    ))
}

/// A load failure as the call plane shows it: which file, why, what to do.
fn load_error(what: &str, path: &Path, error: impl std::fmt::Display) -> String {
    let why = whisper_log::reason(error);
    format!(
        "cannot load {what} {}: {why}; fetch the model pack again (`understudy models fetch`)",
        path.display()
    )
}

struct SttEngine {
    gate: SpeechGate,
    whisper: Transcriber,
    /// The `--fast-model`, for requests marked `fast`.
    fast: Option<Transcriber>,
}

impl Engine for SttEngine {
    fn handle(
        &mut self,
        request: Request,
        payload: Vec<u8>,
        id: u64,
        _out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), (ErrorCode, String)> {
        let (prompt, fast) = match request {
            Request::Transcribe { prompt, fast } => (prompt, fast),
            Request::Score {
                utterance,
                candidates,
            } => return self.score(utterance, &candidates),
            _ => {
                return Err((
                    ErrorCode::BadRequest,
                    "the STT worker serves only `transcribe` and `score` requests".into(),
                ))
            }
        };
        if payload.len() % 2 != 0 {
            return Err((
                ErrorCode::BadRequest,
                format!(
                    "payload of {} bytes is not s16le audio (odd length)",
                    payload.len()
                ),
            ));
        }
        if prompt.as_deref().is_some_and(|p| p.contains('\0')) {
            return Err((
                ErrorCode::BadRequest,
                "the prompt contains a NUL character".into(),
            ));
        }
        let started = Instant::now();
        let ms_since = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let samples = understudy_ipc::bytes_to_f32(&payload);
        let audio_ms = to_ms(samples.len());

        let speech = self
            .gate
            .find(&samples)
            .map_err(|e| (ErrorCode::Engine, e))?;
        let vad_ms = ms_since(started);
        let Some(speech) = speech else {
            tracing::info!(id, audio_ms, vad_ms, "no speech");
            let timings = WorkerTimings {
                total_ms: ms_since(started),
                vad_ms: Some(vad_ms),
                first_output_ms: None,
            };
            return Ok((
                Response::Transcript {
                    text: String::new(),
                    no_speech: true,
                    speech_ms: None,
                    utterance: None,
                    timings,
                },
                Vec::new(),
            ));
        };
        if cancel.is_cancelled() {
            return Err((ErrorCode::Cancelled, "cancelled before transcribing".into()));
        }

        let whisper_started = Instant::now();
        let whisper = match (&mut self.fast, fast) {
            (Some(model), true) => model,
            _ => &mut self.whisper,
        };
        let text = whisper
            .transcribe(&samples[speech.window.clone()], prompt.as_deref(), &|| {
                cancel.is_cancelled()
            })
            .map_err(|e| (ErrorCode::Engine, e))?;
        let whisper_ms = ms_since(whisper_started);
        let Some(transcribed) = text else {
            tracing::info!(id, whisper_ms, "whisper stopped: request cancelled");
            return Err((ErrorCode::Cancelled, "cancelled while transcribing".into()));
        };
        let text = transcribed.text;
        let total_ms = ms_since(started);
        tracing::info!(
            id,
            audio_ms,
            window_ms = to_ms(speech.window.len()),
            vad_ms,
            whisper_ms,
            total_ms,
            chars = text.len(),
            fast,
            "transcribed"
        );
        Ok((
            Response::Transcript {
                text,
                no_speech: false,
                speech_ms: Some((to_ms(speech.found.start), to_ms(speech.found.end))),
                utterance: transcribed.utterance,
                timings: WorkerTimings {
                    total_ms,
                    vad_ms: Some(vad_ms),
                    first_output_ms: None,
                },
            },
            Vec::new(),
        ))
    }
}

impl SttEngine {
    /// Score candidate texts against a held utterance (`Request::Score`).
    fn score(
        &mut self,
        utterance: u64,
        candidates: &[String],
    ) -> Result<(Response, Vec<u8>), (ErrorCode, String)> {
        if candidates.iter().any(|c| c.contains('\0')) {
            return Err((
                ErrorCode::BadRequest,
                "a candidate contains a NUL character".into(),
            ));
        }
        let started = Instant::now();
        let scores = self
            .whisper
            .score(utterance, candidates)
            .map_err(|e| (ErrorCode::Engine, e))?
            .ok_or_else(|| {
                (
                    ErrorCode::BadRequest,
                    format!(
                        "utterance {utterance} is no longer held: score right after transcribing"
                    ),
                )
            })?;
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            utterance,
            candidates = candidates.len(),
            total_ms,
            transcript = scores.transcript,
            "scored"
        );
        Ok((
            Response::Scores {
                transcript: scores.transcript,
                candidates: scores.candidates,
                timings: WorkerTimings {
                    total_ms,
                    vad_ms: None,
                    first_output_ms: None,
                },
            },
            Vec::new(),
        ))
    }
}

fn to_ms(samples: usize) -> f64 {
    samples as f64 * 1e3 / SAMPLE_RATE as f64
}
