//! The appliance configuration: one TOML file, every field optional.
//!
//! Looked up at `--config PATH`, else `$UNDERSTUDY_CONFIG`, else
//! `/etc/understudy/understudy.toml` when it exists; otherwise the defaults
//! below apply (the demo bot with the default model pack). `docs/config.md`
//! documents every field; `understudy config` prints the effective one.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use understudy_models::PackPaths;

/// The configuration file read when neither `--config` nor `$UNDERSTUDY_CONFIG` names one.
pub const SYSTEM_CONFIG: &str = "/etc/understudy/understudy.toml";

/// The whole configuration file; each field is one TOML table (`[models]`, `[sip]`...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which model pack the engines load, and from where.
    pub models: ModelsConfig,
    /// Worker processes: threads, deadlines, GPU, context size.
    pub engines: EnginesConfig,
    /// Which bot bundle to serve.
    pub bot: BotConfig,
    /// Turn-taking: end of speech, barge-in, deadlines.
    pub session: SessionConfig,
    /// The health, readiness, status and metrics endpoint.
    pub http: HttpConfig,
    /// Calls by SIP/RTP.
    pub sip: SipConfig,
    /// Where bot versions are pulled from and kept.
    pub sync: SyncConfig,
    /// The cloud bot, its health probes, and takeover.
    pub cloud: CloudConfig,
}

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
        }
    }
}

/// Which bot to serve (`[bot]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// A bot bundle file; unset means the built-in demo bot.
    pub bundle: Option<PathBuf>,
}

/// Turn-taking settings that are not the bot's business.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Silence after speech that ends the caller's turn.
    pub endpoint_silence_ms: u32,
    /// Speech needed before a turn (or a barge-in) counts as started.
    pub min_speech_ms: u32,
    /// Silero probability above which a chunk is speech.
    pub vad_threshold: f32,
    /// Let callers interrupt the bot.
    pub barge_in: bool,
    /// Speech over the bot's playback needed before it counts as a barge-in
    /// (longer than `min_speech_ms`: "mhm" should not stop the bot).
    pub barge_in_min_speech_ms: u32,
    /// Silence between keys that ends a DTMF entry, for every bot; unset:
    /// each bot's own `settings.dtmf.inter_digit_timeout_ms`.
    pub dtmf_interdigit_ms: Option<u32>,
    /// A turn that has no answer this long after the caller stopped talking
    /// says the bot's filler ("One moment, please."), once; 0: never.
    pub filler_after_ms: u32,
    /// A turn with no answer this long after the caller stopped talking gets
    /// the safety net (apology, transfer).
    pub turn_deadline_ms: u32,
    /// What the local bot says when it takes a call over from the cloud bot
    /// (in-path mode, docs/continuity.md). Default: a short "I'm back".
    pub takeover_prompt: Option<String>,
    /// Ask Smart Turn at each pause whether the caller finished (semantic
    /// end of turn); false: every turn waits `endpoint_silence_ms`.
    pub smart_turn: bool,
    /// Smart Turn probability at or above which a pause ends the turn at once.
    pub smart_turn_threshold: f32,
    /// Longest wait for Smart Turn's answer; later, the fixed silence applies.
    pub smart_turn_timeout_ms: u32,
    /// Silence that ends a turn Smart Turn called unfinished.
    pub turn_max_silence_ms: u32,
    /// When the takeover prompt is said (`auto`: only when the caller was
    /// mid-sentence or the flow state is unknown).
    pub takeover_prompt_when: TakeoverPromptWhen,
    /// Said at once at a takeover (under `auto`) when the caller had just
    /// answered the cloud bot, while the call's place in the flow is found,
    /// so the caller does not wait in silence; empty: nothing.
    pub takeover_ack: String,
}

/// When the local bot says the takeover prompt (docs/continuity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeoverPromptWhen {
    /// Only when the caller was mid-sentence or the state is unknown.
    #[default]
    Auto,
    /// At every takeover, at once.
    Always,
    /// Never: the local bot's first words continue the conversation.
    Never,
}

