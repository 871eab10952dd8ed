//! Silero VAD (v5/v6 ONNX) run one 32 ms chunk at a time, with the recurrent
//! state owned by the caller.
//!
//! The ONNX graph takes 64 samples of context (the tail of the previous chunk)
//! followed by 512 new samples, plus the LSTM state and the sample rate, and
//! returns the speech probability and the next state. The Python package does
//! the same context bookkeeping outside the graph (`OnnxWrapper.__call__`).

use ort::logging::LogLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use std::path::Path;
use understudy_ipc::{VadState, VAD_CHUNK_SAMPLES};

/// Samples of the previous chunk that Silero sees again (16 kHz).
pub const CONTEXT_SAMPLES: usize = 64;
/// LSTM state: 2 x 1 x 128 floats.
pub const STATE_SHAPE: [i64; 3] = [2, 1, 128];
pub const STATE_LEN: usize = 2 * 128;
const SAMPLE_RATE: i64 = 16_000;

// Tensor names of silero_vad.onnx (silero-vad 5.x and 6.x).
const IN_AUDIO: &str = "input";
const IN_STATE: &str = "state";
const IN_RATE: &str = "sr";
const OUT_PROB: &str = "output";
const OUT_STATE: &str = "stateN";

pub struct SileroVad {
    session: Session,
}

/// The state of a stream that has not started yet.
pub fn initial_state() -> VadState {
    VadState {
        lstm: vec![0.0; STATE_LEN],
        context: vec![0.0; CONTEXT_SAMPLES],
    }
}

impl SileroVad {
    /// Load the model (ONNX Runtime must be initialised first) and check that
    /// its inputs and outputs are the ones this code feeds and reads.
    pub fn load(model: &Path, threads: usize) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!(
                "Silero VAD model {} not found; pass --model with silero_vad.onnx from the \
                 model pack (`understudy models fetch`)",
                model.display()
            ));
        }
        let cannot = |e: String| format!("cannot load Silero VAD model {}: {e}", model.display());
        let session = build_session(model, threads).map_err(|e| cannot(e.to_string()))?;
        check_signature(&session).map_err(cannot)?;
        Ok(SileroVad { session })
    }

    /// Speech probability of each 512-sample chunk of `samples` (zero-padded
    /// to a whole chunk), continuing the stream from `state`. Stops early,
    /// returning `None`, when `cancelled()` turns true.
    pub fn process(
        &mut self,
        samples: &[f32],
        mut state: VadState,
        cancelled: impl Fn() -> bool,
    ) -> Result<Option<(Vec<f32>, VadState)>, String> {
        let n_chunks = samples.len().div_ceil(VAD_CHUNK_SAMPLES);
        let mut probs = Vec::with_capacity(n_chunks);
        let mut window = vec![0.0f32; CONTEXT_SAMPLES + VAD_CHUNK_SAMPLES];
        for chunk in samples.chunks(VAD_CHUNK_SAMPLES) {
            if cancelled() {
                return Ok(None);
            }
            window[..CONTEXT_SAMPLES].copy_from_slice(&state.context);
            window[CONTEXT_SAMPLES..CONTEXT_SAMPLES + chunk.len()].copy_from_slice(chunk);
            window[CONTEXT_SAMPLES + chunk.len()..].fill(0.0); // the padded tail
            let (prob, lstm) = self.run_chunk(&window, &state.lstm)?;
            probs.push(prob);
            state.lstm = lstm;
            state
                .context
                .copy_from_slice(&window[window.len() - CONTEXT_SAMPLES..]);
        }
        Ok(Some((probs, state)))
    }

    fn run_chunk(&mut self, window: &[f32], lstm: &[f32]) -> Result<(f32, Vec<f32>), String> {
        let engine = |e: ort::Error| format!("Silero VAD inference failed: {e}");
        let audio = Tensor::from_array(([1, window.len()], window.to_vec())).map_err(engine)?;
        let state = Tensor::from_array((STATE_SHAPE, lstm.to_vec())).map_err(engine)?;
        let rate = Tensor::from_array(((), vec![SAMPLE_RATE])).map_err(engine)?;
        let outputs = self
            .session
            .run(ort::inputs![IN_AUDIO => audio, IN_STATE => state, IN_RATE => rate])
            .map_err(engine)?;
        let (_, prob) = outputs[OUT_PROB]
            .try_extract_tensor::<f32>()
            .map_err(engine)?;
        let (_, next) = outputs[OUT_STATE]
            .try_extract_tensor::<f32>()
            .map_err(engine)?;
        match (prob.first(), next.len()) {
            (Some(&p), STATE_LEN) => Ok((p, next.to_vec())),
            _ => Err(format!(
                "Silero VAD returned {} probabilities and a state of {} floats (expected 1 and {STATE_LEN})",
                prob.len(),
                next.len()
            )),
        }
    }
}

/// An inference session for `model` as this worker runs them: `threads`
/// intra-op threads that sleep between runs, warnings only (Silero and Smart Turn).
pub fn build_session(model: &Path, threads: usize) -> ort::Result<Session> {
    Session::builder()?
        .with_intra_threads(threads)?
        .with_inter_threads(1)?
        // Per-run messages are not worth formatting; load messages still come
        // through the environment's logger.
        .with_log_level(LogLevel::Warning)?
        // Spinning threads would burn a core between 32 ms chunks.
        .with_intra_op_spinning(false)?
        .commit_from_file(model)
}

/// Fail at load, with the model's real signature in the message, when it is
/// not the Silero v5/v6 graph (an older v4 model has `h`/`c` instead of `state`).
fn check_signature(session: &Session) -> Result<(), String> {
    let describe = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| format!("{}: {}", o.name(), o.dtype()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let has = |outlets: &[ort::value::Outlet], name: &str, ty: TensorElementType| {
        outlets.iter().any(|o| {
            o.name() == name && matches!(o.dtype(), ValueType::Tensor { ty: t, .. } if *t == ty)
        })
    };
    let inputs_ok = session.inputs().len() == 3
        && has(session.inputs(), IN_AUDIO, TensorElementType::Float32)
        && has(session.inputs(), IN_STATE, TensorElementType::Float32)
        && has(session.inputs(), IN_RATE, TensorElementType::Int64);
    let outputs_ok = has(session.outputs(), OUT_PROB, TensorElementType::Float32)
        && has(session.outputs(), OUT_STATE, TensorElementType::Float32);
    if inputs_ok && outputs_ok {
        Ok(())
    } else {
        Err(format!(
            "not a Silero VAD v5/v6 model: expected inputs {IN_AUDIO} (f32), {IN_STATE} (f32), \
             {IN_RATE} (i64) and outputs {OUT_PROB}, {OUT_STATE}; this model has inputs [{}] and \
             outputs [{}] (use silero_vad.onnx from silero-vad 6.x)",
            describe(session.inputs()),
            describe(session.outputs())
        ))
    }
}
