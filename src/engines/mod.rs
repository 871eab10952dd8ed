//! The engines, each in its own supervised worker process, behind typed clients.
//!
//! Nothing here runs inference: the clients turn calls into IPC requests
//! (`workers/ipc`) and replies back into Rust values, and time every request
//! into the metrics.

pub mod supervisor;

use crate::config::EngineConfig;
use crate::metrics;
use std::path::Path;
use std::time::{Duration, Instant};
pub use supervisor::{Reply, ReplyStream, Worker, WorkerHealth, WorkerSpec, WorkerState};
pub use understudy_ipc::ChatMessage;
use understudy_ipc::{
    bytes_to_f32s, bytes_to_pcm16, pcm16_to_bytes, ErrorCode, Request, Response, VadState,
};

/// Why an engine request failed. Every variant is a reason for the session's
/// safety net, none is a reason to drop a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The worker is not running: its model failed to load, it is restarting, or it was not ready
    /// in time.
    #[error("{engine} engine unavailable: {reason}")]
    Unavailable {
        /// Which engine: `vad`, `stt`, `llm`, `tts` or `embed`.
        engine: &'static str,
        /// Why it is unavailable (load error, startup timeout...).
        reason: String,
    },
    /// The worker's pipe broke while the request was in flight (crash or kill); it is being
    /// restarted.
    #[error("{engine} worker died during the request ({detail})")]
    WorkerDied {
        /// Which engine: `vad`, `stt`, `llm`, `tts` or `embed`.
        engine: &'static str,
        /// What broke (write error, closed output...).
        detail: String,
    },
    /// No reply before the request's deadline; the worker was sent a cancel.
    #[error("{engine} engine timed out")]
    Timeout {
        /// Which engine: `vad`, `stt`, `llm`, `tts` or `embed`.
        engine: &'static str,
    },
    /// The worker answered with an error for this request.
    #[error("{engine} engine error ({code:?}): {message}")]
    Engine {
        /// Which engine: `vad`, `stt`, `llm`, `tts` or `embed`.
        engine: &'static str,
        /// The worker's error class.
        code: ErrorCode,
        /// The worker's message.
        message: String,
    },
    /// The worker answered with a message that does not fit the request (a bug on one side).
    #[error("{engine} worker sent an unexpected reply: {detail}")]
    Protocol {
        /// Which engine: `vad`, `stt`, `llm`, `tts` or `embed`.
        engine: &'static str,
        /// What was received instead.
        detail: String,
    },
}

fn unexpected(engine: &'static str, body: &Response) -> EngineError {
    EngineError::Protocol {
        engine,
        detail: format!("{body:?}"),
    }
}

fn observe(engine: &'static str, op: &str, started: Instant) -> f64 {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    metrics::observe_ms(
        "understudy_engine_request_ms",
        &[("engine", engine), ("op", op)],
        ms,
    );
    ms
}

fn spec(
    cfg: &EngineConfig,
    engine: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> WorkerSpec {
    WorkerSpec {
        engine,
        program: cfg.worker_dir.join(format!("understudy-{engine}")),
        args,
        env,
        startup_timeout: cfg.startup_timeout,
        request_timeout: cfg.request_timeout(engine),
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn log_env() -> Vec<(String, String)> {
    std::env::var("UNDERSTUDY_LOG")
        .map(|v| vec![("UNDERSTUDY_LOG".into(), v)])
        .unwrap_or_default()
}

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
        metrics::observe_ms(metrics::SMART_TURN_MS, &[], ms);
        match reply.body {
            Response::EndOfTurn { probability, .. } => Ok(probability),
            other => Err(unexpected("vad", &other)),
        }
    }
}

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
        ];
        if cfg.gpu {
            args.push("--gpu".into());
        }
        SttClient {
            worker: Worker::start(spec(cfg, "stt", args, log_env())),
        }
    }

    /// Transcribe 16 kHz mono audio.
    pub async fn transcribe(
        &self,
        samples: &[i16],
        prompt: Option<&str>,
    ) -> Result<Transcript, EngineError> {
        let started = Instant::now();
        let request = Request::Transcribe {
            prompt: prompt.map(str::to_string),
        };
        let reply = self
            .worker
            .request(request, pcm16_to_bytes(samples))
            .await?;
        let ms = observe("stt", "transcribe", started);
        match reply.body {
            Response::Transcript {
                text,
                no_speech,
                timings,
                ..
            } => Ok(Transcript {
                text,
                no_speech,
                ms,
                worker_ms: timings.total_ms,
            }),
            other => Err(unexpected("stt", &other)),
        }
    }
}

/// What to ask the LLM.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy (deterministic) decoding.
    pub temperature: f32,
    /// GBNF grammar for constrained output.
    pub grammar: Option<String>,
    /// Stop as soon as the output contains one of these strings.
    pub stop: Vec<String>,
}

