//! The VAD client: Silero speech probabilities, streamed chunk by chunk with the state carried between calls.

use super::*;

/// Streaming voice-activity detection (Silero) and end-of-turn detection (Smart Turn v3).
#[derive(Clone)]
pub struct VadClient {
    /// The supervised VAD worker process.
    pub worker: Worker,
}

impl VadClient {
    /// Start the VAD worker with the configured model and threads; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let args = vec![
            "--model".into(),
            path_arg(&cfg.pack.vad_model),
            "--ort-lib".into(),
            path_arg(&cfg.pack.onnxruntime_lib),
            "--threads".into(),
            cfg.threads.vad.to_string(),
            "--turn-model".into(),
            path_arg(&cfg.pack.turn_model),
        ];
        VadClient {
            worker: Worker::start(spec(cfg, "vad", args, log_env())),
        }
    }

    /// Speech probability per 512-sample chunk of `samples` (16 kHz), carrying
    /// the stream's recurrent `state`.
    pub async fn probs(
        &self,
        samples: &[i16],
        state: Option<VadState>,
    ) -> Result<(Vec<f32>, VadState), EngineError> {
        let started = Instant::now();
        let reply = self
            .worker
            .request(Request::Vad { state }, pcm16_to_bytes(samples))
            .await?;
        observe("vad", "vad", started);
        match reply.body {
            Response::VadProbs { probs, state } => Ok((probs, state)),
            other => Err(unexpected("vad", &other)),
        }
    }

    /// Smart Turn's probability (0 to 1) that the caller has finished the
    /// turn at the end of `samples` (16 kHz: the turn so far; the worker
    /// looks at its last 8 s). Fails with a timeout after `timeout` (the
    /// worker's late answer is dropped).
    pub async fn end_of_turn(
        &self,
        samples: &[i16],
        timeout: Duration,
    ) -> Result<f32, EngineError> {
        let started = Instant::now();
        let reply = self
            .worker
            .request_within(Request::EndOfTurn, pcm16_to_bytes(samples), timeout)
            .await?;
        let ms = observe("vad", "end_of_turn", started);
        metrics::observe_ms(metrics::SMART_TURN_SECONDS, &[], ms);
        match reply.body {
            Response::EndOfTurn { probability, .. } => Ok(probability),
            other => Err(unexpected("vad", &other)),
        }
    }
}
