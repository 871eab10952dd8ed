//! The STT client: whisper.cpp transcription of one utterance, with the domain prompt.

use super::*;

/// A transcription.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    /// The recognised text (empty when `no_speech`).
    pub text: String,
    /// The worker's VAD found no speech, so Whisper was not run.
    pub no_speech: bool,
    /// Round trip as the call plane saw it.
    pub ms: f64,
    /// Time inside the worker.
    pub worker_ms: f64,
    /// The worker's handle for this utterance while it holds it, for
    /// [`SttClient::score`].
    pub utterance: Option<u64>,
}

/// How well candidate texts explain an utterance, by Whisper's decoder: mean
/// log-probability per token, 0 at best.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AcousticScores {
    /// The worker's own transcript (the reference).
    pub transcript: f32,
    /// One per candidate, in order.
    pub candidates: Vec<f32>,
    /// Round trip as the call plane saw it.
    pub ms: f64,
}

/// Speech-to-text (Whisper, gated by Silero).
#[derive(Clone)]
pub struct SttClient {
    /// The supervised STT worker process.
    pub worker: Worker,
}

impl SttClient {
    /// Start the STT worker with the configured Whisper and VAD models; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let mut args = vec![
            "--model".into(),
            path_arg(&cfg.pack.stt_model),
            "--vad-model".into(),
            path_arg(&cfg.pack.stt_vad_model),
            "--threads".into(),
            cfg.threads.stt.to_string(),
            "--keep-utterances".into(),
            cfg.stt_held_utterances.to_string(),
        ];
        if let Some(fast) = &cfg.pack.stt_fast_model {
            args.push("--fast-model".into());
            args.push(path_arg(fast));
        }
        if cfg.gpu {
            args.push("--gpu".into());
        }
        SttClient {
            worker: Worker::start(spec(cfg, "stt", args, log_env())),
        }
    }

    /// Transcribe 16 kHz mono audio of a caller.
    pub async fn transcribe(
        &self,
        samples: &[i16],
        prompt: Option<&str>,
    ) -> Result<Transcript, EngineError> {
        self.request(samples, prompt, false).await
    }

    /// Transcribe clean bot speech (the cloud bot's last prompt at a
    /// takeover) with the pack's fast Whisper, when it has one: a takeover
    /// waits for it, and a recorded prompt needs less than a caller on a
    /// phone line.
    pub async fn transcribe_bot(
        &self,
        samples: &[i16],
        prompt: Option<&str>,
    ) -> Result<Transcript, EngineError> {
        self.request(samples, prompt, true).await
    }

    async fn request(
        &self,
        samples: &[i16],
        prompt: Option<&str>,
        fast: bool,
    ) -> Result<Transcript, EngineError> {
        let started = Instant::now();
        let request = Request::Transcribe {
            prompt: prompt.map(str::to_string),
            fast,
        };
        let reply = self
            .worker
            .request(request, pcm16_to_bytes(samples))
            .await?;
        let op = if fast { "transcribe_bot" } else { "transcribe" };
        let ms = observe("stt", op, started);
        match reply.body {
            Response::Transcript {
                text,
                no_speech,
                timings,
                utterance,
                ..
            } => Ok(Transcript {
                text,
                no_speech,
                ms,
                worker_ms: timings.total_ms,
                utterance,
            }),
            other => Err(unexpected("stt", &other)),
        }
    }

    /// Score `candidates` against the utterance the worker holds under
    /// `utterance` ([`Transcript::utterance`]).
    pub async fn score(
        &self,
        utterance: u64,
        candidates: &[String],
    ) -> Result<AcousticScores, EngineError> {
        let started = Instant::now();
        let request = Request::Score {
            utterance,
            candidates: candidates.to_vec(),
        };
        let reply = self.worker.request(request, Vec::new()).await?;
        let ms = observe("stt", "score", started);
        match reply.body {
            Response::Scores {
                transcript,
                candidates,
                ..
            } => Ok(AcousticScores {
                transcript,
                candidates,
                ms,
            }),
            other => Err(unexpected("stt", &other)),
        }
    }
}