impl SessionConfig {
    /// Values that cannot work, with what to do about them.
    pub fn validate(&self) -> Result<(), String> {
        if !(1_000..=60_000).contains(&self.turn_deadline_ms) {
            return Err(format!(
                "session.turn_deadline_ms = {} is out of range: give 1000 to 60000 (default 3500)",
                self.turn_deadline_ms
            ));
        }
        if let Some(ms) = self
            .dtmf_interdigit_ms
            .filter(|ms| !(100..=30_000).contains(ms))
        {
            return Err(format!(
                "session.dtmf_interdigit_ms = {ms} is out of range: give 100 to 30000, or leave it out to use each bot's own"
            ));
        }
        if !(self.endpoint_silence_ms..=10_000).contains(&self.turn_max_silence_ms) {
            return Err(format!(
                "session.turn_max_silence_ms = {} is out of range: give session.endpoint_silence_ms ({}) to 10000 (default 1600)",
                self.turn_max_silence_ms, self.endpoint_silence_ms
            ));
        }
        if !(self.smart_turn_threshold > 0.0 && self.smart_turn_threshold < 1.0) {
            return Err(format!(
                "session.smart_turn_threshold = {} is out of range: give a probability between 0 and 1 (default 0.5)",
                self.smart_turn_threshold
            ));
        }
        if !(20..=5_000).contains(&self.smart_turn_timeout_ms) {
            return Err(format!(
                "session.smart_turn_timeout_ms = {} is out of range: give 20 to 5000 (default 400)",
                self.smart_turn_timeout_ms
            ));
        }
        if self.filler_after_ms != 0 && self.filler_after_ms >= self.turn_deadline_ms {
            return Err(format!(
                "session.filler_after_ms = {} would never play: give less than session.turn_deadline_ms ({}), or 0 for no filler",
                self.filler_after_ms, self.turn_deadline_ms
            ));
        }
        Ok(())
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            endpoint_silence_ms: 480,
            min_speech_ms: 128,
            vad_threshold: 0.5,
            barge_in: true,
            barge_in_min_speech_ms: 192,
            dtmf_interdigit_ms: None,
            // No dead air over 2 s (docs/continuity.md): the filler starts
            // 1.2 s after the end of the caller's speech and is about 1.1 s
            // of audio (0.9 s of it speech), so the apology at 3.5 s comes
            // about 1.3 s after the filler's last word. Any filler longer
            // than 0.3 s keeps that gap under 2 s.
            filler_after_ms: 1200,
            turn_deadline_ms: 3500,
            takeover_prompt: None,
            // Opt-in until the paused-number floor holds (docs/benchmarks.md).
            smart_turn: false,
            smart_turn_threshold: 0.5,
            // Beyond ~300 ms the fixed 480 ms silence would have ended the
            // turn first anyway; 400 leaves room for a loaded CPU.
            smart_turn_timeout_ms: 400,
            // Callers reading numbers pause up to about a second between groups.
            turn_max_silence_ms: 1600,
            takeover_prompt_when: TakeoverPromptWhen::Auto,
            takeover_ack: "Okay.".into(),
        }
    }
}

/// The HTTP endpoint (`[http]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Health, readiness and metrics.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// How a caller reaches a human (see docs/sip.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Ask the caller's side to call the target (REFER); if it refuses or the
    /// transfer fails, call the target and relay the media ourselves.
    ReferThenBridge,
    /// REFER only: a refused or failed transfer ends the call.
    Refer,
    /// Always call the target and relay the media.
    Bridge,
}

