//! `[models]` and `[engines]`: the model pack, threads and deadlines of
//! the engine workers, and what starting them needs.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use understudy_models::PackPaths;

/// Where the engines' models come from (`[models]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Where packs are installed (`understudy models fetch`).
    pub dir: PathBuf,
    /// `default` or `test`.
    pub pack: String,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: understudy_models::default_models_dir(),
            pack: "default".into(),
        }
    }
}

/// Threads per engine. Two cores shared by five engines: measure before
/// changing (BUILD-NOTES: 2-thread whisper VAD was erratic, 1 was steady).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Threads {
    /// Threads of the VAD worker.
    pub vad: u32,
    /// Threads of the STT (Whisper) worker.
    pub stt: u32,
    /// Threads of the LLM worker.
    pub llm: u32,
    /// Threads of the TTS (Piper) worker.
    pub tts: u32,
    /// Threads of the embedding worker.
    pub embed: u32,
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            vad: 1,
            stt: 2,
            llm: 2,
            tts: 1,
            embed: 1,
        }
    }
}

/// Per-request deadlines; a request past its deadline takes the safety net.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsMs {
    /// Deadline of one VAD request, in ms.
    pub vad: u64,
    /// Deadline of one transcription, in ms.
    pub stt: u64,
    /// Deadline of one LLM generation, in ms.
    pub llm: u64,
    /// Deadline of one synthesis, in ms.
    pub tts: u64,
    /// Deadline of one embedding request, in ms.
    pub embed: u64,
}

impl Default for TimeoutsMs {
    fn default() -> Self {
        TimeoutsMs {
            vad: 1_000,
            stt: 6_000,
            llm: 6_000,
            tts: 5_000,
            embed: 2_000,
        }
    }
}

/// How the engine worker processes are started (`[engines]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnginesConfig {
    /// Directory of the `understudy-*` worker executables (default: beside `understudy`).
    pub worker_dir: Option<PathBuf>,
    /// Run STT and LLM on the GPU (needs a `cuda` build).
    pub gpu: bool,
    /// Threads per engine.
    pub threads: Threads,
    /// Per-request deadlines per engine, in ms.
    pub timeouts_ms: TimeoutsMs,
    /// LLM context length in tokens.
    pub llm_ctx: u32,
    /// How long a worker may take to load its model.
    pub startup_timeout_s: u64,
    /// espeak-ng data for the voice (default: the worker finds its own).
    pub espeak_data: Option<PathBuf>,
    /// Caller utterances the STT worker holds (their encoded audio) so a
    /// bundle's `recognition.acoustic` stage can score phrases against them;
    /// 0 (the default) holds none and that stage never runs. Each costs
    /// a Whisper state (~50 MB with base); 4 is enough for one box.
    pub stt_held_utterances: usize,
}

impl Default for EnginesConfig {
    fn default() -> Self {
        EnginesConfig {
            worker_dir: None,
            gpu: false,
            threads: Threads::default(),
            timeouts_ms: TimeoutsMs::default(),
            llm_ctx: 2048,
            startup_timeout_s: 120,
            espeak_data: None,
            stt_held_utterances: 0,
        }
    }
}

/// Everything needed to start the workers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of the `understudy-*` worker executables.
    pub worker_dir: PathBuf,
    /// Paths of every model of the configured pack.
    pub pack: PackPaths,
    /// Threads per engine.
    pub threads: Threads,
    /// Per-request deadlines per engine, in ms.
    pub timeouts: TimeoutsMs,
    /// How long a worker may take to load its model.
    pub startup_timeout: Duration,
    /// LLM context length, in tokens.
    pub llm_ctx: u32,
    /// Run STT and LLM on the GPU.
    pub gpu: bool,
    /// espeak-ng data for the voice; `None` lets the TTS worker find its own.
    pub espeak_data: Option<PathBuf>,
    /// Caller utterances the STT worker holds for scoring (0: none).
    pub stt_held_utterances: usize,
}

impl EngineConfig {
    /// The deadline of one request to `engine` (`vad`, `stt`, `llm`, `tts`; anything else gets
    /// `embed`'s).
    pub fn request_timeout(&self, engine: &str) -> Duration {
        let ms = match engine {
            "vad" => self.timeouts.vad,
            "stt" => self.timeouts.stt,
            "llm" => self.timeouts.llm,
            "tts" => self.timeouts.tts,
            _ => self.timeouts.embed,
        };
        Duration::from_millis(ms)
    }
}

/// Where the worker executables live: `$UNDERSTUDY_WORKER_DIR`, else beside
/// the running `understudy` binary (cargo puts them all in `target/<profile>`).
pub fn default_worker_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UNDERSTUDY_WORKER_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
