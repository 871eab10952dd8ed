//! The engines, each in its own supervised worker process, behind typed clients.
//!
//! Nothing here runs inference: the clients turn calls into IPC requests
//! (`workers/ipc`) and replies back into Rust values, and time every request
//! into the metrics.

mod embed;
mod llm;
mod stt;
pub mod supervisor;
mod tts;
mod vad;

pub use embed::*;
pub use llm::*;
pub use stt::*;
pub use tts::*;
pub use vad::*;

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
        "understudy_engine_request_seconds",
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