/// Calls by SIP/RTP (docs/sip.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Where SIP is served, UDP and TCP on the same port (`off` disables SIP).
    pub listen: String,
    /// `udp`, `tcp`.
    pub transports: Vec<String>,
    /// The address written in Contact and SDP when the peer must use another
    /// one than the local address facing it (NAT). Default: that local address.
    pub advertised_address: Option<String>,
    /// Concurrent calls before INVITEs and OPTIONS get 503 (measured default,
    /// docs/sip.md "Capacity").
    pub capacity: usize,
    /// Retry-After on 503, in seconds.
    pub retry_after_s: u32,
    /// RTP ports, one even port per call leg.
    pub rtp_port_min: u16,
    /// Highest RTP port (inclusive).
    pub rtp_port_max: u16,
    /// The address RTP sockets bind to (default: the SIP listen address).
    pub rtp_bind: Option<String>,
    /// No RTP for this long from a peer that should be sending ends the call.
    pub rtp_timeout_s: u64,
    /// Jitter buffer delay, and the most it may hold.
    pub jitter_target_ms: u32,
    /// Most delay the jitter buffer may build up, in ms; past it playout skips ahead (raised to at
    /// least target + 20).
    pub jitter_max_ms: u32,
    /// Send silence packets while the bot is quiet (many SBCs need continuous RTP).
    pub comfort_silence: bool,
    /// Accepted codecs, preferred first: `PCMU`, `PCMA`.
    pub codecs: Vec<String>,
    /// Where every transfer goes, overriding the bot's targets (a SIP URI).
    pub transfer_target: Option<String>,
    /// Host for targets that are numbers or names, not URIs (default: the
    /// address the call came from, i.e. the SBC).
    pub transfer_domain: Option<String>,
    /// How a transfer to a human is carried out.
    pub transfer_mode: TransferMode,
    /// How long a transfer may take (REFER until the final NOTIFY; bridge until answered).
    pub transfer_timeout_s: u64,
    /// Ring this long before answering (0: answer at once).
    pub answer_delay_ms: u64,
}

/// Calls this 2-core box holds with voice-to-voice p95 under 1.5 s at the RTP
/// leg (SIPp load benchmark, docs/sip.md).
pub const DEFAULT_SIP_CAPACITY: usize = 4;

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".into(),
            transports: vec!["udp".into(), "tcp".into()],
            advertised_address: None,
            capacity: DEFAULT_SIP_CAPACITY,
            retry_after_s: 10,
            rtp_port_min: 20000,
            rtp_port_max: 20999,
            rtp_bind: None,
            rtp_timeout_s: 30,
            jitter_target_ms: 40,
            jitter_max_ms: 200,
            comfort_silence: true,
            codecs: vec!["PCMU".into(), "PCMA".into()],
            transfer_target: None,
            transfer_domain: None,
            transfer_mode: TransferMode::ReferThenBridge,
            transfer_timeout_s: 30,
            answer_delay_ms: 0,
        }
    }
}

/// Who routes calls between the cloud bot and this box (docs/continuity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudMode {
    /// The SBC routes; we answer OPTIONS 200/503 and take what it sends.
    Standby,
    /// We front the cloud bot (B2BUA): calls are bridged to it while it is
    /// healthy, and the local bot takes a call over when its cloud leg fails.
    InPath,
}

/// The cloud bot, its health probes, and takeover (docs/continuity.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// Who routes calls between the cloud bot and this box.
    pub mode: CloudMode,
    /// The cloud bot's SIP URI (in-path mode), e.g. `sip:bot@10.0.0.5:5060`.
    pub uri: Option<String>,
    /// Probe the cloud bot with SIP OPTIONS to `uri`.
    pub probe_options: bool,
    /// Also probe this HTTP(S) health URL (2xx is healthy).
    pub health_url: Option<String>,
    /// Time between health probes of the cloud bot, in ms (at least 100).
    pub probe_interval_ms: u64,
    /// A probe with no answer by then has failed.
    pub probe_timeout_ms: u64,
    /// Failures in a row (probes or calls) before new calls go to the local bot.
    pub down_after: u32,
    /// Good probes in a row before a degraded cloud counts as up again.
    pub up_after: u32,
    /// A cloud that was down must be healthy this long before new calls go back to it.
    pub failback_after_s: u64,
    /// The cloud must answer a call's INVITE within this; else the local bot answers.
    pub setup_timeout_ms: u64,
    /// No RTP from the cloud leg for this long: the local bot takes the call over.
    pub rtp_timeout_ms: u64,
    /// The shortest cloud-leg RTP timeout: each call's timeout follows the
    /// cloud's packet cadence between this and `rtp_timeout_ms` (0: fixed).
    pub rtp_timeout_floor_ms: u64,
    /// Caller audio kept, so the local bot hears what the caller said since
    /// the cloud bot last spoke.
    pub recent_audio_s: u64,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            mode: CloudMode::Standby,
            uri: None,
            probe_options: true,
            health_url: None,
            probe_interval_ms: 1000,
            probe_timeout_ms: 800,
            down_after: 3,
            up_after: 3,
            failback_after_s: 30,
            setup_timeout_ms: 3000,
            rtp_timeout_ms: 500,
            rtp_timeout_floor_ms: 160,
            recent_audio_s: 8,
        }
    }
}

