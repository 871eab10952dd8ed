//! `understudy-vad`: the streaming voice-activity worker.
//!
//! Silero VAD (ONNX, through ONNX Runtime) behind the worker protocol of
//! `understudy-ipc`: a `vad` request carries s16le 16 kHz audio and the
//! stream's recurrent state, and gets one speech probability per 512-sample
//! chunk plus the state to send with the next audio of the same stream. The
//! worker keeps no per-stream state, so a restart loses nothing.
//!
//! With `--turn-model` it also answers `end_of_turn` requests with Smart
//! Turn v3 (same ONNX Runtime): the probability that the audio so far ends a
//! finished turn. A turn model that fails to load is logged and left out;
//! the VAD still serves, and `end_of_turn` requests then say why they cannot
//! be answered (the call plane falls back to a fixed silence).

mod onnxruntime;
mod silero;
mod smart_turn;

use clap::Parser;
use silero::SileroVad;
use smart_turn::SmartTurn;
use std::path::PathBuf;
use std::time::Instant;
use understudy_ipc::worker::{self, CancelToken, Engine, ReadyInfo, Responder};
use understudy_ipc::{ErrorCode, Request, Response, VadState, VAD_CHUNK_SAMPLES};

/// Streaming voice-activity worker (Silero VAD on ONNX Runtime).
///
/// Speaks the Understudy worker protocol on stdin/stdout (see docs/ipc.md) and
/// logs to stderr (filter with UNDERSTUDY_LOG, e.g. `debug`). The call plane
/// starts it; run it by hand only to check a model pack.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Silero VAD model in ONNX format: `silero_vad.onnx` of silero-vad 6.x
    /// (v5 models work too).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,

    /// ONNX Runtime shared library (`libonnxruntime.so.1.*`) from the model pack.
    #[arg(long, value_name = "PATH")]
    ort_lib: PathBuf,

    /// Smart Turn v3 end-of-turn model (`smart-turn-v3.2-cpu.onnx` of
    /// pipecat-ai). Without it, `end_of_turn` requests are refused.
    #[arg(long, value_name = "PATH")]
    turn_model: Option<PathBuf>,

    /// Intra-op threads of ONNX Runtime. One 32 ms chunk is far too small to
    /// gain from more.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

fn main() {
    let args = Args::parse();
    worker::init_logging("vad");
    worker::serve(|| load(&args));
}

fn load(args: &Args) -> Result<(VadEngine, ReadyInfo), String> {
    let ort_version = onnxruntime::init(&args.ort_lib)?;
    let vad = SileroVad::load(&args.model, args.threads.into())?;
    let turn = match &args.turn_model {
        Some(path) => SmartTurn::load(path, args.threads.into()).map_err(|e| {
            tracing::error!("{e}; serving VAD without end-of-turn detection");
            e
        }),
        None => Err("the VAD worker was started without --turn-model".into()),
    };
    let mut info = serde_json::Map::new();
    info.insert("threads".into(), args.threads.into());
    info.insert("onnxruntime".into(), ort_version.into());
    info.insert("sample_rate".into(), 16_000.into());
    info.insert("chunk_samples".into(), VAD_CHUNK_SAMPLES.into());
    info.insert("gpu".into(), false.into());
    info.insert(
        "turn_model".into(),
        match (&turn, &args.turn_model) {
            (Ok(_), Some(path)) => path.display().to_string().into(),
            _ => serde_json::Value::Null,
        },
    );
    let ready = ReadyInfo {
        engine: "silero-vad",
        model: args.model.display().to_string(),
        info,
    };
    Ok((VadEngine { vad, turn }, ready))
}

struct VadEngine {
    vad: SileroVad,
    /// The end-of-turn model, or why there is none.
    turn: Result<SmartTurn, String>,
}

impl Engine for VadEngine {
    fn handle(
        &mut self,
        request: Request,
        payload: Vec<u8>,
        id: u64,
        _out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), (ErrorCode, String)> {
        let state = match request {
            Request::Vad { state } => state,
            Request::EndOfTurn => return self.end_of_turn(&payload, id),
            _ => {
                return Err((
                    ErrorCode::BadRequest,
                    "the VAD worker serves only `vad` and `end_of_turn` requests".into(),
                ))
            }
        };
        check_pcm(&payload)?;
        let state = match state {
            Some(state) => checked_state(state)?,
            None => silero::initial_state(),
        };
        let samples = understudy_ipc::bytes_to_f32(&payload);
        if samples.len() % VAD_CHUNK_SAMPLES != 0 {
            // The state returned then includes the padding: streams should
            // send whole chunks.
            tracing::debug!(id, samples = samples.len(), "zero-padding a partial chunk");
        }
        let started = Instant::now();
        match self.vad.process(&samples, state, || cancel.is_cancelled()) {
            Ok(Some((probs, state))) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(id, chunks = probs.len(), ms, "vad");
                Ok((Response::VadProbs { probs, state }, Vec::new()))
            }
            Ok(None) => Err((ErrorCode::Cancelled, "cancelled".into())),
            Err(message) => Err((ErrorCode::Engine, message)),
        }
    }
}

impl VadEngine {
    fn end_of_turn(
        &mut self,
        payload: &[u8],
        id: u64,
    ) -> Result<(Response, Vec<u8>), (ErrorCode, String)> {
        let model = self.turn.as_mut().map_err(|why| {
            (
                ErrorCode::BadRequest,
                format!("no end-of-turn model: {why}"),
            )
        })?;
        check_pcm(payload)?;
        if payload.is_empty() {
            return Err((ErrorCode::BadRequest, "end_of_turn needs audio".into()));
        }
        let started = Instant::now();
        let audio = understudy_ipc::bytes_to_f32(payload);
        let probability = model
            .probability(&audio)
            .map_err(|e| (ErrorCode::Engine, e))?;
        let total_ms = worker::elapsed_ms(started);
        tracing::debug!(
            id,
            samples = audio.len(),
            probability,
            ms = total_ms,
            "end of turn"
        );
        Ok((
            Response::EndOfTurn {
                probability,
                timings: understudy_ipc::WorkerTimings {
                    total_ms,
                    ..Default::default()
                },
            },
            Vec::new(),
        ))
    }
}

fn check_pcm(payload: &[u8]) -> Result<(), (ErrorCode, String)> {
    if payload.len() % 2 != 0 {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "payload of {} bytes is not s16le audio (odd length)",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// Reject a state that did not come from this worker (wrong sizes would make
/// ONNX Runtime fail later with a less helpful message).
fn checked_state(state: VadState) -> Result<VadState, (ErrorCode, String)> {
    if state.lstm.len() == silero::STATE_LEN && state.context.len() == silero::CONTEXT_SAMPLES {
        Ok(state)
    } else {
        Err((
            ErrorCode::BadRequest,
            format!(
                "vad state has {} lstm and {} context values (expected {} and {}); \
                 pass back the state of the previous answer, or none at stream start",
                state.lstm.len(),
                state.context.len(),
                silero::STATE_LEN,
                silero::CONTEXT_SAMPLES
            ),
        ))
    }
}