/// What the LLM said.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    /// The generated text.
    pub text: String,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the worker's KV cache of an earlier request.
    pub cached_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Round trip as the call plane saw it, in ms.
    pub ms: f64,
    /// Time to the first token inside the worker, in ms.
    pub first_token_ms: Option<f64>,
}

/// The local LLM (llama.cpp).
#[derive(Clone)]
pub struct LlmClient {
    /// The supervised LLM worker process.
    pub worker: Worker,
}

impl LlmClient {
    /// Start the LLM worker with the configured model, threads and context size; it loads in the
    /// background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let args = vec![
            "--model".into(),
            path_arg(&cfg.pack.llm_model),
            "--threads".into(),
            cfg.threads.llm.to_string(),
            "--ctx".into(),
            cfg.llm_ctx.to_string(),
            "--gpu-layers".into(),
            if cfg.gpu { "999".into() } else { "0".into() },
        ];
        LlmClient {
            worker: Worker::start(spec(cfg, "llm", args, log_env())),
        }
    }

    /// Complete a chat in one piece (no streaming); timed into the `llm` metrics.
    pub async fn generate(&self, req: GenerateRequest) -> Result<Generated, EngineError> {
        let started = Instant::now();
        let request = Request::Generate {
            messages: req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            grammar: req.grammar,
            stop: req.stop,
            stream: false,
        };
        let reply = self.worker.request(request, vec![]).await?;
        let ms = observe("llm", "generate", started);
        match reply.body {
            Response::Generated {
                text,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
                timings,
            } => Ok(Generated {
                text,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
                ms,
                first_token_ms: timings.first_output_ms,
            }),
            other => Err(unexpected("llm", &other)),
        }
    }
}

/// A piece of synthesized speech.
#[derive(Debug, Clone)]
pub struct SpeechChunk {
    /// Sample rate of `samples`, in Hz (the voice's own rate).
    pub sample_rate: u32,
    /// Signed 16-bit mono PCM.
    pub samples: Vec<i16>,
    /// The sentence this chunk speaks.
    pub text: String,
}

/// Text-to-speech (Piper).
#[derive(Clone)]
pub struct TtsClient {
    /// The supervised TTS worker process.
    pub worker: Worker,
}

/// Sentence-by-sentence speech for one text.
pub struct SpeechStream {
    inner: ReplyStream,
    deadline: Instant,
    started: Instant,
    finished: bool,
}

impl SpeechStream {
    /// The next sentence's audio, or `None` when the text is spoken.
    pub async fn next(&mut self) -> Option<Result<SpeechChunk, EngineError>> {
        if self.finished {
            return None;
        }
        match self.inner.next_before(self.deadline).await {
            Ok(Reply {
                body: Response::Audio { sample_rate, text },
                payload,
                ..
            }) => Some(Ok(SpeechChunk {
                sample_rate,
                samples: bytes_to_pcm16(&payload),
                text,
            })),
            Ok(Reply {
                body: Response::Synthesized { sample_rate, .. },
                payload,
                ..
            }) => {
                self.finished = true;
                observe("tts", "synthesize", self.started);
                // A non-streamed answer carries its audio in the final reply.
                if payload.is_empty() {
                    None
                } else {
                    Some(Ok(SpeechChunk {
                        sample_rate,
                        samples: bytes_to_pcm16(&payload),
                        text: String::new(),
                    }))
                }
            }
            Ok(Reply { body, .. }) => {
                self.finished = true;
                Some(Err(unexpected("tts", &body)))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl TtsClient {
    /// Start the TTS worker with the configured Piper voice; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let mut args = vec![
            "--voice".into(),
            path_arg(&cfg.pack.tts_voice),
            "--ort-lib".into(),
            path_arg(&cfg.pack.onnxruntime_lib),
            "--threads".into(),
            cfg.threads.tts.to_string(),
        ];
        if let Some(dir) = &cfg.espeak_data {
            args.push("--espeak-data".into());
            args.push(path_arg(dir));
        }
        TtsClient {
            worker: Worker::start(spec(cfg, "tts", args, log_env())),
        }
    }

    /// Speak `text`, one chunk per sentence as soon as each is ready.
    pub async fn stream(&self, text: &str) -> Result<SpeechStream, EngineError> {
        let started = Instant::now();
        let inner = self
            .worker
            .stream(
                Request::Synthesize {
                    text: text.to_string(),
                    stream: true,
                },
                vec![],
            )
            .await?;
        let deadline = started + self.worker_timeout();
        Ok(SpeechStream {
            inner,
            deadline,
            started,
            finished: false,
        })
    }

    /// Speak `text` and return all of it.
    pub async fn synthesize(&self, text: &str) -> Result<SpeechChunk, EngineError> {
        let mut stream = self.stream(text).await?;
        let mut all = SpeechChunk {
            sample_rate: 0,
            samples: vec![],
            text: text.to_string(),
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            all.sample_rate = chunk.sample_rate;
            all.samples.extend_from_slice(&chunk.samples);
        }
        Ok(all)
    }

    fn worker_timeout(&self) -> Duration {
        self.worker.request_timeout()
    }
}

/// Sentence embeddings (all-MiniLM-L6-v2).
#[derive(Clone)]
pub struct EmbedClient {
    /// The supervised embedding worker process.
    pub worker: Worker,
}

impl EmbedClient {
    /// Start the embedding worker with the configured model directory; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let args = vec![
            "--model-dir".into(),
            path_arg(&cfg.pack.embed_dir),
            "--threads".into(),
            cfg.threads.embed.to_string(),
        ];
        EmbedClient {
            worker: Worker::start(spec(cfg, "embed", args, log_env())),
        }
    }