/// The sync agent: where bundle versions are kept and where exports come
/// from (docs/sync.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// The versioned bundle store. Default: `$UNDERSTUDY_DATA_DIR/bundles`,
    /// else `~/.local/share/understudy/bundles` (`/var/lib/understudy/bundles` on an appliance).
    pub store: Option<PathBuf>,
    /// The export to pull: a path (zip, folder, bundle file) or an http(s) URL.
    pub source: Option<String>,
    /// Seconds between pulls inside `serve` (0: pull only on demand).
    pub interval_s: u64,
    /// Share of the bundle's test conversations that must pass before a version is activated.
    pub min_pass_rate: f64,
    /// Versions kept besides the active one, the last-good one and the rollback stack.
    pub keep: usize,
    /// Activate a pulled version that validates and passes parity (false: pull only stores it).
    pub auto_activate: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            store: None,
            source: None,
            interval_s: 300,
            min_pass_rate: 0.8,
            keep: 10,
            auto_activate: true,
        }
    }
}

impl SyncConfig {
    /// The store folder, with the defaults applied.
    pub fn store_dir(&self) -> PathBuf {
        if let Some(dir) = &self.store {
            return dir.clone();
        }
        if let Some(data) = std::env::var_os("UNDERSTUDY_DATA_DIR") {
            return PathBuf::from(data).join("bundles");
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/share/understudy/bundles"),
            None => PathBuf::from("/var/lib/understudy/bundles"),
        }
    }
}

