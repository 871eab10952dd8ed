//! What a finished turn reports: what was heard and said, how it was
//! decided, and where the time went.

use serde::Serialize;

/// Where time went in one turn, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnTimings {
    /// End of caller speech until the endpointer was sure.
    pub endpoint: Option<f64>,
    /// Transcription (with a speculative one, only the wait after the turn's end).
    pub stt: Option<f64>,
    /// Deciding the bot's turn (`dialog::Bot::respond`).
    pub dialog: Option<f64>,
    /// Start of speech output until the first audio was ready.
    pub tts_first_audio: Option<f64>,
    /// End of caller speech until the first bot audio left for the caller.
    pub voice_to_voice: Option<f64>,
    /// The transcription started during the pause and was kept.
    pub speculative_stt: bool,
}

/// One turn, for reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnReport {
    /// The turn's number in the call, from 1 (0: the greeting and takeover prompts).
    pub turn: u32,
    /// What the caller said (empty for no-input and DTMF).
    pub transcript: String,
    /// The keys the caller entered (DTMF turns only).
    pub dtmf: Option<String>,
    /// The intent that decided the turn, if any.
    pub intent: Option<String>,
    /// How sure the deciding stage was, from 0 to 1.
    pub confidence: f32,
    /// What decided the turn: a `MatchSource` in lowercase (`rule`, `llm`, ...), or
    /// `greeting`, `takeover`, `takeover_ack`.
    pub matched_by: String,
    /// The intents a confirmation question asked about (empty: none asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// What the bot said.
    pub reply: String,
    /// What the bot did after its reply (listen, transfer or hang up).
    pub action: String,
    /// Every slot's value after the turn, by name.
    pub slots: std::collections::BTreeMap<String, String>,
    /// Caller speech in the call's audio, in ms.
    pub speech_ms: Option<(f64, f64)>,
    /// Where the turn's time went.
    pub timings_ms: TurnTimings,
    /// The turn ended in the safety net (engine failure).
    pub safety_net: bool,
    /// The turn was slow and the caller heard the filler first.
    pub filler: bool,
    /// The caller barged in while the reply was playing.
    pub barged_in: bool,
    /// The engine failure that sent the turn to the safety net, if any.
    pub error: Option<String>,
}

impl TurnReport {
    /// Decided by the LLM or answered from the knowledge facts (an "LLM
    /// turn" in benchmarks and the dashboard; the rest are flow turns).
    pub fn is_llm_turn(&self) -> bool {
        matches!(self.matched_by.as_str(), "llm" | "knowledge")
    }

    /// The turn's timings for the dashboard's recent history.
    pub fn sample(&self) -> crate::metrics::recent::TurnSample {
        let t = &self.timings_ms;
        crate::metrics::recent::TurnSample {
            at_ms: crate::metrics::recent::now_ms(),
            llm: self.is_llm_turn(),
            safety_net: self.safety_net,
            endpoint: t.endpoint,
            stt: t.stt,
            dialog: t.dialog,
            tts_first_audio: t.tts_first_audio,
            voice_to_voice: t.voice_to_voice,
        }
    }

    /// Log the turn (one `info` line with every field a support engineer
    /// asks for).
    pub fn log(&self, call: &str) {
        tracing::info!(
            call = %call,
            turn = self.turn,
            transcript = %self.transcript,
            dtmf = self.dtmf.as_deref().unwrap_or(""),
            intent = self.intent.as_deref().unwrap_or(""),
            matched_by = %self.matched_by,
            reply = %self.reply,
            action = %self.action,
            voice_to_voice_ms = self.timings_ms.voice_to_voice.map(|v| v.round() as u64),
            // Where the caller's speech ended in the call's audio: a caller's
            // own clock puts voice-to-voice at its end of the line from it.
            speech_end_ms = self.speech_ms.map(|(_, end)| end.round() as u64),
            endpoint_ms = self.timings_ms.endpoint.map(|v| v.round() as u64),
            stt_ms = self.timings_ms.stt.map(|v| v.round() as u64),
            dialog_ms = self.timings_ms.dialog.map(|v| v.round() as u64),
            tts_first_audio_ms = self.timings_ms.tts_first_audio.map(|v| v.round() as u64),
            safety_net = self.safety_net,
            filler = self.filler,
            "turn"
        );
    }
}