    /// One unit-length vector per text, asked for in batches of 32 so that
    /// each request stays well inside the worker's deadline (bot load, sync).
    pub async fn embed_batched(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            vectors.extend(self.embed(chunk).await?);
        }
        Ok(vectors)
    }

    /// One unit-length vector per text.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let started = Instant::now();
        let reply = self
            .worker
            .request(
                Request::Embed {
                    texts: texts.to_vec(),
                },
                vec![],
            )
            .await?;
        observe("embed", "embed", started);
        match reply.body {
            Response::Embeddings { count, dim } => {
                let flat = bytes_to_f32s(&reply.payload);
                if count as usize != texts.len() || flat.len() != (count * dim) as usize {
                    return Err(EngineError::Protocol {
                        engine: "embed",
                        detail: format!(
                            "{count}x{dim} embeddings in {} floats for {} texts",
                            flat.len(),
                            texts.len()
                        ),
                    });
                }
                Ok(flat.chunks(dim as usize).map(<[f32]>::to_vec).collect())
            }
            other => Err(unexpected("embed", &other)),
        }
    }
}

/// Which engines a command needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineSet {
    /// Voice-activity detection (needed for calls, to find end of speech).
    pub vad: bool,
    /// Speech-to-text.
    pub stt: bool,
    /// The local LLM.
    pub llm: bool,
    /// Text-to-speech.
    pub tts: bool,
    /// Sentence embeddings (knowledge search, intent matching).
    pub embed: bool,
}

impl EngineSet {
    /// Every engine.
    pub const ALL: EngineSet = EngineSet {
        vad: true,
        stt: true,
        llm: true,
        tts: true,
        embed: true,
    };
}

/// The engines a call uses. Absent ones were not started for this command.
#[derive(Clone, Default)]
pub struct Engines {
    /// Voice-activity detection, when started.
    pub vad: Option<VadClient>,
    /// Speech-to-text, when started.
    pub stt: Option<SttClient>,
    /// The local LLM, when started.
    pub llm: Option<LlmClient>,
    /// Text-to-speech, when started.
    pub tts: Option<TtsClient>,
    /// Sentence embeddings, when started.
    pub embed: Option<EmbedClient>,
}

impl Engines {
    /// Start the workers in `set` (they load their models in parallel).
    pub fn start(cfg: &EngineConfig, set: EngineSet) -> Engines {
        Engines {
            vad: set.vad.then(|| VadClient::start(cfg)),
            stt: set.stt.then(|| SttClient::start(cfg)),
            llm: set.llm.then(|| LlmClient::start(cfg)),
            tts: set.tts.then(|| TtsClient::start(cfg)),
            embed: set.embed.then(|| EmbedClient::start(cfg)),
        }
    }

    /// Every started worker.
    pub fn workers(&self) -> Vec<&Worker> {
        let mut all = vec![];
        if let Some(c) = &self.vad {
            all.push(&c.worker);
        }
        if let Some(c) = &self.stt {
            all.push(&c.worker);
        }
        if let Some(c) = &self.llm {
            all.push(&c.worker);
        }
        if let Some(c) = &self.tts {
            all.push(&c.worker);
        }
        if let Some(c) = &self.embed {
            all.push(&c.worker);
        }
        all
    }

    /// Wait for every started worker; the first failure names its engine and cause.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), EngineError> {
        for worker in self.workers() {
            worker.wait_ready(timeout).await?;
        }
        Ok(())
    }

    /// True when every started worker has loaded its model and answers.
    pub fn all_ready(&self) -> bool {
        self.workers().iter().all(|w| w.is_ready())
    }

    /// State, restarts, pid and in-flight requests of every started worker.
    pub fn health(&self) -> Vec<WorkerHealth> {
        self.workers().iter().map(|w| w.health()).collect()
    }

    /// Stop every started worker for good (no restart).
    pub fn shutdown(&self) {
        for w in self.workers() {
            w.shutdown();
        }
    }
}