impl Config {
    /// The optional settings left unset (`section.key`), which TOML cannot
    /// print: `understudy config` lists them so that none goes unnoticed.
    pub fn unset_keys(&self) -> Vec<String> {
        fn walk(path: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Null => out.push(path.to_string()),
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        let path = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        walk(&path, value, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = vec![];
        walk(
            "",
            &serde_json::to_value(self).expect("the configuration serializes"),
            &mut out,
        );
        out
    }

    /// Load the configuration: `path`, else `$UNDERSTUDY_CONFIG`, else the
    /// system file if present, else defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let chosen = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("UNDERSTUDY_CONFIG").map(PathBuf::from))
            .or_else(|| {
                Path::new(SYSTEM_CONFIG)
                    .exists()
                    .then(|| PathBuf::from(SYSTEM_CONFIG))
            });
        let Some(path) = chosen else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "configuration file {} is invalid: {e}\n(see docs/config.md; `understudy config` prints a valid file)",
                path.display()
            )
        })?;
        config.session.validate().map_err(|e| {
            anyhow::anyhow!("configuration file {} is invalid: {e}", path.display())
        })?;
        Ok(config)
    }

    /// What the engine supervisor needs; checks that the pack is installed.
    pub fn engine_config(&self) -> Result<EngineConfig> {
        let pack = understudy_models::resolve(&self.models.dir, &self.models.pack)?;
        Ok(EngineConfig {
            worker_dir: self
                .engines
                .worker_dir
                .clone()
                .unwrap_or_else(default_worker_dir),
            pack,
            threads: self.engines.threads.clone(),
            timeouts: self.engines.timeouts_ms.clone(),
            startup_timeout: Duration::from_secs(self.engines.startup_timeout_s),
            llm_ctx: self.engines.llm_ctx,
            gpu: self.engines.gpu,
            espeak_data: self.engines.espeak_data.clone(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.toml");
        std::fs::write(&path, "").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.models.pack, "default");
        std::fs::write(&path, "[engines.threads]\nstt = 1\nllmm = 3\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("llmm") && err.contains("u.toml"), "{err}");
    }

    #[test]
    fn session_timeouts_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.toml");
        std::fs::write(&path, "[session]\nfiller_after_ms = 5000\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("filler_after_ms") && err.contains("u.toml"),
            "{err}"
        );
        std::fs::write(&path, "[session]\nturn_deadline_ms = 200\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("turn_deadline_ms"), "{err}");
        std::fs::write(
            &path,
            "[session]\nfiller_after_ms = 0\nturn_deadline_ms = 3000\n",
        )
        .unwrap();
        assert_eq!(
            Config::load(Some(&path)).unwrap().session.filler_after_ms,
            0
        );
        std::fs::write(&path, "[session]\ndtmf_interdigit_ms = 0\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("dtmf_interdigit_ms") && err.contains("each bot's own"),
            "{err}"
        );
        std::fs::write(&path, "[session]\ndtmf_interdigit_ms = 2000\n").unwrap();
        assert_eq!(
            Config::load(Some(&path))
                .unwrap()
                .session
                .dtmf_interdigit_ms,
            Some(2000)
        );
        assert!(SessionConfig::default().validate().is_ok());
        for (toml, key) in [
            ("turn_max_silence_ms = 300", "turn_max_silence_ms"),
            ("smart_turn_threshold = 1.0", "smart_turn_threshold"),
            ("smart_turn_timeout_ms = 0", "smart_turn_timeout_ms"),
        ] {
            std::fs::write(&path, format!("[session]\n{toml}\n")).unwrap();
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("default"), "{err}");
        }
    }

    #[test]
    fn unset_options_are_listed() {
        let unset = Config::default().unset_keys();
        for key in [
            "bot.bundle",
            "session.dtmf_interdigit_ms",
            "session.takeover_prompt",
        ] {
            assert!(
                unset.contains(&key.to_string()),
                "{key} missing from {unset:?}"
            );
        }
        let mut config = Config::default();
        config.session.dtmf_interdigit_ms = Some(2000);
        assert!(!config
            .unset_keys()
            .contains(&"session.dtmf_interdigit_ms".to_string()));
    }

    #[test]
    fn printed_defaults_parse_back() {
        let text = toml::to_string_pretty(&Config::default()).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(
            back.engines.threads.stt,
            Config::default().engines.threads.stt
        );
    }

    /// docs/config.md must document every field: each table `[a.b]` has a
    /// heading naming it, and each key a table row "| `key` |" in that
    /// heading's section. A new field without a row fails here.
    #[test]
    fn every_config_key_is_documented() {
        const DOC: &str = include_str!("../docs/config.md");

        // The section of DOC under the heading that names `[table]`, up to
        // the next heading (lines starting with '#' inside code fences are
        // not headings).
        fn section(table: &str) -> Option<String> {
            let name = format!("`[{table}]`");
            let mut fenced = false;
            let mut inside = false;
            let mut out = String::new();
            for line in DOC.lines() {
                if line.trim_start().starts_with("```") {
                    fenced = !fenced;
                }
                let heading = !fenced && line.starts_with('#');
                if heading {
                    if inside {
                        break;
                    }
                    inside = line.contains(&name);
                    continue;
                }
                if inside {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            inside.then_some(out)
        }

        // Every (table, key) of a serialized config. TOML drops unset
        // options, so the JSON form (where they are `null`) is walked too.
        fn walk_toml(table: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
            for (key, value) in t {
                if table.is_empty() {
                    assert!(value.is_table(), "top-level key {key} is not a table");
                    walk_toml(key, value.as_table().unwrap(), out);
                    continue;
                }
                out.push((table.to_string(), key.clone()));
                if let Some(sub) = value.as_table() {
                    walk_toml(&format!("{table}.{key}"), sub, out);
                }
            }
        }
        fn walk_json(table: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
            for (key, value) in v.as_object().expect("a table") {
                if table.is_empty() {
                    walk_json(key, value, out);
                    continue;
                }
                out.push((table.to_string(), key.clone()));
                if value.is_object() {
                    walk_json(&format!("{table}.{key}"), value, out);
                }
            }
        }

        let defaults = Config::default();
        let text = toml::to_string_pretty(&defaults).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys = Vec::new();
        walk_toml("", &table, &mut keys);
        walk_json("", &serde_json::to_value(&defaults).unwrap(), &mut keys);
        keys.sort();
        keys.dedup();
        assert!(keys.len() > 60, "too few keys found: {keys:?}");

        let mut missing = Vec::new();
        for (table, key) in &keys {
            match section(table) {
                None => missing.push(format!("[{table}] (no heading naming `[{table}]`)")),
                Some(text) if !text.contains(&format!("| `{key}` |")) => {
                    missing.push(format!("{table}.{key}"))
                }
                Some(_) => {}
            }
        }
        missing.dedup();
        assert!(
            missing.is_empty(),
            "docs/config.md does not document: {}",
            missing.join(", ")
        );
    }
}
