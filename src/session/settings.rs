//! How sessions behave: the appliance's `[session]` configuration merged with
//! the bot's own turn-taking settings, and what every call shares.

use super::endpoint::EndpointParams;
use super::smart_turn;
use super::speech::{self, PromptCache};
use crate::dialog::{Bot, ListenHints};
use crate::engines::Engines;
use std::sync::Arc;
use std::time::Duration;

/// Session settings (appliance config merged with the bot's own).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Endpointing of the caller's turns.
    pub endpoint: EndpointParams,
    /// Semantic end of turn at pauses; `None`: the fixed silence only.
    pub smart_turn: Option<smart_turn::SmartTurnSettings>,
    /// The appliance allows barge-in (the bot's states may still turn it off).
    pub barge_in: bool,
    /// Speech needed during playback before it counts as a barge-in.
    pub barge_in_min_speech_ms: u32,
    /// The longest no-input timeout of any of the bot's states (what a
    /// caller of the session waits for at most before the bot speaks again).
    pub longest_no_input: Duration,
    /// The site's DTMF inter-digit timeout, over every bot's own.
    pub dtmf_interdigit: Option<Duration>,
    /// A turn that has produced no audio this long after the caller stopped
    /// talking gets the safety net.
    pub turn_deadline: Duration,
    /// A turn with no answer this long after the caller stopped talking
    /// plays `filler` (once); `None`: never.
    pub filler_after: Option<Duration>,
    /// Said when a turn is slow to answer (see `filler_after`).
    pub filler: String,
    /// Where the safety net sends callers.
    pub safety_target: String,
    /// Said by the safety net before it transfers the caller to `safety_target`.
    pub apology: String,
    /// Said when the local bot takes over a call from the cloud bot.
    pub takeover: String,
    /// When `takeover` is said.
    pub takeover_when: crate::config::TakeoverPromptWhen,
    /// Said at once at a takeover when the caller had just answered (empty: nothing).
    pub takeover_ack: String,
    /// Whisper's domain prompt (words the bot expects).
    pub stt_prompt: Option<String>,
}

impl SessionSettings {
    /// Texts the session may have to say when an engine cannot help (the
    /// apology, the takeover prompt): pre-rendered with the bot's prompts.
    pub fn fixed_prompts(&self) -> Vec<String> {
        let mut fixed = vec![
            self.apology.clone(),
            self.takeover.clone(),
            self.filler.clone(),
        ];
        if !self.takeover_ack.is_empty() {
            fixed.push(self.takeover_ack.clone());
        }
        fixed
    }
}

/// How the session listens after the bot's latest turn: that turn's
/// [`ListenHints`] (per-state overrides included) within what the appliance allows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ListenPolicy {
    pub barge_in: bool,
    pub no_input_timeout: Duration,
    pub dtmf_interdigit: Duration,
    /// The key that ends an entry at once (`None`: only the timeout or the length does).
    pub dtmf_terminator: Option<char>,
    /// An entry this long is complete.
    pub dtmf_max_digits: usize,
}

impl ListenPolicy {
    pub fn new(settings: &SessionSettings, hints: &ListenHints) -> Self {
        ListenPolicy {
            barge_in: settings.barge_in && hints.barge_in,
            no_input_timeout: Duration::from_millis(u64::from(hints.no_input_timeout_ms)),
            dtmf_interdigit: settings
                .dtmf_interdigit
                .unwrap_or(Duration::from_millis(u64::from(
                    hints.dtmf_inter_digit_timeout_ms,
                ))),
            dtmf_terminator: hints.dtmf_terminator.chars().next(),
            dtmf_max_digits: (hints.dtmf_max_digits as usize).max(1),
        }
    }
}

/// Everything calls share: the bot, the engines, the prompt audio.
pub struct SessionSetup {
    /// The bot every call talks to.
    pub bot: Arc<Bot>,
    /// The engine workers' clients.
    pub engines: Engines,
    /// Rendered speech by text: the pre-rendered prompts and streamed sentences.
    pub prompts: Arc<PromptCache>,
    /// How sessions behave.
    pub settings: SessionSettings,
}

/// Merge the bot's turn-taking settings with the appliance's.
pub fn settings_for(bot: &Bot, config: &crate::config::SessionConfig) -> SessionSettings {
    let bundle = bot.bundle();
    SessionSettings {
        endpoint: EndpointParams {
            threshold: config.vad_threshold,
            min_speech_ms: config.min_speech_ms,
            end_silence_ms: config.endpoint_silence_ms,
            max_silence_ms: config.turn_max_silence_ms,
            ..Default::default()
        },
        smart_turn: config.smart_turn.then(|| smart_turn::SmartTurnSettings {
            threshold: config.smart_turn_threshold,
            timeout: Duration::from_millis(u64::from(config.smart_turn_timeout_ms)),
        }),
        barge_in: config.barge_in,
        barge_in_min_speech_ms: config.barge_in_min_speech_ms,
        longest_no_input: bundle.longest_no_input_timeout(),
        dtmf_interdigit: config
            .dtmf_interdigit_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        turn_deadline: Duration::from_millis(config.turn_deadline_ms as u64),
        filler_after: (config.filler_after_ms > 0)
            .then(|| Duration::from_millis(config.filler_after_ms as u64)),
        filler: bundle
            .filler_prompt()
            .unwrap_or_else(|| speech::DEFAULT_FILLER.to_string()),
        safety_target: bundle.safety_net_target(),
        apology: bundle
            .safety_net_prompt()
            .unwrap_or_else(|| speech::DEFAULT_APOLOGY.to_string()),
        takeover: config
            .takeover_prompt
            .clone()
            .unwrap_or_else(|| speech::DEFAULT_TAKEOVER.to_string()),
        takeover_when: config.takeover_prompt_when,
        takeover_ack: config.takeover_ack.trim().to_string(),
        stt_prompt: Some(bundle.stt_hint()),
    }
}
