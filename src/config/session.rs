//! `[session]`: turn-taking, barge-in, deadlines and the fixed prompts of
//! every call.

use serde::{Deserialize, Serialize};

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
