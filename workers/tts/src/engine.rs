//! The TTS engine: a Piper voice, speaking one chunk (sentence) at a time so
//! the first sentence can be played while the next is synthesised.

use crate::text::{self, Chunk};
use piper_rs::Piper;
use std::time::Instant;
use understudy_ipc::worker::{elapsed_ms, CancelToken, Engine, Responder};
use understudy_ipc::{f32_to_pcm16_bytes, ErrorCode, Request, Response, WorkerTimings};

type Failure = (ErrorCode, String);

/// Peak level each chunk is scaled to. Piper's raw output level varies from
/// sentence to sentence; Piper's own front ends normalise the peak too. A
/// little headroom keeps resampling overshoot from clipping.
const PEAK: f32 = 0.9;

pub struct TtsEngine {
    piper: Piper,
    sample_rate: u32,
}

impl TtsEngine {
    pub fn new(piper: Piper, sample_rate: u32) -> Self {
        TtsEngine { piper, sample_rate }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Speak one chunk: f32 samples, peak-normalised, led by its pause.
    fn speak(&mut self, chunk: &Chunk) -> Result<Vec<f32>, Failure> {
        let (audio, _) = self
            .piper
            .create(&chunk.spoken, false, None, None, None, None)
            .map_err(|e| {
                (
                    ErrorCode::Engine,
                    format!("Piper failed on {:?}: {e}", chunk.text),
                )
            })?;
        let pause = (chunk.pause_before_ms as u64 * self.sample_rate as u64 / 1000) as usize;
        let peak = audio.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let gain = if peak > 1e-4 { PEAK / peak } else { 1.0 };
        let mut samples = vec![0.0; pause];
        samples.extend(audio.iter().map(|s| s * gain));
        Ok(samples)
    }

    pub fn synthesize(
        &mut self,
        text: &str,
        stream: bool,
        id: u64,
        out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), Failure> {
        let started = Instant::now();
        let chunks = text::plan(text);
        let mut payload = Vec::new();
        let mut samples = 0u64;
        let mut first_output_ms = None;
        for chunk in &chunks {
            if cancel.is_cancelled() {
                return Err((
                    ErrorCode::Cancelled,
                    format!("cancelled before {:?}", chunk.text),
                ));
            }
            let audio = self.speak(chunk)?;
            samples += audio.len() as u64;
            first_output_ms.get_or_insert_with(|| elapsed_ms(started));
            let pcm = f32_to_pcm16_bytes(&audio);
            tracing::debug!(text = %chunk.text, spoken = %chunk.spoken, samples = audio.len(), "chunk");
            if stream {
                out.send(
                    id,
                    true,
                    Response::Audio {
                        sample_rate: self.sample_rate,
                        text: chunk.text.clone(),
                    },
                    &pcm,
                );
            } else {
                payload.extend_from_slice(&pcm);
            }
        }
        let total_ms = elapsed_ms(started);
        let audio_ms = samples as f64 * 1e3 / self.sample_rate as f64;
        tracing::info!(
            chunks = chunks.len(),
            audio_ms = format!("{audio_ms:.0}"),
            first_output_ms = format!("{:.1}", first_output_ms.unwrap_or(total_ms)),
            total_ms = format!("{total_ms:.1}"),
            rtf = format!(
                "{:.3}",
                if audio_ms > 0.0 {
                    total_ms / audio_ms
                } else {
                    0.0
                }
            ),
            "synthesized"
        );
        Ok((
            Response::Synthesized {
                sample_rate: self.sample_rate,
                samples,
                timings: WorkerTimings {
                    total_ms,
                    vad_ms: None,
                    first_output_ms,
                },
            },
            payload,
        ))
    }

    /// The first inference is slower (ONNX Runtime allocates, espeak-ng loads
    /// its dictionary): pay that at load time. Returns the audio duration in ms.
    pub fn warm_up(&mut self) -> Result<f64, String> {
        let chunk = text::plan("Hello, how can I help?").remove(0);
        let audio = self.speak(&chunk).map_err(|(_, e)| e)?;
        if audio.is_empty() {
            return Err("the voice produced no audio for a test phrase".into());
        }
        Ok(audio.len() as f64 * 1e3 / self.sample_rate as f64)
    }
}

impl Engine for TtsEngine {
    fn handle(
        &mut self,
        request: Request,
        _payload: Vec<u8>,
        id: u64,
        out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), Failure> {
        match request {
            Request::Synthesize { text, stream } => self.synthesize(&text, stream, id, out, cancel),
            other => Err((
                ErrorCode::BadRequest,
                format!(
                    "the TTS worker serves `synthesize`, not `{}`",
                    serde_json::to_value(&other)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            )),
        }
    }
}
